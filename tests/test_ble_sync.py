"""The BLE gateway end to end: registered through `linli`'s own code, configured and delivering through the
sync gateway of a real `linli serve` with its device token, an SOS press reaching the grid worker's PouchDB
replica; the alert sweep notifying the family and escalating to the secretary."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ble_gateway.gateway import Gateway, GatewayConfig
from ble_gateway.uplink import Uplink
from crypto.fields import open_fields
from server.security.firewall import Firewall
from server.services import alerts, devices
from server.store.couch import get_or_none
from sync.auth import new_device_token
from tests.sync_harness import Street, street_fixture  # noqa: F401 - the fixture

from .ble_virtual import VirtualRadio, until

BAND, METER = "A4:C1:38:00:00:02", "A4:C1:38:00:00:01"
BIND_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
RESIDENT, OTHER_GRID_RESIDENT = "resident:c1-g1-h001-1", "resident:c1-g2-h001-1"


def prepare(street: Street, firewall: Firewall) -> str:
    """Data keys for two residents, their devices registered to gateway gw1, and the gateway's device token."""
    now = dt.datetime.now(dt.UTC)
    for resident in (RESIDENT, OTHER_GRID_RESIDENT):
        firewall.couch.main.save(firewall.keystore.new_data_key_doc(firewall.couch.main.get(resident)))
    devices.register(firewall, resident=RESIDENT, gateway="gateway:gw1", kind="wristband", mac=BAND,
                     encrypted=True, model="virtual", now=now)
    # gw1's account serves grid 1 only: a device of grid 2 paired to it cannot make it write there
    devices.register(firewall, resident=OTHER_GRID_RESIDENT, gateway="gateway:gw1", kind="water_meter", mac=METER,
                     encrypted=False, model=None, now=now)
    token, doc = new_device_token("user:gw1", "test gateway", now)
    street.couch.accounts.save(doc)
    return token


@contextlib.asynccontextmanager
async def gateway_on(street: Street, token: str, tmp_path: Path, radio: VirtualRadio, task: str,
                     **config: Any) -> AsyncIterator[Gateway]:
    """A gateway configured through the sync gateway, running `task` ("run" or "scan") for the block."""
    uplink = Uplink(street.served.sync_url, token)
    # The installation key as `linli device-token issue` printed it for the gateway to pin.
    pinned = Firewall.open(street.settings, street.couch).keystore.installation_public()
    gateway = Gateway(GatewayConfig("gateway:gw1", tmp_path, pinned, **config), {BAND: BIND_KEY}, uplink,
                      scanner_backend=radio.scanner_backend, client_backend=radio.client_backend)
    await gateway.refresh_config()  # its devices, nothing else of anyone's
    running = asyncio.create_task(gateway.run() if task == "run" else gateway.scanner.run())
    try:
        yield gateway
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await uplink.close()
        gateway.close()


def test_sos_press_reaches_the_grid_workers_replica_sealed_and_the_sweep_escalates(
        street: Street, firewall: Firewall, tmp_path: Path) -> None:
    token = prepare(street, firewall)
    phone = street.phone("wangge01")
    secretary_view = street.phone("shuji1")
    try:
        phone.call("startLive")

        async def scenario() -> tuple[str, dict]:
            radio = VirtualRadio()
            await radio.start()
            band = await radio.add(BAND, BIND_KEY, wristband=True)
            meter = await radio.add(METER)
            async with gateway_on(street, token, tmp_path, radio, "run", push_seconds=0.5,
                                  heartbeat_minutes=0) as gateway:
                assert {d.mac for d in gateway.registry.devices()} == {BAND, METER}
                await until(lambda: gateway.scanner.scanning, "scanning")
                await meter.emit(meter.water(3.0))
                await band.emit(band.buttons(sos=1))
                alert_id = f"alert:{BAND.replace(':', '').lower()}-sos-c{band.counter}"
                found = await asyncio.to_thread(phone.call, "waitFor", id=alert_id, timeout_ms=10_000)
                assert found["found"], found
                gateway.tick()  # heartbeat and device health
                await gateway.push()
                return alert_id, gateway.outbox.counts()

        alert_id, counts = asyncio.run(scenario())
    finally:
        phone.close()
        secretary_view.close()

    stored = street.couch.main.get(alert_id)
    assert stored["kind"] == "sos" and stored["status"] == "raised" and stored["grid"] == "grid:c1-g1"
    assert stored["detail"].startswith("enc:")  # the gateway wrote what it cannot read
    keys = firewall.keystore.data_keys(RESIDENT)
    assert open_fields(stored, keys, ["detail"]) == {"detail": "SOS key pressed (press)"}
    # the grid-2 meter's reading was refused by the sync gateway (gw1 serves grid 1), kept aside, not retried
    assert counts["refused"] == 1 and counts["pending"] == 0
    health = get_or_none(street.couch.main, "gateway_health:gw1")
    assert health is not None and health["advertisements"] >= 2
    assert get_or_none(street.couch.main, "device_health:" + BAND.replace(":", "").lower())["last_seen_at"]

    # the sweep: family told at once (default privacy), escalated after 30 unacknowledged minutes
    now = dt.datetime.fromisoformat(stored["raised_at"])
    first = alerts.sweep(street.couch, now + dt.timedelta(minutes=5))
    assert (first.family_notified, first.escalated) == (1, 0)
    assert alerts.sweep(street.couch, now + dt.timedelta(minutes=6)).family_notified == 0  # once
    later = alerts.sweep(street.couch, now + dt.timedelta(minutes=31))
    assert later.escalated == 1
    escalated = street.couch.main.get(alert_id)
    assert escalated["status"] == "escalated" and escalated["escalated_at"]
    key = alert_id.split(":", 1)[1]
    assert street.couch.main.get(f"notification:{key}-family")["audience"] == "family"
    assert street.couch.main.get(f"notification:{key}-secretary")["audience"] == "secretary"


def test_a_delivery_cut_off_before_its_answer_is_retried_without_doubles(street: Street, firewall: Firewall,
                                                                          tmp_path: Path) -> None:
    token = prepare(street, firewall)

    async def scenario() -> tuple[int, int]:
        radio = VirtualRadio()
        await radio.start()
        band = await radio.add(BAND, BIND_KEY, wristband=True)
        async with gateway_on(street, token, tmp_path, radio, "scan") as gateway:
            before = gateway.advertisements
            await band.emit(band.buttons(sos=1))
            await until(lambda: gateway.outbox.counts()["pending"] > 0 and gateway.advertisements > before,
                        "the SOS heard and waiting in the outbox")
            first = await gateway.push()
            # as if the answer had been lost: everything sent is pending again
            gateway.outbox.db.execute("UPDATE outbox SET state = 'pending'")
            second = await gateway.push()
            return first, second

    first, second = asyncio.run(scenario())
    assert first == second >= 1  # every document counted as delivered the second time too …
    alerts_stored = [r for r in street.couch.main.all(startkey="alert:", endkey="alert:\ufff0", as_list=True)]
    assert len(alerts_stored) == 1  # … and stored once
