"""The resource pool's pages (issue 17) on the small demo street, through the web app and the real
pouchdb-server: a resident books online, the keeper approves, the resident checks in by the venue's code; every
bad input is refused naming why (400, nothing stored changed); the secretary's board flags an idle resource and
its CSV has Chinese headers."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import uuid
from typing import Any
from urllib.parse import quote

from starlette.testclient import TestClient

from server.domain import pool as rules
from server.domain.i18n import translator
from server.security.keystore import KeyStore
from server.services import pool
from server.services.demo import STREET_ID
from server.store.couch import Couch
from server.web import pool_pages

from . import street
from .street import TINY_PNG, csrf_of

PASSWORD = "demo-password"
ZH = translator("zh")
C1 = "community:c1"
Doc = dict[str, Any]


def hall(couch: Couch, keys: KeyStore, **rules_: Any) -> Doc:
    """A hall of community c1, open all day every day, kept by wangge01; a blackout tomorrow 3-5."""
    now = dt.datetime.now(rules.LOCAL)
    tomorrow = (now + dt.timedelta(days=1)).date().isoformat()
    doc = {"_id": f"resource:hall-{uuid.uuid4().hex[:8]}", "type": "resource", "street": STREET_ID, "community": C1,
           "name": f"活动室 {uuid.uuid4().hex[:4]}", "kind": "room", "owner_kind": "community", "owner": C1,
           "place": "社区中心", "capacity": 20,
           "open_hours": [{"weekday": d, "opens": 0, "closes": 24} for d in range(7)],
           "blackouts": [{"date": tomorrow, "from_hour": 3, "to_hour": 5, "reason": "消防检查"}],
           "who_may_book": ["resident", "volunteer", "grid_worker", "secretary"], "book_ahead_days": 14,
           "max_hours": 3, "approval": False, "grace_minutes": 15, "keepers": ["user:wangge01"],
           "created_by": "user:shuji1", "created_at": now.isoformat(), **rules_}
    pool.add_resource(couch, keys, doc, now)
    return doc


def stored(couch: Couch) -> dict[str, str]:
    return {row["id"]: row["value"]["rev"] for row in couch.main.all(include_docs="false", as_list=True)}


def book(web: TestClient, resource: Doc, day: str, **form: str) -> Any:
    key = resource["_id"][9:]
    return web.post(f"/pool/r/{key}/book", data={"day": day, "hour": "10", "hours": "1", "people": "4",
                                                 **form, "csrf_token": csrf_of(web, f"/pool/r/{key}")})


def tomorrow() -> str:
    return (dt.datetime.now(rules.LOCAL) + dt.timedelta(days=1)).date().isoformat()


def test_a_resident_books_and_every_bad_booking_says_why(web: TestClient, demo_loaded: Couch, keys: KeyStore) -> None:
    room = hall(demo_loaded, keys)
    street.as_user(web, "jumin1", PASSWORD)
    listing = web.get("/pool")
    assert listing.status_code == 200 and room["name"] in listing.text
    before = stored(demo_loaded)
    cases = [
        (ZH("pool_blackout", reason="消防检查"), {"hour": "3"}),
        (ZH("pool_over_capacity", capacity=20), {"people": "21"}),
        (ZH("pool_over_capacity", capacity=20), {"people": "x"}),
        (ZH("pool_too_long", max=3), {"hours": "4"}),
        (ZH("pool_too_far", days=14), {"day": (dt.date.today() + dt.timedelta(days=30)).isoformat()}),
        (ZH("pool_too_far", days=14), {"day": "9999-12-31", "hour": "23"}),
        (ZH("pool_past"), {"day": "2020-01-01"}),
        (ZH("pool_past"), {"day": "0001-01-01", "hour": "0"}),
        (ZH("pool_slot_id"), {"hour": "ten"}),
        (ZH("pool_slot_id"), {"hour": "24"}),
    ]
    for message, form in cases:
        answer = book(web, room, **{"day": tomorrow(), **form})
        assert answer.status_code == 400 and message in answer.text, (form, answer.status_code)
    assert stored(demo_loaded) == before  # nothing stored changed
    answer = book(web, room, tomorrow(), purpose="书法班")
    assert answer.status_code == 303 and answer.headers["location"].endswith("done=booked")
    key = room["_id"][9:]
    page = web.get(f"/pool/r/{key}?day={tomorrow()}").text
    assert re.search(r'data-hour="10" data-state="confirmed"', page)
    assert "书法班" in web.get("/pool").text
    street.as_user(web, "zhiyuan01a", PASSWORD)  # the slot is taken: a volunteer may queue for it
    taken = book(web, room, tomorrow())
    assert taken.status_code == 409 and ZH("pool_slot_taken") in taken.text


def test_the_keeper_approves_and_the_booker_checks_in_by_the_venues_code(web: TestClient, demo_loaded: Couch,
                                                                        keys: KeyStore) -> None:
    room = hall(demo_loaded, keys, approval=True)
    key = room["_id"][9:]
    street.as_user(web, "jumin1", PASSWORD)
    now = dt.datetime.now(rules.LOCAL)
    secret = rules.venue_secret(keys.code_key(), room["_id"])
    code = rules.day_code(secret, now.date())  # today's code: it changes daily
    hour = now.hour if now.minute < 10 else None
    day = now.date().isoformat() if hour is not None else tomorrow()
    assert book(web, room, day, hour=str(hour if hour is not None else 10)).headers["location"].endswith(
        "done=requested")
    street.as_user(web, "zhiyuan01b", PASSWORD)
    first = pool.bookings_of(demo_loaded, "user:jumin1")[0]
    assert web.post(f"/pool/r/{key}/approve", data={"booking": first["_id"],
                                                    "csrf_token": csrf_of(web, "/pool")}).status_code == 403
    street.as_user(web, "wangge01", PASSWORD)  # the keeper
    keeper_page = web.get(f"/pool/r/{key}").text
    assert first["_id"] in keeper_page and code in keeper_page  # to approve, and the venue's code to post
    answer = web.post(f"/pool/r/{key}/approve", data={"booking": first["_id"], "csrf_token": csrf_of(web, "/pool")})
    assert answer.status_code == 303 and demo_loaded.main.get(first["_id"])["status"] == "confirmed"
    street.as_user(web, "jumin1", PASSWORD)
    scanned = web.get(f"/pool/checkin?resource={room['_id']}&code={code}")
    assert scanned.status_code == 200
    if hour is None:  # too early to check in to tomorrow's booking: the page says there is none now
        assert ZH("pool_checkin_none") in scanned.text
        return
    yesterday = rules.day_code(secret, now.date() - dt.timedelta(days=1))
    forged = web.post("/pool/checkin", data={"resource": room["_id"], "booking": first["_id"], "code": yesterday,
                                             "csrf_token": csrf_of(web, "/pool")})
    assert forged.status_code == 400 and ZH("pool_checkin_code") in forged.text
    done = web.post("/pool/checkin", data={"resource": room["_id"], "booking": first["_id"], "code": code,
                                           "csrf_token": csrf_of(web, "/pool")})
    assert done.status_code == 303 and demo_loaded.main.get(rules.checkin_id(first["_id"]))["method"] == "scan"


def test_the_board_flags_an_idle_resource_and_its_csv_speaks_chinese(web: TestClient, demo_loaded: Couch,
                                                                     keys: KeyStore) -> None:
    room = hall(demo_loaded, keys)
    street.as_user(web, "jumin1", PASSWORD)
    assert web.get("/pool/board").status_code == 403
    street.as_user(web, "shuji1", PASSWORD)
    page = web.get("/pool/board").text
    assert re.search(rf'data-resource="{room["_id"]}" data-flagged="yes"', page)
    assert ZH("pool_suggest_hours") in page
    rows = list(csv.reader(io.StringIO(web.get("/pool/board.csv").text)))
    assert rows[0][:3] == [ZH("pool_resource"), ZH("pool_month"), ZH("pool_open_hours_col")]
    mine = [r for r in rows if r[0] == room["name"]]
    assert len(mine) == 12 and mine[-1][7] == "100%" and mine[-1][8] == "是"
    street.as_user(web, "shuji2", PASSWORD)
    assert room["_id"] not in web.get("/pool/board").text  # another community's board
    assert web.get(f"/pool/r/{room['_id'][9:]}").status_code == 404


def resource_form(**given: str) -> dict[str, str]:
    """The resource form as a person fills it: open 9-17 on weekdays, two blackouts on one day."""
    return {"name": f"会议室 {uuid.uuid4().hex[:4]}", "kind": "room", "owner_kind": "school", "place": "第一小学",
            "capacity": "30", **{f"opens_{d}": "9" for d in range(5)}, **{f"closes_{d}": "17" for d in range(5)},
            "blackouts": "2026-12-05 9-11 考试\n2026-12-05 14-16 家长会", "who_may_book": "resident",
            "book_ahead_days": "7", "max_hours": "2", "grace_minutes": "10", "approval": "yes", **given}


def test_the_secretary_adds_a_resource_with_a_photo_and_its_keeper_edits_it(web: TestClient, demo_loaded: Couch,
                                                                            keys: KeyStore) -> None:
    street.as_user(web, "zhiyuan01a", PASSWORD)  # a volunteer adds nothing
    assert web.get("/pool/new").status_code == 403
    street.as_user(web, "shuji1", PASSWORD)
    assert 'href="/pool/new"' in web.get("/pool").text
    before = stored(demo_loaded)
    bad = resource_form(name="", kind="castle", capacity="0", opens_0="18", blackouts="明天 9-12",
                        who_may_book="mayor", max_hours="x")
    answer = web.post("/pool/new", data={**bad, "csrf_token": csrf_of(web, "/pool/new")},
                      files={"photo": ("hall.png", b"<html><script>x</script>", "image/png")})
    assert answer.status_code == 400
    for message in (ZH("pool_form_text", max=100), ZH("pool_form_choice"), ZH("pool_form_number", min=1, max=10000),
                    ZH("pool_form_hours"), ZH("pool_form_blackouts", lines="1"), ZH("pool_form_who"),
                    ZH("pool_form_number", min=1, max=24), ZH("pool_form_photo_not_image")):
        assert message in answer.text, message
    assert stored(demo_loaded) == before  # nothing stored changed
    good = resource_form()
    answer = web.post("/pool/new", data={**good, "csrf_token": csrf_of(web, "/pool/new")},
                      files={"photo": ("hall.png", TINY_PNG, "image/png")})
    assert answer.status_code == 303 and answer.headers["location"].endswith("done=saved")
    key = answer.headers["location"].split("/pool/r/")[1].split("?")[0]
    saved = demo_loaded.main.get("resource:" + key)
    assert saved["community"] == C1 and len(saved["code_hashes"]) == 22 and saved["approval"] is True
    assert rules.blocked_hours_on(saved, dt.date(2026, 12, 5)).keys() == {9, 10, 14, 15}  # both blackouts
    assert [h["weekday"] for h in saved["open_hours"]] == [0, 1, 2, 3, 4]
    photo = web.get(f"/pool/r/{key}/photo")
    assert photo.status_code == 200 and photo.content == TINY_PNG and photo.headers["content-type"] == "image/png"
    assert rules.code_matches(saved, dt.datetime.now(rules.LOCAL).date().isoformat(),  # a new one has its codes
                              pool.venue_code(keys, saved["_id"], dt.datetime.now(rules.LOCAL)))
    room = hall(demo_loaded, keys)  # kept by wangge01: the keeper edits theirs
    street.as_user(web, "wangge01", PASSWORD)
    edit, hashes = f"/pool/r/{room['_id'][9:]}/edit", demo_loaded.main.get(room["_id"])["code_hashes"]
    assert room["place"] in web.get(edit).text
    answer = web.post(edit, data={**resource_form(name=room["name"], place="二楼"), "csrf_token": csrf_of(web, edit)})
    assert answer.status_code == 303
    edited = demo_loaded.main.get(room["_id"])
    assert edited["place"] == "二楼" and edited["keepers"] == ["user:wangge01"] and edited["code_hashes"] == hashes
    assert web.get(f"/pool/r/{key}/edit").status_code == 403  # not the keeper of the secretary's new one
    street.as_user(web, "shuji2", PASSWORD)  # another community's secretary does not see it
    assert web.get(edit).status_code == 404


def test_the_secretary_names_keepers_and_a_keeper_prints_a_week_of_codes(web: TestClient, demo_loaded: Couch,
                                                                         keys: KeyStore) -> None:
    room = hall(demo_loaded, keys)  # kept by wangge01
    edit = f"/pool/r/{room['_id'][9:]}/edit"
    street.as_user(web, "shuji1", PASSWORD)
    page = web.get(edit).text
    assert 'name="keepers" value="user:zhiyuan01a"' in page and 'value="user:wangge01" checked' in page
    before = stored(demo_loaded)
    for stranger in ("user:shuji2", "user:nobody"):  # another community's secretary; no account at all
        answer = web.post(edit, data={**resource_form(name=room["name"]), "keepers": ["user:wangge01", stranger],
                                      "csrf_token": csrf_of(web, edit)})
        assert answer.status_code == 400 and ZH("pool_form_keepers", max=rules.KEEPERS_MAX) in answer.text
        assert stored(demo_loaded) == before  # nothing stored changed
    answer = web.post(edit, data={**resource_form(name=room["name"]), "keepers": ["user:wangge01", "user:zhiyuan01a"],
                                  "csrf_token": csrf_of(web, edit)})
    assert answer.status_code == 303
    assert demo_loaded.main.get(room["_id"])["keepers"] == ["user:wangge01", "user:zhiyuan01a"]
    street.as_user(web, "wangge01", PASSWORD)  # a keeper edits the resource, not who keeps it
    assert 'name="keepers"' not in web.get(edit).text
    answer = web.post(edit, data={**resource_form(name=room["name"]), "keepers": ["user:wangge01"],
                                  "csrf_token": csrf_of(web, edit)})
    assert answer.status_code == 303
    assert demo_loaded.main.get(room["_id"])["keepers"] == ["user:wangge01", "user:zhiyuan01a"]

    street.as_user(web, "zhiyuan01a", PASSWORD)  # named a keeper: prints the coming week's codes, a day a sheet
    codes = f"/pool/r/{room['_id'][9:]}/codes"
    assert codes in web.get(f"/pool/r/{room['_id'][9:]}").text
    sheet = web.get(codes)
    today = dt.datetime.now(rules.LOCAL).date()
    days = [today + dt.timedelta(days=n) for n in range(7)]
    assert re.findall(r'data-day="([\d-]+)"', sheet.text) == [d.isoformat() for d in days]
    secret = rules.venue_secret(keys.code_key(), room["_id"])
    assert rules.code_matches(demo_loaded.main.get(room["_id"]), today.isoformat(),
                              pool.venue_code(keys, room["_id"], dt.datetime.now(rules.LOCAL)))  # the keeper's
    for day in days:
        code = rules.day_code(secret, day)
        assert code in sheet.text  # each day's QR code opens the check-in page with that day's code filled in
        assert str(pool_pages.qr_svg(f"http://testserver/pool/checkin?resource={quote(room['_id'])}&code={code}")) \
            in sheet.text
    main = sheet.text.split("<main")[1]
    assert "<script" not in main and " style=" not in main and " id=" not in main  # strict CSP; no id repeated
    street.as_user(web, "zhiyuan01b", PASSWORD)  # not a keeper
    assert web.get(codes).status_code == 403
