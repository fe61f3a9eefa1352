"""A resident tells the community what they need (plan §3.3: needs → dispatch → progress), from their own page.

A need is a `need` document about the resident and their household, status "open", written by the
resident under the same write rule phones are held to (`access.write_refusal`: a resident writes needs
about themselves only). Its category is one of the needs a visit records (`field_rules.COMMON_NEEDS`) or
"other"; the grid worker takes it from there. The language the resident speaks and when help suits them are
optional (none: any language the offers speak, any time): the matcher reads them (server/domain/matching.py).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server.domain import matching as matching_rules
from server.domain.access import Principal
from server.domain.declaration import SPOKEN_LANGUAGES, validate
from server.domain.errors import FieldError, UserError, by_field
from server.domain.field_rules import COMMON_NEEDS
from server.store import queries
from server.store.couch import Couch, iter_view_docs
from server.web.forms import weekly_hours

Doc = dict[str, Any]
CATEGORIES = (*COMMON_NEEDS, "other")
MAX_DESCRIPTION = 1000
HOUR_ROWS = 2  # rows of convenient weekly hours the form shows (_needs.html, the offline app via the session)


def of_resident(couch: Couch, resident: Doc) -> list[Doc]:
    """The resident's needs, newest first (at the same moment, by id, as the offline app orders them)."""
    needs = iter_view_docs(couch.main, "linli/by_place", [resident["household"], "need"])
    return sorted((n for n in needs if n.get("resident") == resident["_id"]), key=lambda n: (n["created_at"], n["_id"]),
                  reverse=True)


def create(couch: Couch, p: Principal, resident: Doc, category: str, description: str, now: dt.datetime,
           language: str = "", hours: list[Doc] | None = None) -> Doc:
    """The resident's need, every field's problem named together; `language` "" and `hours` empty: not said."""
    errors: list[FieldError] = []
    if category not in CATEGORIES:
        errors.append(FieldError("category", "needs_category_unknown"))
    description = description.strip()
    if not description:
        errors.append(FieldError("description", "needs_description_required"))
    elif len(description) > MAX_DESCRIPTION:
        errors.append(FieldError("description", "needs_description_long"))
    if language and language not in SPOKEN_LANGUAGES:
        errors.append(FieldError("language", "offer_languages_required"))
    if hours:
        errors += [FieldError("hours", key, params) for key, params in matching_rules.hours_problems(hours)]
    if errors:
        raise UserError(errors)
    doc = {"_id": f"need:{uuid.uuid4().hex}", "type": "need",
           **{k: resident[k] for k in ("street", "community", "grid", "household")}, "resident": resident["_id"],
           "category": category, "description": description, "status": "open", "created_by": p.user_id,
           "created_at": now.isoformat(), **({"language": language} if language else {}),
           **({"hours": hours} if hours else {})}
    if queries.refusal_to_store(couch, p, None, doc, now):
        raise HTTPException(403)
    validate(doc)
    return couch.main.save(doc)


def page_context(couch: Couch, resident: Doc, values: dict[str, str] | None = None,
                 errors: dict[str, Any] | None = None) -> dict[str, Any]:
    """What `_needs.html` shows: the form (with what was typed, after an error) and the resident's needs."""
    return {"needs": of_resident(couch, resident), "need_categories": list(CATEGORIES),
            "spoken_languages": list(SPOKEN_LANGUAGES), "need_hour_rows": HOUR_ROWS,
            "need_values": values or {"category": CATEGORIES[0], "description": "", "language": "", "hours": []},
            "need_errors": errors or {}}


def routes(couch: Couch, current_user: Callable[[Request], Awaitable[Doc]], render: Callable[..., Response],
           now: Callable[[], dt.datetime]) -> list[Route]:
    async def needs_page(request: Request) -> Response:
        p = Principal.of(await current_user(request))
        resident = (await run_in_threadpool(queries.load_doc, couch, p.resident, "resident")) if p.resident else None
        if resident is None:
            raise HTTPException(403)
        values = None
        errors: dict[str, Any] = {}
        if request.method == "POST":
            form = await request.form()
            values = {"category": str(form.get("category", "")), "description": str(form.get("description", "")),
                      "language": str(form.get("language", "")), "hours": weekly_hours(form, HOUR_ROWS)}
            try:
                await run_in_threadpool(create, couch, p, resident, values["category"], values["description"], now(),
                                        values["language"], values["hours"])
            except UserError as bad:
                errors = by_field(bad.errors)
            else:
                return RedirectResponse("/#needs", status_code=303)
        context = await run_in_threadpool(page_context, couch, resident, values, errors)
        return render(request, "needs.html", 400 if errors else 200, resident=resident, **context)

    return [Route("/needs", needs_page, methods=["GET", "POST"])]
