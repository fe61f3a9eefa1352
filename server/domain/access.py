"""Who may see which document: the one routing policy.

The web pages, the sync gateway (what a phone receives) and the firewall
(what may be decrypted) all ask this module; none of them decides on its own.
A decision needs only the user and the document, never another lookup, so
that the sync gateway can apply it to every change in a feed. The offline app
asks nothing: its replica holds what `may_see` let through, and the answers it
needs beyond documents come as data (`offline_grids`, in /pwa/session.json).

Field-level rules (which tiers of a visible document a user may open) are
the firewall's, in `server/security/firewall.py`; this module answers the question
before that one: may the document reach the user at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from server.domain.declaration import DOC_TYPES, MAIN_DB, Role

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

    @classmethod
    def of(cls, user: Doc) -> Principal:
        return cls(user["_id"], frozenset(Role(r) for r in user.get("roles", [])), user.get("street", ""),
                   frozenset(user.get("communities", [])), frozenset(user.get("grids", [])),
                   user.get("department"), user.get("resident"), user.get("gateway"))

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


def _task(p: Principal, doc: Doc) -> bool:
    """Needs and visits: grid staff, the resident concerned, the volunteer assigned or who wrote it."""
    return (_grid_staff(p, doc) or _own(p, doc)
            or (p.has(Role.VOLUNTEER) and p.user_id in (doc.get("assigned_to"), doc.get("created_by"))))


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
    "index_grant": _users_own,
    "access_report": lambda p, doc: doc.get("created_by") == p.user_id,
    "survey_response": lambda p, doc: _staff_of_community(p, doc) or doc.get("created_by") == p.user_id,
    "privacy": _personal,
    # Wrapped under the community's tier keys, which never leave the server: useless without a grant.
    "data_key": _grid_staff,
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
                     "department", "departments", "target", "gateway", "visibility", "requester", "user")


def deletion(doc: Doc) -> Doc:
    """The server's deletion of a document: it keeps the fields routing reads, so that it reaches exactly
    the phones that had the document (the sync gateway keeps them for phones' deletions the same way)."""
    return {**{name: doc[name] for name in VISIBILITY_FIELDS if name in doc}, "_id": doc["_id"], "_rev": doc["_rev"],
            "_deleted": True}


# ---------------------------------------------------------------- writes

def _admin(p: Principal, doc: Doc) -> bool:
    return p.has(Role.ADMIN)


def _reported_by_gateway(p: Principal, doc: Doc) -> bool:
    """A gateway creates readings and alerts in the grids it serves (it cannot read them back)."""
    return p.has(Role.GATEWAY) and doc.get("grid") in p.grids


# Who may write which type. A type without a rule is written by the server only
# (filing log, approvals, grants, keys): no phone can forge one.
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
    "service_request": _service_request,
    "device": _grid_staff,
    "alert": lambda p, doc: _grid_staff(p, doc) or _reported_by_gateway(p, doc),
    "reading": lambda p, doc: _grid_staff(p, doc) or _reported_by_gateway(p, doc),
    "safety_rules": _grid_staff,
    "device_health": lambda p, doc: _reported_by_gateway(p, doc) and _of_this_gateway(p, doc),
    "gateway_health": lambda p, doc: p.has(Role.GATEWAY) and _of_this_gateway(p, doc),
    # A phone reports what it opened offline, in the grids it works in (filed by the server, server/security/filing.py).
    "access_report": lambda p, doc: doc.get("created_by") == p.user_id and _grid_staff(p, doc),
}

OUTSIDE_SCOPE = "this document is outside what you may see"
# Where a document is and whom it is with: only the server moves it (a request's departments are set by dispatch
# and by the secretary's whistle), so that no writer can hand a document to others or take it out of sight.
PLACEMENT_FIELDS = ("street", "community", "grid", "department", "departments")


def write_refusal(p: Principal, old: Doc | None, new: Doc) -> str | None:
    """Why this user may not store `new` over `old` (the current version, None if new); None if they may.

    Checks the writer's rights only; the schema is `domain.validate`'s job.
    """
    type_name = new.get("type", "")
    if WRITE_RULES.get(type_name) is None:
        return f"{type_name or 'untyped'} documents are written by the server only"
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
    return None


def may_write(p: Principal, old: Doc | None, new: Doc) -> bool:
    """True if this user may store `new` over `old` (see write_refusal for the reason when not)."""
    return write_refusal(p, old, new) is None


def offline_grids(p: Principal, grids: Iterable[Doc]) -> dict[str, list[str]]:
    """What the offline app needs of these rules, as data (/pwa/session.json) rather than a copy of them: the ids
    of the grids whose pages p may open (`may_see` on the grid) and, of those, the grids whose households p may
    edit (`WRITE_RULES`; a grid's households share its street, community and grid, all the rule reads)."""
    browsable = [g for g in grids if may_see(p, g)]
    editable = [g for g in browsable if WRITE_RULES["household"](p, {"street": g["street"], "community": g["community"],
                                                                    "grid": g["_id"]})]
    return {"browse": sorted(g["_id"] for g in browsable), "edit_households": sorted(g["_id"] for g in editable)}
