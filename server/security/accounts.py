"""Accounts: user documents, argon2id passwords, login throttling.

User documents live in the accounts database (never replicated to phones).
Throttling state lives in CouchDB too, so a second server process behind a
load balancer sees the same failures.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from typing import Any

import pycouchdb
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pycouchdb.exceptions import Conflict

from server.domain.declaration import Role, validate
from server.store.couch import get_or_none

_hasher = PasswordHasher()  # argon2id with the library's current recommended cost
# A real hash to verify against when the user does not exist, so that timing
# does not reveal which usernames exist.
_DUMMY_HASH = _hasher.hash("linli-no-such-user")

MAX_FAILURES = 5
LOCKOUT = dt.timedelta(minutes=15)
MIN_PASSWORD_LENGTH = 8


def user_id(username: str) -> str:
    return f"user:{username}"


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def make_user(username: str, display_name: str, roles: list[Role], street: str, password_hash: str, *,
              communities: list[str] = (), grids: list[str] = (), department: str | None = None,
              resident: str | None = None, gateway: str | None = None) -> dict[str, Any]:
    """A validated user document; password_hash comes from hash_password()."""
    doc: dict[str, Any] = {
        "_id": user_id(username), "type": "user", "street": street, "username": username,
        "display_name": display_name, "roles": [r.value for r in roles],
        "communities": list(communities), "grids": list(grids), "active": True, "auth_epoch": 1,
        "password_hash": password_hash,
    }
    if department:
        doc["department"] = department
    if resident:
        doc["resident"] = resident
    if gateway:
        doc["gateway"] = gateway
    validate(doc)
    return doc


class LoginLocked(Exception):
    def __init__(self, until: dt.datetime) -> None:
        self.until = until
        super().__init__(f"too many failed logins; locked until {until.isoformat()}")


@dataclass(frozen=True)
class Throttle:
    """Per-key failure counter kept in a `throttle:<key>` document (the key: a username, or what
    server/web/activation.py counts activation-code guesses by); `limit` failures within LOCKOUT lock the key."""

    db: pycouchdb.client.Database
    limit: int = MAX_FAILURES

    def _doc(self, username: str) -> dict[str, Any]:
        return get_or_none(self.db, f"throttle:{username}") or {"_id": f"throttle:{username}", "failures": []}

    def check(self, username: str, now: dt.datetime) -> None:
        recent = [t for t in self._doc(username)["failures"] if now - dt.datetime.fromisoformat(t) < LOCKOUT]
        if len(recent) >= self.limit:
            raise LoginLocked(dt.datetime.fromisoformat(recent[-1]) + LOCKOUT)

    def record_failure(self, username: str, now: dt.datetime) -> None:
        for _ in range(3):  # concurrent failures race on one document; retry on conflict
            doc = self._doc(username)
            doc["failures"] = [t for t in doc["failures"] if now - dt.datetime.fromisoformat(t) < LOCKOUT]
            doc["failures"].append(now.isoformat())
            try:
                self.db.save(doc)
                return
            except Conflict:
                continue

    def clear(self, username: str) -> None:
        doc = get_or_none(self.db, f"throttle:{username}")
        if doc and doc["failures"]:
            doc["failures"] = []
            with contextlib.suppress(Conflict):  # a concurrent failure was recorded; it will age out
                self.db.save(doc)


def authenticate(db: pycouchdb.client.Database, username: str, password: str,
                 now: dt.datetime) -> dict[str, Any] | None:
    """The active user document if the password is right, else None.

    Raises LoginLocked after MAX_FAILURES failures within LOCKOUT.
    """
    throttle = Throttle(db)
    throttle.check(username, now)
    user = get_or_none(db, user_id(username)) if username else None
    stored = user.get("password_hash") if user and user.get("active") else None
    try:
        ok = _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok:
        throttle.record_failure(username, now)
        return None
    throttle.clear(username)
    if _hasher.check_needs_rehash(stored):
        user["password_hash"] = _hasher.hash(password)
        user = db.save(user)
    return user
