"""Readings, alerts and health documents, as the declaration (`server.domain.declaration`) has them.

Protected fields (`reading.value`, `alert.detail`: health, core tier) are sealed here, before a document
reaches the outbox, with `crypto.envelope.seal_for_key` and the resident's public write key copied onto the
device's document at registration: the gateway writes what it cannot read back, and no plaintext health
value is ever on its disk. Which fields to seal comes from the declaration, not from this module.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from crypto.envelope import FieldContext, seal_for_key
from crypto.fields import plaintext_fields, protected_fields
from server.domain.declaration import validate
from server.domain.entitlement import alert_visibility, privacy_choices

from .registry import RegisteredDevice
from .rules import AlertDraft

Doc = dict[str, Any]


def sealed(doc: Doc, device: RegisteredDevice) -> Doc:
    """doc with every plaintext protected field sealed for the device's resident; checked against the declaration."""
    tiers = protected_fields(doc["type"])
    for name in plaintext_fields(doc):
        doc[name] = seal_for_key(device.write_key, device.write_key_version,
                                 FieldContext(doc["_id"], name, tiers[name]), doc[name])
    validate(doc)
    return doc


def reading(device: RegisteredDevice, tag: str, metric: str, value: float, unit: str, measured_at: dt.datetime,
            packet_id: int | None = None) -> Doc:
    """A reading whose id is its device, its packet (`tag`: counter, or packet id and time heard) and metric."""
    doc = {"_id": f"reading:{device.key}-{tag}-{metric}", "type": "reading", **device.routing,
           "device": device.doc_id, "measured_at": measured_at.isoformat(), "metric": metric, "value": value,
           "unit": unit}
    if packet_id is not None:
        doc["packet_id"] = packet_id
    return sealed(doc, device)


def alert(draft: AlertDraft) -> Doc:
    device = draft.device
    visibility = alert_visibility(privacy_choices({"utility_alerts": device.utility_alerts}), draft.kind)
    return sealed({"_id": draft.alert_id, "type": "alert", **device.routing, "kind": draft.kind, "status": "raised",
                   "device": device.doc_id, "raised_at": draft.raised_at.isoformat(), "detail": draft.detail,
                   "visibility": visibility}, device)


def device_health(device: RegisteredDevice, gateway: str, last_seen: dt.datetime, battery: float | None,
                  rejected: int, now: dt.datetime) -> Doc:
    doc: Doc = {"_id": f"device_health:{device.key}", "type": "device_health", **device.routing,
                "device": device.doc_id, "gateway": gateway, "last_seen_at": last_seen.isoformat(),
                "rejected": rejected, "updated_at": now.isoformat()}
    if battery is not None:
        doc.update(battery=round(battery), battery_low=battery < 15)
    validate(doc)
    return doc


def gateway_health(gateway: str, street: str, community: str, figures: dict[str, Any]) -> Doc:
    doc = {"_id": f"gateway_health:{gateway.split(':', 1)[1]}", "type": "gateway_health", "street": street,
           "community": community, "gateway": gateway, **figures}
    validate(doc)
    return doc
