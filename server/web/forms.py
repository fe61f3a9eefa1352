"""What a form page answers after a successful POST."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response


def redirect_after_post(request: Request, url: str) -> Response:
    """A 303 to `url`; to a form htmx submitted (the photo forms, templates/_errors.html) an HX-Redirect, which
    htmx follows as a page load (the service worker answers offline the same way, pwa/sw.js)."""
    if request.headers.get("hx-request"):
        return Response(headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)
