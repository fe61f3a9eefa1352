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
by community and reloaded when a data key names a tier-key version the cache lacks (a rotation).
"""

from __future__ import annotations

from typing import Any

from crypto.fields import fields_not_opening, key_owner, sealed_for_write_key
from crypto.keyring import ResidentKeys, TierKeys, open_data_keys
from crypto.keys import KeyMaterialError
from server.domain.access import Doc
from server.security.keystore import data_key_id, keyring_id

from .upstream import Upstream


class CiphertextCheck:
    def __init__(self, upstream: Upstream, master_keys: tuple[bytes, ...]) -> None:
        self.upstream = upstream
        self.master_keys = master_keys
        self._rings: dict[str, TierKeys] = {}

    def __repr__(self) -> str:
        return f"CiphertextCheck(communities cached={len(self._rings)})"  # never a key

    async def refused_fields(self, changed: dict[int, tuple[Doc, list[str]]]) -> dict[int, list[str]]:
        """index → the fields of that document whose new value does not open as it must; `changed` is index →
        (document, names of its protected fields with a new value). One read for all the residents' keys."""
        owners = {i: key_owner(doc) for i, (doc, _) in changed.items()}
        records = await self.upstream.winners(data_key_id(o) for o in owners.values() if o)
        refused = {}
        for index, (doc, names) in changed.items():
            record = records.get(data_key_id(owners[index])) if owners[index] else None
            if record is None or record.get("_deleted"):
                refused[index] = names  # no keys (an erased resident, or none yet): nothing can open under them
                continue
            try:
                keys = await self._open(record, write_keys=sealed_for_write_key(doc, names))
            except ValueError:  # keys that do not unwrap (KeyMaterialError, EnvelopeError): nothing opens
                refused[index] = names
                continue
            bad = fields_not_opening(doc, keys, names)
            if bad:
                refused[index] = bad
        return refused

    async def _open(self, record: Doc, *, write_keys: bool) -> ResidentKeys:
        try:
            return open_data_keys(await self._ring(record["community"]), record, write_keys=write_keys)
        except KeyMaterialError:  # rotated since it was cached
            return open_data_keys(await self._ring(record["community"], reload=True), record, write_keys=write_keys)

    async def _ring(self, community: str, *, reload: bool = False) -> TierKeys:
        if reload or community not in self._rings:
            ring: dict[str, Any] | None = await self.upstream.get(self.upstream.accounts, keyring_id(community))
            if ring is None:
                raise KeyMaterialError(f"{community} has no key ring")
            self._rings[community] = TierKeys.unwrap_ring(self.master_keys, ring)
        return self._rings[community]
