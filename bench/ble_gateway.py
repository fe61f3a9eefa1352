"""BLE gateway: decode-and-rule throughput, SOS-to-replica latency, memory with 2,000 devices.

    .venv/bin/python bench/ble_gateway.py [--devices 2000] [--rounds 20] [--presses 20] [--repeat 3]

Prints one JSON line.
* Throughput: every device advertises once per round (a simulated minute apart, so that the timed rounds
  cross the 15-minute reading interval and the readings it stores are sealed and committed, in groups
  at most a second apart, as in service); the gateway's own path
  (`Gateway.handle_advertisement`: registry, replay guard, bthome-ble, rules, readings sealed into the
  SQLite outbox) against bare `bthome-ble` decoding of the same advertisements (one parser per device,
  `update()` on each). Each side starts fresh each run and is warmed alike: the first round untimed, the
  others timed; `--repeat` runs of each after a warm-up run, interleaved (bench/measure.py), medians and spread;
  every advertisement must be handled (none refused) and decoded. `ratio` = ours / bare time (lower is better;
  goal: at most 2). Fleet: 50% plain water meters, 25% plain electricity meters, 25% encrypted wristbands.
* Memory: Python heap held by a gateway with all devices registered and one round decoded (tracemalloc).
* Latency: a virtual wristband's SOS press until the alert is in a grid worker's PouchDB replica
  (Node, live replication) through `linli serve`'s sync gateway on loopback, with its own pouchdb-server;
  p50/p95 over the presses. Goal: p95 under 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bleak.backends.device import BLEDevice  # noqa: E402
from bleak.backends.scanner import AdvertisementData  # noqa: E402
from bthome_ble import BTHomeBluetoothDeviceData  # noqa: E402
from habluetooth import BluetoothServiceInfoBleak  # noqa: E402

from bench.measure import compare, expect, load_average, timed  # noqa: E402
from ble_gateway.clock import ManualClock  # noqa: E402
from ble_gateway.decode import BTHOME_UUID  # noqa: E402
from ble_gateway.gateway import Gateway, GatewayConfig  # noqa: E402
from ble_gateway.outbox import Outbox  # noqa: E402
from ble_gateway.uplink import Uplink  # noqa: E402
from crypto.envelope import WriteKey  # noqa: E402
from server.security.firewall import Firewall  # noqa: E402
from server.services import devices  # noqa: E402
from server.store.couch import connect  # noqa: E402
from server.store.embedded_couch import EmbeddedCouch, free_port  # noqa: E402
from sync.auth import new_device_token  # noqa: E402
from tests.ble_virtual import (  # noqa: E402
    INSTALLATION_PUBLIC,
    VirtualDevice,
    VirtualRadio,
    bthome_service_data,
    device_doc,
)
from tests.conftest import make_settings  # noqa: E402
from tests.sync_harness import Phone, login, seed, serve, stop  # noqa: E402

START = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
PRESS_APART = dt.timedelta(minutes=11)


def fleet(n: int) -> list[tuple[str, str, bytes | None]]:
    """(mac, kind, bind key) for n devices."""
    kinds = ["water_meter", "water_meter", "electricity_meter", "wristband"]
    return [(f"A4:C1:{i >> 16 & 255:02X}:{i >> 8 & 255:02X}:{i & 255:02X}:01", kinds[i % 4],
             bytes([i % 251]) * 16 if kinds[i % 4] == "wristband" else None) for i in range(n)]


def advertisements(devices_: list[tuple[str, str, bytes | None]], rounds: int) -> list[tuple[BLEDevice,
                                                                                           AdvertisementData]]:
    out = []
    for r in range(1, rounds + 1):
        for mac, kind, key in devices_:
            if kind == "water_meter":
                objects = VirtualDevice.water(1000 + r * 0.5)
            elif kind == "electricity_meter":
                objects = bytes([0x01, 90]) + VirtualDevice.power(300 + r)
            else:
                objects = bytes([0x01, 80]) + VirtualDevice.buttons()
            data = bthome_service_data(bytes([0x00, r % 256]) + objects, mac, key, counter=r)
            adv = AdvertisementData(None, {}, {BTHOME_UUID: data}, [BTHOME_UUID], None, -60, ())
            out.append((BLEDevice(mac, None, None), adv))
    return out


def bare(ads: list[tuple[BLEDevice, AdvertisementData]], keys: dict[str, bytes | None], per_round: int) -> float:
    """Seconds for bare `bthome-ble` to decode every round but the first, which warms its parsers untimed (as the
    gateway's first round warms it); every timed advertisement must decode to values."""
    parsers = {mac: BTHomeBluetoothDeviceData(key) for mac, key in keys.items()}

    def update(device: BLEDevice, adv: AdvertisementData) -> bool:
        info = BluetoothServiceInfoBleak(
            name="", address=device.address, rssi=adv.rssi, manufacturer_data={}, service_data=adv.service_data,
            service_uuids=adv.service_uuids, source="bench", device=device, advertisement=adv, connectable=False,
            time=time.monotonic(), tx_power=None)
        return bool(parsers[device.address].update(info).entity_values)

    for device, adv in ads[:per_round]:
        update(device, adv)
    seconds, decoded = timed(lambda: sum(update(device, adv) for device, adv in ads[per_round:]))
    expect("advertisements bthome-ble decoded", decoded, len(ads) - per_round)
    return seconds


def _gateway(devices_: list[tuple[str, str, bytes | None]], folder: Path, clock: ManualClock) -> Gateway:
    """A gateway with every device registered, in a folder of its own."""
    folder.mkdir(parents=True)
    write_key = WriteKey.generate(1)
    box = Outbox(folder / "gateway.sqlite3")
    box.save_config([device_doc(mac, kind, write_key, encrypted=key is not None, grid="grid:c1-g1",
                                resident=f"resident:c1-g1-h{i:04d}-1") for i, (mac, kind, key) in enumerate(devices_)],
                    "0")
    box.close()
    return Gateway(GatewayConfig("gateway:gw1", folder, INSTALLATION_PUBLIC),
                   {mac: key for mac, _, key in devices_ if key}, clock=clock)


def heap_mb(ads: list[tuple[BLEDevice, AdvertisementData]], devices_: list[tuple[str, str, bytes | None]],
            folder: Path, per_round: int) -> float:
    """The Python heap (MB) a gateway holds with every device registered and one round decoded."""
    tracemalloc.start()
    gateway = _gateway(devices_, folder, ManualClock(START))
    for device, adv in ads[:per_round]:
        gateway.handle_advertisement(device, adv)
    held = tracemalloc.get_traced_memory()[0] / 1e6
    tracemalloc.stop()
    gateway.close()
    return held


def ours(ads: list[tuple[BLEDevice, AdvertisementData]], devices_: list[tuple[str, str, bytes | None]],
         folder: Path, per_round: int) -> tuple[float, int]:
    """Seconds for a fresh gateway to handle every round but the first (which warms it untimed), and the alerts
    it raised; every advertisement must be handled and none refused."""
    clock = ManualClock(START)
    gateway = _gateway(devices_, folder, clock)
    for device, adv in ads[:per_round]:
        gateway.handle_advertisement(device, adv)

    def timed_rounds() -> None:
        for index, (device, adv) in enumerate(ads[per_round:]):
            if index % per_round == 0:
                clock.advance(dt.timedelta(minutes=1))
            gateway.handle_advertisement(device, adv)

    seconds, _ = timed(timed_rounds)
    expect("advertisements the gateway handled", gateway.advertisements, len(ads))
    expect("advertisements the gateway refused", sum(gateway.rejected.values()), 0)
    alerts = gateway.outbox.db.execute("SELECT count(*) FROM outbox WHERE doc_id LIKE 'alert:%'").fetchone()[0]
    gateway.close()
    return seconds, alerts


def latency(presses: int, folder: Path) -> list[float]:
    """Seconds from each SOS press to the alert in a grid worker's live PouchDB replica."""
    settings = make_settings(folder, "bench_ble_")
    with EmbeddedCouch(folder / "couch") as couch_server:
        couch = connect(settings, couch_server.url)
        seed(couch, households_per_grid=5)
        firewall = Firewall.open(settings, couch)
        resident = "resident:c1-g1-h001-1"
        couch.main.save(firewall.keystore.new_data_key_doc(couch.main.get(resident)))
        mac, key = "A4:C1:38:00:00:02", bytes(range(16))
        devices.register(firewall, resident=resident, gateway="gateway:gw1", kind="wristband", mac=mac,
                         encrypted=True, model=None, now=dt.datetime.now(dt.UTC))
        token, token_doc = new_device_token("user:gw1", "bench", dt.datetime.now(dt.UTC))
        couch.accounts.save(token_doc)
        served = serve(couch_server.url, settings, free_port(), patience=300)  # a loaded machine
        cookie, csrf = login(served.url, "wangge01")
        phone = Phone(served.sync_url, cookie, csrf)
        try:
            phone.call("startLive")
            pinned = firewall.keystore.installation_public()
            return asyncio.run(_presses(presses, folder / "gateway", served.sync_url, token, pinned, mac, key, phone))
        finally:
            phone.close()
            stop(served)


async def _presses(presses: int, folder: Path, sync_url: str, token: str, pinned: str, mac: str, key: bytes,
                   phone: Phone) -> list[float]:
    radio = VirtualRadio()
    await radio.start()
    band = await radio.add(mac, key, wristband=True)
    uplink = Uplink(sync_url, token)
    # Each press 11 simulated minutes after the last (a new emergency, not the same one pressed again), all in the
    # past: the sync gateway refuses an alert raised in the future.
    clock = ManualClock(dt.datetime.now(dt.UTC) - PRESS_APART * (presses + 1))
    gateway = Gateway(GatewayConfig("gateway:gw1", folder, pinned), {mac: key}, uplink, clock=clock,
                      scanner_backend=radio.scanner_backend, client_backend=radio.client_backend)
    await gateway.refresh_config()
    running = asyncio.create_task(gateway.run())
    seconds = []
    try:
        while not gateway.scanner.scanning:
            await asyncio.sleep(0.01)
        for _ in range(presses):
            clock.advance(PRESS_APART)
            started = time.perf_counter()
            await band.emit(band.buttons(sos=1))
            alert_id = f"alert:{mac.replace(':', '').lower()}-sos-c{band.counter}"
            found = await asyncio.to_thread(phone.call, "waitFor", id=alert_id, timeout_ms=20_000)
            if not found["found"]:
                raise RuntimeError(f"{alert_id} never reached the replica: {found}")
            seconds.append(time.perf_counter() - started)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await uplink.close()
        gateway.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--presses", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved throughput runs of each side (medians)")
    args = parser.parse_args()
    devices_ = fleet(args.devices)
    ads = advertisements(devices_, args.rounds)
    keys = {mac: key for mac, _, key in devices_}
    alerts: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        held_mb = heap_mb(ads, devices_, folder / "heap", len(devices_))

        def through_gateway() -> float:
            seconds, raised = ours(ads, devices_, folder / f"throughput{len(alerts)}", len(devices_))
            alerts.append(raised)
            return seconds

        throughput = compare(through_gateway, lambda: bare(ads, keys, len(devices_)), rounds=args.repeat)
        expect("rounds raising the first round's alerts", alerts.count(alerts[0]), len(alerts))
        waits = sorted(latency(args.presses, folder / "latency"))
    timed_ads = len(ads) - len(devices_)
    p95 = waits[max(0, round(0.95 * len(waits)) - 1)]
    print(json.dumps({
        "devices": args.devices, "advertisements": timed_ads,
        "ours_ads_per_second": round(timed_ads / throughput["ours"]["median"]), "ours_seconds": throughput["ours"],
        "bare_bthome_ads_per_second": round(timed_ads / throughput["reference"]["median"]),
        "bare_bthome_seconds": throughput["reference"],
        "ratio": throughput["ratio"], "alerts_raised": alerts[0],
        "heap_mb_with_devices": round(held_mb, 1), "sos_presses": expect("SOS presses timed", len(waits), args.presses),
        "sos_to_replica_p50_s": round(statistics.median(waits), 3), "sos_to_replica_p95_s": round(p95, 3),
        "load_average": load_average()}))

if __name__ == "__main__":
    main()
