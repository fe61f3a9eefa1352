"""A weak signal between a phone and the server: a TCP proxy on loopback that carries bytes at a set rate each way,
shared by all connections as one radio link is, each chunk arriving a set delay after it was sent.

Throttling in the proxy rather than in Chromium (DevTools' network conditions) because those leave out a service
worker's own requests, which is where the offline app syncs. `rate` may be changed while it runs (None: as fast
as loopback), so a test prepares quickly and then measures on the slow link.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

CHUNK = 4096
ACCEPT_ENCODING = re.compile(rb"(?im)^accept-encoding:[^\r\n]*")
REQUEST_LINE = re.compile(rb"^(?:GET|HEAD|POST|PUT|DELETE) (\S+) HTTP/1\.1\r\n")
UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass
class SlowLink:
    target_port: int
    rate: float | None = None  # bytes per second each way; None: unthrottled
    one_way_delay: float = 0.0  # seconds added to every chunk (half the round trip)
    port: int = 0
    identity: bool = False  # ask the server for uncompressed answers (a benchmark's reference)
    down: bool = False  # no request gets through: new connections are closed at once, open ones cut
    # Paths answered 503 by the link's far end, as a reverse proxy in front of a restarting server answers.
    unavailable: tuple[str, ...] = ()
    # Or requests (path and query) it picks: answered 503 the same way; the signal lost for one kind of request.
    refused: Callable[[str], bool] | None = None
    requests: list[str] = field(default_factory=list)  # the path of every request sent up, in order
    sent: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})
    _free_at: dict[str, float] = field(default_factory=lambda: {"up": 0.0, "down": 0.0})
    _connections: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def _pipe(self, direction: str, source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                    client: asyncio.StreamWriter | None = None) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def deliver() -> None:
            while (item := await queue.get()) is not None:
                due, data = item
                await asyncio.sleep(max(0.0, due - loop.time()))
                sink.write(data)
                await sink.drain()
            if sink.can_write_eof():
                sink.write_eof()

        delivering = asyncio.create_task(deliver())
        try:
            while (data := await source.read(CHUNK)) and not self.down:
                if client is not None and (request := REQUEST_LINE.match(data)):
                    path = request.group(1).decode()
                    self.requests.append(path)
                    if path.split("?")[0] in self.unavailable or (self.refused and self.refused(path)):
                        client.write(UNAVAILABLE)
                        await client.drain()
                        break
                if direction == "up" and self.identity and (head := data.find(b"\r\n\r\n")) != -1:
                    data = ACCEPT_ENCODING.sub(b"accept-encoding: identity", data[:head]) + data[head:]
                sent_at = loop.time()
                if self.rate:  # the link is busy until the bytes before these are through
                    sent_at = max(sent_at, self._free_at[direction]) + len(data) / self.rate
                    self._free_at[direction] = sent_at
                    await asyncio.sleep(max(0.0, sent_at - loop.time()))
                self.sent[direction] += len(data)
                queue.put_nowait((sent_at + self.one_way_delay, data))
        except ConnectionError:
            pass
        finally:
            queue.put_nowait(None)
            with contextlib.suppress(ConnectionError):
                await delivering

    async def _connection(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._connections.add(asyncio.current_task())
        server_writer = None
        try:
            if self.down:
                return
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            await asyncio.gather(self._pipe("up", client_reader, server_writer, client_writer),
                                 self._pipe("down", server_reader, client_writer))
        except OSError:
            pass
        finally:
            for writer in (client_writer, server_writer):
                if writer is not None:
                    writer.close()

    @contextlib.contextmanager
    def running(self) -> Iterator[SlowLink]:
        started = threading.Event()
        loop = asyncio.new_event_loop()
        stopping = asyncio.Event()

        async def serve() -> None:
            server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            started.set()
            await stopping.wait()
            server.close()
            for connection in self._connections:
                connection.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)

        def run() -> None:
            loop.run_until_complete(serve())
            loop.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert started.wait(10), "the slow link did not start"
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(stopping.set)
            thread.join(10)
