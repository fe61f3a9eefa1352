"""The filing log: appends chain, a verifier proves it intact or names the first broken entry."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from crypto import filing_log, keys
from server.security import filing
from server.store.couch import Couch

COMMUNITY = "community:c1"
SIGNER = filing_log.signing_key(bytes(range(32)))
AT = dt.datetime(2025, 3, 1, 9, 30, tzinfo=dt.UTC)


def file_access(couch: Couch, n: int, actor: str = "user:wangge01") -> None:
    for i in range(n):
        filing.append(couch, SIGNER, street="street:s1", community=COMMUNITY, actor=actor, action="decrypt",
                      target=f"resident:c1-g01-{i:04d}-1", fields=["phone"], purpose="入户走访", device="phone-1",
                      at=AT + dt.timedelta(minutes=i))


def verdict(couch: Couch) -> filing_log.Verdict:
    return filing.verify(couch, SIGNER, COMMUNITY)


def entry(couch: Couch, seq: int) -> dict:
    return couch.main.get(filing.entry_id(COMMUNITY, seq))


def test_an_untouched_log_is_intact(couch: Couch) -> None:
    file_access(couch, 5)
    filing.checkpoint(couch, SIGNER, "street:s1", COMMUNITY, AT)
    result = verdict(couch)
    assert result.ok and result.entries == 5 and result.checkpoints == 1
    assert entry(couch, 2)["prev_hash"] == entry(couch, 1)["hash"]
    assert entry(couch, 1)["prev_hash"] == filing_log.GENESIS


def test_an_altered_entry_is_named(couch: Couch) -> None:
    file_access(couch, 5)
    doc = entry(couch, 3)
    couch.main.save({**doc, "purpose": "好奇"})
    result = verdict(couch)
    assert not result.ok and result.first_broken_seq == 3 and "altered" in result.problem


def test_a_deleted_entry_is_named(couch: Couch) -> None:
    file_access(couch, 5)
    couch.main.delete(entry(couch, 2))
    result = verdict(couch)
    assert not result.ok and result.first_broken_seq == 2 and "missing" in result.problem


def test_a_consistently_rewritten_chain_is_caught_by_the_signed_checkpoint(couch: Couch) -> None:
    file_access(couch, 4)
    filing.checkpoint(couch, SIGNER, "street:s1", COMMUNITY, AT)
    # An operator rewrites entry 3 and re-hashes everything after it: the chain itself looks fine …
    previous = entry(couch, 2)["hash"]
    for seq in (3, 4):
        doc = entry(couch, seq)
        doc.update(prev_hash=previous, actor="user:someone_else" if seq == 3 else doc["actor"])
        doc["hash"] = previous = filing_log.entry_hash(doc)
        couch.main.save(doc)
    result = verdict(couch)
    assert not result.ok and result.first_broken_seq == 4 and "signed checkpoint" in result.problem


def test_truncation_before_a_checkpoint_is_caught(couch: Couch) -> None:
    file_access(couch, 3)
    filing.checkpoint(couch, SIGNER, "street:s1", COMMUNITY, AT)
    couch.main.delete(entry(couch, 3))
    result = verdict(couch)
    assert not result.ok and "truncated" in result.problem


def test_a_forged_checkpoint_is_caught(couch: Couch) -> None:
    file_access(couch, 2)
    forger = filing_log.signing_key(bytes(32))  # not the master key
    last = entry(couch, 2)
    couch.main.save({"_id": filing.checkpoint_id(COMMUNITY, 2), "type": "audit_checkpoint", "street": "street:s1",
                     "community": COMMUNITY, "seq": 2, "hash": last["hash"], "at": AT.isoformat(),
                     "signature": filing_log.sign_checkpoint(forger, COMMUNITY, 2, last["hash"])})
    result = verdict(couch)
    assert not result.ok and "signature" in result.problem


def test_checkpoints_are_signed_automatically(couch: Couch, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filing_log, "CHECKPOINT_EVERY", 3)
    file_access(couch, 7)
    assert verdict(couch).checkpoints == 2


def test_concurrent_appends_keep_one_unbroken_chain(couch: Couch) -> None:
    errors: list[Exception] = []

    def worker(actor: str) -> None:
        try:
            file_access(couch, 10, actor)
        except Exception as error:  # surfaced below; a thread's exception would otherwise vanish
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(f"user:w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    result = verdict(couch)
    assert result.ok and result.entries == 30


def test_verify_command(couch_server, couch, settings, tmp_path: Path) -> None:
    file_access(couch, 3)
    env = {**os.environ, "COUCHDB_URL": couch_server.url, "LINLI_DB_PREFIX": settings.db_prefix,
           "LINLI_DATA_DIR": str(tmp_path), "LINLI_MASTER_KEY": keys.b64url(bytes(range(32)))}
    linli = str(Path(sys.executable).parent / "linli")
    ok = subprocess.run([linli, "audit", "verify", "--community", COMMUNITY], env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and "community:c1: intact: 3 entries" in ok.stdout, ok.stderr
    doc = entry(couch, 2)
    couch.main.save({**doc, "fields": ["phone", "health_notes"]})
    broken = subprocess.run([linli, "audit", "verify", "--community", COMMUNITY], env=env, capture_output=True,
                            text=True)
    assert broken.returncode == 1 and "BROKEN at entry 2: content was altered" in broken.stdout
