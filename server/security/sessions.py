"""Sessions and CSRF.

Sessions are Starlette's signed cookies (itsdangerous, with a max age); the
cookie holds only the username, the user's auth epoch, a CSRF token and the
session's id, whose record in the accounts database must exist for the session
to count (server/security/session_records.py). The user document and the
record are read together on every page request (one `_all_docs` round trip),
so logging out (deletes the record), deactivating a user or changing their
password (bump `auth_epoch`, delete all their records) ends sessions at once.
The sync gateway caches who a session is for a few seconds (sync/principals.py);
a logout is honoured there at once too in the process that handled it
(`session_records.ended_here`), and by other processes within that cache's bound.

CSRF: every unsafe request must carry the session's token, either in the
`X-CSRF-Token` header (htmx sends it from `hx-headers` on <body>) or in a
`csrf_token` form field. This is checked in one ASGI middleware so that a new
form cannot forget it. The sync gateway's PouchDB sends the header too (a fetch
option). Requests with an `Authorization` header (device tokens) are exempt: a browser
sends that header cross-site only after a CORS preflight that Linli never
grants, and such requests are judged by the token alone, never by the cookie: the
middleware hides the session from them (an empty one downstream), so that a bogus
bearer header beside a cookie buys nothing (pages see no one; the sync gateway
checks the token and answers 401).
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from typing import Any
from urllib.parse import parse_qs

import pycouchdb
from starlette.datastructures import Headers
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.domain.i18n import translator
from server.security import session_records
from server.security.accounts import user_id

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_FORM_BYTES = 10 * 1024 * 1024  # photos arrive as multipart forms


def csrf_token(session: dict[str, Any]) -> str:
    """The session's CSRF token, created on first use."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def start_session(db: pycouchdb.client.Database, session: dict[str, Any], user: dict[str, Any],
                  now: dt.datetime, max_age: int) -> None:
    """Log a user in: a fresh session (new id and CSRF token: no fixation), recorded in `db`."""
    sid = session_records.create(db, user["_id"], now, max_age)
    session.clear()
    session.update({"user": user["username"], "epoch": user["auth_epoch"], "csrf": secrets.token_urlsafe(32),
                    "sid": sid})


def end_session(db: pycouchdb.client.Database, session: dict[str, Any]) -> None:
    """Log out: this session's record goes, so its cookie, wherever copied, is refused from now on."""
    username, sid = _identity(session)
    session.clear()
    if username and sid:
        session_records.end(db, user_id(username), sid)


def _identity(session: dict[str, Any]) -> tuple[str | None, str | None]:
    """The username and session id the cookie names (None for a cookie from before session records)."""
    username, sid = session.get("user"), session.get("sid")
    return (username if isinstance(username, str) else None), (sid if isinstance(sid, str) else None)


def session_user(db: pycouchdb.client.Database, session: dict[str, Any]) -> dict[str, Any] | None:
    """The signed-in user, if the session is live: its record exists, the user is active, the epoch matches.

    One round trip: the user document and the session's record are read together.
    """
    username, sid = _identity(session)
    if not (username and sid):
        return None
    uid = user_id(username)
    rows = db.all(keys=[uid, session_records.record_id(uid, sid)], as_list=True)
    user, record = (row.get("doc") for row in rows)
    return user if record and session_user_matches(session, user) else None


def session_user_matches(session: dict[str, Any], user: dict[str, Any] | None) -> bool:
    return bool(user and user.get("active") and user.get("auth_epoch") == session.get("epoch"))


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if it exceeds MAX_FORM_BYTES."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        body = message.get("body", b"")
        size += len(body)
        if size > MAX_FORM_BYTES:
            return None
        chunks.append(body)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _form_token(headers: Headers, body: bytes) -> str:
    content_type = headers.get("content-type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        values = parse_qs(body.decode("latin-1"), keep_blank_values=True).get("csrf_token", [])
        return values[0] if values else ""
    if content_type.startswith("multipart/form-data"):
        async def stream():
            yield body

        form = await MultiPartParser(headers, stream()).parse()
        try:
            value = form.get("csrf_token")
            return value if isinstance(value, str) else ""
        finally:
            await form.close()
    return ""


CSRF_EXEMPT_PREFIX = "/open311/"


class CSRFMiddleware:
    """Reject unsafe requests whose CSRF token does not match the session's.

    Must sit inside SessionMiddleware (it reads scope["session"]).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if "authorization" in headers:
            # Exempt only as a token request: downstream sees no session. (A copy of the scope, so that
            # SessionMiddleware, which holds the original, neither rewrites nor clears the cookie.)
            await self.app({**scope, "session": {}}, receive, send)
            return
        if scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(CSRF_EXEMPT_PREFIX):
            # Open311 clients authenticate each call with an API key and never with the session cookie,
            # so a forged cross-site request carries nothing to abuse.
            await self.app(scope, receive, send)
            return
        expected = scope.get("session", {}).get("csrf", "")
        supplied = headers.get("x-csrf-token", "")
        downstream = receive
        if not supplied:
            read = await _read_body(receive)
            if read is None:  # a form without JavaScript (htmx sends the token as a header, and is not read here)
                t = translator(Request(scope).cookies.get("lang", ""))
                await PlainTextResponse(t("err_form_too_large"), status_code=413)(scope, receive, send)
                return
            downstream = _replay(read, receive)
            try:
                supplied = await _form_token(headers, read)
            except MultiPartException:  # a broken multipart body: say so, rather than fail with a 500
                t = translator(Request(scope).cookies.get("lang", ""))
                await PlainTextResponse(t("err_form_unreadable"), status_code=400)(scope, receive, send)
                return
        if not expected or not hmac.compare_digest(expected.encode(), supplied.encode()):
            t = translator(Request(scope).cookies.get("lang", ""))
            # PouchDB (the sync gateway's client) reads every answer as JSON.
            answer = (JSONResponse({"error": "forbidden", "reason": "CSRF token missing or wrong (X-CSRF-Token)"},
                                   status_code=403) if "application/json" in headers.get("accept", "")
                      else PlainTextResponse(t("csrf_failed"), status_code=403))
            await answer(scope, receive, send)
            return
        await self.app(scope, downstream, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that hands the already-read body to the app, then defers to the server."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
