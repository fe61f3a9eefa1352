"""A short-lived cache, per process, of who is asking.

Without it every protocol request re-read the user document (and the device
token) from CouchDB: an initial sync makes three requests per batch, and 500
phones of one account waking for one change made 1,500 identical reads.

Bound on staleness: an entry lives `TTL_SECONDS`. A revoked device token, a
deactivated user (new `auth_epoch`) or a worker moved to another grid is
therefore honoured by every process for new requests within that time (a
logout at once in its own process: sync/auth.py asks `session_records.ended_here`
first). The key holds what the answer depends on (the token, or the session's
record and its `auth_epoch`), so a new sign-in never reuses an older session's entry.
Refusals are never cached. Each process keeps its own cache, so scale-out
needs nothing shared: a second process just loads the user once itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from server.domain.access import Principal

TTL_SECONDS = 5.0
MAX_ENTRIES = 10_000  # distinct sessions and tokens seen within one TTL


class PrincipalCache:
    def __init__(self, ttl: float = TTL_SECONDS, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl, self.max_entries = ttl, max_entries
        # Insertion order is expiry order (every entry lives ttl), which makes eviction a scan from the front.
        self._entries: dict[str, tuple[float, asyncio.Future[Principal]]] = {}

    async def get(self, key: str, load: Callable[[], Awaitable[Principal]]) -> Principal:
        """The principal for `key`, loading it once for all concurrent requests when absent or expired."""
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is None or entry[0] <= now:
            self._entries.pop(key, None)
            self._evict(now)
            entry = self._entries[key] = (now + self.ttl, asyncio.ensure_future(load()))
            entry[1].add_done_callback(lambda future: self._forget_failure(key, entry))
        # Shielded: one waiter's client hanging up must not cancel the load the others wait on.
        return await asyncio.shield(entry[1])

    def _forget_failure(self, key: str, entry: tuple[float, asyncio.Future[Principal]]) -> None:
        """A refusal or a CouchDB failure is never kept: the next request asks again."""
        failed = entry[1].cancelled() or entry[1].exception() is not None
        if failed and self._entries.get(key) is entry:
            del self._entries[key]

    def _evict(self, now: float) -> None:
        while self._entries:
            key, (expires, _) = next(iter(self._entries.items()))
            if expires > now and len(self._entries) < self.max_entries:
                return
            del self._entries[key]
