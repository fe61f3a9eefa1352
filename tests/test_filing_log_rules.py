"""The filing log's chain rules (crypto/filing_log.py), called directly on plain entries: every way a chain can be
broken gives one verdict, naming the first broken entry and the problem. tests/test_filing_log.py covers the same
through CouchDB and the anchor file; this file is fast enough to run once per mutant (tests/mutation/)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from cryptography.hazmat.primitives import serialization

from crypto import filing_log
from crypto.filing_log import GENESIS, Verdict, entry_hash, sign_checkpoint, verify

COMMUNITY = "community:c1"
MASTER = bytes(range(32))
KEY = filing_log.signing_key(MASTER)  # computed once, before any mutant runs: the tests below derive their own
PUBLIC = KEY.public_key()


def chain(n: int) -> list[dict[str, Any]]:
    """n entries as filing.append stores them (CouchDB's own fields included), each chained to the one before."""
    entries, previous = [], GENESIS
    for seq in range(1, n + 1):
        entry = {"_id": f"audit:c1:{seq:09d}", "_rev": "1-a", "type": "audit", "seq": seq, "prev_hash": previous,
                 "actor": "user:wangge01", "action": "decrypt", "target": f"resident:c1-g01-{seq:04d}-1",
                 "fields": ["phone"], "purpose": "入户走访"}
        entry["hash"] = previous = entry_hash(entry)
        entries.append(entry)
    return entries


def checkpoint(entries: list[dict[str, Any]], seq: int, key: Any = KEY) -> dict[str, Any]:
    head = entries[seq - 1]["hash"]
    return {"seq": seq, "hash": head, "signature": sign_checkpoint(key, COMMUNITY, seq, head)}


def rehash(entry: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The entry changed and its hash made consistent again (an operator's rewrite)."""
    changed = {**entry, **changes}
    changed["hash"] = entry_hash(changed)
    return changed


def hkdf_sha256(key: bytes, info: bytes) -> bytes:
    """RFC 5869 with no salt (a salt of 32 zero bytes), one block: written here, not taken from the code under test."""
    prk = hmac.new(bytes(32), key, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def test_the_signing_key_is_derived_from_the_master_key_for_this_purpose_alone() -> None:
    key = filing_log.signing_key(MASTER)
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    assert raw == hkdf_sha256(MASTER, b"linli:audit-signing:v1")


def test_the_hash_is_sha256_of_the_canonical_json_so_stored_chains_verify_after_an_upgrade() -> None:
    entry = {"_id": "audit:c1:000000001", "_rev": "1-a", "seq": 1, "prev_hash": GENESIS, "purpose": "入户走访",
             "fields": ["phone", "id_card"], "actor": "user:wangge01", "hash": "x"}
    canonical = ('{"actor":"user:wangge01","fields":["phone","id_card"],"prev_hash":"' + GENESIS
                 + '","purpose":"入户走访","seq":1}')  # keys sorted, no spaces, UTF-8 as is
    assert entry_hash(entry) == hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_the_hash_covers_everything_but_couchdbs_own_fields_and_itself() -> None:
    entry = chain(1)[0]
    assert entry_hash({**entry, "_rev": "2-b", "_conflicts": ["1-c"], "hash": "x"}) == entry["hash"]
    for name, value in (("purpose", "好奇"), ("seq", 2), ("prev_hash", "1" * 64), ("keys", ["r/contact"])):
        assert entry_hash({**entry, name: value}) != entry["hash"], name


def test_an_intact_chain_and_what_its_verdict_says() -> None:
    entries = chain(5)
    assert verify(COMMUNITY, entries, [checkpoint(entries, 2), checkpoint(entries, 4)], PUBLIC) == Verdict(True, 5, 2)
    assert str(Verdict(True, 5, 2)) == "intact: 5 entries, 2 signed checkpoints"
    anchored = verify(COMMUNITY, entries, [], PUBLIC, anchored=checkpoint(entries, 5))
    assert anchored == Verdict(True, 5, 0, anchored=5) and str(anchored) == ("intact: 5 entries, 0 signed checkpoints, "
                                                                              "anchored at entry 5")
    behind = verify(COMMUNITY, entries, [], PUBLIC, anchored=checkpoint(entries, 3))
    note = ("the database goes 2 entries past the anchored head: another server with its own data folder appended "
            "them, or the anchor file was rolled back")
    assert behind == Verdict(True, 5, 0, anchored=3, note=note)
    assert str(behind) == f"intact: 5 entries, 0 signed checkpoints, anchored at entry 3; note: {note}"
    assert verify(COMMUNITY, [], [], PUBLIC) == Verdict(True, 0, 0)


def test_each_break_in_the_chain_names_the_first_broken_entry() -> None:
    entries = chain(4)
    forked = {**entries[2], "_conflicts": ["1-b", "1-c"]}
    cases = {
        "forked": ([*entries[:2], forked, entries[3]], Verdict(False, 2, 0, 3, (
            "forked: 3 entries were written as entry 3 (two processes on a cluster); the minute sweep refiles all "
            "but one"))),
        "deleted": ([entries[0], entries[2], entries[3]],
                    Verdict(False, 1, 0, 2, "entry 2 is missing (next found: 3)")),
        "unlinked": ([*entries[:2], rehash(entries[2], prev_hash=entries[0]["hash"]), entries[3]],
                     Verdict(False, 2, 0, 3, "does not link to the entry before it")),
        "altered": ([*entries[:2], {**entries[2], "purpose": "好奇"}, entries[3]],
                    Verdict(False, 2, 0, 3, "content was altered (hash mismatch)")),
    }
    for name, (broken, expected) in cases.items():
        verdict = verify(COMMUNITY, broken, [checkpoint(entries, 4)], PUBLIC)
        assert verdict == expected, name
    assert str(cases["altered"][1]) == "BROKEN at entry 3: content was altered (hash mismatch)"


def test_a_refiled_entry_must_be_the_one_it_names() -> None:
    entries = chain(3)
    # Two processes wrote entry 2 at once; the chain went on from the other one, and this one was refiled at the
    # head as entry 4, its content unchanged.
    hidden = rehash(entries[1], target="resident:c1-g01-0009-1")
    refiled = rehash({k: v for k, v in hidden.items() if k != "hash"}, seq=4, prev_hash=entries[2]["hash"],
                     refiled={"seq": 2, "prev_hash": hidden["prev_hash"], "hash": hidden["hash"]})
    assert verify(COMMUNITY, [*entries, refiled], [], PUBLIC) == Verdict(True, 4, 0)
    # A head published while the hidden entry was entry 2 still counts: the chain holds that entry, refiled …
    assert verify(COMMUNITY, [*entries, refiled], [], PUBLIC, published=[(2, hidden["hash"])]) == Verdict(True, 4, 0)
    # … and without the refiled entry, that head is not reached.
    assert verify(COMMUNITY, entries, [], PUBLIC, published=[(2, hidden["hash"])]) == Verdict(
        False, 3, 0, 2, "chain was rewritten: differs from a head published earlier")
    forged = rehash(refiled, refiled={**refiled["refiled"], "hash": "0" * 64})
    assert verify(COMMUNITY, [*entries, forged], [], PUBLIC) == Verdict(
        False, 3, 0, 4, "refiled, but not the entry it names")


def test_checkpoints_catch_forgery_truncation_and_rewriting() -> None:
    entries, forger = chain(4), filing_log.signing_key(bytes(32))
    rewritten = [*entries[:2], rehash(entries[2], actor="user:someone_else")]
    rewritten.append(rehash(entries[3], prev_hash=rewritten[2]["hash"]))
    good = [checkpoint(entries, 2), checkpoint(entries, 4)]
    cases = [
        (entries, [good[0], checkpoint(entries, 4, forger)],
         Verdict(False, 4, 1, 4, "checkpoint signature is not valid")),
        (entries[:3], good,
         Verdict(False, 3, 1, 4, "entries up to the signed checkpoint 4 are missing (log truncated)")),
        (rewritten, good, Verdict(False, 4, 1, 4, "chain was rewritten: differs from the signed checkpoint")),
    ]
    for broken, checkpoints, expected in cases:
        assert verify(COMMUNITY, broken, checkpoints, PUBLIC) == expected
    signed_elsewhere = {**good[1], "signature": sign_checkpoint(KEY, "community:c2", 4, entries[3]["hash"])}
    assert not verify(COMMUNITY, entries, [signed_elsewhere], PUBLIC).ok  # a checkpoint is its community's only


def test_heads_kept_outside_the_database_catch_what_the_database_alone_cannot() -> None:
    entries, forger = chain(4), filing_log.signing_key(bytes(32))
    anchor, published = checkpoint(entries, 4), [(4, entries[3]["hash"])]
    forged_anchor = checkpoint(entries, 4, forger)
    assert verify(COMMUNITY, entries, [], PUBLIC, anchored=forged_anchor) == Verdict(
        False, 4, 0, 4, "the head kept outside the database is not signed by this installation's key (the anchor "
        "file was forged)", 4)
    assert verify(COMMUNITY, [], [], PUBLIC, anchored=anchor) == Verdict(
        False, 0, 0, 1, "the whole log is missing: the head kept outside the database is entry 4 (log deleted)", 4)
    assert verify(COMMUNITY, entries[:2], [], PUBLIC, published=published) == Verdict(
        False, 2, 0, 3, "entries up to 4, a head published earlier, are missing (log truncated after entry 2)")
    rewritten = [*entries[:3], rehash(entries[3], purpose="好奇")]
    assert verify(COMMUNITY, rewritten, [], PUBLIC, anchored=anchor) == Verdict(
        False, 4, 0, 4, "chain was rewritten: differs from the head kept outside the database", 4)
