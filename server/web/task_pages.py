"""Volunteers' tasks, online (server/services/tasks.py): the task list (a volunteer's home: their tasks and the
households they look after; grid staff: their grids' tasks and where each stands), a task's page where its
volunteer answers it, and the form grid staff assign one with, from a household's page or from a resident's need
(`/tasks/new?household=<id>`, `/tasks/new?need=<id>`, prefilled from the need), or again after a volunteer
declined it (`/tasks/new?task=<id>`, prefilled from the declined task, which stays as it was answered).

The list and a task's page, and answering, work offline too (pwa/offline/pages.js, same templates); assigning
needs the server (it names the grid's volunteers, whose accounts no phone holds).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from pycouchdb.exceptions import Conflict
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server.domain.access import WRITE_RULES, Principal, may_see
from server.domain.declaration import TASK_ANSWERS, TASK_KINDS, Role, validate
from server.domain.errors import UserError, by_field
from server.domain.field_rules import TaskRefused, task_answered
from server.domain.matching import TASK_KIND_OF_NEED
from server.services import needs, tasks
from server.store import queries
from server.store.couch import Couch, get_or_none, iter_view_docs
from server.web.lookup import visible_doc, visible_household

Doc = dict[str, Any]
FORM_FIELDS = ("kind", "assigned_to", "resident", "due_on", "notes", "need")


def may_assign(p: Principal, place: Doc) -> bool:
    """Whether p assigns tasks in this household's (or grid's) place: grid staff (access.WRITE_RULES)."""
    return WRITE_RULES["task"](p, {k: place.get(k) for k in ("street", "community", "grid")})


def looked_after(couch: Couch, p: Principal) -> list[Doc]:
    """The households a volunteer looks after (those of their grids they may see), by id; none for others."""
    if not p.has(Role.VOLUNTEER):
        return []
    found = [h for g in sorted(p.grids) for h in iter_view_docs(couch.main, "linli/by_place", [g, "household"])
             if may_see(p, h)]
    return sorted(found, key=lambda h: h["_id"])


def task_names(couch: Couch, shown: list[Doc]) -> dict[str, str]:
    return queries.user_names(couch, {t[k] for t in shown for k in ("assigned_to", "created_by")})


def routes(couch: Couch, current_user: Callable[[Request], Awaitable[Doc]], render: Callable[..., Response],
           now: Callable[[], dt.datetime]) -> list[Route]:
    async def principal_of(request: Request) -> Principal:
        return Principal.of(await current_user(request))

    async def list_page(request: Request) -> Response:
        p = await principal_of(request)
        if not tasks.may_see_tasks(p):
            raise HTTPException(403)
        shown = await run_in_threadpool(tasks.visible_tasks, couch, p)
        households = await run_in_threadpool(looked_after, couch, p)
        names = await run_in_threadpool(task_names, couch, shown)
        return render(request, "tasks.html", tasks=shown, households=households, names=names,
                      volunteer=p.has(Role.VOLUNTEER))

    async def task_page(request: Request, p: Principal | None = None, task: Doc | None = None,
                        error: str | None = None, note: str = "", status_code: int = 200) -> Response:
        p = p or await principal_of(request)
        task = task or await run_in_threadpool(visible_doc, couch, p, f"task:{request.path_params['id']}", "task")
        answers = list(TASK_ANSWERS.get(task["status"], ())) if task["assigned_to"] == p.user_id else []
        names = await run_in_threadpool(task_names, couch, [task])
        return render(request, "task.html", status_code, task=task, names=names, answers=answers, error=error,
                      note=note, may_assign=may_assign(p, task))

    async def answer(request: Request) -> Response:
        p = await principal_of(request)
        task = await run_in_threadpool(visible_doc, couch, p, f"task:{request.path_params['id']}", "task",
                                       lambda p, t: t["assigned_to"] == p.user_id)
        form = await request.form()
        note = str(form.get("volunteer_note", ""))
        try:
            new = task_answered(task, str(form.get("answer", "")), note, now().isoformat())
        except TaskRefused as refused:
            return await task_page(request, p, task, str(refused), note, 400)
        refusal = await run_in_threadpool(queries.refusal_to_store, couch, p, task, new, now())
        if refusal:
            raise HTTPException(403, refusal)
        validate(new)
        try:
            if str(form.get("_rev") or task["_rev"]) != task["_rev"]:
                raise Conflict(task["_id"])  # changed since the volunteer saw it
            await run_in_threadpool(couch.main.save, new)
        except Conflict:
            current = await run_in_threadpool(get_or_none, couch.main, task["_id"]) or task
            return await task_page(request, p, current, "task_conflict", note, 409)
        return RedirectResponse(f"/tasks/{task['_id'].split(':', 1)[1]}", status_code=303)

    async def new_page(request: Request) -> Response:
        p = await principal_of(request)
        source = request.query_params if request.method == "GET" else await request.form()
        values = {k: str(source.get(k, "")) for k in FORM_FIELDS}
        household_id = str(source.get("household", ""))
        again = request.method == "GET" and bool(source.get("task"))
        if again:  # a declined task, assigned again: to whom is the form's question, the rest as it was
            earlier = await run_in_threadpool(visible_doc, couch, p, str(source.get("task")), "task")
            values.update({k: str(earlier.get(k) or "") for k in ("kind", "resident", "notes", "need")})
            household_id = earlier["household"]
        need = None
        if values["need"]:
            need = await run_in_threadpool(visible_doc, couch, p, values["need"], "need")
            household_id = need.get("household") or ""
        if not household_id:
            raise HTTPException(404)
        household, _ = await run_in_threadpool(visible_household, couch, p, household_id)
        if not may_assign(p, household):
            raise HTTPException(403)
        members = await run_in_threadpool(
            lambda: [r for r in iter_view_docs(couch.main, "linli/by_place", [household["_id"], "resident"])
                     if may_see(p, r)])
        residents = {r["_id"]: r["name"] for r in members}
        volunteers = await run_in_threadpool(tasks.volunteers_of, couch, household["grid"])
        errors: dict[str, Any] = {}
        status = 200
        if request.method == "GET" and need is not None and not again:  # prefilled from the resident's need
            values.update(resident=need.get("resident") or "", notes=need["description"],
                          kind=TASK_KIND_OF_NEED.get(need["category"], "visit"))
        if request.method == "POST":
            try:
                if need is not None:
                    await run_in_threadpool(needs.check_assignable, couch, need)
                task = tasks.new_task(p, household, values, residents, {v for v, _ in volunteers}, now())
                refusal = await run_in_threadpool(queries.refusal_to_store, couch, p, None, task, now())
                if refusal:
                    raise HTTPException(403, refusal)
                await run_in_threadpool(couch.main.save, task)
                if need is not None:
                    await run_in_threadpool(needs.answer_with_task, couch, p, need, task, now())
            except UserError as bad:
                errors, status = by_field(bad.errors), bad.status
            else:
                return RedirectResponse(f"/households/{household['_id']}#tasks", status_code=303)
        return render(request, "task_new.html", status, household=household, need=need,
                      residents=list(residents.items()), volunteers=volunteers, kinds=list(TASK_KINDS),
                      values={**values, "kind": values["kind"] or TASK_KINDS[0]}, errors=errors)

    return [
        Route("/tasks", list_page),
        Route("/tasks/new", new_page, methods=["GET", "POST"]),
        Route("/tasks/{id}", task_page),
        Route("/tasks/{id}/answer", answer, methods=["POST"]),
    ]
