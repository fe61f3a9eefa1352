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

Before that, silence (`silence`): a gateway whose heartbeat (`gateway_health.heartbeat_at`, every 5 min) is
older than `GATEWAY_SILENT_AFTER`, or a device not heard (`device_health.last_seen_at`, refreshed hourly;
`registered_at` if never heard) for `DEVICE_SILENT_AFTER`, raises one `gateway_silent` / `device_silent`
alert per episode; heard again, the episode's alert is `resolved`. Their ids name the subject and the
moment it fell silent (`alert:silent-<gateway|device>-<key>-<epoch s>`), so a sweep raises each once.
Devices of a silent gateway raise nothing of their own: the gateway's alert says why they are quiet.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from server.domain.declaration import validate
from server.domain.entitlement import alert_visibility, may_notify_family, privacy_choices, privacy_id
from server.services.devices import safety_rules_id
from server.store.couch import Couch, bulk_save, get_many

log = logging.getLogger(__name__)

DEFAULT_ESCALATE_MINUTES = 30
GATEWAY_SILENT_AFTER = dt.timedelta(minutes=15)  # three missed heartbeats: not a reboot
# The gateway's own rules stop trusting a meter after 2 h, and device_health is refreshed only hourly.
DEVICE_SILENT_AFTER = dt.timedelta(hours=3)
SILENT_PREFIX = "alert:silent-"
Doc = dict[str, Any]


@dataclass
class AlertSweep:
    open_alerts: int = 0
    visibility_changed: int = 0
    family_notified: int = 0
    escalated: int = 0
    silent_raised: int = 0
    silent_resolved: int = 0


def _notification(alert: Doc, audience: str, now: dt.datetime) -> Doc:
    doc = {"_id": f"notification:{alert['_id'].split(':', 1)[1]}-{audience}", "type": "notification",
           **{k: alert[k] for k in ("street", "community", "grid", "household", "resident") if k in alert},
           "alert": alert["_id"], "audience": audience, "status": "pending", "created_at": now.isoformat()}
    validate(doc)
    return doc


def _with_prefix(couch: Couch, prefix: str) -> list[Doc]:
    return [row["doc"] for row in couch.main.all(startkey=prefix, endkey=prefix + "\ufff0", as_list=True)
            if row.get("doc")]


def _key(doc_id: str) -> str:
    return doc_id.split(":", 1)[1]


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _latest_silences(couch: Couch) -> dict[str, Doc]:
    """Each subject's latest silence alert, by subject (its id without the epoch)."""
    rows = couch.main.all(startkey=SILENT_PREFIX, endkey=SILENT_PREFIX + "\ufff0", include_docs="false",
                          as_list=True)
    latest: dict[str, tuple[int, str]] = {}
    for row in rows:
        subject, _, epoch = row["id"].rpartition("-")
        if int(epoch) > latest.get(subject, (-1, ""))[0]:
            latest[subject] = (int(epoch), row["id"])
    docs = get_many(couch.main, [doc_id for _, doc_id in latest.values()])
    return {subject: docs[doc_id] for subject, (_, doc_id) in latest.items() if doc_id in docs}


def _silence_alert(subject: str, kind: str, since: dt.datetime, routing: Doc, now: dt.datetime) -> Doc:
    return {"_id": f"{subject}-{int(since.timestamp())}", "type": "alert", **routing, "kind": kind,
            "status": "raised", "raised_at": now.isoformat(),
            "visibility": alert_visibility(privacy_choices(None), kind)}


def _silent_now(couch: Couch, now: dt.datetime) -> dict[str, Doc]:
    """subject → the alert its silence calls for, for every gateway and device silent at `now`."""
    health = {d["_id"]: d for d in _with_prefix(couch, "gateway_health:") + _with_prefix(couch, "device_health:")}
    paired = [d for d in _with_prefix(couch, "device:") if d.get("type") == "device" and d.get("gateway")]
    silent: dict[str, Doc] = {}
    for gateway in _with_prefix(couch, "gateway:"):
        own = [d for d in paired if d["gateway"] == gateway["_id"]]
        beat = health.get(f"gateway_health:{_key(gateway['_id'])}")
        heard = [beat["heartbeat_at"]] if beat else [d["registered_at"] for d in own if d.get("registered_at")]
        if not own or not heard or now - min(map(_at, heard)) < GATEWAY_SILENT_AFTER:
            continue  # nobody relies on it, or it is alive
        grids = Counter(d["grid"] for d in own)
        grid = min(grids, key=lambda g: (-grids[g], g))  # where most of the residents it serves live
        subject = f"{SILENT_PREFIX}gateway-{_key(gateway['_id'])}"
        silent[subject] = _silence_alert(subject, "gateway_silent", min(map(_at, heard)), {
            "street": gateway["street"], "community": gateway["community"], "grid": grid,
            "gateway": gateway["_id"]}, now)
    quiet_gateways = {doc["gateway"] for doc in silent.values()}
    for device in paired:
        seen = health.get(f"device_health:{_key(device['_id'])}", {}).get("last_seen_at") or device.get(
            "registered_at")
        if device["gateway"] in quiet_gateways or not seen or now - _at(seen) < DEVICE_SILENT_AFTER:
            continue
        subject = f"{SILENT_PREFIX}device-{_key(device['_id'])}"
        silent[subject] = _silence_alert(subject, "device_silent", _at(seen), {
            **{k: device[k] for k in ("street", "community", "grid", "household", "resident") if k in device},
            "device": device["_id"]}, now)
    return silent


def silence(couch: Couch, now: dt.datetime) -> tuple[int, int]:
    """Raise an alert per silent gateway and device, resolve those heard again; (raised, resolved)."""
    silent = _silent_now(couch, now)
    latest = _latest_silences(couch)
    changed: list[Doc] = []
    for subject, alert in silent.items():
        if latest.get(subject, {}).get("_id") != alert["_id"]:  # a new episode (an earlier sweep raised the same)
            validate(alert)
            changed.append(alert)
    raised = len(changed)
    for subject, alert in latest.items():
        ongoing = subject in silent and silent[subject]["_id"] == alert["_id"]
        if alert["status"] != "resolved" and not ongoing:  # heard again (or no longer registered)
            alert.update(status="resolved", resolved_at=now.isoformat())
            validate(alert)
            changed.append(alert)
    _save(couch, changed)
    return raised, len(changed) - raised


def _save(couch: Couch, docs: list[Doc]) -> None:
    # A conflict is another server process that stored the same change first.
    for result in bulk_save(couch.main, docs) if docs else []:
        if result.error and result.error != "conflict":
            log.error("alert sweep could not store %s: %s", result.id, result.reason)


def sweep(couch: Couch, now: dt.datetime) -> AlertSweep:
    raised, resolved = silence(couch, now)  # first: its new alerts are open below, resolved ones are not
    rows = couch.main.query("linli/open_alerts", include_docs="true", as_list=True)
    alerts = [row["doc"] for row in rows if row.get("doc")]
    report = AlertSweep(open_alerts=len(alerts), silent_raised=raised, silent_resolved=resolved)
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
        rules = (related.get(safety_rules_id(resident)) if resident else None) or {}  # silences concern nobody
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
    _save(couch, changed + notifications)
    return report
