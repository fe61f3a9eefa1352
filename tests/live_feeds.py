"""Thousands of phones holding live `_changes` feeds on raw asyncio sockets, for the fan-out benchmark
(bench/sync_replication.py) and the kill -9 test (tests/test_sync_fanout.py).

Each `Feed` is one phone with its own device token, longpoll or continuous, resuming from the last sequence it
was given, as PouchDB does: a longpoll asks again on the same (keep-alive) connection after each answer, a
continuous feed stays open between the changes it waits for. Raw HTTP/1.1 instead of an HTTP client: an httpx2
request costs the client's event loop more than the gateway's answer, and at 2,000 feeds the client would be
measured instead of the gateway. The feeds run in the caller's process, never in the gateway's (a `linli serve`
subprocess), so they do not share its event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import resource
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx2

from server.domain.declaration import Role
from server.security import accounts
from server.store.couch import Couch, bulk_save
from sync.auth import new_device_token

from .sync_harness import C1, G1, STREET

KINDS = ("longpoll", "continuous")


class FeedError(RuntimeError):
    """The gateway answered a feed with something other than a 200, or the feed was lost for good."""


@dataclass(eq=False)
class Feed:
    token: str  # the phone's device token (`lt_<id>.<secret>`)
    kind: str  # one of KINDS
    since: str = "now"  # where the next request resumes: the last sequence the gateway gave this phone
    received: list[str] = field(default_factory=list)  # ids of the changes it got, in order, over its whole life
    arrived: dict[str, float] = field(default_factory=dict)  # id → time.perf_counter() when its change arrived
    lost_after: list[int] = field(default_factory=list)  # len(received) each time its connection was lost
    _connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    _answer: AsyncIterator[tuple[bytes, float]] | None = None  # the open answer's lines (a continuous feed's stays)

    def request(self, path: str, host: str) -> bytes:
        params = {"feed": self.kind, "since": self.since, "include_docs": "true", "timeout": "300000"}
        if self.kind == "continuous":
            params["heartbeat"] = "30000"
        return (f"GET {path}/_changes?{urlencode(params)} HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {self.token}\r\n\r\n").encode()

    def take(self, line: bytes, now: float) -> bool:
        """One line of the feed: a change (recorded, `since` moves past it) or the end; True once the answer ended."""
        value = json.loads(line)
        if "results" in value:  # a longpoll's whole answer
            for change in value["results"]:
                self._record(change, now)
            self.since = value["last_seq"]
            return True
        if "last_seq" in value:  # a continuous feed's end
            self.since = value["last_seq"]
            return True
        self._record(value, now)
        return False

    def close(self) -> None:
        if self._connection:
            self._connection[1].close()
        self._connection = self._answer = None

    def _record(self, change: dict[str, Any], now: float) -> None:
        if not change.get("doc"):
            raise FeedError(f"change of {change['id']} came without its document")
        self.received.append(change["id"])
        self.arrived.setdefault(change["id"], now)
        self.since = change["seq"]


async def follow(feed: Feed, url: str, until: set[str], *, connected: asyncio.Semaphore | None = None,
                 retry_until: float | None = None) -> None:
    """Hold `feed` until it has received every id in `until`; a continuous feed is left open for the next call.

    `connected`, if given, is held from sending a request until the gateway has answered with its headers (the
    feed is then subscribed), so that thousands of feeds connect a few hundred at a time. With `retry_until` (a
    time.monotonic() deadline), a lost connection is opened again and the feed resumes from `since` until then:
    a gateway killed and restarted under the phones; without, it is an error.
    """
    parts = urlsplit(url)
    while not until <= set(feed.arrived):
        try:
            if feed._answer is None:  # noqa: SLF001 - the feed's own state, kept across calls
                await _ask(feed, parts.hostname or "127.0.0.1", parts.port or 80, parts.path, connected)
            async for line, now in feed._answer:  # noqa: SLF001
                if feed.take(line, now):  # answered: read to its last chunk, then ask again on the same connection
                    async for _ in feed._answer:  # noqa: SLF001
                        raise FeedError("the answer went on after its last_seq")
                    feed._answer = None  # noqa: SLF001
                    break
                if until <= set(feed.arrived):
                    return
            else:
                raise ConnectionResetError("the answer ended without its last_seq")
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            feed.close()
            feed.lost_after.append(len(feed.received))  # all the gateway sent before is read by now
            if retry_until is None or time.monotonic() > retry_until:
                raise FeedError(f"{feed.kind} feed lost: {error!r}") from error
            await asyncio.sleep(0.2)
        except BaseException:
            feed.close()
            raise


async def _ask(feed: Feed, host: str, port: int, path: str, connected: asyncio.Semaphore | None) -> None:
    """Send the feed's next request (connecting if it has no connection) and read the answer's headers."""
    if connected:
        await connected.acquire()
    try:
        # A kept-alive connection the gateway closed while idle (uvicorn: after 5 s) is opened anew, as browsers do.
        for fresh in (feed._connection is None, True):  # noqa: SLF001
            if fresh:
                feed.close()
                feed._connection = await asyncio.open_connection(host, port)  # noqa: SLF001
            reader, writer = feed._connection  # noqa: SLF001
            try:
                writer.write(feed.request(path, f"{host}:{port}"))
                headers = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                break
            except (asyncio.IncompleteReadError, ConnectionError):
                if fresh:
                    raise
    finally:
        if connected:
            connected.release()
    if headers[0].split()[1] != "200":
        raise FeedError(f"{headers[0]}: {(await reader.read(2000)).decode(errors='replace')}")
    if not any(h.lower() == "transfer-encoding: chunked" for h in headers):
        raise FeedError(f"a live feed's answer was not chunked: {headers}")
    feed._answer = _lines(reader)  # noqa: SLF001


async def _lines(reader: asyncio.StreamReader) -> AsyncIterator[tuple[bytes, float]]:
    """A chunked body's non-empty lines (heartbeats skipped) and when each arrived; the connection stays usable."""
    pending = b""
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        data = (await reader.readexactly(size + 2))[:-2]
        now = time.perf_counter()
        if not size:
            return
        *complete, pending = (pending + data).split(b"\n")
        for line in complete:
            if line.strip():
                yield line, now


def live_clients(url: str) -> int:
    """How many live feeds the gateway at `url` (the web app's base) holds now (its /healthz)."""
    return httpx2.get(url + "healthz", timeout=30).json()["parts"]["sync"]["live_clients"]


async def until_live(url: str, count: int, patience: float) -> None:
    """Wait until the gateway holds exactly `count` live feeds, or fail after `patience` seconds."""
    deadline = time.monotonic() + patience
    while (now := await asyncio.to_thread(live_clients, url)) != count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{now} live feeds after {patience} s, expected {count}")
        await asyncio.sleep(0.1)


def phones_with_tokens(couch: Couch, count: int) -> list[str]:
    """`count` grid workers of grid 1 (sync_harness's street), each with a device token: distinct principals, as
    real phones are. Returns the tokens."""
    users, token_docs, tokens = [], [], []
    now = dt.datetime.now(dt.UTC)
    for i in range(count):
        user = accounts.make_user(f"live{i:04d}", f"网格员{i}", [Role.GRID_WORKER], STREET, "unused",
                                  communities=[C1], grids=[G1])
        token, token_doc = new_device_token(user["_id"], "live feed", now)
        users.append(user)
        token_docs.append(token_doc)
        tokens.append(token)
    for start in range(0, count, 500):
        bulk_save(couch.accounts, users[start:start + 500] + token_docs[start:start + 500])
    return tokens


def raise_open_files(needed: int) -> None:
    """Lift this process's soft limit on open files to `needed` (within the hard limit); children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise RuntimeError(f"{needed} open files needed, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
