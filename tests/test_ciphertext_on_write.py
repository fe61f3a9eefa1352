"""Protected fields hold only ciphertext that opens under the right key, verified on write (issue 13, finding 12):
a scripted phone or gateway cannot store plaintext disguised as an envelope, a value sealed under a key of its own
or another resident's, or one moved from another document or field; the refusal names the field, never the
value, and the value reaches no log."""

from __future__ import annotations

import datetime as dt
import os

import httpx2
import pytest

from crypto.envelope import PREFIX, DataKey, FieldContext, b64url, seal_for
from crypto.keys import new_key
from server.security.firewall import CiphertextRefused, Firewall
from server.store.couch import Couch
from sync.auth import new_device_token
from tests.sync_harness import (
    C1,
    G1,
    NOW,
    STREET,
    Street,
    login,
    seed,
    street_fixture,  # noqa: F401 - the fixture
)

R1, R2 = "resident:c1-g1-h001-1", "resident:c1-g1-h002-1"
SECRET = "188/121"  # a blood pressure no refusal or log may show


def _fake_envelope(plaintext: bytes) -> str:
    """'enc:' and a well-formed version-1 envelope (header, nonce, 16-byte "tag") around plaintext."""
    return PREFIX + b64url(b"\x01" + (1).to_bytes(4, "big") + os.urandom(12) + plaintext + os.urandom(16))


def _visit(doc_id: str, resident: str, value: str | None) -> dict:
    household = "household:" + resident.split(":")[1].rsplit("-", 1)[0]
    return {"_id": doc_id, "type": "visit", "street": STREET, "community": C1, "grid": G1, "household": household,
            "resident": resident, "kind": "routine", "visited_at": NOW, "created_by": "user:wangge01",
            "created_at": NOW, **({"blood_pressure": value} if value else {})}


def _for(firewall: Firewall, resident: str, doc_id: str, field: str, value: object) -> str:
    """What an honest phone or gateway does: seal for the resident's published write key."""
    public, version = firewall.keystore.write_public_key(resident)
    return seal_for(public, version, FieldContext(doc_id, field, "core"), value)


@pytest.mark.timeout(120)
def test_only_ciphertext_that_opens_under_the_residents_key_is_stored(street: Street, firewall: Firewall) -> None:
    for resident in (R1, R2):
        street.couch.main.save(firewall.keystore.new_data_key_doc(street.couch.main.get(resident)))
    core = firewall.keystore.data_keys(R1).current["core"]
    context = FieldContext("visit:c1-g1-h001-a", "blood_pressure", "core")
    attempts = {  # id → (blood_pressure, accepted?)
        "visit:c1-g1-h001-a": (_fake_envelope(b'"' + SECRET.encode() + b'"'), False),  # plaintext, disguised
        "visit:c1-g1-h001-b": (DataKey(new_key(), core.version).seal(context._replace(doc_id="visit:c1-g1-h001-b"),
                                                                     SECRET), False),  # a key of the writer's own
        "visit:c1-g1-h001-c": (_for(firewall, R1, "visit:c1-g1-h001-x", "blood_pressure", SECRET), False),  # moved
        "visit:c1-g1-h001-d": (_for(firewall, R2, "visit:c1-g1-h001-d", "blood_pressure", SECRET), False),  # R2's
        "visit:c1-g1-h001-e": (_for(firewall, R1, "visit:c1-g1-h001-e", "blood_pressure", SECRET), True),
        "visit:c1-g1-h001-f": (core.seal(context._replace(doc_id="visit:c1-g1-h001-f"), SECRET), True),
    }
    resident = street.couch.main.get(R1)
    disguised_phone = {**resident, "phone": _fake_envelope(b'"13812345678"')}
    cookie, csrf = login(street.served.url, "wangge01")
    with httpx2.Client(base_url=street.served.sync_url + "/", timeout=30,
                       headers={"Cookie": cookie, "X-CSRF-Token": csrf}) as phone:
        answers = phone.post("_bulk_docs", json={"docs": [
            *(_visit(doc_id, R1, value) for doc_id, (value, _) in attempts.items()), disguised_phone]})
    assert answers.status_code == 201
    by_id = {a["id"]: a for a in answers.json()}
    for doc_id, (_, accepted) in attempts.items():
        assert ("rev" in by_id[doc_id]) is accepted, (doc_id, by_id[doc_id])
        if not accepted:
            assert by_id[doc_id]["error"] == "forbidden" and "blood_pressure" in by_id[doc_id]["reason"]
            assert [e["field"] for e in by_id[doc_id]["errors"]] == ["blood_pressure"]
    assert "phone" in by_id[R1]["reason"] and "rev" not in by_id[R1]
    assert "phone" not in street.couch.main.get(R1)  # nothing of the refused write stored
    ids = {r["id"] for r in street.couch.main.all(startkey="visit:", endkey="visit:\ufff0", as_list=True)}
    assert ids == {"visit:c1-g1-h001-e", "visit:c1-g1-h001-f"}
    # The BLE gateway's uplink is the same door: a reading is stored only sealed for its resident's write key.
    token = _gateway_token(street)
    reading = {"_id": "reading:c1-g1-wb-9", "type": "reading", "street": STREET, "community": C1, "grid": G1,
               "device": "device:c1-g1-wb", "resident": R1, "measured_at": NOW, "metric": "heart_rate"}
    with httpx2.Client(base_url=street.served.sync_url + "/", headers={"Authorization": f"Bearer {token}"}) as gw:
        fake = gw.post("_bulk_docs", json={"docs": [{**reading, "value": _fake_envelope(b"188.0")}]}).json()
        honest = gw.post("_bulk_docs", json={"docs": [
            {**reading, "value": _for(firewall, R1, reading["_id"], "value", 72.0)}]}).json()
    assert fake[0]["error"] == "forbidden" and "value" in fake[0]["reason"] and "rev" in honest[0]
    logs = "".join(log.read_text() for log in street.settings.data_dir.glob("serve-*.log"))
    shown = answers.text + str(fake) + logs
    assert SECRET not in shown and "13812345678" not in shown and "188.0" not in shown


def _gateway_token(street: Street) -> str:
    token, doc = new_device_token("user:gw1", "test gateway", dt.datetime.now(dt.UTC))
    street.couch.accounts.save(doc)
    return token


def test_the_servers_own_sealing_refuses_a_value_given_already_sealed_that_does_not_open(
        couch: Couch, firewall: Firewall) -> None:
    seed(couch)
    couch.main.save(firewall.keystore.new_data_key_doc(couch.main.get(R1)))
    honest = _visit("visit:c1-g1-h001-s", R1, _for(firewall, R1, "visit:c1-g1-h001-s", "blood_pressure", SECRET))
    assert firewall.seal_for_storage([honest]) == [honest]
    for value in (_fake_envelope(b'"' + SECRET.encode() + b'"'),
                  _for(firewall, R1, "visit:elsewhere", "blood_pressure", SECRET)):
        with pytest.raises(CiphertextRefused) as refused:
            firewall.seal_for_storage([{**honest, "blood_pressure": value}])
        assert [e.field for e in refused.value.errors] == ["blood_pressure"] and SECRET not in str(refused.value)
