"""Errors in Chromium: a photo form keeps its chosen file through an error (htmx posts it and replaces only the
error slots, templates/_errors.html), online and offline; every form a person fills (report with category
questions and photos, visit, household edit, survey, need, activation) keeps what was typed, chosen and ticked
through an error, online and, where it works offline, offline; the offline forms' errors (pwa/offline/pages.js)
speak the page's language as the online ones do (tests/test_error_language.py)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext, Page

from server.domain.i18n import translator
from server.security import grants
from server.security.firewall import Firewall
from server.store.couch import Couch
from server.store.embedded_couch import EmbeddedCouch
from tests.browser import DEMO_RESIDENT, PHONE, DemoSite, demo_site, new_phones_forgotten, sign_in
from tests.english import english_sentences, raw_keys, shown_errors
from tests.street import TINY_PNG
from tests.test_grants import phone

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


@pytest.fixture(autouse=True)
def phones_forgotten(site: DemoSite) -> Iterator[None]:
    with new_phones_forgotten(site):
        yield


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
    # Sized on the phone (pwa/photos.js): encoded again as JPEG, whatever was chosen.
    assert list(stored["_attachments"]) == ["photo-1.jpeg"] and stored["description"] == "路灯不亮，照片为证"
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


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_sync_bar_says_why_a_phone_got_no_key_in_the_pages_language(site: DemoSite, lang: str) -> None:
    """An account already on grants.MAX_PHONES phones: the next phone syncs without keys, and the bar tells its user
    why and what to do, in the language of the pages (it once showed the server's English reason)."""
    user = site.couch.accounts.get("user:wangge01")
    for n in range(grants.MAX_PHONES - len(grants.phones_of(site.couch, user["_id"]))):
        grants.register_phone(site.couch, user, phone()[1], f"旧手机 {n}", dt.datetime.now(dt.UTC))
    context, page = phone_of(site, "wangge01", lang)
    bar = page.wait_for_selector("#sync-state.sync-error", timeout=60_000).inner_text()
    said = translator(lang)("err_phone_keys_full", {"max": grants.MAX_PHONES})
    assert said in bar and "at most" not in bar, bar
    if lang == "zh":
        assert english_sentences(page.content()) == []
    context.close()


# ---- every form a person fills keeps what they entered through an error (issue 14)

# Each named control of a form as the person left it: typed text, chosen options, ticked boxes, chosen files
# (passwords and hidden fields aside: a password is never sent back, by design).
FORM_STATE = """(selector) => {
  const state = {};
  for (const el of document.querySelector(selector).elements) {
    if (!el.name || ["hidden", "password", "submit"].includes(el.type)) continue;
    const ticked = el.type === "checkbox" || el.type === "radio";
    const key = ticked ? `${el.name}=${el.value}` : el.name;
    state[key] = ticked ? el.checked : el.type === "file" ? [...el.files].map((f) => f.name)
      : el.type === "select-multiple" ? [...el.selectedOptions].map((o) => o.value) : el.value;
  }
  return state;
}"""
FORM = "main form.stack"
GIF = {"name": "screenshot.gif", "mimeType": "image/gif", "buffer": b"GIF89a" + bytes(64)}  # no image at all


def choose_photos(page: Page, files: list[dict]) -> None:
    """Choose photos, and wait until the phone has sized them (pwa/photos.js)."""
    page.set_input_files("input[name=photo]", files=files)
    page.wait_for_selector("input[name=photo][data-photos=fitted]", state="attached")


def kept_through_an_error(page: Page, error: str, form: str = FORM) -> dict:
    """Send the form as filled in (the browser's own checks off, as a browser without them would send it); the
    error of field `error` is shown (or what the selector `error` finds); returns the form's state before,
    which must be its state after."""
    before = page.evaluate(FORM_STATE, form)
    page.evaluate("(form) => { document.querySelector(form).noValidate = true; }", form)
    page.click(f"{form} button[type=submit]")
    shown = page.wait_for_selector(error if error.startswith("main") else f"#error-{error}:not([hidden])")
    assert shown is not None and shown.inner_text().strip()
    assert page.evaluate(FORM_STATE, form) == before
    return before


@pytest.mark.parametrize("offline", [False, True], ids=["online", "offline"])
def test_the_report_form_keeps_answers_options_and_photos_through_an_error(site: DemoSite, offline: bool) -> None:
    context, page = phone_of(site, "wangge01")
    context.set_offline(offline)
    page.goto(site.url + "requests/new")
    page.select_option("select[name=category]", "elderly_care")
    page.wait_for_selector("input[name='attribute.service[]']")
    page.check("input[name='attribute.service[]'][value=meals]")
    page.check("input[name='attribute.service[]'][value=bathing]")
    page.fill("textarea[name=description]", "独居老人需要送餐和助浴")
    page.fill("input[name=address]", "幸福路5号2单元")
    choose_photos(page, [PHOTO, {**PHOTO, "name": "door.png"}])
    page.check("input[name=on_behalf]")
    page.fill("input[name=reporter_name]", "王阿姨")
    state = kept_through_an_error(page, "consent")  # on the resident's behalf, without their consent
    assert state["category"] == "elderly_care" and state["photo"] == ["lamp.jpg", "door.jpg"]  # sized on the phone
    page.check("input[name=consent]")
    page.click(f"{FORM} button[type=submit]")
    page.wait_for_url(re.compile(r"/requests/[0-9a-f]{32}$"))
    assert "独居老人需要送餐和助浴" in page.inner_text("main")
    context.close()


@pytest.mark.parametrize("offline", [False, True], ids=["online", "offline"])
def test_the_visit_form_keeps_what_was_entered_through_a_wrong_photo(site: DemoSite, offline: bool) -> None:
    """A file that is no image is refused on the phone as it is chosen (pwa/photos.js): taken out of the input with
    a message beside it, nothing sent; the server's and the offline pages' own checks of a photo's bytes are in
    OFFLINE_PATHS above and tests/test_error_language.py."""
    context, page = phone_of(site, "wangge01")
    context.set_offline(offline)
    page.goto(site.url + f"households/{HOUSEHOLD}/visits/new")
    page.select_option("select[name=kind]", "care")
    page.select_option("select[name=resident]", index=1)
    page.fill("textarea[name=notes]", "老人腿脚不便，家中地面湿滑")
    page.check("input[name=needs][value=meal_delivery]")
    page.check("input[name=needs][value=cleaning]")
    page.fill("textarea[name=needs]", "需要扶手")
    before = page.evaluate(FORM_STATE, FORM)
    choose_photos(page, [GIF])
    assert page.inner_text("[data-photo-refused]") == ZH("err_photo_unreadable", name="screenshot.gif")
    assert page.evaluate(FORM_STATE, FORM) == before and chosen_files(page) == 0  # not kept, nothing else lost
    choose_photos(page, [PHOTO])  # another photo: the message goes
    assert not page.is_visible("[data-photo-refused]") and chosen_files(page) == 1
    page.click(f"{FORM} button[type=submit]")
    page.wait_for_url(f"**/households/{HOUSEHOLD}")
    assert "需要扶手" in page.inner_text("ul.visits")
    context.close()


@pytest.mark.parametrize("offline", [False, True], ids=["online", "offline"])
def test_the_household_form_keeps_what_was_entered_through_an_error(site: DemoSite, offline: bool) -> None:
    household = f"household:c1-g01-000{4 if offline else 3}"
    context, page = phone_of(site, "wangge01")
    context.set_offline(offline)
    page.goto(site.url + f"households/{household}/edit")
    page.fill("#field-address", "")  # required: the error
    page.fill("#field-building", "7")
    page.fill("#field-room", "301")
    page.select_option("#field-housing", index=2)
    for box in page.locator("input[name=tags]").all()[:2]:
        box.set_checked(not box.is_checked())
    state = kept_through_an_error(page, "address")
    assert state["room"] == "301" and state["housing"]
    page.fill("#field-address", "幸福路9号")
    page.click(f"{FORM} button[type=submit]")
    page.wait_for_url(f"**/households/{household}")
    context.close()


def test_the_residents_forms_keep_what_was_entered_through_an_error(site: DemoSite) -> None:
    """The resident's own forms, online only (they need the server): the monthly survey and telling a need."""
    context, page = phone_of(site, "jumin1")
    page.goto(site.url + "survey")
    page.fill("textarea[name=comment]", "垃圾清运及时，路灯修得慢")
    kept_through_an_error(page, "overall")  # no score chosen (the one error it has: a long comment is cut)
    page.goto(site.url + "needs")
    page.select_option("#need-category", index=2)
    kept_through_an_error(page, "description", "#needs form")  # no description
    context.close()


def test_the_activation_form_keeps_the_code_and_the_name_through_an_error(site: DemoSite) -> None:
    context = site.browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.goto(site.url + "activate")
    page.fill("#code", "12345678")
    page.fill("#username", "xinjumin")
    page.fill("#password", "a-long-enough-password")
    page.fill("#password_again", "a-long-enough-password")
    state = kept_through_an_error(page, "main p.error", "form[action='/activate']")  # no such code
    assert state == {"code": "12345678", "username": "xinjumin"}
    assert page.input_value("#password") == ""  # never sent back to the page
    context.close()
