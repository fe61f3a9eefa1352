"""Heart rate from a wristband over the standard GATT Heart Rate service (0x180D).

`parse_measurement` reads the Heart Rate Measurement characteristic (0x2A37) as the Bluetooth SIG's
Heart Rate Service specification lays it out:

    flags (1 byte)   bit 0: heart rate is uint16 (else uint8)
                     bit 1: sensor contact detected      bit 2: sensor contact supported
                     bit 3: energy expended present       bit 4: RR intervals present
    heart rate       uint8 or uint16, beats per minute
    energy expended  uint16, kilojoules (if bit 3)
    RR intervals     uint16 each, in 1/1024 s, to the end (if bit 4)

`HeartRateMonitor` keeps one connection per wristband through bleak, subscribes to notifications and
reconnects with backoff when the wristband walks out of range.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.exc import BleakError

from .registry import RegisteredDevice

log = logging.getLogger(__name__)

HEART_RATE_SERVICE = "0000180d-0000-1000-8000-00805f9b34fb"
HEART_RATE_MEASUREMENT = "00002a37-0000-1000-8000-00805f9b34fb"
_UINT16_RATE, _CONTACT, _CONTACT_SUPPORTED, _ENERGY, _RR = 0x01, 0x02, 0x04, 0x08, 0x10


class HeartRateError(ValueError):
    """A Heart Rate Measurement that does not follow the specification."""


@dataclass(frozen=True)
class HeartRateMeasurement:
    bpm: int
    contact: bool | None  # None: the sensor cannot tell
    energy_kj: int | None
    rr_intervals: tuple[float, ...]  # seconds

    @property
    def usable(self) -> bool:
        """A rate measured off the wrist is noise, not an emergency."""
        return self.contact is not False and self.bpm > 0


def parse_measurement(data: bytes) -> HeartRateMeasurement:
    if len(data) < 2:
        raise HeartRateError(f"measurement of {len(data)} bytes: flags and a rate need at least 2")
    flags = data[0]
    offset = 1
    if flags & _UINT16_RATE:
        if len(data) < 3:
            raise HeartRateError("flags announce a 16-bit rate but only one byte follows")
        (bpm,) = struct.unpack_from("<H", data, offset)
        offset += 2
    else:
        bpm = data[offset]
        offset += 1
    contact = bool(flags & _CONTACT) if flags & _CONTACT_SUPPORTED else None
    energy = None
    if flags & _ENERGY:
        if len(data) < offset + 2:
            raise HeartRateError("flags announce energy expended but the measurement ends")
        (energy,) = struct.unpack_from("<H", data, offset)
        offset += 2
    rr: tuple[float, ...] = ()
    if flags & _RR:
        tail = data[offset:]
        if not tail or len(tail) % 2:
            raise HeartRateError(f"RR intervals must be whole uint16 values, got {len(tail)} bytes")
        rr = tuple(value / 1024 for (value,) in struct.iter_unpack("<H", tail))
    elif len(data) > offset:
        raise HeartRateError(f"{len(data) - offset} unexpected bytes after the announced fields")
    return HeartRateMeasurement(bpm, contact, energy, rr)


class HeartRateMonitor:
    """One wristband's heart-rate notifications, for as long as the gateway runs."""

    def __init__(self, device: RegisteredDevice, on_measurement: Callable[[RegisteredDevice, HeartRateMeasurement],
                 Any], backend: type[BaseBleakClient] | None = None, max_backoff: float = 300.0) -> None:
        self.device = device
        self._on_measurement = on_measurement
        self._backend = backend
        self._max_backoff = max_backoff
        self.connected = asyncio.Event()
        self.malformed = 0

    def _notified(self, _: BleakGATTCharacteristic, data: bytearray) -> None:
        try:
            measurement = parse_measurement(bytes(data))
        except HeartRateError as error:
            self.malformed += 1
            log.warning("%s: heart-rate notification refused: %s", self.device.doc_id, error)
            return
        self._on_measurement(self.device, measurement)

    async def run(self) -> None:
        backoff = 1.0
        while True:
            disconnected = asyncio.Event()
            try:
                client = BleakClient(self.device.mac, disconnected_callback=lambda _, gone=disconnected: gone.set(),
                                     timeout=20, backend=self._backend)
                await client.connect()
                try:
                    await client.start_notify(HEART_RATE_MEASUREMENT, self._notified)
                    self.connected.set()
                    backoff = 1.0
                    await disconnected.wait()
                finally:
                    self.connected.clear()
                    if client.is_connected:
                        await client.disconnect()
            except (BleakError, OSError, TimeoutError) as error:
                log.info("%s: heart rate unavailable (%s); retrying in %.0f s", self.device.doc_id, error, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)
