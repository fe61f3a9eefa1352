"""Whole documents through crypto/fields.py and a resident's keys from crypto/keyring.py, in process (no store)."""

from __future__ import annotations

import json

import pytest

from crypto import envelope as env
from crypto.fields import open_fields, seal_document
from crypto.keyring import ResidentKeys, TierKeys, new_data_key_record, open_data_keys
from crypto.vectors.make_vectors import PATH as VECTORS_PATH

VECTORS = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))

RECORD_ID = "data_key:r1"
RESIDENT = {"_id": "resident:r1", "type": "resident", "phone": "10012345678", "id_card": "995461193603281553",
            "health_notes": "按时服药", "chronic_conditions": ["高血压", "糖尿病"], "disability_grade": 3}
PROTECTED = ["phone", "id_card", "health_notes", "chronic_conditions", "disability_grade"]


def test_a_write_key_is_opened_only_when_a_value_sealed_for_it_is() -> None:
    tier_keys = TierKeys.new()
    stored = {"_id": RECORD_ID, **new_data_key_record(tier_keys, RECORD_ID)}
    keys = open_data_keys(tier_keys, stored)
    sealed = seal_document(RESIDENT, keys.current)
    assert open_fields(sealed, keys) == {name: RESIDENT[name] for name in PROTECTED}
    assert ("write", 1) not in keys.versions  # data-key fields only: no EC key parsed
    reading = {"_id": "visit:v1", "type": "visit", "resident": RESIDENT["_id"],
               "blood_pressure": env.seal_for(env.unb64url(stored["write_public"]), 1,
                                              env.FieldContext("visit:v1", "blood_pressure", "core"), "150/95")}
    assert open_fields(reading, keys) == {"blood_pressure": "150/95"}
    assert isinstance(keys.versions[("write", 1)], env.WriteKey)  # opened on first need, then kept
    assert open_fields(reading, open_data_keys(tier_keys, stored, ("contact",))) == {}  # core not held: skipped


def test_a_field_that_does_not_belong_where_it_is_is_refused_for_the_reason_it_does_not() -> None:
    """Whole records open on a fast path that builds no error per field; whatever does not open there is refused
    with the same reason and message as opening that field alone."""
    tier_keys = TierKeys.new()
    keys = open_data_keys(tier_keys, {"_id": RECORD_ID, **new_data_key_record(tier_keys, RECORD_ID)})
    sealed = seal_document(RESIDENT, keys.current)
    body = env.decode(sealed["phone"])
    cases = {
        "moved from another field": ({**sealed, "phone": sealed["id_card"]}, "authentication",
                                     "encrypted field 'phone' of 'resident:r1' does not open"),
        "moved from another resident": ({**sealed, "_id": "resident:r2"}, "authentication",
                                        "encrypted field 'phone' of 'resident:r2' does not open"),
        "altered": ({**sealed, "phone": env.encode(body[:-1] + bytes([body[-1] ^ 1]))},
                    "authentication", "encrypted field 'phone' of 'resident:r1' does not open"),
        "truncated": ({**sealed, "phone": env.encode(body[:20])}, "truncated",
                      "encrypted field is truncated (20 bytes, at least 33 needed)"),
        "not base64": ({**sealed, "phone": sealed["phone"] + "*"}, "format",
                       "encrypted field is not valid base64 (standard with padding for version 3"),
        "stored unencrypted": ({**sealed, "phone": "10012345678"}, "format",
                               "protected field 'phone' of 'resident:r1' is stored unencrypted"),
    }
    for case, (doc, reason, message) in cases.items():
        with pytest.raises(env.EnvelopeError) as caught:
            open_fields(doc, keys, ["phone"])
        assert (caught.value.reason, str(caught.value)[:len(message)]) == (reason, message), case
    assert open_fields(sealed, keys, ["phone"]) == {"phone": "10012345678"}


def test_a_record_holding_fields_sealed_before_version_3_opens_whole_and_writes_only_version_3() -> None:
    """Fields sealed until 2026-12-02 (version 1, base64url: the shared vectors' `envelope_v1`) open beside
    fields sealed now, under each key version the resident holds; sealing again writes version 3 only."""
    v1 = [c for c in VECTORS["envelope_v1"] if c["doc_id"] == "resident:c1-g01-0001-1"]
    assert {c["key_version"] for c in v1} == {1} and len(v1) == 2  # the phone and ID card cases
    data_key = env.DataKey(env.unb64url(v1[0]["key"]), 1)
    newer = env.DataKey(bytes(range(32)), 2)  # after a rotation: what is sealed from now on
    keys = ResidentKeys({"contact": newer}, {("contact", 1): data_key, ("contact", 2): newer})
    record = seal_document({"_id": v1[0]["doc_id"], "type": "resident", "emergency_contact_name": "王芳",
                            **{c["field"]: c["envelope"] for c in v1}}, keys.current)
    assert [env.parse(record[c["field"]]).version for c in v1] == [1, 1]  # envelopes already there stay
    assert env.parse(record["emergency_contact_name"]).version == env.VERSION == 3
    assert open_fields(record, keys) == {"emergency_contact_name": "王芳",
                                         **{c["field"]: json.loads(c["plaintext_json"]) for c in v1}}
    altered = {**record, "phone": record["phone"][:-2] + ("A" if record["phone"][-2] != "A" else "B") + "g"}
    with pytest.raises(env.EnvelopeError, match="'phone' of 'resident:c1-g01-0001-1' does not open"):
        open_fields(altered, keys)


@pytest.mark.parametrize("version", [1, 2**28 - 1, 2**28, 2**32 - 1])
def test_a_record_opens_whole_whatever_its_key_version(version: int) -> None:
    """The usual envelope (key version below 2**28) starts "enc:Aw" and opens in line; a higher key version's
    envelope starts otherwise and opens the careful way: the same values either way."""
    data_key = env.DataKey(bytes(range(32)), version)
    keys = ResidentKeys({"contact": data_key, "core": data_key}, {("contact", version): data_key,
                                                                   ("core", version): data_key})
    sealed = seal_document(RESIDENT, keys.current)
    assert {sealed[name].startswith(env.USUAL_START) for name in PROTECTED} == {version < 2**28}
    assert open_fields(sealed, keys) == {name: RESIDENT[name] for name in PROTECTED}
