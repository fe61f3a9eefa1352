"""The resource pool's pure rules (server/domain/pool.py, issue 17) at their bounds: what test_pool.py's acts and the
sync gateway's write rules (test_placement.py) reach only in the middle. In-process and fast: the mutation run
(tests/mutation/modules/server.domain.pool.toml) runs them once per mutant."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time
from typing import Any

import pytest

from server.domain import pool as rules
from server.domain.declaration import BOOKER_KINDS, RESOURCE_KINDS, RESOURCE_OWNER_KINDS

Doc = dict[str, Any]
NOW = dt.datetime(2026, 12, 1, 7, 0, tzinfo=rules.LOCAL)  # a Tuesday, 07:00 China time
HALL = "resource:hall"


def hall(**changed: Any) -> Doc:
    """A hall of community c1 open 8-20 every day, for 10 people, 3 hours at most, 30 days ahead, 15 minutes' grace."""
    return {"_id": HALL, "type": "resource", "community": "community:c1", "capacity": 10,
            "open_hours": [{"weekday": d, "opens": 8, "closes": 20} for d in range(7)],
            "who_may_book": ["volunteer"], "book_ahead_days": 30, "max_hours": 3, "approval": False,
            "grace_minutes": 15, **changed}


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 12, day, hour, minute, tzinfo=rules.LOCAL)


def booking(start: dt.datetime, first: dt.datetime | None = None, hours: int = 1, **changed: Any) -> Doc:
    """One slot (`start`) of a booking of `hours` hours from `first` (its group)."""
    return {"_id": rules.slot_id(HALL, start), "type": "booking", "community": "community:c1", "resource": HALL,
            "slot_start": start.isoformat(), "group": rules.slot_id(HALL, first or start), "hours": hours,
            "people": 4, "status": "confirmed", "booked_by": "user:v", **changed}


def refusal(b: Doc, resource: Doc | None = None, kinds: frozenset[str] = frozenset({"volunteer"}),
            now: dt.datetime = NOW) -> str | None:
    refused = rules.booking_refusal(b, hall() if resource is None else resource, set(kinds), now)
    return refused[0] if refused else None


def test_a_slot_is_one_hour_of_its_booking_named_by_the_hour_it_starts() -> None:
    assert rules.slot_id(HALL, at(3, 10).astimezone(dt.UTC)) == "booking:hall:2026120310"  # China time
    assert rules.checkin_id("booking:hall:2026120310") == "checkin:hall:2026120310"
    assert rules.slots_of(at(3, 10), 3) == [at(3, 10), at(3, 11), at(3, 12)]
    assert refusal(booking(at(3, 12), first=at(3, 10), hours=3)) is None  # the third hour of three
    for wrong in (booking(at(3, 13), first=at(3, 10), hours=3),  # past its booking's last hour
                  booking(at(3, 9), first=at(3, 10), hours=3),  # before its first
                  booking(at(3, 10), hours=0), booking(at(3, 10), hours=True), booking(at(3, 10), hours="1"),
                  {**booking(at(3, 10)), "group": "booking:hall:20261203"},  # no hour in the group id
                  {**booking(at(3, 10)), "group": "booking:other:2026120310"},  # another resource's group
                  {k: v for k, v in booking(at(3, 10)).items() if k != "group"},
                  {**booking(at(3, 10)), "slot_start": at(3, 10, 30).isoformat(),
                   "_id": rules.slot_id(HALL, at(3, 10, 30))},  # not on the hour
                  {**booking(at(3, 10)), "slot_start": (at(3, 10) + dt.timedelta(seconds=5)).isoformat()},
                  {**booking(at(3, 10)), "slot_start": "2026-12-03T10:00:00"},  # no offset from UTC
                  {**booking(at(3, 10)), "slot_start": "2026-12-03T10:00:00",  # … under the id made from it
                   "_id": rules.slot_id(HALL, dt.datetime(2026, 12, 3, 10))},
                  {**booking(at(3, 10)), "slot_start": "tomorrow"}, {**booking(at(3, 10)), "slot_start": None}):
        assert refusal(wrong) == "pool_slot_id", wrong


def test_a_slot_is_on_the_hour_in_china_time_whatever_the_servers_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server set to a zone half an hour off China time (India's, +05:30) still takes 10:00 China time as on the
    hour: the rule reads the hour in China time, not in the machine's zone."""
    monkeypatch.setenv("TZ", "IST-5:30")  # POSIX form: no zone database needed
    time.tzset()
    try:
        assert dt.datetime(2026, 12, 3, 2, tzinfo=dt.UTC).astimezone().minute == 30  # the zone is in force
        assert refusal(booking(at(3, 10))) is None
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_booking_names_a_resource_that_exists_in_its_community() -> None:
    assert refusal(booking(at(3, 10))) is None  # the positive control
    for resource in (None, {**hall(), "type": "reward"}, {**hall(), "_deleted": True},
                     {**hall(), "community": "community:c2"}, {**hall(), "_id": "resource:other"}):
        assert rules.booking_refusal(booking(at(3, 10)), resource, {"volunteer"}, NOW) == ("pool_no_resource", {})


def test_the_hour_under_way_may_still_be_booked_and_the_last_day_ahead_too() -> None:
    now = at(3, 10, 59)
    assert refusal(booking(at(3, 10)), now=now) is None  # the hour under way, for what is left of it
    assert refusal(booking(at(3, 10)), now=at(3, 11)) == "pool_past"
    assert refusal(booking(at(3, 11), first=at(3, 10), hours=2), now=at(3, 11)) == "pool_past"  # begun: its group's
    all_day = hall(open_hours=[{"weekday": d, "opens": 0, "closes": 24} for d in range(7)])
    assert refusal(booking(at(31, 7)), all_day) is None  # 30 days ahead exactly (book_ahead_days)
    assert rules.booking_refusal(booking(at(31, 8)), all_day, {"volunteer"}, NOW) == ("pool_too_far", {"days": 30})
    assert rules.booking_refusal(booking(at(3, 10), hours=4), hall(), {"volunteer"}, NOW) == ("pool_too_long",
                                                                                              {"max": 3})
    assert refusal(booking(at(3, 10), hours=3)) is None  # max_hours exactly


def test_a_booking_holds_one_to_capacity_people_and_the_status_its_resource_asks() -> None:
    for people, allowed in ((1, True), (10, True), (0, False), (11, False), (True, False), ("4", False)):
        assert (refusal(booking(at(3, 10), people=people)) is None) == allowed, people
    assert rules.booking_refusal(booking(at(3, 10), people=11), hall(), {"volunteer"}, NOW) == \
        ("pool_over_capacity", {"capacity": 10})
    assert refusal(booking(at(3, 10), status="requested"), hall(approval=True)) is None  # awaiting the keeper
    assert refusal(booking(at(3, 10)), hall(approval=True)) == "pool_status"
    assert refusal(booking(at(3, 10)), kinds=frozenset({"secretary", "grid_worker"})) == "pool_not_for_you"
    assert refusal(booking(at(3, 10)), kinds=frozenset({"secretary", "volunteer"})) is None


def test_what_someone_books_as_is_their_working_roles_and_resident_for_their_own_household() -> None:
    assert rules.booker_kinds(["volunteer", "grid_worker", "secretary", "admin", "partner"], resident=False) == \
        {"volunteer", "grid_worker", "secretary"}
    assert rules.booker_kinds(["resident"], resident=False) == set()  # a role is not a household
    assert rules.booker_kinds([], resident=True) == {"resident"}


def test_open_hours_and_blackouts_are_clamped_to_the_day_and_read_as_runs() -> None:
    tuesday = dt.date(2026, 12, 1)
    odd = hall(open_hours=[{"weekday": 1, "opens": -2, "closes": 3}, {"weekday": 1, "opens": 22, "closes": 30},
                           {"weekday": 1, "opens": 9, "closes": 12}, {"weekday": 1, "opens": 14, "closes": 18},
                           {"weekday": 2, "opens": 5, "closes": 6}],
               blackouts=[{"date": "2026-12-01", "from_hour": -1, "to_hour": 1},
                          {"date": "2026-12-01", "from_hour": 23, "to_hour": 25, "reason": "检修"},
                          {"date": "2026-12-02", "from_hour": 9, "to_hour": 10}])
    assert rules.open_hours_on(odd, tuesday) == {0, 1, 2, 9, 10, 11, 14, 15, 16, 17, 22, 23}
    assert rules.opening_text(odd, tuesday) == "0-3, 9-12, 14-18, 22-24"
    assert rules.opening_text(odd, dt.date(2026, 12, 3)) == "-"  # closed all Thursday
    assert rules.blocked_hours_on(odd, tuesday) == {0: "", 23: "检修"}
    assert rules.booking_refusal(booking(at(1, 0)), odd, {"volunteer"}, at(1, 0)) == ("pool_blackout",
                                                                                      {"reason": "-"})  # none given
    assert rules.booking_refusal(booking(at(1, 23)), odd, {"volunteer"}, at(1, 20)) == ("pool_blackout",
                                                                                        {"reason": "检修"})
    assert rules.booking_refusal(booking(at(3, 21)), odd, {"volunteer"}, NOW) == ("pool_closed", {"hours": "-"})


def test_blackouts_are_read_as_people_type_them_and_shown_back_the_same() -> None:
    text = "2026-12-05 9-12 消防 检查\n\n2026-12-06 14–16\n2026-12-07 0-24 " + "长" * 150
    records, bad = rules.parse_blackouts(text)
    assert records == [{"date": "2026-12-05", "from_hour": 9, "to_hour": 12, "reason": "消防 检查"},
                       {"date": "2026-12-06", "from_hour": 14, "to_hour": 16},
                       {"date": "2026-12-07", "from_hour": 0, "to_hour": 24, "reason": "长" * 100}] and bad == []
    assert rules.parse_blackouts(rules.blackouts_text({"blackouts": records}))[0] == records
    assert rules.blackouts_text({"blackouts": records[:2]}) == "2026-12-05 9-12 消防 检查\n2026-12-06 14-16"
    lines = ["2026-12-05 9-12", "2026-13-05 9-12", "2026-12-05", "2026-12-05 12-9", "2026-12-05 9-9",
             "2026-12-05 -1-3", "2026-12-05 20-25", "2026-12-05 a-b", "2026-12-05 9", "2026-12-05 9-12   "]
    records, bad = rules.parse_blackouts("\n".join(lines))
    assert bad == [2, 3, 4, 5, 6, 7, 8, 9] and len(records) == 2 and "reason" not in records[1]


def test_a_venues_code_changes_daily_and_its_resource_holds_two_weeks_back_and_one_ahead() -> None:
    secret, today = "the hall's secret", dt.date(2026, 12, 1)
    code = rules.day_code(secret, today)
    assert len(code) == rules.CODE_LENGTH and set(code) <= set(rules.CODE_ALPHABET)
    assert rules.day_code("another secret", today) != code
    assert rules.week_codes(secret, today) == [{"date": (today + dt.timedelta(days=n)).isoformat(),
                                                "code": rules.day_code(secret, today + dt.timedelta(days=n))}
                                               for n in range(7)]
    hashes = rules.code_hashes(secret, today)
    assert [h["date"] for h in hashes] == [(today + dt.timedelta(days=n)).isoformat() for n in range(-14, 8)]
    assert hashes[14]["hash"] == rules.code_hash(code) == rules.code_hash(f"  {code.lower()} ")
    resource = {"code_hashes": hashes}
    assert rules.code_matches(resource, today.isoformat(), code)
    assert not rules.code_matches(resource, "2026-12-02", code) and not rules.code_matches({}, today.isoformat(), code)
    assert not rules.codes_due(resource, today) and not rules.codes_due(resource, today + dt.timedelta(days=0))
    assert rules.codes_due(resource, today + dt.timedelta(days=1))  # the last hash 6 days ahead: renew
    assert rules.codes_due({}, today)


def test_a_venues_secret_is_derived_from_the_code_key_and_differs_per_venue() -> None:
    """Stored nowhere (a copy of the database makes no code): HMAC-SHA256 of the venue's id under the installation's
    code key, stated here independently of the module."""
    key, other_key = bytes(range(32)), bytes(range(1, 33))
    secret = rules.venue_secret(key, "resource:c1-hall")
    assert secret == hmac.new(key, b"linli venue secret resource:c1-hall", hashlib.sha256).hexdigest()
    assert secret != rules.venue_secret(key, "resource:c1-room") != rules.venue_secret(other_key, "resource:c1-room")


def test_an_edit_descends_from_the_stored_revision_a_branch_does_not() -> None:
    old = {"_rev": "2-b"}
    assert rules.descends_from({"_rev": "3-c", "_revisions": {"start": 3, "ids": ["c", "b", "a"]}}, old)
    assert rules.descends_from({"_rev": "2-b"}, old)  # the stored revision itself
    assert not rules.descends_from({"_rev": "2-x", "_revisions": {"start": 2, "ids": ["x", "a"]}}, old)
    assert not rules.descends_from({"_rev": "3-c", "_revisions": {"start": 4, "ids": ["c", "b"]}}, old)
    assert not rules.descends_from({"_rev": "1-z"}, old)
    # A history without its start (CouchDB always sends it) places no revision: not the stored one's first
    assert not rules.descends_from({"_rev": "2-x", "_revisions": {"ids": ["a"]}}, {"_rev": "1-a"})


def test_a_check_in_counts_from_half_an_hour_before_until_the_grace_period_ends() -> None:
    first = booking(at(3, 10))
    for when, counts in ((at(3, 9, 30), True), (at(3, 9, 29), False), (at(3, 10, 15), True),
                         (at(3, 10, 15) + dt.timedelta(seconds=1), False)):
        assert rules.checkin_open(first, hall(), when) == counts, when


def test_a_scan_checks_the_venues_code_of_its_day_in_china_time() -> None:
    """The code of the day the scan was made, in China time whatever the server's zone (06:45 on 3 December is
    still 2 December in UTC); a scan time without its offset from UTC has no day, so no code matches it."""
    secret = "the hall's secret"
    resource = {**hall(), "code_hashes": rules.code_hashes(secret, dt.date(2026, 12, 1))}
    early = booking(at(3, 7))
    scan = {"_id": rules.checkin_id(early["_id"]), "resource": HALL, "booking": early["_id"], "method": "scan",
            "code": rules.day_code(secret, dt.date(2026, 12, 3)), "created_at": at(3, 6, 45).isoformat()}
    assert rules.checkin_refusal("user:v", False, scan, early, resource) is None
    yesterdays = {**scan, "code": rules.day_code(secret, dt.date(2026, 12, 2))}
    assert rules.checkin_refusal("user:v", False, yesterdays, early, resource) == ("pool_checkin_code", {})
    for naive in ("2026-12-03T06:45:00", "2026-12-02T22:45:00"):
        assert rules.checkin_refusal("user:v", False, {**scan, "created_at": naive}, early,
                                     resource) == ("pool_checkin_code", {}), naive


def test_a_check_in_is_of_a_confirmed_first_slot_of_the_resource_it_names() -> None:
    first = booking(at(3, 10), status="confirmed")
    resource = {**hall(), "keepers": ["user:keeper"]}
    checkin = {"_id": rules.checkin_id(first["_id"]), "resource": HALL, "booking": first["_id"], "method": "keeper",
               "created_at": at(3, 10).isoformat()}
    assert rules.checkin_refusal("user:keeper", False, checkin, first, resource) is None  # the positive control
    assert rules.checkin_refusal("user:staff", True, checkin, first, resource) is None  # grid staff
    assert rules.checkin_refusal("user:v", False, checkin, first, resource) == ("pool_checkin_not_keeper", {})
    late = booking(at(3, 10), status="no_show")  # a no-show marked before a late phone synced
    assert rules.checkin_refusal("user:keeper", False, checkin, late, resource) is None
    for status in ("requested", "cancelled", "declined"):
        assert rules.checkin_refusal("user:keeper", False, checkin, {**first, "status": status},
                                     resource) == ("pool_checkin_not_confirmed", {}), status
    second = booking(at(3, 11), first=at(3, 10), hours=2)
    for wrong in ((checkin, None, resource), (checkin, first, None), (checkin, {**first, "type": "checkin"}, resource),
                  (checkin, {**first, "_deleted": True}, resource),
                  ({**checkin, "_id": rules.checkin_id(second["_id"]), "booking": second["_id"]}, second, resource),
                  ({**checkin, "_id": "checkin:hall:2026120311"}, first, resource),
                  ({**checkin, "resource": "resource:other"}, first, resource),
                  (checkin, first, {**resource, "_id": "resource:other"})):
        assert rules.checkin_refusal("user:keeper", False, *wrong) == ("pool_checkin_booking", {}), wrong
    for at_ in (None, "soon", "2026-12-03T10:00:00"):  # no time, or none with its offset from UTC
        assert rules.checkin_refusal("user:keeper", False, {**checkin, "created_at": at_}, first,
                                     resource) == ("pool_checkin_window", {"minutes": 15}), at_


def test_a_no_show_is_due_once_the_grace_period_of_a_confirmed_first_slot_is_over() -> None:
    first = booking(at(3, 10))
    assert not rules.no_show_due(first, hall(), at(3, 10, 14))
    assert rules.no_show_due(first, hall(), at(3, 10, 15))
    assert not rules.no_show_due({**first, "status": "requested"}, hall(), at(3, 12))
    assert not rules.no_show_due(booking(at(3, 11), first=at(3, 10), hours=2), hall(), at(3, 12))  # not its first


def test_an_idle_month_counts_only_open_unblocked_hours_and_the_flag_needs_more_than_30_percent() -> None:
    closed = rules.month_of(hall(open_hours=[]), "2026-12", {})
    assert (closed.open, closed.usable, closed.idle) == (0, 0, None)
    outside = rules.month_of(hall(), "2026-12", {"2026120306": "used", "2026120310": "booked"})
    assert (outside.used, outside.never_booked, outside.open) == (0, 31 * 12 - 1, 31 * 12)  # 06:00 is closed
    assert outside.month == "2026-12"
    month = rules.Month("2026-11", open=10, blocked=0, used=7, no_show=0, never_booked=3)
    assert month.idle == rules.IDLE_FLAG and not rules.flagged([month, month])  # 30% idle: not more than 30%
    idle = rules.Month("2026-12", open=10, blocked=0, used=6, no_show=0, never_booked=4)
    assert rules.flagged([month, idle, idle]) and not rules.flagged([idle, month])  # the last two months
    assert not rules.flagged([rules.Month("2026-12", 0, 0, 0, 0, 0)] * 2)  # never open: nothing to flag
    no_shows = rules.Month("2026-12", open=10, blocked=0, used=0, no_show=6, never_booked=4)
    assert rules.suggestion(hall(who_may_book=list(BOOKER_KINDS)), [no_shows]) == "pool_suggest_approval"
    even = rules.Month("2026-12", open=10, blocked=0, used=2, no_show=4, never_booked=4)
    assert rules.suggestion(hall(who_may_book=list(BOOKER_KINDS)), [even]) == "pool_suggest_hours"
    assert rules.suggestion(hall(), [even]) == "pool_suggest_open"


GOOD = {"name": "活动室", "place": "社区中心二楼", "kind": "room", "owner_kind": "community", "capacity": 30,
        "book_ahead_days": 30, "max_hours": 3, "grace_minutes": 15,
        "open_hours": [{"weekday": 0, "opens": 8, "closes": 20}], "who_may_book": ["resident"], "keepers": ["user:k"]}


def problems(**changed: Any) -> list[str]:
    keepers = changed.pop("_keepers", ["user:k", "user:j"])
    return [field for field, _, _ in rules.resource_problems({**GOOD, **changed}, RESOURCE_KINDS, RESOURCE_OWNER_KINDS,
                                                             BOOKER_KINDS, keepers)]


def test_a_resource_as_typed_is_checked_field_by_field() -> None:
    assert problems() == [] and problems(_keepers=None, keepers=["user:anyone"]) == []  # keepers not being set
    assert problems(keepers=["user:x"]) == ["keepers"]
    assert problems(keepers=["user:k"] * 11, _keepers=["user:k"]) == ["keepers"]
    assert problems(keepers=["user:k"] * 10, _keepers=["user:k"]) == []
    for name, most in (("name", 100), ("place", 200)):
        assert problems(**{name: "长" * most}) == [] and problems(**{name: " 长 "}) == []
        for wrong in ("长" * (most + 1), "   ", None):
            assert problems(**{name: wrong}) == [name], (name, wrong)
    assert problems(kind="hall") == ["kind"] and problems(owner_kind="church") == ["owner_kind"]
    for name, (least, most) in rules.RESOURCE_NUMBERS.items():
        assert problems(**{name: least}) == problems(**{name: most}) == [], name
        for wrong in (least - 1, most + 1, True, "3", 2.5, None):
            assert problems(**{name: wrong}) == [name], (name, wrong)
    assert problems(open_hours=[]) == ["open_hours"]
    for hours in ({"weekday": 0, "opens": 9, "closes": 9}, {"weekday": 0, "opens": -1, "closes": 9},
                  {"weekday": 0, "opens": 9, "closes": 25}, {"weekday": 0, "opens": "9", "closes": 12},
                  {"weekday": 0, "opens": 9, "closes": None}):
        assert problems(open_hours=[GOOD["open_hours"][0], hours]) == ["open_hours"], hours
    assert problems(open_hours=[{"weekday": 0, "opens": 0, "closes": 24}]) == []
    assert rules.resource_problems({**GOOD, "blackout_lines": [2, 5]}, RESOURCE_KINDS, RESOURCE_OWNER_KINDS,
                                   BOOKER_KINDS)[0] == ("blackouts", "pool_form_blackouts", {"lines": "2, 5"})
    assert problems(who_may_book=[]) == problems(who_may_book=["resident", "anyone"]) == ["who_may_book"]
    everything = {**GOOD, "name": "", "place": "", "kind": None, "owner_kind": None, "capacity": 0,
                  "book_ahead_days": 0, "max_hours": 0, "grace_minutes": -1, "open_hours": [], "blackout_lines": [1],
                  "who_may_book": [], "keepers": ["user:x"]}
    # Each problem names its field and the form's message for it, with what the message says (its bounds)
    assert rules.resource_problems(everything, RESOURCE_KINDS, RESOURCE_OWNER_KINDS, BOOKER_KINDS, ["user:k"]) == [
        ("keepers", "pool_form_keepers", {"max": 10}), ("name", "pool_form_text", {"max": 100}),
        ("place", "pool_form_text", {"max": 200}), ("kind", "pool_form_choice", {}),
        ("owner_kind", "pool_form_choice", {}), ("capacity", "pool_form_number", {"min": 1, "max": 10000}),
        ("book_ahead_days", "pool_form_number", {"min": 1, "max": 365}),
        ("max_hours", "pool_form_number", {"min": 1, "max": 24}),
        ("grace_minutes", "pool_form_number", {"min": 0, "max": 240}), ("open_hours", "pool_form_no_hours", {}),
        ("blackouts", "pool_form_blackouts", {"lines": "1"}), ("who_may_book", "pool_form_who", {})]
    assert rules.resource_problems({**GOOD, "open_hours": [{"weekday": 0, "opens": 9}]}, RESOURCE_KINDS,
                                   RESOURCE_OWNER_KINDS, BOOKER_KINDS) == [("open_hours", "pool_form_hours", {})]
