"""The secretary's home: what needs her today (`/today`, server/services/today.py), each list a count and its
first rows, each row a link to the page that acts on it. Online only: she works at a desk (PRODUCT.md)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.domain.access import Principal
from server.domain.declaration import Role
from server.services import service_requests as sr
from server.services import today
from server.store.couch import Couch
from server.web.resident_needs import CATEGORIES as NEED_CATEGORIES


def routes(couch: Couch, current_user: Callable[[Request], Awaitable[dict[str, Any]]], render: Callable[..., Response],
           now: Callable[[], dt.datetime]) -> list[Route]:
    async def today_page(request: Request) -> Response:
        p = Principal.of(await current_user(request))
        if not p.has(Role.SECRETARY):
            raise HTTPException(403)
        items = await run_in_threadpool(today.of_secretary, couch, p, now())
        names = await run_in_threadpool(today.names, couch, items)
        categories = await run_in_threadpool(sr.catalogue, couch, p.street, active_only=False)
        return render(request, "today.html", items=items, names=names, categories=categories,
                      need_categories=list(NEED_CATEGORIES))

    return [Route("/today", today_page)]
