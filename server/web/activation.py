"""Resident accounts without SMS: a one-time activation code from the grid worker (plan §5.1).

The resident's grid worker (or the community's secretary) presses "activation code" on the resident's
card; the server makes an 8-digit code and shows it once, to read out or write down. It keeps only an
HMAC of the code under a key derived from the server's secret key (`LINLI_SECRET_KEY`): that HMAC is the
document's id, so a code is found in one read, and a copy of the accounts database alone cannot be searched
through the 10^8 possible codes. A code is valid for 72 hours; a new one replaces the previous one; none is
issued while the resident has an active account. The resident opens /activate (linked from the login page),
types the code and chooses a username and password: that creates their account (role resident, bound to
their record), marks the code used and signs them in.

Guessing is throttled like logins (`accounts.Throttle`, state in CouchDB, so every server process counts
the same failures; each guess is counted before the code is looked up, so parallel guesses cannot outrun
it): 5 wrong codes in 15 minutes lock one client address, 20 lock activation for everyone,
which holds a guesser with many addresses to about 2,000 guesses a day against 10^8 codes.

Whoever holds a code can open that resident's whole record, so issuing one is filed in the community's
filing log (action `activation_code`, no fields): the secretary's audit page and the resident's own page
show who issued it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pycouchdb.exceptions import Conflict
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.domain.access import Principal, may_see
from server.domain.declaration import Role
from server.security import account_changes, accounts, filing
from server.security.firewall import Firewall
from server.store import queries
from server.store.config import LOCAL_TZ
from server.store.couch import Couch, bulk_save, get_many, get_or_none
from server.web.lookup import visible_doc

Doc = dict[str, Any]
logger = logging.getLogger("linli")

CODE_DIGITS = 8
VALID_FOR = dt.timedelta(hours=72)
CLIENT_LIMIT = 5  # wrong codes per client address within accounts.LOCKOUT
OVERALL_LIMIT = 20  # wrong codes from everyone together within accounts.LOCKOUT
FILED_ACTION = "activation_code"


class ActivationError(ValueError):
    """Refused; `reason` is a UI text key, `status` the HTTP status to answer with."""

    def __init__(self, reason: str, status: int = 400, **params: str) -> None:
        self.reason, self.status, self.params = reason, status, params
        super().__init__(reason)


@dataclass(frozen=True)
class Issued:
    code: str  # the plaintext code: shown once, never stored or logged
    expires_at: str
    replaced: bool  # an earlier code of the resident was withdrawn


def code_key(secret_key: str) -> bytes:
    """The HMAC key for activation codes, derived from the server's secret key (one per purpose)."""
    return hmac.new(secret_key.encode(), b"linli activation code v1", hashlib.sha256).digest()


def code_id(key: bytes, code: str) -> str:
    return "activation_code:" + hmac.new(key, code.encode(), hashlib.sha256).hexdigest()[:32]


def may_issue(p: Principal, resident: Doc) -> bool:
    """The resident's grid worker or their community's secretary; nobody else (not the administrator)."""
    return may_see(p, resident) and ((p.has(Role.GRID_WORKER) and resident["grid"] in p.grids)
                                     or (p.has(Role.SECRETARY) and resident["community"] in p.communities))


def _of_resident(couch: Couch, resident: str) -> list[Doc]:
    """The resident's user documents and activation codes (accounts database)."""
    rows = couch.accounts.query("linli/by_resident", key=resident, include_docs="true", as_list=True)
    return [row["doc"] for row in rows]


def _active_account(docs: list[Doc]) -> Doc | None:
    return next((d for d in docs if d["type"] == "user" and d.get("active")), None)


def account_of(couch: Couch, resident: str) -> Doc | None:
    """The resident's active account, if they have one."""
    return _active_account(_of_resident(couch, resident))


def with_accounts(couch: Couch, p: Principal) -> list[str]:
    """The residents p may issue codes to who have an account already (the offline household page leaves out
    their 生成激活码, as the server's does)."""
    if not p.has(Role.GRID_WORKER, Role.SECRETARY):
        return []
    rows = couch.accounts.query("linli/by_resident", include_docs="true", as_list=True)
    ids = {r["key"] for r in rows if r["doc"]["type"] == "user" and r["doc"].get("active")}
    return sorted(i for i, doc in get_many(couch.main, ids).items() if may_issue(p, doc))


def issue(firewall: Firewall, key: bytes, p: Principal, resident: Doc, *, device: str, now: dt.datetime) -> Issued:
    """A new code for the resident, replacing any earlier one; filed before it is shown."""
    if not may_issue(p, resident):
        raise ActivationError("activation_not_allowed", 403)
    couch = firewall.couch
    existing = _of_resident(couch, resident["_id"])
    account = _active_account(existing)
    if account:
        raise ActivationError("activation_has_account", 409, username=account["username"])
    earlier = [d for d in existing if d["type"] == "activation_code"]
    # Withdraw the earlier code first: a failure after this leaves no valid code, never two.
    bulk_save(couch.accounts, [{"_id": d["_id"], "_rev": d["_rev"], "_deleted": True} for d in earlier])
    for _ in range(10):  # another resident's code may have these digits: draw again
        code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
        doc = {"_id": code_id(key, code), "type": "activation_code",
               **{k: resident[k] for k in ("street", "community", "grid", "household")}, "resident": resident["_id"],
               "issued_by": p.user_id, "issued_at": now.isoformat(), "expires_at": (now + VALID_FOR).isoformat()}
        try:
            couch.accounts.save(doc)
            break
        except Conflict:
            continue
    else:
        raise RuntimeError("could not draw an unused activation code; try again")
    filing.append(couch, firewall.signer, street=resident["street"], community=resident["community"],
                  actor=p.user_id, action=FILED_ACTION, target=resident["_id"], fields=[],
                  purpose="account_activation", device=device[:100], at=now)
    logger.info("activation code issued for %s by %s, valid until %s", resident["_id"], p.user_id, doc["expires_at"])
    return Issued(code, doc["expires_at"], bool(earlier))


@dataclass(frozen=True)
class Activation:
    """What the resident types on /activate."""

    code: str
    username: str
    password: str
    password_again: str

    @classmethod
    def of(cls, form: Any) -> Activation:
        return cls(re.sub(r"[\s-]", "", str(form.get("code", ""))), str(form.get("username", "")).strip(),
                   str(form.get("password", "")), str(form.get("password_again", "")))

    def check(self) -> None:
        if not re.fullmatch(rf"\d{{{CODE_DIGITS}}}", self.code):
            raise ActivationError("activation_code_format")
        if not account_changes.USERNAME.fullmatch(self.username):
            raise ActivationError("activation_username_format")
        if len(self.password) < accounts.MIN_PASSWORD_LENGTH:
            raise ActivationError("activation_password_short", n=str(accounts.MIN_PASSWORD_LENGTH))
        if self.password != self.password_again:
            raise ActivationError("activation_password_mismatch")


OVERALL = "activation@all"  # the throttle key counting everyone's wrong codes


def redeem(couch: Couch, key: bytes, form: Activation, *, client: str, now: dt.datetime) -> Doc:
    """Create the resident's account from a valid code; returns the new user document.

    Raises ActivationError (what is wrong) or accounts.LoginLocked (too many wrong codes lately).
    """
    form.check()
    by_client = accounts.Throttle(couch.accounts, CLIENT_LIMIT)
    overall = accounts.Throttle(couch.accounts, OVERALL_LIMIT)
    # Both counted before the code is looked at (atomic under concurrency: accounts.Throttle).
    mine = by_client.reserve(f"activation@{client}", now)
    try:
        everyone = overall.reserve(OVERALL, now)
    except accounts.LoginLocked:
        by_client.release(mine)
        raise
    record = get_or_none(couch.accounts, code_id(key, form.code))
    reason = ("activation_code_wrong" if record is None else "activation_code_used" if record.get("used_at")
              else "activation_code_expired" if dt.datetime.fromisoformat(record["expires_at"]) <= now else None)
    if reason:
        raise ActivationError(reason)  # both guesses stay counted
    try:
        user = _create_account(couch, form, record, now)
    except BaseException:
        by_client.release(mine)  # a right code: not a guess, whatever went wrong after it
        overall.release(everyone)
        raise
    by_client.release(mine, forgive_earlier=True)
    overall.release(everyone)
    return user


def _create_account(couch: Couch, form: Activation, record: Doc, now: dt.datetime) -> Doc:
    """The resident's account, made from a valid code (marked used); ActivationError if it cannot be."""
    resident = queries.load_doc(couch, record["resident"], "resident")
    if resident is None:  # erased since the code was issued
        raise ActivationError("activation_code_wrong")
    if account_of(couch, resident["_id"]):
        raise ActivationError("activation_already_active", 409)
    if get_or_none(couch.accounts, accounts.user_id(form.username)):
        raise ActivationError("activation_username_taken")
    user = accounts.make_user(form.username, resident["name"], [Role.RESIDENT], resident["street"],
                              accounts.hash_password(form.password), resident=resident["_id"])
    try:  # the code first: of two people racing with one code, one gets the account
        record = couch.accounts.save({**record, "used_at": now.isoformat(), "used_by": user["_id"]})
    except Conflict:
        raise ActivationError("activation_code_used") from None
    try:
        user = couch.accounts.save(user)
    except Conflict:  # the username was taken meanwhile: the code stays valid for another try
        couch.accounts.save({k: v for k, v in record.items() if k not in ("used_at", "used_by")})
        raise ActivationError("activation_username_taken") from None
    logger.info("resident account %s activated for %s (code issued by %s)", user["_id"], resident["_id"],
                record["issued_by"])
    return user


CurrentUser = Callable[[Request], Awaitable[Doc]]
Render = Callable[..., Response]


def routes(firewall: Firewall, secret_key: str, current_user: CurrentUser, render: Render,
           now: Callable[[], dt.datetime], device: Callable[[Request], str],
           sign_in: Callable[[Request, Doc, str], Awaitable[Response]]) -> list[Route]:
    """POST /residents/{id}/activation-code (grid worker, secretary) and /activate (the resident)."""
    couch, key = firewall.couch, code_key(secret_key)

    async def issue_page(request: Request) -> Response:
        p = Principal.of(await current_user(request))
        resident = await run_in_threadpool(visible_doc, couch, p, request.path_params["resident_id"], "resident",
                                           may_issue)
        shown = {"_id": resident["_id"], "name": resident["name"], "household": resident["household"]}
        try:
            issued = await run_in_threadpool(issue, firewall, key, p, resident, device=device(request), now=now())
        except ActivationError as refused:
            return render(request, "activation_code.html", refused.status, resident=shown, error=refused.reason,
                          username=refused.params.get("username"))
        response = render(request, "activation_code.html", resident=shown, error=None,
                          code=f"{issued.code[:4]} {issued.code[4:]}", expires_at=issued.expires_at,
                          replaced=issued.replaced)
        response.headers["Cache-Control"] = "no-store"  # the code is shown once, never kept by a cache
        return response

    async def activate_page(request: Request) -> Response:
        form = Activation.of(await request.form()) if request.method == "POST" else Activation("", "", "", "")

        def page(status: int = 200, error: str | None = None, **params: str | None) -> Response:
            return render(request, "activate.html", status, values={"code": form.code, "username": form.username},
                          error=error, n=params.get("n"), until=params.get("until"))

        if request.method == "GET":
            return page()
        client = request.client.host if request.client else ""
        try:
            user = await run_in_threadpool(redeem, couch, key, form, client=client, now=now())
        except accounts.LoginLocked as locked:
            return page(429, "activation_locked", until=locked.until.astimezone(LOCAL_TZ).strftime("%H:%M"))
        except ActivationError as refused:
            return page(refused.status, refused.reason, **refused.params)
        return await sign_in(request, user, "/")

    return [
        Route("/residents/{resident_id}/activation-code", issue_page, methods=["POST"]),
        Route("/activate", activate_page, methods=["GET", "POST"]),
    ]
