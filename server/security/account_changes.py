"""Changes to accounts: add one, set a new password, deactivate or reactivate one. The administrator's /accounts
page (server/web/account_pages.py) and the `linli user` commands (server/cli/main.py) call these same functions.

Each change is filed in the filing log (who changed which account, never the password): in each community the
account belongs to, or in every community of the street for a street-wide account (administrator, department
staff), so that every log its holder can reach says so. A new password and a deactivation end every session of the
account at once (`accounts.end_sessions_and_save`) and its phones' keys follow (`grants.sync_user`: a deactivated
account's are withdrawn, filed, and the keys they held rotate).

Refused, as errors a person can correct (`AccountRefused`, FieldError keys in i18n.py): an unknown role, a role
without what it is bound to (`ROLE_LINKS`), grids outside the account's community, a username taken or malformed,
a password shorter than `accounts.MIN_PASSWORD_LENGTH`, an administrator deactivating their own account, and
deactivating the last active administrator (nobody could manage accounts).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from pycouchdb.exceptions import Conflict

from server.domain.declaration import Role, ValidationError
from server.domain.errors import FieldError, UserError
from server.security import accounts, filing, grants
from server.security.firewall import Firewall
from server.store.couch import docs_of_type, get_many, get_or_none, ids_of_type

Doc = dict[str, Any]
USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{2,31}$")  # lower case: it becomes the CouchDB id user:<username>
GENERATED_PASSWORD_BYTES = 9  # 12 characters of base64url
# Who the filing log names for a change made with `linli user` (no account signs in to the command line; "@" is
# no username's, so no account can pass for it).
COMMAND_LINE = "user:@command-line"
# The filing log's actions, one per change (the audit page translates "audit_action_<action>").
ACCOUNT_ADDED, PASSWORD_SET, DEACTIVATED, REACTIVATED = (
    "account_added", "account_password_set", "account_deactivated", "account_reactivated")
ACCOUNT_ACTIONS = (ACCOUNT_ADDED, PASSWORD_SET, DEACTIVATED, REACTIVATED)
FILED_PURPOSE = "account_management"
# What an account of these roles is bound to (its pages and sync read it: a resident's own record, the department's
# workbench, the gateway's devices).
ROLE_LINKS = {Role.RESIDENT.value: "resident", Role.DEPARTMENT_STAFF.value: "department", Role.GATEWAY.value: "gateway",
              Role.PARTNER.value: "organisation"}  # a partner's: the organisation whose vouchers they honour


class AccountRefused(UserError):
    """A change refused; `errors` says why, field by field."""


@dataclass(frozen=True)
class NewAccount:
    """What an account is made of (as typed on /accounts or given to `linli user add`)."""

    username: str
    display_name: str
    roles: list[str]
    street: str
    communities: list[str] = field(default_factory=list)
    grids: list[str] = field(default_factory=list)
    department: str | None = None
    resident: str | None = None
    gateway: str | None = None
    organisation: str | None = None


def password_problems(password: str) -> list[FieldError]:
    if len(password) < accounts.MIN_PASSWORD_LENGTH:
        return [FieldError("password", "err_password_short", {"min": accounts.MIN_PASSWORD_LENGTH})]
    return []


def generated_password() -> str:
    """A password for an administrator to hand over once (shown once, never stored but as its hash)."""
    return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)


def add(firewall: Firewall, new: NewAccount, password: str, *, by: str, device: str, now: dt.datetime) -> Doc:
    """Create the account (AccountRefused with every problem found); filed as ACCOUNT_ADDED."""
    problems = password_problems(password)
    if not USERNAME.fullmatch(new.username):
        problems.append(FieldError("username", "err_username_format"))
    unknown = [r for r in new.roles if r not in {role.value for role in Role}]
    if unknown or not new.roles:
        problems.append(FieldError("roles", "err_not_choice" if unknown else "err_required",
                                   {"value": ", ".join(unknown), "choices": ", ".join(r.value for r in Role)}))
    problems += [FieldError(link, "err_required") for role, link in ROLE_LINKS.items()
                 if role in new.roles and not getattr(new, link)]
    if problems:
        raise AccountRefused(problems)
    if get_or_none(firewall.couch.accounts, accounts.user_id(new.username)):
        raise AccountRefused([FieldError("username", "err_username_taken", {"username": new.username})])
    try:
        doc = accounts.make_user(new.username, new.display_name, [Role(r) for r in new.roles], new.street,
                                 accounts.hash_password(password), communities=new.communities, grids=new.grids,
                                 department=new.department, resident=new.resident, gateway=new.gateway,
                                 organisation=new.organisation)
    except ValidationError as invalid:
        raise AccountRefused(invalid.errors) from None
    # A partner honours an organisation's vouchers: it must be one.
    if new.organisation and (get_or_none(firewall.couch.main, new.organisation) or {}).get("type") != "organisation":
        raise AccountRefused([FieldError("organisation", "pt_no_organisation")])
    grids = get_many(firewall.couch.main, new.grids)
    outside = [g for g in new.grids if grids.get(g, {}).get("community") not in new.communities]
    if outside:  # a grid worker's grids lie in their community: a page or an access rule reading one trusts it
        raise AccountRefused([FieldError("grids", "err_grid_not_in_community", {"value": ", ".join(outside)})])
    try:
        user = firewall.couch.accounts.save(doc)
    except Conflict:  # taken meanwhile
        raise AccountRefused([FieldError("username", "err_username_taken", {"username": new.username})]) from None
    _file(firewall, user, ACCOUNT_ADDED, by, device, now)
    return user


def set_password(firewall: Firewall, username: str, password: str, *, by: str, device: str,
                 now: dt.datetime) -> Doc:
    """A new password: every session of the account ends; filed as PASSWORD_SET (the password is not)."""
    problems = password_problems(password)
    if problems:
        raise AccountRefused(problems)
    return _change(firewall, username, {"password_hash": accounts.hash_password(password)}, PASSWORD_SET, by,
                   device, now)


def set_active(firewall: Firewall, username: str, active: bool, *, by: str, device: str, now: dt.datetime) -> Doc:
    """Deactivate (every session ends, the phones' keys are withdrawn) or reactivate an account; filed."""
    user = _user(firewall, username)
    if not active and user.get("active"):
        if user["_id"] == by:
            raise AccountRefused([FieldError("username", "err_account_self")])
        if Role.ADMIN.value in user["roles"] and not [u for u in docs_of_type(firewall.couch.accounts, "user") if
                                                     u.get("active") and Role.ADMIN.value in u["roles"]
                                                     and u["_id"] != user["_id"]]:
            raise AccountRefused([FieldError("username", "err_account_last_admin")])
    return _change(firewall, username, {"active": active}, REACTIVATED if active else DEACTIVATED, by, device, now)


def _user(firewall: Firewall, username: str) -> Doc:
    user = get_or_none(firewall.couch.accounts, accounts.user_id(username)) if USERNAME.fullmatch(username) else None
    if user is None or user.get("type") != "user":
        raise AccountRefused([FieldError("username", "err_no_account", {"username": username})], 404)
    return user


def _change(firewall: Firewall, username: str, change: Doc, action: str, by: str, device: str,
            now: dt.datetime) -> Doc:
    """Store a change that ends every session the account has open; its phones' keys follow at once."""
    user = _user(firewall, username)
    try:
        accounts.end_sessions_and_save(firewall.couch.accounts, {**user, **change})
    except Conflict:  # changed meanwhile (a sign-in rehashing the password, another administrator)
        raise AccountRefused([FieldError("username", "err_account_changed")], 409) from None
    user = firewall.couch.accounts.get(user["_id"])
    grants.sync_user(firewall, user, now)
    _file(firewall, user, action, by, device, now)
    return user


def _file(firewall: Firewall, user: Doc, action: str, by: str, device: str, now: dt.datetime) -> None:
    communities = user.get("communities") or ids_of_type(firewall.couch.main, "community")
    for community in sorted(communities):
        filing.append(firewall.couch, firewall.signer, street=user["street"], community=community, actor=by,
                      action=action, target=user["_id"], fields=[], purpose=FILED_PURPOSE, device=device[:100],
                      at=now)
