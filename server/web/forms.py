"""What a form page answers after a successful POST, and form parts several pages share."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response


def redirect_after_post(request: Request, url: str) -> Response:
    """A 303 to `url`; to a form htmx submitted (the photo forms, templates/_errors.html) an HX-Redirect, which
    htmx follows as a page load (the service worker answers offline the same way, pwa/sw.js)."""
    if request.headers.get("hx-request"):
        return Response(headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def weekly_hours(form: FormData, rows: int) -> list[dict[str, Any]]:
    """The rows of templates/_weekly_hours.html as records (rows left empty skipped; a row half filled kept, to be
    refused by name: server/domain/matching.py hours_problems)."""
    hours = []
    for i in range(1, rows + 1):
        day, start, end = (str(form.get(f"{k}_{i}", "")).strip() for k in ("day", "start", "end"))
        if day or start or end:
            hours.append({"day": int(day) if day.isdigit() and len(day) < 3 else -1, "start": start, "end": end})
    return hours
