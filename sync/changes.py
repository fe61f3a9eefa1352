"""`_changes` per user: CouchDB's feed with every change the user may not see left out.

Normal feeds read CouchDB's feed (with documents, to decide) until `limit`
visible changes are found: PouchDB takes a short page as the end of the feed,
so a page is never cut short by filtering. Live feeds catch up the same way,
then wait on the process's one follower (`hub.py`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from server.domain.access import Principal, may_see
from server.domain.declaration import SYNC_FIRST_FILTER, SYNC_FIRST_TYPES, SYNC_LIST_FILTER, SYNC_LIST_TYPES

from .hub import ChangesHub, Subscriber
from .jsonio import FastJSONResponse, dumps, loads
from .protocol import (
    Since,
    bad_request,
    bool_param,
    choice_param,
    decode_since,
    encode_seq,
    int_param,
    json_body,
    string_list,
)
from .upstream import Upstream

FEEDS = ("normal", "longpoll", "continuous", "eventsource")
STYLES = ("main_only", "all_docs")
MAX_LIMIT = 10_000
MAX_CHUNK = 2_000  # CouchDB changes read per round trip while filtering
DEFAULT_TIMEOUT_MS = 60_000
# A new phone's pull in stages: the urgent kinds, then the household list, then the rest (unfiltered).
FILTERS = {SYNC_FIRST_FILTER: SYNC_FIRST_TYPES, SYNC_LIST_FILTER: SYNC_LIST_TYPES}
MAX_LIVE_MS = 300_000  # a live feed ends after this and the client reconnects (and is authenticated again)


@dataclass(frozen=True)
class ChangesQuery:
    principal: Principal
    since: Since | str
    limit: int | None
    style: str
    include_docs: bool
    feed: str
    heartbeat_ms: int | None
    timeout_ms: int
    doc_ids: frozenset[str] | None
    # A phone's staged pull (FILTERS): only these kinds, without photos (those come with the rest).
    kinds: frozenset[str] | None = None

    def wants(self, doc: dict[str, Any]) -> bool:
        return (may_see(self.principal, doc) and (self.doc_ids is None or doc["_id"] in self.doc_ids)
                and (self.kinds is None or (doc.get("type") in self.kinds and not doc.get("_attachments"))))

    def shape(self, change: dict[str, Any]) -> dict[str, Any]:
        """A CouchDB change as this client sees it: its own sequence, the document only if asked."""
        out: dict[str, Any] = {"seq": encode_seq(self.principal, change["seq"]), "id": change["id"],
                               "changes": change["changes"] if self.style == "all_docs" else change["changes"][:1]}
        if change.get("deleted"):
            out["deleted"] = True
        if self.include_docs:
            out["doc"] = change["doc"]
        return out


async def parse_query(request: Request, p: Principal) -> ChangesQuery:
    params = request.query_params
    heartbeat: int | None = None
    if params.get("heartbeat") == "true":
        heartbeat = DEFAULT_TIMEOUT_MS
    elif "heartbeat" in params:
        heartbeat = int_param(request, "heartbeat", 0, 1_000, MAX_LIVE_MS)
    doc_ids = None
    filter_name = params.get("filter")
    if filter_name == "_doc_ids":
        raw = (await json_body(request)).get("doc_ids") if request.method == "POST" else _json_param(request, "doc_ids")
        doc_ids = frozenset(string_list(raw, "doc_ids"))
    elif filter_name is not None and filter_name not in FILTERS:
        raise bad_request(f"filter {filter_name!r} is not offered by the sync gateway (only _doc_ids, "
                          f"{', '.join(FILTERS)}); what you receive is already filtered to what you may see")
    limit = int_param(request, "limit", 0, 0, MAX_LIMIT)
    return ChangesQuery(
        principal=p, since=decode_since(p, params.get("since")), limit=limit or None,
        style=choice_param(request, "style", STYLES), include_docs=bool_param(request, "include_docs"),
        feed=choice_param(request, "feed", FEEDS), heartbeat_ms=heartbeat,
        timeout_ms=int_param(request, "timeout", DEFAULT_TIMEOUT_MS, 0, MAX_LIVE_MS), doc_ids=doc_ids,
        kinds=FILTERS.get(filter_name or ""))


def _json_param(request: Request, name: str) -> Any:
    try:
        return loads(request.query_params.get(name, ""))
    except ValueError:
        raise bad_request(f"{name} must be a JSON list") from None


async def read_visible(upstream: Upstream, query: ChangesQuery, since: Any,
                       limit: int | None) -> tuple[list[dict[str, Any]], Any]:
    """Visible changes after `since` (a CouchDB sequence), at most `limit`; and where they end."""
    results: list[dict[str, Any]] = []
    chunk = min(limit or MAX_CHUNK, MAX_CHUNK)
    while True:
        page = await upstream.call("GET", upstream.main, "_changes", params={
            "since": since, "limit": chunk, "include_docs": "true", "style": "all_docs"})
        rows = page["results"]
        for row in rows:
            if row.get("doc") is not None and query.wants(row["doc"]):
                upstream.recent.remember(row["doc"])  # the _bulk_get that follows is answered from it
                results.append(query.shape(row))
                if limit and len(results) == limit:
                    return results, row["seq"]  # not the page's last_seq: later visible changes are unsent
        since = page["last_seq"]
        if len(rows) < chunk:
            return results, since
        chunk = min(chunk * 2, MAX_CHUNK)  # mostly invisible changes: read further per round trip


async def changes(request: Request, p: Principal, upstream: Upstream, hub: ChangesHub) -> Response:
    query = await parse_query(request, p)
    if query.feed == "normal":
        start = await _current_seq(upstream) if query.since == "now" else query.since.couch_seq or 0
        results, last = await read_visible(upstream, query, start, query.limit)
        return FastJSONResponse({"results": results, "last_seq": encode_seq(p, last)})
    await hub.start()
    subscriber = hub.subscribe(p)  # before catching up, so that nothing slips between the two
    if query.feed == "longpoll":
        return StreamingResponse(_longpoll(query, upstream, hub, subscriber), media_type="application/json")
    media = "text/event-stream" if query.feed == "eventsource" else "application/json"
    return StreamingResponse(_continuous(query, upstream, hub, subscriber), media_type=media)


async def _current_seq(upstream: Upstream) -> Any:
    return (await upstream.call("GET", upstream.main))["update_seq"]


async def _catch_up(query: ChangesQuery, upstream: Upstream, hub: ChangesHub,
                    limit: int | None) -> tuple[list[dict[str, Any]], Any]:
    """Changes the client has not seen yet from CouchDB, unless it is level with the follower."""
    if query.since == "now":
        return [], hub.last_seq
    if query.since.couch_seq is not None and query.since.couch_seq == hub.last_seq:
        return [], hub.last_seq  # level with the follower: nothing to read from CouchDB
    return await read_visible(upstream, query, query.since.couch_seq or 0, limit)


def _deliverable(query: ChangesQuery, hub: ChangesHub, subscriber: Subscriber) -> list[dict[str, Any]]:
    return [query.shape(c) for c in hub.taken(subscriber) if query.doc_ids is None or c["id"] in query.doc_ids]


async def _wait(query: ChangesQuery, subscriber: Subscriber, deadline: float) -> AsyncIterator[bytes]:
    """Heartbeat newlines until the subscriber has something or the deadline passes."""
    while not subscriber.wake.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        step = min(left, query.heartbeat_ms / 1000) if query.heartbeat_ms else left
        try:
            await asyncio.wait_for(subscriber.wake.wait(), step)
        except TimeoutError:
            if query.heartbeat_ms and deadline - time.monotonic() > 0:
                yield b"\n"


async def _longpoll(query: ChangesQuery, upstream: Upstream, hub: ChangesHub,
                    subscriber: Subscriber) -> AsyncIterator[bytes]:
    try:
        results, last = await _catch_up(query, upstream, hub, query.limit)
        deadline = time.monotonic() + query.timeout_ms / 1000
        while not results and time.monotonic() < deadline and not subscriber.overflowed:
            async for beat in _wait(query, subscriber, deadline):
                yield beat
            for change in _deliverable(query, hub, subscriber)[:query.limit]:
                results.append(change)
                last = change["seq"]
        last_seq = results[-1]["seq"] if results else encode_seq(query.principal, last)
        yield dumps({"results": results, "last_seq": last_seq}) + b"\n"
    finally:
        hub.unsubscribe(subscriber)


def _line(query: ChangesQuery, value: dict[str, Any]) -> bytes:
    text = dumps(value)
    if query.feed == "eventsource":
        return b"data: " + text + f"\nid: {value.get('seq', value.get('last_seq'))}\n\n".encode()
    return text + b"\n"


async def _continuous(query: ChangesQuery, upstream: Upstream, hub: ChangesHub,
                      subscriber: Subscriber) -> AsyncIterator[bytes]:
    try:
        results, last = await _catch_up(query, upstream, hub, query.limit)
        last_seq = encode_seq(query.principal, last)
        for change in results:
            yield _line(query, change)
        sent = len(results)
        deadline = time.monotonic() + min(query.timeout_ms if not query.heartbeat_ms else MAX_LIVE_MS,
                                          MAX_LIVE_MS) / 1000
        while time.monotonic() < deadline and not subscriber.overflowed and not (query.limit and sent >= query.limit):
            async for beat in _wait(query, subscriber, deadline):
                yield beat
            for change in _deliverable(query, hub, subscriber):
                yield _line(query, change)
                last_seq, sent = change["seq"], sent + 1
        yield _line(query, {"last_seq": last_seq})
    finally:
        hub.unsubscribe(subscriber)
