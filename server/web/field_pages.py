"""The grid worker's field pages, online: the alerts inbox (acknowledge, visiting, resolve) and visit logging
with a needs list and a photo from the camera.

HTML over the wire: every form works without JavaScript (a redirect back), and htmx swaps an alert's row in
place. Forms name their fields as the documents do (`kind`, `resident`, `notes`, `needs`, `_rev`), so that
the service worker can build the same documents offline: `needs` comes from the checkboxes (keys of
COMMON_NEEDS) and from a text box, one free-text need a line.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pycouchdb.exceptions import Conflict
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server.domain.access import Principal, may_see
from server.domain.declaration import DOC_TYPES, PROTECTED_TIERS, VISIT_KINDS, Role, validate
from server.domain.errors import UserError, by_field
from server.domain.field_rules import (
    ACTIONS_BY_STATE,
    COMMON_NEEDS,
    PHOTO_LIMITS,
    AlertRefused,
    alert_after,
    alerts_in_order,
    needs_of,
)
from server.domain.http_headers import attachment_answer
from server.services import needs as needs_service
from server.services import service_requests as sr
from server.store import queries
from server.store.couch import Couch, get_many, get_or_none, iter_view_docs
from server.web.forms import redirect_after_post
from server.web.lookup import visible_doc, visible_household

Doc = dict[str, Any]
Render = Callable[..., Response]
CurrentUser = Callable[[Request], Awaitable[Doc]]

RESOLVED_SHOWN = 200  # the newest resolved alerts shown with "show all"; every open one is shown
RECENT_VISITS = 5


def may_see_alerts(p: Principal) -> bool:
    """Whether the alerts inbox is this user's at all (the offline app has it from /pwa/session.json)."""
    return p.has(Role.GRID_WORKER, Role.SECRETARY)


def visible_alerts(couch: Couch, p: Principal, *, include_resolved: bool) -> list[Doc]:
    """The alerts of the user's grids (grid worker) and communities (secretary) they may see: every open one first
    (SOS and falls first, newest first), then with `include_resolved` the newest RESOLVED_SHOWN resolved."""
    places = (p.grids if p.has(Role.GRID_WORKER) else frozenset()) | (
        p.communities if p.has(Role.SECRETARY) else frozenset())
    found = {d["_id"]: d for place in sorted(places)
             for d in iter_view_docs(couch.main, "linli/by_place", [place, "alert"])}
    shown = alerts_in_order([d for d in found.values() if may_see(p, d)
                             and (include_resolved or d["status"] != "resolved")])
    still_open = [d for d in shown if d["status"] != "resolved"]  # all of them: "today" links to each
    return still_open + shown[len(still_open):][:RESOLVED_SHOWN]


def alert_names(couch: Couch, alerts: list[Doc]) -> dict[str, str]:
    """What the rows show for the ids alerts name: residents' names, households' addresses (basic tier),
    gateways' names, and who acknowledged."""
    docs = get_many(couch.main, {a[k] for a in alerts for k in ("resident", "household", "gateway") if a.get(k)})
    names = {i: d.get("name") or d.get("address", "") for i, d in docs.items()}
    return {**names, **queries.user_names(couch, {a["acknowledged_by"] for a in alerts if a.get("acknowledged_by")})}


def act_on_alert(p: Principal, doc: Doc, action: str, now: dt.datetime) -> Doc:
    """The alert after `action` (not stored). Raises AlertRefused."""
    return alert_after(doc, action, p.user_id, now.isoformat())


# A visit's fields in a protected tier (a blood pressure is health: core): sealed, never shown on the household page,
# which says only that the visit recorded one. Its notes are social, basic tier: shown to whoever sees the visit.
VISIT_PROTECTED = DOC_TYPES["visit"].fields_in(*PROTECTED_TIERS)


def recent_visits(couch: Couch, p: Principal, household_id: str) -> list[Doc]:
    """The household's newest visits p may see, for its page: date, kind, who, notes, needs, the photo if any, and
    whether it recorded a protected detail (left sealed)."""
    visits = sorted((v for v in iter_view_docs(couch.main, "linli/by_place", [household_id, "visit"]) if may_see(p, v)),
                    key=lambda v: dt.datetime.fromisoformat(v["visited_at"]), reverse=True)[:RECENT_VISITS]
    authors = queries.user_names(couch, {v["created_by"] for v in visits})
    return [{"_id": v["_id"], "visited_at": v["visited_at"], "kind": v["kind"], "notes": v.get("notes", ""),
             "needs": v.get("needs", []), "author": authors.get(v["created_by"], ""),
             "photo": min(v.get("_attachments", {}), default=None),
             "health_sealed": any(v.get(name) for name in VISIT_PROTECTED)}
            for v in visits]


def routes(couch: Couch, current_user: CurrentUser, render: Render, now: Callable[[], dt.datetime]) -> list[Route]:
    async def principal_of(request: Request) -> Principal:
        return Principal.of(await current_user(request))

    async def load(request: Request, p: Principal, type_name: str) -> Doc:
        return await run_in_threadpool(visible_doc, couch, p, f"{type_name}:{request.path_params['id']}", type_name)

    async def alerts_page(request: Request, p: Principal | None = None, error: str | None = None,
                          status_code: int = 200) -> Response:
        p = p or await principal_of(request)
        if not may_see_alerts(p):
            raise HTTPException(403)
        show_all = request.query_params.get("status") == "all"
        alerts = await run_in_threadpool(visible_alerts, couch, p, include_resolved=show_all)
        names = await run_in_threadpool(alert_names, couch, alerts)
        return render(request, "alerts.html", status_code, alerts=alerts, names=names, actions=ACTIONS_BY_STATE,
                      show_all=show_all, error=error, row_error=None)

    async def act(request: Request) -> Response:
        p = await principal_of(request)
        doc = await load(request, p, "alert")
        form = await request.form()
        error, status_code = None, 400
        try:
            new = act_on_alert(p, doc, str(form.get("action", "")), now())
        except AlertRefused as refused:
            error = str(refused)
        else:
            refusal = await run_in_threadpool(queries.refusal_to_store, couch, p, doc, new, now())
            if refusal:
                raise HTTPException(403, refusal)
            validate(new)
            try:
                if str(form.get("_rev") or doc["_rev"]) != doc["_rev"]:
                    # Changed since the user saw it: refused as CouchDB refuses a stale revision.
                    raise Conflict(doc["_id"])
                doc = await run_in_threadpool(couch.main.save, new)  # a race since `load` conflicts here
            except Conflict:
                error, status_code = "alert_conflict", 409
                doc = await run_in_threadpool(get_or_none, couch.main, doc["_id"]) or doc
        if request.headers.get("hx-request"):
            # htmx swaps only successful answers: a refusal comes back as the row, saying why.
            names = await run_in_threadpool(alert_names, couch, [doc])
            return render(request, "_alert_rows.html", alerts=[doc], names=names, actions=ACTIONS_BY_STATE,
                          row_error=error)
        if error:
            return await alerts_page(request, p, error, status_code)
        return RedirectResponse(f"/alerts#alert-{doc['_id'].replace(':', '-')}", status_code=303)

    async def visit_new(request: Request) -> Response:
        p = await principal_of(request)
        household, _ = await run_in_threadpool(visible_household, couch, p, request.path_params["household_id"])
        members = await run_in_threadpool(
            lambda: list(iter_view_docs(couch.main, "linli/by_place", [household["_id"], "resident"])))
        residents = [{"_id": r["_id"], "name": r["name"]} for r in members if may_see(p, r)]
        values: Doc = {"kind": VISIT_KINDS[0], "resident": "", "notes": "", "needs": [], "photo_chosen": False}
        errors: dict[str, Any] = {}
        form = await request.form() if request.method == "POST" else None
        # A visit that answers a resident's need (its page's "登记走访"): the need is done once the visit is stored.
        need = await run_in_threadpool(_need_to_answer, couch, p, household,
                                       str((form or request.query_params).get("need", "")))
        if need is not None:
            values["resident"] = need.get("resident", "")
        if form is not None:
            values = {"kind": str(form.get("kind", "")), "resident": str(form.get("resident", "")),
                      "notes": str(form.get("notes", "")).strip(),
                      "needs": needs_of([str(v) for v in form.getlist("needs") if isinstance(v, str)])}
            upload = form.get("photo")
            photo = sr.Photo(await upload.read(), upload.content_type) if isinstance(upload, UploadFile) \
                and upload.filename else None
            values["photo_chosen"] = photo is not None
            try:
                visit = _visit(p, household, values, {r["_id"] for r in residents}, photo, now())
                refusal = await run_in_threadpool(queries.refusal_to_store, couch, p, None, visit, now())
                if refusal:
                    raise HTTPException(403, refusal)
                stored = await run_in_threadpool(couch.main.save, visit)
                if need is not None:  # the visit is stored: a need handled meanwhile by someone else stays theirs
                    with contextlib.suppress(needs_service.NeedRefused):
                        await run_in_threadpool(needs_service.answer_with_visit, couch, p, need, stored, now())
            except UserError as bad:
                errors = by_field(bad.errors)
            else:
                return redirect_after_post(request, f"/households/{household['_id']}")
        return render(request, "visit_new.html", 400 if errors else 200, household=household, residents=residents,
                      need=need,
                      kinds=list(VISIT_KINDS), common_needs=list(COMMON_NEEDS), values=values, errors=errors,
                      free_needs=[n for n in values["needs"] if n not in COMMON_NEEDS])

    async def visit_photo(request: Request) -> Response:
        p = await principal_of(request)
        visit = await load(request, p, "visit")
        name = min(visit.get("_attachments", {}), default=None)
        if name is None:
            raise HTTPException(404)
        data = await run_in_threadpool(couch.main.get_attachment, visit, name)
        media_type, headers = attachment_answer(data)
        return Response(data, media_type=media_type, headers=headers)

    return [
        Route("/alerts", alerts_page),
        Route("/alerts/{id}/act", act, methods=["POST"]),
        Route("/households/{household_id}/visits/new", visit_new, methods=["GET", "POST"]),
        Route("/visits/{id}/photo", visit_photo),
    ]


def _need_to_answer(couch: Couch, p: Principal, household: Doc, need_id: str) -> Doc | None:
    """The open need of this household p handles that a visit form answers (`?need=<id>`), or None: a need that is
    not one, not here, already handled or not p's to handle leaves an ordinary visit form."""
    need = queries.load_doc(couch, need_id, "need") if need_id.startswith("need:") else None
    if need is None or need.get("household") != household["_id"] or need["status"] != "open" or not may_see(p, need):
        return None
    return need if needs_service.may_handle(p, need) else None


def _visit(p: Principal, household: Doc, values: Doc, residents: set[str], photo: sr.Photo | None,
           now: dt.datetime) -> Doc:
    """A new visit document from the form's values, validated whole, its photo attached."""
    if values["resident"] and values["resident"] not in residents:
        raise sr.RequestError("resident", "err_not_household_member")
    stamp = now.isoformat()
    visit: Doc = {"_id": f"visit:{uuid.uuid4().hex}", "type": "visit",
                  **{k: household[k] for k in ("street", "community", "grid")}, "household": household["_id"],
                  "kind": values["kind"], "visited_at": stamp, "needs": values["needs"],
                  "created_by": p.user_id, "created_at": stamp}
    visit.update({k: values[k] for k in ("resident", "notes") if values[k]})
    validate(visit)
    if photo:  # in the same write as the visit: a refused photo leaves nothing half-stored
        kind = sr.check_photo(photo.data, PHOTO_LIMITS["visit"].max_bytes, photo.declared)
        visit["_attachments"] = {f"photo.{kind.split('/')[1]}": {"content_type": kind,
                                                                 "data": base64.b64encode(photo.data).decode()}}
    return visit
