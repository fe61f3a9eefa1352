"""The embedded CouchDB-compatible server: a real `pouchdb-server` process.

Used by `linli serve` when no COUCHDB_URL is set, and by the test suite. It
listens on a free loopback port and keeps its files under the data folder.
The child gets SIGTERM if this process dies (Linux), so a crash leaves no
orphan holding the database files.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx2

from server.store.config import PROJECT_ROOT

POUCHDB_SERVER_BIN = PROJECT_ROOT / "node_modules" / "pouchdb-server" / "bin" / "pouchdb-server"
_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Runs in the child before exec: ask the kernel to SIGTERM it when we die."""
    with contextlib.suppress(OSError):  # not Linux/glibc: our own clean shutdown still applies
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedCouch:
    """Start, wait for and stop one pouchdb-server process."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> EmbeddedCouch:
        if not POUCHDB_SERVER_BIN.exists():
            raise RuntimeError(f"{POUCHDB_SERVER_BIN} is missing: run the setup (./dev up) to install npm packages")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / "pouchdb-server.log", "ab") as log:
            self.process = subprocess.Popen(
                ["node", str(POUCHDB_SERVER_BIN), "--host", "127.0.0.1", "--port", str(self.port),
                 "--dir", str(self.data_dir), "--config", str(self.data_dir / "config.json"), "--no-stdout-logs"],
                cwd=self.data_dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                # Own session: Ctrl-C reaches only us, and we stop the database after the web server.
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pouchdb-server exited with {self.process.returncode}; "
                                   f"see {self.data_dir / 'pouchdb-server.log'}")
            try:
                if httpx2.get(self.url, timeout=1).status_code == 200:
                    return self
            except httpx2.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"pouchdb-server did not answer on {self.url} within {timeout:.0f}s")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait, then SIGKILL: leveldb flushes on each write, so TERM loses nothing."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> EmbeddedCouch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
