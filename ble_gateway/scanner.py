"""Scanning that keeps itself going: the adapter disappears and comes back, scanning stalls, BlueZ restarts.

Like Home Assistant's Bluetooth scanner, the supervisor treats silence as a fault: no advertisement for
`stall_seconds` means the scan is stuck (or the adapter gone), so it stops and starts the scanner
again; a start that fails (no adapter) is retried with exponential backoff. Nothing here needs a
person to come and restart the tablet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError

from .decode import BTHOME_UUID

log = logging.getLogger(__name__)


class ScanSupervisor:
    def __init__(self, on_advertisement: Callable[[BLEDevice, AdvertisementData], None],
                 backend: type[BaseBleakScanner] | None = None, stall_seconds: float = 120.0,
                 max_backoff: float = 60.0) -> None:
        self._on_advertisement = on_advertisement
        self._backend = backend
        self.stall_seconds = stall_seconds
        self.max_backoff = max_backoff
        self.scanning = False
        self.restarts = 0  # scans stopped for silence and started again
        self.start_failures = 0
        self._last_heard = time.monotonic()

    def _heard(self, device: BLEDevice, adv: AdvertisementData) -> None:
        self._last_heard = time.monotonic()
        self._on_advertisement(device, adv)

    async def _until_stalled(self) -> None:
        while True:
            await asyncio.sleep(min(self.stall_seconds / 4, 5.0))
            silent = time.monotonic() - self._last_heard
            if silent > self.stall_seconds:
                log.warning("no advertisement for %.0f s: restarting the scanner", silent)
                return

    async def run(self) -> None:
        backoff = 1.0
        while True:
            scanner = BleakScanner(self._heard, service_uuids=[BTHOME_UUID], backend=self._backend)
            try:
                await scanner.start()
            except (BleakError, OSError) as error:
                self.start_failures += 1
                log.warning("cannot start scanning (%s); retrying in %.0f s", error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            self.scanning, backoff = True, 1.0
            self._last_heard = time.monotonic()
            try:
                await self._until_stalled()
            finally:
                self.scanning = False
                with contextlib.suppress(BleakError, OSError):
                    await scanner.stop()
            self.restarts += 1
