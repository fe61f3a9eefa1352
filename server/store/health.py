"""What a running server knows about its own parts, for `/healthz` and `/readyz` (server/web/app.py).

Each part is filled in by whoever runs it: the embedded database's supervisor (embedded_couch.py), `linli serve`
as it builds the indexes, the minute sweep. A server whose CouchDB is COUCHDB_URL's has no supervisor: a load
balancer restarts what it runs, and `/healthz` still probes the database itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from server.store import couch, sweeps

SWEEP_LATE_AFTER = dt.timedelta(minutes=3)  # the minute sweep missed two turns: the clocks are not moving


@dataclass
class Health:
    supervised: bool = False  # this process runs the embedded CouchDB and restarts it if it exits
    database_restarts: int = 0
    database_last_exit: int | None = None  # the exit code the last time it died
    database_down_since: dt.datetime | None = None  # set by the supervisor between an exit and the restart
    first_views_built: bool = True  # `linli serve` builds them before it listens; False while a rebuild runs
    all_views_built: bool = False
    built_before_url: list[str] = field(default_factory=list)  # "<database>/<view>", as `linli serve` built them
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    last_sweep_at: dt.datetime | None = None  # the last minute sweep that ran to its end
    sweep_failures: int = 0  # sweeps (or parts of one) that raised, since start
    sync_live_clients: Callable[[], int] | None = None  # the sync gateway's hub, when one is mounted

    def report(self, database_answers: bool, now: dt.datetime) -> tuple[bool, bool, dict[str, Any]]:
        """(alive, ready, the parts as JSON). Alive: the database answers. Ready: alive and the first pages'
        indexes built. The sweep is late when it has not finished for SWEEP_LATE_AFTER (reported, not fatal:
        pages and sync still work)."""
        since = self.last_sweep_at or self.started_at
        sweep_late = now - since > SWEEP_LATE_AFTER
        parts = {
            "database": {"ok": database_answers, "supervised": self.supervised, "restarts": self.database_restarts,
                         "last_exit": self.database_last_exit,
                         "down_since": self.database_down_since.isoformat() if self.database_down_since else None},
            "views": {"ok": self.first_views_built, "first_pages": self.first_views_built,
                      "all": self.all_views_built, "waited_for": couch.index_waits(),
                      "built_before_url": self.built_before_url, "read_by_requests": couch.index_used()},
            "sweeps": {"ok": not sweep_late, "last": self.last_sweep_at.isoformat() if self.last_sweep_at else None,
                       "failures": self.sweep_failures, "skipped_documents": sweeps.skipped()},
        }
        if self.sync_live_clients is not None:
            parts["sync"] = {"ok": True, "live_clients": self.sync_live_clients()}
        return database_answers, database_answers and self.first_views_built, parts
