"""Display preferences: large text and high contrast, chosen with two buttons in every page's header.

They live in the `display` cookie (no account needed, also on the login page, per device), as a list of
`OPTIONS` joined by "." (a comma is not allowed in a cookie value, RFC 6265, and Python would quote it);
pages carry them as classes on <html> (`display` in the template context, a plain string such as
"large contrast", so the service worker can render the same templates), and server/web/static/linli.css
does the rest.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server.domain.errors import FieldError, UserError
from server.store.config import Settings

COOKIE = "display"
OPTIONS = ("large", "contrast")


def chosen(request: Request) -> list[str]:
    """The valid options in the request's cookie, in OPTIONS order; anything else in it is ignored."""
    words = set(re.findall(r"[a-z]+", request.cookies.get(COOKIE, "")))
    return [option for option in OPTIONS if option in words]


def classes(request: Request) -> str:
    """The classes for <html>: "" by default."""
    return " ".join(chosen(request))


def redirect_back(request: Request) -> RedirectResponse:
    """Back to the page the form was on, if it is one of ours (no open redirect); else home."""
    back = request.headers.get("referer", "/")
    return RedirectResponse(back if back.startswith(str(request.base_url)) else "/", status_code=303)


def routes(settings: Settings) -> list[Route]:
    async def toggle(request: Request) -> Response:
        """POST /display toggle=large|contrast: switch that option on or off, then back to the page."""
        form = await request.form()
        option = str(form.get("toggle", ""))
        if option not in OPTIONS:
            raise UserError([FieldError("toggle", "err_not_choice", {"value": option, "choices": ", ".join(OPTIONS)})])
        now_on = set(chosen(request)) ^ {option}
        response = redirect_back(request)
        if now_on:
            response.set_cookie(COOKIE, ".".join(o for o in OPTIONS if o in now_on), max_age=365 * 86400,
                                samesite="lax", secure=settings.cookie_secure)
        else:
            response.delete_cookie(COOKIE)
        return response

    return [Route("/display", toggle, methods=["POST"])]
