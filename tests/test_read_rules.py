"""Who may see which document (`access.may_see`): every type × every kind of user × every routing field.

The statement of the read rules below (`READERS`) is written from the brief and the issues (who works where,
whose record it is, who wrote it), not from access.py; each document type's base document is varied one routing
field at a time over the people, places, gateways, organisations and departments of a small world, and `may_see`
must answer exactly as the statement does, for every user. About 300,000 cases, pure, in about a second: the
mutation run (tests/mutation/) runs it once per mutant of the access policy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from server.domain.access import RULES, STREET_WIDE_TYPES, VISIBILITY_FIELDS, Principal, deletion, may_see
from server.domain.declaration import DOC_TYPES, MAIN_DB, Role

Doc = dict[str, Any]
S, OTHER_STREET = "street:s", "street:elsewhere"
C1, C2 = "community:c1", "community:c2"
G11, G12, G21 = "grid:c1-g1", "grid:c1-g2", "grid:c2-g1"
R1, R2 = "resident:r1", "resident:r2"
GW1, GW2 = "gateway:gw1", "gateway:gw2"
SHOP, OTHER_SHOP = "organisation:shop", "organisation:other-shop"
HEALTH, HOUSING = "department:health", "department:housing"

# (user id, roles, communities, grids, department, resident, gateway, organisation)
USERS: dict[str, Principal] = {p.user_id: p for p in (
    Principal("user:admin", frozenset({Role.ADMIN}), S),
    Principal("user:secretary-c1", frozenset({Role.SECRETARY}), S, frozenset({C1})),
    Principal("user:secretary-c2", frozenset({Role.SECRETARY}), S, frozenset({C2})),
    Principal("user:worker-g11", frozenset({Role.GRID_WORKER}), S, frozenset({C1}), frozenset({G11})),
    Principal("user:worker-g12", frozenset({Role.GRID_WORKER}), S, frozenset({C1}), frozenset({G12})),
    Principal("user:volunteer-g11", frozenset({Role.VOLUNTEER}), S, frozenset({C1}), frozenset({G11})),
    Principal("user:dept-health", frozenset({Role.DEPARTMENT_STAFF}), S, department=HEALTH),
    Principal("user:resident-r1", frozenset({Role.RESIDENT}), S, resident=R1),
    Principal("user:gateway-gw1", frozenset({Role.GATEWAY}), S, frozenset({C1}), frozenset({G11}), gateway=GW1),
    Principal("user:partner-shop", frozenset({Role.PARTNER}), S, organisation=SHOP),
    # A partner account's organisation and a resident account's resident name nobody else's; a user with no role
    # and one of another street see nothing but their street's common documents.
    Principal("user:nobody", frozenset(), S),
    Principal("user:admin-elsewhere", frozenset({Role.ADMIN}), OTHER_STREET),
)}
# What each routing field of a document is set to, one at a time (besides leaving it out).
PEOPLE = [*USERS, R1, R2, SHOP, OTHER_SHOP]
VALUES: dict[str, list[Any]] = {
    "_id": ["x:other", C1, C2, G11, G12, GW1, GW2, R1],
    "street": [OTHER_STREET],
    "community": [C1, C2, None],
    "grid": [G11, G12, G21, None],
    "volunteers": [[u] for u in USERS] + [["user:volunteer-g11", "user:worker-g11"]],
    "departments": [[HEALTH], [HOUSING], [HOUSING, HEALTH], ["not a department", 7]],
    "department": [HEALTH, HOUSING],
    "visibility": ["grid_worker_only", "grid_staff"],
    "gateway": [GW1, GW2],
    "organisation": [SHOP, OTHER_SHOP],
    **{name: PEOPLE for name in ("assigned_to", "created_by", "resident", "target", "requester", "user",
                                 "from_account", "to_account", "holder", "booked_by", "keeper")},
    "blood_pressure": ["sealed:xyz"],  # a visit recording a protected value (sealed or not)
}


def base(type_name: str) -> Doc:
    """A document of the type in grid c1-g1 of community c1, naming nobody."""
    return {"_id": f"{type_name}:x", "type": type_name, "street": S, "community": C1, "grid": G11}


def variants(type_name: str) -> Iterator[Doc]:
    doc = base(type_name)
    yield doc
    for name, values in VALUES.items():
        for value in values:
            changed = {**doc, name: value}
            yield {k: v for k, v in changed.items() if v is not None}


# ---------------------------------------------------------------- the read rules, stated independently

Rule = Callable[[Principal, Doc], bool]


def admin_or_secretary(p: Principal, d: Doc) -> bool:
    """The administrator, and the secretary of the document's community."""
    return Role.ADMIN in p.roles or (Role.SECRETARY in p.roles and d.get("community") in p.communities)


def grid_staff(p: Principal, d: Doc) -> bool:
    """The above and the grid worker of the document's grid."""
    return admin_or_secretary(p, d) or (Role.GRID_WORKER in p.roles and d.get("grid") in p.grids)


def about_me(p: Principal, d: Doc) -> bool:
    """A resident's own record and what names them as its resident."""
    return p.resident is not None and p.resident in (d["_id"], d.get("resident"))


def by(field: str) -> Rule:
    return lambda p, d: d.get(field) == p.user_id


def community_member(p: Principal, d: Doc) -> bool:
    """Everyone whose account names the community (its secretary, workers, volunteers), and the administrator."""
    return Role.ADMIN in p.roles or d.get("community") in p.communities


def everyone(p: Principal, d: Doc) -> bool:
    return True


def any_of(*rules: Rule) -> Rule:
    return lambda p, d: any(rule(p, d) for rule in rules)


def volunteer_named(*fields: str) -> Rule:
    return lambda p, d: Role.VOLUNTEER in p.roles and p.user_id in [d.get(f) for f in fields]


def task_readers(p: Principal, d: Doc) -> bool:
    # A volunteer's phone never holds a protected field, not even sealed: not a visit that records one.
    return (grid_staff(p, d) or about_me(p, d)
            or (volunteer_named("assigned_to", "created_by")(p, d)
                and not (d["type"] == "visit" and "blood_pressure" in d)))


def request_readers(p: Principal, d: Doc) -> bool:
    named = [d.get("department"), *d.get("departments", [])]
    return (grid_staff(p, d) or about_me(p, d) or by("created_by")(p, d)
            or (Role.DEPARTMENT_STAFF in p.roles and p.department in named))


def alert_readers(p: Principal, d: Doc) -> bool:
    # Privacy mode (PRODUCT.md): an anomaly kept between the resident and their grid worker.
    if d.get("visibility") == "grid_worker_only":
        return (Role.GRID_WORKER in p.roles and d.get("grid") in p.grids) or about_me(p, d)
    return grid_staff(p, d) or about_me(p, d)


def its_gateway(p: Principal, d: Doc) -> bool:
    return p.gateway is not None and d.get("gateway") == p.gateway


def holds_an_account(*fields: str) -> Rule:
    """The account holder: the user, the resident they are, the organisation they work for."""
    return lambda p, d: bool(({p.user_id, p.resident, p.organisation} - {None}) & {d.get(f) for f in fields})


def honoured_by_partner(p: Principal, d: Doc) -> bool:
    return p.organisation is not None and d.get("organisation") == p.organisation


def held_by_me(p: Principal, d: Doc) -> bool:
    """A voucher's holder: the account that paid for it, the user or the resident they are."""
    return d.get("holder") in {p.user_id, p.resident} - {None}


PERSONAL = any_of(grid_staff, about_me)
READERS: dict[str, Rule] = {
    **{t: everyone for t in ("street", "department", "service_category", "work_calendar", "organisation", "reward",
                             "resource")},
    "community": lambda p, d: Role.ADMIN in p.roles or d["_id"] in p.communities,
    "grid": lambda p, d: admin_or_secretary(p, d) or d["_id"] in p.grids,
    "household": lambda p, d: grid_staff(p, d) or (Role.VOLUNTEER in p.roles and p.user_id in d.get("volunteers", [])),
    "resident": PERSONAL,
    "visit": task_readers,
    "need": task_readers,
    "task": lambda p, d: grid_staff(p, d) or volunteer_named("assigned_to")(p, d),
    "service_request": request_readers,
    "alert": alert_readers,
    **{t: any_of(PERSONAL, its_gateway) for t in ("device", "safety_rules", "device_health")},
    "gateway": lambda p, d: admin_or_secretary(p, d) or (p.gateway is not None and d["_id"] == p.gateway),
    "gateway_health": any_of(admin_or_secretary, its_gateway),
    **{t: admin_or_secretary for t in ("notification", "audit_checkpoint", "matter_roll")},
    **{t: PERSONAL for t in ("reading", "privacy", "attendance")},
    "audit_entry": lambda p, d: admin_or_secretary(p, d) or (p.resident is not None and d.get("target") == p.resident),
    "access_request": any_of(grid_staff, by("requester")),
    "key_grant": by("user"),
    "index_grant": by("user"),
    "access_report": by("created_by"),
    "survey_response": any_of(admin_or_secretary, by("created_by")),
    "data_key": grid_staff,
    "mediation": grid_staff,
    "claim": any_of(PERSONAL, by("created_by")),
    "transfer": any_of(admin_or_secretary, holds_an_account("from_account", "to_account")),
    **{t: community_member for t in ("matter", "matter_result", "meeting", "service_project", "project_evaluation",
                                     "survey_sample")},
    "ballot": any_of(admin_or_secretary, about_me, by("created_by")),
    **{t: any_of(admin_or_secretary, honoured_by_partner, held_by_me) for t in ("voucher", "redemption")},
    "booking": any_of(community_member, about_me, by("booked_by")),
    "checkin": any_of(community_member, by("created_by")),
    "offer": any_of(community_member, by("keeper")),
    "match": any_of(PERSONAL, by("keeper")),
    "opinion": any_of(admin_or_secretary, by("created_by")),
    "fix_check": any_of(grid_staff, by("created_by")),
}


def expected(p: Principal, d: Doc) -> bool:
    """Nothing of another street or another database; nothing of a type the statement has no rule for."""
    if d.get("street") != p.street or DOC_TYPES[d["type"]].database != MAIN_DB:
        return False
    rule = READERS.get(d["type"])
    return rule is not None and rule(p, d)


# ---------------------------------------------------------------- against the rule

def test_every_user_sees_each_document_exactly_as_the_read_rules_say() -> None:
    wrong, seen, checked = [], 0, 0
    for type_name in sorted(DOC_TYPES):
        for doc in variants(type_name):
            for p in USERS.values():
                checked += 1
                answer = may_see(p, doc)
                seen += answer
                if answer != expected(p, doc):
                    wrong.append((type_name, p.user_id, answer, {k: v for k, v in doc.items()
                                                                 if v != base(type_name).get(k)}))
    assert not wrong, (len(wrong), wrong[:10])
    assert checked > 100_000 and checked // 10 < seen < checked // 2  # both answers well represented


def test_the_statement_has_a_rule_for_each_type_the_policy_shows() -> None:
    """A type the policy gains (or loses) must be stated above too; the three figures types and the pool's kept
    months are the server's."""
    main_types = {name for name, t in DOC_TYPES.items() if t.database == MAIN_DB}
    servers = {"figures_backlog", "figures_cell", "figures_snapshot", "pool_month"}
    assert set(READERS) == set(RULES) == main_types - servers
    assert {name for name, rule in READERS.items() if rule is everyone} == STREET_WIDE_TYPES


def test_a_document_without_a_type_or_of_an_unknown_type_reaches_nobody() -> None:
    for doc in ({"_id": "x", "street": S}, {"_id": "x", "type": "no_such_type", "street": S},
                {"_id": "x", "type": "figures_cell", "street": S, "community": C1}):
        assert not any(may_see(p, doc) for p in USERS.values()), doc
    assert may_see(USERS["user:admin"], {"_id": "x", "type": "street", "street": S})  # the positive control


def test_a_deletion_reaches_exactly_the_users_who_saw_the_document() -> None:
    """The server's tombstone keeps what the rules read (sync/README.md), so every phone that held the document
    receives its deletion and no other does."""
    for type_name in sorted(RULES):
        for doc in variants(type_name):
            stored = {**doc, "_rev": "3-abc", "name": "居民", "notes": "kept out of the tombstone"}
            gone = deletion(stored)
            assert gone["_deleted"] is True and gone["_rev"] == "3-abc" and gone["_id"] == doc["_id"]
            assert set(gone) <= {*VISIBILITY_FIELDS, "_id", "_rev", "_deleted"}
            for p in USERS.values():
                assert may_see(p, gone) == may_see(p, stored), (type_name, p.user_id, doc)


def test_a_volunteers_phone_never_holds_a_visit_recording_a_protected_field() -> None:
    """The volunteer who wrote a visit, or is assigned to it, has it on their phone until it records a protected
    value (sealed or not, here blood pressure); grid staff and the resident it is about still see it. The matrix
    above varies one field at a time, so it never names the volunteer and a protected value together."""
    volunteer, worker, resident = USERS["user:volunteer-g11"], USERS["user:worker-g11"], USERS["user:resident-r1"]
    for named in ("assigned_to", "created_by"):
        visit = {**base("visit"), named: volunteer.user_id, "resident": R1}
        assert may_see(volunteer, visit), named  # the positive control
        for value in ("sealed:xyz", "150/95"):
            recorded = {**visit, "blood_pressure": value}
            assert not may_see(volunteer, recorded), (named, value)
            assert may_see(worker, recorded) and may_see(resident, recorded), (named, value)


def test_a_principal_is_its_user_documents_roles_and_places() -> None:
    """Principal.of reads the user document; an organisation counts only on a partner's account."""
    worker = {"_id": "user:w", "roles": ["grid_worker", "volunteer"], "street": S, "communities": [C1],
              "grids": [G11, G12], "department": HEALTH, "resident": R1, "gateway": GW1, "organisation": SHOP}
    assert Principal.of(worker) == Principal("user:w", frozenset({Role.GRID_WORKER, Role.VOLUNTEER}), S,
                                             frozenset({C1}), frozenset({G11, G12}), HEALTH, R1, GW1, None)
    partner = {"_id": "user:p", "roles": ["partner"], "street": S, "organisation": SHOP}
    assert Principal.of(partner) == Principal("user:p", frozenset({Role.PARTNER}), S, organisation=SHOP)
    assert Principal.of({"_id": "user:bare"}) == Principal("user:bare", frozenset(), "")
