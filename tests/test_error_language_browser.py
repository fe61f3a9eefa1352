"""Errors in Chromium: a photo form keeps its chosen file through an error (htmx posts it and replaces only the
error slots, templates/_errors.html), online and offline; the offline forms' errors (pwa/offline/pages.js)
speak the page's language as the online ones do (tests/test_error_language.py)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext, Page

from server.domain.i18n import translator
from server.security.firewall import Firewall
from server.store.couch import Couch
from server.store.embedded_couch import EmbeddedCouch
from tests.browser import DEMO_RESIDENT, PHONE, DemoSite, demo_site, sign_in
from tests.english import english_sentences, raw_keys, shown_errors
from tests.street import TINY_PNG

ZH = translator("zh")
SYNCED = "document.querySelector('#sync-state')?.dataset.lastSynced"
PHOTO = {"name": "lamp.png", "mimeType": "image/png", "buffer": TINY_PNG}


def _prepare(couch: Couch, firewall: Firewall) -> None:
    resident = couch.main.get(DEMO_RESIDENT)
    couch.main.save({"_id": "alert:lang-sos", "type": "alert",
                     **{k: resident[k] for k in ("street", "community", "grid", "household")},
                     "resident": DEMO_RESIDENT, "kind": "sos", "status": "raised",
                     "raised_at": dt.datetime.now(dt.UTC).isoformat(), "visibility": "grid_staff"})


@pytest.fixture(scope="module")
def site(couch_server: EmbeddedCouch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSite]:
    with demo_site(couch_server.url, tmp_path_factory.mktemp("errors"), _prepare) as prepared:
        yield prepared


def phone_of(site: DemoSite, username: str, lang: str = "zh") -> tuple[BrowserContext, Page]:
    """A phone signed in and synced, in `lang` (the offline pages take the language of the session it stored)."""
    context = site.browser.new_context(viewport=PHONE)
    context.add_cookies([{"name": "lang", "value": lang, "url": site.url}])
    page = sign_in(context, site.url, username)
    page.wait_for_function(f"() => {SYNCED}", timeout=60_000)
    return context, page


def chosen_files(page: Page) -> int:
    return page.evaluate("document.querySelector('input[name=photo]').files.length")


def test_a_chosen_photo_survives_an_error_online(site: DemoSite) -> None:
    context, page = phone_of(site, "jumin1")
    page.goto(site.url + "requests/new")
    page.select_option("select[name=category]", "street_lamp")
    page.fill("textarea[name=description]", "路灯不亮，照片为证")
    page.set_input_files("input[name=photo]", files=[PHOTO])
    page.fill("input[name=address]", "")  # the resident's own address is offered: taken away, no location left
    page.click("main form.stack button[type=submit]")  # no location: refused
    page.wait_for_selector("#error-lat:not([hidden])")
    assert page.inner_text("#error-lat") == ZH("err_location_required")
    assert page.get_attribute("#form-errors", "hidden") is None
    assert chosen_files(page) == 1 and "/requests/new" in page.url  # the same page: the file is still chosen
    assert page.input_value("textarea[name=description]") == "路灯不亮，照片为证"
    page.fill("input[name=address]", "幸福路3号")
    page.click("main form.stack button[type=submit]")
    page.wait_for_url(re.compile(r"/requests/[0-9a-f]{32}$"))
    stored = site.couch.main.get("service_request:" + page.url.rsplit("/", 1)[1])
    assert list(stored["_attachments"]) == ["photo-1.png"] and stored["description"] == "路灯不亮，照片为证"
    context.close()


def test_a_question_loaded_by_htmx_shows_its_error_in_place(site: DemoSite) -> None:
    """The category's questions arrive by htmx when it is chosen; an unanswered one is then marked in place."""
    context, page = phone_of(site, "jumin1")
    page.goto(site.url + "requests/new")
    page.select_option("select[name=category]", "noise")
    page.wait_for_selector("select[name='attribute.time_of_day']")
    page.fill("textarea[name=description]", "楼上很吵")
    page.fill("input[name=address]", "幸福路3号")
    page.set_input_files("input[name=photo]", files=[PHOTO])
    # The browser itself stops an unanswered required question; the server's own check is what a browser that
    # skips form validation meets, marked in place.
    page.evaluate("() => { document.querySelector('main form.stack').noValidate = true; }")
    page.click("main form.stack button[type=submit]")
    page.wait_for_selector("#error-attribute-time_of_day:not([hidden])")
    assert page.inner_text("#error-attribute-time_of_day") == ZH("err_required") and chosen_files(page) == 1
    page.select_option("select[name='attribute.time_of_day']", "night")
    page.click("main form.stack button[type=submit]")
    page.wait_for_url(re.compile(r"/requests/[0-9a-f]{32}$"))
    context.close()


def test_a_chosen_photo_survives_an_error_offline(site: DemoSite) -> None:
    context, page = phone_of(site, "wangge01")
    context.set_offline(True)
    page.goto(site.url + "requests/new")
    assert page.evaluate("performance.getEntriesByType('navigation')[0].name").endswith("/requests/new")
    page.select_option("select[name=category]", "street_lamp")
    page.fill("textarea[name=description]", "离线：路灯不亮")
    page.set_input_files("input[name=photo]", files=[PHOTO])
    page.check("input[name=on_behalf]")
    page.click("main form.stack button[type=submit]")  # on the resident's behalf, without their consent
    page.wait_for_selector("#error-consent:not([hidden])")
    assert page.inner_text("#error-consent") == ZH("err_consent_required")
    assert chosen_files(page) == 1 and page.is_checked("input[name=on_behalf]")
    page.check("input[name=consent]")
    page.click("main form.stack button[type=submit]")
    page.wait_for_url(re.compile(r"/requests/[0-9a-f]{32}$"))
    page.wait_for_function("() => document.querySelector('img.photo')?.naturalWidth > 0")  # kept, from the replica
    context.close()


# Offline posts as the forms send them: (path, fields, a photo's type or None, htmx), each refused by pages.js
# (an htmx row or section answers 200 with the error inside).
HOUSEHOLD = "household:c1-g01-0002"
OFFLINE_PATHS = [
    (f"/households/{HOUSEHOLD}/visits/new", {"kind": "party", "notes": "x"}, None, False),
    (f"/households/{HOUSEHOLD}/visits/new", {"kind": "routine", "resident": "resident:nobody"}, None, False),
    (f"/households/{HOUSEHOLD}/visits/new", {"kind": "routine"}, "image/gif", True),
    (f"/households/{HOUSEHOLD}/edit", {"_rev": "1-x", "address": "", "room": "9" * 30, "housing": "castle"},
     None, False),
    ("/requests/new", {"category": "teleport", "description": "x"}, None, False),
    ("/requests/new", {"category": "street_lamp", "description": ""}, None, True),
    ("/requests/new", {"category": "street_lamp", "description": "x", "on_behalf": "on"}, None, False),
    ("/alerts/lang-sos/act", {"action": "dance"}, None, False),
    ("/alerts/lang-sos/act", {"action": "dance"}, None, True),
    (f"/residents/{DEMO_RESIDENT}/reveal", {"category": "nothing"}, None, True),
]

POST = """async ([path, fields, photoType, htmx]) => {
  const form = new FormData();
  const token = document.querySelector("input[name=csrf_token]").value;
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  form.append("csrf_token", token);
  if (photoType) form.append("photo", new File([new Uint8Array(64)], "x", { type: photoType }));
  const headers = { "X-CSRF-Token": token, ...(htmx ? { "HX-Request": "true" } : {}) };
  const answer = await fetch(path, { method: "POST", body: form, headers });
  return [answer.status, answer.headers.get("x-linli-offline"), await answer.text()];
}"""


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_offline_form_errors_speak_the_pages_language(site: DemoSite, lang: str) -> None:
    context, page = phone_of(site, "wangge01", lang)
    context.set_offline(True)
    page.goto(site.url + "requests")
    problems = []
    for path, fields, photo, htmx in OFFLINE_PATHS:
        status, offline, html = page.evaluate(POST, [path, fields, photo, htmx])
        where = f"{path} {fields} ({lang})"
        assert offline == "1" and status < 500, f"{where}: {status}, offline={offline}"
        if not shown_errors(html):
            problems.append(f"{where}: no error shown")
        problems += [f"{where}: English {s!r}" for s in english_sentences(html, ("party", "castle"))] * (lang == "zh")
        problems += [f"{where}: raw key {k}" for k in raw_keys(html)]
    assert problems == []
    context.close()


def test_the_sync_bar_says_why_the_server_refused_a_change(site: DemoSite) -> None:
    """A change the server refuses (here a visit of a kind that does not exist, put straight into the phone's
    replica as a buggy or old app version could) is listed in the sync bar with the reason, in Chinese."""
    context, page = phone_of(site, "wangge01")
    resident = site.couch.main.get(DEMO_RESIDENT)
    visit = {"_id": "visit:refused-party", "type": "visit", "kind": "party", "visited_at": "2026-11-30T10:00:00Z",
             **{k: resident[k] for k in ("street", "community", "grid", "household")},
             "created_by": "user:wangge01", "created_at": "2026-11-30T10:00:00Z"}
    page.evaluate("""async (doc) => {
      await import("/vendor/pouchdb.min.js");
      await import("/vendor/pouchdb.indexeddb.min.js");
      await new PouchDB("linli-user:wangge01", { adapter: "indexeddb" }).put(doc);
    }""", visit)
    page.click("#sync-state button")
    page.wait_for_selector("[data-sync-refused]:not([hidden]) li", timeout=60_000)
    listed = page.inner_text("[data-sync-refused]")
    assert "visit:refused-party" in listed and "“party”不是可选项" in listed
    assert english_sentences(page.content()) == []
    context.close()
