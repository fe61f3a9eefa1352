"""The BLE gateway's decoder on its own (`ble_gateway/decode.py`): each rule it adds to bthome-ble, stated once.

Real BTHome v2 bytes (`tests/ble_virtual.py` builds them as device firmware does, AES-CCM with the bind key) go
straight into `Decoder.decode`; the scanner, the outbox and the rules around it are `test_ble_gateway.py`'s.
"""

from __future__ import annotations

import datetime as dt

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from cryptography.hazmat.primitives.asymmetric import ec

from ble_gateway.decode import BTHOME_UUID, DUPLICATE_WINDOW, MIN_ENCRYPTED_BYTES, Decoder, Packet, Rejection
from ble_gateway.registry import RegisteredDevice
from tests.ble_virtual import VirtualDevice, bthome_service_data

MAC = "A4:C1:38:00:00:01"
KEY = bytes(range(16))
OTHER_KEY = bytes(range(16, 32))
T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)


def device(bind_key: bytes | None = KEY) -> RegisteredDevice:
    return RegisteredDevice(
        doc_id="device:w1", mac=MAC, kind="wristband", resident="resident:r1", household="household:h1",
        street="street:s", community="community:c1", grid="grid:c1-g1", registered_at="2026-01-01T00:00:00Z",
        write_key=ec.generate_private_key(ec.SECP256R1()).public_key(), write_key_version=1,
        utility_alerts="on", bind_key=bind_key)


def heard(decoder: Decoder, dev: RegisteredDevice, service_data: bytes, seconds: float = 0.0,
          local_name: str | None = "wristband") -> Packet | Rejection | None:
    """One advertisement heard `seconds` after T0 (wall clock and the scanner's monotonic clock alike)."""
    adv = AdvertisementData(local_name=local_name, manufacturer_data={}, service_data={BTHOME_UUID: service_data},
                            service_uuids=[BTHOME_UUID], tx_power=None, rssi=-60, platform_data=())
    return decoder.decode(dev, BLEDevice(MAC, "wristband", None), adv, T0 + dt.timedelta(seconds=seconds),
                          1000.0 + seconds)


def sealed(objects: bytes, counter: int, key: bytes = KEY) -> bytes:
    return bthome_service_data(objects, MAC, key, counter)


def plain(packet_id: int, objects: bytes) -> bytes:
    return bthome_service_data(bytes([0x00, packet_id]) + objects, MAC)


def test_a_packet_gives_exactly_the_values_buttons_and_binary_states_it_carries() -> None:
    packet = heard(Decoder(), device(), sealed(bytes([0x00, 7]) + VirtualDevice.battery(80)
                                                + VirtualDevice.buttons(sos=1) + bytes([0x1A, 0x01]), counter=5))
    assert isinstance(packet, Packet) and packet.device.doc_id == "device:w1"
    # The packet id is where the packet stands, not a reading; signal strength is the radio's, not the device's.
    assert packet.values == {"battery": 80.0}
    assert packet.binary == {"door": True}
    assert packet.events == {"button_1": "press"}
    assert (packet.sequence.number, packet.sequence.encrypted) == (5, True)


def test_an_encrypted_packet_needs_no_packet_id_its_counter_places_it() -> None:
    packet = heard(Decoder(), device(), sealed(VirtualDevice.water(12.5), counter=9))
    assert isinstance(packet, Packet) and packet.values == {"water": 12.5} and packet.sequence.tag == "c9"


def test_a_device_that_advertises_no_name_is_read() -> None:
    # Meters often leave the local name out of their advertisements.
    packet = heard(Decoder(), device(), sealed(VirtualDevice.water(2.0), counter=1), local_name=None)
    assert isinstance(packet, Packet) and packet.values == {"water": 2.0}


def test_the_shortest_encrypted_packet_one_object_is_read_and_anything_shorter_is_malformed() -> None:
    shortest = sealed(VirtualDevice.battery(55), counter=3)
    assert len(shortest) == MIN_ENCRYPTED_BYTES
    packet = heard(Decoder(), device(), shortest)
    assert isinstance(packet, Packet) and packet.values == {"battery": 55.0}
    assert heard(Decoder(), device(), sealed(bytes([0x01]), counter=3)) is Rejection.MALFORMED


def test_counters_only_go_up_a_repeat_is_dropped_and_an_older_one_is_a_replay() -> None:
    decoder, dev = Decoder(), device()
    assert isinstance(heard(decoder, dev, sealed(VirtualDevice.buttons(sos=1), counter=10)), Packet)
    assert heard(decoder, dev, sealed(VirtualDevice.buttons(sos=1), counter=10), seconds=1) is None
    assert heard(decoder, dev, sealed(VirtualDevice.buttons(sos=1), counter=9), seconds=2) is Rejection.REPLAY
    assert isinstance(heard(decoder, dev, sealed(VirtualDevice.buttons(sos=1), counter=11), seconds=3), Packet)


def test_a_forged_mic_a_downgrade_and_an_encrypted_packet_from_a_keyless_registration_are_refused() -> None:
    assert heard(Decoder(), device(), sealed(VirtualDevice.battery(50), counter=4, key=OTHER_KEY)) is Rejection.BAD_MIC
    assert heard(Decoder(), device(), plain(1, VirtualDevice.battery(50))) is Rejection.DOWNGRADE
    # Registered as plain, heard encrypted: nothing can verify it, so it is refused, not dropped as a duplicate.
    assert heard(Decoder(), device(bind_key=None), sealed(VirtualDevice.battery(50), counter=4)) is Rejection.BAD_MIC


def test_a_re_registered_device_starts_afresh_with_its_new_key_and_its_restarted_counter() -> None:
    decoder, dev = Decoder(), device()
    assert isinstance(heard(decoder, dev, sealed(VirtualDevice.battery(90), counter=5000)), Packet)
    rekeyed = device(bind_key=OTHER_KEY)
    decoder.forget(rekeyed.doc_id)
    # Some firmware seeds a restarted counter at random, so it may restart above 100 but below the old one.
    packet = heard(decoder, rekeyed, sealed(VirtualDevice.battery(91), counter=300, key=OTHER_KEY), seconds=10)
    assert isinstance(packet, Packet) and packet.values == {"battery": 91.0}
    # The same key kept (a battery change): the restarted counter is accepted after forget, and only after it.
    same = Decoder()
    assert isinstance(heard(same, dev, sealed(VirtualDevice.battery(90), counter=5000)), Packet)
    assert heard(same, dev, sealed(VirtualDevice.battery(92), counter=400), seconds=10) is Rejection.REPLAY
    same.forget(dev.doc_id)
    assert same.last == {}
    packet = heard(same, dev, sealed(VirtualDevice.battery(92), counter=400), seconds=20)
    assert isinstance(packet, Packet) and packet.values == {"battery": 92.0}


def test_forget_leaves_other_devices_alone() -> None:
    decoder, dev = Decoder(), device()
    assert isinstance(heard(decoder, dev, sealed(VirtualDevice.battery(90), counter=50)), Packet)
    decoder.forget("device:other")
    assert heard(decoder, dev, sealed(VirtualDevice.battery(90), counter=40), seconds=5) is Rejection.REPLAY


@pytest.mark.parametrize("later", [1.0, 30.0, DUPLICATE_WINDOW.total_seconds() - 1])
def test_a_plain_packet_heard_again_within_the_window_is_one_packet(later: float) -> None:
    decoder, dev = Decoder(), device(bind_key=None)
    first = heard(decoder, dev, plain(7, VirtualDevice.water(3.0)))
    assert isinstance(first, Packet) and first.values == {"water": 3.0} and first.sequence.number == 7
    assert heard(decoder, dev, plain(7, VirtualDevice.water(3.0)), seconds=later) is None


def test_a_plain_packet_id_heard_again_after_the_window_is_a_new_packet() -> None:
    decoder, dev = Decoder(), device(bind_key=None)
    assert isinstance(heard(decoder, dev, plain(7, VirtualDevice.water(3.0))), Packet)
    again = heard(decoder, dev, plain(7, VirtualDevice.water(4.0)), seconds=DUPLICATE_WINDOW.total_seconds())
    assert isinstance(again, Packet) and again.values == {"water": 4.0}


def test_an_older_plain_packet_arriving_just_after_a_newer_one_is_dropped_as_stale() -> None:
    # Advertisements can arrive out of order (repeats, proxies): an older reading must not replace the newer one.
    decoder, dev = Decoder(), device(bind_key=None)
    assert isinstance(heard(decoder, dev, plain(9, VirtualDevice.water(5.0))), Packet)
    assert heard(decoder, dev, plain(8, VirtualDevice.water(4.0)), seconds=1) is None
    assert decoder.last[dev.doc_id].number == 9


def test_a_plain_packet_without_a_packet_id_or_without_bthome_data_is_malformed() -> None:
    assert heard(Decoder(), device(bind_key=None), bthome_service_data(VirtualDevice.water(1.0), MAC)) \
        is Rejection.MALFORMED
    assert heard(Decoder(), device(bind_key=None), b"") is Rejection.MALFORMED
