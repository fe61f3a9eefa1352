"""Where "/" leads each user, decided once for the server (server/web/app.py) and the offline app (as data in
/pwa/session.json): a secretary to what needs her today, an administrator to the communities, a grid worker to their
first grid, a volunteer to their tasks, department staff to their workbench; anyone else stays on "/" (a resident's
own record, or the page that says what their roles do)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from server.domain.declaration import Role
from server.domain.entitlement import REVEAL_PURPOSES
from server.domain.safety import SAFETY_PURPOSE
from server.store import queries

# The purposes a resident's own record names in words (others, typed by staff, are shown as typed).
OWN_RECORD_PURPOSES = (*REVEAL_PURPOSES, "own_record", "search_by_number", SAFETY_PURPOSE)


def home_path(user: dict[str, Any]) -> str | None:
    """The page "/" redirects this user to, or None when "/" is their page."""
    r = queries.roles(user)
    if Role.SECRETARY in r:
        return "/today"  # what needs her today (server/services/today.py)
    if Role.ADMIN in r:
        return "/communities"
    if Role.GRID_WORKER in r and user.get("grids"):
        return "/grids/" + quote(user["grids"][0], safe=":")
    if Role.VOLUNTEER in r:
        return "/tasks"  # their tasks and the households they look after (server/web/task_pages.py)
    if Role.DEPARTMENT_STAFF in r and user.get("department"):
        return "/workbench"  # online only: a department works at its desk, and acting needs the server
    if Role.PARTNER in r and user.get("organisation"):
        return "/redeem"  # a partner's counter: vouchers honoured, offline too (server/web/reward_pages.py)
    return None


def role_keys(user: dict[str, Any]) -> list[str] | None:
    """What "/" lists when it is the role page (the i18n keys of the user's roles); None when "/" is a resident's
    own record (online from CouchDB, offline from their replica: access.may_see gives a resident the filing log's
    entries about them)."""
    r = queries.roles(user)
    if Role.RESIDENT in r and user.get("resident"):
        return None
    return ["role_" + role.value for role in sorted(r)]
