"""A department's workbench: the requests dispatched or whistled to it, each with the deadline it must meet next,
overdue first (plan §3.2, §4.1).

The deadline shown is the department's own: for the department a request was dispatched to, responding
(`due_respond`) until it has accepted and then closing (`due_close`); for a whistled department, its whistle's
3-working-day clock until it is on site, then the request's `due_close`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from server.domain.access import Principal, departments_of, may_see
from server.domain.declaration import REQUEST_STATES
from server.domain.request_states import DEPARTMENT_OPEN_STATES
from server.services import service_requests as sr
from server.store.couch import Couch

Doc = dict[str, Any]
STATE_FILTERS = ("open", *REQUEST_STATES, "all")  # "open": what the department still has to do


@dataclass(frozen=True)
class Filters:
    state: str = "open"
    category: str = ""
    community: str = ""
    overdue: bool = False

    @classmethod
    def of(cls, query: dict[str, str]) -> Filters:
        """From a query string; a value that names nothing is left unfiltered rather than refused."""
        state = query.get("state", "open")
        return cls(state if state in STATE_FILTERS else "open", query.get("category", ""),
                   query.get("community", ""), query.get("overdue", "") in ("1", "on", "true"))


@dataclass(frozen=True)
class Item:
    doc: Doc
    whistled: bool  # called by the secretary (§3.2) rather than dispatched by category
    due: str | None  # ISO time of the department's next deadline; None once its part is done
    overdue: bool


def item(p: Principal, doc: Doc, now: dt.datetime) -> Item:
    whistled = doc.get("department") != p.department
    due = None
    if doc["status"] in DEPARTMENT_OPEN_STATES:
        if whistled:
            whistle = next((w for w in doc.get("whistles", []) if w["department"] == p.department), {})
            due = whistle.get("due") if "arrived_at" not in whistle else doc.get("due_close")
        else:
            due = doc.get("due_close") if p.department in doc.get("accepted", []) else doc.get("due_respond")
    overdue = due is not None and dt.datetime.fromisoformat(due) < now
    return Item(doc, whistled, due, overdue)


def _wanted(i: Item, f: Filters) -> bool:
    status = i.doc["status"]
    return ((f.state == "all" or status == f.state or (f.state == "open" and status in DEPARTMENT_OPEN_STATES))
            and f.category in ("", i.doc["category"]) and f.community in ("", i.doc["community"])
            and (i.overdue or not f.overdue))


def items(couch: Couch, p: Principal, f: Filters, now: dt.datetime) -> list[Item]:
    """The department's requests that pass the filters: overdue first, then by the next deadline, then newest."""
    mine = [item(p, d, now) for d in sr.street_requests(couch, p.street)
            if p.department in departments_of(d) and may_see(p, d)]
    chosen = sorted((i for i in mine if _wanted(i, f)), key=lambda i: i.doc["created_at"], reverse=True)
    # By deadline, so what is overdue (its deadline passed) comes first; then what has none left (done), newest first.
    return sorted(chosen, key=lambda i: (i.due is None, dt.datetime.fromisoformat(i.due) if i.due else now))
