"""A page whose CouchDB index is still being built (right after a first start, or after a bulk load) answers at
once with a styled "preparing, try again in a moment" page that reloads itself, instead of hanging until the index
is ready (issue 18: the first /ledger waited 137 s). The build goes on meanwhile; the next visit gets the page."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pycouchdb
from starlette.requests import Request
from starlette.responses import Response

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


async def preparing_until(request: Request, render: Callable[..., Response], build: Future[Any]) -> Response | None:
    """The preparing page (202) if `build` is not done within the wait, else None."""
    if await built_soon(build):
        return None
    return render(request, "preparing.html", 202, retry=RETRY_SECONDS, again=request.url.path + (
        f"?{request.url.query}" if request.url.query else ""))
