"""Mediation of disputes between neighbours (issue 18 item 4; plan §4.1: mediation success 75% → 90%).

A grid worker or the secretary opens a case for the resident who brought it: what kind of dispute, who the parties
are and what it is about (both sealed like contact data under that resident's keys: server/security/firewall.py
seals them, `open_mediation` opens them for whoever may open the resident's contact data, filed). The mediator
records each session, with a note of what was said and agreed if they like (appended to the case's minutes, sealed
the same way), then the outcome; an agreement is followed up: kept or broken.

Mediation success (the plan's figure) = cases that reached an agreement not broken at follow-up, over the cases
concluded (agreement, no agreement, kept, broken); a withdrawn case is not concluded by mediation and not counted.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from server.domain.access import Principal, may_see
from server.domain.declaration import MEDIATION_KINDS, Role, validate
from server.domain.errors import FieldError, UserError
from server.security.firewall import AccessDenied, Firewall
from server.store.config import LOCAL_TZ
from server.store.couch import Couch, get_or_none, iter_view_docs

Doc = dict[str, Any]
OUTCOMES = ("agreement", "no_agreement", "withdrawn")
FOLLOW_UPS = ("kept", "broken")
SUCCEEDED = frozenset({"agreement", "kept"})
CONCLUDED = frozenset({"agreement", "no_agreement", "kept", "broken"})
MAX_SESSIONS = 50
MAX_NOTE = 2000  # one session's note (the minutes hold them all: declaration MAX_MINUTES)


class MediationError(UserError):
    def __init__(self, field: str, key: str, status: int = 400, **params: str | int) -> None:
        super().__init__([FieldError(field, key, params)], status)


def may_mediate(p: Principal, doc: Doc) -> bool:
    """The grid's worker and the community's secretary (a volunteer never: the parties are contact data)."""
    return ((p.has(Role.GRID_WORKER) and doc.get("grid") in p.grids)
            or (p.has(Role.SECRETARY) and doc.get("community") in p.communities))


def _check_may(p: Principal, doc: Doc) -> None:
    if not (may_mediate(p, doc) and may_see(p, doc)):
        raise MediationError("mediation", "err_mediation_not_yours", status=403)


def open_case(firewall: Firewall, p: Principal, resident: Doc, kind: str, parties: str, dispute: str,
              now: dt.datetime) -> Doc:
    """A new case brought by `resident`; parties and dispute are sealed before anything is stored."""
    _check_may(p, resident)
    if kind not in MEDIATION_KINDS:
        raise MediationError("kind", "err_not_choice", value=kind[:40], choices=", ".join(MEDIATION_KINDS))
    for name, value, limit in (("parties", parties, 500), ("dispute", dispute, 2000)):
        if not value.strip():
            raise MediationError(name, "err_required")
        if len(value.strip()) > limit:
            raise MediationError(name, "err_too_long", max=limit)
    doc = {"_id": f"mediation:{uuid.uuid4().hex}", "type": "mediation", "street": resident["street"],
           "community": resident["community"], "grid": resident["grid"], "resident": resident["_id"],
           "household": resident["household"], "kind": kind, "parties": parties.strip(), "dispute": dispute.strip(),
           "mediator": p.user_id, "sessions": [], "status": "open", "created_by": p.user_id,
           "created_at": now.isoformat()}
    validate(doc)
    return firewall.couch.main.save(firewall.seal_for_storage([doc])[0])


def add_session(firewall: Firewall, p: Principal, case: Doc, now: dt.datetime, note: str = "",
                device: str = "") -> Doc:
    """A session held; its note, if any, appended to the case's sealed minutes under the session's local time (the
    sessions list says who held it), opening the minutes so far (filed)."""
    _check_may(p, case)
    if case["status"] != "open":
        raise MediationError("sessions", "err_mediation_closed")
    if len(case["sessions"]) >= MAX_SESSIONS:
        raise MediationError("sessions", "err_mediation_sessions", max=MAX_SESSIONS)
    note = note.strip()
    if len(note) > MAX_NOTE:
        raise MediationError("note", "err_too_long", max=MAX_NOTE)
    case["sessions"] = [*case["sessions"], {"at": now.isoformat(), "by": p.user_id}]
    if note:
        resident = get_or_none(firewall.couch.main, case["resident"])
        if resident is None:
            raise MediationError("note", "err_mediation_not_yours", status=403)
        try:
            case = firewall.with_minutes(p, resident, case, minutes_entry(now, note), device=device, now=now)
        except AccessDenied:
            raise MediationError("note", "err_mediation_not_yours", status=403) from None
    return _save(firewall.couch, case, now)


def minutes_entry(at: dt.datetime, note: str) -> str:
    """One session's line in the minutes: its local time, then the note."""
    return f"{at.astimezone(LOCAL_TZ):%Y-%m-%d %H:%M}：{note}"


def conclude(couch: Couch, p: Principal, case: Doc, outcome: str, now: dt.datetime) -> Doc:
    _check_may(p, case)
    if outcome not in OUTCOMES:
        raise MediationError("outcome", "err_not_choice", value=outcome[:40], choices=", ".join(OUTCOMES))
    if case["status"] != "open":
        raise MediationError("outcome", "err_mediation_closed")
    if outcome != "withdrawn" and not case["sessions"]:
        raise MediationError("outcome", "err_mediation_no_session")
    case.update(status=outcome, concluded_at=now.isoformat())
    return _save(couch, case, now)


def follow_up(couch: Couch, p: Principal, case: Doc, result: str, now: dt.datetime) -> Doc:
    """At the follow-up visit: was the agreement kept?"""
    _check_may(p, case)
    if result not in FOLLOW_UPS:
        raise MediationError("follow_up", "err_not_choice", value=result[:40], choices=", ".join(FOLLOW_UPS))
    if case["status"] != "agreement":
        raise MediationError("follow_up", "err_mediation_no_agreement")
    case.update(status=result, followed_up_at=now.isoformat())
    return _save(couch, case, now)


def _save(couch: Couch, case: Doc, now: dt.datetime) -> Doc:
    case["updated_at"] = now.isoformat()
    validate(case)
    return couch.main.save(case)


def cases_of(couch: Couch, p: Principal) -> list[Doc]:
    """The cases this user mediates where they work: open ones first, newest first."""
    places = sorted(p.grids) if not p.has(Role.SECRETARY) else sorted(p.communities)
    found = [d for place in places for d in iter_view_docs(couch.main, "linli/by_place", [place, "mediation"])
             if may_mediate(p, d) and may_see(p, d)]
    found.sort(key=lambda d: d["created_at"], reverse=True)
    return sorted(found, key=lambda d: d["status"] != "open")


@dataclass(frozen=True)
class Success:
    """The mediation-success figure: succeeded / concluded (see the module's docstring)."""

    concluded: int
    succeeded: int
    followed_up: int
    kept: int

    @property
    def share(self) -> float | None:
        return self.succeeded / self.concluded if self.concluded else None


def success(cases: list[Doc]) -> Success:
    statuses = [c["status"] for c in cases]
    return Success(concluded=sum(s in CONCLUDED for s in statuses), succeeded=sum(s in SUCCEEDED for s in statuses),
                   followed_up=sum(s in FOLLOW_UPS for s in statuses), kept=statuses.count("kept"))
