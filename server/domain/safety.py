"""Elderly safety (plan §3.3, §7.4), pure: the thresholds the BLE gateway's rules apply, and a resident's status
line from what their devices last reported.

The gateway (`ble_gateway/rules.py`) raises alerts with these defaults and limits; the server shows the same
conditions on a resident's safety page (`server/services/safety.py`) before or without an alert. A
`safety_rules` document overrides the defaults for one resident.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

# What the gateway applies where a resident's safety_rules document says nothing.
RULE_DEFAULTS = {"no_water_hours": 12, "no_activity_days": 3, "heart_rate_min": 40, "heart_rate_max": 150,
                 "power_max_watts": 3000}
# The range a safety_rules value may take (the gateway refuses a document outside it, and uses the defaults).
RULE_LIMITS = {"no_water_hours": (1, 72), "no_activity_days": (1, 14), "heart_rate_min": (20, 120),
               "heart_rate_max": (60, 250), "power_max_watts": (100, 20000)}
# Readings that show someone is up and about (the gateway's activity rule): doors, motion, water and power used.
ACTIVITY_METRICS = ("door_open", "motion", "water", "energy")
# The readings of each kind of device a status line reads (ble_gateway/readings.py names them so).
STATUS_METRICS = {"wristband": ("heart_rate",), "water_meter": ("water",), "electricity_meter": ("energy",),
                  "door_sensor": ("door_open",), "motion_sensor": ("motion",)}
# What the filing log says a heart-rate value was opened for on a safety page (no approval's own purpose).
SAFETY_PURPOSE = "safety_status"
DEVICE_SILENT = dt.timedelta(hours=2)  # a device not heard for this long (the gateway's METER_ALIVE) is silent


def thresholds(rules: dict[str, Any] | None) -> dict[str, int]:
    """The resident's thresholds: their safety_rules document's values within the limits, else the defaults."""
    values = dict(RULE_DEFAULTS)
    for name, (low, high) in RULE_LIMITS.items():
        value = (rules or {}).get(name)
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            values[name] = value
    return values


@dataclass(frozen=True)
class Status:
    """One condition of the status line: a UI text key and its parameters."""

    key: str
    params: dict[str, Any]


def status_line(*, now: dt.datetime, rules: dict[str, int], devices: int, last_water: dt.datetime | None,
                last_active: dt.datetime | None, last_heard: list[dt.datetime | None],
                heart_rate: float | None) -> list[Status]:
    """The conditions that hold now, worst first; [status_ok] if none. `heart_rate` is the last value, or None
    where the viewer may not open it (health data): then no heart-rate condition is judged here (an alert shows
    it, without the value)."""
    if devices == 0:
        return [Status("status_no_devices", {})]
    found: list[Status] = []
    if heart_rate is not None and not rules["heart_rate_min"] <= heart_rate <= rules["heart_rate_max"]:
        found.append(Status("status_heart_rate", {"bpm": round(heart_rate), "low": rules["heart_rate_min"],
                                                  "high": rules["heart_rate_max"]}))
    if last_water is not None and now - last_water >= dt.timedelta(hours=rules["no_water_hours"]):
        found.append(Status("status_no_water", {"hours": int((now - last_water).total_seconds() // 3600)}))
    if last_active is not None and now - last_active >= dt.timedelta(days=rules["no_activity_days"]):
        found.append(Status("status_not_out", {"days": (now - last_active).days}))
    if any(heard is None or now - heard >= DEVICE_SILENT for heard in last_heard):
        found.append(Status("status_silent", {}))
    return found or [Status("status_ok", {})]
