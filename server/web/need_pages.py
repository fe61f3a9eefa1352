"""Residents' needs as the grid worker and the secretary handle them (server/services/needs.py). Online only:
handling a need creates a service request (dispatched and clocked by the server) or needs the visit it answers to
be stored first.

- `/needs/open`: every open need of the user's grids (grid worker) or communities (secretary).
- `/needs/{id}`: one need, what became of it, and while it is open: turn it into a service request (with its
  category's questions), record the visit that answers it (`/households/{household}/visits/new?need=<id>`,
  server/web/field_pages.py), or close it with a reason the resident reads.
- the grid page's list of the grid's open needs (`open_needs_context`; offline too, pwa/offline/pages.js).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server.domain.access import Principal, may_see
from server.domain.declaration import Role
from server.domain.errors import UserError, by_field
from server.services import needs
from server.services import service_requests as sr
from server.store import queries
from server.store.couch import Couch, get_many
from server.web.lookup import visible_doc
from server.web.request_pages import answers_of
from server.web.resident_needs import CATEGORIES as NEED_CATEGORIES

Doc = dict[str, Any]
Render = Callable[..., Response]
CurrentUser = Callable[[Request], Awaitable[Doc]]


def need_names(couch: Couch, p: Principal, docs: list[Doc]) -> dict[str, str]:
    """The residents' names and households' addresses these needs name, as far as p may see them."""
    found = get_many(couch.main, {d[k] for d in docs for k in ("resident", "household") if d.get(k)})
    return {i: d.get("name") or d.get("address", "") for i, d in found.items() if may_see(p, d)}


def open_needs_of(couch: Couch, p: Principal) -> list[Doc]:
    """The open needs p handles: their grids' (a grid worker), their communities' (a secretary)."""
    if p.has(Role.SECRETARY):
        return needs.oldest_first([n for n in queries.attention(couch, sorted(p.communities)).get("need", [])
                                   if may_see(p, n)])
    return needs.oldest_first([n for g in sorted(p.grids) for n in needs.open_in_grid(couch, p, g)])


def open_needs_context(couch: Couch, p: Principal, grid_id: str) -> dict[str, Any]:
    """What a grid page shows of the grid's open needs: to its worker and the secretary, who handle them."""
    shown = p.has(Role.GRID_WORKER, Role.SECRETARY)
    found = needs.open_in_grid(couch, p, grid_id) if shown else []
    return {"needs_shown": shown, "open_needs": found, "names": need_names(couch, p, found),
            "need_categories": list(NEED_CATEGORIES)}


def routes(couch: Couch, current_user: CurrentUser, render: Render, now: Callable[[], dt.datetime]) -> list[Route]:
    async def principal_of(request: Request) -> Principal:
        return Principal.of(await current_user(request))

    async def open_needs_page(request: Request) -> Response:
        p = await principal_of(request)
        if not p.has(Role.GRID_WORKER, Role.SECRETARY):
            raise HTTPException(403)
        found = await run_in_threadpool(open_needs_of, couch, p)
        names = await run_in_threadpool(need_names, couch, p, found)
        return render(request, "needs_open.html", open_needs=found, names=names,
                      need_categories=list(NEED_CATEGORIES))

    async def need_page(request: Request, errors: dict[str, Any] | None = None, values: dict[str, str] | None = None,
                        status_code: int = 200) -> Response:
        p = await principal_of(request)
        need = await run_in_threadpool(visible_doc, couch, p, "need:" + request.path_params["id"], "need")
        names = await run_in_threadpool(need_names, couch, p, [need])
        names |= await run_in_threadpool(queries.user_names, couch,
                                         {need[k] for k in ("created_by", "handled_by") if need.get(k)})
        categories = await run_in_threadpool(sr.catalogue, couch, p.street)
        values = values or {"category": "", "description": need["description"], "close_reason": ""}
        return render(request, "need.html", status_code, need=need, names=names, categories=list(categories.items()),
                      category=categories.get(values["category"]), need_categories=list(NEED_CATEGORIES),
                      may_handle=needs.may_handle(p, need), errors=errors or {}, values=values)

    async def act(request: Request) -> Response:
        p = await principal_of(request)
        need = await run_in_threadpool(visible_doc, couch, p, "need:" + request.path_params["id"], "need")
        form = await request.form()
        action = request.url.path.rsplit("/", 1)[1]
        values = {"category": "", "description": "", "close_reason": "",
                  **{k: str(v) for k, v in form.items() if isinstance(v, str)}}
        try:
            if action == "request":
                made = await run_in_threadpool(needs.turn_into_request, couch, p, need, values["category"],
                                               values["description"], answers_of(form), now())
                return RedirectResponse(f"/requests/{made['_id'].split(':', 1)[1]}", status_code=303)
            await run_in_threadpool(needs.close, couch, p, need, values["close_reason"], now())
        except UserError as bad:
            if bad.status == 403:
                raise HTTPException(403) from None
            return await need_page(request, by_field(bad.errors), values, bad.status)
        return RedirectResponse(f"/needs/{request.path_params['id']}", status_code=303)

    return [
        Route("/needs/open", open_needs_page),
        Route("/needs/{id}", need_page),
        Route("/needs/{id}/request", act, methods=["POST"]),
        Route("/needs/{id}/close", act, methods=["POST"]),
    ]

