"""The Starlette web application: login, the grid worker's households, the
secretary's communities. HTML over the wire (Jinja2 + htmx).

CouchDB calls are blocking (pycouchdb), so handlers run them in the thread
pool with `run_in_threadpool`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from crypto.envelope import EnvelopeError
from server.domain.access import Principal, works_offline
from server.domain.declaration import CORE_CATEGORIES, DOC_TYPES, PRIVACY_CHOICES, Role, export_json
from server.domain.entitlement import CATEGORY_FIELDS, REVEAL_PURPOSES
from server.domain.errors import FieldError, UserError, by_field
from server.domain.field_rules import COMMON_NEEDS
from server.domain.i18n import DEFAULT_LANG, LANGUAGES, translator
from server.security import accounts, filing, grants
from server.security.firewall import (
    AccessDenied,
    AccessRequestError,
    Firewall,
    PrivacyChoiceError,
    device_label,
    number_field,
)
from server.security.keystore import ShreddedError
from server.security.sessions import CSRFMiddleware, csrf_token, end_session, session_user, start_session
from server.services import (
    alerts,
    deliberation,
    pool,
    pool_months,
    projects,
    publications,
    rewards,
    service_requests,
    snapshots,
    tasks,
    timebank,
)
from server.services.figures_cells import catch_up as keep_figures
from server.services.survey import mark_answered as mark_survey_answered
from server.store import queries
from server.store.config import LOCAL_TZ, PROJECT_ROOT, Settings, local_time
from server.store.couch import UNREACHABLE, Couch, IndexPreparing, get_or_none
from server.store.health import Health
from server.web import (
    display,
    match_pages,
    mediation_pages,
    open311,
    pool_pages,
    project_pages,
    pwa_routes,
    request_pages,
    reward_pages,
    survey_pages,
    task_pages,
    timebank_pages,
)
from server.web.account_pages import routes as account_routes
from server.web.activation import account_of
from server.web.activation import routes as activation_routes
from server.web.assets import AssetsMiddleware, asset_urls
from server.web.compression import CompressionMiddleware
from server.web.conflict_pages import routes as conflict_routes
from server.web.console_pages import routes as console_routes
from server.web.field_pages import recent_visits
from server.web.field_pages import routes as field_routes
from server.web.figures_pages import routes as figures_routes
from server.web.figures_pages import snapshot_routes
from server.web.home import OWN_RECORD_PURPOSES, home_path, role_keys
from server.web.household_edit import routes as household_edit_routes
from server.web.lookup import visible_doc, visible_household
from server.web.matter_pages import routes as matter_routes
from server.web.meeting_pages import routes as meeting_routes
from server.web.need_pages import open_needs_context
from server.web.need_pages import routes as need_routes
from server.web.observability import ObservabilityMiddleware, metrics_endpoint
from server.web.preparing import IndexPatience, on_index_preparing
from server.web.resident_needs import page_context as needs_context
from server.web.resident_needs import routes as needs_routes
from server.web.safety_pages import routes as safety_routes
from server.web.security_headers import SecurityHeadersMiddleware, server_error
from server.web.today_page import routes as today_routes

HERE = Path(__file__).resolve().parent
logger = logging.getLogger("linli")
VENDOR_DIR = PROJECT_ROOT / "pwa" / "vendor"
SIGNED_IN_COOKIE = "signed_in"
USERNAME_MAX = DOC_TYPES["user"].fields["username"].max_length


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _lang(request: Request) -> str:
    lang = request.cookies.get("lang", DEFAULT_LANG)
    return lang if lang in LANGUAGES else DEFAULT_LANG


def _device(request: Request) -> str:
    """How the filing log names where an access came from."""
    return device_label(request.headers.get("user-agent", ""), request.client.host if request.client else "")


def _template_context(request: Request) -> dict[str, Any]:
    lang = _lang(request)
    user = request.state.user if hasattr(request.state, "user") else None
    return {"t": translator(lang), "lang": lang, "csrf_token": csrf_token(request.session), "user": user,
            "works_offline": bool(user) and works_offline(Principal.of(user)),
            "display": display.classes(request), "time_zone": LOCAL_TZ.key,
            "assets": asset_urls()}  # browser code and stylesheet by versioned name (server/web/assets.py)


def _finalize_none(value: Any) -> Any:
    # Render None as empty text, as Nunjucks does, so templates can later be
    # shared with the service worker (see pwa/README.md).
    return "" if value is None else value


def _as_shown(value: Any) -> Any:
    """1200.0 as "1200", as JavaScript prints it (the service worker renders the same template)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


templates = Jinja2Templates(directory=HERE / "templates", context_processors=[_template_context])
templates.env.finalize = _finalize_none
templates.env.keep_trailing_newline = True  # as Nunjucks keeps it
templates.env.filters["localtime"] = local_time


class LoginRequired(Exception):
    """Raised by handlers when no valid session is present."""


def create_app(settings: Settings, couch: Couch, mounts: Sequence[BaseRoute] = (),
               health: Health | None = None, clocks: bool = True) -> Starlette:
    """The web application bound to one CouchDB connection; `mounts` join it inside its session and CSRF
    middleware (the sync gateway at /sync, see server/cli/main.py). Without `clocks` the minute and hourly
    jobs do not run in the background: a caller that runs them itself (a test) is not raced by them."""
    firewall = Firewall.open(settings, couch)
    health = health or Health()

    async def current_user(request: Request) -> dict[str, Any]:
        if not request.session.get("user"):
            raise LoginRequired
        user = await run_in_threadpool(session_user, couch.accounts, request.session)
        if user is None:  # logged out (perhaps elsewhere, this cookie a copy), deactivated, new password
            request.session.clear()
            raise LoginRequired
        request.state.user = user
        return user

    def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        return templates.TemplateResponse(request, name, context, status_code=status_code)

    async def login_page(request: Request) -> Response:
        message = "session_expired" if request.query_params.get("expired") else None
        return render(request, "login.html", message=message, username="",
                      next=request.query_params.get("next", "/"))

    async def login(request: Request) -> Response:
        form = await request.form()
        username = str(form.get("username", "")).strip()
        password = str(form.get("password", ""))
        next_url = str(form.get("next", "/"))
        if not next_url.startswith("/") or next_url.startswith("//"):
            next_url = "/"  # no open redirect
        if not username or not password:
            return render(request, "login.html", 400, message="login_missing", username=username, next=next_url)
        if len(username) > USERNAME_MAX:  # no such account can exist; and the name would become a CouchDB id
            raise UserError([FieldError("username", "err_too_long", {"max": USERNAME_MAX})])
        try:
            user = await run_in_threadpool(accounts.authenticate, couch.accounts, username, password, _now())
        except accounts.LoginLocked as locked:
            until = locked.until.astimezone().strftime("%H:%M")
            return render(request, "login.html", 429, message="login_locked", until=until,
                          username=username, next=next_url)
        if user is None:
            return render(request, "login.html", 401, message="login_failed", username=username, next=next_url)
        return await sign_in(request, user, next_url)

    async def sign_in(request: Request, user: dict[str, Any], next_url: str) -> Response:
        """Start the user's session (login, a resident's account activation) and go on to next_url."""
        await run_in_threadpool(start_session, couch.accounts, request.session, user, _now(), settings.session_max_age)
        response = RedirectResponse(next_url, status_code=303)
        # Outlives the session cookie, so that a lapsed session can be told apart from "never logged in".
        response.set_cookie(SIGNED_IN_COOKIE, "1", max_age=30 * 86400, httponly=True, samesite="lax",
                            secure=settings.cookie_secure)
        return response

    async def logout(request: Request) -> Response:
        await run_in_threadpool(end_session, couch.accounts, request.session)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SIGNED_IN_COOKIE)
        return response

    async def set_language(request: Request) -> Response:
        form = await request.form()
        lang = str(form.get("lang", ""))
        if lang not in LANGUAGES:
            raise UserError([FieldError("lang", "err_not_choice", {"value": lang, "choices": ", ".join(LANGUAGES)})])
        response = display.redirect_back(request)
        response.set_cookie("lang", lang, max_age=365 * 86400, samesite="lax", secure=settings.cookie_secure)
        return response

    async def home(request: Request) -> Response:
        user = await current_user(request)
        target = home_path(user)
        if target:
            return RedirectResponse(target, status_code=303)
        roles = role_keys(user)
        if roles is None:
            return await my_record(request, user)
        return render(request, "home.html", role_keys=roles)

    async def my_record(request: Request, user: dict[str, Any]) -> Response:
        """A resident's own page: what is held, who opened it and why, and their privacy choices."""
        resident = await run_in_threadpool(queries.load_doc, couch, user["resident"], "resident")
        if resident is None:
            raise HTTPException(404)
        openings = await run_in_threadpool(firewall.openings_of, Principal.of(user), resident)  # as pages.js myRecord
        names = await run_in_threadpool(queries.user_names, couch, {e["actor"] for e in openings})
        return render(request, "my_record.html", resident=resident, openings=openings, names=names,
                      categories=list(CATEGORY_FIELDS),
                      purposes_known=OWN_RECORD_PURPOSES,
                      **await run_in_threadpool(needs_context, couch, resident))

    async def grid_page(request: Request) -> Response:
        """The grid's households, for whoever may see the grid (access.may_see); each lists only what they may see."""
        principal = Principal.of(await current_user(request))
        grid = await run_in_threadpool(visible_doc, couch, principal, request.path_params["grid_id"], "grid")
        query = request.query_params.get("q", "")[:100]
        try:
            offset = max(0, int(request.query_params.get("offset", "0")))
        except ValueError:
            raise UserError([FieldError("offset", "err_not_integer", {"got": "str"})]) from None
        only = None
        if number_field(query):  # a phone or ID card number: found by blind index, never by plaintext
            found = await run_in_threadpool(firewall.find_by_number, principal, grid, query,
                                            device=_device(request), now=_now())
            only = {r["household"] for r in found if r["grid"] == grid["_id"]}
        page = await run_in_threadpool(queries.grid_households, couch, principal, grid["_id"], query, offset, only)
        # htmx asks for just the rows (search as you type, "load more").
        if request.headers.get("hx-request"):
            return render(request, "_household_rows.html", grid=grid, page=page, q=query)
        return render(request, "grid.html", grid=grid, page=page, q=query,
                      **await run_in_threadpool(open_needs_context, couch, principal, grid["_id"]))

    async def household_page(request: Request) -> Response:
        principal = Principal.of(await current_user(request))
        household, grid = await run_in_threadpool(visible_household, couch, principal,
                                                  request.path_params["household_id"])
        residents = await run_in_threadpool(queries.household_detail, couch, principal, household, dt.date.today())
        for resident in residents:
            resident["protected"] = await run_in_threadpool(firewall.entitlements, principal, resident["doc"], _now())
            # Once a resident has an account, no activation code is offered (issuing one would be refused).
            resident["has_account"] = await run_in_threadpool(account_of, couch, resident["id"]) is not None
        visits = await run_in_threadpool(recent_visits, couch, principal, household["_id"])
        household_tasks = await run_in_threadpool(tasks.household_tasks, couch, principal, household["_id"])
        return render(request, "household.html", household=household, grid=grid, residents=residents,
                      visits=visits, common_needs=list(COMMON_NEEDS), purposes=REVEAL_PURPOSES,
                      tasks=household_tasks, may_assign=task_pages.may_assign(principal, household),
                      names=await run_in_threadpool(task_pages.task_names, couch, household_tasks))

    async def resident_for(request: Request) -> tuple[Principal, dict[str, Any]]:
        """The signed-in user and the resident named in the path, if the user may see that resident at all."""
        principal = Principal.of(await current_user(request))
        resident = await run_in_threadpool(visible_doc, couch, principal, request.path_params["resident_id"],
                                           "resident")
        return principal, resident

    async def reveal(request: Request) -> Response:
        principal, resident = await resident_for(request)
        form = await request.form()
        category = str(form.get("category", ""))
        purpose = str(form.get("purpose", ""))
        try:
            values = await run_in_threadpool(firewall.reveal, principal, resident, category, purpose=purpose,
                                             device=_device(request), now=_now())
        except AccessDenied as denied:
            values, error = {}, denied.reason
        except ShreddedError:
            values, error = {}, "fw_erased"
        except EnvelopeError:  # moved or altered ciphertext: show nothing, say so
            values, error = {}, "fw_tampered"
        else:
            error = None
        # Each with its declared kind: the page dials a phone number and keeps a number on one line.
        kinds = DOC_TYPES["resident"].fields
        fields = [(name, _as_shown(values.get(name)), kinds[name].kind) for name in CATEGORY_FIELDS.get(category, [])]
        # htmx swaps only successful answers: a refusal comes back as the section, saying why.
        htmx = bool(request.headers.get("hx-request"))
        return render(request, "_revealed.html" if htmx else "revealed.html", 403 if error and not htmx else 200,
                      resident=resident, category=category, fields=fields, error=error)

    async def access_request_page(request: Request) -> Response:
        principal, resident = await resident_for(request)
        sent = None
        errors: dict[str, Any] = {}
        values: dict[str, Any] = {"category": list(CORE_CATEGORIES), "purpose": "", "hours": "24"}
        if request.method == "POST":
            form = await request.form()
            values = {"category": [str(c) for c in form.getlist("category")],
                      "purpose": str(form.get("purpose", "")), "hours": str(form.get("hours", ""))}
            hours = int(values["hours"]) if values["hours"].isdigit() else 0
            try:
                await run_in_threadpool(firewall.request_access, principal, resident, values["category"],
                                        values["purpose"], hours, _now())
                sent = True
            except AccessDenied as denied:
                raise HTTPException(403, denied.reason) from None
            except AccessRequestError as bad:
                errors = by_field(bad.errors)
        return render(request, "access_request.html", 400 if errors else 200, resident=resident,
                      categories=CORE_CATEGORIES, errors=errors, values=values, sent=sent)

    async def approvals_page(request: Request) -> Response:
        user = await current_user(request)
        principal = Principal.of(user)
        if not principal.has(Role.SECRETARY):
            raise HTTPException(403)
        decided = None
        errors: dict[str, Any] = {}
        if request.method == "POST":
            form = await request.form()
            try:
                doc = await run_in_threadpool(firewall.decide, principal, str(form.get("access_request", "")),
                                              approve=form.get("decision") == "approve",
                                              note=str(form.get("note", "")), now=_now())
                decided = "decided_" + doc["status"]
                requester = await run_in_threadpool(get_or_none, couch.accounts, doc["requester"])
                if requester:  # the approved key reaches the requester's phones
                    await run_in_threadpool(grants.sync_user, firewall, requester, _now())
            except AccessDenied as denied:
                errors = by_field([FieldError("access_request", denied.reason)])
            except AccessRequestError as bad:
                errors = by_field(bad.errors)
        pending = await run_in_threadpool(firewall.pending_access_requests, principal)
        names = await run_in_threadpool(queries.names_of, couch, pending)
        return render(request, "approvals.html", 400 if errors else 200, pending=pending, names=names,
                      decided=decided, errors=errors)

    async def privacy_page(request: Request) -> Response:
        principal, resident = await resident_for(request)
        saved = None
        errors: dict[str, Any] = {}
        if request.method == "POST":
            form = await request.form()
            choices = {c: str(form[c]) for c in PRIVACY_CHOICES if c in form}
            try:
                await run_in_threadpool(firewall.set_privacy, principal, resident, choices, _now())
                await run_in_threadpool(grants.resync_resident, firewall, resident["_id"], _now())
                saved = True
            except AccessDenied as denied:
                raise HTTPException(403, denied.reason) from None
            except PrivacyChoiceError as bad:
                errors = by_field(bad.errors)
        current = await run_in_threadpool(firewall.privacy_of, resident["_id"])
        return render(request, "privacy.html", 400 if errors else 200, resident=resident,
                      choices=list(PRIVACY_CHOICES.items()), categories=list(PRIVACY_CHOICES), current=current,
                      saved=saved, errors=errors)

    async def communities_page(request: Request) -> Response:
        user = await current_user(request)
        if not queries.roles(user) & {Role.ADMIN, Role.SECRETARY}:
            raise HTTPException(403)
        overview = await run_in_threadpool(queries.community_overview, couch, user)
        pending = await run_in_threadpool(firewall.pending_access_requests, Principal.of(user))
        return render(request, "communities.html", communities=overview, pending=len(pending))

    async def register_phone_key(request: Request) -> Response:
        """A phone registers its public key (JSON {"public_key", "label"}) and gets its grants through sync."""
        user = await current_user(request)
        try:
            body = await request.json()
            key = await run_in_threadpool(lambda: grants.register_phone(
                couch, user, str(body.get("public_key", "")), str(body.get("label", "")), _now(),
                enrolled_from=_device(request)))
        except grants.PhoneKeyError as refused:  # the phone's sync bar says it in the person's language
            return JSONResponse({"error": "bad_request", "reason": str(refused), "key": refused.key,
                                 "params": refused.params}, status_code=400)
        except (ValueError, AttributeError):  # JSONDecodeError is a ValueError
            return JSONResponse({"error": "bad_request", "reason": "send JSON {public_key, label}"}, status_code=400)
        issued, _ = await run_in_threadpool(lambda: grants.sync_user(firewall, user, _now(),
                                                                     reason=grants.PHONE_ENROLLED))
        return JSONResponse({"phone_key": key["_id"], "grants": issued}, status_code=201)

    async def remove_phone_key(request: Request) -> Response:
        """A phone signing out gives up its key: it is revoked, and its grants are deleted (they reach nobody)."""
        user = await current_user(request)
        removed = await run_in_threadpool(grants.unregister_phone, firewall, user,
                                          f"phone_key:{request.path_params['key']}", _now())
        if not removed:
            return JSONResponse({"error": "not_found", "reason": "no such phone key of yours"}, status_code=404)
        return JSONResponse({"ok": True})

    async def schema_json(request: Request) -> Response:
        return JSONResponse(export_json())

    async def healthz(request: Request) -> Response:
        """Each part's state as JSON; 200 while the database answers (alive), else 503. `/readyz`: 200 once the
        first pages' indexes are built as well, for a load balancer deciding where to send people."""
        try:
            documents = (await run_in_threadpool(couch.main.config)).get("doc_count")
        except UNREACHABLE:
            documents = None
        alive, ready, parts = health.report(documents is not None, _now())
        ok = ready if request.url.path == "/readyz" else alive
        return JSONResponse({"ok": ok, "alive": alive, "ready": ready, "documents": documents, "parts": parts},
                            status_code=200 if ok else 503)

    async def on_database_unreachable(request: Request, exc: Exception) -> Response:
        """CouchDB is restarting or unreachable: a page that says so and comes back by itself, one log line."""
        logger.warning("database unreachable for %s %s: %s", request.method, request.url.path, type(exc).__name__)
        if request.url.path.startswith(("/open311/", "/phone-keys", "/schema.json")):
            return JSONResponse({"error": "recovering", "reason": "the database is restarting; try again shortly"},
                                status_code=503, headers={"Retry-After": "5"})
        answer = render(request, "error.html", 503, message="recovering", errors={})
        answer.headers.update({"Retry-After": "5", "Refresh": "10"})
        return answer

    async def on_login_required(request: Request, exc: Exception) -> Response:
        target = "/login?next=" + quote(request.url.path, safe="/:")
        if request.cookies.get(SIGNED_IN_COOKIE):  # was logged in, did not log out: the session lapsed
            target += "&expired=1"
        if request.headers.get("hx-request"):  # htmx follows HX-Redirect, not a 303
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    async def on_http_error(request: Request, exc: HTTPException) -> Response:
        keys = {400: "bad_request", 403: "forbidden", 404: "not_found"}
        return render(request, "error.html", exc.status_code, message=keys.get(exc.status_code, "bad_request"),
                      errors={})

    async def on_user_error(request: Request, exc: Exception) -> Response:
        """Input no form on the page can show (a tampered link or option): the error page says what is wrong."""
        assert isinstance(exc, UserError)
        return render(request, "error.html", exc.status, message="bad_request", errors=by_field(exc.errors))

    routes = [
        Route("/", home),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/lang", set_language, methods=["POST"]),
        *display.routes(settings),
        Route("/grids/{grid_id}", grid_page),
        Route("/households/{household_id}", household_page),
        Route("/communities", communities_page),
        Route("/residents/{resident_id}/reveal", reveal, methods=["POST"]),
        Route("/residents/{resident_id}/access-request", access_request_page, methods=["GET", "POST"]),
        Route("/residents/{resident_id}/privacy", privacy_page, methods=["GET", "POST"]),
        Route("/approvals", approvals_page, methods=["GET", "POST"]),
        Route("/phone-keys", register_phone_key, methods=["POST"]),
        Route("/phone-keys/{key}", remove_phone_key, methods=["DELETE"]),
        Route("/schema.json", schema_json),
        Mount("/open311/v2", routes=open311.routes(couch, _now)),
        *request_pages.routes(couch, current_user, render, _now),
        *household_edit_routes(couch, current_user, render, _now),
        *conflict_routes(firewall, current_user, render, _now),
        *field_routes(couch, current_user, render, _now),
        *activation_routes(firewall, settings.secret_key, current_user, render, _now, _device, sign_in),
        *console_routes(firewall, current_user, render, _now),
        *account_routes(firewall, current_user, render, _now, _device),
        *needs_routes(couch, current_user, render, _now),
        *safety_routes(firewall, current_user, render, _now, _device),
        *timebank_pages.routes(firewall, current_user, render, _now),
        *reward_pages.routes(firewall, current_user, render, _now),  # points and rewards (issue 16 item 4)
        *task_pages.routes(couch, current_user, render, _now),
        *need_routes(couch, current_user, render, _now),
        *today_routes(couch, current_user, render, _now),
        *matter_routes(firewall, current_user, render, _now),
        *pool_pages.routes(firewall, current_user, render, _now),
        *match_pages.routes(couch, current_user, render, _now),
        *meeting_routes(firewall, current_user, render, _now),
        *figures_routes(couch, current_user, render, _now),
        *snapshot_routes(firewall, render),
        # Supervision and evaluation (issue 18): mediation, service projects, the survey's sample and door answers.
        *mediation_pages.routes(firewall, current_user, render, _now, _device),
        *project_pages.routes(firewall, current_user, render, _now),
        *survey_pages.routes(couch, current_user, render, _now),
        Route("/healthz", healthz),
        Route("/readyz", healthz),
        Route("/metrics", metrics_endpoint(couch, health, settings.metrics_token, _now)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        Mount("/vendor", StaticFiles(directory=VENDOR_DIR, check_dir=False), name="vendor"),
        # The offline app: service worker, manifest, browser code, templates (server/web/pwa_routes.py).
        *pwa_routes.routes(couch, current_user, _template_context, firewall.keystore),
        *mounts,
    ]
    middleware = [
        Middleware(ObservabilityMiddleware),  # outermost: the request id on every log line, each answer counted
        Middleware(SecurityHeadersMiddleware),  # outermost: the CSRF check's refusals carry the headers too
        Middleware(CompressionMiddleware),  # sync and browser code compressed, pages not (server/web/compression.py)
        Middleware(AssetsMiddleware),  # cache headers by versioned name, precompressed files (server/web/assets.py)
        Middleware(SessionMiddleware, secret_key=settings.secret_key, session_cookie="session",
                   max_age=settings.session_max_age, same_site="lax", https_only=settings.cookie_secure),
        Middleware(CSRFMiddleware),
        Middleware(IndexPatience),  # an index still being built: "preparing", not a wait (server/web/preparing.py)
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        running = ([asyncio.create_task(_sla_clock(couch, firewall, health, settings.sweep_seconds)),
                    asyncio.create_task(_figures_clock(couch, firewall))] if clocks else [])
        try:
            yield
        finally:
            for clock in running:
                clock.cancel()

    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                     exception_handlers={LoginRequired: on_login_required, HTTPException: on_http_error,
                                         UserError: on_user_error, Exception: server_error,
                                         IndexPreparing: on_index_preparing(render),
                                         **{kind: on_database_unreachable for kind in UNREACHABLE}})


CODES_EVERY = 60  # sweeps: venues' code hashes run a week ahead, so once an hour is plenty
MINT_EVERY = 15  # sweeps: points for the last quarter hour's participation, and vouchers left half done


def _minute_parts(couch: Couch, firewall: Firewall) -> list[tuple[str, Callable[[], object]]]:
    """What runs once a minute, in order, each part on its own: one failing (a conflict, a bad document) does not
    stop the others. Every process may run them: each is idempotent, and two processes racing on one document get
    a CouchDB conflict, retried next minute."""
    def requests_due() -> None:
        street = open311.the_street(couch)
        if street:
            service_requests.sweep(couch, street, _now())

    def fix_checks() -> None:
        street = open311.the_street(couch)
        if street:
            service_requests.apply_fix_checks(couch, street, _now())

    return [
        ("service-request deadlines", requests_due),
        ("expired phone key grants", lambda: grants.expire(firewall, _now())),
        ("offline access reports filed", lambda: filing.file_reports(couch, firewall.signer)),
        ("rolls a stopped process left preparing", lambda: deliberation.freeze_pending(couch, _now())),
        ("votes past closing", lambda: deliberation.close_due(couch, firewall.keystore, firewall.signer, _now())),
        ("time-bank claims nobody answered", lambda: timebank.expire(couch, firewall.keystore, _now())),
        # Claims confirmed in person that the sync gateway's hook did not settle (a process stopped in between).
        ("time-bank claims confirmed in person",
         lambda: timebank.settle_in_person(couch, firewall.keystore, timebank.in_person_claims(couch), _now())),
        # BLE alerts: family notifications and escalation to the secretary (server/services/alerts.py)
        ("alerts", lambda: alerts.sweep(couch, _now())),
        # Participation points (server/services/rewards.py): idempotent, so one sweep in MINT_EVERY is enough.
        ("participation points", _one_in(MINT_EVERY, lambda: rewards.mint_all(couch, _now()))),
        # Vouchers a stopped process left unpaid, or whose debit was reversed (server/services/rewards.py).
        ("vouchers left half done", _one_in(MINT_EVERY, lambda: rewards.repair_vouchers(couch, _now()))),
        # Bookings nobody checked in to within their grace period: no-shows, released (server/services/pool.py)
        ("no-shows", lambda: pool.sweep_no_shows(couch, _now())),
        # "Is it really fixed?" answered on grid workers' phones offline (issue 18), applied as online.
        ("requests' fixed-or-not answers recorded offline", fix_checks),
        # Venues' daily check-in codes: their hashes renewed a week ahead (server/services/pool.py renew_codes).
        ("venue codes", _one_in(CODES_EVERY, lambda: pool.renew_codes(couch, firewall.keystore, _now()))),
        # Withdrawal votes counted by a process that stopped before settling their project (issue 18).
        ("service projects' withdrawal votes", lambda: projects.settle_counted_withdrawals(couch, _now())),
        # What a CouchDB cluster can leave where one node gives a 409 (issue 24; ARCHITECTURE.md section 6):
        # a filing log forked (two entries of one seq) refiled, the publications filed there following;
        ("filing-log forks refiled",
         lambda: filing.repair_forks(couch, firewall.signer, publications.follower(couch, firewall.signer))),
        # a vote's result or a month's figures published twice (the first filed stands, the other recorded on it);
        ("publications filed twice", lambda: publications.resolve_duplicates(couch, _now())),
        # a ledger lock taken twice (a transfer that took its account past the floor reversed, filed);
        ("ledger locks forked", lambda: timebank.resolve_lock_forks(couch, firewall.signer, _now())),
        # a voucher taken twice (the other's points refunded) or one debit paying two (the unpaid one withdrawn).
        ("vouchers taken twice", lambda: rewards.resolve_voucher_conflicts(couch, firewall.signer, _now())),
        # The dashboard's aggregates take in the requests and alerts changed since the last minute (issue 18).
        ("figures kept", lambda: keep_figures(couch)),
        # The utilisation board's months take in the bookings and check-ins changed since (issue 17): the first
        # count after a large load happens here, not in the secretary's first request for the board.
        ("pool months kept", lambda: pool_months.catch_up(couch)),
        # The month's survey samples list the households answered through phones' syncs too (issue 18).
        ("survey samples' answered households", lambda: mark_survey_answered(couch, _now(), LOCAL_TZ)),
    ]


def _one_in(sweeps: int, part: Callable[[], object]) -> Callable[[], object]:
    """A part run on the first sweep, then on one sweep in `sweeps`."""
    calls = [0]

    def run() -> object:
        calls[0] += 1
        return part() if calls[0] % sweeps == 1 else None
    return run


async def _sla_clock(couch: Couch, firewall: Firewall, health: Health, every: float) -> None:
    """Every `every` seconds (a minute: settings.sweep_seconds), the minute parts; a sweep that ran every part to
    its end is the health's last sweep."""
    parts = _minute_parts(couch, firewall)
    while True:
        failed = False
        for name, part in parts:
            try:
                await run_in_threadpool(part)
            except UNREACHABLE as gone:  # restarting (embedded_couch.supervise): one line, not a traceback each
                failed = True
                logger.warning("minute sweep stopped at %s: the database is unreachable (%s)", name,
                               type(gone).__name__)
                break
            except Exception:  # noqa: BLE001 - a failed part must not stop the clock; the next minute retries
                failed = True
                logger.exception("minute sweep: %s failed", name)
        if failed:
            health.sweep_failures += 1
        else:
            health.last_sweep_at = _now()
        await asyncio.sleep(every)


FIGURES_EVERY = 3600  # seconds


async def _figures_clock(couch: Couch, firewall: Firewall) -> None:
    """Once an hour, from an hour after start (`linli serve` freezes at start, once its indexes are built): the
    month just over frozen and published, the months before it looked at again for corrections
    (server/services/snapshots.py). Apart from the minute clock: reading a month's figures may wait for an index."""
    while True:
        await asyncio.sleep(FIGURES_EVERY)
        try:
            await run_in_threadpool(snapshots.freeze_due, couch, firewall.signer, _now())
        except Exception:  # noqa: BLE001 - as the minute clock: the next hour retries
            logger.exception("figures snapshot failed")
