"""The service desk's pages: report a matter, follow it, act on it, rate it; the catalogue; the dashboard.

HTML over the wire like the rest of server/: every form works without JavaScript; htmx swaps in a
category's questions as the category changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server.domain.access import Principal, departments_of, may_see
from server.domain.declaration import SATISFACTION, Role, validate
from server.domain.errors import by_field
from server.domain.http_headers import attachment_answer
from server.domain.request_states import TRANSITIONS
from server.services import service_requests as sr
from server.services import survey, workbench
from server.store import queries
from server.store.config import LOCAL_TZ
from server.store.couch import Couch, docs_of_type, get_or_none, iter_view_docs
from server.web.forms import redirect_after_post
from server.web.lookup import visible_doc

Doc = dict[str, Any]
Render = Callable[..., Response]
CurrentUser = Callable[[Request], Awaitable[Doc]]
REQUESTS_SHOWN = 200  # the newest requests the list shows
# The report form's text fields: shown empty on a new form, as typed after an error (offline too: session.json).
FORM_FIELDS = ("category", "description", "address", "lat", "lon", "reporter_name")
# The catalogue form's, shown as typed after an error (a post may leave some out).
CATEGORY_FORM_FIELDS = ("code", "name", "department", "respond_days", "close_days", "questions")
ACTIONS = {"acknowledge": "acknowledged", "start": "in_progress", "resolve": "resolved", "close": "closed",
           "reopen": "reopened"}


def visible_requests(couch: Couch, p: Principal) -> list[Doc]:
    """The requests this user may see, newest first."""
    if p.has(Role.GRID_WORKER) and not p.has(Role.SECRETARY, Role.ADMIN, Role.DEPARTMENT_STAFF):
        docs = [d for g in sorted(p.grids)
                for d in iter_view_docs(couch.main, "linli/by_place", [g, "service_request"])]
    else:
        docs = sr.street_requests(couch, p.street)
    return sorted((d for d in docs if may_see(p, d)), key=lambda d: d["created_at"], reverse=True)


def routes(couch: Couch, current_user: CurrentUser, render: Render, now: Callable[[], dt.datetime]) -> list[Route]:
    async def principal_of(request: Request) -> Principal:
        return Principal.of(await current_user(request))

    async def load(request: Request, p: Principal) -> Doc:
        doc = await run_in_threadpool(visible_doc, couch, p, "service_request:" + request.path_params["id"],
                                      "service_request")
        # Made offline and not yet taken in by the minute sweep: shown, and acted on, as it will be dispatched.
        return await run_in_threadpool(sr.dispatched, couch, doc)

    async def list_page(request: Request) -> Response:
        p = await principal_of(request)
        docs = await run_in_threadpool(visible_requests, couch, p)
        categories = await run_in_threadpool(sr.catalogue, couch, p.street, active_only=False)
        return render(request, "requests.html", requests=docs[:REQUESTS_SHOWN], categories=categories,
                      now=now().isoformat())

    async def questions(request: Request) -> Response:
        p = await principal_of(request)
        category = (await run_in_threadpool(sr.catalogue, couch, p.street)).get(request.query_params.get("category"))
        return render(request, "_questions.html", category=category, values={}, errors={})

    async def new_page(request: Request) -> Response:
        p = await principal_of(request)
        categories = await run_in_threadpool(sr.catalogue, couch, p.street)
        errors: dict[str, Any] = {}
        values: dict[str, Any] = dict.fromkeys(FORM_FIELDS, "")
        if request.method == "GET" and p.resident:  # a resident most often reports about home: offered, editable
            values["address"] = await run_in_threadpool(home_address, couch, p.resident)
        if request.method == "POST":
            form = await request.form()
            values |= {k: str(v) for k, v in form.items() if not isinstance(v, UploadFile)}
            photos = tuple([sr.Photo(await f.read(), f.content_type) for f in form.getlist("photo")
                            if isinstance(f, UploadFile) and f.filename])
            values["photo_chosen"] = bool(photos)
            staff = p.has(Role.GRID_WORKER) and bool(p.grids)
            home = None if staff else await run_in_threadpool(_home_of, couch, p)
            new = sr.NewRequest(
                street=p.street, category=values.get("category", ""), description=values.get("description", ""),
                address=values.get("address", ""), grid=sorted(p.grids)[0] if staff else None,
                home_grid=home["grid"] if home else None, resident=p.resident,
                household=home["household"] if home else None, attributes=answers_of(form),
                on_behalf=staff and "on_behalf" in values,
                consent="consent" in values, reporter_name=values.get("reporter_name", ""), photos=photos,
                location=_location(values))
            try:
                doc = await run_in_threadpool(sr.create, couch, p.user_id, new, now())
            except sr.RequestError as bad:
                errors = by_field(bad.errors)
            else:
                return redirect_after_post(request, f"/requests/{doc['_id'].split(':', 1)[1]}")
        chosen = categories.get(values.get("category", ""))
        return render(request, "request_new.html", 400 if errors else 200,
                      categories=list(categories.items()), errors=errors,
                      values=values, category=chosen, staff=p.has(Role.GRID_WORKER))

    async def detail(request: Request) -> Response:
        p = await principal_of(request)
        doc = await load(request, p)
        return await _detail(request, p, doc)

    async def _detail(request: Request, p: Principal, doc: Doc, errors: dict[str, Any] | None = None,
                      typed: dict[str, str] | None = None) -> Response:
        categories = await run_in_threadpool(sr.catalogue, couch, p.street, active_only=False)
        names = await run_in_threadpool(queries.user_names, couch, {h["by"] for h in doc["history"]})
        departments = await run_in_threadpool(sr.department_names, couch)
        progress_photos = {h["photo"] for h in doc["history"] if "photo" in h}
        return render(request, "request.html", 400 if errors else 200, doc=doc, category=categories.get(
            doc["category"]), names=names, departments=departments, errors=errors or {},
            note=(typed or {}).get("note", ""), reason=(typed or {}).get("reason", ""),
            acted=(typed or {}).get("action", ""), whistled=[w["department"] for w in doc.get("whistles", [])],
            satisfaction=SATISFACTION,
            may_act=sr.may_act(p, doc), reporter=sr.is_reporter(p, doc),
            secretary=p.has(Role.SECRETARY) and doc["community"] in p.communities,
            department_actions=sr.department_actions(p, doc),
            department_view=p.has(Role.DEPARTMENT_STAFF) and p.department in departments_of(doc),
            transitions=TRANSITIONS[doc["status"]], confirm_channels=sr.confirm_channels(p, doc),
            fix_pending=await run_in_threadpool(sr.pending_fix_check, couch, doc),
            photos=sorted(name for name in doc.get("_attachments", {}) if name not in progress_photos))

    async def act(request: Request) -> Response:
        p = await principal_of(request)
        doc = await load(request, p)
        form = await request.form()
        action, note, at = str(form.get("action", "")), str(form.get("note", "")), now()
        reason = str(form.get("reason", ""))
        try:
            if action in ACTIONS:
                doc = await run_in_threadpool(sr.transition, couch, p, doc, ACTIONS[action], note, at)
            elif action == "comment":
                doc = await run_in_threadpool(sr.comment, couch, p, doc, note, at)
            elif action == "whistle":
                departments = [str(d) for d in form.getlist("department")]
                doc = await run_in_threadpool(sr.whistle, couch, p, doc, departments, note, at)
            elif action == "accept":
                doc = await run_in_threadpool(sr.accept, couch, p, doc, at)
            elif action == "arrive":
                doc = await run_in_threadpool(sr.arrive, couch, p, doc, at)
            elif action == "progress":
                chosen = form.get("photo")
                photo = (sr.Photo(await chosen.read(), chosen.content_type)
                         if isinstance(chosen, UploadFile) and chosen.filename else None)
                doc = await run_in_threadpool(sr.progress, couch, p, doc, note, photo, at)
            elif action == "hand_back":
                doc = await run_in_threadpool(sr.hand_back, couch, p, doc, reason, at)
            elif action in ("fixed", "not_fixed"):  # closed means fixed: the reporter's answer (issue 18)
                doc = await run_in_threadpool(sr.confirm, couch, p, doc, action == "fixed", reason,
                                              str(form.get("via", "")), "consent" in form, at)
            elif action == "rate":
                rating = int(str(form.get("rating", "0"))) if str(form.get("rating", "")).isdigit() else 0
                doc = await run_in_threadpool(sr.rate, couch, p, doc, rating, str(form.get("satisfaction", "")),
                                              note, at)
            else:
                raise sr.RequestError("action", "err_unknown_action", action=action)
        except sr.RequestError as bad:
            if bad.status == 403:
                raise HTTPException(403) from None
            return await _detail(request, p, doc, by_field(bad.errors),  # what was typed, in the form it was typed in
                                 {"action": action, "note": note, "reason": reason})
        return RedirectResponse(f"/requests/{request.path_params['id']}", status_code=303)

    async def photo(request: Request) -> Response:
        p = await principal_of(request)
        doc = await load(request, p)
        name = request.path_params["name"]
        if name not in doc.get("_attachments", {}):
            raise HTTPException(404)
        response, _ = await run_in_threadpool(couch.main.resource.get, f"{doc['_id']}/{name}", stream=True)
        media_type, headers = attachment_answer(response.content)
        return Response(response.content, media_type=media_type, headers=headers)

    async def workbench_page(request: Request) -> Response:
        p = await principal_of(request)
        if not (p.has(Role.DEPARTMENT_STAFF) and p.department):
            raise HTTPException(404)
        filters = workbench.Filters.of(dict(request.query_params))
        found = await run_in_threadpool(workbench.items, couch, p, filters, now())
        return render(request, "workbench.html", items=found, filters=filters, states=workbench.STATE_FILTERS,
                      categories=await run_in_threadpool(sr.catalogue, couch, p.street, active_only=False),
                      names=await run_in_threadpool(_place_names, couch),
                      department=(await run_in_threadpool(sr.department_names, couch)).get(p.department, ""))

    async def catalogue_page(request: Request) -> Response:
        p = await principal_of(request)
        if not p.has(Role.SECRETARY, Role.ADMIN):
            raise HTTPException(403)
        errors: dict[str, Any] = {}
        saved = posted = None
        if request.method == "POST":
            form = await request.form()
            try:
                await run_in_threadpool(_save_category, couch, p, {k: str(v) for k, v in form.items()}, now())
                saved = True
            except sr.RequestError as bad:
                errors = by_field(bad.errors)
                posted = {**dict.fromkeys(CATEGORY_FORM_FIELDS, ""),  # shown again, as typed
                          **{k: str(v) for k, v in form.items() if k != "csrf_token"}}
        categories = await run_in_threadpool(sr.catalogue, couch, p.street, active_only=False)
        questions = {code: sr.questions_text(c.get("attributes", [])) for code, c in categories.items()}
        return render(request, "catalogue.html", 400 if errors else 200, categories=categories, saved=saved,
                      errors=errors, posted=posted, questions=questions,
                      departments=await run_in_threadpool(sr.department_names, couch))

    async def survey_page(request: Request) -> Response:
        p = await principal_of(request)
        resident = await run_in_threadpool(get_or_none, couch.main, p.resident) if p.resident else None
        if resident is None:
            raise HTTPException(403)
        errors: dict[str, Any] = {}
        done = None
        values = {"overall": "", "comment": ""}
        if request.method == "POST":
            form = await request.form()
            values = {"overall": str(form.get("overall", "")), "comment": str(form.get("comment", ""))}
            overall = values["overall"]
            try:
                await run_in_threadpool(survey.answer, couch, p, resident, int(overall) if overall.isdigit() else 0,
                                        values["comment"], now(), LOCAL_TZ)
                done = True
            except survey.SurveyError as bad:
                errors = by_field(bad.errors)
        return render(request, "survey.html", 400 if errors else 200, errors=errors, values=values, done=done,
                      month=survey.month_of(now(), LOCAL_TZ))

    async def survey_results(request: Request) -> Response:
        # Published (§4.5): open to everyone, signed in or not; totals only.
        results = await run_in_threadpool(survey.results, couch)
        return render(request, "survey_results.html", results=results,
                      names=await run_in_threadpool(_place_names, couch))

    return [
        Route("/survey", survey_page, methods=["GET", "POST"]),
        Route("/survey/results", survey_results),
        Route("/requests", list_page),
        Route("/requests/new", new_page, methods=["GET", "POST"]),
        Route("/requests/questions", questions),
        Route("/requests/{id}", detail),
        Route("/requests/{id}/act", act, methods=["POST"]),
        Route("/requests/{id}/photos/{name}", photo),
        Route("/workbench", workbench_page),
        Route("/catalogue", catalogue_page, methods=["GET", "POST"]),
    ]


def _home_of(couch: Couch, p: Principal) -> Doc | None:
    """A resident's own record, which places their report (NewRequest.home_grid). Their phone's replica holds
    the same record, so a report made offline is placed alike (pwa/offline/pages.js storeRequest)."""
    return queries.load_doc(couch, p.resident, "resident") if p.resident else None


def answers_of(form: Any) -> dict[str, Any]:
    """A form's answers to its category's questions (fields `attribute.<code>`, `attribute.<code>[]` for a list)."""
    answers: dict[str, Any] = {}
    for name in form:
        if name.startswith("attribute."):
            values = [str(v) for v in form.getlist(name) if str(v)]
            if values:
                answers[name[len("attribute."):]] = values if len(values) > 1 or name.endswith("[]") else values[0]
    return {k.removesuffix("[]"): v for k, v in answers.items()}


def _location(values: dict[str, str]) -> dict[str, float] | None:
    try:
        return {"lat": float(values["lat"]), "lon": float(values["lon"])}
    except (KeyError, ValueError):
        return None


def home_address(couch: Couch, resident_id: str) -> str:
    """The address of the resident's household (their phone's replica holds no household: session.json carries it)."""
    resident = get_or_none(couch.main, resident_id) or {}
    household = get_or_none(couch.main, resident.get("household", "")) if resident.get("household") else None
    return (household or {}).get("address", "")


def _place_names(couch: Couch) -> dict[str, str]:
    return {d["_id"]: d["name"] for kind in ("street", "community", "grid") for d in docs_of_type(couch.main, kind)}


def _save_category(couch: Couch, p: Principal, form: dict[str, str], now: dt.datetime) -> None:
    doc = get_or_none(couch.main, "service_category:" + form.get("code", ""))
    if form.get("new"):
        if doc is not None:
            raise sr.RequestError("code", "err_category_exists")
        doc = {**sr.new_category(form.get("code", ""), p.street), "department": form.get("department", "")}
    if doc is None or doc["street"] != p.street:
        raise sr.RequestError("code", "err_no_category")
    doc["attributes"] = sr.parse_questions(form.get("questions", ""))
    try:
        respond, close = int(form.get("respond_days", "")), int(form.get("close_days", ""))
    except ValueError:
        raise sr.RequestError("respond_days", "err_days_whole") from None
    if not (1 <= respond <= close <= 60):
        raise sr.RequestError("close_days", "err_days_order")
    if not form.get("name", "").strip():
        raise sr.RequestError("name", "err_required")
    doc.update(name=form["name"].strip()[:100], department=form.get("department", doc["department"]),
               respond_days=respond, close_days=close, active="active" in form, updated_by=p.user_id,
               updated_at=now.isoformat())
    if doc["department"] not in sr.department_names(couch):
        raise sr.RequestError("department", "err_no_department")
    validate(doc)
    couch.main.save(doc)
