"""Elderly-safety rules (plan §7.4): what the gateway hears → at most one alert per condition.

| kind | raised when | urgent |
|---|---|---|
| sos, fall | the wristband's SOS key or fall detector fires (presses within `EPISODE` fold into one alert) | yes |
| heart_rate | `HEART_RATE_SAMPLES` usable measurements in a row outside the resident's range | yes |
| electricity | power above the resident's limit for `POWER_MINUTES` (a stove left on) | yes |
| no_water | the water meter, still advertising, shows no use for N hours (default 12) | no |
| no_activity | none of the resident's sensors saw activity for N days (default 3) | no |
| battery_low | a device's battery below `BATTERY_LOW` % | no |

An episode ends when the condition clears (water used again, rate back in range …); only then can the
same kind be raised again. Alert ids are derived from the episode's start, so raising one twice (a
restart that lost its state) yields the same document. Non-urgent alerts due during the resident's
quiet hours wait for the end of them. Rule state lives in `DurableState`, written with the outbox.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from server.domain.safety import DEVICE_SILENT, RULE_DEFAULTS, RULE_LIMITS

from .decode import Packet
from .heart_rate import HeartRateMeasurement
from .registry import RegisteredDevice
from .state import DurableState

EPISODE = dt.timedelta(minutes=10)
HEART_RATE_SAMPLES = 3
POWER_MINUTES = 30
BATTERY_LOW, BATTERY_RECOVERED = 15, 30
METER_ALIVE = DEVICE_SILENT  # a meter not heard for this long is a silent device, not a silent home
URGENT = frozenset({"sos", "fall", "heart_rate", "electricity"})
# The wristband profile: the first BTHome button object is the SOS key, the second the fall detector.
EVENT_ALERTS = {"button_1": "sos", "button_2": "fall"}
ACTIVITY_BINARY = ("motion", "door", "opening")
_CLOCK_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class RulesConfigError(ValueError):
    """A safety_rules document with a value out of range; the message names the field."""


_LIMITS = RULE_LIMITS  # declared once, in server/domain/safety.py: the server's status line judges alike


@dataclass(frozen=True)
class SafetyRules:
    no_water_hours: int = RULE_DEFAULTS["no_water_hours"]
    no_activity_days: int = RULE_DEFAULTS["no_activity_days"]
    heart_rate_min: int = RULE_DEFAULTS["heart_rate_min"]
    heart_rate_max: int = RULE_DEFAULTS["heart_rate_max"]
    power_max_watts: int = RULE_DEFAULTS["power_max_watts"]
    quiet_start: dt.time | None = None
    quiet_end: dt.time | None = None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> SafetyRules:
        values: dict[str, Any] = {}
        for name, (low, high) in _LIMITS.items():
            value = doc.get(name)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise RulesConfigError(f"{doc.get('_id')}: {name} must be a whole number from {low} to {high}")
            values[name] = value
        if values.get("heart_rate_min", cls.heart_rate_min) >= values.get("heart_rate_max", cls.heart_rate_max):
            raise RulesConfigError(f"{doc.get('_id')}: heart_rate_min must be below heart_rate_max")
        quiet = [doc.get("quiet_start"), doc.get("quiet_end")]
        if any(q is not None for q in quiet):
            if not all(isinstance(q, str) and _CLOCK_TIME.match(q) for q in quiet):
                raise RulesConfigError(f"{doc.get('_id')}: quiet_start and quiet_end must both be HH:MM")
            values["quiet_start"], values["quiet_end"] = (dt.time.fromisoformat(q) for q in quiet)
        return cls(**values)

    def quiet_at(self, at: dt.datetime, zone: ZoneInfo) -> bool:
        if self.quiet_start is None or self.quiet_end is None:
            return False
        local = at.astimezone(zone).time()
        if self.quiet_start <= self.quiet_end:
            return self.quiet_start <= local < self.quiet_end
        return local >= self.quiet_start or local < self.quiet_end  # over midnight


@dataclass(frozen=True)
class AlertDraft:
    """An alert to raise; `detail` is plaintext and is sealed before it is written anywhere."""

    alert_id: str
    kind: str
    device: RegisteredDevice
    raised_at: dt.datetime
    detail: str


def _iso(at: dt.datetime) -> str:
    return at.isoformat()


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


class RuleEngine:
    def __init__(self, state: DurableState, rules_for: Callable[[str], SafetyRules],
                 device_of: Callable[[str], RegisteredDevice | None], zone: ZoneInfo) -> None:
        self.state = state
        self._rules_for = rules_for
        self._device_of = device_of
        self._zone = zone

    def _draft(self, kind: str, device: RegisteredDevice, episode: str, at: dt.datetime, detail: str) -> AlertDraft:
        owner = device.resident.split(":", 1)[1] if kind == "no_activity" else device.key
        return AlertDraft(f"alert:{owner}-{kind}-{episode}", kind, device, at, detail)

    # ------------------------------------------------------------ advertisements

    def on_packet(self, packet: Packet) -> list[AlertDraft]:
        device, at = packet.device, packet.sequence.heard_at
        drafts: list[AlertDraft] = []
        for key, event in packet.events.items():
            kind = EVENT_ALERTS.get(key) if device.kind == "wristband" else None
            if kind:
                drafts += self._event_alert(kind, packet, event)
        active = bool(packet.events) or any(packet.binary.get(name) for name in ACTIVITY_BINARY)
        if "water" in packet.values:
            active |= self._water(device, packet.values["water"], at)
        if "energy" in packet.values:
            active |= self._increased(f"{device.doc_id}|energy", packet.values["energy"], at, 0.01)
        if "power" in packet.values:
            self._power(device, packet.values["power"], at)
        if "battery" in packet.values:
            self._battery(device, packet.values["battery"], at)
        self._activity(device, at, active)
        return drafts

    def _event_alert(self, kind: str, packet: Packet, event: str) -> list[AlertDraft]:
        key = f"{packet.device.doc_id}|{kind}"
        at = packet.sequence.heard_at
        last = self.state.get(key)
        if last is not None and at - _at(last["at"]) < EPISODE:
            return []  # the same emergency, pressed again: the grid worker already has it
        self.state.put(key, {"at": _iso(at)})
        detail = "SOS key pressed" if kind == "sos" else "fall detected"
        return [self._draft(kind, packet.device, packet.sequence.tag, at, f"{detail} ({event})")]

    def _increased(self, key: str, value: float, at: dt.datetime, step: float) -> bool:
        record = self.state.get(key)
        if record is None or value < record["value"] or value - record["value"] >= step:
            # A meter that counts backwards was replaced or reset: a new baseline, not use.
            used = record is not None and value > record["value"]
            self.state.put(key, {"value": value, "changed_at": _iso(at) if used or record is None
                                 else record["changed_at"], "heard_at": _iso(at)})
            return used
        record["heard_at"] = _iso(at)  # heard, unchanged: not worth a durable write on its own
        return False

    def _water(self, device: RegisteredDevice, litres: float, at: dt.datetime) -> bool:
        key = f"{device.doc_id}|water"
        record = self.state.get(key)
        if record is None or litres != record["value"]:
            used = record is not None and litres > record["value"]
            changed = _iso(at) if used or record is None else record["changed_at"]
            self.state.put(key, {"value": litres, "changed_at": changed, "heard_at": _iso(at)})
            return used
        if at - _at(record["heard_at"]) >= dt.timedelta(minutes=10):
            self.state.put(key, {**record, "heard_at": _iso(at)})  # durable now and then: the meter is alive
        else:
            record["heard_at"] = _iso(at)
        return False

    def _power(self, device: RegisteredDevice, watts: float, at: dt.datetime) -> None:
        key = f"{device.doc_id}|power"
        record = self.state.get(key) or {"above_since": None}
        above = watts > self._rules_for(device.resident).power_max_watts
        if above and record["above_since"] is None:
            self.state.put(key, {"above_since": _iso(at), "watts": watts})
        elif not above and record["above_since"] is not None:
            self.state.put(key, {"above_since": None})
        elif above:
            record["watts"] = watts

    def _battery(self, device: RegisteredDevice, percent: float, at: dt.datetime) -> None:
        key = f"{device.doc_id}|battery"
        record = self.state.get(key) or {"low": False}
        if percent < BATTERY_LOW and not record["low"]:
            self.state.put(key, {"low": True, "percent": percent, "since": _iso(at)})
        elif percent >= BATTERY_RECOVERED and record["low"]:
            self.state.put(key, {"low": False})

    def _activity(self, device: RegisteredDevice, at: dt.datetime, active: bool) -> None:
        if device.kind == "wristband" and not active:
            return  # a wristband on the nightstand says nothing about whether anyone moves
        key = f"{device.resident}|activity"
        record = self.state.get(key)
        if record is None or active:
            self.state.put(key, {"at": _iso(at), "device": device.doc_id})

    # ------------------------------------------------------------ heart rate

    def on_heart_rate(self, device: RegisteredDevice, measurement: HeartRateMeasurement,
                      at: dt.datetime) -> list[AlertDraft]:
        if not measurement.usable:
            return []
        rules = self._rules_for(device.resident)
        key = f"{device.doc_id}|heart_rate"
        record = self.state.get(key) or {"out": 0, "in": 0, "since": None, "alerted": False}
        outside = not rules.heart_rate_min <= measurement.bpm <= rules.heart_rate_max
        if outside:
            record = {**record, "out": record["out"] + 1, "in": 0, "since": record["since"] or _iso(at)}
        else:
            record = {**record, "in": record["in"] + 1}
            if record["in"] >= HEART_RATE_SAMPLES:
                record = {"out": 0, "in": 0, "since": None, "alerted": False}
        drafts = []
        if outside and record["out"] >= HEART_RATE_SAMPLES and not record["alerted"]:
            record["alerted"] = True
            since = _at(record["since"])
            drafts.append(self._draft("heart_rate", device, str(int(since.timestamp())), at,
                                      f"heart rate {measurement.bpm} bpm, outside {rules.heart_rate_min}–"
                                      f"{rules.heart_rate_max} since {record['since']}"))
        self.state.put(key, record)
        return drafts

    # ------------------------------------------------------------ time

    def on_tick(self, now: dt.datetime) -> list[AlertDraft]:
        """Conditions that become true by time passing (silence, sustained power, held routine alerts)."""
        drafts: list[AlertDraft] = []
        for key, record in self.state.items_with_prefix(""):
            subject, _, rule = key.partition("|")
            check = self._TIMED.get(rule)
            if check is None:
                continue
            device = self._device_of(record.get("device", subject))
            if device is None:
                continue
            rules = self._rules_for(device.resident)
            draft = check(self, key, record, device, rules, now)
            if draft is None:
                continue
            if draft.kind not in URGENT and rules.quiet_at(now, self._zone):
                continue  # raised at the first tick after quiet hours, if still true
            self._mark_raised(key, record, draft.kind)
            drafts.append(draft)
        return drafts

    def _mark_raised(self, key: str, record: dict[str, Any], kind: str) -> None:
        self.state.put(key, {**record, f"alerted_{kind}": True})

    def _check_water(self, key: str, record: dict[str, Any], device: RegisteredDevice, rules: SafetyRules,
                     now: dt.datetime) -> AlertDraft | None:
        changed = _at(record["changed_at"])
        silent = now - changed
        if (record.get("alerted_no_water") or silent < dt.timedelta(hours=rules.no_water_hours)
                or now - _at(record["heard_at"]) > METER_ALIVE):
            return None
        return self._draft("no_water", device, str(int(changed.timestamp())), now,
                           f"no water used for {silent.total_seconds() / 3600:.1f} h (last use {record['changed_at']})")

    def _check_activity(self, key: str, record: dict[str, Any], device: RegisteredDevice, rules: SafetyRules,
                        now: dt.datetime) -> AlertDraft | None:
        last = _at(record["at"])
        if record.get("alerted_no_activity") or now - last < dt.timedelta(days=rules.no_activity_days):
            return None
        return self._draft("no_activity", device, str(int(last.timestamp())), now,
                           f"no activity seen for {(now - last).days} days (last {record['at']})")

    def _check_power(self, key: str, record: dict[str, Any], device: RegisteredDevice, rules: SafetyRules,
                     now: dt.datetime) -> AlertDraft | None:
        since = record.get("above_since")
        if since is None or record.get("alerted_electricity") or now - _at(since) < dt.timedelta(
                minutes=POWER_MINUTES):
            return None
        return self._draft("electricity", device, str(int(_at(since).timestamp())), now,
                           f"power {record.get('watts', 0):.0f} W above {rules.power_max_watts} W since {since}")

    def _check_battery(self, key: str, record: dict[str, Any], device: RegisteredDevice, rules: SafetyRules,
                       now: dt.datetime) -> AlertDraft | None:
        if not record.get("low") or record.get("alerted_battery_low"):
            return None
        return self._draft("battery_low", device, str(int(_at(record["since"]).timestamp())), now,
                           f"battery at {record.get('percent', 0):.0f} %")

    _TIMED: dict[str, Callable[..., AlertDraft | None]] = {
        "water": _check_water, "activity": _check_activity, "power": _check_power, "battery": _check_battery}
