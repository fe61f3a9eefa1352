"""BTHome v2 advertisements → this packet's values and events, with replays and forgeries refused.

Decoding is `bthome-ble`'s (one parser per device, as Home Assistant keeps them). On top of it, what a
safety gateway needs and the library leaves to its caller:

* **Replay:** an encrypted packet's AES-CCM counter must be higher than the last one accepted from that
  device. The last counter is kept on disk with the readings it produced (`outbox.py`), so a restart
  does not reopen the door; the library only remembers in memory and lets counters below 100 through.
* **Forgery:** a bad MIC is refused, and so is a plain advertisement from a device registered as
  encrypted (a downgrade: anyone can send plain BTHome with a wristband's MAC address).
* **Duplicates:** devices send each packet several times; the same counter (encrypted) or the same
  packet id within `DUPLICATE_WINDOW` (plain) is the same packet, dropped silently.

Plain devices can be replayed by anyone who heard them; register wristbands as encrypted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bthome_ble import BTHomeBluetoothDeviceData
from bthome_ble.parser import BTHomeData, EncryptionScheme, parse_uint
from habluetooth import BluetoothServiceInfoBleak

from .registry import RegisteredDevice

BTHOME_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"
DUPLICATE_WINDOW = dt.timedelta(seconds=60)
MIN_ENCRYPTED_BYTES = 1 + 2 + 4 + 4  # device-info byte, one object (its id and a one-byte value), counter, MIC
# bthome-ble's keys for the things our rules read (wristband profile and meters: ble_gateway/README.md).
SIGNAL_STRENGTH = "signal_strength"


class Rejection(StrEnum):
    BAD_MIC = "bad_mic"
    REPLAY = "replay"
    DOWNGRADE = "downgrade"
    MALFORMED = "malformed"


@dataclass(frozen=True)
class Sequence:
    """Where a packet stands in its device's stream: the encryption counter, or the plain packet id."""

    number: int
    encrypted: bool
    heard_at: dt.datetime

    @property
    def tag(self) -> str:
        # Encrypted counters are unique for a registration; plain packet ids (one byte) only with the time heard.
        return f"c{self.number}" if self.encrypted else f"t{int(self.heard_at.timestamp())}-p{self.number}"


@dataclass(frozen=True)
class Packet:
    device: RegisteredDevice
    sequence: Sequence
    values: dict[str, float] = field(default_factory=dict)  # e.g. water (L), power (W), battery (%)
    binary: dict[str, bool] = field(default_factory=dict)  # e.g. motion, door
    events: dict[str, str] = field(default_factory=dict)  # e.g. button_1: press


class Decoder:
    """Decodes advertisements of registered devices; `last` holds each device's last accepted sequence."""

    def __init__(self, last: dict[str, Sequence] | None = None) -> None:
        self.last: dict[str, Sequence] = dict(last or {})
        self._parsers: dict[str, tuple[bytes | None, BTHomeBluetoothDeviceData]] = {}

    def _parser(self, device: RegisteredDevice) -> BTHomeBluetoothDeviceData:
        cached = self._parsers.get(device.doc_id)
        if cached is None or cached[0] != device.bind_key:  # a re-registered device may have a new key
            cached = (device.bind_key, BTHomeBluetoothDeviceData(device.bind_key))
            self._parsers[device.doc_id] = cached
        return cached[1]

    def forget(self, device_id: str) -> None:
        """A device was re-registered (its counter restarted): accept its stream afresh."""
        self.last.pop(device_id, None)
        self._parsers.pop(device_id, None)

    def decode(self, device: RegisteredDevice, ble_device: BLEDevice, adv: AdvertisementData,
               heard_at: dt.datetime, monotonic: float) -> Packet | Rejection | None:
        """This advertisement's packet; a Rejection if forged, replayed or malformed; None if a duplicate."""
        service_data = adv.service_data.get(BTHOME_UUID)
        if not service_data:
            return Rejection.MALFORMED
        info = BluetoothServiceInfoBleak(
            name=adv.local_name or "", address=ble_device.address, rssi=adv.rssi, manufacturer_data={},
            service_data={BTHOME_UUID: service_data}, service_uuids=[BTHOME_UUID], source="linli",
            device=ble_device, advertisement=adv, connectable=False, time=monotonic, tx_power=None)
        try:
            frame = BTHomeData(info)
            encrypted = frame.get_encryption_scheme() == EncryptionScheme.BTHOME_BINDKEY
            if encrypted and len(service_data) < MIN_ENCRYPTED_BYTES:
                return Rejection.MALFORMED
            counter = int(parse_uint(frame.get_counter())) if encrypted else None
        except (ValueError, IndexError):
            return Rejection.MALFORMED
        if device.bind_key is not None and not encrypted:
            return Rejection.DOWNGRADE
        last = self.last.get(device.doc_id)
        if counter is not None and last is not None and last.encrypted:
            if counter == last.number:
                return None
            if counter < last.number:
                return Rejection.REPLAY
        parser = self._parser(device)
        # The library's SensorUpdate accumulates values across updates (Home Assistant wants the last known
        # state); a safety rule wants what this packet said, so the pending values are cleared first.
        parser._sensor_values_updates.clear()  # noqa: SLF001 - see above
        parser._binary_sensor_values_updates.clear()  # noqa: SLF001
        parser.decryption_failed = True  # set False by the library only when this packet's MIC verifies
        try:
            update = parser.update(info)
        except (ValueError, IndexError, TypeError):
            return Rejection.MALFORMED
        if encrypted and parser.decryption_failed:
            return Rejection.BAD_MIC
        values = {key.key: float(v.native_value) for key, v in update.entity_values.items()
                  if isinstance(v.native_value, (int, float)) and key.key != SIGNAL_STRENGTH}
        binary = {key.key: bool(v.native_value) for key, v in update.binary_entity_values.items()}
        events = {key.key: e.event_type for key, e in update.events.items()}
        if not values and not binary and not events:
            return None  # the library dropped it as an old or repeated packet id
        packet_id = values.pop("packet_id", None)
        if counter is not None:
            number = counter
        elif packet_id is not None:
            number = int(packet_id)
            if (last is not None and not last.encrypted and last.number == number
                    and heard_at - last.heard_at < DUPLICATE_WINDOW):
                return None
        else:
            return Rejection.MALFORMED  # our profile requires a packet id (object 0x00) on plain devices
        sequence = Sequence(number, encrypted, heard_at)
        self.last[device.doc_id] = sequence
        return Packet(device, sequence, values, binary, events)
