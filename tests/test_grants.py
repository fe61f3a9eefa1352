"""Keys for phones on the demo street: a phone opens exactly its user's residents, and reports openings made offline.
The grant rules one by one (approvals, expiry, privacy, rotation, revocation, filing): test_grant_rules.py."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from crypto.envelope import DataKey, FieldContext, b64url
from crypto.keys import KeyMaterialError, unwrap_on_phone
from server.domain.access import may_see
from server.security import filing, grants
from server.security.firewall import Firewall
from server.services import demo
from server.store.couch import Couch, bulk_save, docs_of_type, ids_of_type
from server.store.queries import refusal_to_store

from .test_firewall import NOW, OTHER_WORKER, SECRETARY, WORKER, _plain, _resident_with


def phone() -> tuple[ec.EllipticCurvePrivateKey, str]:
    private = ec.generate_private_key(ec.SECP256R1())
    raw = private.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return private, b64url(raw)


def open_on_phone(private: ec.EllipticCurvePrivateKey, grant: dict, doc: dict, field: str, tier: str) -> object:
    key = DataKey(unwrap_on_phone(private, grant["_id"], grant), grant["key_version"])
    return key.open(FieldContext(doc["_id"], field, tier), doc[field])


def test_a_phone_gets_exactly_the_keys_its_user_may_use(demo_loaded: Couch, firewall: Firewall) -> None:
    user = demo_loaded.accounts.get(WORKER.user_id)
    private, public = phone()
    phone_key = grants.register_phone(demo_loaded, user, public, "wangge01 phone", NOW)
    issued, deleted = grants.sync_user(firewall, user, NOW)
    residents = [d for d in demo.generate(size=demo.DemoSize(2, 2, 8)) if d["type"] == "resident"
                 and d["grid"] == "grid:c1-g01"]
    # One contact key per resident of the grid, no core key, and no blind-index key (issue 13, finding 4).
    assert (issued, deleted) == (len(residents), 0)
    assert ids_of_type(demo_loaded.main, "index_grant") == []
    resident = _resident_with(demo_loaded, "phone")
    grant = demo_loaded.main.get(grants.grant_id(phone_key["_id"], resident["_id"], "contact"))
    assert open_on_phone(private, grant, resident, "phone", "contact") == _plain(resident["_id"])["phone"]
    assert may_see(WORKER, grant) and not may_see(OTHER_WORKER, grant) and not may_see(SECRETARY, grant)
    other_private, _ = phone()
    with pytest.raises(KeyMaterialError, match="wrapped key does not unwrap"):  # another phone's private key: nothing
        open_on_phone(other_private, grant, resident, "phone", "contact")
    assert grants.sync_user(firewall, user, NOW) == (0, 0)  # nothing changed, nothing rewritten


def test_a_phones_grants_are_issued_without_reading_any_residents_sealed_record(demo_loaded: Couch,
                                                                                firewall: Firewall) -> None:
    """Entitlement needs a resident's place, not their record: what the database answered while the grants were
    issued (every response, as the server read it) holds no sealed value of any resident."""
    user = demo_loaded.accounts.get(WORKER.user_id)
    grants.register_phone(demo_loaded, user, phone()[1], "", NOW)
    answered: list[bytes] = []
    hooks = demo_loaded.main.resource.session.hooks["response"]
    hooks.append(lambda response, *args, **kwargs: answered.append(response.content))
    try:
        issued, _ = grants.sync_user(firewall, user, NOW)
    finally:
        hooks.pop()
    sealed = [value.encode() for r in docs_of_type(demo_loaded.main, "resident") if r["grid"] == "grid:c1-g01"
              for value in r.values() if isinstance(value, str) and value.startswith("enc:")]
    assert issued > 0 and sealed and answered
    assert not [value for value in sealed if any(value in body for body in answered)]


def test_openings_on_an_offline_phone_are_filed_when_it_reports_them(demo_loaded: Couch, firewall: Firewall) -> None:
    user = demo_loaded.accounts.get(WORKER.user_id)
    # Registered before the opening it reports: a report dated before its phone key existed is refused.
    phone_key = grants.register_phone(demo_loaded, user, phone()[1], "", NOW - dt.timedelta(hours=1))
    resident = _resident_with(demo_loaded, "phone")
    report = {"_id": "access_report:r1", "type": "access_report", **{k: resident[k] for k in (
        "street", "community", "grid", "household")}, "resident": resident["_id"], "fields": ["phone"],
        "purpose": "routine_visit", "at": "2026-11-25T09:30:00+00:00", "phone_key": phone_key["_id"],
        "created_by": WORKER.user_id, "created_at": NOW.isoformat()}
    assert refusal_to_store(demo_loaded, WORKER, None, report, NOW) is None
    other = {**report, "created_by": OTHER_WORKER.user_id}
    assert refusal_to_store(demo_loaded, OTHER_WORKER, None, other, NOW) is not None
    forged = {**report, "_id": "audit_entry:c1:000000000001", "type": "audit_entry"}
    assert refusal_to_store(demo_loaded, WORKER, None, forged, NOW) is not None  # the log itself is the server's
    demo_loaded.main.save(report)
    assert filing.file_reports(demo_loaded, firewall.signer) == 1
    entry = demo_loaded.main.get(filing.entry_id("community:c1", 1))
    assert (entry["action"], entry["actor"], entry["device"]) == ("open_offline", WORKER.user_id, phone_key["_id"])
    assert entry["at"] == "2026-11-25T09:30:00+00:00"
    assert demo_loaded.main.all(startkey="access_report:", endkey="access_report:\ufff0", as_list=True) == []
    assert filing.verify(demo_loaded, firewall.signer, "community:c1").ok


def test_reports_are_filed_once_however_many_processes_sweep_at_once(demo_loaded: Couch, firewall: Firewall) -> None:
    """Issue 24: two processes running the minute sweep in the same second each filed the same reports (150 reports
    became 192 entries). Now each report is claimed by one of them; a claim of a process that died lapses.
    (The two processes take turns on one list read before either filed: the race, without threads. A claim
    written on a stale revision crashed pouchdb-server here, where CouchDB answers 409: file_report reads the
    report again before it claims it, and treats a 409 the same.)"""
    user = demo_loaded.accounts.get(WORKER.user_id)
    phone_key = grants.register_phone(demo_loaded, user, phone()[1], "", NOW - dt.timedelta(hours=1))
    resident = _resident_with(demo_loaded, "phone")
    reports = [{"_id": f"access_report:many{n}", "type": "access_report", **{k: resident[k] for k in (
        "street", "community", "grid", "household")}, "resident": resident["_id"], "fields": ["phone"],
        "purpose": "routine_visit", "at": f"2026-11-25T09:{n:02d}:00+00:00", "phone_key": phone_key["_id"],
        "created_by": WORKER.user_id, "created_at": NOW.isoformat()} for n in range(12)]
    stale = {**reports.pop(), "filing_claimed_at": (NOW - filing.CLAIM_LAPSES * 2).isoformat()}  # its filer died
    fresh = {**reports.pop(), "filing_claimed_at": NOW.isoformat()}  # another process is filing it right now
    assert not [r for r in bulk_save(demo_loaded.main, [*reports, stale, fresh]) if r.error]
    read_by_b = docs_of_type(demo_loaded.main, "access_report")  # process B reads the reports …
    assert filing.file_reports(demo_loaded, firewall.signer, NOW) == len(reports) + 1  # … A files them …
    assert not any(filing.file_report(demo_loaded, firewall.signer, r, NOW) for r in read_by_b)  # … B: none again
    entries = list(filing.iter_entries(demo_loaded, "community:c1"))
    assert sorted(e["at"] for e in entries) == sorted([r["at"] for r in reports] + [stale["at"]])
    assert filing.verify(demo_loaded, firewall.signer, "community:c1").ok
    assert demo_loaded.main.get(fresh["_id"])["filing_claimed_at"] == fresh["filing_claimed_at"]  # left to its filer
    # A process that claimed a report, filed it and died before deleting it (killed mid-sweep, issue 24 item 3).
    head = max(e["seq"] for e in entries)
    died = demo_loaded.main.save({**reports[0], "_id": "access_report:died", "at": "2026-11-25T10:00:00+00:00",
                                  "filing_claimed_at": NOW.isoformat(), "filing_from_seq": head})
    filing.append(demo_loaded, firewall.signer, street=died["street"], community=died["community"],
                  actor=died["created_by"], action="open_offline", target=died["resident"], fields=died["fields"],
                  purpose=died["purpose"], device=died["phone_key"], at=dt.datetime.fromisoformat(died["at"]),
                  report=died["_id"])
    assert filing.file_reports(demo_loaded, firewall.signer, NOW + filing.CLAIM_LAPSES * 2) == 1  # the fresh one's
    assert [e["at"] for e in filing.iter_entries(demo_loaded, "community:c1")].count(died["at"]) == 1  # not twice
    assert docs_of_type(demo_loaded.main, "access_report") == []




def test_a_grant_is_named_for_its_phone_resident_and_tier_under_its_users_prefix() -> None:
    """grants_of finds a user's grants by the prefix key_grant:<user>. — the phone key's id carries the user."""
    grant = grants.grant_id("phone_key:wangge01.3f2a", "resident:c1-g01-0001-1", "core")
    assert grant == "key_grant:wangge01.3f2a:c1-g01-0001-1:core"
    assert grants.key_item("resident:c1-g01-0001-1", "contact") == "resident:c1-g01-0001-1/contact"


def test_withdrawing_a_grant_deletes_every_revision_of_it() -> None:
    """Two processes issuing one grant at once leave two revisions: deleting only the winner would revive the other."""
    grant = {"_id": "key_grant:wangge01.3f2a:c1-g01-0001-1:core", "_rev": "2-a", "_conflicts": ["2-b", "2-c"],
             "type": "key_grant", "street": "street:s1", "grid": "grid:c1-g01", "user": WORKER.user_id,
             "wrapped": "secret"}
    withdrawn = grants._withdrawals(grant)
    assert [(d["_id"], d["_rev"], d["_deleted"]) for d in withdrawn] == [(grant["_id"], rev, True)
                                                                        for rev in ("2-a", "2-b", "2-c")]
    assert all(d["user"] == WORKER.user_id and "wrapped" not in d for d in withdrawn)  # routed, key material gone
    assert [d["_rev"] for d in grants._withdrawals({**grant, "_conflicts": []})] == ["2-a"]


def test_only_grid_work_puts_keys_on_a_phone() -> None:
    assert grants.phones_carry_keys(WORKER) and not grants.phones_carry_keys(SECRETARY)
