"""The resource pool (issue 17): the pure rules (slots, hours, blackouts, idle months), the acts against the
real pouchdb-server (booking, approval, cancellation and the waitlist, check-in, the no-show sweep, the
board), and two phones booking one slot offline through the real sync gateway."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from server.domain import pool as rules
from server.domain.access import Principal
from server.domain.declaration import Role
from server.security import accounts
from server.security.keystore import KeyStore
from server.services import pool, pool_months
from server.services.demo import STREET_ID
from server.store.config import Settings
from server.store.couch import Couch
from server.store.embedded_couch import EmbeddedCouch, free_port

from .street import hashed
from .sync_harness import login, serve, stop

Doc = dict[str, Any]
C1 = "community:c1"
NOW = dt.datetime(2026, 12, 1, 7, 0, tzinfo=rules.LOCAL)  # a Tuesday, 07:00 China time
WORKER, VOLUNTEER, SECRETARY = "user:wangge01", "user:zhiyuan01a", "user:shuji1"
RESIDENT = "resident:c1-g01-0002-1"
PASSWORD = "demo-password"


def resource(**rules_: Any) -> Doc:
    """A hall open 8-20 every day, with two blackouts on one day (Wednesday 2 December 9-10 and 14-16)."""
    return {"_id": f"resource:hall-{uuid.uuid4().hex[:8]}", "type": "resource", "street": STREET_ID,
            "community": C1, "name": "活动室", "kind": "room", "owner_kind": "community", "owner": C1,
            "place": "社区中心二楼", "capacity": 30,
            "open_hours": [{"weekday": d, "opens": 8, "closes": 20} for d in range(7)],
            "blackouts": [{"date": "2026-12-02", "from_hour": 9, "to_hour": 10, "reason": "消防检查"},
                          {"date": "2026-12-02", "from_hour": 14, "to_hour": 16, "reason": "维修"}],
            "who_may_book": ["resident", "volunteer", "grid_worker", "secretary"], "book_ahead_days": 30,
            "max_hours": 3, "approval": False, "grace_minutes": 15, "keepers": [WORKER],
            "created_by": SECRETARY, "created_at": NOW.isoformat(), **rules_}


def at(day: int, hour: int) -> dt.datetime:
    return dt.datetime(2026, 12, day, hour, tzinfo=rules.LOCAL)


def slot(res: Doc, start: dt.datetime, by: str = VOLUNTEER, hours: int = 1, **extra: Any) -> Doc:
    return {"_id": rules.slot_id(res["_id"], start), "type": "booking", "street": STREET_ID, "community": C1,
            "resource": res["_id"], "slot_start": start.isoformat(), "group": rules.slot_id(res["_id"], start),
            "hours": hours, "people": 5, "status": "confirmed", "booked_by": by, "created_at": NOW.isoformat(),
            **extra}


# ---------------------------------------------------------------- the pure rules

def test_every_reason_a_slot_may_not_be_booked_is_named() -> None:
    res = resource()
    volunteer = {"volunteer"}
    assert rules.booking_refusal(slot(res, at(3, 10)), res, volunteer, NOW) is None
    cases = {
        "pool_past": slot(res, at(1, 6)),
        "pool_too_far": slot(res, at(31, 10) + dt.timedelta(days=1)),
        "pool_closed": slot(res, at(3, 21)),
        "pool_blackout": slot(res, at(2, 15)),
        "pool_over_capacity": {**slot(res, at(3, 10)), "people": 31},
        "pool_too_long": slot(res, at(3, 10), hours=4),
        "pool_status": {**slot(res, at(3, 10)), "status": "requested"},
        "pool_slot_id": {**slot(res, at(3, 10)), "slot_start": at(3, 11).isoformat()},
    }
    for key, booking in cases.items():
        assert rules.booking_refusal(booking, res, volunteer, NOW)[0] == key, key
    assert rules.booking_refusal(slot(res, at(3, 10)), resource(who_may_book=["resident"]), volunteer,
                                 NOW) == ("pool_no_resource", {})  # another resource's slot id
    only_residents = {**res, "who_may_book": ["resident"]}
    assert rules.booking_refusal(slot(res, at(3, 10)), only_residents, volunteer, NOW)[0] == "pool_not_for_you"


def test_several_blackouts_on_one_day_all_count() -> None:
    res = resource()
    blocked = rules.blocked_hours_on(res, dt.date(2026, 12, 2))
    assert sorted(blocked) == [9, 14, 15] and blocked[9] == "消防检查" and blocked[15] == "维修"
    for hour in (9, 14, 15):
        assert rules.booking_refusal(slot(res, at(2, hour)), res, {"volunteer"}, NOW)[0] == "pool_blackout"
    december = rules.month_of(res, "2026-12", {})
    assert december.open == 31 * 12 and december.blocked == 3 and december.usable == 31 * 12 - 3


def test_a_no_show_is_not_use() -> None:
    res = resource()
    booked = {f"202612{d:02d}10": "no_show" for d in range(1, 32)}
    no_shows = rules.month_of(res, "2026-12", booked)
    assert no_shows.used == 0 and no_shows.no_show == 31 and no_shows.idle == 1.0
    used = rules.month_of(res, "2026-12", {h: "used" for h in booked})
    assert used.used == 31 and used.idle == pytest.approx(1 - 31 / (31 * 12 - 3))


def test_two_idle_months_flag_one_does_not() -> None:
    res = resource(blackouts=[])
    busy = {f"202611{d:02d}{h:02d}": "used" for d in range(1, 31) for h in range(8, 20)}
    november_busy = rules.month_of(res, "2026-11", busy)
    october_idle, november_idle = rules.month_of(res, "2026-10", {}), rules.month_of(res, "2026-11", {})
    assert november_busy.idle == 0.0 and october_idle.idle == 1.0
    assert rules.flagged([october_idle, november_idle])
    assert not rules.flagged([october_idle, november_busy])
    assert not rules.flagged([november_idle])  # one month alone does not
    assert rules.suggestion(res, [october_idle, november_idle]) == "pool_suggest_hours"
    assert rules.suggestion({**res, "who_may_book": ["secretary"]}, [october_idle]) == "pool_suggest_open"


SECRET = "the hall's secret"
TODAYS_CODE = rules.day_code(SECRET, dt.date(2026, 12, 1))


def test_a_check_in_needs_the_venues_code_of_the_day_and_its_time() -> None:
    res = {**resource(), "code_hashes": rules.code_hashes(SECRET, dt.date(2026, 11, 30))}
    first = slot(res, at(1, 10))
    checkin = {"_id": rules.checkin_id(first["_id"]), "resource": res["_id"], "booking": first["_id"],
               "method": "scan", "code": TODAYS_CODE.lower(), "created_by": VOLUNTEER,
               "created_at": at(1, 10).isoformat()}
    assert rules.checkin_refusal(VOLUNTEER, False, checkin, first, res) is None
    assert rules.checkin_refusal(VOLUNTEER, False, {**checkin, "code": "ABCDEFGH2346"}, first,
                                 res)[0] == "pool_checkin_code"
    # A code seen once checks in on its day only: yesterday's, tomorrow's, a day beyond the hashes' reach.
    for day in (dt.date(2026, 11, 30), dt.date(2026, 12, 2), dt.date(2027, 1, 1)):
        other = rules.day_code(SECRET, day)
        assert other != TODAYS_CODE and rules.checkin_refusal(VOLUNTEER, False, {**checkin, "code": other}, first,
                                                              res)[0] == "pool_checkin_code", day
        later = slot(res, dt.datetime.combine(day, dt.time(10), rules.LOCAL))
        on_its_day = {**checkin, "_id": rules.checkin_id(later["_id"]), "booking": later["_id"], "code": other,
                      "created_at": later["slot_start"]}
        assert (rules.checkin_refusal(VOLUNTEER, False, on_its_day, later, res) is None) == (
            day <= dt.date(2026, 11, 30) + dt.timedelta(days=rules.CODE_DAYS_AHEAD)), day
    assert len({rules.day_code(SECRET, dt.date(2026, 1, 1) + dt.timedelta(days=n)) for n in range(365)}) == 365
    assert rules.checkin_refusal(WORKER, True, checkin, first, res)[0] == "pool_checkin_not_yours"
    late = {**checkin, "created_at": at(1, 10).replace(minute=16).isoformat()}
    assert rules.checkin_refusal(VOLUNTEER, False, late, first, res)[0] == "pool_checkin_window"
    assert rules.checkin_refusal(WORKER, False, {**checkin, "method": "keeper"}, first, res) is None  # a keeper
    assert rules.checkin_refusal("user:zhiyuan01b", False, {**checkin, "method": "keeper"}, first,
                                 res)[0] == "pool_checkin_not_keeper"


# ---------------------------------------------------------------- the acts, on the real pouchdb-server

def user(user_id: str, *roles: str, resident: str | None = None) -> Doc:
    return {"_id": user_id, "roles": list(roles), "street": STREET_ID, "communities": [C1] if not resident else [],
            "grids": [], **({"resident": resident} if resident else {})}


def stored(couch: Couch) -> dict[str, str]:
    return {row["id"]: row["value"]["rev"] for row in couch.main.all(include_docs="false", as_list=True)}


def added_hall(couch: Couch, keys: KeyStore, now: dt.datetime) -> Doc:
    res = resource()
    pool.add_resource(couch, keys, res, now)
    return couch.main.get(res["_id"])


@pytest.fixture(name="hall")
def hall_fixture(demo_loaded: Couch, keys: KeyStore) -> Doc:
    return added_hall(demo_loaded, keys, NOW)


@pytest.fixture(name="live_hall")
def live_hall_fixture(demo_loaded: Couch, keys: KeyStore) -> Doc:
    """The hall beside a served `linli serve`, its check-in codes made at the run's time: its minute clock then has
    none to renew while a test compares what is stored (made at NOW, the clock renewed them mid-test in a run on
    2 December: seed 38)."""
    now = dt.datetime.now(rules.LOCAL)
    hall = added_hall(demo_loaded, keys, now)
    assert not rules.codes_due(hall, now.date())  # the minute clock's test (pool.renew_codes)
    return hall


def test_booking_cancelling_and_the_waitlist(demo_loaded: Couch, hall: Doc) -> None:
    resident = user("user:jumin1", "resident", resident=RESIDENT)
    volunteer = user(VOLUNTEER, "volunteer")
    docs = pool.book(demo_loaded, resident, hall["_id"], at(3, 10), 2, 12, "太极拳", NOW)
    assert [d["status"] for d in docs] == ["confirmed", "confirmed"] and docs[1]["group"] == docs[0]["_id"]
    before = stored(demo_loaded)
    for start, hours, key in ((at(3, 11), 1, "pool_slot_taken"), (at(3, 9), 2, "pool_slot_taken"),
                              (at(2, 14), 1, "pool_blackout"), (at(3, 7), 1, "pool_closed"),
                              (at(1, 6), 1, "pool_past"), (at(4, 9), 4, "pool_too_long")):
        with pytest.raises(pool.PoolError) as refused:
            pool.book(demo_loaded, volunteer, hall["_id"], start, hours, 5, "", NOW)
        assert refused.value.errors[0].key == key, (start, key)
    assert stored(demo_loaded) == before  # nothing stored changed
    pool.join_waitlist(demo_loaded, volunteer, docs[1]["_id"])
    with pytest.raises(pool.PoolError) as refused:
        pool.cancel(demo_loaded, volunteer, docs[0]["_id"], NOW)
    assert refused.value.errors[0].key == "pool_not_yours"
    pool.cancel(demo_loaded, resident, docs[0]["_id"], NOW)
    first, second = (demo_loaded.main.get(d["_id"]) for d in docs)
    assert first["status"] == "cancelled"
    assert second["status"] == "confirmed" and second["booked_by"] == VOLUNTEER and second["hours"] == 1
    assert pool.bookings_of(demo_loaded, VOLUNTEER)[0]["_id"] == second["_id"]
    again = pool.book(demo_loaded, volunteer, hall["_id"], at(3, 10), 1, 5, "", NOW)  # a cancelled slot is free
    assert again[0]["booked_by"] == VOLUNTEER


def test_the_keeper_approves_and_a_no_show_releases_the_slot(demo_loaded: Couch, hall: Doc) -> None:
    demo_loaded.main.save({**hall, "approval": True})
    resident = user("user:jumin1", "resident", resident=RESIDENT)
    [booked] = pool.book(demo_loaded, resident, hall["_id"], at(1, 8), 1, 3, "", NOW)
    assert booked["status"] == "requested"
    assert [d["_id"] for d in pool.to_approve(demo_loaded, hall)] == [booked["_id"]]
    with pytest.raises(pool.PoolError) as refused:
        pool.decide(demo_loaded, Principal.of(user(VOLUNTEER, "volunteer")), booked["_id"], True, NOW)
    assert refused.value.errors[0].key == "pool_not_keeper"
    pool.decide(demo_loaded, Principal.of(user(WORKER, "grid_worker")), booked["_id"], True, NOW)
    assert demo_loaded.main.get(booked["_id"])["status"] == "confirmed"
    assert pool.sweep_no_shows(demo_loaded, at(1, 8).replace(minute=14)) == 0  # still within its grace
    assert pool.sweep_no_shows(demo_loaded, at(1, 8).replace(minute=16)) == 1
    assert demo_loaded.main.get(booked["_id"])["status"] == "no_show"
    uses = pool_months.slot_uses(demo_loaded, hall, ["2026-12"])
    assert uses == {"2026120108": "no_show"}


def test_check_in_by_code_counts_as_use_a_forged_code_does_not(demo_loaded: Couch, hall: Doc, keys: KeyStore) -> None:
    volunteer = user(VOLUNTEER, "volunteer")
    [booked] = pool.book(demo_loaded, volunteer, hall["_id"], at(1, 9), 1, 3, "", NOW)
    before = stored(demo_loaded)
    with pytest.raises(pool.PoolError) as refused:
        pool.check_in(demo_loaded, volunteer, booked["_id"], "scan", "ZZZZZZZZZZZZ", at(1, 9))
    assert refused.value.errors[0].key == "pool_checkin_code" and stored(demo_loaded) == before
    code = pool.venue_code(keys, hall["_id"], at(1, 9))  # the keeper's page shows it
    assert code == rules.day_code(rules.venue_secret(keys.code_key(), hall["_id"]), at(1, 9).date())
    pool.check_in(demo_loaded, volunteer, booked["_id"], "scan", code.lower(), at(1, 9).replace(minute=5))
    assert pool.sweep_no_shows(demo_loaded, at(1, 10)) == 0
    assert pool_months.slot_uses(demo_loaded, hall, ["2026-11", "2026-12"]) == {"2026120109": "used"}
    [row] = [r for r in pool.board(demo_loaded, C1, at(1, 12) + dt.timedelta(days=31), months=1)
             if r["resource"]["_id"] == hall["_id"]]
    assert row["months"][0].used == 1 and row["months"][0].blocked == 3


def test_the_board_reads_a_resources_months_by_id_a_booking_begun_the_evening_before_included(
        demo_loaded: Couch, hall: Doc) -> None:
    """slot_uses reads slots and check-ins by id range: a booking from 23:00 on 30 November into 1 December is used
    in December (its check-in, named by its first hour, lies before the month); other months and resources not."""
    first = dt.datetime(2026, 11, 30, 23, tzinfo=rules.LOCAL)
    late = slot(hall, first, hours=2)
    other = resource()
    demo_loaded.main.save(other)
    docs = [late, {**late, "_id": rules.slot_id(hall["_id"], first + rules.SLOT),
                   "slot_start": (first + rules.SLOT).isoformat()},
            slot(hall, at(2, 8), status="no_show"), slot(hall, at(2, 9), status="cancelled"), slot(hall, at(3, 8)),
            slot(hall, dt.datetime(2027, 1, 1, 8, tzinfo=rules.LOCAL)), slot(other, at(2, 8))]
    for doc in docs:
        demo_loaded.main.save(doc)
    demo_loaded.main.save({"_id": rules.checkin_id(late["_id"]), "type": "checkin", "street": STREET_ID,
                           "community": C1, "resource": hall["_id"], "booking": late["_id"], "method": "keeper",
                           "created_by": WORKER, "created_at": first.isoformat()})
    assert pool_months.slot_uses(demo_loaded, hall, ["2026-12"]) == {
        "2026120100": "used", "2026120208": "no_show", "2026120308": "booked"}


# ---------------------------------------------------------------- two phones, one slot, offline

@pytest.fixture(name="gateway_url")
def gateway_url_fixture(couch_server: EmbeddedCouch, demo_loaded: Couch, settings: Settings) -> Iterator[str]:
    served = serve(couch_server.url, settings, free_port())
    yield served.url
    stop(served)


def push(url: str, phone: tuple[str, str], docs: list[Doc]) -> list[Doc]:
    """What a phone's replication sends: revisions of its own (new_edits=false)."""
    cookie, csrf = phone
    answer = httpx2.post(url + "sync/main/_bulk_docs", json={"docs": docs, "new_edits": False}, timeout=30,
                         headers={"Cookie": cookie, "X-CSRF-Token": csrf})
    assert answer.status_code == 201, answer.text
    return answer.json()


def offline(doc: Doc, rev: str) -> Doc:
    return {**doc, "_rev": f"1-{rev * 32}", "_revisions": {"start": 1, "ids": [rev * 32]}}


def test_no_copy_of_the_data_and_no_client_holds_a_venues_secret_or_its_codes_to_come(
        gateway_url: str, demo_loaded: Couch, live_hall: Doc, keys: KeyStore) -> None:
    """The venue's codes' secret is stored nowhere, and neither is a code of a day to come: not in either database,
    not in what a phone pulls through the sync gateway (everything its user may see), not in its session. Only the
    hall's keeper's session holds the coming week's codes (their phone shows the day's offline), never the secret."""
    secret = rules.venue_secret(keys.code_key(), live_hall["_id"])
    today = dt.datetime.now(rules.LOCAL).date()
    to_come = [rules.day_code(secret, today + dt.timedelta(days=n)) for n in range(1, rules.SHEET_DAYS)]

    def leaked(text: str) -> list[str]:
        return [s for s in (secret, *to_come) if s in text]

    demo_loaded.accounts.save(accounts.make_user("jumin1", "居民甲", [Role.RESIDENT], STREET_ID,
                                                 hashed(PASSWORD), resident=RESIDENT))
    for db in (demo_loaded.main, demo_loaded.accounts):
        assert leaked(json.dumps([r["doc"] for r in db.all(as_list=True)], ensure_ascii=False)) == [], db.name
    for username in ("zhiyuan01a", "jumin1", "shuji1", "wangge01"):
        cookie, _ = login(gateway_url, username, PASSWORD)
        with httpx2.Client(base_url=gateway_url, headers={"Cookie": cookie}, timeout=60) as phone:
            pulled = phone.get("sync/main/_changes", params={"include_docs": "true", "style": "all_docs"})
            others = phone.get("sync/linli_accounts/_all_docs", params={"include_docs": "true"})
            session = phone.get("pwa/session.json")
        assert pulled.status_code == 200 and session.status_code == 200, (pulled.text, session.text)
        assert live_hall["_id"] in pulled.text and others.status_code in (403, 404)  # the hall is theirs to see
        assert leaked(pulled.text) == [], username
        codes = session.json()["pool"]["codes"]
        if username == "wangge01":  # the keeper: the week's codes, as their printed sheet
            assert codes[live_hall["_id"]] == rules.week_codes(secret, today) and secret not in session.text
        else:
            assert leaked(session.text) == [] and live_hall["_id"] not in codes, username


def test_two_phones_book_one_slot_offline_one_booking_and_a_listed_conflict(gateway_url: str, demo_loaded: Couch,
                                                                          live_hall: Doc) -> None:
    now = dt.datetime.now(rules.LOCAL)
    start = (now + dt.timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    made = now.isoformat()
    worker_phone, volunteer_phone = login(gateway_url, "wangge01", PASSWORD), login(gateway_url, "zhiyuan01a", PASSWORD)
    mine = {**slot(live_hall, start, by=WORKER), "created_at": made}
    theirs = {**slot(live_hall, start, by=VOLUNTEER), "created_at": made, "people": 8}
    assert push(gateway_url, worker_phone, [offline(mine, "a")]) == []
    assert push(gateway_url, volunteer_phone, [offline(theirs, "b")]) == []  # its own branch: kept
    held = demo_loaded.main.get(mine["_id"], conflicts="true")
    assert len(held["_conflicts"]) == 1  # one document, two branches: never two bookings
    assert pool.conflicts_of(demo_loaded, live_hall) == [mine["_id"]]
    [hour] = [h for h in pool.day_view(demo_loaded, live_hall, start.date()) if h["hour"] == 10]
    assert hour["state"] == "conflict"
    # Who lost cannot take the slot by editing the kept booking (a revision descending from it): refused.
    loser, loser_phone = (VOLUNTEER, volunteer_phone) if held["booked_by"] == WORKER else (WORKER, worker_phone)
    taken = {**held, "_rev": "2-" + "c" * 32, "_revisions": {"start": 2, "ids": ["c" * 32, held["_rev"][2:]]},
             "booked_by": loser}
    del taken["_conflicts"]
    [refused] = push(gateway_url, loser_phone, [taken])
    assert refused["error"] == "forbidden" and "This slot is booked" in refused["reason"], refused


def test_a_resident_books_offline_for_their_own_household_and_syncs(gateway_url: str, demo_loaded: Couch,
                                                                    live_hall: Doc) -> None:
    """A resident's phone books offline (pages.js poolBook) and syncs: a booking naming their own record is taken,
    held to the resource's rules; one naming another resident, or none, is refused, nothing stored."""
    demo_loaded.accounts.save(accounts.make_user("jumin1", "居民甲", [Role.RESIDENT], STREET_ID,
                                                 hashed(PASSWORD), resident=RESIDENT))
    start = (dt.datetime.now(rules.LOCAL) + dt.timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    phone = login(gateway_url, "jumin1", PASSWORD)
    mine = {**slot(live_hall, start, by="user:jumin1"), "resident": RESIDENT, "created_at": dt.datetime.now(rules.LOCAL)
            .isoformat()}
    other = demo_loaded.main.get(RESIDENT.replace("-0002-1", "-0003-1"))["_id"]
    before = stored(demo_loaded)
    closed = {**slot(live_hall, start.replace(hour=21), by="user:jumin1"), "resident": RESIDENT}
    for doc, why in (({**mine, "resident": other}, "may not write"), ({k: v for k, v in mine.items()
                                                                       if k != "resident"}, "may not write"),
                     (closed, "not open then")):
        [refused] = push(gateway_url, phone, [offline(doc, "a")])
        assert refused["error"] == "forbidden" and why in refused["reason"].lower(), refused
    assert stored(demo_loaded) == before
    assert push(gateway_url, phone, [offline(mine, "b")]) == []
    booked = demo_loaded.main.get(mine["_id"])
    assert booked["resident"] == RESIDENT and booked["status"] == "confirmed" and booked["booked_by"] == "user:jumin1"


def test_a_forged_check_in_code_is_refused_at_sync(gateway_url: str, demo_loaded: Couch, live_hall: Doc,
                                                   keys: KeyStore) -> None:
    now = dt.datetime.now(rules.LOCAL)
    start = now.replace(minute=0, second=0, microsecond=0)
    # Open at this hour whenever the test runs: every hour of every day, and no blackout (the hall's own, on
    # 2026-12-02 from 9 to 10, refused the booking of a run that reached this test then).
    demo_loaded.main.save({**live_hall, "open_hours": [{"weekday": d, "opens": 0, "closes": 24} for d in range(7)],
                           "blackouts": []})
    [booked] = pool.book(demo_loaded, user(VOLUNTEER, "volunteer"), live_hall["_id"], start, 1, 2, "",
                         start)  # booked at the hour's start, checked in within its grace below
    checkin = {"_id": rules.checkin_id(booked["_id"]), "type": "checkin", "street": STREET_ID, "community": C1,
               "resource": live_hall["_id"], "booking": booked["_id"], "method": "scan", "code": "FORGED234567",
               "created_by": VOLUNTEER, "created_at": min(now, start + dt.timedelta(minutes=10)).isoformat()}
    phone = login(gateway_url, "zhiyuan01a", PASSWORD)
    [refused] = push(gateway_url, phone, [offline(checkin, "d")])
    assert refused["error"] == "forbidden" and "Wrong check-in code" in refused["reason"], refused
    secret = rules.venue_secret(keys.code_key(), live_hall["_id"])
    yesterday = rules.day_code(secret, start.date() - dt.timedelta(days=1))  # seen once: not today's
    [refused] = push(gateway_url, phone, [offline({**checkin, "code": yesterday}, "e")])
    assert refused["error"] == "forbidden" and "Wrong check-in code" in refused["reason"], refused
    today = rules.day_code(secret, now.date())
    assert push(gateway_url, phone, [offline({**checkin, "code": today}, "f")]) == []
    assert demo_loaded.main.get(checkin["_id"])["method"] == "scan"
