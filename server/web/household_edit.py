"""Editing a household's basic fields on the web (online): address, building, unit, room, housing, tags.

The form carries the `_rev` it was read at, so that a change someone made meanwhile (another worker on
the web, a phone's sync) is reported ("reload") instead of silently overwritten. Form field names are the
document's field names, so the service worker can build the same document offline.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from pycouchdb.exceptions import Conflict
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server.domain.access import Principal
from server.domain.declaration import DOC_TYPES, ValidationError, validate
from server.domain.errors import by_field
from server.store import queries
from server.store.couch import Couch
from server.web.lookup import visible_household

Doc = dict[str, Any]
Render = Callable[..., Response]
CurrentUser = Callable[[Request], Awaitable[Doc]]

TEXT_FIELDS = ("address", "building", "unit", "room")
EDITABLE = (*TEXT_FIELDS, "housing", "tags")
_HOUSEHOLD = DOC_TYPES["household"]


def form_values(household: Doc) -> Doc:
    """What the form shows for a stored household: its editable fields and the revision they were read at."""
    return {**{name: household.get(name) for name in EDITABLE}, "tags": household.get("tags", []),
            "_rev": household["_rev"]}


def values_from(form: FormData) -> Doc:
    """The submitted form as document fields: blank texts and no housing choice mean "not recorded"."""
    values: Doc = {name: str(form.get(name, "")).strip() or None for name in TEXT_FIELDS}
    values["housing"] = str(form.get("housing", "")) or None
    values["tags"] = [str(tag) for tag in form.getlist("tags")]
    values["_rev"] = str(form.get("_rev", ""))
    return values


def edited(household: Doc, values: Doc, editor: str, now: dt.datetime) -> Doc:
    """The household with the form's values, stamped with who edited it and when."""
    doc = {k: v for k, v in household.items() if k not in EDITABLE}
    doc.update({name: values[name] for name in EDITABLE if values[name] is not None})
    doc.update(updated_by=editor, updated_at=now.isoformat())
    return doc


def field_errors(doc: Doc) -> dict[str, dict[str, Any]]:
    """domain.validate's complaints about doc, by field (empty if it is valid), as the form shows them."""
    try:
        validate(doc)
    except ValidationError as invalid:
        return by_field(invalid.errors)
    return {}


def routes(couch: Couch, current_user: CurrentUser, render: Render, now: Callable[[], dt.datetime]) -> list[Route]:
    async def edit_page(request: Request) -> Response:
        p = Principal.of(await current_user(request))
        household, _ = await run_in_threadpool(visible_household, couch, p, request.path_params["household_id"])
        # Seen, not theirs to edit (a volunteer's other households): 403.
        if await run_in_threadpool(queries.refusal_to_store, couch, p, household, household, now()):
            raise HTTPException(403)
        values, errors, message, status = form_values(household), {}, None, 200
        if request.method == "POST":
            values = values_from(await request.form())
            doc = edited(household, values, p.user_id, now())
            errors = field_errors(doc)
            if errors:
                status = 400
            elif await run_in_threadpool(queries.refusal_to_store, couch, p, household, doc, now()):
                raise HTTPException(403)
            elif values["_rev"] != household["_rev"]:
                message, status = "changed_meanwhile", 409
            else:
                try:
                    await run_in_threadpool(couch.main.save, doc)
                except Conflict:  # changed between our read and this write
                    message, status = "changed_meanwhile", 409
                else:
                    return RedirectResponse(f"/households/{household['_id']}", status_code=303)
        return render(request, "household_edit.html", status, household=household, values=values, errors=errors,
                      message=message, housing_choices=list(_HOUSEHOLD.fields["housing"].choices),
                      tag_choices=list(_HOUSEHOLD.fields["tags"].choices))

    return [Route("/households/{household_id}/edit", edit_page, methods=["GET", "POST"])]
