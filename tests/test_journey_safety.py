"""The gateway operator's day, in Chromium against `linli serve` on the demo (issue 14, item 1 and 6; PRODUCT.md:
an elderly resident living alone wears a wristband the community's BLE gateway reads; its readings and alerts reach
the people who look after them).

The secretary (who pairs devices: the declaration has no role of its own for it) opens an elderly resident's safety
page, pairs a new wristband to them from the console, and a BLE gateway with its own account and device token (made
with `linli user add` and `linli device-token issue`, as an operator enrols one) reads it over a virtual radio
(tests/ble_virtual.py, the real gateway code through bleak's backend hook) and delivers through the sync gateway of
the same `linli serve`; the resident's page shows the readings arriving (battery, last heard, heart rate); the
secretary un-pairs it and the gateway stops reading it.
Screenshots: test-output/journeys/gateway_operator/.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from playwright.sync_api import Browser, expect

from ble_gateway.gateway import Gateway, GatewayConfig
from ble_gateway.uplink import Uplink
from server.services import demo
from server.services.demo_history import gateway_id
from tests.journeys import Person
from tests.test_serve import Served, linli

from .ble_virtual import VirtualRadio

T = TypeVar("T")
GRIDS = [f"grid:c1-g{g:02d}" for g in range(1, 6)]  # the community the gateway is in
GATEWAY = gateway_id("community:c1")


def _enrol_gateway(served: Served, grid: str) -> tuple[str, str]:
    """A gateway account for the community hall's gateway, serving the resident's grid, and its device token, as
    an operator makes them; returns (installation key to pin, token)."""
    name = f"gw-{secrets.token_hex(3)}"
    added = linli(served.data_dir, "user", "add", name, "--display-name", "活动室网关", "--role", "gateway",
                  "--street", demo.STREET_ID, "--community", "community:c1", "--grid", grid, "--gateway", GATEWAY)
    assert added.returncode == 0, added.stderr
    issued = linli(served.data_dir, "device-token", "issue", name, "--label", "活动室")
    assert issued.returncode == 0, issued.stderr
    lines = issued.stdout.strip().splitlines()
    return lines[1], lines[-1]


async def _band_reports(served: Served, pinned: str, token: str, mac: str, bind_key: bytes, data_dir: Path) -> set:
    """The gateway reads the paired wristband: a battery advertisement and a heart rate over GATT, delivered."""
    radio = VirtualRadio()
    await radio.start()
    band = await radio.add(mac, bind_key, wristband=True)
    uplink = Uplink(served.url + "sync/main", token)
    gateway = Gateway(GatewayConfig(GATEWAY, data_dir, pinned, push_seconds=0.5, heartbeat_minutes=0),
                      {mac: bind_key}, uplink, scanner_backend=radio.scanner_backend,
                      client_backend=radio.client_backend)
    try:
        await gateway.refresh_config()  # its devices: the one just paired, nothing else of anyone's
        read = {d.mac for d in gateway.registry.devices()}
        running = asyncio.create_task(gateway.run())
        device = "device:" + mac.replace(":", "").lower()

        async def until(check: Callable[[], object], step: Callable[[], Awaitable[None]] | None = None) -> None:
            async def poll() -> None:
                while not check():
                    if step:
                        await step()
                    await asyncio.sleep(0.05)
            await asyncio.wait_for(poll(), 20)

        assert read == {mac}, read  # before it listens: the device paired to it, and no other
        await until(lambda: gateway.scanner.scanning)
        await band.emit(band.battery(77))  # a wristband keeps advertising it, and so can be connected to
        await until(lambda: gateway.battery.get(device) == 77)
        await until(lambda: band.device.connections)  # the gateway's heart-rate monitor
        # measured until the monitor, subscribed once connected, has made a reading of it
        await until(lambda: gateway.state.get(f"{device}|reading:heart_rate"), lambda: band.notify_heart_rate(72))
        gateway.tick()  # device health: battery and last heard
        await gateway.push()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        return read
    finally:
        await uplink.close()
        gateway.close()


async def _devices_read(served: Served, pinned: str, token: str, data_dir: Path) -> set:
    uplink = Uplink(served.url + "sync/main", token)
    gateway = Gateway(GatewayConfig(GATEWAY, data_dir, pinned), {}, uplink)
    try:
        await gateway.refresh_config()
        return {d.mac for d in gateway.registry.devices()}
    finally:
        await uplink.close()
        gateway.close()


def _run(scenario: Coroutine[Any, Any, T]) -> T:
    """Run a gateway scenario on an event loop of its own (Playwright's sync API holds this thread's)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, scenario).result()


def test_a_wristband_paired_from_the_console_reports_to_the_residents_page_and_is_unpaired(
        journey_browser: Browser, journey_served: Served, tmp_path: Path) -> None:
    operator = Person(journey_browser, journey_served, "shuji1", role="gateway_operator")
    # 1. An elderly resident living alone, from a grid's households to their safety page.
    for grid in GRIDS:
        operator.go(f"/grids/{grid}")
        alone = operator.page.locator("a.row", has_text="独居老人")
        if alone.count():
            break
    alone.first.click()
    operator.page.wait_for_load_state()
    operator.page.locator("a.button", has_text="安全与照护").first.click()
    operator.page.wait_for_load_state()
    expect(operator.page.locator("h1")).to_contain_text("安全与照护")
    expect(operator.page.locator("#care")).to_contain_text("照护等级")
    expect(operator.page.locator("#safety-devices")).to_contain_text("智能手环")  # the demo's own devices
    expect(operator.page.locator("#safety-status")).to_contain_text("次/分")  # the secretary may open health data
    resident = operator.page.url.split("/residents/")[1].split("/")[0]
    operator.shot("1-safety-page")

    # 2. Pair a new wristband from the console.
    mac = ":".join(["A4", "C1", "38"] + [secrets.token_hex(1).upper() for _ in range(3)])
    operator.page.click("a.button:has-text('设备配对')")
    operator.page.wait_for_load_state()
    expect(operator.page.locator("input[name=resident]")).to_have_value(resident)
    operator.page.select_option("select[name=kind]", "wristband")
    operator.page.fill("input[name=mac]", mac)
    operator.page.select_option("select[name=gateway]", GATEWAY)
    operator.act("配对")
    expect(operator.page.locator("p.notice[role=status]")).to_contain_text(f"已配对 {mac}")
    device_row = f"#paired-device-{mac.replace(':', '').lower()}"
    expect(operator.page.locator(device_row)).to_contain_text("智能手环")
    operator.shot("2-paired")
    operator.go(f"/residents/{resident}/safety")
    band_row = operator.page.locator(f"#device-device-{mac.replace(':', '').lower()}")
    expect(band_row.locator(".last-heard")).to_contain_text("暂无记录")  # paired, not heard yet

    # 3. The gateway reads it; the page shows the readings arriving.
    pinned, token = _enrol_gateway(journey_served, grid)
    bind_key = secrets.token_bytes(16)
    read = _run(_band_reports(journey_served, pinned, token, mac, bind_key, tmp_path / "gw"))
    assert read == {mac}  # the gateway reads the device paired to it and no other
    operator.go(f"/residents/{resident}/safety")
    expect(band_row.locator(".battery")).to_contain_text("77%")
    expect(band_row.locator(".last-heard")).not_to_contain_text("暂无记录")
    expect(operator.page.locator("#safety-status")).to_contain_text("72 次/分")
    expect(operator.page.locator("#safety-status li")).to_have_text(["一切正常"])
    operator.shot("3-readings-arrived")

    # 4. Un-pair: gone from the resident's page, and the gateway stops reading it.
    operator.go(f"/devices?resident={resident}")
    operator.page.locator(device_row).locator("button:has-text('解除配对')").click()
    operator.page.wait_for_load_state()
    expect(operator.page.locator("p.notice[role=status]")).to_contain_text(f"已解除配对 {mac}")
    expect(operator.page.locator(device_row)).to_have_count(0)
    operator.shot("4-unpaired")
    assert _run(_devices_read(journey_served, pinned, token, tmp_path / "gw")) == set()
    operator.go(f"/residents/{resident}/safety")
    expect(band_row).to_have_count(0)
    operator.close()
