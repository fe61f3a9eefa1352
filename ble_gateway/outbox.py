"""The gateway's disk: documents waiting for the sync gateway, and what it must remember across restarts.

One SQLite file (`<data dir>/gateway.sqlite3`, WAL journal, `synchronous=FULL` so that a committed
packet survives a power cut):

| table | holds |
|---|---|
| `outbox` | `doc_id` (primary key: ids are deterministic, so a packet heard twice is stored once), `body` |
|          | (JSON, protected fields already sealed), `state` pending / sent / refused, `reason`, `attempts` |
| `sequence` | per device: the last accepted encryption counter or packet id, with its registration (replay guard) |
| `state` | rule episodes and last stored readings (`state.py`), JSON per key |
| `config` | the gateway's last known configuration documents (devices, safety rules), so it starts offline |
| `latest` | health documents, updated in place (`rev` is CouchDB's, for the next update) |

A packet's documents, its sequence and the rule state it changed are written in one transaction: after
a crash either all of it is there (and the packet, heard again, is a duplicate) or none of it is (and
the packet, heard again, is new).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .decode import Sequence

Doc = dict[str, Any]

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (doc_id TEXT PRIMARY KEY, body TEXT NOT NULL, created_at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'refused')),
    reason TEXT, attempts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (state, created_at);
CREATE TABLE IF NOT EXISTS sequence (device_id TEXT PRIMARY KEY, registered_at TEXT NOT NULL,
    number INTEGER NOT NULL, encrypted INTEGER NOT NULL, heard_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS config (doc_id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS latest (doc_id TEXT PRIMARY KEY, body TEXT NOT NULL, rev TEXT, dirty INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Outbox:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        # Autocommit mode would make each row of an executemany its own fsync; one transaction, one fsync.
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ------------------------------------------------------------ recording

    def record(self, docs: Iterable[Doc], sequences: dict[str, tuple[str, Sequence]],
               state: dict[str, dict[str, Any]], now: dt.datetime) -> int:
        """Store new documents (ignoring ids already stored), sequences and state at once; return how many were new."""
        rows = [(doc["_id"], json.dumps(doc, ensure_ascii=False, separators=(",", ":")), now.isoformat())
                for doc in docs]
        with self._transaction():
            before = self.db.total_changes
            self.db.executemany("INSERT OR IGNORE INTO outbox (doc_id, body, created_at) VALUES (?, ?, ?)", rows)
            new = self.db.total_changes - before
            self.db.executemany(
                "INSERT OR REPLACE INTO sequence VALUES (?, ?, ?, ?, ?)",
                [(device_id, registered_at, s.number, int(s.encrypted), s.heard_at.isoformat())
                 for device_id, (registered_at, s) in sequences.items()])
            self.db.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)",
                                [(key, json.dumps(value)) for key, value in state.items()])
        return new

    def sequences(self) -> dict[str, tuple[str, Sequence]]:
        rows = self.db.execute("SELECT device_id, registered_at, number, encrypted, heard_at FROM sequence")
        return {row[0]: (row[1], Sequence(row[2], bool(row[3]), dt.datetime.fromisoformat(row[4]))) for row in rows}

    def state(self) -> dict[str, dict[str, Any]]:
        return {key: json.loads(value) for key, value in self.db.execute("SELECT key, value FROM state")}

    # ------------------------------------------------------------ delivering

    def pending(self, limit: int) -> list[Doc]:
        return [json.loads(body) for (body,) in self.db.execute(
            "SELECT body FROM outbox WHERE state = 'pending' ORDER BY created_at, doc_id LIMIT ?", (limit,))]

    def mark_sent(self, doc_ids: Iterable[str]) -> None:
        with self._transaction():
            self.db.executemany("UPDATE outbox SET state = 'sent', attempts = attempts + 1 WHERE doc_id = ?",
                                [(i,) for i in doc_ids])

    def mark_refused(self, doc_id: str, reason: str) -> None:
        """The sync gateway will never take this document (a bug or a changed registration): kept for inspection."""
        with self._transaction():
            self.db.execute("UPDATE outbox SET state = 'refused', reason = ?, attempts = attempts + 1 "
                            "WHERE doc_id = ?", (reason[:500], doc_id))

    def counts(self) -> dict[str, int]:
        found = dict(self.db.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
        return {state: found.get(state, 0) for state in ("pending", "sent", "refused")}

    def prune_sent(self, older_than: dt.datetime) -> int:
        """Forget delivered documents (their ids stop guarding duplicates, so keep longer than any replay window)."""
        with self._transaction():
            deleted = self.db.execute("DELETE FROM outbox WHERE state = 'sent' AND created_at < ?",
                                      (older_than.isoformat(),)).rowcount
        return deleted

    # ------------------------------------------------------------ configuration and health

    def save_config(self, docs: Iterable[Doc], since: str) -> None:
        with self._transaction():
            for doc in docs:
                if doc.get("_deleted"):
                    self.db.execute("DELETE FROM config WHERE doc_id = ?", (doc["_id"],))
                else:
                    self.db.execute("INSERT OR REPLACE INTO config VALUES (?, ?)", (doc["_id"], json.dumps(doc)))
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('since', ?)", (since,))

    def config(self) -> tuple[list[Doc], str]:
        docs = [json.loads(body) for (body,) in self.db.execute("SELECT body FROM config")]
        row = self.db.execute("SELECT value FROM meta WHERE key = 'since'").fetchone()
        return docs, row[0] if row else "0"

    def put_latest(self, doc: Doc) -> None:
        with self._transaction():
            self.db.execute("INSERT INTO latest (doc_id, body, rev, dirty) VALUES (?, ?, NULL, 1) "
                            "ON CONFLICT (doc_id) DO UPDATE SET body = excluded.body, dirty = 1",
                            (doc["_id"], json.dumps(doc)))

    def dirty_latest(self) -> list[tuple[Doc, str | None]]:
        return [(json.loads(body), rev) for body, rev in self.db.execute(
            "SELECT body, rev FROM latest WHERE dirty = 1")]

    def latest_delivered(self, doc_id: str, body: Doc, rev: str | None) -> None:
        """Stored under rev; still dirty if it changed again meanwhile."""
        with self._transaction():
            self.db.execute("UPDATE latest SET rev = ?, dirty = (body != ?) WHERE doc_id = ?",
                            (rev, json.dumps(body), doc_id))
