"""The filing log: appends chain, a verifier proves it intact or names the first broken entry."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from crypto import filing_log, keys
from server.security import filing
from server.security.filing_anchor import HeadAnchor
from server.store.config import Settings
from server.store.couch import Couch

COMMUNITY = "community:c1"
KEY = filing_log.signing_key(bytes(range(32)))
AT = dt.datetime(2025, 3, 1, 9, 30, tzinfo=dt.UTC)


@pytest.fixture
def signer(settings: Settings) -> filing.Signer:
    """The signing key and the anchor file in the test's data folder (as `linli` commands find it)."""
    return filing.Signer(KEY, HeadAnchor(settings.data_dir))


def file_access(couch: Couch, signer: filing.Signer, n: int, actor: str = "user:wangge01") -> None:
    for i in range(n):
        filing.append(couch, signer, street="street:s1", community=COMMUNITY, actor=actor, action="decrypt",
                      target=f"resident:c1-g01-{i:04d}-1", fields=["phone"], purpose="入户走访", device="phone-1",
                      at=AT + dt.timedelta(minutes=i))


def entry(couch: Couch, seq: int) -> dict:
    return couch.main.get(filing.entry_id(COMMUNITY, seq))


def test_an_untouched_log_is_intact(couch: Couch, signer: filing.Signer) -> None:
    file_access(couch, signer, 5)
    filing.checkpoint(couch, signer, "street:s1", COMMUNITY, AT)
    result = filing.verify(couch, signer, COMMUNITY)
    assert result.ok and result.entries == 5 and result.checkpoints == 1
    assert entry(couch, 2)["prev_hash"] == entry(couch, 1)["hash"]
    assert entry(couch, 1)["prev_hash"] == filing_log.GENESIS


def test_an_altered_entry_is_named(couch: Couch, signer: filing.Signer) -> None:
    file_access(couch, signer, 5)
    doc = entry(couch, 3)
    couch.main.save({**doc, "purpose": "好奇"})
    result = filing.verify(couch, signer, COMMUNITY)
    assert not result.ok and result.first_broken_seq == 3 and "altered" in result.problem


def test_a_deleted_entry_is_named(couch: Couch, signer: filing.Signer) -> None:
    file_access(couch, signer, 5)
    couch.main.delete(entry(couch, 2))
    result = filing.verify(couch, signer, COMMUNITY)
    assert not result.ok and result.first_broken_seq == 2 and "missing" in result.problem


def test_a_consistently_rewritten_chain_is_caught_by_the_signed_checkpoint(couch: Couch, signer: filing.Signer) -> None:
    file_access(couch, signer, 4)
    filing.checkpoint(couch, signer, "street:s1", COMMUNITY, AT)
    # An operator rewrites entry 3 and re-hashes everything after it: the chain itself looks fine …
    previous = entry(couch, 2)["hash"]
    for seq in (3, 4):
        doc = entry(couch, seq)
        doc.update(prev_hash=previous, actor="user:someone_else" if seq == 3 else doc["actor"])
        doc["hash"] = previous = filing_log.entry_hash(doc)
        couch.main.save(doc)
    result = filing.verify(couch, signer, COMMUNITY)
    assert not result.ok and result.first_broken_seq == 4 and "signed checkpoint" in result.problem


def test_truncation_before_a_checkpoint_is_caught(couch: Couch, signer: filing.Signer) -> None:
    file_access(couch, signer, 3)
    filing.checkpoint(couch, signer, "street:s1", COMMUNITY, AT)
    couch.main.delete(entry(couch, 3))
    result = filing.verify(couch, signer, COMMUNITY)
    assert not result.ok and "truncated" in result.problem


def test_a_forged_checkpoint_is_caught(couch: Couch, signer: filing.Signer) -> None:
    file_access(couch, signer, 2)
    forger = filing_log.signing_key(bytes(32))  # not the master key
    last = entry(couch, 2)
    couch.main.save({"_id": filing.checkpoint_id(COMMUNITY, 2), "type": "audit_checkpoint", "street": "street:s1",
                     "community": COMMUNITY, "seq": 2, "hash": last["hash"], "at": AT.isoformat(),
                     "signature": filing_log.sign_checkpoint(forger, COMMUNITY, 2, last["hash"])})
    result = filing.verify(couch, signer, COMMUNITY)
    assert not result.ok and "signature" in result.problem


def test_checkpoints_are_signed_automatically(couch: Couch, signer: filing.Signer,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filing_log, "CHECKPOINT_EVERY", 3)
    file_access(couch, signer, 7)
    assert filing.verify(couch, signer, COMMUNITY).checkpoints == 2


def test_concurrent_appends_keep_one_unbroken_chain(couch: Couch, signer: filing.Signer) -> None:
    errors: list[Exception] = []

    def worker(actor: str) -> None:
        try:
            file_access(couch, signer, 10, actor)
        except Exception as error:  # surfaced below; a thread's exception would otherwise vanish
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(f"user:w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    result = filing.verify(couch, signer, COMMUNITY)
    assert result.ok and result.entries == 30 and result.anchored == 30  # the anchor never moved back


# ---------------------------------------------------------------- truncation (issue 13, finding 7)

def _delete(couch: Couch, doc_ids: list[str]) -> None:
    for doc_id in doc_ids:
        couch.main.delete(couch.main.get(doc_id))


def _database_alone(couch: Couch, signer: filing.Signer) -> filing_log.Verdict:
    """What verify said before the head was anchored outside the database."""
    return filing_log.verify(COMMUNITY, filing.iter_entries(couch, COMMUNITY), filing._checkpoints(couch, COMMUNITY),
                             signer.key.public_key())


def test_cutting_the_newest_checkpoint_and_the_entries_after_an_older_one_is_caught(
        couch: Couch, signer: filing.Signer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filing_log, "CHECKPOINT_EVERY", 3)
    file_access(couch, signer, 8)  # checkpoints at 3 and 6
    _delete(couch, [filing.checkpoint_id(COMMUNITY, 6), *(filing.entry_id(COMMUNITY, seq) for seq in range(4, 9))])
    assert _database_alone(couch, signer).ok  # the attack as found: the shorter chain verified as intact
    result = filing.verify(couch, signer, COMMUNITY)
    assert not result.ok and result.first_broken_seq == 4
    assert result.problem == ("entries up to 8, the head kept outside the database, are missing "
                              "(log truncated after entry 3)")


def test_cutting_entries_after_the_last_checkpoint_is_caught(couch: Couch, signer: filing.Signer,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filing_log, "CHECKPOINT_EVERY", 3)
    file_access(couch, signer, 5)
    _delete(couch, [filing.entry_id(COMMUNITY, 5)])
    assert _database_alone(couch, signer).ok
    assert "log truncated after entry 4" in filing.verify(couch, signer, COMMUNITY).problem


def test_a_deleted_community_log_is_named(couch: Couch, signer: filing.Signer) -> None:
    file_access(couch, signer, 4)
    filing.checkpoint(couch, signer, "street:s1", COMMUNITY, AT)
    _delete(couch, [filing.checkpoint_id(COMMUNITY, 4), *(filing.entry_id(COMMUNITY, seq) for seq in range(1, 5))])
    assert _database_alone(couch, signer).ok
    assert COMMUNITY in filing.communities(couch, signer)  # named though no document of it is left here
    result = filing.verify(couch, signer, COMMUNITY)
    assert not result.ok and "the whole log is missing" in result.problem and "entry 4" in result.problem


def test_a_rewritten_head_is_caught_even_without_a_checkpoint(couch: Couch, signer: filing.Signer) -> None:
    file_access(couch, signer, 3)
    doc = entry(couch, 3)
    doc["purpose"] = "好奇"
    doc["hash"] = filing_log.entry_hash(doc)  # a consistent chain, and no checkpoint to compare it with
    couch.main.save(doc)
    assert _database_alone(couch, signer).ok
    assert "differs from the head kept outside the database" in filing.verify(couch, signer, COMMUNITY).problem


def test_a_rolled_back_anchor_is_noted_and_a_forged_one_refused(couch: Couch, signer: filing.Signer) -> None:
    file_access(couch, signer, 2)
    older = signer.anchor.path.read_bytes()
    file_access(couch, signer, 3)
    signer.anchor.path.write_bytes(older)  # someone on the host puts back the anchor of two entries ago
    result = filing.verify(couch, signer, COMMUNITY)
    assert result.ok and result.anchored == 2 and "rolled back" in result.note
    forger = filing.Signer(filing_log.signing_key(bytes(32)), signer.anchor)
    forger.anchor.advance(forger.key, COMMUNITY, 9, "f" * 64, AT.isoformat())
    assert "anchor file was forged" in filing.verify(couch, signer, COMMUNITY).problem


def test_a_published_head_catches_a_log_and_anchor_rolled_back_together(couch: Couch,
                                                                          signer: filing.Signer) -> None:
    file_access(couch, signer, 3)
    older = signer.anchor.path.read_bytes()
    file_access(couch, signer, 2)
    published = signer.anchor.heads()[COMMUNITY]  # as the month's audit report shows it
    # Someone who can write both the database and the data folder puts both back to three entries.
    _delete(couch, [filing.entry_id(COMMUNITY, seq) for seq in (4, 5)])
    signer.anchor.path.write_bytes(older)
    assert filing.verify(couch, signer, COMMUNITY).ok  # nothing on this host can tell
    result = filing.verify(couch, signer, COMMUNITY, [(published["seq"], published["hash"])])
    assert not result.ok and result.problem == ("entries up to 5, a head published earlier, are missing "
                                                "(log truncated after entry 3)")


def test_servers_with_their_own_data_folders_each_anchor_what_they_appended(couch: Couch, signer: filing.Signer,
                                                                             tmp_path: Path) -> None:
    other_host = filing.Signer(KEY, HeadAnchor(tmp_path / "other-host"))
    other_host.anchor.path.parent.mkdir()
    file_access(couch, signer, 2)
    file_access(couch, other_host, 3)  # appends 3 to 5 to the same database
    here, there = filing.verify(couch, signer, COMMUNITY), filing.verify(couch, other_host, COMMUNITY)
    assert here.ok and here.anchored == 2 and "another server with its own data folder" in here.note
    assert there.ok and there.anchored == 5 and there.note is None
    _delete(couch, [filing.entry_id(COMMUNITY, 5)])
    assert filing.verify(couch, signer, COMMUNITY).ok  # this host never saw entry 5 …
    assert "log truncated after entry 4" in filing.verify(couch, other_host, COMMUNITY).problem  # … that one did


def test_the_anchor_file_is_private_and_replaced_whole(couch: Couch, signer: filing.Signer) -> None:
    file_access(couch, signer, 2)
    assert stat.S_IMODE(signer.anchor.path.stat().st_mode) == 0o600
    assert [p.name for p in signer.anchor.path.parent.glob("filing_anchor.json*")] == ["filing_anchor.json"]
    assert signer.anchor.heads()[COMMUNITY]["seq"] == 2


def test_verify_command(couch_server, couch, signer, settings) -> None:
    file_access(couch, signer, 3)
    env = {**os.environ, "COUCHDB_URL": couch_server.url, "LINLI_DB_PREFIX": settings.db_prefix,
           "LINLI_DATA_DIR": str(settings.data_dir), "LINLI_MASTER_KEY": keys.b64url(bytes(range(32)))}
    linli = str(Path(sys.executable).parent / "linli")
    ok = subprocess.run([linli, "audit", "verify", "--community", COMMUNITY], env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and "community:c1: intact: 3 entries" in ok.stdout, ok.stderr
    doc = entry(couch, 2)
    couch.main.save({**doc, "fields": ["phone", "health_notes"]})
    broken = subprocess.run([linli, "audit", "verify", "--community", COMMUNITY], env=env, capture_output=True,
                            text=True)
    assert broken.returncode == 1 and "BROKEN at entry 2: content was altered" in broken.stdout
    _delete(couch, [filing.entry_id(COMMUNITY, seq) for seq in (1, 2, 3)])  # the whole log, community unnamed
    gone = subprocess.run([linli, "audit", "verify"], env=env, capture_output=True, text=True)
    assert gone.returncode == 1 and "community:c1: BROKEN at entry 1: the whole log is missing" in gone.stdout
    malformed = subprocess.run([linli, "audit", "verify", "--head", "community:c1:3:nothex"], env=env,
                               capture_output=True, text=True)
    assert malformed.returncode == 2 and "COMMUNITY:SEQ:HASH" in malformed.stderr


# ---------------------------------------------------------------- forks: a cluster's two writes of one seq (issue 24)

def _as_a_cluster_writes(couch: Couch, docs: list[dict]) -> None:
    """Revisions written as they are (`new_edits=false`): a second first revision of an id is kept as a conflict,
    which is what two CouchDB nodes accepting one new id each leave behind."""
    _, results = couch.main.resource._request_response(
        "POST", "_bulk_docs", data=json.dumps({"docs": docs, "new_edits": False}).encode(),
        headers={"Content-Type": "application/json"})
    assert not [r for r in results if "error" in r]


def _entry_written_elsewhere(couch: Couch, seq: int, prev_hash: str, actor: str, rev: str) -> dict:
    entry = {"_id": filing.entry_id(COMMUNITY, seq), "_rev": rev, "type": "audit_entry", "street": "street:s1",
             "community": COMMUNITY, "actor": actor, "action": "decrypt", "target": "resident:c1-g01-0999-1",
             "fields": ["phone"], "purpose": "入户走访", "device": "phone-2", "at": AT.isoformat(), "seq": seq,
             "prev_hash": prev_hash}
    return {**entry, "hash": filing_log.entry_hash(entry)}


def _actors(couch: Couch) -> list[str]:
    return [e["actor"] for e in filing.iter_entries(couch, COMMUNITY)]


def test_a_fork_is_named_and_refiled_once(couch: Couch, signer: filing.Signer) -> None:
    """Two processes on two nodes both wrote entry 3: the verifier names the fork, the repair keeps CouchDB's
    winner at 3 and files the other at the head naming where it was first written; run again, it does nothing."""
    file_access(couch, signer, 3)
    other = _entry_written_elsewhere(couch, 3, entry(couch, 2)["hash"], "user:wangge02", "1-" + "0" * 32)
    _as_a_cluster_writes(couch, [other])
    assert "_conflicts" in couch.main.get(filing.entry_id(COMMUNITY, 3), conflicts="true")
    result = filing.verify(couch, signer, COMMUNITY)
    assert not result.ok and result.first_broken_seq == 3 and result.problem.startswith("forked: 2 entries")
    assert filing.forked_communities(couch) == [COMMUNITY]
    assert filing.repair_forks(couch, signer) == 1
    assert filing.verify(couch, signer, COMMUNITY).ok and filing.forked_communities(couch) == []
    assert sorted(_actors(couch)) == ["user:wangge01"] * 3 + ["user:wangge02"]  # nothing lost, nothing twice
    assert entry(couch, 4)["refiled"] == {"seq": 3, "prev_hash": other["prev_hash"], "hash": other["hash"]}
    assert filing.repair_forks(couch, signer) == 0 and len(_actors(couch)) == 4


def test_a_fork_the_chain_went_on_from_keeps_that_branch(couch: Couch, signer: filing.Signer, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The chain went on from the entry CouchDB did not pick as winner (the next process read its own node): that
    branch is kept, the winner refiled, the checkpoint signed over it signed again, and a host whose anchor names
    the refiled entry still verifies (the refiled entry proves it was that entry)."""
    monkeypatch.setattr(filing_log, "CHECKPOINT_EVERY", 3)
    file_access(couch, signer, 2)
    second = entry(couch, 2)
    winner = _entry_written_elsewhere(couch, 3, second["hash"], "user:wangge01", "1-" + "f" * 32)
    went_on = _entry_written_elsewhere(couch, 3, second["hash"], "user:wangge02", "1-" + "0" * 32)
    fourth = _entry_written_elsewhere(couch, 4, went_on["hash"], "user:wangge02", "1-" + "1" * 32)
    _as_a_cluster_writes(couch, [winner, went_on, fourth])
    filing.checkpoint(couch, signer, "street:s1", COMMUNITY, AT)  # signs entry 4
    other_host = filing.Signer(KEY, HeadAnchor(tmp_path / "other-host"))
    other_host.anchor.path.parent.mkdir()
    other_host.anchor.advance(KEY, COMMUNITY, 3, winner["hash"], winner["at"])  # that host appended the winner
    _as_a_cluster_writes(couch, [{"_id": filing.checkpoint_id(COMMUNITY, 3), "_rev": "1-" + "2" * 32,
                                  "type": "audit_checkpoint", "street": "street:s1", "community": COMMUNITY,
                                  "seq": 3, "hash": winner["hash"], "at": AT.isoformat(),
                                  "signature": filing_log.sign_checkpoint(KEY, COMMUNITY, 3, winner["hash"])}])
    assert couch.main.get(filing.entry_id(COMMUNITY, 3))["actor"] == "user:wangge01"  # CouchDB's winner
    assert "does not link" in filing_log.verify(COMMUNITY, [{k: v for k, v in e.items() if k != "_conflicts"}
                                                           for e in filing.iter_entries(couch, COMMUNITY)],
                                                [], KEY.public_key()).problem
    assert filing.repair_fork(couch, signer, COMMUNITY) == 1
    kept = couch.main.get(filing.entry_id(COMMUNITY, 3), conflicts="true")
    assert kept["hash"] == went_on["hash"] and "_conflicts" not in kept
    assert entry(couch, 5)["refiled"]["hash"] == winner["hash"]
    assert couch.main.get(filing.checkpoint_id(COMMUNITY, 3))["hash"] == went_on["hash"]
    for host in (signer, other_host):
        assert filing.verify(couch, host, COMMUNITY).ok, host


def test_a_repair_that_stopped_after_refiling_is_finished_without_filing_twice(couch: Couch,
                                                                                signer: filing.Signer) -> None:
    """A process died between refiling and deleting the revision (or two repaired at once): the next run sees
    the entry refiled and only deletes; a refiled entry altered afterwards is named."""
    file_access(couch, signer, 2)
    other = _entry_written_elsewhere(couch, 2, entry(couch, 1)["hash"], "user:wangge02", "1-" + "0" * 32)
    _as_a_cluster_writes(couch, [other])
    filing.refile(couch, signer, other)
    assert filing.repair_forks(couch, signer) == 0
    assert filing.verify(couch, signer, COMMUNITY).ok and len(_actors(couch)) == 3
    third = entry(couch, 3)
    third["refiled"]["seq"] = 1  # names another entry than the one it was
    third["hash"] = filing_log.entry_hash(third)
    couch.main.save(third)
    assert filing.verify(couch, signer, COMMUNITY).problem == "refiled, but not the entry it names"
