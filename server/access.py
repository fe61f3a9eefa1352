"""Who may see which document: the one routing policy.

The web pages, the sync gateway (what a phone receives) and the firewall
(what may be decrypted) all ask this module; none of them decides on its own.
A decision needs only the user and the document, never another lookup, so
that the sync gateway can apply it to every change in a feed.

Field-level rules (which tiers of a visible document a user may open) are
the firewall's, in `server/firewall.py`; this module answers the question
before that one: may the document reach the user at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .domain import DOC_TYPES, MAIN_DB, Role

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

    @classmethod
    def of(cls, user: Doc) -> Principal:
        return cls(user["_id"], frozenset(Role(r) for r in user.get("roles", [])), user.get("street", ""),
                   frozenset(user.get("communities", [])), frozenset(user.get("grids", [])),
                   user.get("department"), user.get("resident"))

    def has(self, *roles: Role) -> bool:
        return bool(self.roles.intersection(roles))


def _staff_of_community(p: Principal, doc: Doc) -> bool:
    return p.has(Role.ADMIN) or (p.has(Role.SECRETARY) and doc.get("community") in p.communities)


def _grid_staff(p: Principal, doc: Doc) -> bool:
    """The people responsible for a grid: admin, the community's secretary, the grid's worker."""
    return _staff_of_community(p, doc) or (p.has(Role.GRID_WORKER) and doc.get("grid") in p.grids)


def _own(p: Principal, doc: Doc) -> bool:
    """A resident's own record and the documents about them."""
    return p.resident is not None and p.resident in (doc.get("_id"), doc.get("resident"))


def _street_wide(p: Principal, doc: Doc) -> bool:
    return doc.get("street") == p.street


def _community(p: Principal, doc: Doc) -> bool:
    return p.has(Role.ADMIN) or doc["_id"] in p.communities


def _grid(p: Principal, doc: Doc) -> bool:
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


def _service_request(p: Principal, doc: Doc) -> bool:
    return (_grid_staff(p, doc) or _own(p, doc) or doc.get("created_by") == p.user_id
            or (p.has(Role.DEPARTMENT_STAFF) and p.department in doc.get("departments", [])))


def _personal(p: Principal, doc: Doc) -> bool:
    return _grid_staff(p, doc) or _own(p, doc)


def _audit(p: Principal, doc: Doc) -> bool:
    # Residents see who opened their own record (privacy view); nobody else below the secretary.
    return _staff_of_community(p, doc) or (p.resident is not None and doc.get("target") == p.resident)


def _secretary_only(p: Principal, doc: Doc) -> bool:
    return _staff_of_community(p, doc)


RULES: dict[str, Callable[[Principal, Doc], bool]] = {
    "street": _street_wide,
    "department": _street_wide,
    "community": _community,
    "grid": _grid,
    "household": _household,
    "resident": _resident,
    "visit": _task,
    "need": _task,
    "service_request": _service_request,
    "alert": _personal,
    "device": _personal,
    "reading": _personal,
    "audit_entry": _audit,
    "audit_checkpoint": _secretary_only,
}


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
