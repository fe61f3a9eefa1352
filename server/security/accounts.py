"""Accounts: user documents, argon2id passwords, login throttling.

User documents live in the accounts database (never replicated to phones).
Throttling state lives in CouchDB too, so a second server process behind a
load balancer sees the same failures; each guess is reserved there with a
conditional write before the password is checked (`Throttle`).
"""

from __future__ import annotations

import datetime as dt
import os
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any

import pycouchdb
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pycouchdb.exceptions import Conflict

from server.domain.declaration import Role, validate
from server.security import session_records
from server.store.couch import get_or_none

# argon2id at the library's recommended cost (RFC 9106's second recommendation: 64 MiB, 3 passes, 4 lanes).
# LINLI_TEST_PASSWORD_HASH=1 takes argon2id's least cost instead, for the test suite only (tests/__init__.py
# sets it): the suite signs people in some thousand times, each check 0.2–0.8 s on two busy cores (a third of the
# page tests' time); the same algorithm and code path, as Django's documentation advises for tests. `linli serve` warns
# when it is set; a hash made at another cost is made again at the running one at the next sign-in.
TEST_HASH = os.environ.get("LINLI_TEST_PASSWORD_HASH") == "1"
_hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1) if TEST_HASH else PasswordHasher()
# A real hash at the hasher's cost to verify against when the user does not exist, so that timing does not reveal
# which usernames exist. At the recommended cost written out, not hashed at import: every `linli` process imports
# this module, and a hash costs it 0.3 s (over a second on a busy machine); at the tests' cost hashing is free.
# tests/test_throttles.py checks both are of the cost they stand in for.
DUMMY_HASH_AT_DEFAULT_COST = ("$argon2id$v=19$m=65536,t=3,p=4$kt88Nc8DeuXdNkZNPh4ErA$"
                              "+Dpt8PA9kDkMeVAiRtV2FYrTfbfiikpBjqSlsWBbiTs")  # of "linli-no-such-user"
_DUMMY_HASH = _hasher.hash("linli-no-such-user") if TEST_HASH else DUMMY_HASH_AT_DEFAULT_COST

MAX_FAILURES = 5
LOCKOUT = dt.timedelta(minutes=15)
MIN_PASSWORD_LENGTH = 8
MAX_RESERVE_TRIES = 50  # conflicts in a row before a guess is refused unchecked


def user_id(username: str) -> str:
    return f"user:{username}"


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def make_user(username: str, display_name: str, roles: list[Role], street: str, password_hash: str, *,
              communities: list[str] = (), grids: list[str] = (), department: str | None = None,
              resident: str | None = None, gateway: str | None = None,
              organisation: str | None = None) -> dict[str, Any]:
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
    if organisation:  # a partner's organisation (issue 16)
        doc["organisation"] = organisation
    validate(doc)
    return doc


def end_sessions_and_save(db: pycouchdb.client.Database, user: dict[str, Any]) -> dict[str, Any]:
    """Save a changed user document (deactivated, a new password) and end every session of the user at once:
    a new `auth_epoch` refuses their cookies, and their session records are deleted."""
    saved = db.save({**user, "auth_epoch": user["auth_epoch"] + 1})
    session_records.end_all(db, user["_id"])
    return saved


class LoginLocked(Exception):
    def __init__(self, until: dt.datetime) -> None:
        self.until = until
        super().__init__(f"too many failed logins; locked until {until.isoformat()}")


def _time_of(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.partition("#")[0])


@dataclass(frozen=True)
class Attempt:
    """One reserved guess: the throttle key and the timestamp it holds in the key's document."""

    key: str
    stamp: str


@dataclass(frozen=True)
class Throttle:
    """Per-key guess counter kept in a `throttle:<key>` document (the key: a username, or what
    server/web/activation.py counts activation-code guesses by); `limit` failures within LOCKOUT lock the key.

    Atomic across threads and processes: a guess is *reserved* (written to the document, CouchDB's revision
    check settling any race) before the secret is checked, and counts as a failure unless it is released.
    Checking first and recording the failure afterwards let 40 parallel guesses all through a limit of 5.
    """

    db: pycouchdb.client.Database
    limit: int = MAX_FAILURES

    def _doc(self, key: str) -> dict[str, Any]:
        return get_or_none(self.db, f"throttle:{key}") or {"_id": f"throttle:{key}", "failures": []}

    def reserve(self, key: str, now: dt.datetime) -> Attempt:
        """Count one guess before it is checked; raises LoginLocked when `limit` are already counted."""
        for _ in range(MAX_RESERVE_TRIES):
            doc = self._doc(key)
            recent = [t for t in doc["failures"] if now - _time_of(t) < LOCKOUT]
            if len(recent) >= self.limit:
                raise LoginLocked(max(_time_of(t) for t in recent) + LOCKOUT)
            # The timestamp plus a random tag, so that two guesses in one microsecond stay two.
            attempt = Attempt(key, f"{now.isoformat()}#{secrets.token_hex(4)}")
            try:
                self.db.save({**doc, "failures": [*recent, attempt.stamp]})
                return attempt
            except Conflict:  # another guess was counted meanwhile: count again with it
                time.sleep(random.uniform(0, 0.01))
        raise LoginLocked(now + LOCKOUT)  # contention this heavy is an attack: refuse rather than check unreserved

    def release(self, attempt: Attempt, *, forgive_earlier: bool = False) -> None:
        """Un-count a guess that was not a failure (and, after a success, the failures before it)."""
        for _ in range(MAX_RESERVE_TRIES):
            doc = get_or_none(self.db, f"throttle:{attempt.key}")
            if not doc or attempt.stamp not in doc["failures"]:
                return
            failures, mine = doc["failures"], doc["failures"].index(attempt.stamp)
            kept = failures[mine + 1:] if forgive_earlier else failures[:mine] + failures[mine + 1:]
            try:
                self.db.save({**doc, "failures": kept})
                return
            except Conflict:
                continue


def authenticate(db: pycouchdb.client.Database, username: str, password: str,
                 now: dt.datetime) -> dict[str, Any] | None:
    """The active user document if the password is right, else None.

    Raises LoginLocked after MAX_FAILURES failures within LOCKOUT.
    """
    throttle = Throttle(db)
    attempt = throttle.reserve(username, now)
    user = get_or_none(db, user_id(username)) if username else None
    stored = user.get("password_hash") if user and user.get("active") else None
    try:
        ok = _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok:
        return None  # the reserved guess stays counted as a failure
    throttle.release(attempt, forgive_earlier=True)
    if _hasher.check_needs_rehash(stored):
        user["password_hash"] = _hasher.hash(password)
        user = db.save(user)
    return user
