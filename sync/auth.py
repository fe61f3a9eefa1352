"""Who is replicating: the web session's cookie, or a per-device bearer token.

Device tokens (for BLE gateways and scripts) look like `lt_<token id>.<secret>`.
The accounts database keeps `device_token:<token id>` with the SHA-256 of the
secret (the secret is 32 random bytes, so a fast hash is enough: nothing to
brute-force), the user it acts as, and whether it was revoked. The token is
shown once, when issued (`linli device-token issue`).

A request that carries `Authorization` is judged by it alone, never by the
cookie beside it; that is what lets the CSRF middleware skip bearer requests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import secrets
from typing import Any

from starlette.requests import Request

from server.domain.access import Principal
from server.security import accounts
from server.security.session_records import ended_here, record_id
from server.security.sessions import session_user_matches

from .principals import PrincipalCache
from .protocol import ProtocolError
from .upstream import Upstream

TOKEN_PREFIX = "lt_"


def token_doc_id(token_id: str) -> str:
    return f"device_token:{token_id}"


def new_device_token(user_id: str, label: str, now: dt.datetime) -> tuple[str, dict[str, Any]]:
    """A fresh token (show it once) and the document that stores only its hash."""
    token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    doc = {"_id": token_doc_id(token_id), "user": user_id, "label": label, "created_at": now.isoformat(),
           "secret_sha256": hashlib.sha256(secret.encode()).hexdigest(), "revoked": False}
    return f"{TOKEN_PREFIX}{token_id}.{secret}", doc


def _unauthorized(reason: str) -> ProtocolError:
    return ProtocolError(401, "unauthorized", reason)


async def _token_user(upstream: Upstream, header: str) -> dict[str, Any]:
    scheme, _, token = header.partition(" ")
    token_id, dot, secret = token.removeprefix(TOKEN_PREFIX).partition(".")
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX) or not dot or not token_id.isalnum():
        raise _unauthorized("Authorization must be \"Bearer lt_<id>.<secret>\" (a Linli device token)")
    doc = await upstream.get(upstream.accounts, token_doc_id(token_id))
    digest = hashlib.sha256(secret.encode()).hexdigest()
    if not doc or doc.get("revoked") or not hmac.compare_digest(digest, doc.get("secret_sha256", "")):
        raise _unauthorized("unknown or revoked device token")
    user = await upstream.get(upstream.accounts, doc["user"])
    if not user or not user.get("active"):
        raise _unauthorized("the device token's user is deactivated")
    return user


async def _session_user(upstream: Upstream, username: str, session: dict[str, Any]) -> Principal:
    user_id = accounts.user_id(username)
    user, record = await asyncio.gather(upstream.get(upstream.accounts, user_id),
                                        upstream.get(upstream.accounts, record_id(user_id, session["sid"])))
    if not record or not session_user_matches(session, user):
        raise _unauthorized("the session has ended; sign in again")
    return Principal.of(user)


async def _token_principal(upstream: Upstream, header: str) -> Principal:
    return Principal.of(await _token_user(upstream, header))


async def principal(request: Request, upstream: Upstream, cache: PrincipalCache) -> Principal:
    """The replicating user, or 401 with a reason (at most `principals.TTL_SECONDS` stale)."""
    header = request.headers.get("authorization")
    if header:
        key = "token:" + hashlib.sha256(header.encode()).hexdigest()
        return await cache.get(key, lambda: _token_principal(upstream, header))
    session = request.scope.get("session") or {}
    username, sid = session.get("user"), session.get("sid")
    if not (isinstance(username, str) and isinstance(sid, str)):
        raise _unauthorized("sign in (session cookie) or send a device token (Authorization: Bearer …)")
    if ended_here(sid):  # logged out in this process: before the cache, which may still hold it
        raise _unauthorized("the session has ended; sign in again")
    return await cache.get(f"session:{record_id(accounts.user_id(username), sid)}\0{session.get('epoch')}",
                           lambda: _session_user(upstream, username, session))
