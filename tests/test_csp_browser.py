"""Finding 13 of issue 13 in headless Chromium: every role's main pages, online and then offline (rendered by the
service worker from its replica), run under the pages' Content-Security-Policy without one violation, and carry
it; no page can be framed; and a stored "photo" that is a script (finding 5) cannot run when opened.

A violation is seen twice over: the page's `securitypolicyviolation` events (listened to from before any page
script runs) and Chromium's console errors about the policy.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import http.server
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import BrowserContext, Error, Page

from server.domain.access import Principal, works_offline
from server.domain.http_headers import PAGE_CSP
from server.security.accounts import user_id
from server.security.firewall import Firewall
from server.services import demo
from server.store.couch import Couch
from server.store.embedded_couch import EmbeddedCouch
from tests.browser import DEMO_RESIDENT, PHONE, DemoSite, demo_site, serve_handler, sign_in
from tests.street import SVG_WITH_SCRIPT, TINY_PNG

SYNCED = "document.querySelector('#sync-state')?.dataset.lastSynced"
LISTEN = """window.__violations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__violations.push(`${e.violatedDirective} blocked ${e.blockedURI} in ${e.sourceFile}:${e.lineNumber}`));
"""
ROLES = ("wangge01", "zhiyuan01a", "shuji1", "jumin1", "admin", f"bumen_{demo.DEPARTMENTS[0][0]}")
# Opened as a photo: the script would retitle the page.
RETITLES = b"\xff\xd8\xff\xe0<html><head><title>photo</title></head><script>document.title='ran'</script></html>"


def _prepare(couch: Couch, firewall: Firewall) -> None:
    """A visit with a photo in the worker's household (its page shows the thumbnail), and two "photos" that are
    scripts, stored as a process on the host could store them, past the photo rule."""
    resident = couch.main.get(DEMO_RESIDENT)
    now = dt.datetime.now(dt.UTC).isoformat()
    for key, name, data, kind in (("photo", "photo.png", TINY_PNG, "image/png"),
                                  ("svg", "photo.svg", SVG_WITH_SCRIPT, "image/svg+xml"),
                                  ("retitles", "photo.jpg", RETITLES, "image/jpeg")):
        couch.main.save({"_id": f"visit:csp-{key}", "type": "visit", "street": resident["street"],
                         "community": resident["community"], "grid": resident["grid"],
                         "household": resident["household"], "kind": "routine", "visited_at": now, "needs": [],
                         "created_by": "user:wangge01", "created_at": now,
                         "_attachments": {name: {"content_type": kind, "data": base64.b64encode(data).decode()}}})


@pytest.fixture(scope="module")
def site(couch_server: EmbeddedCouch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSite]:
    with demo_site(couch_server.url, tmp_path_factory.mktemp("csp"), _prepare) as prepared:
        yield prepared


def watched(site: DemoSite) -> tuple[BrowserContext, list[str]]:
    """A phone whose pages report every policy violation into the returned list (console) and window.__violations."""
    context = site.browser.new_context(viewport=PHONE)
    context.add_init_script(LISTEN)
    console: list[str] = []
    context.on("console", lambda m: console.append(m.text) if "Content Security Policy" in m.text else None)
    return context, console


def main_pages(page: Page, resident_household: str) -> list[str]:
    """The pages this user's home and menu lead to, and the household page with the photo where they see it."""
    links = page.eval_on_selector_all("nav a, main a[href^='/grids/'], main a[href^='/requests/new']",
                                      "els => els.map(a => a.getAttribute('href'))")
    return list(dict.fromkeys([urlsplit(page.url).path, *links, f"/households/{resident_household}"]))


def visit_all(page: Page, url: str, paths: list[str], offline: bool) -> list[str]:
    """Open each page; what went wrong: a violation, or an answer without the policy."""
    found = []
    for path in paths:
        answer = page.goto(url + path.lstrip("/"))
        page.wait_for_load_state("load")
        assert answer is not None, path
        if answer.headers.get("content-security-policy") != PAGE_CSP:
            found.append(f"{path}: policy {answer.headers.get('content-security-policy')!r}")
        if offline and answer.headers.get("x-linli-offline") != "1":
            found.append(f"{path}: not answered by the service worker offline")
        found += [f"{path}: {v}" for v in page.evaluate("window.__violations")]
    return found


@pytest.mark.parametrize("username", ROLES)
def test_each_roles_main_pages_run_under_the_policy_online_and_offline(site: DemoSite, username: str) -> None:
    household = site.couch.main.get(DEMO_RESIDENT)["household"]
    phone = works_offline(Principal.of(site.couch.accounts.get(user_id(username))))  # desks work online only
    context, console = watched(site)
    try:
        page = sign_in(context, site.url, username)
        if phone:
            page.wait_for_function(f"() => {SYNCED}", timeout=60_000)  # the service worker synced: offline works
        paths = main_pages(page, household)
        found = visit_all(page, site.url, paths, offline=False)
        if phone:
            context.set_offline(True)
            found += ["offline " + f for f in visit_all(page, site.url, paths, offline=True)]
    finally:
        context.close()
    assert len(paths) >= 2, paths
    assert not found and not console, found + console


def test_the_household_page_shows_its_photo_under_the_policy(site: DemoSite) -> None:
    """The thumbnail is an image from the app's own origin: allowed, and drawn (online)."""
    context, console = watched(site)
    try:
        page = sign_in(context, site.url, "wangge01")
        page.goto(site.url + "households/" + site.couch.main.get(DEMO_RESIDENT)["household"])
        page.locator("img[src='/visits/csp-photo/photo']").scroll_into_view_if_needed()  # it loads lazily
        width = page.wait_for_function("() => document.querySelector(\"img[src='/visits/csp-photo/photo']\")"
                                       ".naturalWidth").json_value()
    finally:
        context.close()
    assert width == 1 and not console


@contextlib.contextmanager
def framing_page(target: str) -> Iterator[str]:
    """Another origin (its own port) whose one page frames `target`; yields its URL."""
    class Framing(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(f'<iframe src="{target}"></iframe>'.encode())

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serve_handler(Framing) as url:
        yield url + "/"


def test_no_page_can_be_framed(site: DemoSite) -> None:
    """A page of another origin frames the login page: Chromium leaves the frame without it."""
    context, _ = watched(site)
    try:
        page = context.new_page()
        with framing_page(site.url + "login") as attacker:
            page.goto(attacker)
            page.wait_for_timeout(1500)
        framed = [f for f in page.frames if f is not page.main_frame]
        shown = [f.query_selector("#username") for f in framed]
    finally:
        context.close()
    assert len(framed) == 1 and shown == [None]  # the frame is there, the login page is not in it


def test_a_stored_script_as_a_photo_cannot_run_when_opened(site: DemoSite) -> None:
    """Finding 5's attack, opened by the secretary: the SVG is only a download; the page behind a JPEG's bytes is
    shown as an image, in a sandbox, and its script never runs."""
    context, _ = watched(site)
    try:
        page = sign_in(context, site.url, "shuji1")
        with page.expect_download() as download, pytest.raises(Error, match="Download is starting"):
            page.goto(site.url + "visits/csp-svg/photo")
        assert download.value.suggested_filename == "photo"
        opened = context.new_page()
        opened.goto(site.url + "visits/csp-retitles/photo")
        kind, title = opened.evaluate("[document.contentType, document.title]")
    finally:
        context.close()
    assert kind == "image/jpeg" and title != "ran"
