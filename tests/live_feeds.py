"""Thousands of phones holding live `_changes` feeds on raw asyncio sockets, for the fan-out benchmark
(bench/sync_replication.py) and the kill -9 test (tests/test_sync_fanout.py).

Each `Feed` is one phone with its own device token, longpoll or continuous, resuming from the last sequence it
was given. Raw HTTP/1.1 instead of an HTTP client: an httpx2 request costs the client's event loop more than the
gateway's answer, and at 2,000 feeds the client would be measured instead of the gateway. The feeds run in the
caller's process, never in the gateway's (a `linli serve` subprocess), so they do not share its event loop.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

KINDS = ("longpoll", "continuous")


class FeedError(RuntimeError):
    """The gateway answered a feed with something other than a 200."""


@dataclass(eq=False)
class Feed:
    token: str  # the phone's device token (`lt_<id>.<secret>`)
    kind: str  # one of KINDS
    since: str = "now"  # where the next request resumes: the last sequence the gateway gave this phone
    received: list[str] = field(default_factory=list)  # ids of the changes it got, in order, over its whole life
    arrived: dict[str, float] = field(default_factory=dict)  # id → time.perf_counter() when its change arrived

    def request(self, path: str, host: str) -> bytes:
        params = {"feed": self.kind, "since": self.since, "include_docs": "true", "timeout": "300000"}
        if self.kind == "continuous":
            params["heartbeat"] = "30000"
        return (f"GET {path}/_changes?{urlencode(params)} HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {self.token}\r\nConnection: close\r\n\r\n").encode()

    def take(self, line: bytes, now: float) -> bool:
        """One line of the feed: a change (recorded, `since` moves past it) or the end; True once the feed ended."""
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

    def _record(self, change: dict[str, Any], now: float) -> None:
        if not change.get("doc"):
            raise FeedError(f"change of {change['id']} came without its document")
        self.received.append(change["id"])
        self.arrived.setdefault(change["id"], now)
        self.since = change["seq"]


async def _headers(reader: asyncio.StreamReader) -> bool:
    """Read the answer's status and headers; whether its body is chunked."""
    headers = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    if headers[0].split()[1] != "200":
        raise FeedError(f"{headers[0]}: {(await reader.read(2000)).decode(errors='replace')}")
    return any(h.lower() == "transfer-encoding: chunked" for h in headers)


async def _lines(reader: asyncio.StreamReader, chunked: bool) -> AsyncIterator[tuple[bytes, float]]:
    """The body's non-empty lines (heartbeats skipped) and when each arrived."""
    pending = b""
    while True:
        if chunked:
            size = int((await reader.readline()).split(b";")[0], 16)
            data = (await reader.readexactly(size + 2))[:-2]
        else:
            data = await reader.read(65536)
            size = len(data)
        now = time.perf_counter()
        if not size:
            return
        *complete, pending = (pending + data).split(b"\n")
        for line in complete:
            if line.strip():
                yield line, now


async def follow(feed: Feed, url: str, until: set[str], *, connected: asyncio.Semaphore | None = None,
                 retry_until: float | None = None) -> None:
    """Hold `feed` open (a longpoll asks again after each answer) until it has received every id in `until`.

    `connected`, if given, is held from connecting until the gateway has answered with its headers (the feed is
    then subscribed), so that thousands of feeds connect a few hundred at a time. With `retry_until` (a
    time.monotonic() deadline), a lost connection is tried again from `since` until then: a gateway killed and
    restarted under the phones; without, it is an error.
    """
    parts = urlsplit(url)
    while not until <= set(feed.arrived):
        try:
            await _one_request(feed, parts.hostname or "127.0.0.1", parts.port or 80, parts.path, until, connected)
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            if retry_until is None or time.monotonic() > retry_until:
                raise FeedError(f"{feed.kind} feed lost: {error!r}") from error
            await asyncio.sleep(0.2)


async def _one_request(feed: Feed, host: str, port: int, path: str, until: set[str],
                       connected: asyncio.Semaphore | None) -> None:
    if connected:
        await connected.acquire()
    held = connected
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except BaseException:
        if held:
            held.release()
        raise
    try:
        writer.write(feed.request(path, f"{host}:{port}"))
        chunked = await _headers(reader)
        if held:
            held.release()
            held = None
        async for line, now in _lines(reader, chunked):
            if feed.take(line, now) or until <= set(feed.arrived):
                return
        raise ConnectionResetError("the feed ended without its last_seq")
    finally:
        if held:
            held.release()
        writer.close()


def raise_open_files(needed: int) -> None:
    """Lift this process's soft limit on open files to `needed` (within the hard limit); children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise RuntimeError(f"{needed} open files needed, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
