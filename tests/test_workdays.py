"""SLA working days (server/domain/workdays.py): the calendar as stored in CouchDB and the deadlines it gives.
The counting itself over holidays and make-up days: test_service_requests.py (the 2026 calendar)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest

from server.domain.workdays import WORKDAY_STARTS, WorkCalendar, calendar_doc

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_a_street_calendar_stored_in_couchdb_reads_back_as_the_same_calendar() -> None:
    doc = calendar_doc("street:s9", ["2026-10-02", "2026-10-01", "2026-10-01"], ["2026-10-10"], "Asia/Urumqi")
    assert doc == {"_id": "work_calendar:s9", "type": "work_calendar", "street": "street:s9",
                   "holidays": ["2026-10-01", "2026-10-02"], "workdays": ["2026-10-10"], "timezone": "Asia/Urumqi"}
    assert WorkCalendar.from_doc(doc) == WorkCalendar(frozenset({dt.date(2026, 10, 1), dt.date(2026, 10, 2)}),
                                                      frozenset({dt.date(2026, 10, 10)}), ZoneInfo("Asia/Urumqi"))


def test_a_calendar_is_found_by_its_street_whatever_the_street_key_holds() -> None:
    """The services read `work_calendar:` + all of the street's id after its type (service_requests.calendar)."""
    assert calendar_doc("street:old:town", [], [])["_id"] == "work_calendar:old:town"


def test_a_street_calendar_is_kept_in_china_time_unless_it_says_otherwise() -> None:
    assert calendar_doc("street:s9", [], [])["timezone"] == "Asia/Shanghai"
    assert WorkCalendar.from_doc({"timezone": "Asia/Shanghai"}) == WorkCalendar()


def test_a_street_without_a_calendar_counts_weekdays_in_china_time() -> None:
    assert WorkCalendar.from_doc(None) == WorkCalendar()
    friday_evening = dt.datetime(2026, 10, 16, 18, 0, tzinfo=SHANGHAI)
    assert WorkCalendar().add_working_days(friday_evening, 1) == dt.datetime(2026, 10, 19, 18, 0, tzinfo=SHANGHAI)


def test_deadlines_are_given_in_utc_at_the_local_time_of_day() -> None:
    """Stored deadlines compare as text across documents: one zone for all (UTC), whatever zone the request came in."""
    received = dt.datetime(2026, 11, 24, 1, 30, tzinfo=dt.UTC)  # Tuesday 09:30 in Shanghai
    due = WorkCalendar().add_working_days(received, 3)
    assert due.utcoffset() == dt.timedelta(0) and due == dt.datetime(2026, 11, 27, 1, 30, tzinfo=dt.UTC)


@pytest.fixture
def server_in_another_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_deadlines_do_not_depend_on_the_server_machines_time_zone(server_in_another_zone: None) -> None:
    received = dt.datetime(2026, 11, 24, 9, 30, tzinfo=SHANGHAI)
    assert WorkCalendar().add_working_days(received, 1).utcoffset() == dt.timedelta(0)


def test_a_request_made_on_a_day_off_counts_from_the_next_working_morning() -> None:
    calendar = WorkCalendar(holidays=frozenset({dt.date(2026, 11, 30)}))  # a Monday off
    sunday = dt.datetime(2026, 11, 29, 15, 45, tzinfo=SHANGHAI)
    assert calendar.add_working_days(sunday, 0) == dt.datetime.combine(dt.date(2026, 12, 1), WORKDAY_STARTS, SHANGHAI)
    assert calendar.add_working_days(sunday, 1) == dt.datetime.combine(dt.date(2026, 12, 2), WORKDAY_STARTS, SHANGHAI)
