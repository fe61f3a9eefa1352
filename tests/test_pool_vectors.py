"""Why a slot may not be booked, as the server and the offline phone say it (tests/vectors/pool_booking.json,
written by hand; Node runs the same vectors against pwa/offline/pool.js in pwa/tests/pool.test.mjs):
pool.booking_refusal, and the day's hours it reads; a check-in's window, the venue's code of the day, who is a
keeper, and the calendar's day (tests/vectors/pool_checkin.json)."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from server.domain import pool
from server.domain.access import Principal
from server.services.pool import is_keeper
from server.store.config import PROJECT_ROOT
from server.web.pool_pages import _day

VECTORS = json.loads((Path(__file__).parent / "vectors" / "pool_booking.json").read_text(encoding="utf-8"))
CHECKIN = json.loads((Path(__file__).parent / "vectors" / "pool_checkin.json").read_text(encoding="utf-8"))


def with_changes(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    doc = {**base, **changes}
    return {name: value for name, value in doc.items() if value is not None}


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_a_booking_is_refused_as_the_phone_refuses_it(case: dict[str, Any]) -> None:
    booking = with_changes(VECTORS["booking"], case["set"])
    resource = None if "resource" in case else with_changes(VECTORS["resource"], case.get("resource_set", {}))
    now = dt.datetime.fromisoformat(case.get("now", VECTORS["now"]))
    refusal = pool.booking_refusal(booking, resource, set(case.get("kinds", VECTORS["kinds"])), now)
    assert (list(refusal) if refusal else None) == case["refusal"]


@pytest.mark.parametrize("day", VECTORS["days"], ids=lambda d: d["day"])
def test_a_days_hours_are_the_phones(day: dict[str, Any]) -> None:
    resource, date = VECTORS["resource"], dt.date.fromisoformat(day["day"])
    assert sorted(pool.open_hours_on(resource, date)) == day["open"]
    assert pool.opening_text(resource, date) == day["text"]
    assert {str(h): reason for h, reason in pool.blocked_hours_on(resource, date).items()} == day["blocked"]


def test_the_checkin_vectors_state_the_servers_limits() -> None:
    assert dt.timedelta(minutes=CHECKIN["early_minutes"]) == pool.CHECKIN_EARLY
    assert CHECKIN["days_shown"] == pool.DAYS_SHOWN


@pytest.mark.parametrize("case", CHECKIN["windows"], ids=lambda c: c["name"])
def test_a_check_in_window_is_the_phones(case: dict[str, Any]) -> None:
    at = dt.datetime.fromisoformat(case["at"])
    assert pool.checkin_open({"slot_start": case["slot_start"]}, {"grace_minutes": case["grace_minutes"]}, at) \
        is case["open"]


@pytest.mark.parametrize("case", CHECKIN["codes"], ids=lambda c: c["name"])
def test_the_venues_code_of_the_day_matches_as_on_the_phone(case: dict[str, Any]) -> None:
    resource = with_changes(CHECKIN["resource"], case.get("resource_set", {}))
    assert pool.code_matches(resource, case["day"], case["code"]) is case["match"]


@pytest.mark.parametrize("case", CHECKIN["keepers"], ids=lambda c: c["name"])
def test_a_keeper_is_the_phones(case: dict[str, Any]) -> None:
    resource = with_changes(CHECKIN["resource"], case.get("resource_set", {}))
    assert is_keeper(Principal.of(case["user"]), resource) is case["keeper"]


@pytest.mark.parametrize(("value", "day"), CHECKIN["days"], ids=repr)
def test_the_calendars_day_is_the_phones(value: str, day: str) -> None:
    now = dt.datetime.fromisoformat(f"{CHECKIN['today']}T12:00:00+08:00")
    assert _day(value, now).isoformat() == day


def test_node_passes_the_same_vectors() -> None:
    result = subprocess.run(["node", "--test", "pwa/tests/pool.test.mjs"], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    checkin = len(CHECKIN["windows"]) + len(CHECKIN["codes"]) + len(CHECKIN["keepers"]) + 2  # checkable, the days
    expected = len(VECTORS["cases"]) + len(VECTORS["days"]) + 1 + checkin  # and the slot ids' test
    assert re.search(rf"^# pass {expected}$", result.stdout, re.M) and re.search(r"^# fail 0$", result.stdout, re.M)
