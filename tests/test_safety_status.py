"""A resident's status line (server/domain/safety.py): the gateway's own thresholds, judged on what the devices
last reported; what a viewer may not open (a heart-rate value) is not judged at all."""

from __future__ import annotations

import dataclasses
import datetime as dt

from ble_gateway.rules import SafetyRules
from server.domain.safety import RULE_DEFAULTS, status_line, thresholds

NOW = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)


def _keys(**facts: object) -> list[str]:
    given = {"now": NOW, "rules": thresholds(None), "devices": 2, "last_water": NOW, "last_active": NOW,
             "last_heard": [NOW, NOW], "heart_rate": None, **facts}
    return [s.key for s in status_line(**given)]  # type: ignore[arg-type]


def test_the_gateway_and_the_status_line_apply_the_same_defaults() -> None:
    gateway = {f.name: f.default for f in dataclasses.fields(SafetyRules) if f.name in RULE_DEFAULTS}
    assert gateway == RULE_DEFAULTS == thresholds(None)


def test_a_residents_own_thresholds_count_only_within_their_limits() -> None:
    assert thresholds({"no_water_hours": 6, "heart_rate_max": 999, "no_activity_days": True})["no_water_hours"] == 6
    assert thresholds({"heart_rate_max": 999})["heart_rate_max"] == RULE_DEFAULTS["heart_rate_max"]
    assert thresholds({"no_activity_days": True})["no_activity_days"] == RULE_DEFAULTS["no_activity_days"]


def test_each_condition_shows_when_it_holds_and_all_well_otherwise() -> None:
    hour = dt.timedelta(hours=1)
    assert _keys() == ["status_ok"]
    assert _keys(devices=0) == ["status_no_devices"]
    assert _keys(last_water=NOW - 11 * hour) == ["status_ok"]
    assert _keys(last_water=NOW - 12 * hour) == ["status_no_water"]
    assert _keys(last_water=NOW - 12 * hour, rules=thresholds({"no_water_hours": 24})) == ["status_ok"]
    assert _keys(last_active=NOW - 72 * hour) == ["status_not_out"]
    assert _keys(last_heard=[NOW, None]) == ["status_silent"]  # paired, never heard
    assert _keys(last_heard=[NOW, NOW - 2 * hour]) == ["status_silent"]
    assert _keys(heart_rate=151.0) == ["status_heart_rate"]
    assert _keys(heart_rate=150.0) == ["status_ok"]
    worst_first = _keys(heart_rate=30.0, last_water=NOW - 20 * hour, last_active=NOW - 100 * hour, last_heard=[None])
    assert worst_first == ["status_heart_rate", "status_no_water", "status_not_out", "status_silent"]
