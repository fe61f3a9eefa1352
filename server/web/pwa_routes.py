"""What the offline app (pwa/) is made of, served: the service worker at the site's root (its scope is the
whole site), the web app manifest, the browser code under /pwa/, the very template files the server renders
(the service worker renders them offline with Nunjucks), and two small JSON documents:

- /pwa/shell.json: what the service worker keeps for offline use, with a version that changes whenever any
  of it changes (so a phone refreshes its copy at the next sync);
- /pwa/session.json: the signed-in user as the pages see them (name, roles, grids), the grids they may open,
  edit households of and act on alerts in (`access.offline_grids`: the policy's answers, not a copy of it),
  the CSRF token, the language, the time zone — what an offline page needs besides documents;
- /pwa/messages/<lang>.json: the language's messages (~80 KB), apart from session.json, which is sent uncompressed
  (it carries the CSRF token: server/web/compression.py), so that they go compressed, and once: session.json
  names them by a versioned name (`?v=` their digest), answered with a year's cache.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from server.domain import points as points_rules
from server.domain import pool as pool_rules
from server.domain import timebank as timebank_rules
from server.domain.access import Principal, offline_grids, works_offline
from server.domain.declaration import SATISFACTION, SPOKEN_LANGUAGES, TASK_ANSWERS, export_json
from server.domain.entitlement import REVEAL_PURPOSES
from server.domain.field_rules import ALERT_ACTIONS, COMMON_NEEDS, URGENT_ALERT_KINDS, photo_fit, photo_rule
from server.domain.http_headers import ATTACHMENT_HEADERS, PAGE_HEADERS, WORKER_CSP
from server.domain.i18n import MESSAGES
from server.security.grants import phones_carry_keys
from server.security.keystore import KeyStore
from server.services import pool
from server.services.rewards import REDEMPTIONS_SHOWN
from server.services.tasks import TASKS_SHOWN, may_see_tasks
from server.services.timebank import CLAIM_FIELDS
from server.store import queries
from server.store.config import LOCAL_TZ, PROJECT_ROOT
from server.store.couch import Couch, docs_of_type
from server.web import household_edit
from server.web.activation import with_accounts
from server.web.assets import IMMUTABLE, asset_urls
from server.web.display import OPTIONS as DISPLAY_OPTIONS
from server.web.field_pages import RECENT_VISITS, RESOLVED_SHOWN, may_see_alerts
from server.web.home import OWN_RECORD_PURPOSES, home_path, role_keys
from server.web.pool_pages import DONE as POOL_DONE
from server.web.pool_pages import community_of
from server.web.request_pages import FORM_FIELDS as REQUEST_FORM_FIELDS
from server.web.request_pages import REQUESTS_SHOWN, home_address
from server.web.resident_needs import CATEGORIES as NEED_CATEGORIES
from server.web.resident_needs import HOUR_ROWS as NEED_HOUR_ROWS
from server.web.reward_pages import DONE as REWARDS_DONE
from server.web.timebank_pages import DONE as TIMEBANK_DONE

PWA_DIR = PROJECT_ROOT / "pwa"
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"
# Pages for desktops (secretary, administrator) that the service worker never renders; they format numbers
# (round, percentages) in ways Jinja2 and Nunjucks do not share, so the parity test leaves them out. Elderly safety's
# pages are online only too: the status line is judged on the server, and a heart-rate value opened there is filed.
# Assigning a volunteer's task too: the form names the grid's volunteers, whose accounts no phone holds.
ONLINE_ONLY_TEMPLATES = frozenset({"dashboard.html", "survey_results.html", "catalogue.html", "workbench.html",
                                   "resident_safety.html", "devices.html", "accounts.html", "ledger.html",
                                   "task_new.html", "today.html", "need.html",
                                   "needs_open.html",
                                   # Deliberation (issue 15): the secretary's pages and the voter's own at a desk;
                                   # the grid worker's list and door ballot (matters.html, matter_door.html) work
                                   # offline.
                                   "matter.html", "matter_new.html", "matter_roll.html", "matter_result.html",
                                   "matter_cards.html",
                                   # Points (issue 16): the partner's /redeem and a person's /rewards work offline,
                                   # statements not.
                                   "statements.html",
                                   # The resource pool (issue 17): the secretary's utilisation board.
                                   "pool_board.html",
                                   # … and adding or editing a resource (a photo upload, at a desk).
                                   "pool_edit.html",
                                   # … and the keeper's printed week of codes: made from the venue's secret, which
                                   # never leaves the server (the keeper's phone holds the week's codes as data).
                                   "pool_codes.html",
                                   # Matching (issue 17): answered online, against the server's state (match_pages.py).
                                   "offers.html", "matches.html", "matching.html", "_match_card.html",
                                   # Hearings and meetings (issue 15 item 8): online (meeting_pages.py says why).
                                   "meetings.html", "meeting.html", "meeting_new.html", "meeting_minutes.html",
                                   "_meeting_record.html",
                                   # Figures (issue 18): the preparing page answers for an index the server builds.
                                   "preparing.html", "_preparing_notice.html", "figures_published.html",
                                   # Supervision and evaluation (issue 18): desk work (the door survey is offline).
                                   "mediations.html", "mediation.html", "mediation_new.html", "projects.html",
                                   "project.html", "project_new.html", "survey_sample.html",
                                   # Offering rewards and their stock (issue 16): the offerer's desk page.
                                   "reward_offer.html"})
# Browser code the service worker needs offline, besides the templates; vendor files come from npm.
SHELL_FILES = ("/static/linli.css", "/static/icon.svg", "/static/icon-192.png", "/vendor/htmx.min.js", "/pwa/app.js",
               "/pwa/render.js", "/pwa/geolocate.js", "/manifest.webmanifest",
               # A secret ballot at the door, sealed offline (matter_door.html).
               "/pwa/secret_ballot.js", "/pwa/crypto/envelope.js",
               # Photos sized on the phone before they are stored (issue 22 item 2): the code and its rule.
               "/pwa/photos.js", "/pwa/photo_fit.json",
               # The partner's counter reads a voucher's QR code offline too (redeem.html, issue 16).
               "/pwa/scan.js", "/vendor/jsQR.js")
# The headers the service worker gives its offline answers, as the server's middleware gives its own: pages, and
# a stored photo opened on its own (sw.js).
_SHELL_HEADERS = {"page": PAGE_HEADERS, "attachment": ATTACHMENT_HEADERS}
_HOUSEHOLD_FORM = {"texts": list(household_edit.TEXT_FIELDS), "editable": list(household_edit.EDITABLE)}
_SHOWN = {"households": queries.PAGE_SIZE, "recent_visits": RECENT_VISITS, "resolved_alerts": RESOLVED_SHOWN,
          "tasks": TASKS_SHOWN, "requests": REQUESTS_SHOWN, "openings": queries.OPENINGS_SHOWN,
          "redemptions": REDEMPTIONS_SHOWN}
_USER_FIELDS = ("_id", "username", "display_name", "roles", "grids", "communities", "resident", "department",
                "organisation")


def _revalidated(request: Request, content: dict[str, Any]) -> Response:
    """session.json, asked for at every sync: unchanged since the phone's copy, a 304 of a few hundred bytes rather
    than the whole (uncompressed on purpose: server/web/compression.py) on a weak signal. `private`: only
    the user's own browser keeps it, and `no-cache`: never used without asking."""
    body = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"Cache-Control": "private, no-cache", "ETag": etag, "Vary": "Cookie"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


@cache
def _messages(lang: str) -> tuple[bytes, str]:
    """A language's messages as sent, and their digest (once per process: they change with a deployment)."""
    body = json.dumps(MESSAGES[lang], ensure_ascii=False, separators=(",", ":")).encode()
    return body, hashlib.sha256(body).hexdigest()[:16]


def messages_url(lang: str) -> str:
    return f"/pwa/messages/{lang}.json?v={_messages(lang)[1]}"


def shared_templates() -> list[str]:
    return sorted(p.name for p in TEMPLATES_DIR.glob("*.html") if p.name not in ONLINE_ONLY_TEMPLATES)


def _shell_version() -> str:
    """Changes when a template, the stylesheet, any browser file, the domain declaration (/schema.json), the
    pages' headers or the photo rule (/pwa/photo_fit.json) do."""
    digest = hashlib.sha256(json.dumps([export_json(), _SHELL_HEADERS, photo_fit()], sort_keys=True).encode())
    files = [*(TEMPLATES_DIR / n for n in shared_templates()), *sorted(PWA_DIR.rglob("*.js")),
             *sorted(STATIC_DIR.iterdir())]
    for path in files:
        if path.is_file() and "tests" not in path.parts:
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def residents_pool(couch: Couch, user: dict[str, Any]) -> dict[str, Any]:
    """A resident's community (where they book: pool_pages.community_of) and what is held in it ahead."""
    community = community_of(couch, user)
    return {"community": community,
            "held": pool.held_ahead(couch, community, dt.datetime.now(dt.UTC)) if community else None}


def routes(couch: Couch, current_user: Callable[[Request], Awaitable[dict[str, Any]]],
           page_context: Callable[[Request], dict[str, Any]], keys: KeyStore) -> list[BaseRoute]:
    """`keys`: the installation key's public half for phones to pin (keys.installation_public), and the code key
    the venues' check-in codes a keeper's phone holds are made from."""
    version = _shell_version()  # computed once per process: files change with a deployment

    async def service_worker(request: Request) -> Response:
        # Never cached by HTTP: the browser compares it byte for byte to decide on an update. Its own policy:
        # Nunjucks compiles templates into functions (server/domain/http_headers.py WORKER_CSP).
        return FileResponse(PWA_DIR / "sw.js", media_type="text/javascript",
                            headers={"Cache-Control": "no-cache", "Content-Security-Policy": WORKER_CSP})

    async def manifest(request: Request) -> Response:
        return FileResponse(PWA_DIR / "manifest.webmanifest", media_type="application/manifest+json")

    async def favicon(request: Request) -> Response:
        # Browsers ask for /favicon.ico whatever the page links (and for pages that link nothing, like JSON);
        # every browser takes a PNG there.
        return FileResponse(STATIC_DIR / "icon-192.png", media_type="image/png",
                            headers={"Cache-Control": "public, max-age=86400"})

    async def shell(request: Request) -> Response:
        return JSONResponse({"version": version, "files": list(SHELL_FILES), "templates": shared_templates(),
                             "headers": _SHELL_HEADERS})

    async def session(request: Request) -> Response:
        user = await current_user(request)
        context = page_context(request)
        lang = context["lang"]
        p = Principal.of(user)
        grids = offline_grids(p, await run_in_threadpool(docs_of_type, couch.main, "grid"))
        return _revalidated(request, {
            "user": {k: user[k] for k in _USER_FIELDS if k in user},
            "browsable_grids": grids["browse"], "household_edit_grids": grids["edit_households"],
            "alert_act_grids": grids["act_on_alerts"], "task_assign_grids": grids["assign_tasks"],
            "csrf_token": context["csrf_token"], "lang": lang, "display": context["display"],
            "display_options": list(DISPLAY_OPTIONS),
            "messages_url": messages_url(lang), "time_zone": LOCAL_TZ.key,
            # The pages' vocabularies, declared once on the server (offline/pages.js builds the same forms).
            "reveal_purposes": list(REVEAL_PURPOSES), "common_needs": list(COMMON_NEEDS),
            "alert_actions": ALERT_ACTIONS, "urgent_alert_kinds": list(URGENT_ALERT_KINDS),
            "photo_rule": photo_rule(),
            "request_form_fields": list(REQUEST_FORM_FIELDS), "household_form": _HOUSEHOLD_FORM,
            "satisfaction": list(SATISFACTION),
            "need_categories": list(NEED_CATEGORIES), "own_record_purposes": list(OWN_RECORD_PURPOSES),
            # Decisions the server makes for this user (server/web/home.py, field_pages, grants), and the names of
            # colleagues the pages show (accounts are not replicated).
            "home": home_path(user), "home_roles": role_keys(user), "may_see_alerts": may_see_alerts(p),
            "works_offline": works_offline(p),  # a desk's browser keeps no replica (pwa/sw.js)
            "may_see_tasks": may_see_tasks(p), "task_answers": TASK_ANSWERS,
            "phone_keys": phones_carry_keys(p), "names": await run_in_threadpool(queries.colleague_names, couch, user),
            # Pinned by the phone at its first sync: what vouches for the write keys it seals to (offline/keys.js).
            "installation_key": await run_in_threadpool(keys.installation_public),
            "residents_with_accounts": await run_in_threadpool(with_accounts, couch, p),
            "home_address": await run_in_threadpool(home_address, couch, p.resident) if p.resident else "",
            # The resource pool (issue 17): how early before a booking a check-in counts (server/domain/pool.py).
            "pool_checkin_early_minutes": int(pool_rules.CHECKIN_EARLY.total_seconds() // 60),
            # The time bank's rules the offline /timebank shows and checks (server/domain/timebank.py).
            "timebank": {**timebank_rules.offline_rules(), "done": list(TIMEBANK_DONE), "claim_fields": CLAIM_FIELDS},
            # How points are earned, which the offline /rewards shows (server/domain/points.py).
            "points_rules": list(points_rules.POINTS_RULES.items()), "rewards_done": list(REWARDS_DONE),
            # How many of each list a page shows (the newest first), so that the offline page cuts where this one does.
            "shown": _SHOWN,
            # A need's language and convenient hours (issue 17, server/web/resident_needs.py): the form's choices.
            "spoken_languages": list(SPOKEN_LANGUAGES), "need_hour_rows": NEED_HOUR_ROWS,
            # Browser code and stylesheet by versioned name: offline pages link what online pages link (assets.py).
            "assets": asset_urls(),
            # The resource pool browsed offline (issue 17 item 5, pages.js poolPage, poolResource): the states that
            # hold a slot, how far either way a calendar goes, the pages' notices; and the coming week's check-in
            # codes of the venues this person keeps (their calendar shows the day's, online and offline).
            # A resident's phone holds only their own bookings: their community and the hours others hold in it
            # come here (pool.held_ahead: states, never whose), so that their calendar is right offline too.
            "pool": {"active": list(pool_rules.ACTIVE), "days_shown": pool_rules.DAYS_SHOWN, "done": list(POOL_DONE),
                     "refusal_fields": pool.REFUSAL_FIELDS,
                     "codes": await run_in_threadpool(pool.keepers_codes, couch, keys, user,
                                                       dt.datetime.now(dt.UTC))
                     if works_offline(p) else {},
                     **(await run_in_threadpool(residents_pool, couch, user) if p.resident else {})},
        })

    async def messages(request: Request) -> Response:
        lang = request.path_params["lang"]
        if lang not in MESSAGES:
            return JSONResponse({"error": "not_found", "reason": f"no messages in {lang!r}: {', '.join(MESSAGES)}"},
                                status_code=404)
        body, digest = _messages(lang)
        versioned = request.query_params.get("v") == digest
        return Response(body, media_type="application/json",
                        headers={"Cache-Control": IMMUTABLE if versioned else "no-cache"})

    async def photo_fit_json(request: Request) -> Response:
        # The rule, and the refusal in every language: a page picks its own (<html lang>), online or offline.
        return JSONResponse({**photo_fit(), "unreadable": {lang: MESSAGES[lang]["err_photo_unreadable"]
                                                           for lang in MESSAGES}})

    return [
        Route("/sw.js", service_worker),
        Route("/pwa/photo_fit.json", photo_fit_json),
        Route("/manifest.webmanifest", manifest),
        Route("/favicon.ico", favicon),
        Route("/pwa/shell.json", shell),
        Route("/pwa/session.json", session),
        Route("/pwa/messages/{lang}.json", messages),
        Mount("/pwa/templates", StaticFiles(directory=TEMPLATES_DIR), name="pwa-templates"),
        Mount("/pwa", StaticFiles(directory=PWA_DIR), name="pwa"),
    ]
