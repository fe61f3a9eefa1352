"""Ending access ends it for future data (issue 13, finding 3): when someone loses a data key they held on a phone
(an approval expires or is revoked, the resident's privacy choice shuts them out, they are moved off the grid), the
keys are rotated, so nothing written afterwards opens under anything they kept; whoever may still read opens old
and new values alike."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from crypto.envelope import (
    DataKey,
    EnvelopeError,
    FieldContext,
    WriteKey,
    b64url,
    key_version_of,
    seal_for,
    unb64url,
)
from crypto.fields import open_fields
from crypto.keyring import WRITE_KEY_TIER
from crypto.keys import unwrap_on_phone
from server.domain.access import Principal
from server.domain.declaration import MAX_KEY_VERSIONS
from server.security import grants
from server.security.firewall import Firewall
from server.security.keystore import data_key_id
from server.services import demo
from server.store.couch import Couch

from .conftest import DEMO_SIZE
from .test_firewall import NOW, SECRETARY, WORKER, _plain, _resident_with
from .test_grants import phone

COLLEAGUE = "user:wangge02"  # another grid's worker, who also takes on grid:c1-g01 here
GRID = "grid:c1-g01"
EVENTS = {  # event → the tiers the worker loses by it
    "expiry": {"core"},
    "revocation": {"core"},
    "privacy_change": {"contact", "core"},
    "reassignment": {"contact", "core"},
}
LATER = NOW + dt.timedelta(hours=3)  # after the worker's 2-hour approval, inside the colleague's 48 hours


def _approve(couch: Couch, firewall: Firewall, user_id: str, resident: dict, hours: int) -> dict:
    p = Principal.of(couch.accounts.get(user_id))
    access_request = firewall.request_access(p, resident, ["health"], "随访", hours, NOW)
    return firewall.decide(SECRETARY, access_request["_id"], approve=True, note="", now=NOW)


def _keys_held(couch: Couch, private: ec.EllipticCurvePrivateKey, user_id: str, resident: str) -> dict[str, list]:
    """tier → every key the user's phone could unwrap for this resident, and (core) the write keys it could open
    from the resident's data_key document with them: what a modified client keeps after losing access."""
    held: dict[str, list[Any]] = {"contact": [], "core": []}
    record = couch.main.get(data_key_id(resident))
    for grant in grants.grants_of(couch, user_id):
        if grant["resident"] != resident:
            continue
        for version in [grant["key_version"], *map(int, grant.get("older_keys", {}))]:
            held[grant["tier"]].append(DataKey(unwrap_on_phone(private, grant["_id"], grant, version), version))
    for core in list(held[WRITE_KEY_TIER]):
        context = FieldContext(record["_id"], "write_private", WRITE_KEY_TIER)
        for sealed in [record["write_private"], *record.get("older_write_private", [])]:
            if key_version_of(sealed) == core.version:
                held["core"].append(WriteKey.from_der(core.open_bytes(context, sealed), core.version))
    return held


def _written(couch: Couch, firewall: Firewall, resident: dict, tag: str) -> dict[str, tuple[dict, str, str]]:
    """New values of both tiers, as the server seals them (v1) and as a phone or BLE gateway seals a reading for
    the resident's published write key (v2): name → (document, field, tier)."""
    stored = couch.main.get(resident["_id"])
    updated = firewall.seal_for_storage([{**stored, "phone": "1390000" + tag, "chronic_conditions": ["糖尿病" + tag]}])
    couch.main.save(updated[-1])
    place = {k: resident[k] for k in ("street", "community", "grid", "household")}
    visit = {"type": "visit", **place, "resident": resident["_id"], "kind": "routine", "visited_at": NOW.isoformat(),
             "created_by": WORKER.user_id, "created_at": NOW.isoformat()}
    by_server = firewall.seal_for_storage([{**visit, "_id": f"visit:server-{tag}", "blood_pressure": "120/80"}])[0]
    public, version = firewall.keystore.write_public_key(resident["_id"])
    by_phone = {**visit, "_id": f"visit:phone-{tag}"}
    by_phone["blood_pressure"] = seal_for(public, version, FieldContext(by_phone["_id"], "blood_pressure", "core"),
                                          "150/95")
    for doc in (by_server, by_phone):
        couch.main.save(doc)
    fresh = couch.main.get(resident["_id"])
    return {"phone": (fresh, "phone", "contact"), "chronic_conditions": (fresh, "chronic_conditions", "core"),
            "server visit": (couch.main.get(by_server["_id"]), "blood_pressure", "core"),
            "phone visit": (couch.main.get(by_phone["_id"]), "blood_pressure", "core")}


def _opens(key: DataKey | WriteKey, doc: dict, field: str, tier: str) -> bool:
    try:
        key.open(FieldContext(doc["_id"], field, tier), doc[field])
    except EnvelopeError:
        return False
    return True


def _end(couch: Couch, firewall: Firewall, event: str, resident: dict, approval: dict) -> None:
    worker = couch.accounts.get(WORKER.user_id)
    if event == "expiry":
        assert grants.expire(firewall, LATER) == 1
    elif event == "revocation":
        firewall.revoke(SECRETARY, approval["_id"], NOW)
        assert grants.expire(firewall, NOW) == 1
    elif event == "privacy_change":
        firewall.set_privacy(SECRETARY, resident, {"contact": "secretary_only", "health": "secretary_only"}, NOW)
        grants.resync_resident(firewall, resident["_id"], NOW)
    else:  # what the secretary's staff page does (server/web/console_pages.py assign)
        couch.accounts.save({**worker, "grids": []})
        grants.sync_user(firewall, couch.accounts.get(WORKER.user_id), NOW)


@pytest.mark.parametrize("event", EVENTS)
def test_ending_access_rotates_the_keys_so_nothing_written_afterwards_opens_for_the_former_holder(
        demo_loaded: Couch, firewall: Firewall, event: str) -> None:
    resident = _resident_with(demo_loaded, "chronic_conditions", grid=GRID)
    colleague = demo_loaded.accounts.get(COLLEAGUE)
    demo_loaded.accounts.save({**colleague, "grids": [*colleague["grids"], GRID]})
    phones = {}
    for user_id in (WORKER.user_id, COLLEAGUE):
        private, public = phone()
        grants.register_phone(demo_loaded, demo_loaded.accounts.get(user_id), public, "", NOW)
        phones[user_id] = private
    lost = EVENTS[event]
    approval = _approve(demo_loaded, firewall, WORKER.user_id, resident, 2)
    _approve(demo_loaded, firewall, COLLEAGUE, resident, 48)
    for user_id in phones:
        grants.sync_user(firewall, demo_loaded.accounts.get(user_id), NOW)
    before = _written(demo_loaded, firewall, resident, "1")
    held = _keys_held(demo_loaded, phones[WORKER.user_id], WORKER.user_id, resident["_id"])
    assert len(held["contact"]) == 1 and len(held["core"]) == 2  # a data key per tier, and the write key
    for name, (doc, field, tier) in before.items():  # while entitled, the worker's keys open everything
        assert any(_opens(key, doc, field, tier) for key in held[tier]), name

    versions = {t: demo_loaded.main.get(data_key_id(resident["_id"]))[t]["version"] for t in ("contact", "core")}
    _end(demo_loaded, firewall, event, resident, approval)
    after = _written(demo_loaded, firewall, resident, "2")
    record = demo_loaded.main.get(data_key_id(resident["_id"]))
    # One new version per lost tier, however many holders lost it (the colleague too, by a privacy change).
    assert {t: record[t]["version"] - versions[t] for t in versions} == {t: int(t in lost) for t in versions}

    for name, (doc, field, tier) in after.items():
        if tier in lost:
            assert not any(_opens(key, doc, field, tier) for key in held[tier]), f"{event}: {name} opens"
        else:  # still entitled to this tier: nothing was rotated under them
            assert any(_opens(key, doc, field, tier) for key in held[tier]), f"{event}: {name}"
    assert not {g["tier"] for g in grants.grants_of(demo_loaded, WORKER.user_id)
                if g["resident"] == resident["_id"]} & lost
    # Whoever may still read opens old and new values: the server for the secretary, online ...
    keys = firewall.keystore.data_keys(resident["_id"])
    for name, (doc, field, _) in [*before.items(), *after.items()]:
        assert field in open_fields(doc, keys, [field]), name
    revealed = firewall.reveal(SECRETARY, demo_loaded.main.get(resident["_id"]), "contact", purpose="x", device="d",
                               now=LATER)
    assert revealed["phone"] == "13900002"
    # ... and the colleague's phone offline, with the re-issued grant (its older keys open the older values).
    if event != "privacy_change":
        mine = {g["tier"]: g for g in grants.grants_of(demo_loaded, COLLEAGUE) if g["resident"] == resident["_id"]}
        for name, (doc, field, tier) in [*before.items(), *after.items()]:
            if doc["_id"].startswith("resident:"):
                envelope = doc[field]
                version = key_version_of(envelope)
                key = DataKey(unwrap_on_phone(phones[COLLEAGUE], mine[tier]["_id"], mine[tier], version), version)
                assert key.open(FieldContext(doc["_id"], field, tier), envelope) is not None, name
    else:
        assert not grants.grants_of(demo_loaded, COLLEAGUE) or all(
            g["resident"] != resident["_id"] for g in grants.grants_of(demo_loaded, COLLEAGUE))


def test_a_rotation_is_one_read_and_one_write_and_the_grid_keeps_working(demo_loaded: Couch,
                                                                        firewall: Firewall) -> None:
    """A worker moved off a grid: every resident's contact key of that grid rotates at once, without re-encryption;
    the documents stay as they were, and older values still open."""
    worker = demo_loaded.accounts.get(WORKER.user_id)
    grants.register_phone(demo_loaded, worker, phone()[1], "", NOW)
    grants.sync_user(firewall, worker, NOW)
    residents = [g["resident"] for g in grants.grants_of(demo_loaded, WORKER.user_id)]
    stored = {r: demo_loaded.main.get(r)["_rev"] for r in residents}
    versions = {r: demo_loaded.main.get(data_key_id(r))["contact"]["version"] for r in residents}
    demo_loaded.accounts.save({**worker, "grids": []})
    grants.sync_user(firewall, demo_loaded.accounts.get(WORKER.user_id), NOW)
    assert grants.grants_of(demo_loaded, WORKER.user_id) == []
    for r in residents:
        record = demo_loaded.main.get(data_key_id(r))
        assert record["contact"]["version"] == versions[r] + 1 and len(record["older"]["contact"]) == 1
        assert demo_loaded.main.get(r)["_rev"] == stored[r]  # not re-encrypted
    resident = demo_loaded.main.get(next(r for r in residents if "phone" in _plain(r)))
    assert firewall.reveal(SECRETARY, resident, "contact", purpose="x", device="d", now=NOW)["phone"] == \
        _plain(resident["_id"])["phone"]


def test_a_resident_with_too_many_older_versions_is_re_keyed_instead(demo_loaded: Couch, firewall: Firewall) -> None:
    resident = _resident_with(demo_loaded, "phone", grid=GRID)
    for _ in range(MAX_KEY_VERSIONS - 1):
        firewall.keystore.rotate({resident["_id"]: ["contact"]})
    record = demo_loaded.main.get(data_key_id(resident["_id"]))
    assert len(record["older"]["contact"]) == MAX_KEY_VERSIONS - 1
    assert firewall.end_exposure([(resident["_id"], "contact", record["contact"]["version"])]) == {resident["_id"]}
    record = demo_loaded.main.get(data_key_id(resident["_id"]))
    assert "older" not in record  # every ciphertext re-sealed under the current keys, the older ones forgotten
    assert key_version_of(demo_loaded.main.get(resident["_id"])["phone"]) == record["contact"]["version"]
    assert firewall.reveal(SECRETARY, demo_loaded.main.get(resident["_id"]), "contact", purpose="x", device="d",
                           now=NOW)["phone"] == _plain(resident["_id"])["phone"]


def test_a_core_rotation_publishes_the_new_write_key_to_the_residents_devices(demo_loaded: Couch,
                                                                              firewall: Firewall) -> None:
    device = next(d for d in demo.generate(size=DEMO_SIZE) if d["type"] == "device")
    public, version = firewall.keystore.write_public_key(device["resident"])
    stored = demo_loaded.main.get(device["_id"])
    demo_loaded.main.save({**stored, "write_public": b64url(public), "write_key_version": version})  # as registered
    assert firewall.end_exposure([(device["resident"], "core", version)]) == {device["resident"]}
    published = demo_loaded.main.get(device["_id"])
    assert published["write_key_version"] == version + 1 and published["write_public"] != b64url(public)
    assert (unb64url(published["write_public"]), version + 1) == firewall.keystore.write_public_key(device["resident"])
