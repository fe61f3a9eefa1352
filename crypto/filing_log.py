"""The filing log's tamper evidence: a hash chain with signed checkpoints.

Every entry's hash covers its content and the previous entry's hash, so
altering or deleting an entry breaks every link after it. Every
CHECKPOINT_EVERY entries (and on demand) the chain head is signed with an
Ed25519 key derived from the master key, so that rewriting the whole chain
from some point on (which a database operator could do) is caught at the
next checkpoint: the signature cannot be forged without the master key.

A chain cut short after a checkpoint, or deleted whole, is caught only against a head kept outside the
database: the data folder's anchor (server/security/filing_anchor.py) and heads published with the
monthly audit report, which `verify` also takes.

Pure functions over plain dicts; reading and writing CouchDB is server/security/filing.py's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .envelope import b64url, unb64url

CHECKPOINT_EVERY = 100
GENESIS = "0" * 64
_SIGNING_INFO = b"linli:audit-signing:v1"
_CHECKPOINT_LABEL = b"linli:audit-checkpoint:v1\x00"


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of the entry, without CouchDB's own fields (`_id`, `_rev`, `_conflicts`)
    and `hash` itself."""
    body = {k: v for k, v in entry.items() if not k.startswith("_") and k != "hash"}
    canonical = json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def first_written(entry: dict[str, Any]) -> dict[str, Any]:
    """A refiled entry (one of two written as one seq: a fork, server/security/filing.py `repair_forks`) as it was
    first written: its content at the seq and after the hash it named then."""
    body = {k: v for k, v in entry.items() if not k.startswith("_") and k not in ("hash", "refiled")}
    return {**body, "seq": entry["refiled"]["seq"], "prev_hash": entry["refiled"]["prev_hash"]}


def signing_key(master_key: bytes) -> Ed25519PrivateKey:
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SIGNING_INFO).derive(master_key)
    return Ed25519PrivateKey.from_private_bytes(seed)


def _checkpoint_message(community: str, seq: int, head: str) -> bytes:
    return _CHECKPOINT_LABEL + f"{community}\x00{seq}\x00{head}".encode()


def sign_checkpoint(key: Ed25519PrivateKey, community: str, seq: int, head: str) -> str:
    return b64url(key.sign(_checkpoint_message(community, seq, head)))


def is_signed_by(public_key: Ed25519PublicKey, community: str, checkpoint: dict[str, Any]) -> bool:
    """Whether the checkpoint's signature is the given key's over its community, seq and head."""
    try:
        public_key.verify(unb64url(checkpoint["signature"]),
                          _checkpoint_message(community, checkpoint["seq"], checkpoint["hash"]))
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Verdict:
    ok: bool
    entries: int
    checkpoints: int
    first_broken_seq: int | None = None
    problem: str | None = None
    anchored: int | None = None  # the seq of the head kept outside the database, if there is one
    note: str | None = None  # not a break, but worth a look (the anchor behind the database)

    def __str__(self) -> str:
        if not self.ok:
            return f"BROKEN at entry {self.first_broken_seq}: {self.problem}"
        anchor = "" if self.anchored is None else f", anchored at entry {self.anchored}"
        return (f"intact: {self.entries} entries, {self.checkpoints} signed checkpoints{anchor}"
                + (f"; note: {self.note}" if self.note else ""))


def verify(community: str, entries: Iterable[dict[str, Any]], checkpoints: Iterable[dict[str, Any]],
           public_key: Ed25519PublicKey, anchored: dict[str, Any] | None = None,
           published: Iterable[tuple[int, str]] = ()) -> Verdict:
    """Check one community's chain (entries in seq order) against its signed checkpoints, the signed head kept
    outside the database (`anchored`, shaped as a checkpoint) and heads someone kept a copy of (`published`,
    (seq, hash) pairs from a monthly report): the chain must reach each of them, with that hash."""
    heads: dict[int, str] = {}
    refiled: set[tuple[int, str]] = set()  # (seq, hash) each refiled entry had when first written
    previous, expected_seq = GENESIS, 1
    for entry in entries:
        seq = entry.get("seq")
        if entry.get("_conflicts"):  # read with conflicts=true: CouchDB kept two writes of one new id
            return Verdict(False, len(heads), 0, seq, f"forked: {1 + len(entry['_conflicts'])} entries were written "
                           f"as entry {seq} (two processes on a cluster); the minute sweep refiles all but one")
        if seq != expected_seq:
            return Verdict(False, len(heads), 0, expected_seq, f"entry {expected_seq} is missing (next found: {seq})")
        if entry.get("prev_hash") != previous:
            return Verdict(False, len(heads), 0, seq, "does not link to the entry before it")
        if entry_hash(entry) != entry.get("hash"):
            return Verdict(False, len(heads), 0, seq, "content was altered (hash mismatch)")
        if "refiled" in entry:
            if entry_hash(first_written(entry)) != entry["refiled"].get("hash"):
                return Verdict(False, len(heads), 0, seq, "refiled, but not the entry it names")
            refiled.add((entry["refiled"]["seq"], entry["refiled"]["hash"]))
        heads[seq] = previous = entry["hash"]
        expected_seq += 1
    signed = 0
    for checkpoint in sorted(checkpoints, key=lambda c: c["seq"]):
        seq = checkpoint["seq"]
        if not is_signed_by(public_key, community, checkpoint):
            return Verdict(False, len(heads), signed, seq, "checkpoint signature is not valid")
        if seq not in heads:
            return Verdict(False, len(heads), signed, len(heads) + 1,
                           f"entries up to the signed checkpoint {seq} are missing (log truncated)")
        if heads[seq] != checkpoint["hash"]:
            return Verdict(False, len(heads), signed, seq, "chain was rewritten: differs from the signed checkpoint")
        signed += 1
    anchored_seq = anchored["seq"] if anchored else None
    if anchored and not is_signed_by(public_key, community, anchored):
        return Verdict(False, len(heads), signed, anchored_seq, "the head kept outside the database is not signed "
                       "by this installation's key (the anchor file was forged)", anchored_seq)
    kept = [(seq, head, "a head published earlier") for seq, head in published]
    if anchored:
        kept.append((anchored["seq"], anchored["hash"], "the head kept outside the database"))
    for seq, head, what in kept:
        broken = None if (seq, head) in refiled else _break_before(heads, seq, head, what)
        if broken:
            return Verdict(False, len(heads), signed, broken[0], broken[1], anchored_seq)
    note = None
    if anchored_seq is not None and len(heads) > anchored_seq:
        note = (f"the database goes {len(heads) - anchored_seq} entries past the anchored head: another server "
                "with its own data folder appended them, or the anchor file was rolled back")
    return Verdict(True, len(heads), signed, anchored=anchored_seq, note=note)


def _break_before(heads: dict[int, str], seq: int, head: str, what: str) -> tuple[int, str] | None:
    """Where and how the chain fails to reach a head kept elsewhere (None when it reaches it)."""
    if not heads:
        return 1, f"the whole log is missing: {what} is entry {seq} (log deleted)"
    if seq not in heads:
        return len(heads) + 1, f"entries up to {seq}, {what}, are missing (log truncated after entry {len(heads)})"
    if heads[seq] != head:
        return seq, f"chain was rewritten: differs from {what}"
    return None
