"""Each signed-in session's record in the accounts database: what makes a session revocable one by one.

The cookie (server/security/sessions.py) carries a random session id; the record's id is
`session:<hash of the user id>:<hash of the session id>`: per user, so that ending all of a user's
sessions is one range read, and hashed, so that a copy of the database names no live session. A
session counts only while its record exists: logging out deletes it (a copied cookie dies with the
logout, the user's other sessions live on); deactivation and a new password delete them all.

Not a declared document type: like `throttle:` and `device_token:`, records live only in the accounts
database, which is never replicated.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
from typing import Any

import pycouchdb

from server.store.couch import bulk_save, get_or_none

# Sessions logged out in this process lately: the sync gateway refuses them before its principal cache
# (sync/principals.py, 5 s), which may still hold them, so this outlives that cache.
ENDED_HERE_SECONDS = 60.0
_ended_here: dict[str, float] = {}


def _prefix(user_id: str) -> str:
    return f"session:{hashlib.sha256(user_id.encode()).hexdigest()[:16]}:"


def record_id(user_id: str, sid: str) -> str:
    return _prefix(user_id) + hashlib.sha256(sid.encode()).hexdigest()[:32]


def _records(db: pycouchdb.client.Database, user_id: str) -> list[dict[str, Any]]:
    prefix = _prefix(user_id)
    return [row["doc"] for row in db.all(startkey=prefix, endkey=prefix + "\ufff0", as_list=True)]


def _deleted(record: dict[str, Any]) -> dict[str, Any]:
    return {"_id": record["_id"], "_rev": record["_rev"], "_deleted": True}


def create(db: pycouchdb.client.Database, user_id: str, now: dt.datetime, max_age: int) -> str:
    """A new session of the user; returns its id (for the cookie only). Lapsed records go on the way."""
    sid = secrets.token_urlsafe(32)
    record = {"_id": record_id(user_id, sid), "user": user_id, "created_at": now.isoformat(),
              "expires_at": (now + dt.timedelta(seconds=max_age)).isoformat()}
    lapsed = [_deleted(r) for r in _records(db, user_id) if dt.datetime.fromisoformat(r["expires_at"]) <= now]
    saved = bulk_save(db, [*lapsed, record])[-1]
    if saved.error:  # a session without its record would end at the next request: say why now instead
        raise RuntimeError(f"could not record the new session: {saved.error}")
    return sid


def end(db: pycouchdb.client.Database, user_id: str, sid: str) -> None:
    """Log one session out, at once."""
    now = time.monotonic()
    for stale in [s for s, until in _ended_here.items() if until < now]:
        del _ended_here[stale]
    _ended_here[sid] = now + ENDED_HERE_SECONDS
    record = get_or_none(db, record_id(user_id, sid))
    if record:
        bulk_save(db, [_deleted(record)])


def end_all(db: pycouchdb.client.Database, user_id: str) -> int:
    """Delete every session record of the user (deactivation, a new password); returns how many."""
    records = _records(db, user_id)
    bulk_save(db, [_deleted(r) for r in records])
    return len(records)


def ended_here(sid: str) -> bool:
    """Whether this process logged the session out within ENDED_HERE_SECONDS."""
    return _ended_here.get(sid, 0.0) > time.monotonic()
