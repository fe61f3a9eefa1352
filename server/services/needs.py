"""Residents' needs, handled (plan §3.3: needs → dispatch → progress; issue 14, item 5).

A resident tells the community what they need (server/web/resident_needs.py), or a visit hears it; the need is
then "open" on the grid page of its grid's worker and on the secretary's page of the day. One of them handles
it, once: turns it into a service request (the request carries on from there, and the resident follows it), or
answers it with a visit, or closes it with a reason. The need keeps what became of it (`request`, `visit`,
`close_reason`, who and when), and the resident sees that on their own page. A volunteer's task is the fourth
answer (`/tasks/new?need=<id>`, server/services/tasks.py): the need is then matched to it.

Each change is stored under the write rules phones are held to (`queries.refusal_to_store`), and only while the
need is still open: a need handled twice would leave two answers, one unseen.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pycouchdb.exceptions import Conflict

from server.domain.access import Principal, may_see
from server.domain.declaration import Role, validate
from server.domain.errors import FieldError, UserError
from server.services import service_requests as sr
from server.store import queries
from server.store.couch import Couch, get_or_none, iter_view_docs

Doc = dict[str, Any]
MAX_REASON = 500


class NeedRefused(UserError):
    """A need that cannot be handled as asked: the field and a message key (errors.FieldError)."""

    def __init__(self, field: str, key: str, status: int = 400) -> None:
        super().__init__([FieldError(field, key)], status)


def may_handle(p: Principal, need: Doc) -> bool:
    """Whether p handles this need: its grid's worker, or its community's secretary."""
    return ((p.has(Role.GRID_WORKER) and need["grid"] in p.grids)
            or (p.has(Role.SECRETARY) and need["community"] in p.communities))


def open_in_grid(couch: Couch, p: Principal, grid_id: str) -> list[Doc]:
    """The grid's needs nobody has handled yet that p may see, oldest first (waiting longest on top)."""
    needs = iter_view_docs(couch.main, "linli/by_place", [grid_id, "need"])
    return oldest_first([n for n in needs if n["status"] == "open" and may_see(p, n)])


def oldest_first(needs: list[Doc]) -> list[Doc]:
    return sorted(needs, key=lambda n: (n["created_at"], n["_id"]))


def _handled(p: Principal, need: Doc, now: dt.datetime, **changes: Any) -> Doc:
    return {**need, **changes, "handled_by": p.user_id, "handled_at": now.isoformat(), "updated_at": now.isoformat()}


def _store(couch: Couch, p: Principal, old: Doc, new: Doc, now: dt.datetime, *, reopened: bool = False) -> Doc:
    if old["status"] != "open" and not reopened:
        raise NeedRefused("need", "need_already_handled", 409)
    refusal = queries.refusal_to_store(couch, p, old, new, now)
    if refusal:
        raise NeedRefused("need", "forbidden", 403)
    validate(new)
    try:
        return couch.main.save(new)
    except Conflict:  # handled by someone else since it was read
        raise NeedRefused("need", "need_already_handled", 409) from None


def turn_into_request(couch: Couch, p: Principal, need: Doc, category: str, description: str,
                      attributes: dict[str, Any], now: dt.datetime) -> Doc:
    """A service request about the need's resident, taken in by p for them (the resident asked: their need is
    their consent), dispatched by its category as any request; the need is then in progress. Returns the request."""
    if not may_handle(p, need):
        raise NeedRefused("need", "forbidden", 403)
    check_open(need)
    # Who asked: the request names them, as one taken at the window does.
    resident = queries.load_doc(couch, need["resident"], "resident") if need.get("resident") else None
    request = sr.create(couch, p.user_id, sr.NewRequest(
        street=need["street"], category=category, description=description, grid=need["grid"],
        resident=need.get("resident"), household=need.get("household"), attributes=attributes, on_behalf=True,
        consent=True, reporter_name=resident["name"] if resident else ""), now)
    _store(couch, p, need, _handled(p, need, now, status="in_progress", request=request["_id"]), now)
    return request


def answer_with_visit(couch: Couch, p: Principal, need: Doc, visit: Doc, now: dt.datetime) -> Doc:
    """The need answered by a visit just recorded about its household: done."""
    if not may_handle(p, need):
        raise NeedRefused("need", "forbidden", 403)
    return _store(couch, p, need, _handled(p, need, now, status="done", visit=visit["_id"]), now)


def check_open(need: Doc) -> None:
    """Refuse a need that is no longer open (before anything is made for it)."""
    if need["status"] != "open":
        raise NeedRefused("need", "need_already_handled", 409)


def _task_declined(couch: Couch, need: Doc) -> bool:
    """Whether the need was given to a volunteer who declined the task: it may go to another volunteer."""
    task = get_or_none(couch.main, need["task"]) if need["status"] == "matched" and need.get("task") else None
    return task is not None and task.get("status") == "declined"


def check_assignable(couch: Couch, need: Doc) -> None:
    """Refuse to give a need to a volunteer unless it is open, or its volunteer declined it."""
    if not _task_declined(couch, need):
        check_open(need)


def answer_with_task(couch: Couch, p: Principal, need: Doc, task: Doc, now: dt.datetime) -> Doc:
    """The need given to a volunteer: matched to the task just assigned (again, after a volunteer declined). Not
    `assigned_to` the volunteer: hours are claimed once, for the task (server/domain/timebank.py), not the need."""
    if not may_handle(p, need):
        raise NeedRefused("need", "forbidden", 403)
    return _store(couch, p, need, _handled(p, need, now, status="matched", task=task["_id"]), now,
                  reopened=_task_declined(couch, need))


def close(couch: Couch, p: Principal, need: Doc, reason: str, now: dt.datetime) -> Doc:
    """Closed with a reason the resident reads on their own page."""
    if not may_handle(p, need):
        raise NeedRefused("need", "forbidden", 403)
    reason = reason.strip()
    if not reason:
        raise NeedRefused("close_reason", "need_reason_required")
    if len(reason) > MAX_REASON:
        raise NeedRefused("close_reason", "need_reason_long")
    return _store(couch, p, need, _handled(p, need, now, status="closed", close_reason=reason), now)
