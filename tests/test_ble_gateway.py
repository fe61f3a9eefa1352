"""The BLE gateway on virtual devices (bumble's in-process link behind bleak's backend hook), offline:
decoding, replay and forgery, rules with a simulated clock, the outbox across restarts, adapter loss,
heart rate over GATT. The sync side is in test_ble_sync.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sqlite3
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from bumble.profiles.heart_rate_service import HeartRateService

from ble_gateway.clock import ManualClock
from ble_gateway.credentials import SecretError, bind_keys
from ble_gateway.gateway import Gateway, GatewayConfig
from ble_gateway.heart_rate import HeartRateError, parse_measurement
from ble_gateway.outbox import Outbox
from ble_gateway.registry import Registry
from ble_gateway.rules import AlertDraft
from crypto import key_statements
from crypto.envelope import FieldContext, WriteKey
from server.domain.declaration import validate

from .ble_virtual import INSTALLATION_PUBLIC, VirtualDevice, VirtualRadio, device_doc, settle, until

METER, BAND, DOOR = "A4:C1:38:00:00:01", "A4:C1:38:00:00:02", "A4:C1:38:00:00:03"
BIND_KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
START = dt.datetime(2026, 11, 2, 0, 0, tzinfo=dt.UTC)  # 08:00 in Asia/Shanghai
WRITE_KEY = WriteKey.generate(1)


def committed_ids(data_dir: Path) -> set[str]:
    """Document ids on disk, read through a connection of its own: what a gateway restarted after a power cut finds."""
    db = sqlite3.connect(data_dir / "gateway.sqlite3")
    try:
        return {doc_id for (doc_id,) in db.execute("SELECT doc_id FROM outbox")}
    finally:
        db.close()


def outbox_docs(data_dir: Path, doc_type: str | None = None) -> list[dict[str, Any]]:
    box = Outbox(data_dir / "gateway.sqlite3")
    rows = [json.loads(body) for (body,) in box.db.execute("SELECT body FROM outbox ORDER BY doc_id")]
    box.close()
    return [d for d in rows if doc_type is None or d["type"] == doc_type]


class Rig:
    """A gateway (offline: no uplink) on a virtual radio, with a clock the test moves."""

    def __init__(self, data_dir: Path, radio: VirtualRadio, configuration: list[dict[str, Any]],
                 **config: Any) -> None:
        self.data_dir, self.radio, self.config = data_dir, radio, config
        box = Outbox(data_dir / "gateway.sqlite3")
        box.save_config(configuration, "0")
        box.close()
        self.clock = ManualClock(START)
        self.alarms: list[str] = []
        self.on_disk_at_alarm: list[set[str]] = []
        self.gateway = self.start()

    def alarm(self, draft: AlertDraft) -> None:
        self.alarms.append(draft.kind)
        self.on_disk_at_alarm.append(committed_ids(self.data_dir))

    def start(self) -> Gateway:
        config = GatewayConfig(gateway="gateway:gw1", data_dir=self.data_dir, installation_key=INSTALLATION_PUBLIC,
                               stall_seconds=0.4, **self.config)
        return Gateway(config, {BAND: BIND_KEY}, clock=self.clock, scanner_backend=self.radio.scanner_backend,
                       client_backend=self.radio.client_backend, on_alarm=self.alarm)

    async def emit(self, device: VirtualDevice, objects: bytes) -> None:
        before = self.gateway.advertisements
        await device.emit(objects)
        await settle(self.gateway, before)

    async def send_raw(self, device: VirtualDevice, payload: bytes) -> None:
        before = self.gateway.advertisements
        await device.send_raw(payload)
        await settle(self.gateway, before)


def run_with_rig(tmp_path: Path, configuration: list[dict[str, Any]], scenario: Callable[[Rig], Awaitable[None]],
                 *, whole_gateway: bool = False, **config: Any) -> Rig:
    """Run scenario on a rig; the gateway scans only (the test calls tick), or runs whole (`Gateway.run`)."""
    async def main() -> Rig:
        radio = VirtualRadio()
        await radio.start()
        await radio.add(METER)
        await radio.add(DOOR)
        await radio.add(BAND, BIND_KEY, wristband=True)
        rig = Rig(tmp_path, radio, configuration, **config)
        scanning = asyncio.create_task(rig.gateway.run() if whole_gateway else rig.gateway.scanner.run())
        try:
            await scenario(rig)
        finally:
            scanning.cancel()
            await asyncio.gather(scanning, return_exceptions=True)
            rig.gateway.close()
        return rig

    return asyncio.run(main())


CONFIG = [device_doc(METER, "water_meter", WRITE_KEY), device_doc(DOOR, "door_sensor", WRITE_KEY),
          device_doc(BAND, "wristband", WRITE_KEY, encrypted=True),
          {"_id": "gateway:gw1", "type": "gateway", "street": "street:s1", "community": "community:c1", "name": "网关"}]


def opened(doc: dict[str, Any], field: str) -> Any:
    """The protected field opened with the resident's private write key (what the server can do, not the gateway)."""
    tier = "core"
    assert doc[field].startswith("enc:"), f"{field} must be stored sealed"
    return WRITE_KEY.open(FieldContext(doc["_id"], field, tier), doc[field])


# ---------------------------------------------------------------- heart rate over GATT: the measurement format

def test_heart_rate_measurement_is_parsed_per_the_specification() -> None:
    eight_bit = parse_measurement(bytes([0x00, 72]))
    assert (eight_bit.bpm, eight_bit.contact, eight_bit.energy_kj, eight_bit.rr_intervals) == (72, None, None, ())
    sixteen = parse_measurement(bytes([0x01]) + struct.pack("<H", 300))
    assert sixteen.bpm == 300
    full = parse_measurement(bytes([0x1F]) + struct.pack("<HHHH", 95, 12, 1024, 512))
    assert (full.bpm, full.contact, full.energy_kj, full.rr_intervals) == (95, True, 12, (1.0, 0.5))
    off_wrist = parse_measurement(bytes([0x04, 0]))
    assert off_wrist.contact is False and not off_wrist.usable
    # bumble's own encoder (an independent implementation of the same specification) agrees
    encoded = bytes(HeartRateService.HeartRateMeasurement(64, sensor_contact_detected=True, energy_expended=3,
                                                          rr_intervals=[0.9375]))
    assert parse_measurement(encoded) == parse_measurement(bytes([0x1E, 64, 3, 0, 0xC0, 0x03]))
    for bad, why in ((b"\x00", "at least 2"), (b"\x01\x50", "16-bit"), (b"\x08\x50\x01", "energy"),
                     (b"\x10\x50\x01", "whole uint16"), (b"\x00\x50\x01", "unexpected")):
        with pytest.raises(HeartRateError, match=why):
            parse_measurement(bad)


# ---------------------------------------------------------------- secrets

def test_bind_keys_come_from_a_private_file_and_errors_never_show_a_key(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "bind-keys.json"
    keys.write_text(json.dumps({BAND.lower(): BIND_KEY.hex()}))
    monkeypatch.delenv("LINLI_GATEWAY_BIND_KEYS", raising=False)
    monkeypatch.setenv("LINLI_GATEWAY_BIND_KEYS_FILE", str(keys))
    os.chmod(keys, 0o644)
    with pytest.raises(SecretError, match="owner only"):
        bind_keys()
    os.chmod(keys, 0o600)
    assert bind_keys() == {BAND: BIND_KEY}
    secret = "zz" + BIND_KEY.hex()[2:]
    keys.write_text(json.dumps({BAND: secret}))
    with pytest.raises(SecretError, match="32 hex digits") as error:
        bind_keys()
    assert secret not in str(error.value)


# ---------------------------------------------------------------- rules with a simulated clock

def test_a_day_of_water_use_then_twelve_silent_hours_raise_exactly_one_alert(tmp_path: Path) -> None:
    async def scenario(rig: Rig) -> None:
        meter, litres = rig.radio.devices[METER], 1000.0
        for half_hour in range(48):  # a normal day: water now and then, the meter advertising every 30 min
            if half_hour % 3 == 0:
                litres += 12.5
            await rig.emit(meter, meter.water(litres))
            rig.gateway.tick()
            rig.clock.advance(dt.timedelta(minutes=30))
        assert outbox_docs(rig.data_dir, "alert") == []
        for _ in range(30):  # then 15 silent hours: the meter still advertises, the count stands still
            await rig.emit(meter, meter.water(litres))
            rig.gateway.tick()
            rig.clock.advance(dt.timedelta(minutes=30))

    rig = run_with_rig(tmp_path, CONFIG, scenario)
    alerts = outbox_docs(tmp_path, "alert")
    assert [a["kind"] for a in alerts] == ["no_water"], alerts
    alert = alerts[0]
    validate(alert)
    assert alert["resident"] == "resident:c1-g1-h001-1" and alert["grid"] == "grid:c1-g1"
    assert alert["visibility"] == "grid_staff" and alert["status"] == "raised"
    assert "no water used for 12." in opened(alert, "detail")
    assert rig.alarms == []  # a silent meter is for the grid worker, not a siren in the room
    readings = outbox_docs(tmp_path, "reading")
    assert readings and all(r["value"].startswith("enc:") for r in readings)
    assert {opened(r, "value") for r in readings if r["metric"] == "water"} >= {1012.5, 1200.0}


def test_quiet_hours_hold_a_routine_alert_until_morning(tmp_path: Path) -> None:
    rules = {"_id": "safety_rules:c1-g1-h001-1", "type": "safety_rules", "street": "street:s1",
             "community": "community:c1", "grid": "grid:c1-g1", "household": "household:c1-g1-h001",
             "resident": "resident:c1-g1-h001-1", "gateway": "gateway:gw1", "no_water_hours": 6,
             "quiet_start": "22:00", "quiet_end": "07:00", "updated_by": "user:wangge01",
             "updated_at": START.isoformat()}

    async def scenario(rig: Rig) -> None:
        meter = rig.radio.devices[METER]
        rig.clock.advance(dt.timedelta(hours=10))  # 18:00 local: last use of the day
        await rig.emit(meter, meter.water(5.0))
        for _ in range(14):  # through the night to 08:00, hourly
            rig.clock.advance(dt.timedelta(hours=1))
            await rig.emit(meter, meter.water(5.0))
            rig.gateway.tick()
            raised = outbox_docs(rig.data_dir, "alert")
            local = rig.clock.now().astimezone(dt.timezone(dt.timedelta(hours=8))).time()
            if dt.time(0, 0) <= local < dt.time(7, 0):
                assert raised == [], f"raised during quiet hours at {local}"

    run_with_rig(tmp_path, [*CONFIG, rules], scenario)
    (alert,) = outbox_docs(tmp_path, "alert")
    assert alert["kind"] == "no_water"
    assert dt.datetime.fromisoformat(alert["raised_at"]).astimezone(dt.timezone(dt.timedelta(hours=8))).hour == 7


# ---------------------------------------------------------------- SOS, replay, forgery

def test_sos_raises_one_alert_and_a_local_alarm_and_forged_or_replayed_packets_are_refused(tmp_path: Path) -> None:
    async def scenario(rig: Rig) -> None:
        band = rig.radio.devices[BAND]
        await rig.emit(band, band.battery(80) + band.buttons())
        first = band.sent[-1]
        await rig.emit(band, band.buttons(sos=1))
        await rig.emit(band, band.buttons(sos=1))  # pressed again a minute later: the same emergency
        rig.clock.advance(dt.timedelta(minutes=1))
        await rig.send_raw(band, first)  # an old packet, replayed
        corrupt = bytearray(band.payload(band.buttons(sos=1)))
        corrupt[2] ^= 0xFF  # one ciphertext byte changed on the way: the MIC no longer matches
        await rig.send_raw(band, bytes(corrupt))
        plain = bytes([0x40, 0x00, 99]) + band.buttons(sos=1)  # anyone can send plain BTHome with its MAC
        await rig.send_raw(band, plain)
        stranger = await rig.radio.add("C0:FF:EE:00:00:09")
        await rig.emit(stranger, stranger.buttons(sos=1))
        rig.clock.advance(dt.timedelta(minutes=20))
        await rig.emit(band, band.buttons(fall=1))

    rig = run_with_rig(tmp_path, CONFIG, scenario)
    alerts = outbox_docs(tmp_path, "alert")
    assert sorted(a["kind"] for a in alerts) == ["fall", "sos"]
    assert rig.alarms == ["sos", "fall"]
    sos = next(a for a in alerts if a["kind"] == "sos")
    assert opened(sos, "detail") == "SOS key pressed (press)"
    rejected = rig.gateway.rejected
    # each forgery counted (a wristband repeats its advertisement, so possibly more than once), none let through
    assert rejected["replay"] >= 1 and rejected["bad_mic"] >= 1 and rejected["downgrade"] >= 1
    assert rig.gateway.registry.unknown_count >= 1 and "C0:FF:EE:00:00:09" in rig.gateway.registry.unknown_macs


def test_a_restarted_gateway_loses_nothing_doubles_nothing_and_still_refuses_old_packets(tmp_path: Path) -> None:
    async def scenario(rig: Rig) -> None:
        meter, band = rig.radio.devices[METER], rig.radio.devices[BAND]
        for n in range(5):
            await rig.emit(meter, meter.water(100.0 + n))
            rig.clock.advance(dt.timedelta(minutes=16))
        await rig.emit(band, band.buttons(sos=1))
        old_sos = band.sent[-1]
        await rig.emit(band, band.battery(80) + band.buttons())  # the band's latest packet: no emergency
        latest = band.sent[-1]
        rig.gateway.close()  # killed mid-stream: everything heard so far was committed, nothing was sent
        rig.gateway = rig.start()
        scanning = asyncio.create_task(rig.gateway.scanner.run())
        await rig.send_raw(band, old_sos)  # an older packet replayed first thing after the restart: refused
        assert rig.gateway.rejected["replay"] >= 1
        replays = rig.gateway.rejected["replay"]
        await rig.send_raw(band, latest)  # the latest heard again: a repeat, dropped quietly, not a replay
        assert rig.gateway.rejected["replay"] == replays
        await rig.send_raw(meter, meter.sent[-1])  # the meter's last packet, repeated
        for n in range(5, 8):
            await rig.emit(meter, meter.water(100.0 + n))
            rig.clock.advance(dt.timedelta(minutes=16))
        scanning.cancel()
        await asyncio.gather(scanning, return_exceptions=True)

    rig = run_with_rig(tmp_path, CONFIG, scenario)
    water = [opened(r, "value") for r in outbox_docs(tmp_path, "reading") if r["metric"] == "water"]
    assert sorted(water) == [100.0 + n for n in range(8)]  # each once, none lost across the restart
    assert [a["kind"] for a in outbox_docs(tmp_path, "alert")] == ["sos"]
    assert rig.alarms == ["sos"]  # the local alarm sounded once


def test_scanning_recovers_by_itself_when_the_adapter_disappears_and_comes_back(tmp_path: Path) -> None:
    async def scenario(rig: Rig) -> None:
        meter = rig.radio.devices[METER]
        await rig.emit(meter, meter.water(1.0))
        rig.radio.adapter_present = False  # unplugged: the scan goes quiet, then cannot start
        await meter.emit(meter.water(2.0))  # lost in the air, as it would be
        await until(lambda: rig.gateway.scanner.start_failures >= 1, "a scan that could not start")
        assert not rig.gateway.scanner.scanning
        rig.radio.adapter_present = True
        await until(lambda: rig.gateway.scanner.scanning, "scanning again once the adapter is back")
        rig.clock.advance(dt.timedelta(minutes=16))
        await rig.emit(meter, meter.water(3.0))

    rig = run_with_rig(tmp_path, CONFIG, scenario)
    assert rig.gateway.scanner.restarts >= 1
    water = sorted(opened(r, "value") for r in outbox_docs(tmp_path, "reading") if r["metric"] == "water")
    assert water == [1.0, 3.0]


# ---------------------------------------------------------------- heart rate over GATT

def test_heart_rate_out_of_range_over_gatt_raises_one_alert(tmp_path: Path) -> None:
    async def scenario(rig: Rig) -> None:
        band = rig.radio.devices[BAND]
        handled: list[int] = []
        handle = rig.gateway.handle_heart_rate

        def counted(device: Any, measurement: Any) -> None:
            handle(device, measurement)
            handled.append(measurement.bpm)

        rig.gateway.handle_heart_rate = counted  # type: ignore[method-assign]
        rig.gateway._sync_monitors()  # noqa: SLF001 - the monitors `run()` would start
        monitor_task = rig.gateway._monitors[f"device:{BAND.replace(':', '').lower()}"]  # noqa: SLF001
        await until(lambda: rig.radio.subscriptions == 1, "the gateway subscribed to the band's heart rate")
        for n, bpm in enumerate((72, 75, 190, 185, 188, 192, 186), start=1):
            await band.notify_heart_rate(bpm)
            await until(lambda n=n: len(handled) == n, f"{bpm} bpm handled")
            rig.clock.advance(dt.timedelta(seconds=30))
        band.contact = False
        await band.notify_heart_rate(0)  # taken off: not an emergency
        await until(lambda: len(handled) == 8, "the last notification handled")
        monitor_task.cancel()
        await asyncio.gather(monitor_task, return_exceptions=True)

    run_with_rig(tmp_path, CONFIG, scenario)
    (alert,) = outbox_docs(tmp_path, "alert")
    assert alert["kind"] == "heart_rate" and "190 bpm" not in alert["detail"]
    assert opened(alert, "detail").startswith("heart rate 188 bpm, outside 40–150")
    rates = sorted(opened(r, "value") for r in outbox_docs(tmp_path, "reading") if r["metric"] == "heart_rate")
    assert rates and set(rates) <= {72, 75, 190, 185, 188, 192, 186}


# ---------------------------------------------------------------- group commit

def test_readings_wait_for_the_group_commit_but_an_sos_is_on_disk_with_them_before_its_alarm(tmp_path: Path) -> None:
    async def scenario(rig: Rig) -> None:
        meter, band = rig.radio.devices[METER], rig.radio.devices[BAND]
        await rig.emit(meter, meter.water(10.0))
        assert [d for d in committed_ids(rig.data_dir) if d.startswith("reading:")] == []  # waiting for the group
        await rig.emit(band, band.buttons(sos=1))
        rig.clock.advance(dt.timedelta(minutes=16))
        await rig.emit(meter, meter.water(11.0))
        # A power cut now loses this reading and, with it, the meter's sequence and reading state: restarted, the
        # gateway takes the meter's next packet as new and stores its (cumulative) count.
        box = Outbox(rig.data_dir / "gateway.sqlite3")
        (sequence,) = [s.number for d, (_, s) in box.sequences().items() if d.endswith("000001")]
        box.close()
        assert sequence == meter.packet_id - 1

    rig = run_with_rig(tmp_path, CONFIG, scenario, commit_seconds=3600)
    assert rig.alarms == ["sos"]
    (at_alarm,) = rig.on_disk_at_alarm
    assert any(d.startswith("alert:") and "-sos-" in d for d in at_alarm)
    assert [d for d in at_alarm if d.startswith("reading:") and d.endswith("-water")]  # heard before: with it
    water = sorted(opened(r, "value") for r in outbox_docs(tmp_path, "reading") if r["metric"] == "water")
    assert water == [10.0, 11.0]  # the clean stop committed the rest


def test_a_running_gateway_commits_a_reading_within_the_window_without_another_packet(tmp_path: Path) -> None:
    async def scenario(rig: Rig) -> None:
        meter = rig.radio.devices[METER]
        await until(lambda: rig.gateway.scanner.scanning, "scanning")
        await rig.emit(meter, meter.water(42.0))
        accepted = dict(rig.gateway.decoder.last)
        await until(lambda: any(d.endswith("-water") for d in committed_ids(rig.data_dir)), "the reading committed")
        assert rig.gateway.decoder.last == accepted  # committed by the commit step, not by a later packet

    without_band = [d for d in CONFIG if d.get("mac") != BAND]  # the meter alone is heard: nothing else commits
    run_with_rig(tmp_path, without_band, scenario, whole_gateway=True, commit_seconds=0.2)


def test_a_device_whose_write_key_is_not_a_p256_point_is_refused_when_configured() -> None:
    registry = Registry("gateway:gw1", {}, key_statements.load_pinned(INSTALLATION_PUBLIC))
    doc = device_doc(METER, "water_meter", WRITE_KEY)
    registry.apply({**doc, "write_public": doc["write_public"][:-4] + "AAAA"})  # well-formed base64url, off the curve
    assert registry.get(doc["_id"]) is None
    assert "not a P-256 public key" in registry.problems[doc["_id"]]
    registry.apply(doc)
    assert registry.get(doc["_id"]) is not None
