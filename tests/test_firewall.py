"""The data-security firewall against a real pouchdb-server: what is stored, who opens what, and proof of it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import httpx2
import pytest

from crypto import keyring
from crypto.envelope import EnvelopeError, FieldContext, b64url, seal_for
from crypto.fields import open_fields, protected_fields
from crypto.keys import KeyMaterialError, new_key
from server.domain.access import Principal
from server.security import filing, number_index
from server.security.firewall import AccessDenied, AccessRequestError, Firewall, PrivacyChoiceError
from server.security.keystore import KeyStore, ShreddedError, data_key_id, keyring_id
from server.services import demo
from server.store.config import Settings
from server.store.couch import Couch, connect, get_or_none

from .conftest import DEMO_SIZE

DOES_NOT_OPEN = "does not open: wrong key, or the ciphertext was altered or moved"
NOW = dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC)
WORKER = Principal("user:wangge01", frozenset({"grid_worker"}), demo.STREET_ID, frozenset({"community:c1"}),
                   frozenset({"grid:c1-g01"}))
OTHER_WORKER = dataclasses.replace(WORKER, user_id="user:wangge02", grids=frozenset({"grid:c1-g02"}))
SECRETARY = Principal("user:shuji1", frozenset({"secretary"}), demo.STREET_ID, frozenset({"community:c1"}))


def _plain(resident_id: str) -> dict:
    return next(d for d in demo.generate(size=DEMO_SIZE) if d["_id"] == resident_id)


def _resident_with(couch: Couch, field: str, grid: str = "grid:c1-g01") -> dict:
    """A stored resident of grid whose plaintext has field."""
    plain = next(d for d in demo.generate(size=DEMO_SIZE)
                 if d["type"] == "resident" and d["grid"] == grid and field in d)
    return couch.main.get(plain["_id"])


def test_protected_fields_are_never_stored_in_plaintext(demo_loaded: Couch) -> None:
    # A dump of every database, as a thief with the database (but no master key) would have it.
    dump = ""
    with httpx2.Client(base_url=demo_loaded.url, timeout=60) as http:
        for db in (demo_loaded.main.name, demo_loaded.accounts.name):
            dump += http.get(f"/{db}/_all_docs", params={"include_docs": "true"}).text
    secrets = set()
    for doc in demo.generate(size=DEMO_SIZE):
        for field in ("phone", "id_card", "emergency_contact_phone", "health_notes", "finance_notes"):
            if doc.get(field):
                secrets.add(str(doc[field]))
        secrets.update(doc.get("chronic_conditions", []))
    assert len(secrets) > 50  # the demo does hold protected data to look for
    found = sorted(s for s in secrets if s in dump)
    assert not found, f"plaintext in the database dump: {found[:5]}"
    assert '"phone":"enc:' in dump.replace(" ", "")


def test_grid_worker_opens_contact_and_the_opening_is_filed(demo_loaded: Couch, firewall: Firewall) -> None:
    resident = _resident_with(demo_loaded, "phone")
    values = firewall.reveal(WORKER, resident, "contact", purpose="routine_visit", device="web test", now=NOW)
    assert values["phone"] == _plain(resident["_id"])["phone"]
    entry = demo_loaded.main.get(filing.entry_id("community:c1", 1))
    assert (entry["actor"], entry["target"], entry["purpose"]) == (WORKER.user_id, resident["_id"], "routine_visit")
    assert "phone" in entry["fields"] and entry["device"] == "web test"
    assert filing.verify(demo_loaded, firewall.signer, "community:c1").ok


def test_core_data_needs_an_approval_that_expires(demo_loaded: Couch, firewall: Firewall) -> None:
    resident = _resident_with(demo_loaded, "chronic_conditions")
    with pytest.raises(AccessDenied, match="fw_needs_approval"):
        firewall.reveal(WORKER, resident, "health", purpose="x", device="d", now=NOW)
    access_request = firewall.request_access(WORKER, resident, ["health"], "血压随访", 2, NOW)
    with pytest.raises(AccessDenied, match="fw_not_secretary"):
        firewall.decide(OTHER_WORKER, access_request["_id"], approve=True, note="", now=NOW)
    firewall.decide(SECRETARY, access_request["_id"], approve=True, note="同意", now=NOW)
    opened = firewall.reveal(WORKER, resident, "health", purpose="", device="d", now=NOW + dt.timedelta(hours=1))
    assert opened["chronic_conditions"] == _plain(resident["_id"])["chronic_conditions"]
    # finance was not asked for; another worker has no grant; the grant runs out
    with pytest.raises(AccessDenied, match="fw_needs_approval"):
        firewall.reveal(WORKER, resident, "finance", purpose="x", device="d", now=NOW)
    with pytest.raises(AccessDenied, match="fw_not_yours"):
        firewall.reveal(OTHER_WORKER, resident, "health", purpose="x", device="d", now=NOW)
    with pytest.raises(AccessDenied, match="fw_needs_approval"):
        firewall.reveal(WORKER, resident, "health", purpose="", device="d", now=NOW + dt.timedelta(hours=3))
    last = demo_loaded.main.get(filing.entry_id("community:c1", 1))
    assert last["purpose"] == "血压随访"  # the approved purpose is what gets filed


def test_revoked_grant_stops_access_at_once(demo_loaded: Couch, firewall: Firewall) -> None:
    resident = _resident_with(demo_loaded, "chronic_conditions")
    access_request = firewall.request_access(WORKER, resident, ["health", "finance"], "走访", 24, NOW)
    firewall.decide(SECRETARY, access_request["_id"], approve=True, note="", now=NOW)
    opened = firewall.reveal(WORKER, resident, "health", purpose="", device="d", now=NOW)  # it works until revoked
    assert opened["chronic_conditions"] == _plain(resident["_id"])["chronic_conditions"]
    firewall.revoke(SECRETARY, access_request["_id"], NOW)
    with pytest.raises(AccessDenied, match="fw_needs_approval"):
        firewall.reveal(WORKER, resident, "health", purpose="", device="d", now=NOW)


def test_bad_access_requests_are_refused_with_a_reason(demo_loaded: Couch, firewall: Firewall) -> None:
    resident = _resident_with(demo_loaded, "phone")
    for categories, purpose, hours, message in ((["contact"], "p", 1, "categories"), (["health"], " ", 1, "purpose"),
                                                (["health"], "p", 0, "hours"), (["health"], "p", 10_000, "hours")):
        with pytest.raises(AccessRequestError, match=message):
            firewall.request_access(WORKER, resident, categories, purpose, hours, NOW)
    with pytest.raises(AccessDenied, match="fw_no_role"):
        firewall.request_access(OTHER_WORKER, resident, ["health"], "p", 1, NOW)  # not their grid
    with pytest.raises(AccessRequestError, match="no access request"):
        firewall.decide(SECRETARY, "access_request:nope", approve=True, note="", now=NOW)


def test_privacy_choice_is_enforced(demo_loaded: Couch, firewall: Firewall) -> None:
    resident = _resident_with(demo_loaded, "phone")
    access_request = firewall.request_access(WORKER, resident, ["health"], "走访", 24, NOW)
    owner = Principal("user:resident1", frozenset({"resident"}), demo.STREET_ID, resident=resident["_id"])
    firewall.set_privacy(owner, resident, {"contact": "secretary_only", "health": "secretary_only"}, NOW)
    with pytest.raises(AccessDenied, match="fw_privacy_secretary_only"):
        firewall.reveal(WORKER, resident, "contact", purpose="x", device="d", now=NOW)
    with pytest.raises(AccessDenied, match="fw_privacy_secretary_only"):
        firewall.decide(SECRETARY, access_request["_id"], approve=True, note="", now=NOW)
    assert firewall.reveal(SECRETARY, resident, "contact", purpose="x", device="d", now=NOW)["phone"]
    assert firewall.reveal(owner, resident, "health", purpose="查看本人信息", device="d", now=NOW) is not None
    with pytest.raises(PrivacyChoiceError, match="not a privacy choice"):
        firewall.set_privacy(owner, resident, {"contact": "everyone"}, NOW)
    for not_theirs in (OTHER_WORKER, WORKER):  # not even their own grid worker, whom the choice limits
        with pytest.raises(AccessDenied, match="fw_no_role"):
            firewall.set_privacy(not_theirs, resident, {"contact": "grid_staff"}, NOW)
    firewall.set_privacy(SECRETARY, resident, {"contact": "grid_staff"}, NOW)  # at the human window
    assert firewall.reveal(WORKER, resident, "contact", purpose="x", device="d", now=NOW)["phone"]


def test_ciphertext_moved_between_fields_or_residents_does_not_open(demo_loaded: Couch, firewall: Firewall) -> None:
    a = _resident_with(demo_loaded, "emergency_contact_phone")
    b = _resident_with(demo_loaded, "phone", grid="grid:c1-g01")
    b = b if b["_id"] != a["_id"] else _resident_with(demo_loaded, "phone", grid="grid:c1-g02")
    swapped_fields = {**a, "phone": a["emergency_contact_phone"], "emergency_contact_phone": a.get("phone")}
    with pytest.raises(EnvelopeError, match="phone"):
        firewall.reveal(SECRETARY, swapped_fields, "contact", purpose="x", device="d", now=NOW)
    from_other_resident = {**a, "phone": b["phone"]}
    with pytest.raises(EnvelopeError, match=DOES_NOT_OPEN):
        firewall.reveal(SECRETARY, from_other_resident, "contact", purpose="x", device="d", now=NOW)
    # Nothing was filed for the refused openings: the log records accesses that happened.
    assert demo_loaded.main.all(startkey="audit_entry:", endkey="audit_entry:\ufff0", as_list=True) == []


def test_shredded_resident_stays_unreadable_even_with_every_key(demo_loaded: Couch, firewall: Firewall) -> None:
    resident = _resident_with(demo_loaded, "phone")
    record = demo_loaded.main.get(data_key_id(resident["_id"]))
    firewall.shred(resident["_id"])
    with pytest.raises(ShreddedError, match="has no data keys"):
        firewall.reveal(SECRETARY, resident, "contact", purpose="x", device="d", now=NOW)
    # With the master key, every tier key and every data key still stored, none opens their fields.
    every_key = [firewall.keystore.open_record(row["doc"]) for row in demo_loaded.main.all(
        startkey="data_key:", endkey="data_key:\ufff0", as_list=True)]
    assert len(every_key) == sum(1 for d in demo.generate(size=DEMO_SIZE) if d["type"] == "resident") - 1
    for keys in every_key:
        with pytest.raises(EnvelopeError, match=DOES_NOT_OPEN):
            keys.current["contact"].open(_context(resident, "phone"), resident["phone"])
    # Nor does the deleted revision: compaction has dropped its body.
    old = httpx2.get(f"{demo_loaded.url}{demo_loaded.main.name}/{record['_id']}",
                     params={"rev": record["_rev"]})
    assert old.status_code == 404 or "contact" not in old.json()


def _context(doc: dict, field: str) -> FieldContext:
    return FieldContext(doc["_id"], field, protected_fields(doc["type"])[field])


def test_tier_key_rotation_rewraps_every_data_key_without_losing_access(demo_loaded: Couch, firewall: Firewall) -> None:
    resident = _resident_with(demo_loaded, "phone")
    moved = firewall.keystore.rotate_tier("community:c1", demo.STREET_ID, "contact")
    residents = [d for d in demo.generate(size=DEMO_SIZE) if d["type"] == "resident"]
    assert moved == sum(1 for d in residents if d["community"] == "community:c1")
    ring = demo_loaded.accounts.get(keyring_id("community:c1"))
    assert ring["contact"] == {"current": 2, "keys": {"2": ring["contact"]["keys"]["2"]}}
    assert demo_loaded.main.get(data_key_id(resident["_id"]))["contact"]["tier_version"] == 2
    # A second process with a stale cache still opens it (it reloads the ring on an unknown version).
    stale = Firewall(demo_loaded, KeyStore(demo_loaded, firewall.keystore.master_keys), firewall.signer)
    assert stale.reveal(WORKER, resident, "contact", purpose="x", device="d", now=NOW)["phone"]


def test_master_key_rotation(demo_loaded: Couch, firewall: Firewall, settings: Settings, couch_server) -> None:
    resident = _resident_with(demo_loaded, "phone")
    old = settings.master_keys[0]
    rotated = dataclasses.replace(settings, master_keys=(new_key(), old))
    assert Firewall.open(rotated, connect(rotated, couch_server.url)).keystore.rotate_master() >= 2
    only_new = dataclasses.replace(settings, master_keys=rotated.master_keys[:1])
    assert Firewall.open(only_new, demo_loaded).reveal(SECRETARY, resident, "contact", purpose="x", device="d", now=NOW)
    with pytest.raises(KeyMaterialError, match="LINLI_MASTER_KEY_PREVIOUS"):
        Firewall.open(settings, demo_loaded).reveal(SECRETARY, resident, "contact", purpose="x", device="d", now=NOW)


def test_rekey_makes_the_old_data_key_useless(demo_loaded: Couch, firewall: Firewall) -> None:
    resident = _resident_with(demo_loaded, "phone")
    old_keys = firewall.keystore.data_keys(resident["_id"])
    assert firewall.rekey(resident["_id"]) >= 1
    fresh = demo_loaded.main.get(resident["_id"])
    assert fresh["phone"] != resident["phone"]
    with pytest.raises(EnvelopeError, match=DOES_NOT_OPEN):
        old_keys.current["contact"].open(_context(fresh, "phone"), fresh["phone"])
    assert firewall.reveal(WORKER, fresh, "contact", purpose="x", device="d", now=NOW)["phone"] == \
        _plain(resident["_id"])["phone"]
    assert "older" not in demo_loaded.main.get(data_key_id(resident["_id"]))  # the old keys are forgotten


def test_key_material_never_appears_in_reprs_or_errors(firewall: Firewall, settings: Settings) -> None:
    tier_keys = keyring.TierKeys.new()
    secret_bytes = tier_keys.keys["contact"][1]
    texts = [repr(tier_keys), repr(firewall.keystore), repr(settings)]
    try:
        keyring.TierKeys.unwrap_ring([new_key()], tier_keys.wrap_ring(settings.master_keys[0]))
    except KeyMaterialError as error:
        texts.append(str(error))
    blob = json.dumps(texts)
    for key in (secret_bytes, settings.master_keys[0]):
        assert key.hex() not in blob and repr(key) not in blob
    assert len(texts) == 4


def test_grid_worker_records_core_values_without_being_able_to_read_them(demo_loaded: Couch,
                                                                          firewall: Firewall) -> None:
    resident = _resident_with(demo_loaded, "phone")
    # What the phone does offline: seal with the resident's public write key (it holds nothing that opens it).
    public, version = firewall.keystore.write_public_key(resident["_id"])
    visit_id = f"visit:{resident['_id'][9:]}-20261125"
    sealed = seal_for(public, version, FieldContext(visit_id, "blood_pressure", "core"), "150/95")
    visit = {"_id": visit_id, "type": "visit", **{k: resident[k] for k in ("street", "community", "grid", "household")},
             "resident": resident["_id"], "kind": "routine", "visited_at": NOW.isoformat(),
             "blood_pressure": sealed, "created_by": WORKER.user_id, "created_at": NOW.isoformat()}
    assert firewall.seal_for_storage([visit]) == [visit]  # already sealed: stored as it came
    demo_loaded.main.save(visit)
    with pytest.raises(AccessDenied, match="fw_needs_approval"):
        firewall.reveal(WORKER, resident, "health", purpose="x", device="d", now=NOW)
    keys = firewall.keystore.data_keys(resident["_id"])  # the server, for an entitled reader
    assert open_fields(demo_loaded.main.get(visit_id), keys)["blood_pressure"] == "150/95"
    other = _resident_with(demo_loaded, "phone", grid="grid:c1-g02")
    with pytest.raises(EnvelopeError, match=DOES_NOT_OPEN):  # not the other resident's key, not movable to their visit
        open_fields({**visit, "resident": other["_id"]}, firewall.keystore.data_keys(other["_id"]))
    # A re-key re-seals it under the new data key: still readable, the old write key no longer needed.
    firewall.rekey(resident["_id"])
    resealed = demo_loaded.main.get(visit_id)
    assert resealed["blood_pressure"] != sealed
    assert open_fields(resealed, firewall.keystore.data_keys(resident["_id"]))["blood_pressure"] == "150/95"


def test_find_a_resident_by_phone_or_id_card_number_through_the_blind_index(demo_loaded: Couch,
                                                                             firewall: Firewall) -> None:
    resident = _resident_with(demo_loaded, "id_card")
    plain = _plain(resident["_id"])
    grid = demo_loaded.main.get(resident["grid"])
    # The index is the server's alone (accounts database), never on the resident's replicated document.
    index = demo_loaded.accounts.get(number_index.number_index_id(resident["_id"]))
    assert len(index["id_card_bidx"]) == 8 and not [k for k in resident if k.endswith("_bidx")]
    assert plain["id_card"] not in json.dumps(resident) + json.dumps(index)
    typed = f"{plain['id_card'][:6]} {plain['id_card'][6:14]} {plain['id_card'][14:].lower()}"  # as people type it
    found = firewall.find_by_number(WORKER, grid, typed, device="d", now=NOW)
    assert [r["_id"] for r in found] == [resident["_id"]]
    entry = demo_loaded.main.get(filing.entry_id("community:c1", 1))
    assert (entry["action"], entry["target"], entry["fields"]) == ("search", resident["_id"], ["id_card"])
    # Another grid's worker finds nothing there; a number nobody has finds nothing; a name is not a number.
    assert firewall.find_by_number(OTHER_WORKER, grid, typed, device="d", now=NOW) == []
    assert firewall.find_by_number(WORKER, grid, "19999999999", device="d", now=NOW) == []
    assert firewall.find_by_number(WORKER, grid, resident["name"], device="d", now=NOW) == []
    # A colliding index (32 bits) is a candidate only: decryption decides.
    impostor = next(d["_id"] for d in demo.generate(size=DEMO_SIZE) if d["type"] == "resident"
                    and d["grid"] == "grid:c1-g01" and d["_id"] != resident["_id"])
    impostor_index = demo_loaded.accounts.get(number_index.number_index_id(impostor))
    demo_loaded.accounts.save({**impostor_index, "id_card_bidx": index["id_card_bidx"]})
    found = firewall.find_by_number(WORKER, grid, plain["id_card"], device="d", now=NOW)
    assert [r["_id"] for r in found] == [resident["_id"]]


def test_search_by_number_respects_privacy_choices_and_erasure(demo_loaded: Couch, firewall: Firewall) -> None:
    resident = _resident_with(demo_loaded, "id_card")
    grid = demo_loaded.main.get(resident["grid"])
    number = _plain(resident["_id"])["id_card"]
    found = firewall.find_by_number(WORKER, grid, number, device="d", now=NOW)  # the control: theirs to find so far
    assert [r["_id"] for r in found] == [resident["_id"]]
    firewall.set_privacy(SECRETARY, resident, {"contact": "secretary_only"}, NOW)
    assert firewall.find_by_number(WORKER, grid, number, device="d", now=NOW) == []  # not theirs to find
    found = firewall.find_by_number(SECRETARY, grid, number, device="d", now=NOW)
    assert [r["_id"] for r in found] == [resident["_id"]]
    firewall.shred(resident["_id"])  # an erased resident's indexes go with their keys
    assert get_or_none(demo_loaded.accounts, number_index.number_index_id(resident["_id"])) is None
    assert firewall.find_by_number(SECRETARY, grid, number, device="d", now=NOW) == []


def test_a_search_asks_couchdb_the_same_whether_or_not_a_resident_hidden_from_the_searcher_has_the_number(
        demo_loaded: Couch, firewall: Firewall) -> None:
    """How long a search takes must not tell a worker that a resident whose contact details they may not open has
    the number: the same requests to CouchDB as for a number nobody has (timing of ~500 guesses, not filed, was an
    online oracle for a "secretary only" ID card)."""
    resident = _resident_with(demo_loaded, "id_card")
    grid = demo_loaded.main.get(resident["grid"])
    firewall.set_privacy(SECRETARY, resident, {"contact": "secretary_only"}, NOW)
    session = demo_loaded.server.resource.session  # every database's requests go through it
    asked: list[tuple[str, str]] = []

    def searching(number: str) -> list[tuple[str, str]]:
        asked.clear()
        session.hooks["response"].append(lambda r, *_, **__: asked.append((r.request.method, r.request.path_url)))
        try:
            assert firewall.find_by_number(WORKER, grid, number, device="d", now=NOW) == []
        finally:
            session.hooks["response"].pop()
        return [(method, path.split("?")[0]) for method, path in asked]

    hidden, nobodys = searching(_plain(resident["_id"])["id_card"]), searching("110101199001011237")
    assert hidden == nobodys and len(hidden) == 2  # the index view, then one _all_docs


def test_rekey_and_privacy_changes_refresh_the_copies_on_the_residents_devices(demo_loaded: Couch,
                                                                             firewall: Firewall) -> None:
    device = next(d for d in demo.generate(size=DEMO_SIZE) if d["type"] == "device")
    resident = demo_loaded.main.get(device["resident"])
    public, version = firewall.keystore.write_public_key(resident["_id"])
    stored = demo_loaded.main.get(device["_id"])
    demo_loaded.main.save({**stored, "write_public": b64url(public), "write_key_version": version,
                           "utility_alerts": "grid_staff"})  # as `linli device register` leaves it
    firewall.rekey(resident["_id"])
    refreshed = demo_loaded.main.get(device["_id"])
    assert refreshed["write_key_version"] == version + 1 and refreshed["write_public"] != b64url(public)
    owner = Principal("user:r", frozenset({"resident"}), demo.STREET_ID, resident=resident["_id"])
    firewall.set_privacy(owner, resident, {"utility_alerts": "grid_worker_only"}, NOW)
    assert demo_loaded.main.get(device["_id"])["utility_alerts"] == "grid_worker_only"
