"""The filing log's head, kept outside the database it lives in (issue 13, finding 7).

Signed checkpoints catch a chain rewritten up to them, but not one cut short: deleting the newest
checkpoint and everything after an older one, or a whole community's log, left a shorter chain that
verified as intact. So every append also writes the community's new head (seq, hash, and an Ed25519
signature over them, as a checkpoint's) into `filing_anchor.json` in the data folder: mode 0600,
written to a new file and renamed over the old one (atomic), under an exclusive lock, and never moved
back to an older entry. `linli audit verify` then demands that the database hold the chain up to each
anchored head, with that hash.

Every append, not every checkpoint: anchoring only checkpoints would leave up to 99 entries that could
be cut undetected. What is left: the moment between saving an entry and anchoring it (a crash there
leaves the anchor one entry behind, which verify notes); and someone who can write both the database
and the data folder can roll both back together. That is what publishing the head with each month's
figures is for (the audit report shows it): whoever kept a copy can check it later
(`linli audit verify --head`).

Several processes: processes sharing a data folder (one host) serialise on the lock and keep the
newest head any of them wrote. Processes on other hosts (issue 24) each keep their own folder: each
anchor then proves the database holds at least what that host appended, and a database running past
a host's anchor is noted, not called broken, since another host may have appended.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crypto import filing_log

ANCHOR_FILE = "filing_anchor.json"
_LOCK_FILE = "filing_anchor.lock"

Head = dict[str, Any]  # {"seq", "hash", "signature", "at"}: shaped as a checkpoint, so filing_log checks both


class HeadAnchor:
    """The anchor file of one data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / ANCHOR_FILE
        self._lock_path = data_dir / _LOCK_FILE

    def heads(self) -> dict[str, Head]:
        """Each community's anchored head (none before the first append)."""
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))["heads"]
        except FileNotFoundError:
            return {}

    def advance(self, key: Ed25519PrivateKey, community: str, seq: int, head: str, at: str) -> None:
        """Anchor a community's new head, unless a newer one is anchored already."""
        with self._locked():
            heads = self.heads()
            if heads.get(community, {}).get("seq", 0) >= seq:
                return
            heads[community] = {"seq": seq, "hash": head, "at": at,
                                "signature": filing_log.sign_checkpoint(key, community, seq, head)}
            self._write(heads)

    def resign(self, new: Ed25519PrivateKey) -> None:
        """After a master-key rotation (the log was verified under the old key first): sign every head anew."""
        with self._locked():
            heads = self.heads()
            if heads:
                self._write({c: {**h, "signature": filing_log.sign_checkpoint(new, c, h["seq"], h["hash"])}
                             for c, h in heads.items()})

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        descriptor = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # releases the lock

    def _write(self, heads: dict[str, Head]) -> None:
        text = json.dumps({"about": "the filing log's newest heads, kept outside the database (linli audit verify)",
                           "heads": heads}, ensure_ascii=False, indent=1, sort_keys=True)
        partial = self.path.with_name(ANCHOR_FILE + ".partial")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, self.path)
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a power cut
        finally:
            os.close(folder)
