"""One follower of CouchDB's changes feed per process, fanned out to every live client.

A phone waiting for changes (longpoll, continuous, eventsource) subscribes
here; each change is read from CouchDB once, with its document, and handed to
the subscribers whose principal may see it (found through `audience.py`'s
index, not by asking every subscriber). Thousands of waiting phones cost no
CouchDB request until something they may see changes, and then none each.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx2

from server.domain.access import Principal, may_see

from . import audience
from .jsonio import loads
from .upstream import Upstream, UpstreamError

log = logging.getLogger("linli.sync")

# A subscriber that lets this many changes pile up unread is dropped; its client
# reconnects from its last sequence and catches up from CouchDB instead.
MAX_QUEUED = 10_000

# With 2,000 feeds open the process holds ~300,000 objects, and a full collection of them took 0.4-0.5 s on a loaded
# 2-core machine: when it fell inside a fan-out, every phone not yet answered waited that long. So while a change is
# handed to at least HOLD_COLLECTOR_FROM feeds the collector waits, until the last of them has taken it (or at
# most HOLD_COLLECTOR_S), then catches up at once.
HOLD_COLLECTOR_FROM = 100
HOLD_COLLECTOR_S = 2.0


@dataclass(eq=False)
class Subscriber:
    principal: Principal
    keys: frozenset[str]  # where the hub files it (audience.py)
    queue: list[dict[str, Any]] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    overflowed: bool = False

    def take(self) -> list[dict[str, Any]]:
        changes, self.queue = self.queue, []
        self.wake.clear()
        return changes


class ChangesHub:
    """Follows `<main>/_changes?feed=continuous&include_docs=true` and fans it out."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self._filed: dict[str, set[Subscriber]] = {}  # audience.py's keys → the subscribers filed there
        self.last_seq: str | None = None  # the newest CouchDB sequence published to subscribers
        self._task: asyncio.Task[None] | None = None
        self._holding: set[Subscriber] = set()  # subscribers the collector waits for (HOLD_COLLECTOR_FROM)
        self._release: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        """Start following (once per process, on the first live client)."""
        if self._task is None:
            info = await self.upstream.call("GET", self.upstream.main)
            if self._task is None:  # another request may have started it meanwhile
                self.last_seq = str(info["update_seq"])
                self._task = asyncio.create_task(self._follow(), name="linli-sync-changes-follower")

    def subscribe(self, principal: Principal) -> Subscriber:
        subscriber = Subscriber(principal, audience.principal_keys(principal))
        for key in subscriber.keys:
            self._filed.setdefault(key, set()).add(subscriber)
        return subscriber

    def live_clients(self) -> int:
        """How many live feeds are open now (for /healthz)."""
        return len({s for filed in self._filed.values() for s in filed})

    def taken(self, subscriber: Subscriber) -> list[dict[str, Any]]:
        """The changes waiting for `subscriber`, handed over; the collector resumes once no fan-out waits."""
        self._no_longer_held_by(subscriber)
        return subscriber.take()

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._no_longer_held_by(subscriber)
        for key in subscriber.keys:
            filed = self._filed.get(key)
            if filed is not None:
                filed.discard(subscriber)
                if not filed:
                    del self._filed[key]

    def audience(self, doc: dict[str, Any]) -> list[Subscriber]:
        """The subscribers that may see this document."""
        candidates: set[Subscriber] = set()
        for key in audience.document_keys(doc):
            candidates |= self._filed.get(key, set())
        return [s for s in candidates if not s.overflowed and may_see(s.principal, doc)]

    def publish(self, change: dict[str, Any]) -> None:
        """Hand one CouchDB change to every subscriber that may see its document."""
        self.last_seq = str(change["seq"])
        doc = change.get("doc")
        if doc is None:
            return
        subscribers = self.audience(doc)
        if subscribers:
            self.upstream.recent.remember(doc)  # their _bulk_get of it needs no CouchDB request
        if len(subscribers) >= HOLD_COLLECTOR_FROM:
            self._hold_collector(subscribers)
        for subscriber in subscribers:
            if len(subscriber.queue) >= MAX_QUEUED:
                subscriber.overflowed = True
            else:
                subscriber.queue.append(change)
            subscriber.wake.set()

    def _hold_collector(self, subscribers: list[Subscriber]) -> None:
        self._holding.update(subscribers)
        if self._release is None:
            gc.disable()
            self._release = asyncio.get_running_loop().call_later(HOLD_COLLECTOR_S, self._resume_collector)

    def _no_longer_held_by(self, subscriber: Subscriber) -> None:
        if self._holding:
            self._holding.discard(subscriber)
            if not self._holding:
                self._resume_collector()

    def _resume_collector(self) -> None:
        if self._release is not None:
            self._release.cancel()
            self._release = None
            self._holding.clear()
            gc.enable()

    async def _read_history(self, change: dict[str, Any]) -> None:
        """A later revision's history, read once for all the phones about to _bulk_get it (revisions.py)."""
        doc = change.get("doc")
        if doc is None or doc.get("_rev", "").startswith("1-") or not self.audience(doc):
            return
        with_history = await self.upstream.get(self.upstream.main, doc["_id"], rev=doc["_rev"], revs="true")
        if with_history is not None:
            self.upstream.recent.remember_with_history(with_history)

    async def _follow(self) -> None:
        backoff = 0.5
        while True:
            params = {"feed": "continuous", "since": self.last_seq, "include_docs": "true", "style": "all_docs",
                      "heartbeat": 10_000}
            try:
                async for line in self.upstream.stream_lines(self.upstream.main, "_changes", params):
                    if line.strip():
                        change = loads(line)
                        if "seq" in change and "id" in change:
                            await self._read_history(change)
                            self.publish(change)  # no await between choosing the audience and last_seq
                            backoff = 0.5
            except (httpx2.HTTPError, UpstreamError, ValueError) as error:
                log.warning("changes follower lost CouchDB (%s); retrying in %.1f s", error, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
