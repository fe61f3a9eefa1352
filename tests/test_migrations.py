"""Migrations (issue 20 item 4): documents carry their declaration version, the server writes current ones, the
sync gateway judges and upgrades an older phone's, and `linli migrate` upgrades what is stored, in batches,
resumable, with a dry run; the secrets earlier versions kept in the clear (venue_code, ledger_lock) stripped and
compacted away; vouchers and redemptions from before their QR drawing and holder were kept, filled. The migration shown
through: service_request 1 → 2, `source` always written."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from typing import Any

import httpx2
import pycouchdb
import pytest

from server.domain import migrations
from server.domain import points as points_rules
from server.domain import pool as pool_rules
from server.domain.declaration import DOC_TYPES, VERSION_FIELD, ValidationError, validate
from server.security.keystore import KeyStore
from server.services import migrate, pool, qr_drawing
from server.store.config import Settings
from server.store.couch import Couch, bulk_save, get_or_none
from server.store.embedded_couch import EmbeddedCouch
from tests.sync_harness import Street, login, recently, shared_street_fixture  # noqa: F401 - the fixture: one street
from tests.test_master_key import key_env, run

STREET, C1, G1 = "street:s1", "community:c1", "grid:c1-g1"


def old_request(n: int, **extra: Any) -> dict[str, Any]:
    """A service request as an offline app wrote it before version 2: no `source`, no version."""
    return {"_id": f"service_request:m{n:03d}", "type": "service_request", "street": STREET, "community": C1,
            "grid": G1, "category": "road", "description": f"路灯坏了 {n}", "status": "received",
            "created_by": "user:wangge01", "created_at": "2026-11-20T09:00:00+08:00", **extra}


def store_as_before(couch: Couch, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored as an older server stored them: pycouchdb's own write, without the upgrade couch.Database adds."""
    return pycouchdb.client.Database.save_bulk(couch.main, docs)


# ---------------------------------------------------------------- the migrations, pure

def test_the_request_migration_writes_source_and_the_version_and_nothing_else() -> None:
    old = old_request(1)
    kept = copy.deepcopy(old)
    new = migrations.upgrade(old)
    assert old == kept  # pure: the document read is left as it was
    assert new == {**old, "source": "offline", VERSION_FIELD: 2}
    assert migrations.changed_fields(old, new) == ["schema_version", "source"]
    assert migrations.upgrade(new) is new  # current: nothing to do, applied twice changes nothing
    web = migrations.upgrade(old_request(2, source="open311"))
    assert web["source"] == "open311" and web[VERSION_FIELD] == 2  # a source written is kept
    validate(new)
    household = {"_id": "household:h1", "type": "household", "street": STREET, "community": C1, "grid": G1,
                 "address": "幸福路1号"}
    assert migrations.upgrade(household) is household  # a type at version 1 carries no version


def test_every_type_past_version_1_has_a_migration_from_each_older_version() -> None:
    for name, doc_type in DOC_TYPES.items():
        for version in range(1, doc_type.version):
            assert (name, version) in migrations.MIGRATIONS, name
    assert DOC_TYPES["service_request"].version == 2


@pytest.mark.parametrize("version", [3, 99, 0, "2", True, 2.0])
def test_a_version_the_server_does_not_know_is_refused(version: object) -> None:
    doc = {**migrations.upgrade(old_request(1)), VERSION_FIELD: version}
    with pytest.raises(ValidationError) as refused:
        validate(doc)
    assert [(e.field, e.key, e.params) for e in refused.value.errors] == [
        (VERSION_FIELD, "err_version_newer", {"known": 2})]
    assert "upgrade the server" in str(refused.value)
    assert migrations.upgrade(doc) is doc  # nothing upgrades what is no older version


# ---------------------------------------------------------------- the server writes current documents

def test_whatever_the_server_writes_is_at_the_current_version(couch: Couch) -> None:
    saved = couch.main.save(old_request(1))
    bulk_save(couch.main, [old_request(2)])
    couch.main.save_bulk([old_request(3)])
    for n in (1, 2, 3):
        stored = couch.main.get(f"service_request:m{n:03d}")
        assert stored["source"] == "offline" and stored[VERSION_FIELD] == 2, n
    assert saved[VERSION_FIELD] == 2  # what the caller gets back is what was stored
    couch.main.save({"_id": "household:h1", "type": "household", "street": STREET, "community": C1, "grid": G1,
                     "address": "幸福路1号"})
    assert VERSION_FIELD not in couch.main.get("household:h1")


# ---------------------------------------------------------------- linli migrate

def _versions(couch: Couch) -> dict[str, tuple[int, str]]:
    rows = couch.main.all(startkey="service_request:", endkey="service_request:\ufff0", as_list=True)
    return {r["id"]: (migrations.version_of(r["doc"]), r["doc"]["_rev"]) for r in rows}


def test_a_dry_run_lists_what_it_would_change_and_writes_nothing(couch: Couch, couch_server: EmbeddedCouch,
                                                                  settings: Settings) -> None:
    voucher = next(d for d in _old_rewards("2026-11-20T09:00:00+08:00")[0] if d["type"] == "voucher")
    store_as_before(couch, [old_request(n) for n in range(3)] + [old_request(3, source="web"), voucher])
    before = _versions(couch)
    dry = run(settings, couch_server.url, "migrate", "--dry-run", **key_env(*settings.master_keys))
    assert dry.returncode == 0, dry.stderr
    assert "service_request:m000: version 1 → 2: schema_version, source" in dry.stdout
    assert "service_request:m003: version 1 → 2: schema_version\n" in dry.stdout  # its source was written
    assert f"{voucher['_id']}: version 1, filled: qr_path, qr_size\n" in dry.stdout  # a fill keeps the version
    # Every type read is named (other types' versions go up too: ledger_lock, redemption), only these are here.
    assert re.search(r"\n5 documents of [a-z_, ]*\bservice_request\b[a-z_, ]* read; would upgrade 5\.\n", dry.stdout)
    assert "qr_path" not in couch.main.get(voucher["_id"])
    assert _versions(couch) == before and get_or_none(couch.main, migrate.CHECKPOINT_ID) is None
    done = run(settings, couch_server.url, "migrate", "--batch", "3", **key_env(*settings.master_keys))
    assert done.returncode == 0 and "upgraded 5." in done.stdout, done.stderr
    assert all(version == 2 for version, _ in _versions(couch).values())
    assert couch.main.get("service_request:m003")["source"] == "web"


class Killed(Exception):
    pass


def test_a_run_killed_between_a_batch_and_its_checkpoint_resumes_without_doing_anything_twice(couch: Couch) -> None:
    store_as_before(couch, [old_request(n) for n in range(25)])
    edited_meanwhile = "service_request:m022"

    def kill_after_second_batch(_type: str, read: int) -> None:
        if read == 10:  # meanwhile a phone's older app edits a document not read yet
            doc = couch.main.get(edited_meanwhile)
            store_as_before(couch, [{**doc, "description": "路灯又坏了"}])
        if read == 20:  # the second batch is written, its checkpoint is not
            raise Killed

    with pytest.raises(Killed):
        migrate.migrate(couch, batch=10, progress=kill_after_second_batch)
    written = _versions(couch)
    assert [i for i, (v, _) in written.items() if v == 2] == [f"service_request:m{n:03d}" for n in range(20)]
    assert get_or_none(couch.main, migrate.CHECKPOINT_ID)["after"] == "service_request:m009"

    resumed = migrate.migrate(couch, batch=10)
    assert resumed.resumed_after == "service_request:m009"
    assert resumed.read == 15  # from the checkpoint: the second batch read again, the first not
    assert [c.doc_id for c in resumed.changes] == [f"service_request:m{n:03d}" for n in range(20, 25)]
    after = _versions(couch)
    for doc_id, (version, rev) in after.items():
        assert version == 2
        # each upgraded exactly once: one revision on what was stored (two for the one edited meanwhile)
        assert rev.startswith("3-" if doc_id == edited_meanwhile else "2-"), (doc_id, rev)
    assert couch.main.get(edited_meanwhile)["description"] == "路灯又坏了"  # the edit kept
    assert get_or_none(couch.main, migrate.CHECKPOINT_ID) is None  # done: the next run looks at everything
    assert migrate.migrate(couch).changes == []


def test_an_edit_made_between_the_read_and_the_write_is_upgraded_not_lost(couch: Couch) -> None:
    read = store_as_before(couch, [old_request(1)])[0]
    store_as_before(couch, [{**read, "description": "改过的描述"}])  # a page or phone wrote after it was read
    assert migrate._write(couch.main, [read]) == []
    stored = couch.main.get(read["_id"])
    assert stored["description"] == "改过的描述" and stored[VERSION_FIELD] == 2 and stored["_rev"].startswith("3-")


# ---------------------------------------------------------------- secrets once kept in the clear (accounts database)

def test_linli_migrate_strips_the_secrets_kept_in_the_clear_and_compacts_them_away(couch: Couch,
                                                                                  keys: KeyStore) -> None:
    """A venue's check-in codes' secret (venue_code 1) and a resident's confirmation codes' secret (ledger_lock 1),
    as earlier versions stored them in the accounts database: `linli migrate` upgrades both (it read only the main
    database before), the revisions that held them are compacted away, and the venue's resource, whose code hashes
    were made from the old secret, gets today's code from the new one at the codes' next renewal."""
    now = dt.datetime.now(pool_rules.LOCAL)
    old_secret = "venue secret kept in the clear"
    resource = {"_id": "resource:migrated", "type": "resource", "street": STREET, "community": C1, "name": "活动室",
                "kind": "room", "owner_kind": "community", "place": "二楼", "capacity": 10,
                "open_hours": [{"weekday": d, "opens": 8, "closes": 20} for d in range(7)],
                "who_may_book": ["volunteer"], "book_ahead_days": 7, "max_hours": 2, "approval": False,
                "grace_minutes": 15, "code_hashes": pool_rules.code_hashes(old_secret, now.date()),
                "created_by": "user:shuji1", "created_at": now.isoformat()}
    venue = {"_id": "venue_code:migrated", "type": "venue_code", "street": STREET, "community": C1,
             "resource": resource["_id"], "secret": old_secret, "created_at": now.isoformat()}
    lock = {"_id": "ledger_lock:resident:r1", "type": "ledger_lock", "account": "resident:r1", "seq": 0,
            "secret": "ab" * 32, "codes_from": 1, "codes_used": []}
    couch.main.save(resource)
    before = pycouchdb.client.Database.save_bulk(couch.accounts, [venue, lock])  # as an earlier version stored them
    assert "secret" in json.dumps(couch.accounts.get(venue["_id"]))

    report = migrate.migrate(couch)
    assert {c.doc_id for c in report.changes} >= {venue["_id"], lock["_id"]} and report.left == []
    assert "accounts" in report.compacted
    stored = couch.accounts.get(lock["_id"])
    assert "secret" not in stored and stored[VERSION_FIELD] == 2, stored
    assert {k: v for k, v in stored.items() if k not in ("_rev", VERSION_FIELD)} == {
        k: v for k, v in lock.items() if k != "secret"}  # nothing else changed
    # The venue's record had nothing left but a husk (1 → 2 → 3): deleted, in a database no phone replicates.
    assert get_or_none(couch.accounts, venue["_id"]) is None
    assert migrate.migrate(couch).changes == []  # and a run after finds nothing left to do
    for doc, read in zip((venue, lock), before, strict=True):
        old = httpx2.get(f"{couch.url}{couch.accounts.name}/{doc['_id']}", params={"rev": read["_rev"]}, timeout=30)
        assert old.status_code == 404 or doc["secret"] not in old.text  # compacted: the old body is gone
    dump = json.dumps([r["doc"] for r in couch.accounts.all(as_list=True)])
    assert old_secret not in dump and "ab" * 32 not in dump

    code = pool.venue_code(keys, resource["_id"], now)  # what the keeper's page shows now: from the new secret
    assert not pool_rules.code_matches(couch.main.get(resource["_id"]), now.date().isoformat(), code)
    assert pool.renew_codes(couch, keys, now) == 1  # the minute clock's part: the hashes lack today's code
    assert pool_rules.code_matches(couch.main.get(resource["_id"]), now.date().isoformat(), code)
    assert pool.renew_codes(couch, keys, now) == 0  # once


# ---------------------------------------------------------------- a phone holding older documents still syncs

def test_a_phone_with_an_older_app_still_syncs_and_gets_the_upgrade(street: Street) -> None:
    """A real PouchDB phone through `linli serve`'s gateway. The rule: a replicated document of an older version is
    judged as its upgrade and stored as the phone sent it (its revision is the phone's), then the server's upgrade
    follows as the next revision, which the phone pulls; one of a version newer than the server's is refused."""
    # Stored before version 2, and taken in then (deadlines set: the request sweep leaves it alone).
    store_as_before(street.couch, [old_request(1, created_at=recently(), due_respond="2099-01-01T09:00:00+08:00",
                                               due_close="2099-01-02T09:00:00+08:00")])
    phone = street.phone("wangge01")
    try:
        phone.call("pull")
        held = phone.call("get", id="service_request:m001")
        assert VERSION_FIELD not in held and "source" not in held
        phone.call("put", doc={**held, "description": "路灯坏了，已报修"})  # the old app's edit, offline
        phone.call("put", doc=old_request(2, created_at=recently()))  # and a new request, as the old app writes it
        phone.call("put", doc={**old_request(3, created_at=recently()), "source": "offline", VERSION_FIELD: 3})
        pushed = phone.call("push")
        assert pushed["docs_written"] == 2 and pushed["doc_write_failures"] == 1
        [newer] = pushed["errors"]
        assert newer["id"] == "service_request:m003" and newer["errors"] == [
            {"field": VERSION_FIELD, "key": "err_version_newer", "params": {"known": 2}}]
        for n in (1, 2):  # (the request sweep may take the new one in meanwhile: one more revision, no conflict)
            stored = street.couch.main.get(f"service_request:m{n:03d}", conflicts="true")
            assert stored[VERSION_FIELD] == 2 and stored["source"] == "offline", stored
            assert "_conflicts" not in stored
        assert street.couch.main.get("service_request:m001")["description"] == "路灯坏了，已报修"  # the edit kept
        phone.call("pull")
        for n in (1, 2):
            assert phone.call("get", id=f"service_request:m{n:03d}")[VERSION_FIELD] == 2
        assert get_or_none(street.couch.main, "service_request:m003") is None
    finally:
        phone.close()


# ---------------------------------------------------------------- fills: what the QR encoder or another document tells

def _old_rewards(at: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """A volunteer's two vouchers as the server stored them before it kept their QR drawing (one used, its
    redemption from before redemptions named the holder), and a redemption whose voucher is not stored."""
    place = {"street": STREET, "community": C1}
    shop, reward, holder = "organisation:old-shop", "reward:old-shape", "user:zhiyuan01"
    unused, used = points_rules.voucher_id(reward, 1), points_rules.voucher_id(reward, 2)
    docs: list[dict[str, Any]] = [
        {"_id": shop, "type": "organisation", **place, "name": "老店", "kind": "firm"},
        {"_id": reward, "type": "reward", **place, "organisation": shop, "name": "理发", "kind": "service",
         "points": 30, "stock": 5, "active": True, "created_by": "user:shuji1", "created_at": at},
        {"_id": "transfer:mint:old-shape", "type": "transfer", **place, "ledger": "points", "from_account": C1,
         "to_account": holder, "amount": 60, "kind": "mint", "created_by": "user:shuji1", "created_at": at}]
    for voucher in (unused, used):
        debit = points_rules.spend_id(voucher)
        docs += [{"_id": debit, "type": "transfer", **place, "ledger": "points", "from_account": holder,
                  "to_account": shop, "amount": 30, "kind": "redemption", "created_by": holder, "created_at": at},
                 {"_id": voucher, "type": "voucher", **place, "reward": reward, "organisation": shop, "holder": holder,
                  "points": 30, "transfer": debit, "code": f"LV1.old-shape.{voucher}", "created_by": holder,
                  "created_at": at}]
    gone = "voucher:gone:00001"
    docs += [{"_id": points_rules.redemption_id(voucher), "type": "redemption", **place, "voucher": voucher,
              "reward": reward, "organisation": shop, "created_by": "user:old-shop-staff", "created_at": at}
             for voucher in (used, gone)]
    return docs, {"unused": unused, "used": used, "redemption": points_rules.redemption_id(used),
                  "orphan": points_rules.redemption_id(gone)}


def test_old_vouchers_get_their_qr_drawing_and_old_redemptions_their_holder(street: Street) -> None:
    """On a street with documents of the old shape: `linli migrate` draws the vouchers' QR codes (the holder's
    /rewards shows the unused one's, and their phone's replica, which the offline /rewards draws from, holds it) and
    names the holder on the redemption (so the use reaches their phone); a redemption whose voucher is not stored
    keeps none (not guessed); a second run writes nothing."""
    docs, ids = _old_rewards(recently())
    store_as_before(street.couch, docs)
    drawn = {v: qr_drawing.draw(street.couch.main.get(v)["code"]) for v in (ids["unused"], ids["used"])}
    qr_on_page = f'<path d="{drawn[ids["unused"]]["qr_path"]}"'
    cookie, _ = login(street.served.url, "zhiyuan01")

    def rewards_page() -> str:
        page = httpx2.get(f"{street.served.url}rewards", headers={"cookie": cookie}, timeout=60)
        assert page.status_code == 200 and f'data-voucher="{ids["unused"]}"' in page.text
        return page.text

    assert qr_on_page not in rewards_page()  # nothing draws it at render any more
    phone = street.phone("zhiyuan01")
    try:
        phone.call("pull")
        assert "qr_path" not in phone.call("get", id=ids["unused"]) and ids["redemption"] not in phone.ids()

        report = migrate.migrate(street.couch)
        changed = {c.doc_id: c for c in report.changes}
        assert report.left == [] and set(changed) >= {ids["unused"], ids["used"], ids["redemption"]}
        assert changed[ids["unused"]].fields == ["qr_path", "qr_size"] and changed[ids["unused"]].to_version == 1
        assert changed[ids["redemption"]].fields == ["holder", VERSION_FIELD]
        for voucher, drawing in drawn.items():
            stored = street.couch.main.get(voucher)
            assert {k: stored.get(k) for k in drawing} == drawing and VERSION_FIELD not in stored
        assert street.couch.main.get(ids["redemption"])["holder"] == "user:zhiyuan01"
        orphan = street.couch.main.get(ids["orphan"])
        assert "holder" not in orphan and orphan[VERSION_FIELD] == 2  # upgraded; whose it was is not guessed
        assert report.unfilled == [f"{ids['orphan']}: holder"]  # and said so, so that an operator knows
        assert qr_on_page in rewards_page()

        phone.call("pull")
        held = phone.call("get", id=ids["unused"])
        assert {k: held.get(k) for k in drawn[ids["unused"]]} == drawn[ids["unused"]]
        used = phone.call("get", id=ids["redemption"]) if ids["redemption"] in phone.ids() else {}
        assert used.get("holder") == "user:zhiyuan01"  # the use reached their phone
    finally:
        phone.close()
    revisions = {d["_id"]: street.couch.main.get(d["_id"])["_rev"] for d in docs}
    assert migrate.migrate(street.couch).changes == []  # nothing left to fill: a second run writes nothing
    assert {i: street.couch.main.get(i)["_rev"] for i in revisions} == revisions
