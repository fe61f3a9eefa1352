"""Who may see which document: the one routing policy.

The web pages, the sync gateway (what a phone receives) and the firewall
(what may be decrypted) all ask this module; none of them decides on its own.
A decision needs only the user and the document, never another lookup, so
that the sync gateway can apply it to every change in a feed. The offline app
asks nothing: its replica holds what `may_see` let through, and the answers it
needs beyond documents come as data (`offline_grids`, in /pwa/session.json).

Who may write what (`write_refusal`) also judges where a write places a document, against the documents it
names (its grid, household, resident, device, gateway, the people and phone it names): the caller fetches them
(`write_ref_ids`) and passes them in with its clock, so that this module stays pure.

Field-level rules (which tiers of a visible document a user may open) are
the firewall's, in `server/security/firewall.py`; this module answers the question
before that one: may the document reach the user at all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from server.domain import ballots, points, pool, timebank
from server.domain.declaration import CLIENT_WRITABLE, DOC_TYPES, MAIN_DB, PROTECTED_TIERS, TASK_ANSWERS, Role, Scope
from server.domain.errors import FieldError
from server.domain.i18n import translator

Doc = dict[str, Any]


@dataclass(frozen=True)
class Principal:
    """A signed-in user as access control sees them (built from their user document)."""

    user_id: str
    roles: frozenset[Role]
    street: str
    communities: frozenset[str] = frozenset()
    grids: frozenset[str] = frozenset()
    department: str | None = None
    resident: str | None = None
    gateway: str | None = None  # a BLE gateway account: the gateway it is
    organisation: str | None = None  # a partner account: the organisation it works for

    @classmethod
    def of(cls, user: Doc) -> Principal:
        return cls(user["_id"], frozenset(Role(r) for r in user.get("roles", [])), user.get("street", ""),
                   frozenset(user.get("communities", [])), frozenset(user.get("grids", [])),
                   user.get("department"), user.get("resident"), user.get("gateway"),
                   user.get("organisation") if Role.PARTNER.value in user.get("roles", []) else None)

    def has(self, *roles: Role) -> bool:
        return bool(self.roles.intersection(roles))


def _staff_of_community(p: Principal, doc: Doc) -> bool:
    return p.has(Role.ADMIN) or (p.has(Role.SECRETARY) and doc.get("community") in p.communities)


def _grid_staff(p: Principal, doc: Doc) -> bool:
    """The people responsible for a grid: admin, the community's secretary, the grid's worker."""
    return _staff_of_community(p, doc) or (p.has(Role.GRID_WORKER) and doc.get("grid") in p.grids)


def _users_own(p: Principal, doc: Doc) -> bool:
    return doc.get("user") == p.user_id


def _own(p: Principal, doc: Doc) -> bool:
    """A resident's own record and the documents about them."""
    return p.resident is not None and p.resident in (doc.get("_id"), doc.get("resident"))


def _street_wide(p: Principal, doc: Doc) -> bool:
    return doc.get("street") == p.street


def _community(p: Principal, doc: Doc) -> bool:
    return p.has(Role.ADMIN) or doc["_id"] in p.communities


def _grid(p: Principal, doc: Doc) -> bool:
    # Who sees a grid may open its page (online and offline); the page lists only what may_see gives them there:
    # a volunteer, the households assigned to them.
    return _staff_of_community(p, doc) or doc["_id"] in p.grids


def _household(p: Principal, doc: Doc) -> bool:
    return _grid_staff(p, doc) or (p.has(Role.VOLUNTEER) and p.user_id in doc.get("volunteers", []))


def _resident(p: Principal, doc: Doc) -> bool:
    # A volunteer's assigned households are named on the household; a resident document does not
    # repeat that list, so volunteers get residents through their tasks (needs), not wholesale.
    return _grid_staff(p, doc) or _own(p, doc)


def _carries_protected(doc: Doc) -> bool:
    """True if the document holds a value of a protected tier (sealed or not: a visit's blood pressure)."""
    return any(doc.get(name) is not None for name in DOC_TYPES[doc["type"]].fields_in(*PROTECTED_TIERS))


def _task(p: Principal, doc: Doc) -> bool:
    """Needs and visits: grid staff, the resident concerned, the volunteer assigned or who wrote it; a volunteer's
    phone never holds a protected field, not even sealed, so not a visit that records one."""
    return (_grid_staff(p, doc) or _own(p, doc)
            or (p.has(Role.VOLUNTEER) and p.user_id in (doc.get("assigned_to"), doc.get("created_by"))
                and not _carries_protected(doc)))


def _volunteer_task(p: Principal, doc: Doc) -> bool:
    """A volunteer's task: grid staff, and the volunteer it is assigned to (not the resident: it is staff's
    instruction to a volunteer)."""
    return _grid_staff(p, doc) or (p.has(Role.VOLUNTEER) and doc.get("assigned_to") == p.user_id)


def departments_of(doc: Doc) -> list[str]:
    """The departments a service request is with: the one it was dispatched to (`department`, by its category)
    and those whistled to it (`departments`, §3.2)."""
    return [d for d in (doc.get("department"), *doc.get("departments", [])) if isinstance(d, str)]


def _service_request(p: Principal, doc: Doc) -> bool:
    return (_grid_staff(p, doc) or _own(p, doc) or doc.get("created_by") == p.user_id
            or (p.has(Role.DEPARTMENT_STAFF) and p.department in departments_of(doc)))


def _personal(p: Principal, doc: Doc) -> bool:
    return _grid_staff(p, doc) or _own(p, doc)


def _alert(p: Principal, doc: Doc) -> bool:
    # Privacy mode: a resident may keep water/electricity anomalies between themselves and their grid worker.
    if doc.get("visibility") == "grid_worker_only":
        return (p.has(Role.GRID_WORKER) and doc.get("grid") in p.grids) or _own(p, doc)
    return _personal(p, doc)


def _audit(p: Principal, doc: Doc) -> bool:
    # Residents see who opened their own record (privacy view); nobody else below the secretary.
    return _staff_of_community(p, doc) or (p.resident is not None and doc.get("target") == p.resident)


def _secretary_only(p: Principal, doc: Doc) -> bool:
    return _staff_of_community(p, doc)


def _access_request(p: Principal, doc: Doc) -> bool:
    return _grid_staff(p, doc) or doc.get("requester") == p.user_id


def _gateway(p: Principal, doc: Doc) -> bool:
    return _staff_of_community(p, doc) or (p.gateway is not None and doc["_id"] == p.gateway)


def _of_this_gateway(p: Principal, doc: Doc) -> bool:
    """Documents naming the gateway account's own gateway: its devices' configuration and health."""
    return p.gateway is not None and doc.get("gateway") == p.gateway


def _device(p: Principal, doc: Doc) -> bool:
    # A gateway gets the configuration of the devices it reads, and nothing else about anyone.
    return _personal(p, doc) or _of_this_gateway(p, doc)


def _gateway_health(p: Principal, doc: Doc) -> bool:
    return _staff_of_community(p, doc) or _of_this_gateway(p, doc)


def _claim(p: Principal, doc: Doc) -> bool:
    """A time-bank claim: grid staff, who was helped, who claims."""
    return _personal(p, doc) or doc.get("created_by") == p.user_id


def _transfer(p: Principal, doc: Doc) -> bool:
    """A ledger transfer: the community's secretary and the holders of its two accounts."""
    mine = {p.user_id, p.resident, p.organisation} - {None}
    return _staff_of_community(p, doc) or bool(mine & {doc.get("from_account"), doc.get("to_account")})


def _of_community(p: Principal, doc: Doc) -> bool:
    """Everyone who works in the community (secretary, grid workers, volunteers: their accounts name it). A
    resident's account names no community: their pages check their own record's (server/services/deliberation.py)."""
    return p.has(Role.ADMIN) or doc.get("community") in p.communities


def _ballot(p: Principal, doc: Doc) -> bool:
    """Who chose what is the voter's and the secretary's (who recorded it, at the door, too) until the result is
    published, and the published result names receipts, not voters."""
    return _staff_of_community(p, doc) or _own(p, doc) or doc.get("created_by") == p.user_id


def _of_partner(p: Principal, doc: Doc) -> bool:
    """Vouchers and their redemptions: the community's secretary, the partner staff of the organisation that honours
    them, and (a voucher) the account that paid for it."""
    mine = {p.user_id, p.resident} - {None}
    return (_staff_of_community(p, doc) or (p.organisation is not None and doc.get("organisation") == p.organisation)
            or doc.get("holder") in mine)
def _secretary_or_author(p: Principal, doc: Doc) -> bool:
    return _staff_of_community(p, doc) or doc.get("created_by") == p.user_id


RULES: dict[str, Callable[[Principal, Doc], bool]] = {
    "street": _street_wide,
    "department": _street_wide,
    "service_category": _street_wide,
    "work_calendar": _street_wide,
    "community": _community,
    "grid": _grid,
    "household": _household,
    "resident": _resident,
    "visit": _task,
    "need": _task,
    "task": _volunteer_task,
    "service_request": _service_request,
    "alert": _alert,
    "device": _device,
    "safety_rules": _device,
    "device_health": _device,
    "gateway": _gateway,
    "gateway_health": _gateway_health,
    "notification": _secretary_only,
    "reading": _personal,
    "audit_entry": _audit,
    "audit_checkpoint": _secretary_only,
    "access_request": _access_request,
    # A wrapped key for one phone: its user's, and nobody else's (not even a secretary's).
    "key_grant": _users_own,
    "index_grant": _users_own,  # retired: only deletions remain, and they reach the phone that held the key
    "access_report": lambda p, doc: doc.get("created_by") == p.user_id,
    "survey_response": lambda p, doc: _staff_of_community(p, doc) or doc.get("created_by") == p.user_id,
    "privacy": _personal,
    # Wrapped under the community's tier keys, which never leave the server: useless without a grant.
    "data_key": _grid_staff,
    # The time bank (issue 16).
    "organisation": _street_wide,
    "claim": _claim,
    "transfer": _transfer,
    # Deliberation (issue 15): matters and their results are the community's; the frozen roll names households
    # and residents, so it is the secretary's.
    "matter": _of_community,
    "matter_result": _of_community,
    "matter_roll": _secretary_only,
    "ballot": _ballot,
    # Points and rewards (issue 16 item 4): the catalogue is the street's; vouchers and redemptions the partner's.
    "reward": _street_wide,
    "voucher": _of_partner,
    "redemption": _of_partner,
    # The resource pool (issue 17): what there is to book is no secret; a booking and its check-in are the
    # community workers' and whoever booked.
    "resource": _street_wide,
    "booking": lambda p, doc: _of_community(p, doc) or _own(p, doc) or doc.get("booked_by") == p.user_id,
    "checkin": lambda p, doc: _of_community(p, doc) or doc.get("created_by") == p.user_id,
    # Matching (issue 17): offers are the community's to see; a match, its need's grid staff, its resident and
    # whoever answers for the offer (what it shows of the need is only what the match needs: declaration).
    "offer": lambda p, doc: _of_community(p, doc) or doc.get("keeper") == p.user_id,
    "match": lambda p, doc: _personal(p, doc) or doc.get("keeper") == p.user_id,
    # Hearings and meetings (issue 15 item 8): published to the community, like matters (a draft too: the secretary
    # drafts it for the community's staff; residents' pages show published ones only). Opinions reach no replica
    # but their author's: the meeting page shows the community those not hidden. Who attended is the person's and
    # their grid staff's; the community reads the count and the names of those who agreed.
    "meeting": _of_community,
    "opinion": _secretary_or_author,
    "attendance": _personal,
    # Supervision and evaluation (issue 18): a mediation is grid staff's (the parties are sealed in it); service
    # projects, their evaluations and the survey's sample are the community's.
    "mediation": _grid_staff,
    "service_project": _of_community,
    "project_evaluation": _of_community,
    "survey_sample": _of_community,
    "fix_check": lambda p, doc: _grid_staff(p, doc) or doc.get("created_by") == p.user_id,
}

# Types every user of the street sees, whoever they are (the sync gateway's live fan-out, sync/audience.py).
STREET_WIDE_TYPES = frozenset(name for name, rule in RULES.items() if rule is _street_wide)


def may_see(p: Principal, doc: Doc) -> bool:
    """True if the document may reach this user (page, replica or API answer).

    Unknown types and documents of other databases (accounts) are never visible:
    a type without a rule is refused, so adding a type cannot leak it by default.
    """
    doc_type = DOC_TYPES.get(doc.get("type", ""))
    if doc_type is None or doc_type.database != MAIN_DB or doc.get("street") != p.street:
        return False
    rule = RULES.get(doc_type.name)
    return rule is not None and rule(p, doc)


# Every field a rule above reads. A deletion keeps these in its tombstone so that the
# deletion reaches exactly the phones that had the document (see sync/README.md).
VISIBILITY_FIELDS = ("type", "street", "community", "grid", "volunteers", "assigned_to", "created_by", "resident",
                     "department", "departments", "target", "gateway", "visibility", "requester", "user",
                     "from_account", "to_account", "organisation", "holder", "booked_by", "keeper")


def deletion(doc: Doc) -> Doc:
    """The server's deletion of a document: it keeps the fields routing reads, so that it reaches exactly
    the phones that had the document (the sync gateway keeps them for phones' deletions the same way)."""
    return {**{name: doc[name] for name in VISIBILITY_FIELDS if name in doc}, "_id": doc["_id"], "_rev": doc["_rev"],
            "_deleted": True}


# ---------------------------------------------------------------- writes

Refs = Mapping[str, Doc]  # the documents a write names (`write_ref_ids`), by id; one not there does not exist


def _service_request_write(p: Principal, doc: Doc) -> bool:
    """As `_service_request`, but its author only a volunteer in their own grids, not anyone anywhere."""
    return (_grid_staff(p, doc) or _own(p, doc)
            or (p.has(Role.VOLUNTEER) and doc.get("created_by") == p.user_id and doc.get("grid") in p.grids)
            or (p.has(Role.DEPARTMENT_STAFF) and p.department in doc.get("departments", [])))


def _admin(p: Principal, doc: Doc) -> bool:
    return p.has(Role.ADMIN)


def _reported_by_gateway(p: Principal, doc: Doc) -> bool:
    """A gateway creates readings and alerts in the grids it serves (it cannot read them back)."""
    return p.has(Role.GATEWAY) and doc.get("grid") in p.grids


# Who may write which type, by role and place. The declaration marks the types phones and gateways may write
# (`client_writable`); every other type is written by the server only (filing log, approvals, grants, keys):
# no client can forge one. What a write names beyond its place is checked by `_placement_refusal` below.
WRITE_RULES: dict[str, Callable[[Principal, Doc], bool]] = {
    "street": _admin,
    "department": _admin,
    "community": _admin,
    "grid": _staff_of_community,
    "gateway": _staff_of_community,
    "household": _grid_staff,
    "resident": _grid_staff,
    "visit": _task,
    "need": _task,
    "task": _volunteer_task,  # the volunteer only answers it (_task_answer_refusal)
    "service_request": _service_request_write,
    "device": _grid_staff,
    "alert": lambda p, doc: _grid_staff(p, doc) or _reported_by_gateway(p, doc),
    "reading": lambda p, doc: _grid_staff(p, doc) or _reported_by_gateway(p, doc),
    "safety_rules": _grid_staff,
    "device_health": lambda p, doc: _reported_by_gateway(p, doc) and _of_this_gateway(p, doc),
    "gateway_health": lambda p, doc: p.has(Role.GATEWAY) and _of_this_gateway(p, doc),
    # A phone reports what it opened offline, in the grids it works in (filed by the server, server/security/filing.py).
    "access_report": lambda p, doc: doc.get("created_by") == p.user_id and _grid_staff(p, doc),
    # Who helped claims hours in the grid they work in (which task, and that it was theirs: _claim_refusal).
    "claim": lambda p, doc: (doc.get("created_by") == p.user_id and p.has(Role.VOLUNTEER, Role.GRID_WORKER)
                             and doc.get("grid") in p.grids),
    # A grid worker records a household's ballot at the door, in their grid (_ballot_refusal); every other ballot
    # is written by the server (the voter's own vote, paper ballots: server/services/deliberation.py).
    "ballot": lambda p, doc: (p.has(Role.GRID_WORKER) and doc.get("channel") == "door"
                              and doc.get("community") in p.communities),
    # A partner's staff honours a voucher of their organisation, on their phone offline too (_redemption_refusal).
    "redemption": lambda p, doc: (p.has(Role.PARTNER) and p.organisation is not None
                                  and doc.get("organisation") == p.organisation and doc.get("created_by") == p.user_id),
    # Who works in a community books and checks in from a phone, offline too, as themselves (_pool_refusal says
    # what a booking and a check-in must be); a resident books for their own household (naming their own record,
    # whose community the booking must be in: _link_refusal), offline too, and checks in to their own bookings by
    # the venue's code from their phone.
    "booking": lambda p, doc: doc.get("booked_by") == p.user_id and (
        _works_in_community(p, doc) or (p.resident is not None and doc.get("resident") == p.resident)),
    "checkin": lambda p, doc: doc.get("created_by") == p.user_id and (_works_in_community(p, doc)
                                                                      or p.has(Role.RESIDENT)),
    # The grid worker records a reporter's "is it really fixed?" answer offline (applied by the server, issue 18).
    "fix_check": lambda p, doc: (doc.get("created_by") == p.user_id and p.has(Role.GRID_WORKER)
                                 and doc.get("grid") in p.grids),
    # Volunteers and grid workers write down a sampled household's survey answer at the door, offline too
    # (survey_door_refusal says what it must be, online and through the sync gateway alike; issue 18).
    "survey_response": lambda p, doc: (doc.get("created_by") == p.user_id and p.has(Role.VOLUNTEER, Role.GRID_WORKER)
                                       and doc.get("channel") == "door"),
}
assert set(WRITE_RULES) == CLIENT_WRITABLE, "a write rule for each type the declaration lets clients write, no other"

OUTSIDE_SCOPE = "this document is outside what you may see"
# Where a document is and whom it is with: only the server moves it (a request's departments are set by dispatch
# and by the secretary's whistle), so that no writer can hand a document to others or take it out of sight.
PLACEMENT_FIELDS = ("street", "community", "grid", "department", "departments")

# Fields naming whoever did something to the document: when a write sets or changes one, it is the writer.
AUTHOR_FIELDS = ("created_by", "updated_by", "acknowledged_by", "owner", "handled_by", "booked_by")
# Fields naming people a document is shown to (`may_see` reads them): each one a user who works where it is.
AUDIENCE_FIELDS = ("volunteers", "assigned_to")
# Fields only the server sets (a request's dispatch and deadlines, server/services/service_requests.py intake and
# whistle): a client may keep the stored value or leave it out, never set its own.
SERVER_SET_FIELDS = {"service_request": ("department", "departments", "whistles", "due_respond", "due_close",
                                         "accepted", "on_site"),
                     # A claim's answer is the server's record of the resident's (server/services/timebank.py).
                     "claim": ("decided_by", "decided_at", "consent", "dispute_note", "transfer",
                               "in_person_refused"),
                     # Which server process is filing a phone's offline access report (server/security/filing.py).
                     "access_report": ("filing_claimed_at", "filing_from_seq"),
                     # The keeper's decision and the waitlist are the server's (server/services/pool.py).
                     "booking": ("decided_by", "decided_at", "waitlist")}
# Datetimes that lie ahead by design (deadlines); every other datetime a client sets says when something happened.
DEADLINES = frozenset({"due_respond", "due_close", "slot_start"})  # slot_start: the hour a booking is for
# How far a client's clock may run ahead of the server's, and how long a phone or a gateway may hold unsent work
# (visits, household edits, access reports, readings): one bound for every type, since every client-written type is
# written by a phone or a gateway that may be out of reach, and none is dated later than it is stored except by a
# clock gone wrong or a forgery. An access report is also not older than the phone key it was opened with.
CLOCK_SKEW = dt.timedelta(minutes=10)
MAX_OFFLINE = dt.timedelta(days=90)


def server_only_changes(old: Doc | None, new: Doc) -> list[str]:
    """The server-only fields (declaration `server_only`: e.g. the key a device's readings are sealed to) that
    `new` sets or changes over `old`: no client write may, whoever the writer."""
    doc_type = DOC_TYPES.get(new.get("type", ""))
    if doc_type is None:
        return []
    before = old or {}
    return [name for name, spec in doc_type.fields.items() if spec.server_only and new.get(name) != before.get(name)]


def write_refusal(p: Principal, old: Doc | None, new: Doc, refs: Refs, now: dt.datetime) -> str | None:
    """Why this user may not store `new` over `old` (the current version, None if new); None if they may.

    `refs` holds the documents `new` names (fetch `write_ref_ids(new)`); `now` is the server's clock.
    Checks the writer's rights and where the document places itself; the schema is `domain.validate`'s job.
    """
    type_name = new.get("type")
    if not isinstance(type_name, str) or type_name not in CLIENT_WRITABLE:
        return f"{type_name or 'untyped'} documents are written by the server only"
    changed = server_only_changes(old, new)
    if changed:
        return f"{', '.join(changed)} of a {type_name} are set by the server only"
    if old is not None:
        if not may_see(p, old):
            return OUTSIDE_SCOPE
        if old.get("type") != type_name:
            return "a document's type may not change"
        moved = [name for name in PLACEMENT_FIELDS if old.get(name) != new.get(name)]
        if moved:
            return "a document may not move to another " + ", ".join(moved)
        if old.get("created_by") != new.get("created_by"):
            return "created_by may not change"
    elif "created_by" in DOC_TYPES[type_name].fields and new.get("created_by") != p.user_id:
        return "created_by must be the writer's own user id"
    if new.get("street") != p.street or not WRITE_RULES[type_name](p, new):
        return f"your role may not write this {type_name} here"
    return _placement_refusal(p, old, new, refs, now)


def may_write(p: Principal, old: Doc | None, new: Doc, refs: Refs, now: dt.datetime) -> bool:
    """True if this user may store `new` over `old` (see write_refusal for the reason when not)."""
    return write_refusal(p, old, new, refs, now) is None


def _changed(old: Doc | None, new: Doc, name: str) -> bool:
    """True if the write sets this field to something other than what is stored (a stored value was checked
    when it was written, or written by the server)."""
    return new.get(name) is not None and (old is None or old.get(name) != new.get(name))


@cache
def _ref_fields(type_name: str) -> list[str]:
    """The fields of a type naming main-database documents (households, residents, devices, gateways, …)."""
    return [name for name, spec in DOC_TYPES[type_name].fields.items()
            if spec.ref and DOC_TYPES[spec.ref].database == MAIN_DB]


def write_ref_ids(new: Doc) -> set[str]:
    """The ids of the documents write_refusal needs in `refs` to judge storing `new` (from either database)."""
    type_name = new.get("type")
    if not isinstance(type_name, str) or type_name not in DOC_TYPES:
        return set()
    scope = DOC_TYPES[type_name].scope
    named = [new.get("grid") if scope == Scope.GRID else new.get("community") if scope == Scope.COMMUNITY else None,
             new.get("community") if type_name == "grid" else None]
    for name in [*_ref_fields(type_name), *AUDIENCE_FIELDS, "phone_key", "task"]:
        value = new.get(name)
        named += value if isinstance(value, list) else [value]
    if type_name == "ballot" and isinstance(new.get("matter"), str) and ":" in new["matter"]:
        named.append(ballots.card_id(new["matter"], str(new.get("voter"))))  # its voting card (accounts database)
    if type_name == "claim" and isinstance(new.get("resident"), str):  # a code typed in person: their codes
        named.append(timebank.ledger_lock_id(new["resident"]))
    if type_name == "survey_response" and isinstance(new.get("community"), str):  # the month's sample
        named.append(survey_sample_id(new["community"], str(new.get("month"))))
    return {i for i in named if isinstance(i, str) and i != new.get("_id")}  # not yet validated: anything may be here


def _found(refs: Refs, doc_id: str, type_name: str) -> Doc | None:
    doc = refs.get(doc_id)
    return doc if doc is not None and not doc.get("_deleted") and doc.get("type") == type_name else None


def _within(inner: Doc, outer: Doc) -> bool:
    """True if `inner` sits inside `outer`'s place (every routing field of both scopes equal: a community's
    document may name a household of any of its grids)."""
    shared = set(DOC_TYPES[outer["type"]].routing)
    return all(inner.get(name) == outer.get(name) for name in DOC_TYPES[inner["type"]].routing if name in shared)


def _place_refusal(new: Doc, refs: Refs) -> str | None:
    """A new document's street, community and grid must be one place: its grid is of its community, and so on."""
    doc_type = DOC_TYPES[new["type"]]
    own = {"street": "street", "community": "community", "grid": "grid"}.get(doc_type.name)
    if own and new.get(own) != new.get("_id"):
        return f"a {own}'s {own} field must be its own id"
    place = {Scope.GRID: "grid", Scope.COMMUNITY: "community"}.get(doc_type.scope)
    if place == own:  # a grid sits in its community, a community in its street (the writer's)
        place = "community" if own == "grid" else None
    if place and _found(refs, new.get(place, ""), place) is None:
        return f"there is no {place} {new.get(place)}"
    if place and not _within(refs[new[place]], new):
        return f"{new[place]} is not in this document's " + ("community" if place == "grid" else "street")
    return None


def _links(new: Doc) -> dict[str, str]:
    """The household and resident a document is about (a household or resident document: itself)."""
    links = {name: new[name] for name in ("household", "resident") if isinstance(new.get(name), str)}
    if new.get("type") in ("household", "resident"):
        links[new["type"]] = new["_id"]
    return links


def _link_refusal(p: Principal, old: Doc | None, new: Doc, refs: Refs) -> str | None:
    """Every document a write names sits where the write does, and agrees with it about the household and
    resident it concerns (a visit's resident lives in its household, a reading's device is that resident's)."""
    links = _links(new)
    names = _ref_fields(new["type"])
    relinked = any(_changed(old, new, name) for name in names)  # then every link must agree with the new one
    for name in names:
        if new.get(name) is None or not relinked:
            continue
        values = new[name] if isinstance(new[name], list) else [new[name]]
        target = DOC_TYPES[new["type"]].fields[name].ref
        for value in values:
            named = _found(refs, value, target)
            if named is None:
                return f"{name}: there is no {value}"
            if not _within(named, new):
                return f"{name}: {value} is elsewhere"
            mismatch = [k for k, v in links.items() if named.get(k, v) != v]
            if mismatch:
                return f"{name}: {value} belongs to another " + ", ".join(mismatch)
    if p.gateway is not None and not _staff(p):
        # A gateway account writes about its own gateway and the devices it reads, nothing else.
        if new.get("gateway") not in (None, p.gateway):
            return "a gateway writes only its own documents"
        device = refs.get(new.get("device") or "")
        if device is not None and device.get("gateway") != p.gateway:
            return f"{new['device']} is not read by this gateway"
    return None


def _staff(p: Principal) -> bool:
    return p.has(Role.ADMIN, Role.SECRETARY, Role.GRID_WORKER)


def _works_in(user: Doc | None, doc: Doc, *roles: Role) -> bool:
    """True if this user document is an active account of one of these roles, assigned to doc's grid (or, for a
    secretary, its community)."""
    if user is None or user.get("type") != "user" or not user.get("active") or user.get("street") != doc.get("street"):
        return False
    held = set(user.get("roles", [])) & {r.value for r in roles}
    return bool(held & {Role.VOLUNTEER.value, Role.GRID_WORKER.value} and doc.get("grid") in user.get("grids", [])
                or Role.SECRETARY.value in held and doc.get("community") in user.get("communities", []))


def _people_refusal(p: Principal, old: Doc | None, new: Doc, refs: Refs) -> str | None:
    """Who a write says acted is the writer; who it shows the document to works where it is."""
    for name in AUTHOR_FIELDS:
        if _changed(old, new, name) and new[name] != p.user_id:
            return f"{name} must be the writer's own user id"
    added = set(new.get("volunteers") or []) - set((old or {}).get("volunteers") or [])
    if any(not _works_in(refs.get(user), new, Role.VOLUNTEER) for user in added):
        return "volunteers: each must be a volunteer of this grid"
    if _changed(old, new, "assigned_to") and not _works_in(refs.get(new["assigned_to"]), new, Role.VOLUNTEER,
                                                          Role.GRID_WORKER, Role.SECRETARY):
        return "assigned_to: must be a volunteer, grid worker or secretary working here"
    if new["type"] in ("visit", "need") and not (_staff(p) or _own(p, new)):
        # A volunteer writes tasks about the households they look after, or one a worker assigned to them.
        household = _found(refs, new.get("household") or "", "household")
        assigned = old is not None and old.get("assigned_to") == p.user_id
        if not assigned and (household is None or p.user_id not in household.get("volunteers", [])):
            return "a volunteer writes only about the households they look after"
    if new["type"] == "task":
        refusal = _task_answer_refusal(p, old, new, refs)
        if refusal:
            return refusal
    if new["type"] == "access_report":
        phone = refs.get(new.get("phone_key") or "")
        if phone is None or phone.get("type") != "phone_key" or phone.get("user") != p.user_id:
            return "phone_key: must be one of the writer's own phones"
    for name in SERVER_SET_FIELDS.get(new["type"], ()):
        if _changed(old, new, name):
            return f"{name} is set by the server"
    return None


# What the volunteer a task is assigned to may change of it: its state (TASK_ANSWERS) and their note.
TASK_ANSWER_FIELDS = ("status", "volunteer_note", "updated_at")


def _task_answer_refusal(p: Principal, old: Doc | None, new: Doc, refs: Refs) -> str | None:
    """A task goes to a volunteer of its grid; that volunteer answers it (accepts, marks it done with a note or
    declines with a reason) and changes nothing else; only grid staff assign, edit or re-open it."""
    if _changed(old, new, "assigned_to") and not _works_in(refs.get(new["assigned_to"]), new, Role.VOLUNTEER):
        return "assigned_to: a task goes to a volunteer of its grid"
    if _staff(p):
        return None
    if old is None or old.get("assigned_to") != p.user_id:
        return "a volunteer answers only the tasks assigned to them"
    changed = sorted(k for k in {*old, *new} - {"_rev", "_revisions"} if old.get(k) != new.get(k))
    if any(k not in TASK_ANSWER_FIELDS for k in changed):
        return "a volunteer changes only a task's state and their note"
    if new.get("status") != old.get("status") and new.get("status") not in TASK_ANSWERS.get(old.get("status"), ()):
        return f"a task {old.get('status')} may not become {new.get('status')}"
    if new.get("status") in ("done", "declined") and not str(new.get("volunteer_note") or "").strip():
        return "volunteer_note: a task done or declined says how it went, or why"
    return None


def _time_refusal(old: Doc | None, new: Doc, refs: Refs, now: dt.datetime) -> str | None:
    """Every time a write sets says when something happened: not ahead of the server's clock (beyond clock skew),
    not before the longest a client may stay offline; an access report not before its phone key existed."""
    earliest = now - MAX_OFFLINE
    for name, spec in DOC_TYPES[new["type"]].fields.items():
        if spec.kind != "datetime" or name in DEADLINES or not _changed(old, new, name):
            continue
        try:
            when = dt.datetime.fromisoformat(new[name])
        except (TypeError, ValueError):
            return f"{name} is not a date and time"
        if when.tzinfo is None:
            return f"{name} must carry its offset from UTC"
        if when > now + CLOCK_SKEW:
            return f"{name} is in the future"
        phone = refs.get(new.get("phone_key") or "") if new["type"] == "access_report" else None
        since = max(earliest, dt.datetime.fromisoformat(phone["created_at"]) - CLOCK_SKEW) if phone else earliest
        if when < since:
            return f"{name} is implausibly old"
    return None


def _claim_refusal(p: Principal, old: Doc | None, new: Doc, refs: Refs, now: dt.datetime) -> str | None:
    """A claim is made once, as claimed, for a task its writer did, about the resident that task was for; what
    happens to it next is the server's (the resident's answer, expiry), so no client edits or deletes one."""
    if new["type"] != "claim":
        return None
    if old is not None:
        return "a claim is not changed once made: the resident confirms or disputes it"
    refused = claim_person_refusal(p, new, refs, now)
    return translator("en")(*refused) if refused else None


def ballot_write_refusal(p: Principal, old: Doc | None, new: Doc, refs: Refs,
                         now: dt.datetime) -> tuple[FieldError, int] | None:
    """A ballot at the door, judged by the one ballot rule (server/domain/ballots.py) against its matter, the
    voter's household and voting card (the card, made from the frozen roll, is the voter's roll entry here). A
    ballot is never changed: a second one for the voter arrives as a conflicting branch, judged as new."""
    if old is not None:
        return FieldError("(document)", "vote_ballot_kept", {}), 409
    card = _found(refs, ballots.card_id(str(new.get("matter")), str(new.get("voter"))), "voting_card")
    return ballots.ballot_refusal(new, _found(refs, str(new.get("matter")), "matter"), card, now, writer=p.user_id,
                                  writer_grids=p.grids, household=_found(refs, new.get("household") or "", "household"),
                                  card=card)


def _ballot_refusal(p: Principal, old: Doc | None, new: Doc, refs: Refs, now: dt.datetime) -> str | None:
    refused = ballot_write_refusal(p, old, new, refs, now) if new["type"] == "ballot" else None
    return refused[0].text("en") if refused else None


def _redemption_refusal(old: Doc | None, new: Doc, refs: Refs) -> str | None:
    """A redemption is of one voucher, under the id made from it, with its voucher's reward, organisation and place
    (and holder, if it names one: a phone that did not hold the voucher cannot); it is never edited. A second one
    (another phone, offline) arrives as a branch of the first: kept as a conflict, the second use refused and shown
    (server/services/rewards.py used_twice), never merged away."""
    if new["type"] != "redemption":
        return None
    if old is not None and not (str(new.get("_rev", "")).startswith("1-") and new.get("_rev") != old.get("_rev")):
        return "a redemption is not changed once made"
    voucher = refs.get(new["voucher"]) if isinstance(new.get("voucher"), str) else None
    if voucher is None or voucher.get("type") != "voucher" or voucher.get("_deleted"):
        return "a redemption names a voucher that exists"
    if new["_id"] != points.redemption_id(voucher["_id"]) or any(
            new.get(k) != voucher.get(k) for k in ("reward", "organisation", "street", "community")) or (
            "holder" in new and new["holder"] != voucher.get("holder")):
        return "a redemption is its voucher's: its id, reward, organisation, place and holder"
    if new.get("voided") is not None:
        return "only the server voids a voucher (its debit reversed)"
    return None
def survey_sample_id(community: str, month: str) -> str:
    return f"survey_sample:{community.split(':', 1)[-1]}:{month}"


def door_answer_id(household: Doc, month: str) -> str:
    """A sampled household's door answer for a month: one id, so a second (another phone) is a conflict."""
    return f"survey_response:{household['community'].split(':', 1)[1]}:{month}:door-{household['_id'].split(':', 1)[1]}"


def survey_door_refusal(p: Principal, new: Doc, household: Doc | None,
                        sample: Doc | None) -> tuple[str, str, int] | None:
    """(field, message key, status) why a survey answer written down at the door may not be stored, None if it
    may: the household is in its month's sample, of a grid the writer works in, its resident consented, the score
    is 1-5, under the household's id for the month. One rule for the page (server/services/survey.py
    answer_at_door) and for a phone's answer offline (write_refusal, through the sync gateway)."""
    sampled = {e.get("household") for e in (sample or {}).get("households", [])}
    if household is None or sample is None or household["_id"] not in sampled:
        return "household", "err_survey_not_sampled", 400
    if not (p.has(Role.VOLUNTEER, Role.GRID_WORKER) and household.get("grid") in p.grids and may_see(p, household)
            and household.get("community") == new.get("community") == sample.get("community")):
        return "household", "err_survey_not_yours", 403
    if new.get("consent") is not True:
        return "consent", "err_survey_consent", 400
    overall = new.get("overall")
    if not (isinstance(overall, int) and not isinstance(overall, bool) and 1 <= overall <= 5):
        return "overall", "err_survey_overall", 400
    if new.get("_id") != door_answer_id(household, str(sample.get("month"))) or new.get("channel") != "door":
        return "household", "err_survey_not_sampled", 400
    return None


def survey_write_refusal(p: Principal, new: Doc, refs: Refs) -> tuple[str, str, int] | None:
    """survey_door_refusal for a new answer from a phone, its household and sample from `refs` (write_ref_ids)."""
    return survey_door_refusal(p, new, _found(refs, str(new.get("household")), "household"),
                               _found(refs, survey_sample_id(str(new.get("community")), str(new.get("month"))),
                                      "survey_sample"))


def _survey_refusal(p: Principal, old: Doc | None, new: Doc, refs: Refs) -> str | None:
    if new["type"] != "survey_response":
        return None
    if old is not None:
        return "a survey answer is not changed once given"
    refused = survey_write_refusal(p, new, refs)
    return translator("en")(refused[1], month=str(new.get("month"))) if refused else None


def _works_in_community(p: Principal, doc: Doc) -> bool:
    return p.has(Role.GRID_WORKER, Role.VOLUNTEER, Role.SECRETARY) and doc.get("community") in p.communities


def _pool_refusal(p: Principal, old: Doc | None, new: Doc, refs: Refs, now: dt.datetime) -> str | None:
    """A booking takes a free slot by the resource's rules, or cancels the writer's own; a booking of a slot
    someone else holds is refused as an edit, and kept as a conflicting branch when made offline (it does not
    descend from theirs): a person resolves it. A check-in is made once, by the venue's code or the keeper."""
    t = translator("en")
    if new["type"] == "checkin":
        if old is not None:
            return "a check-in is not changed once made"
        booking, resource = refs.get(new.get("booking") or ""), refs.get(new.get("resource") or "")
        refused = pool.checkin_refusal(p.user_id, _staff(p), new, booking, resource)
        return t(*refused) if refused else None
    if new["type"] != "booking":
        return None
    held = old is not None and old.get("status") in pool.ACTIVE
    if held and pool.descends_from(new, old):
        if old.get("booked_by") != p.user_id:
            return t("pool_slot_taken")
        changed = {k for k in {*old, *new} - {"_rev", "_revisions"} if old.get(k) != new.get(k)}
        return None if changed <= {"status"} and new.get("status") == "cancelled" else t("pool_not_active")
    if new.get("resident") not in (None, p.resident):  # a phone books as its user, never in another's name
        return "a phone's booking names no resident but its own user's"
    kinds = pool.booker_kinds(p.roles, resident=new.get("resident") is not None)
    refused = pool.booking_refusal(new, refs.get(new.get("resource") or ""), kinds, now)
    return t(*refused) if refused else None


def claim_person_refusal(p: Principal, claim: Doc, refs: Refs, now: dt.datetime | None = None
                         ) -> tuple[str, dict[str, Any]] | None:
    """The time bank's own reason to refuse a new claim (server/domain/timebank.py claim_refusal), as a message key
    and its parameters: what the sync gateway tells the phone, in its person's language."""
    task = refs.get(claim["task"]) if isinstance(claim.get("task"), str) else None
    lock = refs.get(timebank.ledger_lock_id(claim["resident"])) if isinstance(claim.get("resident"), str) else None
    return timebank.claim_refusal(p.user_id, claim, task, lock, now)


def _placement_refusal(p: Principal, old: Doc | None, new: Doc, refs: Refs, now: dt.datetime) -> str | None:
    return ((_place_refusal(new, refs) if old is None else None) or _link_refusal(p, old, new, refs)
            or _people_refusal(p, old, new, refs) or _claim_refusal(p, old, new, refs, now)
            or _ballot_refusal(p, old, new, refs, now) or _redemption_refusal(old, new, refs)

            or _pool_refusal(p, old, new, refs, now) or _time_refusal(old, new, refs, now)
            or _survey_refusal(p, old, new, refs))


def offline_grids(p: Principal, grids: Iterable[Doc]) -> dict[str, list[str]]:
    """What the offline app needs of these rules, as data (/pwa/session.json) rather than a copy of them: the ids
    of the grids whose pages p may open (`may_see` on the grid) and, of those, the grids whose households p may
    edit, whose alerts p may act on and where p assigns volunteers' tasks (`WRITE_RULES`; a grid's documents share
    its street, community and grid, all the rules read)."""
    browsable = [g for g in grids if may_see(p, g)]

    def writable(type_name: str) -> list[str]:
        rule = WRITE_RULES[type_name]
        return sorted(g["_id"] for g in browsable
                      if rule(p, {"street": g["street"], "community": g["community"], "grid": g["_id"]}))

    return {"browse": sorted(g["_id"] for g in browsable), "edit_households": writable("household"),
            "act_on_alerts": writable("alert"), "assign_tasks": writable("task")}


# Who works offline (PRODUCT.md "Who uses it"): grid workers and volunteers on phones in basements and old estates,
# residents on their own phones, a partner's staff honouring vouchers at their counter (issue 16). Secretaries,
# department staff and the administrator work at a desk, online: their browsers keep no replica and show no sync
# bar (base.html, pwa/sw.js).
OFFLINE_ROLES = frozenset({Role.GRID_WORKER, Role.VOLUNTEER, Role.RESIDENT, Role.PARTNER})


def works_offline(p: Principal) -> bool:
    return p.has(*OFFLINE_ROLES)
