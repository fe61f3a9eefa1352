"""Whole documents through crypto/fields.py and a resident's keys from crypto/keyring.py, in process (no store)."""

from __future__ import annotations

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
