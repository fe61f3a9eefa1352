"""Volunteers' tasks (issue 14, item 3): grid staff assign a visit, a delivery or an accompaniment in a household
to one of the grid's volunteers; the volunteer accepts it, marks it done with a note or declines it with a reason,
online or offline on their phone (pwa/offline/pages.js answers the same pages from the replica).

A task carries the household's address and the resident's name, copied when it is assigned: a volunteer's phone
holds no resident record (those carry sealed fields: access.py `_resident`), only their tasks and households.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from server.domain.access import Principal, may_see
from server.domain.declaration import Role, validate
from server.domain.errors import FieldError, UserError
from server.domain.field_rules import tasks_in_order
from server.store.couch import Couch, iter_view_docs

Doc = dict[str, Any]
TASKS_SHOWN = 200


class TaskError(UserError):
    """A task form that cannot be stored: the field and a message key (errors.FieldError)."""

    def __init__(self, field: str, key: str) -> None:
        super().__init__([FieldError(field, key)])


def may_see_tasks(p: Principal) -> bool:
    """Whether the task list is this user's at all (the offline app has it from /pwa/session.json)."""
    return p.has(Role.VOLUNTEER, Role.GRID_WORKER, Role.SECRETARY)


def visible_tasks(couch: Couch, p: Principal) -> list[Doc]:
    """The tasks of p's grids (volunteer, grid worker) and communities (secretary) that p may see, in order."""
    places = p.grids | (p.communities if p.has(Role.SECRETARY) else frozenset())
    found = {d["_id"]: d for place in sorted(places)
             for d in iter_view_docs(couch.main, "linli/by_place", [place, "task"])}
    return tasks_in_order([d for d in found.values() if may_see(p, d)])[:TASKS_SHOWN]


def household_tasks(couch: Couch, p: Principal, household_id: str) -> list[Doc]:
    """The household's tasks p may see, in order (its page lists them)."""
    return tasks_in_order([d for d in iter_view_docs(couch.main, "linli/by_place", [household_id, "task"])
                           if may_see(p, d)])


def volunteers_of(couch: Couch, grid_id: str) -> list[tuple[str, str]]:
    """The grid's active volunteers a task may go to: (user id, name), by name."""
    rows = couch.accounts.query("linli/users_by_grid", key=grid_id, include_docs="true", as_list=True)
    return sorted(((r["id"], r["doc"]["display_name"]) for r in rows
                   if Role.VOLUNTEER.value in r["doc"]["roles"] and r["doc"].get("active")), key=lambda v: v[1])


def new_task(p: Principal, household: Doc, values: dict[str, str], residents: dict[str, str],
             volunteers: set[str], now: dt.datetime) -> Doc:
    """A task from the form's values (kind, assigned_to, resident, due_on, notes, need), validated whole.
    `residents`: the household's members (id → name); `volunteers`: who it may go to."""
    if values["assigned_to"] not in volunteers:
        raise TaskError("assigned_to", "task_volunteer_required")
    if values["resident"] and values["resident"] not in residents:
        raise TaskError("resident", "err_not_household_member")
    stamp = now.isoformat()
    doc: Doc = {"_id": f"task:{uuid.uuid4().hex}", "type": "task",
                **{k: household[k] for k in ("street", "community", "grid")}, "household": household["_id"],
                "address": household["address"], "kind": values["kind"], "assigned_to": values["assigned_to"],
                "status": "assigned", "created_by": p.user_id, "created_at": stamp}
    doc.update({k: values[k].strip() for k in ("resident", "due_on", "notes", "need") if values[k].strip()})
    if values["resident"]:
        doc["resident_name"] = residents[values["resident"]]
    validate(doc)
    return doc
