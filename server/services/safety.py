"""A resident's elderly safety as their safety page shows it (plan §3.3, §7.4): devices with battery and last heard,
the status line the gateway's rules would judge (`server/domain/safety.py`), care plan and alert history.

Within the firewall's tiers: when a reading was taken is basic (a grid worker sees "last water use 3 h ago"),
what a heart-rate reading says is health data (core): opened, and filed, only for someone entitled to it
(`Firewall.open_heart_rate`); everyone else sees when it was measured.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from crypto.envelope import EnvelopeError
from server.domain.access import Principal, may_see
from server.domain.safety import ACTIVITY_METRICS, STATUS_METRICS, Status, status_line, thresholds
from server.security.firewall import Firewall
from server.security.keystore import ShreddedError
from server.services.devices import safety_rules_id
from server.store import queries
from server.store.couch import get_or_none, iter_view_docs

Doc = dict[str, Any]
ALERTS_SHOWN = 50  # the newest alerts of the resident's history


@dataclass
class Safety:
    devices: list[Doc]  # each device with its health: battery, last_seen_at (None: never heard)
    status: list[Status]
    last_water: str | None
    last_active: str | None
    last_heart_rate_at: str | None
    heart_rate: float | None  # None unless the viewer may open health data
    alerts: list[Doc]
    rules: dict[str, int] = field(default_factory=dict)


def _at(doc: Doc | None, name: str) -> dt.datetime | None:
    return dt.datetime.fromisoformat(doc[name]) if doc and doc.get(name) else None


def resident_safety(firewall: Firewall, p: Principal, resident: Doc, *, device: str, now: dt.datetime) -> Safety:
    """What p may see of the resident's safety, now."""
    couch = firewall.couch
    household = resident["household"]

    def of_resident(type_name: str) -> list[Doc]:
        return [d for d in iter_view_docs(couch.main, "linli/by_place", [household, type_name])
                if d.get("resident") == resident["_id"] and may_see(p, d)]

    paired = sorted(of_resident("device"), key=lambda d: d["kind"])
    health = {d["device"]: d for d in iter_view_docs(couch.main, "linli/by_place", [household, "device_health"])}
    shown = [{**d, "battery": health.get(d["_id"], {}).get("battery"),
              "last_seen_at": health.get(d["_id"], {}).get("last_seen_at")} for d in paired]
    latest = {(d["_id"], metric): queries.latest_reading(couch, d["_id"], metric)
              for d in paired for metric in STATUS_METRICS.get(d["kind"], ())}
    latest = {key: r for key, r in latest.items() if r is not None and may_see(p, r)}

    def newest(*metrics: str) -> Doc | None:
        found = [r for (_, metric), r in latest.items() if metric in metrics]
        return max(found, key=lambda r: r["measured_at"], default=None)

    water, active, pulse = newest("water"), newest(*ACTIVITY_METRICS), newest("heart_rate")
    heart_rate = None
    if pulse is not None:
        try:
            heart_rate = firewall.open_heart_rate(p, resident, pulse, device=device, now=now)
        except (EnvelopeError, ShreddedError):  # a broken or erased value: shown as not opened
            heart_rate = None
    rules = thresholds(get_or_none(couch.main, safety_rules_id(resident["_id"])))
    status = status_line(now=now, rules=rules, devices=len(paired), last_water=_at(water, "measured_at"),
                         last_active=_at(active, "measured_at"),
                         last_heard=[_at(d, "last_seen_at") for d in shown], heart_rate=heart_rate)
    alerts = sorted(of_resident("alert"), key=lambda a: a["raised_at"], reverse=True)[:ALERTS_SHOWN]
    return Safety(shown, status, (water or {}).get("measured_at"), (active or {}).get("measured_at"),
                  (pulse or {}).get("measured_at"), heart_rate, alerts, rules)
