"""The server's silence rule (server/services/alerts.py) on a real CouchDB, with the sweep's clock moved by hand:
a gateway whose heartbeat stops and a device nobody hears raise one alert each, escalate like any alert, and are
resolved when heard again. Health documents are built by the gateway's own code (`ble_gateway.documents`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ble_gateway import documents
from ble_gateway.registry import device_from_doc
from crypto import key_statements
from crypto.envelope import WriteKey
from server.services import alerts
from server.store.couch import Couch, get_or_none

from .ble_virtual import INSTALLATION_PUBLIC, device_doc

BAND, METER = "A4:C1:38:00:00:02", "A4:C1:38:00:00:01"
T0 = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)
WRITE_KEY = WriteKey.generate(1)
GATEWAY = {"_id": "gateway:gw1", "type": "gateway", "street": "street:s1", "community": "community:c1", "name": "网关"}
DEVICES = [device_doc(BAND, "wristband", WRITE_KEY, encrypted=True),
           device_doc(METER, "water_meter", WRITE_KEY, grid="grid:c1-g2", resident="resident:c1-g2-h001-1")]


def put(couch: Couch, doc: dict[str, Any]) -> None:
    """Store doc over its current revision, as the gateway's uplink does with health documents."""
    current = get_or_none(couch.main, doc["_id"])
    couch.main.save({**doc, **({"_rev": current["_rev"]} if current else {})})


def heartbeat(couch: Couch, at: dt.datetime) -> None:
    put(couch, documents.gateway_health("gateway:gw1", "street:s1", "community:c1", {"heartbeat_at": at.isoformat()}))


def heard(couch: Couch, mac: str, at: dt.datetime) -> None:
    device = device_from_doc(next(d for d in DEVICES if d["mac"] == mac), "gateway:gw1", {BAND: bytes(16)},
                             key_statements.load_pinned(INSTALLATION_PUBLIC))
    put(couch, documents.device_health(device, "gateway:gw1", at, 80, 0, at))


def silences(couch: Couch) -> dict[str, dict[str, Any]]:
    rows = couch.main.all(startkey="alert:silent-", endkey="alert:silent-\ufff0", as_list=True)
    return {row["id"]: row["doc"] for row in rows}


def test_a_silent_gateway_then_a_silent_meter_each_raise_one_alert_resolved_when_heard_again(couch: Couch) -> None:
    for doc in (GATEWAY, *DEVICES):
        couch.main.save(doc)
    heartbeat(couch, T0)
    heard(couch, BAND, T0)
    heard(couch, METER, T0)

    assert alerts.sweep(couch, T0 + dt.timedelta(minutes=10)).silent_raised == 0  # two missed heartbeats: a reboot

    first = alerts.sweep(couch, T0 + dt.timedelta(minutes=20))
    assert (first.silent_raised, first.silent_resolved) == (1, 0)
    (gateway_alert,) = silences(couch).values()
    assert gateway_alert["_id"] == f"alert:silent-gateway-gw1-{int(T0.timestamp())}"
    assert (gateway_alert["kind"], gateway_alert["status"], gateway_alert["gateway"]) == ("gateway_silent", "raised",
                                                                                          "gateway:gw1")
    assert gateway_alert["community"] == "community:c1" and gateway_alert["grid"] in ("grid:c1-g1", "grid:c1-g2")

    # four hours on, still silent: the same alert, escalated to the secretary; its devices (unheard for 4 h, but
    # because of it) raise nothing of their own
    later = alerts.sweep(couch, T0 + dt.timedelta(hours=4))
    assert (later.silent_raised, later.escalated) == (0, 1)
    assert list(silences(couch)) == [gateway_alert["_id"]]
    assert silences(couch)[gateway_alert["_id"]]["status"] == "escalated"
    assert couch.main.get(f"notification:{gateway_alert['_id'].split(':', 1)[1]}-secretary")["audience"] == "secretary"

    # the gateway is back and hears the wristband, but not the meter
    back = T0 + dt.timedelta(hours=4, minutes=5)
    heartbeat(couch, back)
    heard(couch, BAND, back)
    report = alerts.sweep(couch, back + dt.timedelta(minutes=1))
    assert (report.silent_raised, report.silent_resolved) == (1, 1)
    found = silences(couch)
    assert found[gateway_alert["_id"]]["status"] == "resolved" and found[gateway_alert["_id"]]["resolved_at"]
    meter_alert = found[f"alert:silent-device-a4c138000001-{int(T0.timestamp())}"]
    assert (meter_alert["kind"], meter_alert["status"], meter_alert["device"]) == ("device_silent", "raised",
                                                                                   "device:a4c138000001")
    assert meter_alert["grid"] == "grid:c1-g2" and meter_alert["resident"] == "resident:c1-g2-h001-1"
    again = alerts.sweep(couch, back + dt.timedelta(minutes=2))  # the next minute: nothing twice
    assert (again.silent_raised, again.silent_resolved) == (0, 0) and len(silences(couch)) == 2

    heard(couch, METER, back + dt.timedelta(minutes=3))
    heartbeat(couch, back + dt.timedelta(minutes=3))
    assert alerts.sweep(couch, back + dt.timedelta(minutes=4)).silent_resolved == 1
    assert couch.main.get(meter_alert["_id"])["status"] == "resolved"

    # silent again next day: a new episode, a new alert
    heartbeat(couch, T0 + dt.timedelta(days=1))
    assert alerts.sweep(couch, T0 + dt.timedelta(days=1, minutes=30)).silent_raised == 1
    assert sorted(a["status"] for a in silences(couch).values() if a["kind"] == "gateway_silent") == [
        "raised", "resolved"]


def test_a_device_never_heard_since_registration_is_silent_and_an_unpaired_one_is_not(couch: Couch) -> None:
    unpaired = {k: v for k, v in device_doc("A4:C1:38:00:00:09", "door_sensor", WRITE_KEY).items() if k != "gateway"}
    for doc in (GATEWAY, *DEVICES, unpaired):
        couch.main.save(doc)
    registered = dt.datetime.fromisoformat(DEVICES[0]["registered_at"])
    heartbeat(couch, registered + dt.timedelta(hours=5))
    report = alerts.sweep(couch, registered + dt.timedelta(hours=5, minutes=1))
    assert report.silent_raised == 2
    assert {a["device"] for a in silences(couch).values()} == {d["_id"] for d in DEVICES}
