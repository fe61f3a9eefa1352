"""What happens to an alert after a gateway raised it: family told, visibility kept right, escalation.

Run once a minute by every server process (`app.py`, beside the service-request clock) and by
`linli alerts-sweep`; idempotent (deterministic notification ids, CouchDB revisions), so processes
racing on one alert cost a conflict and nothing else. For each alert still `raised`:

1. visibility follows the resident's *current* privacy choice (the gateway used its registration copy);
2. the family is told, as a `notification` document for the SMS sender, only if
   `firewall.may_notify_family` allows (SOS and falls, resident did not opt out);
3. past the resident's `escalate_minutes` (default 30) unacknowledged, the alert becomes `escalated`
   and a notification for the community secretary is filed. An alert the resident chose to keep to their
   grid worker (`grid_worker_only`) is not escalated past them: their choice holds.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from .couch import Couch, bulk_save, get_many
from .devices import safety_rules_id
from .domain import validate
from .firewall import alert_visibility, may_notify_family, privacy_choices, privacy_id

log = logging.getLogger(__name__)

DEFAULT_ESCALATE_MINUTES = 30
Doc = dict[str, Any]


@dataclass
class AlertSweep:
    open_alerts: int = 0
    visibility_changed: int = 0
    family_notified: int = 0
    escalated: int = 0


def _notification(alert: Doc, audience: str, now: dt.datetime) -> Doc:
    doc = {"_id": f"notification:{alert['_id'].split(':', 1)[1]}-{audience}", "type": "notification",
           **{k: alert[k] for k in ("street", "community", "grid", "household", "resident") if k in alert},
           "alert": alert["_id"], "audience": audience, "status": "pending", "created_at": now.isoformat()}
    validate(doc)
    return doc


def sweep(couch: Couch, now: dt.datetime) -> AlertSweep:
    rows = couch.main.query("linli/open_alerts", include_docs="true", as_list=True)
    alerts = [row["doc"] for row in rows if row.get("doc")]
    report = AlertSweep(open_alerts=len(alerts))
    residents = {a["resident"] for a in alerts if a.get("resident")}
    related = get_many(couch.main, [privacy_id(r) for r in residents] + [safety_rules_id(r) for r in residents])
    existing = set(get_many(couch.main, [f"notification:{a['_id'].split(':', 1)[1]}-{who}" for a in alerts
                                         for who in ("family", "secretary")]))
    changed: list[Doc] = []
    notifications: list[Doc] = []
    for alert in alerts:
        resident = alert.get("resident") or ""
        privacy = privacy_choices(related.get(privacy_id(resident)) if resident else None)
        visibility = alert_visibility(privacy, alert["kind"])
        dirty = alert.get("visibility") != visibility
        if dirty:
            alert["visibility"] = visibility
            report.visibility_changed += 1
        family = _notification(alert, "family", now)
        if may_notify_family(privacy, alert["kind"]) and family["_id"] not in existing:
            notifications.append(family)
            report.family_notified += 1
        rules = related.get(safety_rules_id(resident)) or {}
        limit = dt.timedelta(minutes=rules.get("escalate_minutes") or DEFAULT_ESCALATE_MINUTES)
        if visibility != "grid_worker_only" and now - dt.datetime.fromisoformat(alert["raised_at"]) >= limit:
            alert.update(status="escalated", escalated_at=now.isoformat())
            dirty = True
            report.escalated += 1
            secretary = _notification(alert, "secretary", now)
            if secretary["_id"] not in existing:
                notifications.append(secretary)
        if dirty:
            validate(alert)
            changed.append(alert)
    failed = [r for r in bulk_save(couch.main, changed + notifications) if r.error and r.error != "conflict"]
    for result in failed:
        log.error("alert sweep could not store %s: %s", result.id, result.reason)
    return report
