"""Every error path a person can reach shows its message in the page's language, next to the field where the form
has one (server/domain/errors.py, templates/_errors.html): in zh-CN no English sentence (tests/english.py), in en
the English text and no raw message key; bad input never answers 5xx and what was typed stays in the form.
The offline forms: tests/test_error_language_browser.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from starlette.testclient import TestClient

from server.domain.i18n import translator
from server.security import accounts
from server.services import demo
from server.store.config import Settings
from server.store.couch import Couch
from server.web.app import create_app

from .english import english_sentences, is_english, raw_keys, shown_errors
from .street import TINY_PNG, csrf_of, hashed

PASSWORD = "demo-password"
RESIDENT = "resident:c1-g01-0002-1"  # in wangge01's grid; the account jumin1
HOUSEHOLD = "household:c1-g01-0002"
GIF = ("x.gif", b"GIF89a" + bytes(64), "image/gif")


@dataclass(frozen=True)
class ErrorPath:
    name: str
    user: str | None
    send: Callable[[TestClient, str], httpx.Response]  # with the session's CSRF token
    typed: tuple[str, ...] = ()  # what the person typed: kept in the form, and not counted as English


def post(path: str, data: dict[str, str | list[str]], files: dict | None = None, htmx: bool = False,
         ) -> Callable[[TestClient, str], httpx.Response]:
    def send(client: TestClient, token: str) -> httpx.Response:
        headers = {"HX-Request": "true"} if htmx else {}
        return client.post(path, data={**data, "csrf_token": token}, files=files, headers=headers)
    return send


def get(path: str) -> Callable[[TestClient, str], httpx.Response]:
    return lambda client, _: client.get(path)


def on_new_request(action: dict[str, str]) -> Callable[[TestClient, str], httpx.Response]:
    def send(client: TestClient, token: str) -> httpx.Response:
        created = post("/requests/new", {"category": "street_lamp", "description": "路灯不亮",
                                         "address": "幸福路3号"})(client, token)
        assert created.status_code == 303, created.text
        return post(f"{created.headers['location']}/act", action)(client, token)
    return send


PATHS = [
    ErrorPath("login, nothing typed", None, post("/login", {"username": "", "password": ""})),
    ErrorPath("login, wrong password", None, post("/login", {"username": "nobody", "password": "nope"}),
              typed=("nobody",)),
    ErrorPath("activation, wrong code", None, post("/activate", {"code": "1234 5678", "username": "newbie",
                                                                 "password": "a long password 1",
                                                                 "password_again": "a long password 1"}),
              typed=("newbie",)),
    ErrorPath("new request, no location", "jumin1",
              post("/requests/new", {"category": "street_lamp", "description": "路灯坏了 really broken"},
                   files={"photo": ("lamp.png", TINY_PNG, "image/png")}),
              typed=("really broken",)),
    ErrorPath("new request, unknown service", "jumin1",
              post("/requests/new", {"category": "teleport", "description": "x"}), typed=("teleport",)),
    ErrorPath("new request, not an image", "jumin1",
              post("/requests/new", {"category": "street_lamp", "description": "路灯", "address": "幸福路3号"},
                   files={"photo": GIF})),
    ErrorPath("new request, a question unanswered", "jumin1",
              post("/requests/new", {"category": "noise", "description": "楼上很吵", "address": "幸福路3号"})),
    ErrorPath("new request on behalf, no consent", "wangge01",
              post("/requests/new", {"category": "street_lamp", "description": "路灯", "address": "幸福路3号",
                                     "on_behalf": "on", "reporter_name": "Old Li"}, htmx=True),
              typed=("Old Li",)),
    ErrorPath("request, rated before resolved", "jumin1",
              on_new_request({"action": "rate", "rating": "9", "satisfaction": "very_satisfied"})),
    ErrorPath("request, unknown action", "jumin1", on_new_request({"action": "explode"}), typed=("explode",)),
    ErrorPath("request, empty comment", "jumin1", on_new_request({"action": "comment", "note": " "})),
    ErrorPath("visit, unknown kind and long notes", "wangge01",
              post(f"/households/{HOUSEHOLD}/visits/new", {"kind": "party", "notes": "x" * 2001}),
              typed=("party",)),
    ErrorPath("visit, a stranger", "wangge01",
              post(f"/households/{HOUSEHOLD}/visits/new", {"kind": "routine", "resident": "resident:nobody"})),
    ErrorPath("visit, not an image", "wangge01",
              post(f"/households/{HOUSEHOLD}/visits/new", {"kind": "routine", "notes": "see photo please"},
                   files={"photo": GIF}, htmx=True), typed=("see photo please",)),
    ErrorPath("household edit", "wangge01",
              post(f"/households/{HOUSEHOLD}/edit", {"_rev": "1-x", "address": "", "room": "Room " * 10,
                                                     "housing": "castle"}), typed=("Room", "castle")),
    ErrorPath("alerts, unknown action", "wangge01", post("/alerts/lang-sos/act", {"action": "dance"})),
    ErrorPath("alerts, unknown action (htmx row)", "wangge01",
              post("/alerts/lang-sos/act", {"action": "dance"}, htmx=True)),
    ErrorPath("reveal, unknown category", "wangge01", post(f"/residents/{RESIDENT}/reveal", {"category": "x"})),
    ErrorPath("reveal, no purpose (htmx)", "wangge01",
              post(f"/residents/{RESIDENT}/reveal", {"category": "contact", "purpose": ""}, htmx=True)),
    ErrorPath("access request, no purpose, no hours", "wangge01",
              post(f"/residents/{RESIDENT}/access-request", {"category": "health", "purpose": " ", "hours": "0"})),
    ErrorPath("approvals, no such request", "shuji1", post("/approvals", {"access_request": "access_request:nope",
                                                                          "decision": "approve"})),
    ErrorPath("privacy, no such choice", "jumin1",
              post(f"/residents/{RESIDENT}/privacy", {"contact": "everyone"}), typed=("everyone",)),
    ErrorPath("needs, no description", "jumin1", post("/needs", {"category": "meals", "description": ""})),
    ErrorPath("survey, no score", "jumin1", post("/survey", {"overall": "9"})),
    ErrorPath("staff, not a worker", "shuji1", post("/staff", {"user": "user:nobody", "community": "community:c1",
                                                                 "grids": "grid:c1-g01"})),
    ErrorPath("catalogue, bad questions", "shuji1",
              post("/catalogue", {"new": "1", "code": "graffiti", "name": "涂鸦",
                                  "department": "department:urban_management", "respond_days": "1",
                                  "close_days": "5", "questions": "where | place | 哪里 | yes"}),
              typed=("graffiti", "where | place")),
    ErrorPath("catalogue, no such category", "shuji1",
              post("/catalogue", {"code": "nothing", "name": "无", "respond_days": "1", "close_days": "5"})),
    ErrorPath("audit, bad days", "shuji1", get("/audit/report?days=1000")),
    ErrorPath("grid, bad offset", "wangge01", get("/grids/grid:c1-g01?offset=many")),
    ErrorPath("display, unknown option", "wangge01", post("/display", {"toggle": "huge"})),
    ErrorPath("task, no volunteer", "wangge01",
              post("/tasks/new", {"household": HOUSEHOLD, "kind": "visit", "assigned_to": "",
                                  "notes": "bring rice please"}), typed=("bring rice please",)),
    ErrorPath("task, no such date", "wangge01",
              post("/tasks/new", {"household": HOUSEHOLD, "kind": "visit", "assigned_to": "user:zhiyuan01a",
                                  "due_on": "2026-02-30"}), typed=("2026-02-30",)),
    ErrorPath("task, done without a note", "zhiyuan01a",
              post("/tasks/lang/answer", {"answer": "done", "volunteer_note": " "})),
]


@pytest.fixture
def web(demo_loaded: Couch, settings: Settings) -> Iterator[TestClient]:
    demo_loaded.accounts.save(accounts.make_user("jumin1", "居民甲", [accounts.Role.RESIDENT], demo.STREET_ID,
                                                 hashed(PASSWORD), resident=RESIDENT))
    resident = demo_loaded.main.get(RESIDENT)
    demo_loaded.main.save({"_id": "alert:lang-sos", "type": "alert",
                           **{k: resident[k] for k in ("street", "community", "grid", "household")},
                           "resident": RESIDENT, "kind": "sos", "status": "raised",
                           "raised_at": dt.datetime.now(dt.UTC).isoformat(), "visibility": "grid_staff"})
    demo_loaded.main.save({"_id": "task:lang", "type": "task",
                           **{k: resident[k] for k in ("street", "community", "grid", "household")},
                           "address": "幸福路2号", "kind": "visit", "assigned_to": "user:zhiyuan01a",
                           "status": "assigned", "created_by": "user:wangge01",
                           "created_at": dt.datetime.now(dt.UTC).isoformat()})
    with TestClient(create_app(settings, demo_loaded), follow_redirects=False) as client:
        yield client


def answer(client: TestClient, path: ErrorPath, lang: str) -> str:
    client.cookies.clear()
    if path.user:
        signed_in = client.post("/login", data={"username": path.user, "password": PASSWORD, "next": "/",
                                                "csrf_token": csrf_of(client)})
        assert signed_in.status_code == 303
    client.cookies.set("lang", lang)
    response = path.send(client, csrf_of(client, "/requests" if path.user else "/login"))
    assert response.status_code < 500, f"{path.name}: {response.status_code}"
    return response.text


def problems_of(path: ErrorPath, lang: str, page: str) -> list[str]:
    """What is wrong with how this page reports the error, in this language."""
    errors = shown_errors(page)
    if not errors:
        return [f"{path.name} ({lang}): no error message shown"]
    if lang == "en":
        untranslated = [e for e in errors if not is_english(e)]
        return [f"{path.name} (en): not English: {untranslated}"] * bool(untranslated) + [
            f"{path.name} (en): raw message key {key}" for key in raw_keys(page)]
    return [f"{path.name} (zh): English sentence {s!r}" for s in english_sentences(page, path.typed)] + [
        f"{path.name} (zh): {typed!r} was not kept" for typed in path.typed if typed not in page]


def test_every_error_path_speaks_the_pages_language(web: TestClient) -> None:
    """One app for all paths (each signs in afresh); every problem is listed, not just the first."""
    problems = [problem for path in PATHS for lang in ("zh", "en")
                for problem in problems_of(path, lang, answer(web, path, lang))]
    assert problems == []


def test_only_forms_htmx_submits_replace_their_error_slots(web: TestClient) -> None:
    """A request's page refreshes its history by htmx every 15 s: slots marked hx-swap-oob there would be
    replaced by the refresh's empty ones, and the error would vanish (templates/_errors.html)."""
    by_name = {p.name: p for p in PATHS}
    assert 'hx-swap-oob' not in answer(web, by_name["request, empty comment"], "zh")
    assert 'id="error-consent" hx-swap-oob="true">' in answer(web, by_name["new request on behalf, no consent"], "zh")


def test_the_check_finds_english() -> None:
    """The detector itself: a sentence counts, allowed names and typed words do not."""
    page = '<p class="error">photo: is not a JPEG image</p><p title="at most 5 MB">照片 JPEG、PNG</p>'
    assert [" ".join(s.split()) for s in english_sentences(page)] == ["is not a image", "at most"]
    assert english_sentences('<p>BTHome SOS 报警</p><script>var a = "two words";</script>') == []
    assert english_sentences("<p>请重新选择 Old Li</p>", ("Old Li",)) == []


def test_without_javascript_the_page_asks_for_the_photo_again(web: TestClient) -> None:
    """A browser cannot refill a file input: a form posted without htmx says the photo must be chosen again."""
    path = next(p for p in PATHS if p.name == "new request, no location")
    page = answer(web, path, "zh")
    assert 'id="error-lat"' in page and translator("zh")("photo_choose_again") in page
    without_photo = post("/requests/new", {"category": "street_lamp", "description": "路灯坏了"})
    assert translator("zh")("photo_choose_again") not in without_photo(web, csrf_of(web, "/requests")).text
    # Over the form limit (10 MB) without JavaScript: refused before any page, in the page's language too.
    huge = post("/requests/new", {"category": "street_lamp"},
                files={"photo": ("big.jpg", b"\xff\xd8\xff" + bytes(11 * 1024 * 1024), "image/jpeg")})
    refused = huge(web, csrf_of(web, "/requests"))
    assert refused.status_code == 413 and refused.text == translator("zh")("err_form_too_large")
