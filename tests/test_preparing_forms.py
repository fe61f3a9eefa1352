"""A form sent while its index is still being built (right after a first start) must not swallow the person's
work: the visit and new-request forms are sent by htmx, which swapped the 202 "preparing" page into nothing, so a
grid worker's press of "保存" right after a start showed no answer at all. Now nothing is swapped, the form's
summary says to send it again in a moment, what was typed stays, and the second press is stored
(server/web/preparing.py). Parts htmx fetches (a search, a refresh) keep what they show instead of getting a whole
page inside them.
"""

from __future__ import annotations

from concurrent.futures import Future

import pytest
from playwright.sync_api import expect, sync_playwright
from starlette.routing import Mount
from starlette.testclient import TestClient

from server.domain.i18n import translator
from server.services import demo
from server.store import couch as store
from server.store.config import Settings
from server.store.couch import Couch, build_views
from server.store.embedded_couch import EmbeddedCouch
from server.web.app import create_app
from sync.app import create_sync_app

from .browser import DEMO_PASSWORD, launch, sign_in
from .conftest import serve_app
from .street import as_user, csrf_of

CATEGORY = next(code for code, _, _, _, _, questions in demo.SERVICE_CATALOGUE if not questions)
HOUSEHOLD = "household:c1-g01-0001"  # in wangge01's grid


def visits_of(couch: Couch) -> list[str]:
    rows = couch.main.all(startkey="visit:", endkey="visit:\ufff0", include_docs=True, as_list=True)
    return [r["doc"].get("notes", "") for r in rows if r["doc"].get("household") == HOUSEHOLD]


def as_after_a_start(monkeypatch: pytest.MonkeyPatch) -> Future[None]:
    """From here on every index is being built, as after a start, until the future returned is set."""
    building: Future[None] = Future()
    monkeypatch.setattr(store, "INDEX_WAIT_SECONDS", 0.2)
    monkeypatch.setattr(store, "view_built", lambda db, name: building)
    return building


def test_a_visit_saved_while_the_index_builds_keeps_what_was_typed_and_is_stored_when_sent_again(
    demo_loaded: Couch, settings: Settings, couch_server: EmbeddedCouch, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_views(demo_loaded)
    app = create_app(settings, demo_loaded, mounts=[Mount("/sync", create_sync_app(settings, couch_server.url))],
                     clocks=False)
    server, url = serve_app(app, "preparing-forms")
    notes = "门口台阶松动，已提醒家属"
    try:
        with sync_playwright() as p:
            browser = launch(p)
            page = sign_in(browser.new_context(locale="zh-CN", service_workers="block"), url, "wangge01")
            page.goto(url + f"households/{HOUSEHOLD}/visits/new")
            page.fill("textarea[name=notes]", notes)

            building = as_after_a_start(monkeypatch)
            page.click("form[action$='/visits/new'] button[type=submit]")
            expect(page.locator("#form-errors")).to_contain_text(translator("zh")("preparing_send_again"))
            expect(page.locator("#form-errors")).to_be_visible()
            expect(page.locator("textarea[name=notes]")).to_have_value(notes)  # nothing typed is lost
            assert page.url.endswith("/visits/new") and notes not in visits_of(demo_loaded)

            building.set_result(None)  # built meanwhile
            page.click("form[action$='/visits/new'] button[type=submit]")
            page.wait_for_url(url + f"households/{HOUSEHOLD}")
            assert visits_of(demo_loaded).count(notes) == 1
            browser.close()
    finally:
        server.should_exit = True


def test_a_part_fetched_while_the_index_builds_swaps_nothing_and_a_page_says_preparing(
    web: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_user(web, "wangge01", DEMO_PASSWORD)
    token = csrf_of(web, "/login")
    as_after_a_start(monkeypatch)
    part = web.get("/grids/grid:c1-g01", params={"q": "1"}, headers={"HX-Request": "true"})
    assert (part.status_code, part.headers.get("hx-reswap"), part.text) == (202, "none", "")
    sent = web.post("/requests/new", data={"csrf_token": token, "category": CATEGORY,
                                           "description": "x"}, headers={"HX-Request": "true"})
    assert (sent.status_code, sent.headers.get("hx-reswap")) == (202, "none")
    assert 'id="form-errors"' in sent.text and 'hx-swap-oob="true"' in sent.text
    page = web.get("/grids/grid:c1-g01")  # the page itself, not a part: the preparing page, reloading itself
    assert page.status_code == 202 and '<meta http-equiv="refresh" content="5">' in page.text
