"""Open311 GeoReport v2 conformance, written from the specification's examples (wiki.open311.org/GeoReport_v2):
resource names, field names, XML and JSON shapes, and the error format."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from server.domain.request_states import OPEN_STATES
from server.services import service_requests as sr
from server.services.demo import STREET_ID
from server.store.config import Settings
from server.store.couch import Couch
from server.web import open311
from server.web.app import create_app

BASE = "/open311/v2"
LAMP = {"service_code": "street_lamp", "lat": "30.51", "long": "114.344", "description": "路灯不亮",
        "first_name": "Li", "last_name": "Lei", "email": "li@example.invalid", "device_id": "d1", "account_id": "a1"}


@pytest.fixture
def api(demo_loaded: Couch, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, demo_loaded)) as client:
        yield client


@pytest.fixture
def key(demo_loaded: Couch) -> str:
    return open311.issue_key(demo_loaded, "city hotline", STREET_ID, dt.datetime.now(dt.UTC))


def errors_of(response) -> list[dict]:
    if response.headers["content-type"].startswith("text/xml"):
        root = ET.fromstring(response.content)
        assert root.tag == "errors"
        return [{"code": int(e.findtext("code")), "description": e.findtext("description")} for e in root]
    return response.json()


def test_service_list_in_json_and_xml(api: TestClient) -> None:
    services = api.get(f"{BASE}/services.json").json()
    lamp = next(s for s in services if s["service_code"] == "street_lamp")
    assert set(lamp) == {"service_code", "service_name", "description", "metadata", "type", "keywords", "group"}
    assert lamp["service_name"] == "路灯损坏" and lamp["metadata"] is True and lamp["type"] == "realtime"
    xml = api.get(f"{BASE}/services.xml")
    assert xml.headers["content-type"] == "text/xml; charset=utf-8"
    assert xml.content.startswith(b'<?xml version="1.0" encoding="utf-8"?><services>')
    root = ET.fromstring(xml.content)
    assert {s.findtext("service_code") for s in root.findall("service")} == {s["service_code"] for s in services}
    assert root.find("service/metadata").text in ("true", "false")


def test_service_definition(api: TestClient) -> None:
    definition = api.get(f"{BASE}/services/elderly_care.json").json()
    assert definition["service_code"] == "elderly_care"
    (attribute,) = definition["attributes"]
    assert attribute | {"values": None} == {"variable": True, "code": "service", "datatype": "multivaluelist",
                                            "required": True, "datatype_description": None, "order": 1,
                                            "description": "需要的服务", "values": None}
    assert {"key": "meals", "name": "meals"} in attribute["values"]
    root = ET.fromstring(api.get(f"{BASE}/services/elderly_care.xml").content)
    assert root.tag == "service_definition"
    assert root.find("attributes/attribute/values/value/key").text == "meals"
    missing = api.get(f"{BASE}/services/unicorns.json")
    assert missing.status_code == 404 and errors_of(missing)[0]["code"] == 404


def test_create_get_and_list_a_request(api: TestClient, key: str, demo_loaded: Couch) -> None:
    created = api.post(f"{BASE}/requests.json", data={**LAMP, "api_key": key})
    assert created.status_code == 200, created.text
    (answer,) = created.json()
    assert set(answer) == {"service_request_id", "service_notice", "account_id"} and answer["account_id"] == "a1"
    request_id = answer["service_request_id"]
    stored = demo_loaded.main.get("service_request:" + request_id)
    assert stored["source"] == "open311" and stored["grid"] == "grid:c1-g01" and stored["owner"] == "user:wangge01"
    assert "li@example.invalid" not in str(stored)  # contact details of Open311 reporters are not kept
    (one,) = api.get(f"{BASE}/requests/{request_id}.json").json()
    assert one["status"] == "open" and one["service_code"] == "street_lamp" and one["lat"] == 30.51
    assert one["agency_responsible"] == "城管中队" and one["expected_datetime"] == stored["due_close"]
    for name in ("service_request_id", "status", "status_notes", "service_name", "service_code", "description",
                 "agency_responsible", "service_notice", "requested_datetime", "updated_datetime",
                 "expected_datetime", "address", "address_id", "zipcode", "lat", "long", "media_url"):
        assert name in one
    listed = api.get(f"{BASE}/requests.json", params={"status": "open", "service_code": "street_lamp,noise"}).json()
    assert [r["service_request_id"] for r in listed] == [request_id]
    # Names, not codes and ids: the category's and the department's, read for the list by the ids it names.
    assert (listed[0]["service_name"], listed[0]["agency_responsible"]) == ("路灯损坏", "城管中队")
    assert api.get(f"{BASE}/requests.json", params={"status": "closed"}).json() == []
    by_id = api.get(f"{BASE}/requests.json", params={"service_request_id": request_id, "status": "closed"}).json()
    assert len(by_id) == 1  # service_request_id overrides the other parameters
    xml = ET.fromstring(api.get(f"{BASE}/requests.xml").content)
    assert xml.tag == "service_requests" and xml.find("request/service_request_id").text == request_id


def test_xml_create_and_attributes(api: TestClient, key: str) -> None:
    created = api.post(f"{BASE}/requests.xml", data={
        "api_key": key, "service_code": "noise", "address_string": "幸福路5号", "description": "夜间施工",
        "attribute[time_of_day]": "night"})
    assert created.status_code == 200, created.text
    root = ET.fromstring(created.content)
    assert root.tag == "service_requests" and root.find("request/service_request_id").text


@pytest.mark.parametrize(("data", "code", "words"), [
    ({"api_key": ""}, 403, "api_key"),
    ({"api_key": "wrong"}, 403, "api_key"),
    ({"service_code": ""}, 400, "service_code"),
    ({"service_code": "unicorns"}, 400, "service_code"),
    ({"lat": "", "long": ""}, 400, "location"),
    ({"lat": "north"}, 400, "lat"),
    ({"lat": "30.51", "long": "200"}, 400, "out of range"),
    ({"service_code": "noise"}, 400, "attribute[time_of_day]"),
    ({"media_url": "javascript:alert(1)"}, 400, "media_url"),
])
def test_bad_creates_answer_in_the_standard_error_format_and_store_nothing(
        api: TestClient, key: str, demo_loaded: Couch, data: dict, code: int, words: str) -> None:
    body = {**LAMP, "api_key": key, **data}
    for fmt in ("json", "xml"):
        response = api.post(f"{BASE}/requests.{fmt}", data=body)
        assert response.status_code == code, response.text
        (error,) = errors_of(response)
        assert error["code"] == code and words in error["description"]
    assert [d for d in sr.street_requests(demo_loaded, STREET_ID) if d["status"] in OPEN_STATES] == []


def test_malformed_calls(api: TestClient, key: str) -> None:
    assert errors_of(api.get(f"{BASE}/services.yaml"))[0]["code"] == 400
    wrong_place = api.get(f"{BASE}/services.json", params={"jurisdiction_id": "elsewhere"})
    assert wrong_place.status_code == 404 and "jurisdiction_id" in errors_of(wrong_place)[0]["description"]
    bad_date = api.get(f"{BASE}/requests.json", params={"start_date": "yesterday"})
    assert bad_date.status_code == 400 and "start_date" in errors_of(bad_date)[0]["description"]
    bad_status = api.get(f"{BASE}/requests.xml", params={"status": "pending"})
    assert bad_status.status_code == 400 and errors_of(bad_status)[0]["code"] == 400
    assert api.get(f"{BASE}/requests/nope.json").status_code == 404
    assert api.get(f"{BASE}/tokens/12345.json").status_code == 404


def test_requests_about_a_person_are_not_public(api: TestClient, demo_loaded: Couch) -> None:
    private = sr.create(demo_loaded, "user:wangge01", sr.NewRequest(
        street=STREET_ID, category="elderly_care", description="需要助餐", grid="grid:c1-g01",
        resident="resident:c1-g01-0001-1", household="household:c1-g01-0001", on_behalf=True, consent=True,
        attributes={"service": ["meals"]}), dt.datetime.now(dt.UTC))
    public = sr.create(demo_loaded, "user:wangge01", sr.NewRequest(  # the control: a list that shows requests
        street=STREET_ID, category="street_lamp", description="路灯不亮", grid="grid:c1-g01"), dt.datetime.now(dt.UTC))
    listed = api.get(f"{BASE}/requests.json").json()
    assert [r["service_request_id"] for r in listed] == [public["_id"].split(":", 1)[1]]
    assert api.get(f"{BASE}/requests/{private['_id'].split(':', 1)[1]}.json").status_code == 404


def test_status_notes_are_staffs_notes_not_the_residents_rating(api: TestClient, demo_loaded: Couch) -> None:
    history = [{"action": "created", "by": "user:r"}, {"action": "resolved", "by": "user:w", "note": "已更换灯泡"},
               {"action": "rated", "by": "user:r", "note": "谢谢"}]
    made = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    demo_loaded.main.save({
        "_id": "service_request:notes", "type": "service_request", "street": STREET_ID, "community": "community:c1",
        "grid": "grid:c1-g01", "status": "closed", "category": "street_lamp", "description": "路灯不亮",
        "history": history, "rating": 4, "created_at": made.isoformat(), "updated_at": made.isoformat()})
    (listed,) = [r for r in api.get(f"{BASE}/requests.json").json() if r["service_request_id"] == "notes"]
    (one,) = api.get(f"{BASE}/requests/notes.json").json()
    assert listed["status_notes"] == one["status_notes"] == "已更换灯泡"  # was the rating comment, or "4"


def test_a_list_prints_of_each_request_what_its_own_page_prints(api: TestClient, key: str,
                                                                demo_loaded: Couch) -> None:
    """A list reads its view's rows (what `linli/public_requests` makes of a request in JavaScript), one request
    its document (what `open311.listed` makes of it in Python): both print the same, whatever a request holds."""
    now = dt.datetime.now(dt.UTC)
    bare = sr.create(demo_loaded, "user:wangge01", sr.NewRequest(
        street=STREET_ID, category="street_lamp", description="路灯不亮", grid="grid:c1-g01"), now)
    worked = api.post(f"{BASE}/requests.json", data={**LAMP, "api_key": key}).json()[0]["service_request_id"]
    doc = demo_loaded.main.get("service_request:" + worked)
    doc["history"] += [{"action": "comment", "by": "user:wangge01", "at": now.isoformat(), "note": note}
                       for note in ("已受理", "已派人")]  # the last note is the status note
    doc.pop("department", None)
    demo_loaded.main.save(doc)
    made = (now - dt.timedelta(hours=2)).isoformat()
    demo_loaded.main.save({  # closed, a note without text, no location, an address and a photo's address
        "_id": "service_request:odd", "type": "service_request", "street": STREET_ID, "community": "community:c1",
        "grid": "grid:c1-g01", "status": "resolved", "category": "noise", "description": "夜间施工",
        "department": "department:chengguan", "address": "幸福路3号", "media_url": "https://example.invalid/p.jpg",
        "history": [{"action": "resolved", "by": "user:w"}], "created_at": made, "due_close": made})
    listed = api.get(f"{BASE}/requests.json", params={"page_size": "1000"}).json()
    ids = [r["service_request_id"] for r in listed]
    assert {bare["_id"].split(":", 1)[1], worked, "odd"} <= set(ids)
    one_by_one = api.get(f"{BASE}/requests.json", params={"service_request_id": ",".join(ids)}).json()
    assert sorted(listed, key=lambda r: r["service_request_id"]) == sorted(
        one_by_one, key=lambda r: r["service_request_id"])
    assert {r["status"] for r in listed} == {"open", "closed"}


def test_a_list_is_paged_by_key_each_request_once(api: TestClient, key: str) -> None:
    made = [api.post(f"{BASE}/requests.json", data={**LAMP, "api_key": key}).json()[0]["service_request_id"]
            for _ in range(5)]
    seen: list[str] = []
    url = f"{BASE}/requests.json?service_code=street_lamp&page_size=2"
    for _ in range(5):
        page = api.get(url)
        assert page.status_code == 200 and len(page.json()) <= 2
        seen += [r["service_request_id"] for r in page.json()]
        if "link" not in page.headers:
            break
        url = page.headers["link"].split(">")[0].lstrip("<")
    assert sorted(seen) == sorted(made) and len(seen) == len(set(seen))  # all of them, none twice
    assert len(api.get(f"{BASE}/requests.json").json()) == 5  # the default page holds them all
    assert api.get(f"{BASE}/requests.json", params={"page_size": "0"}).status_code == 400
    assert api.get(f"{BASE}/requests.json", params={"page_size": "1001"}).status_code == 400


def test_a_list_kept_for_the_next_client_changes_as_soon_as_what_it_prints_changes(
        api: TestClient, demo_loaded: Couch) -> None:
    """Lists are kept between clients (kept_answers.py); a request, a category or a department written by anyone
    (here straight into CouchDB, as another process would) is in the very next answer."""
    public = sr.create(demo_loaded, "user:wangge01", sr.NewRequest(
        street=STREET_ID, category="street_lamp", description="路灯不亮", grid="grid:c1-g01"), dt.datetime.now(dt.UTC))
    request_id = public["_id"].split(":", 1)[1]
    url = f"{BASE}/requests.json?service_code=street_lamp"

    def listed() -> dict:
        (one,) = [r for r in api.get(url).json() if r["service_request_id"] == request_id]
        return one

    assert listed() == listed()  # asked twice: the second answer is the kept one
    doc = demo_loaded.main.get(public["_id"])
    demo_loaded.main.save({**doc, "status": "closed", "description": "路灯不亮(已修)"})
    assert (listed()["status"], listed()["description"]) == ("closed", "路灯不亮(已修)")
    category = demo_loaded.main.get("service_category:street_lamp")
    demo_loaded.main.save({**category, "name": "路灯坏了"})
    assert listed()["service_name"] == "路灯坏了"
    department = demo_loaded.main.get(doc["department"])
    demo_loaded.main.save({**department, "name": "城管科"})
    assert listed()["agency_responsible"] == "城管科"
