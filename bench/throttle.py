"""Chromium's renderers slowed as a phone's CPU is slower than this machine's: the one slowdown every browser
figure of the benchmarks is measured under (bench/pwa.py, bench/field_crypto.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import threading
import time
from pathlib import Path
from typing import Any

CPU_SLOWDOWN = 4
SPIN = """() => { const started = performance.now(); let x = 0;
  for (let i = 0; i < 3e8; i++) { x += i % 7; } return performance.now() - started; }"""


class RendererThrottle:
    """Slows this process's Chromium renderers `rate` times while in use, as DevTools' CPU throttling slows a page:
    each runs for a few milliseconds, then is suspended (SIGSTOP) `rate - 1` times as long, counted from when it
    has stopped (here that can take a scheduler tick, 4 ms, after the signal). DevTools cannot throttle a service
    worker ("Operation is only supported for pages, not workers"), and the offline app's work is its service
    worker's: suspending the whole renderer process slows the page and the worker in it alike."""

    RUN_S = 0.004

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._cycle, name="renderer-throttle", daemon=True)
        self._known: set[int] = set()  # renderers seen (a forked process shows its type only after a moment)
        self._renderers: set[int] = set()

    def __enter__(self) -> RendererThrottle:
        self._renderers = self._find()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self._signal(self._renderers | self._find(), signal.SIGCONT)

    def _find(self) -> set[int]:
        """This process's descendants that are Chromium renderers."""
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
        found, todo = set(), [os.getpid()]
        while todo:
            for pid in children.get(todo.pop(), []):
                todo.append(pid)
                if pid not in self._known:
                    with contextlib.suppress(OSError):
                        if b"--type=renderer" in Path(f"/proc/{pid}/cmdline").read_bytes():
                            self._known.add(pid)
                if pid in self._known:
                    found.add(pid)
        return found

    @staticmethod
    def _wait_stopped(pids: set[int]) -> None:
        deadline = time.monotonic() + 0.05
        waiting = set(pids)
        while waiting and time.monotonic() < deadline:
            for pid in list(waiting):
                try:
                    if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "TtXZ":
                        waiting.discard(pid)
                except OSError:
                    waiting.discard(pid)
            time.sleep(0.0002)

    @staticmethod
    def _signal(pids: set[int], sig: signal.Signals) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _cycle(self) -> None:
        resumed = time.monotonic()
        while not self._done.is_set():
            time.sleep(max(0.0, self.RUN_S - (time.monotonic() - resumed)))
            stopped_pids = set(self._renderers)
            self._signal(stopped_pids, signal.SIGSTOP)
            self._wait_stopped(stopped_pids)
            stopped = time.monotonic()
            self._renderers = self._find()  # while they are suspended: new pages, restarted workers
            time.sleep(max(0.0, (self.rate - 1) * (stopped - resumed) - (time.monotonic() - stopped)))
            self._signal(stopped_pids | self._renderers, signal.SIGCONT)
            resumed = time.monotonic()


def spin_ms(target: Any) -> float:
    """A fixed piece of JavaScript work in a Playwright page or worker: the median of three runs after a warm-up
    (ms)."""
    return statistics.median([target.evaluate(SPIN) for _ in range(4)][1:])
