"""/accounts: the administrator manages accounts in the browser (a desk page; no offline app).

The list filters by role, community (or street-wide) and active/deactivated, and searches usernames and names.
Each change calls the function `linli user` calls (server/security/account_changes.py): add an account, set a new
password, deactivate or reactivate; that is where the refusals, the filing and the ending of sessions live. A
password, typed or generated, is shown once in the answer (not cached) and never again.

Administrators only: anyone else gets 403, as on the secretary's console pages.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.domain.access import Principal
from server.domain.declaration import Role
from server.domain.errors import by_field
from server.security import account_changes
from server.security.firewall import Firewall
from server.store.couch import Couch, docs_of_type

Doc = dict[str, Any]
CurrentUser = Callable[[Request], Awaitable[Doc]]
Render = Callable[..., Response]
# Roles an account made here may have: a resident's account comes from an activation code (server/web/activation.py),
# a BLE gateway's from `linli user add --gateway` with its device token.
OFFERED_ROLES = [r.value for r in Role if r not in (Role.RESIDENT, Role.GATEWAY)]
STREET_WIDE = "-"  # the community filter's value for accounts of no community
EMPTY_FORM: Doc = {"username": "", "display_name": "", "roles": [], "community": "", "grids": [], "department": "",
                  "organisation": ""}
SHOWN_FIELDS = ("_id", "username", "display_name", "roles", "communities", "grids", "department", "organisation",
                "active")


def listing(couch: Couch, role: str, community: str, status: str, query: str) -> list[Doc]:
    """The accounts that pass the filters, by username; no password hashes."""
    query = query.lower()

    def wanted(u: Doc) -> bool:
        return ((not role or role in u["roles"])
                and (not community or (community in u.get("communities", []) if community != STREET_WIDE
                                       else not u.get("communities")))
                and (not status or u.get("active") == (status == "active"))
                and (not query or query in u["username"].lower() or query in u["display_name"].lower()))

    return [{k: u.get(k) for k in SHOWN_FIELDS} for u in docs_of_type(couch.accounts, "user") if wanted(u)]


def places(couch: Couch) -> dict[str, list[Doc]]:
    """The street's communities, grids, departments and organisations (a partner's), for the filters and the
    form's choices."""
    return {kind: sorted(docs_of_type(couch.main, kind), key=lambda d: d["_id"])
            for kind in ("community", "grid", "department", "organisation")}


def _new_account(form: FormData, street: str) -> account_changes.NewAccount:
    community = str(form.get("community", ""))[:200]
    return account_changes.NewAccount(
        username=str(form.get("username", "")).strip()[:100], display_name=str(form.get("display_name", "")).strip(),
        roles=[str(r) for r in form.getlist("roles") if r], street=street,
        communities=[community] if community else [], grids=[str(g) for g in form.getlist("grids") if g],
        department=str(form.get("department", ""))[:200] or None,
        organisation=str(form.get("organisation", ""))[:200] or None)


def routes(firewall: Firewall, current_user: CurrentUser, render: Render, now: Callable[[], dt.datetime],
           device: Callable[[Request], str]) -> list[Route]:
    couch = firewall.couch

    async def accounts_page(request: Request) -> Response:
        admin = await current_user(request)
        if not Principal.of(admin).has(Role.ADMIN):
            raise HTTPException(403)
        filters = {name: request.query_params.get(name, "").strip()[:100] for name in ("role", "community", "status",
                                                                                       "q")}
        done: Doc | None = None
        errors: dict[str, Any] = {}
        values = EMPTY_FORM
        status, action = 200, ""
        if request.method == "POST":
            form = await request.form()
            action, username = str(form.get("action", "")), str(form.get("username", "")).strip()[:100]
            password = str(form.get("password", "")) or account_changes.generated_password()
            by = {"by": admin["_id"], "device": device(request), "now": now()}
            try:
                if action == "add":
                    new = _new_account(form, admin["street"])
                    values = {"username": new.username, "display_name": new.display_name, "roles": new.roles,
                              "community": new.communities[0] if new.communities else "", "grids": new.grids,
                              "department": new.department or "",
                              "organisation": new.organisation or ""}  # kept through a refusal, never the password
                    user = await run_in_threadpool(account_changes.add, firewall, new, password, **by)
                    values = EMPTY_FORM
                elif action == "password":
                    user = await run_in_threadpool(account_changes.set_password, firewall, username, password, **by)
                elif action in ("deactivate", "reactivate"):
                    user = await run_in_threadpool(account_changes.set_active, firewall, username,
                                                   action == "reactivate", **by)
                else:
                    raise HTTPException(400)
            except account_changes.AccountRefused as refused:
                errors, status = by_field(refused.errors), refused.status
            else:
                shown = password if action in ("add", "password") else None
                done = {"action": action, "username": user["username"], "password": shown}
        found = await run_in_threadpool(listing, couch, *filters.values())
        response = render(request, "accounts.html", status, accounts=found, filters=filters, done=done,
                          errors=errors, add_errors=errors if action == "add" else {}, values=values,
                          roles=[r.value for r in Role], offered_roles=OFFERED_ROLES, street_wide=STREET_WIDE,
                          **await run_in_threadpool(places, couch))
        if done and done["password"]:
            response.headers["Cache-Control"] = "no-store"  # the password is shown once, never kept by a cache
        return response

    return [Route("/accounts", accounts_page, methods=["GET", "POST"])]
