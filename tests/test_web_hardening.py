"""Findings 5 (the attachment side) and 13 of issue 13: an SVG "photo" with a script, written through sync, ran in
a secretary's session when opened from the app's origin, and no page carried a CSP, framing or nosniff header.

Now one photo rule (server/domain/field_rules.py: JPEG, PNG, WebP by their bytes, no markup where browsers
sniff, the declared type must match, a count and size per document type) is applied by every path that stores
one: the pages' forms, the sync gateway's `_bulk_docs` (it offers no attachment PUT), and Open311, which takes
media only as a URL. Stored attachments are served by their bytes, inert (server/domain/http_headers.py), and
one middleware gives every answer of the app, the sync gateway's included, the pages' headers. The offline
app's side: pwa/tests/field_rules.test.mjs (the rule), tests/test_page_parity.py (its forms) and
tests/test_csp_browser.py (its pages' headers, in Chromium).

The app is served as `linli serve` runs it (uvicorn, the sync gateway mounted) over the session's pouchdb-server.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.testclient import TestClient

from server.domain.field_rules import PHOTO_LIMITS
from server.domain.http_headers import ATTACHMENT_HEADERS, PAGE_CSP, PAGE_HEADERS, WORKER_CSP
from server.security.firewall import Firewall
from server.services import demo
from server.store.config import Settings
from server.store.couch import Couch, bulk_save, connect, get_or_none
from server.store.embedded_couch import EmbeddedCouch
from server.web import open311
from server.web.app import create_app
from sync.app import create_sync_app

from . import street
from .conftest import make_settings, serve_app
from .street import C1, G1, HTML_AS_JPEG, PASSWORD, STREET, SVG_WITH_SCRIPT, TINY_PNG

HOUSEHOLD, RESIDENT = "household:c1-g01-0001", "resident:c1-g01-0001-1"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
# The attacks of finding 5, each as (file name, bytes, the type it is sent as).
ATTACKS = [("x.svg", SVG_WITH_SCRIPT, "image/svg+xml"), ("x.png", SVG_WITH_SCRIPT, "image/png"),
           ("x.jpg", HTML_AS_JPEG, "image/jpeg")]


@dataclass
class Site:
    couch: Couch
    url: str  # ends in "/"
    routes: list[BaseRoute]


@pytest.fixture(scope="module")
def site(couch_server: EmbeddedCouch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    settings = make_settings(tmp_path_factory.mktemp("hardening"), f"hardening_{secrets.token_hex(3)}_")
    couch = connect(settings, couch_server.url)
    firewall = Firewall.open(settings, couch)
    docs = [*street.community_docs(), *demo.catalogue_docs({"street": STREET})]  # the request form's services
    assert not [r for r in bulk_save(couch.main, firewall.seal_for_storage(docs)) if r.error]
    assert not [r for r in bulk_save(couch.accounts, street.users()) if r.error]
    # No minute clock: its first sweep writes documents (3 on this street) while the first test counts them.
    app = create_app(settings, couch, mounts=[Mount("/sync", create_sync_app(settings, couch_server.url))],
                     clocks=False)
    server, url = serve_app(app, "hardening-server")
    yield Site(couch, url, app.routes)
    server.should_exit = True


def signed_in(site: Site, username: str) -> tuple[httpx2.Client, str]:
    """A client with `username` signed in through the login page, and the session's CSRF token."""
    client = httpx2.Client(base_url=site.url, timeout=30)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    answer = client.post("/login", data={"username": username, "password": PASSWORD, "next": "/",
                                         "csrf_token": token})
    assert answer.status_code == 303, answer.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/requests").text).group(1)
    return client, token


def visit(n: int, **extra: Any) -> dict[str, Any]:
    return {"_id": f"visit:hardening-{n}-{secrets.token_hex(3)}", "type": "visit", "street": STREET, "community": C1,
            "grid": G1, "household": HOUSEHOLD, "kind": "routine", "visited_at": NOW.isoformat(), "needs": [],
            "created_by": "user:worker1", "created_at": NOW.isoformat(), **extra}


def inline(*photos: tuple[str, bytes, str]) -> dict[str, Any]:
    return {name: {"content_type": kind, "data": base64.b64encode(data).decode()} for name, data, kind in photos}


# ---------------------------------------------------------------- every answer carries the pages' headers

# Path parameters by name, so that the walk reaches real pages, not only their 404s.
PARAMS = {"db": "main", "household_id": HOUSEHOLD, "resident_id": RESIDENT, "grid_id": G1}


def walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) for every route of the app, its mounts' included: one file of each static folder."""
    for route in routes:
        if isinstance(route, Mount) and isinstance(route.app, StaticFiles):
            folder = Path(route.app.directory)
            if folder.is_dir():
                yield "GET", prefix + route.path + "/" + min(p.name for p in folder.iterdir() if p.is_file())
        elif isinstance(route, Mount):
            yield from walk(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: PARAMS.get(m.group(1), "x"), prefix + route.path)
            for method in sorted(route.methods or {"GET"}):
                if method != "HEAD":
                    yield method, path


def test_every_route_answers_with_the_pages_headers(site: Site) -> None:
    """Walked as a signed-in secretary, with her CSRF token (so that POSTs reach their handlers), logging out
    last; and once more signed out. Every answer — page, error, JSON, static file, the sync gateway's — carries
    the headers; the service worker's script its own policy."""
    asked = sorted(set(walk(site.routes)), key=lambda ask: ask[1] == "/logout")
    client, token = signed_in(site, "secretary1")
    anonymous = httpx2.Client(base_url=site.url, timeout=30)
    statuses, missing = set(), []
    with contextlib.closing(client), anonymous:
        for method, path in asked:
            for who in (client, anonymous):
                answer = who.request(method, path, headers={"X-CSRF-Token": token})
                statuses.add(answer.status_code)
                expected = {**PAGE_HEADERS, "Content-Security-Policy": WORKER_CSP if path == "/sw.js" else PAGE_CSP}
                wrong = {k: answer.headers.get(k) for k, v in expected.items() if answer.headers.get(k) != v}
                if wrong:
                    missing.append(f"{method} {path} ({answer.status_code}): {wrong}")
    assert not missing, "\n".join(missing)
    assert len(asked) > 80 and {200, 303, 403, 404} <= statuses, (len(asked), statuses)  # the walk reached much
    assert max(statuses) < 500, statuses
    assert any(path.startswith("/sync/main/_") for _, path in asked)


def test_a_server_error_carries_the_headers_too(loaded: Couch, settings: Settings) -> None:
    """Starlette answers an unhandled exception outside every middleware; its answer has the headers as well."""
    def fails(request: Any) -> None:
        raise RuntimeError("a bug")

    app = create_app(settings, loaded, mounts=[Route("/fails", fails)])
    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/fails")
    assert answer.status_code == 500
    assert {k: answer.headers.get(k) for k in PAGE_HEADERS} == PAGE_HEADERS


def test_the_pages_policy_is_strict() -> None:
    """What the policy says, directive by directive (finding 13)."""
    policy = dict(part.split(" ", 1) for part in PAGE_CSP.split("; "))
    assert policy["default-src"] == policy["script-src"] == policy["style-src"] == "'self'"
    assert "unsafe" not in PAGE_CSP
    assert policy["object-src"] == policy["base-uri"] == policy["frame-ancestors"] == "'none'"
    assert policy["form-action"] == "'self'"
    assert PAGE_HEADERS["X-Frame-Options"] == "DENY" and PAGE_HEADERS["X-Content-Type-Options"] == "nosniff"
    assert "'unsafe-inline'" not in WORKER_CSP  # the worker may compile templates, never run inline code


def test_the_templates_hold_no_inline_script_or_style() -> None:
    """What the policy would block on a page: inline <script>/<style>, event handlers, style attributes,
    javascript: URLs, htmx code. (tests/test_csp_browser.py sees the pages themselves in Chromium.)"""
    inline_code = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style|\son[a-z]+=|\sstyle=|javascript:|hx-on"
                             r"|hx-vals=['\"]js:", re.IGNORECASE)
    templates = Path(__file__).resolve().parent.parent / "server" / "web" / "templates"
    found = [f"{p.name}: {m.group(0)}" for p in sorted(templates.rglob("*.html"))
             for m in inline_code.finditer(p.read_text(encoding="utf-8"))]
    assert not found, found


# ---------------------------------------------------------------- finding 5: refused on every path

@pytest.mark.parametrize(("name", "data", "kind"), ATTACKS, ids=lambda v: v if isinstance(v, str) else "")
def test_a_script_as_a_photo_is_refused_by_the_pages(site: Site, name: str, data: bytes, kind: str) -> None:
    client, token = signed_in(site, "worker1")
    with contextlib.closing(client):
        before = site.couch.main.config()["doc_count"]
        answers = [
            client.post(f"/households/{HOUSEHOLD}/visits/new", data={"kind": "routine", "csrf_token": token},
                        files={"photo": (name, data, kind)}),
            client.post("/requests/new", data={"category": "street_lamp", "description": "路灯不亮",
                                               "csrf_token": token}, files={"photo": (name, data, kind)}),
        ]
    assert [a.status_code for a in answers] == [400, 400], [a.text[:300] for a in answers]
    shown = [re.findall(r'id="error-(\w+)"[^>]*>([^<]+)', a.text) for a in answers]  # each error, next to its field
    assert shown == [[("photo", "照片必须是 JPEG、PNG 或 WebP 图片。")]] * 2, shown
    assert site.couch.main.config()["doc_count"] == before


def test_a_script_as_a_photo_is_refused_by_the_sync_gateway(site: Site) -> None:
    client, token = signed_in(site, "worker1")
    elsewhere = visit(15, _attachments=inline(("photo.png", TINY_PNG, "image/png")))  # stored by the server
    site.couch.main.save(elsewhere)
    digest = site.couch.main.get(elsewhere["_id"])["_attachments"]["photo.png"]["digest"]
    refused = {
        **{f"attack {name} as {kind}": visit(n, _attachments=inline((name, data, kind)))
           for n, (name, data, kind) in enumerate(ATTACKS)},
        "a photo on a household": {**site.couch.main.get(HOUSEHOLD), "_attachments": inline(("p.png", TINY_PNG,
                                                                                           "image/png"))},
        "two photos on a visit": visit(10, _attachments=inline(("a.png", TINY_PNG, "image/png"),
                                                               ("b.png", TINY_PNG, "image/png"))),
        "a visit's photo too large": visit(11, _attachments=inline(
            ("big.png", TINY_PNG + bytes(PHOTO_LIMITS["visit"].max_bytes), "image/png"))),
        "a stub named as an svg": visit(12, _attachments={"x.svg": {"content_type": "image/svg+xml", "stub": True}}),
        "a stub of another document's photo": visit(14, _attachments={"photo.png": {
            "content_type": "image/png", "stub": True, "digest": digest, "revpos": 1}}),
    }
    accepted = visit(13, _attachments=inline(("photo.png", TINY_PNG, "image/png")))
    with contextlib.closing(client):
        answer = client.post("/sync/main/_bulk_docs", json={"docs": [*refused.values(), accepted]},
                             headers={"X-CSRF-Token": token})
        put = client.put(f"/sync/main/{accepted['_id']}/x.svg", content=SVG_WITH_SCRIPT,
                         headers={"X-CSRF-Token": token, "Content-Type": "image/svg+xml"})
    assert answer.status_code == 201, answer.text
    results = {r["id"]: r for r in answer.json()}
    wrong = [what for what, doc in refused.items() if results[doc["_id"]].get("error") != "forbidden"]
    assert not wrong, (wrong, results)
    assert "error" not in results[accepted["_id"]], results[accepted["_id"]]  # the rule lets a photo through
    assert put.status_code in (404, 405), put.text  # no attachment PUT: attachments come with their document
    assert list(site.couch.main.get(accepted["_id"])["_attachments"]) == ["photo.png"]
    assert "_attachments" not in site.couch.main.get(HOUSEHOLD)
    assert not [doc for doc in refused.values() if doc["type"] == "visit" and get_or_none(site.couch.main, doc["_id"])]


def test_open311_takes_no_uploaded_media(demo_loaded: Couch, settings: Settings) -> None:
    """GeoReport v2 takes media as a URL; an uploaded file beside the fields is not stored."""
    key = open311.issue_key(demo_loaded, "hotline", demo.STREET_ID, NOW)
    with TestClient(create_app(settings, demo_loaded)) as api:
        fields = {"api_key": key, "service_code": "street_lamp", "lat": "30.51", "long": "114.344",
                  "description": "路灯不亮"}
        created = api.post("/open311/v2/requests.json", data=fields,
                           files={"media": ("x.svg", SVG_WITH_SCRIPT, "image/svg+xml")})
        scripted_url = api.post("/open311/v2/requests.json",
                                data={**fields, "media_url": "javascript:fetch('/pwa/session.json')"})
    assert created.status_code == 200, created.text
    stored = demo_loaded.main.get("service_request:" + created.json()[0]["service_request_id"])
    assert "_attachments" not in stored and "media" not in str(stored)
    assert scripted_url.status_code == 400 and "media_url" in scripted_url.text


# ---------------------------------------------------------------- finding 5: a stored one cannot run

def test_a_stored_attachment_is_served_by_its_bytes_and_cannot_run(site: Site) -> None:
    """An SVG stored before the rule (or past it, by a process on the host) is served as a download, inert; a
    photo as the type its bytes show, whatever it was stored as; by the visit and request pages and by the sync
    gateway alike."""
    client, token = signed_in(site, "worker1")
    with contextlib.closing(client):
        reported = client.post("/requests/new", data={"category": "street_lamp", "description": "路灯不亮",
                                                      "csrf_token": token},
                               files={"photo": ("lamp.png", TINY_PNG, "image/png")})
        assert reported.status_code == 303, reported.text
        request = site.couch.main.get("service_request:" + reported.headers["location"].rsplit("/", 1)[1])
        stored = [visit(20, _attachments=inline(("photo.svg", SVG_WITH_SCRIPT, "image/svg+xml"))),
                  visit(21, _attachments=inline(("photo.jpg", TINY_PNG, "image/jpeg"))),
                  {**{k: v for k, v in request.items() if k != "_rev"}, "_id": request["_id"] + "-svg",
                   "_attachments": inline(("photo-1.svg", SVG_WITH_SCRIPT, "image/svg+xml"))}]
        assert not [r for r in bulk_save(site.couch.main, stored) if r.error]
        answers = {(script, path): client.get(path) for script, paths in (
            (True, [f"/visits/{stored[0]['_id'].split(':')[1]}/photo", f"/sync/main/{stored[0]['_id']}/photo.svg",
                    f"/requests/{stored[2]['_id'].split(':')[1]}/photos/photo-1.svg"]),
            (False, [f"/visits/{stored[1]['_id'].split(':')[1]}/photo", f"/sync/main/{stored[1]['_id']}/photo.jpg",
                     f"/requests/{request['_id'].split(':')[1]}/photos/photo-1.png"]))
            for path in paths}
    for (script, where), answer in answers.items():
        assert answer.status_code == 200, (where, answer.text)
        assert {k: answer.headers.get(k) for k in ATTACHMENT_HEADERS} == ATTACHMENT_HEADERS, where
        assert answer.headers["X-Frame-Options"] == "DENY", where
        if script:
            assert answer.headers["content-type"] == "application/octet-stream", where
            assert answer.headers["content-disposition"] == "attachment", where
        else:
            assert answer.headers["content-type"] == "image/png" and answer.content == TINY_PNG, where
            assert "content-disposition" not in answer.headers, where
