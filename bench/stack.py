"""The stack a benchmark runs on: its own pouchdb-server in a temporary folder and Linli's settings for it."""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import uvicorn

from crypto.envelope import b64url, unb64url
from crypto.keys import new_key
from server.domain.declaration import MAIN_DB
from server.store import views
from server.store.config import Settings
from server.store.couch import Couch, connect
from server.store.embedded_couch import EmbeddedCouch, free_port


@contextlib.contextmanager
def embedded_stack(prefix: str = "bench_", timeout: float = 600,
                   kept_in: Path | None = None) -> Iterator[tuple[Settings, Couch, EmbeddedCouch]]:
    """Settings (a fresh master key, nothing from the environment), the connected databases (each request may take
    `timeout` seconds) and the server; everything is removed afterwards, unless `kept_in` names a folder to keep it
    in (a later run given the same folder finds the databases, their indexes and the master key as they were left:
    a loaded year at full scale takes hours to write and index)."""
    with contextlib.ExitStack() as cleanup:
        folder = kept_in or Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="linli-bench-")))
        server = EmbeddedCouch(folder / "couch").start()
        cleanup.callback(server.stop)
        settings = Settings(data_dir=folder, couchdb_url=None, couchdb_user=None, couchdb_password=None,
                            db_prefix=prefix, secret_key="bench-only", host="127.0.0.1", port=0,
                            session_max_age=60, cookie_secure=False, master_keys=(_master_key(folder),))
        yield settings, connect(settings, server.url, timeout=timeout), server


def _master_key(folder: Path) -> bytes:
    """The folder's bench master key, made on first use (synthetic data only: never a real installation's key)."""
    path = folder / "bench_master_key"
    if not path.exists():
        path.write_text(b64url(new_key()), encoding="utf-8")
        path.chmod(0o600)
    return unb64url(path.read_text(encoding="utf-8").strip().rstrip("="))  # folders kept before bc45484: padded


def wait_for_view(database_url: str, name: str) -> None:
    """Index the main database's logical view `name` over the whole load: its physical view (server/store/views.py,
    which holds other logical views too) is asked with `reduce=false`, so that the wait is the index build alone
    (pouchdb-server would sum every row at query time); pouchdb-server keeps indexing when a slow first query
    times out.

    Asked with httpx2 (the runtime's HTTP client) rather than through pycouchdb, whose timeouts are
    exceptions of the requests library it is built on.
    """
    physical = views.home(MAIN_DB, name).name
    while True:
        try:
            httpx2.get(f"{database_url}/_design/linli/_view/{physical}", params={"limit": 0, "reduce": "false"},
                       timeout=600).raise_for_status()
            return
        except httpx2.ReadTimeout:
            continue


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    """The ASGI app served by uvicorn on a free loopback port (in a thread, its lifespan run as `linli serve` runs
    it); yields its URL without a trailing slash, and stops it afterwards."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True, name="bench-app")
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the app did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
