"""Whole documents through crypto/fields.py and a resident's keys from crypto/keyring.py, in process (no store)."""

from __future__ import annotations

import pytest

from crypto import envelope as env
from crypto.fields import open_fields, seal_document
from crypto.keyring import TierKeys, new_data_key_record, open_data_keys

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
        "altered": ({**sealed, "phone": env.PREFIX + env.b64url(body[:-1] + bytes([body[-1] ^ 1]))},
                    "authentication", "encrypted field 'phone' of 'resident:r1' does not open"),
        "truncated": ({**sealed, "phone": env.PREFIX + env.b64url(body[:20])}, "truncated",
                      "encrypted field is truncated (20 bytes, at least 33 needed)"),
        "not base64url": ({**sealed, "phone": sealed["phone"] + "*"}, "format",
                          "encrypted field is not valid base64url"),
        "stored unencrypted": ({**sealed, "phone": "10012345678"}, "format",
                               "protected field 'phone' of 'resident:r1' is stored unencrypted"),
    }
    for case, (doc, reason, message) in cases.items():
        with pytest.raises(env.EnvelopeError) as caught:
            open_fields(doc, keys, ["phone"])
        assert (caught.value.reason, str(caught.value)[:len(message)]) == (reason, message), case
    assert open_fields(sealed, keys, ["phone"]) == {"phone": "10012345678"}
