"""Why a slot may not be booked, as the server and the offline phone say it (tests/vectors/pool_booking.json,
written by hand; Node runs the same vectors against pwa/offline/pool.js in pwa/tests/pool.test.mjs):
pool.booking_refusal, and the day's hours it reads."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from server.domain import pool
from server.store.config import PROJECT_ROOT

VECTORS = json.loads((Path(__file__).parent / "vectors" / "pool_booking.json").read_text(encoding="utf-8"))


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


def test_node_passes_the_same_vectors() -> None:
    result = subprocess.run(["node", "--test", "pwa/tests/pool.test.mjs"], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    expected = len(VECTORS["cases"]) + len(VECTORS["days"]) + 1  # and the slot ids' test
    assert re.search(rf"^# pass {expected}$", result.stdout, re.M) and re.search(r"^# fail 0$", result.stdout, re.M)
