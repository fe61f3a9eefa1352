"""Finding 15 of issue 13: inputs that made the web app answer 500 now get a 4xx naming what is wrong (or a
correct answer), and store nothing. Sent as a scripted client would, to the app over a real pouchdb-server;
the app's exceptions are not re-raised, so that a 500 is seen as a client sees it."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from starlette.routing import Mount
from starlette.testclient import TestClient

from server.domain.request_states import OPEN_STATES
from server.services import service_requests as sr
from server.services.demo import STREET_ID
from server.store.config import Settings
from server.store.couch import Couch
from server.web import open311
from server.web.app import create_app
from sync.app import create_sync_app

BASE = "/open311/v2"
LAMP = {"service_code": "street_lamp", "lat": "30.51", "long": "114.344", "description": "路灯不亮"}


@pytest.fixture
def api(demo_loaded: Couch, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, demo_loaded), raise_server_exceptions=False,
                    follow_redirects=False) as client:
        yield client


def _description(response) -> str:
    """The one Open311 error's description (JSON or XML error format)."""
    if response.headers["content-type"].startswith("text/xml"):
        return ET.fromstring(response.content).findtext("error/description")
    (error,) = response.json()
    return error["description"]


@pytest.mark.parametrize(("params", "words"), [
    ({"start_date": "0001-01-01T00:00:00+14:00"}, "start_date is out of range"),
    ({"end_date": "9999-12-31T23:59:59-12:00"}, "end_date is out of range"),
    ({"end_date": "0001-01-02T00:00:00Z"}, None),  # the default 90 days before it would be before year 1
    ({"start_date": "2026-11-25T00:00:00Z", "end_date": "2026-01-01T00:00:00Z"}, "start_date must not be after"),
])
def test_open311_request_lists_with_impossible_dates(api: TestClient, params: dict, words: str | None) -> None:
    for fmt in ("json", "xml"):
        answer = api.get(f"{BASE}/requests.{fmt}", params=params)
        if words is None:
            assert answer.status_code == 200, answer.text
        else:
            assert answer.status_code == 400, answer.text
            assert words in _description(answer)


@pytest.mark.parametrize(("field", "named"), [
    ("first_name", "first_name/last_name: longer than 100"),
    ("last_name", "first_name/last_name: longer than 100"),
    ("account_id", "account_id: longer than 100"),
    ("address_string", "address_string: longer than 200"),
])
def test_open311_create_with_an_over_long_field(api: TestClient, demo_loaded: Couch, field: str, named: str) -> None:
    key = open311.issue_key(demo_loaded, "city hotline", STREET_ID, dt.datetime.now(dt.UTC))
    for fmt in ("json", "xml"):
        answer = api.post(f"{BASE}/requests.{fmt}", data={**LAMP, "api_key": key, field: "长" * 5000})
        assert answer.status_code == 400, answer.text
        assert named in _description(answer)
    assert [d for d in sr.street_requests(demo_loaded, STREET_ID) if d["status"] in OPEN_STATES] == []


def test_open311_discovery_in_both_formats(api: TestClient) -> None:
    as_json = api.get(f"{BASE}/discovery.json").json()
    as_xml = api.get(f"{BASE}/discovery.xml")
    assert as_xml.status_code == 200, as_xml.text
    endpoint = ET.fromstring(as_xml.content).find("endpoints/endpoint")
    assert endpoint.findtext("url") == as_json["endpoints"][0]["url"]
    assert [f.text for f in endpoint.find("formats")] == as_json["endpoints"][0]["formats"]


def test_login_with_a_100_kb_username(api: TestClient, demo_loaded: Couch) -> None:
    before = demo_loaded.accounts.config()["update_seq"]
    form_token = re.search(r'name="csrf_token" value="([^"]+)"', api.get("/login").text).group(1)
    answer = api.post("/login", data={"username": "x" * 100_000, "password": "p", "csrf_token": form_token},
                      headers={"Accept-Language": "en"})
    assert answer.status_code == 400, answer.text[:300]
    assert "最多 50 个字" in answer.text  # the declared length of a username (the page's default language)
    assert demo_loaded.accounts.config()["update_seq"] == before  # no throttle document under a 100 KB id


@pytest.mark.parametrize(("body", "boundary"), [(b"\xff" * 200, "x"), (b"--x--", ""), (b"--x--", "-" * 80),
                                                (b"--x\r\nContent-Disposition: form-data\r\n\r\n", "x")])
def test_a_broken_multipart_form_is_refused_by_name(api: TestClient, body: bytes, boundary: str) -> None:
    """Found by tests/test_fuzz_endpoints.py: the CSRF check read a broken multipart body looking for the token."""
    answer = api.post("/lang", content=body, cookies={"lang": "en"},
                      headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert answer.status_code == 400, answer.text
    assert "malformed multipart data" in answer.text


def test_an_impossibly_long_id_or_revision_is_not_found(demo_loaded: Couch, settings: Settings) -> None:
    """Found by tests/test_fuzz_endpoints.py: pouchdb-server (Node) answers a request line over 16 KB with a bare
    431, which the pages' and the sync gateway's CouchDB clients could not read."""
    app = create_app(settings, demo_loaded, mounts=[Mount("/sync", create_sync_app(settings, demo_loaded.url))])
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        form_token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
        assert client.post("/login", data={"username": "wangge01", "password": "demo-password",
                                           "csrf_token": form_token}).status_code == 303
        long = "长" * 2000
        for path in ("/households/", "/grids/", "/requests/", "/conflicts/", "/sync/main/", "/sync/main/_local/"):
            answer = client.get(path + long)
            assert answer.status_code in (400, 404), (path, answer.status_code, answer.text[:200])
        resident = next(iter(demo_loaded.main.all(startkey="resident:", endkey="resident:\ufff0", limit=1,
                                                  as_list=True)))["id"]
        answer = client.get(f"/sync/main/{resident}", params={"rev": long})
        assert answer.status_code == 404, answer.text[:200]
