"""A page whose CouchDB index is still being built (right after a first start, or after a bulk load) answers at
once with a styled "preparing, try again in a moment" page that reloads itself, instead of hanging until the index
is ready (issue 18: the first /ledger waited 137 s). The build goes on meanwhile; the next visit gets the page.

Every request gets that: `IndexPatience` lets a request's view queries wait INDEX_WAIT_SECONDS for an index not
built yet (server/store/couch.py `Database.query`), after which IndexPreparing is raised and `on_index_preparing`
answers: this page for people, 503 with Retry-After for the offline app's and other programs' JSON. A few pages
ask first (`preparing`) to say it in their own words. A part htmx asked for (a form htmx submits, a list that
refreshes itself) gets no page to swap in: nothing is swapped, everything typed stays, and the form's error summary
says to send it again in a moment."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pycouchdb
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from server.store import couch as store

# Seconds between the preparing page's reloads.
RETRY_SECONDS = 5


async def built_soon(build: Future[Any], seconds: float | None = None) -> bool:
    """Whether the index is built, or is within `seconds` (INDEX_WAIT_SECONDS by default; its build goes on
    either way)."""
    if build.done():
        return True
    try:
        await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(build)),
                               store.INDEX_WAIT_SECONDS if seconds is None else seconds)
    except TimeoutError:
        return False
    return True


async def preparing(request: Request, render: Callable[..., Response], db: pycouchdb.client.Database,
                    *views: str) -> Response | None:
    """The preparing page (202) if one of these views of `db` is not built within the wait, else None."""
    for view in views:
        waiting = await preparing_until(request, render, store.view_built(db, view))
        if waiting is not None:
            return waiting
    return None


class IndexPatience:
    """ASGI middleware: within a request, a view query waits at most INDEX_WAIT_SECONDS for an index being built."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = store.INDEX_PATIENCE.set(store.INDEX_WAIT_SECONDS)  # copied into the threads the request uses
        try:
            await self.app(scope, receive, send)
        finally:
            store.INDEX_PATIENCE.reset(token)


# Paths that answer programs, not people: JSON, not a page.
_JSON_PATHS = ("/sync/", "/open311/", "/phone-keys", "/pwa/", "/schema.json", "/metrics")


def on_index_preparing(render: Callable[..., Response]) -> Callable[[Request, Exception], Any]:
    """The exception handler for IndexPreparing: the preparing page (202, reloading itself), or for a program
    503 with Retry-After (the offline app tries again at its next sync)."""
    async def handle(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith(_JSON_PATHS):
            return JSONResponse({"error": "preparing", "reason": str(exc)}, status_code=503,
                                headers={"Retry-After": str(RETRY_SECONDS)})
        return _preparing_answer(request, render)
    return handle


async def preparing_until(request: Request, render: Callable[..., Response], build: Future[Any]) -> Response | None:
    """The preparing page (202) if `build` is not done within the wait, else None."""
    if await built_soon(build):
        return None
    return _preparing_answer(request, render)


def _preparing_answer(request: Request, render: Callable[..., Response]) -> Response:
    if request.headers.get("hx-request"):
        # A whole page swapped into a list, or into nothing (a form that swaps nothing), would leave a person with a
        # broken page or no answer: nothing is swapped; a form sent says so in its error summary (templates/
        # _errors.html), what was typed kept; a part fetched (a search, a refresh) stays as it was till the next.
        answer = (render(request, "_preparing_notice.html", 202) if request.method != "GET"
                  else Response(status_code=202))
        answer.headers["HX-Reswap"] = "none"
        return answer
    again = request.url.path + (f"?{request.url.query}" if request.url.query and request.method == "GET" else "")
    return render(request, "preparing.html", 202, retry=RETRY_SECONDS, again=again)
