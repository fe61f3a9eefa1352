"""One follower of CouchDB's changes feed per process, fanned out to every live client.

A phone waiting for changes (longpoll, continuous, eventsource) subscribes
here; each change is read from CouchDB once, with its document, and handed to
the subscribers whose principal may see it. Thousands of waiting phones cost
no CouchDB request until something they may see changes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx2

from server.access import Principal, may_see

from .upstream import Upstream, UpstreamError

log = logging.getLogger("linli.sync")

# A subscriber that lets this many changes pile up unread is dropped; its client
# reconnects from its last sequence and catches up from CouchDB instead.
MAX_QUEUED = 10_000


@dataclass(eq=False)
class Subscriber:
    principal: Principal
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
        self.subscribers: set[Subscriber] = set()
        self.last_seq: str | None = None  # the newest CouchDB sequence published to subscribers
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start following (once per process, on the first live client)."""
        if self._task is None:
            info = await self.upstream.call("GET", self.upstream.main)
            if self._task is None:  # another request may have started it meanwhile
                self.last_seq = str(info["update_seq"])
                self._task = asyncio.create_task(self._follow(), name="linli-sync-changes-follower")

    def subscribe(self, principal: Principal) -> Subscriber:
        subscriber = Subscriber(principal)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def publish(self, change: dict[str, Any]) -> None:
        """Hand one CouchDB change to every subscriber that may see its document."""
        self.last_seq = str(change["seq"])
        doc = change.get("doc")
        if doc is None:
            return
        for subscriber in self.subscribers:
            if subscriber.overflowed or not may_see(subscriber.principal, doc):
                continue
            if len(subscriber.queue) >= MAX_QUEUED:
                subscriber.overflowed = True
            else:
                subscriber.queue.append(change)
            subscriber.wake.set()

    async def _follow(self) -> None:
        backoff = 0.5
        while True:
            params = {"feed": "continuous", "since": self.last_seq, "include_docs": "true", "style": "all_docs",
                      "heartbeat": 10_000}
            try:
                async for line in self.upstream.stream_lines(self.upstream.main, "_changes", params):
                    if line.strip():
                        change = json.loads(line)
                        if "seq" in change and "id" in change:
                            self.publish(change)
                            backoff = 0.5
            except (httpx2.HTTPError, UpstreamError, ValueError) as error:
                log.warning("changes follower lost CouchDB (%s); retrying in %.1f s", error, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
