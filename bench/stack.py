"""The stack a benchmark runs on: its own pouchdb-server in a temporary folder and Linli's settings for it."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from crypto.keys import new_key
from server.store.config import Settings
from server.store.couch import Couch, connect
from server.store.embedded_couch import EmbeddedCouch


@contextlib.contextmanager
def embedded_stack(prefix: str = "bench_") -> Iterator[tuple[Settings, Couch, EmbeddedCouch]]:
    """Settings (a fresh master key, nothing from the environment), the connected databases and the server;
    everything is removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="linli-bench-") as tmp:
        server = EmbeddedCouch(Path(tmp) / "couch").start()
        try:
            settings = Settings(data_dir=Path(tmp), couchdb_url=None, couchdb_user=None, couchdb_password=None,
                                db_prefix=prefix, secret_key="bench-only", host="127.0.0.1", port=0,
                                session_max_age=60, cookie_secure=False, master_keys=(new_key(),))
            yield settings, connect(settings, server.url), server
        finally:
            server.stop()
