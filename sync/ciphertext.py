"""Protected fields hold only ciphertext that opens under the right key, checked before CouchDB sees a write.

`writes.py` checks that a new protected value is shaped like an envelope; here it is opened, with the keys
of the resident the document is about (`crypto.fields.key_owner`), for exactly its document, field and tier:
v1 under one of the resident's data-key versions, v2 under one of their write keys. Plaintext wrapped in a
well-formed envelope, a value sealed under another key, or one moved from another document or field is
refused, naming the field, never the value; what a value opens to is thrown away at once and never logged
(issue 13, finding 12). A phone or BLE gateway that sealed with a key the server no longer has (the
resident was erased) is refused as well.

The gateway reads keys as the web app does (`server/security/keystore.py`): the resident's `data_key`
document, unwrapped under the community's tier keys, which the master key unwraps; the tier keys are cached
by community and reloaded when a data key names a tier-key version the cache lacks (a rotation), a
resident's opened keys by the revision of their `data_key` document (a key rotation makes a new one).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from crypto.fields import fields_not_opening, key_owner
from crypto.keyring import PROTECTED_TIERS, ResidentKeys, TierKeys, open_data_keys
from crypto.keys import KeyMaterialError
from server.domain.access import Doc
from server.domain.declaration import DOC_TYPES
from server.security.keystore import data_key_id, keyring_id

from .upstream import Upstream

CACHED_RECORDS = 4096  # residents whose opened keys are kept, by data_key revision (a gateway's, several times)


class CiphertextCheck:
    def __init__(self, upstream: Upstream, master_keys: tuple[bytes, ...]) -> None:
        self.upstream = upstream
        self.master_keys = master_keys
        self._rings: dict[str, TierKeys] = {}
        # (data_key id, revision, tiers) → opened keys: a BLE gateway pushes readings of the same
        # residents all day, and a rotation changes the revision.
        self._keys: OrderedDict[tuple[str, str, tuple[str, ...]], ResidentKeys] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CiphertextCheck(communities cached={len(self._rings)})"  # never a key

    async def refused_fields(self, changed: dict[int, tuple[Doc, list[str]]]) -> dict[int, list[str]]:
        """index → the fields of that document whose new value does not open as it must; `changed` is index →
        (document, names of its protected fields with a new value). One read for all the residents' keys; the
        opening runs in a worker thread, so a gateway's batch does not hold up other requests."""
        if not changed:
            return {}
        owners = {i: key_owner(doc) for i, (doc, _) in changed.items()}
        records = await self.upstream.winners(data_key_id(o) for o in owners.values() if o)
        records = {k: r for k, r in records.items() if not r.get("_deleted")}
        await self._load_rings(records.values())
        return await asyncio.to_thread(self._refused, changed,
                                       {i: records.get(data_key_id(o)) if o else None for i, o in owners.items()})

    def _refused(self, changed: dict[int, tuple[Doc, list[str]]],
                 records: dict[int, Doc | None]) -> dict[int, list[str]]:
        refused = {}
        for index, (doc, names) in changed.items():
            record = records[index]
            try:
                if record is None:  # no keys (an erased resident, or none yet): nothing can open under them
                    raise KeyMaterialError("no data keys")
                tiers = tuple(sorted({DOC_TYPES[doc["type"]].fields[n].effective_tier.value for n in names}))
                keys = self._opened(record, tiers)
            except ValueError:  # keys that do not unwrap (KeyMaterialError, EnvelopeError): nothing opens
                refused[index] = names
                continue
            bad = fields_not_opening(doc, keys, names)
            if bad:
                refused[index] = bad
        return refused

    def _opened(self, record: Doc, tiers: tuple[str, ...]) -> ResidentKeys:
        cache_key = (record["_id"], record["_rev"], tiers)
        with self._lock:  # batches are checked in worker threads, maybe two at once
            keys = self._keys.get(cache_key)
            if keys is not None:
                self._keys.move_to_end(cache_key)
                return keys
        ring = self._rings.get(record["community"])
        if ring is None:
            raise KeyMaterialError("no key ring")
        keys = open_data_keys(ring, record, tiers)
        with self._lock:
            self._keys[cache_key] = keys
            if len(self._keys) > CACHED_RECORDS:
                self._keys.popitem(last=False)
        return keys

    async def _load_rings(self, records: Iterable[Doc]) -> None:
        """The tier keys every record is wrapped under, (re)loading a ring not cached or rotated since."""
        for record in records:
            ring = self._rings.get(record["community"])
            if ring is None or any(isinstance(record.get(t), dict) and record[t].get("tier_version") not in ring.keys[t]
                                   for t in PROTECTED_TIERS):
                stored: dict[str, Any] | None = await self.upstream.get(self.upstream.accounts,
                                                                        keyring_id(record["community"]))
                if stored is not None:
                    self._rings[record["community"]] = TierKeys.unwrap_ring(self.master_keys, stored)
