"""Issue 13, findings 1 and 2, as an attacker would try them: every public key anything seals to is
authenticated, and every key handed to a phone is filed as exposure.

Finding 1: a grid worker swapped a device's write key for their own, and the BLE gateway sealed the
resident's readings to them. Now the sync gateway refuses the swap (the fields are server-only), and a
gateway that is handed a swapped key anyway (written past the sync gateway, straight into CouchDB) refuses
to seal to it: only the installation key it pinned vouches for a resident's write key.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx2
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ble_gateway.credentials import SecretError, installation_key
from crypto import key_statements
from crypto.envelope import EnvelopeError, FieldContext, WriteKey, b64url
from crypto.fields import open_fields
from server.security.firewall import Firewall
from server.security.keystore import KeyStore, data_key_id
from tests.sync_harness import Street, login, street_fixture  # noqa: F401 - the fixture
from tests.test_ble_sync import BAND, BIND_KEY, OTHER_GRID_RESIDENT, RESIDENT, gateway_on, prepare

from .ble_virtual import VirtualRadio

BAND_DEVICE = "device:" + BAND.replace(":", "").lower()
RAW_POINT = (Encoding.X962, PublicFormat.UncompressedPoint)


def _sync_client(street: Street, username: str) -> httpx2.Client:
    cookie, csrf = login(street.served.url, username)
    return httpx2.Client(base_url=street.served.sync_url + "/", timeout=30,
                         headers={"Cookie": cookie, "X-CSRF-Token": csrf, "Accept": "application/json"})


def test_a_grid_worker_cannot_swap_a_devices_write_key_or_resident_through_the_sync_gateway(
        street: Street, firewall: Firewall) -> None:
    prepare(street, firewall)
    device = street.couch.main.get(BAND_DEVICE)
    other = street.couch.main.get(data_key_id(OTHER_GRID_RESIDENT))
    attacker = WriteKey.generate(device["write_key_version"])
    swaps = {
        "own key": {"write_public": b64url(attacker.public_raw)},
        "own key, statement dropped": {"write_public": b64url(attacker.public_raw), "write_signature": None},
        # Another resident's genuine, vouched-for key: the readings would be filed under them.
        "another resident": {"resident": OTHER_GRID_RESIDENT, "write_public": other["write_public"],
                             "write_signature": other["write_signature"]},
    }
    with _sync_client(street, "wangge01") as worker:  # grid 1's worker: may write the device's grid
        for what, change in swaps.items():
            answer = worker.post("_bulk_docs", json={"docs": [{**device, **change}]})
            assert answer.status_code == 201, what
            assert answer.json()[0]["error"] == "forbidden", what
            assert "set by the server only" in answer.json()[0]["reason"], what
        # Nor may a client create a device that names a key at all.
        fresh = {k: v for k, v in device.items() if k != "_rev"} | {"_id": "device:a4c138000099",
                                                                   "mac": "A4:C1:38:00:00:99"}
        answer = worker.post("_bulk_docs", json={"docs": [fresh]}).json()
        assert answer[0]["error"] == "forbidden"
        # What the server set is still there, and still vouched for.
        unchanged = worker.post("_bulk_docs", json={"docs": [{**device, "model": "换了电池"}]}).json()
        assert unchanged[0].get("ok"), unchanged
    stored = street.couch.main.get(BAND_DEVICE)
    assert (stored["write_public"], stored["resident"]) == (device["write_public"], RESIDENT)


def test_a_gateway_refuses_to_seal_to_a_key_the_installation_does_not_vouch_for(
        street: Street, firewall: Firewall, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    token = prepare(street, firewall)
    genuine = street.couch.main.get(BAND_DEVICE)
    other = street.couch.main.get(data_key_id(OTHER_GRID_RESIDENT))
    attacker = WriteKey.generate(genuine["write_key_version"])
    attacker_public = b64url(attacker.public_raw)
    forger = key_statements.new_installation_key()  # an installation key of the attacker's own making
    forgeries = {
        "no statement": {"write_public": attacker_public, "write_signature": None},
        "a statement by another key": {"write_public": attacker_public, "write_signature": key_statements.vouch(
            forger, RESIDENT, genuine["write_key_version"], attacker_public)},
        "another resident's statement": {"write_public": other["write_public"],
                                         "write_signature": other["write_signature"]},
    }

    async def scenario() -> tuple[list[str], list[dict]]:
        radio = VirtualRadio()
        await radio.start()
        band = await radio.add(BAND, BIND_KEY, wristband=True)
        problems = []
        async with gateway_on(street, token, tmp_path, radio, "scan") as gateway:
            assert gateway.registry.get(BAND_DEVICE) is not None  # the vouched registration
            for change in forgeries.values():
                # Past the sync gateway, straight into CouchDB (a process on the host, or a bug elsewhere).
                current = street.couch.main.get(BAND_DEVICE)
                street.couch.main.save({**current, **change})
                await gateway.refresh_config()
                problems.append(gateway.registry.problems.get(BAND_DEVICE, ""))
                kept = gateway.registry.get(BAND_DEVICE)
                assert kept is not None and b64url(kept.write_key.public_bytes(*RAW_POINT)) == genuine["write_public"]
            before = gateway.advertisements
            await band.emit(band.buttons(sos=1))
            while gateway.outbox.counts()["pending"] == 0 or gateway.advertisements == before:
                await asyncio.sleep(0.01)
            await gateway.push()
        return problems, [r["doc"] for r in street.couch.main.all(startkey="alert:", endkey="alert:\ufff0",
                                                                    as_list=True)]

    problems, alerts = asyncio.run(scenario())
    for what, problem in zip(forgeries, problems, strict=True):
        assert "refusing to seal readings to it" in problem, what
    assert "refusing to seal readings to it" in caplog.text  # the gateway's log says so
    (alert,) = alerts
    # Sealed to the resident's own key: it opens with their keys, not with the attacker's.
    opened = open_fields(alert, firewall.keystore.data_keys(RESIDENT), ["detail"])
    assert opened == {"detail": "SOS key pressed (press)"}
    with pytest.raises(EnvelopeError):
        attacker.open(FieldContext(alert["_id"], "detail", "core"), alert["detail"])


def test_a_gateway_without_its_pinned_installation_key_does_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LINLI_GATEWAY_INSTALLATION_KEY", raising=False)
    monkeypatch.delenv("LINLI_GATEWAY_INSTALLATION_KEY_FILE", raising=False)
    with pytest.raises(SecretError, match="LINLI_GATEWAY_INSTALLATION_KEY"):
        installation_key()
    monkeypatch.setenv("LINLI_GATEWAY_INSTALLATION_KEY", "bm90IGEga2V5")
    with pytest.raises(SecretError, match="not a base64url P-256 public key"):
        installation_key()


def test_every_new_write_key_is_vouched_for_and_rotate_master_keeps_the_installation_key(
        street: Street, firewall: Firewall) -> None:
    prepare(street, firewall)
    pinned = key_statements.load_pinned(firewall.keystore.installation_public())
    before = street.couch.main.get(data_key_id(RESIDENT))
    firewall.rekey(RESIDENT)
    after = street.couch.main.get(data_key_id(RESIDENT))
    device = street.couch.main.get(BAND_DEVICE)
    assert after["write_public"] != before["write_public"]
    key_statements.check(pinned, RESIDENT, after["core"]["version"], after["write_public"], after["write_signature"])
    assert (device["write_public"], device["write_signature"]) == (after["write_public"], after["write_signature"])
    with pytest.raises(key_statements.UnvouchedKey):  # the old statement does not vouch for the new key
        key_statements.check(pinned, RESIDENT, after["core"]["version"], after["write_public"],
                             before["write_signature"])
    # A master-key rotation re-wraps the installation key; what gateways and phones pinned stays valid.
    new_master = bytes(range(32))
    KeyStore(street.couch, (new_master, *firewall.keystore.master_keys)).rotate_master()
    assert KeyStore(street.couch, (new_master,)).installation_public() == firewall.keystore.installation_public()
