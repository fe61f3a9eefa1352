"""Virtual wristbands and meters for the BLE gateway's tests and benchmark, without a radio.

Built on Google's `bumble` Bluetooth stack: every device is a bumble `Device` with its own emulated
controller on one in-process `LocalLink`; the gateway's side is another controller, reached through
bleak's `backend=` hook (`VirtualRadio.scanner_backend` / `client_backend`), so the gateway code runs
exactly as it does with BlueZ. Devices emit real BTHome v2 advertisements (AES-CCM encrypted with their
bind key when they have one, as device firmware does) and a wristband serves the real GATT Heart Rate
service (bumble's own `HeartRateService`, notifications included).
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import Callable
from typing import Any

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError
from bumble.controller import Controller
from bumble.core import UUID, AdvertisingData
from bumble.device import Advertisement, Device, Peer
from bumble.hci import HCI_LE_1M_PHY, Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.profiles.heart_rate_service import HeartRateService
from bumble.transport.common import AsyncPipeSink
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from crypto import key_statements
from crypto.envelope import b64url

BTHOME_UUID16 = 0xFCD2
GATEWAY_ADDRESS = "F0:00:00:00:00:01"


def bleak_uuid(bumble_uuid: UUID) -> str:
    return str(uuid.UUID(bytes=bytes(reversed(bumble_uuid.to_bytes(force_128=True)))))


def bthome_service_data(objects: bytes, mac: str, bind_key: bytes | None = None, counter: int = 0) -> bytes:
    """A BTHome v2 service-data payload as a device's firmware builds it (objects in id order)."""
    if bind_key is None:
        return bytes([0x40]) + objects
    info = 0x41  # BTHome v2, encrypted
    nonce = bytes.fromhex(mac.replace(":", "")) + bytes([0xD2, 0xFC, info]) + struct.pack("<I", counter)
    sealed = AESCCM(bind_key, tag_length=4).encrypt(nonce, objects, None)
    return bytes([info]) + sealed[:-4] + struct.pack("<I", counter) + sealed[-4:]


def _controller_device(link: LocalLink, name: str, mac: str) -> Device:
    controller = Controller(name, link=link, public_address=mac)
    # Devices advertise and connect with their address as a random address: bumble's LocalLink routes LE data
    # by random address.
    return Device(name=name, address=Address(mac), host=Host(controller, AsyncPipeSink(controller)))


class VirtualDevice:
    """One BTHome device: each `emit` sends one advertisement with a fresh packet id (and counter)."""

    def __init__(self, radio: VirtualRadio, mac: str, bind_key: bytes | None) -> None:
        self.radio = radio
        self.mac = mac
        self.bind_key = bind_key
        self.device = _controller_device(radio.link, mac, mac)
        self.packet_id = 0
        self.counter = 0
        self.sent: list[bytes] = []  # every service-data payload emitted (to replay or corrupt in tests)
        self.connectable = False

    async def power_on(self) -> None:
        await self.device.power_on()

    def payload(self, objects: bytes) -> bytes:
        """The next packet: packet id object (0x00) first, then `objects`."""
        self.packet_id = (self.packet_id + 1) % 256
        self.counter += 1
        return bthome_service_data(bytes([0x00, self.packet_id]) + objects, self.mac, self.bind_key, self.counter)

    async def send_raw(self, service_data: bytes) -> None:
        """Advertise exactly this service data once (a replay or a forgery, in tests)."""
        ad = AdvertisingData([(AdvertisingData.SERVICE_DATA_16_BIT_UUID,
                               struct.pack("<H", BTHOME_UUID16) + service_data)])
        # One PDU goes out at once when advertising starts. A meter stops there; a wristband keeps repeating it
        # (as real ones do, and as a central needs to connect), which the gateway must take as duplicates.
        interval = 200 if self.connectable else 60_000
        await self.device.start_advertising(advertising_data=bytes(ad), advertising_interval_min=interval,
                                            advertising_interval_max=interval)
        if not self.connectable:
            await self.device.stop_advertising()

    async def emit(self, objects: bytes) -> bytes:
        payload = self.payload(objects)
        self.sent.append(payload)
        await self.send_raw(payload)
        return payload

    # BTHome objects of our profiles (ble_gateway/README.md)
    @staticmethod
    def water(litres: float) -> bytes:
        return bytes([0x4F]) + struct.pack("<I", round(litres * 1000))

    @staticmethod
    def battery(percent: int) -> bytes:
        return bytes([0x01, percent])

    @staticmethod
    def power(watts: float) -> bytes:
        return bytes([0x0B]) + round(watts * 100).to_bytes(3, "little")

    @staticmethod
    def buttons(sos: int = 0, fall: int = 0) -> bytes:
        """The wristband profile: button object 1 = SOS key, button object 2 = fall detector (0x01 = press)."""
        return bytes([0x3A, sos, 0x3A, fall])


class VirtualWristband(VirtualDevice):
    """A wristband: BTHome advertisements (SOS, fall, battery) and a GATT heart-rate sensor."""

    def __init__(self, radio: VirtualRadio, mac: str, bind_key: bytes | None) -> None:
        super().__init__(radio, mac, bind_key)
        self.connectable = True
        self.bpm = 72
        self.contact: bool | None = True
        self.heart_rate = HeartRateService(read_heart_rate_measurement=lambda _: self.measurement())
        self.device.add_service(self.heart_rate)

    async def power_on(self) -> None:
        await super().power_on()
        await self.emit(self.battery(100) + self.buttons())  # a wristband advertises from the start (connectable)

    def measurement(self) -> HeartRateService.HeartRateMeasurement:
        return HeartRateService.HeartRateMeasurement(self.bpm, sensor_contact_detected=self.contact,
                                                     rr_intervals=[60 / max(self.bpm, 1)])

    async def notify_heart_rate(self, bpm: int) -> None:
        self.bpm = bpm
        await self.device.notify_subscribers(self.heart_rate.heart_rate_measurement_characteristic)


class VirtualRadio:
    """The in-process link, the gateway's controller on it, and the bleak backends bound to both."""

    def __init__(self) -> None:
        self.link = LocalLink()
        self.central = _controller_device(self.link, "gateway", GATEWAY_ADDRESS)
        self.adapter_present = True
        self.devices: dict[str, VirtualDevice] = {}
        self.subscriptions = 0  # notifications a client subscribed to (tests wait on it, not on a sleep)

    async def start(self) -> None:
        await self.central.power_on()

    async def add(self, mac: str, bind_key: bytes | None = None, *, wristband: bool = False) -> VirtualDevice:
        device = (VirtualWristband if wristband else VirtualDevice)(self, mac, bind_key)
        await device.power_on()
        self.devices[mac] = device
        return device

    @property
    def scanner_backend(self) -> type[BaseBleakScanner]:
        radio = self

        class VirtualScanner(BaseBleakScanner):
            def __init__(self, detection_callback: AdvertisementDataCallback | None, service_uuids: list[str] | None,
                         scanning_mode: str = "active", **kwargs: Any) -> None:
                super().__init__(detection_callback, service_uuids)

            async def start(self) -> None:
                if not radio.adapter_present:
                    raise BleakError("No Bluetooth adapters found.")
                self.seen_devices = {}
                radio.central.on(Device.EVENT_ADVERTISEMENT, self._heard)
                if not radio.central.is_scanning:
                    # One PHY: scanning the coded PHY too would report every advertisement twice.
                    await radio.central.start_scanning(filter_duplicates=False, scanning_phys=[HCI_LE_1M_PHY])

            async def stop(self) -> None:
                radio.central.remove_listener(Device.EVENT_ADVERTISEMENT, self._heard)
                if radio.central.is_scanning:
                    await radio.central.stop_scanning()

            def _heard(self, advertisement: Advertisement) -> None:
                if not radio.adapter_present:
                    return  # the adapter was unplugged: the scan hears nothing (and says nothing)
                address = advertisement.address.to_string(with_type_qualifier=False)
                service_data = {bleak_uuid(u): bytes(d) for u, d in
                                advertisement.data.get_all(AdvertisingData.SERVICE_DATA_16_BIT_UUID)}
                uuids = list(service_data)
                adv = AdvertisementData(None, {}, service_data, uuids, None, advertisement.rssi, (advertisement,))
                device = self.create_or_update_device(address, address, None, advertisement, adv)
                if self.is_allowed_uuid(uuids):
                    self.call_detection_callbacks(device, adv)

        return VirtualScanner

    @property
    def client_backend(self) -> type[BaseBleakClient]:
        radio = self

        class VirtualClient(BaseBleakClient):
            def __init__(self, address_or_ble_device: Any, **kwargs: Any) -> None:
                super().__init__(address_or_ble_device, disconnected_callback=kwargs.get("disconnected_callback"),
                                 timeout=kwargs.get("timeout", 10.0))
                self._peer: Peer | None = None

            @property
            def mtu_size(self) -> int:
                return 23

            @property
            def is_connected(self) -> bool:
                return self._peer is not None

            async def connect(self, pair: bool, **kwargs: Any) -> None:
                if not radio.adapter_present:
                    raise BleakError("No Bluetooth adapters found.")
                try:
                    connection = await asyncio.wait_for(radio.central.connect(
                        Address(self.address)), self._timeout)
                except (TimeoutError, Exception) as error:  # bumble raises its own errors; bleak callers want these
                    raise BleakError(f"cannot connect to {self.address}: {error!r}") from None
                connection.on(connection.EVENT_DISCONNECTION, lambda *_: self._gone())
                peer = Peer(connection)
                await peer.discover_services()
                collection = BleakGATTServiceCollection()
                for service in peer.services:
                    await peer.discover_characteristics(service=service)
                    bleak_service = BleakGATTService(service, service.handle, bleak_uuid(service.uuid))
                    collection.add_service(bleak_service)
                    for char in service.characteristics:
                        properties = [p.name.lower() for p in type(char.properties) if p in char.properties]
                        bleak_char = BleakGATTCharacteristic(char, char.handle, bleak_uuid(char.uuid), properties,
                                                             lambda: 20, bleak_service)
                        collection.add_characteristic(bleak_char)
                self.services = collection
                self._peer = peer

            def _gone(self) -> None:
                self._peer = None
                if self._disconnected_callback:
                    self._disconnected_callback()

            async def disconnect(self) -> None:
                if self._peer is not None:
                    await self._peer.connection.disconnect()

            async def pair(self, *args: Any, **kwargs: Any) -> None:
                raise NotImplementedError("virtual devices do not pair")

            async def unpair(self) -> None:
                raise NotImplementedError("virtual devices do not pair")

            async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, **kwargs: Any) -> bytearray:
                assert self._peer is not None
                return bytearray(await self._peer.read_value(characteristic.obj))

            async def read_gatt_descriptor(self, descriptor: Any, **kwargs: Any) -> bytearray:
                raise NotImplementedError

            async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: Any, response: bool) -> None:
                assert self._peer is not None
                await self._peer.write_value(characteristic.obj, bytes(data), with_response=response)

            async def write_gatt_descriptor(self, descriptor: Any, data: Any) -> None:
                raise NotImplementedError

            async def start_notify(self, characteristic: BleakGATTCharacteristic, callback: Any,
                                   **kwargs: Any) -> None:
                assert self._peer is not None
                await self._peer.subscribe(characteristic.obj, lambda value: callback(bytearray(value)))
                radio.subscriptions += 1

            async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
                assert self._peer is not None
                await self._peer.unsubscribe(characteristic.obj)

        return VirtualClient


# ---------------------------------------------------------------- a gateway on the virtual radio

# The installation key of the gateways run without a server (`linli` holds the real one: keystore.installation_key).
INSTALLATION_KEY = key_statements.new_installation_key()
INSTALLATION_PUBLIC = b64url(key_statements.public_raw(INSTALLATION_KEY))


def device_doc(mac: str, kind: str, write_key: Any, *, gateway: str = "gateway:gw1", encrypted: bool = False,
               grid: str = "grid:c1-g1", resident: str = "resident:c1-g1-h001-1",
               registered_at: str = "2026-11-01T00:00:00+00:00", utility_alerts: str = "grid_staff") -> dict[str, Any]:
    """A device document as `linli device register` writes it, its write key vouched for by INSTALLATION_KEY."""
    public = b64url(write_key.public_raw)
    return {"_id": "device:" + mac.replace(":", "").lower(), "type": "device", "street": "street:s1",
            "community": "community:c1", "grid": grid, "household": "household:" + resident.split(":")[1][:-2],
            "resident": resident, "kind": kind, "mac": mac, "gateway": gateway, "encrypted": encrypted,
            "write_public": public, "write_key_version": write_key.version,
            "write_signature": key_statements.vouch(INSTALLATION_KEY, resident, write_key.version, public),
            "utility_alerts": utility_alerts, "registered_at": registered_at}


async def settle(gateway: Any, before: int, timeout: float = 5.0) -> None:
    """Wait until the gateway heard something after `before` advertisements, then let repeats arrive."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while gateway.advertisements <= before:
        if loop.time() > deadline:
            raise AssertionError("the gateway heard nothing")
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.01)


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait until condition() holds, looking every few milliseconds; fail naming `what` past the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.01)
