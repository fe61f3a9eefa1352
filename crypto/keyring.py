"""The key hierarchy as recipes: master key → tier keys → data keys.

    master key                      from a file or the environment (server/store/config.py)
      └ tier key  (community × tier) wrapped under the master key, versioned
          └ data key (resident × tier) wrapped under the tier key, versioned; encrypts fields

Only wrapped keys are ever stored. Rotating a level means: make a new version,
re-wrap what the old version wrapped, then drop the old one; every wrapped key
names the version that wraps it, so readers keep working during the re-wrap.
A resident's data keys rotate differently (`rotated_record`): when someone who held a data key loses the
right to it, a new version seals from then on and the old one is kept, wrapped, to open what it sealed; the
ciphertext is not re-encrypted (that is a re-key, `linli keys rekey`, which then forgets the old versions).
Destroying a resident's wrapped data keys destroys their data (crypto-shredding).

This module holds no storage: `server/security/keystore.py` keeps these shapes in CouchDB.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from server.domain import declaration as domain

from .envelope import (
    DATA_KEY_VERSIONS,
    SEALED_VERSION,
    DataKey,
    FieldContext,
    WriteKey,
    b64url,
    header_of,
    key_version_of,
)
from .keys import KeyMaterialError, new_key, unwrap, wrap

_DATA_KEY_TAGS = frozenset(bytes([v]) for v in DATA_KEY_VERSIONS)  # a data key's envelope starts with one

PROTECTED_TIERS = tuple(sorted(t.value for t in domain.PROTECTED_TIERS))


def master_id(master: bytes) -> str:
    """A short public name for a master key, to find which key wraps a stored ring (not secret)."""
    return hmac.new(master, b"linli:master-id", hashlib.sha256).hexdigest()[:16]


@dataclass
class TierKeys:
    """One community's tier keys, unwrapped, by tier and version, and its blind-index key.

    The index key is not versioned: rotating it means recomputing every index of the community.
    """

    keys: dict[str, dict[int, bytes]]
    current: dict[str, int]
    index_key: bytes

    def __repr__(self) -> str:
        return f"TierKeys(current={self.current})"  # never the keys

    @classmethod
    def new(cls) -> TierKeys:
        return cls({tier: {1: new_key()} for tier in PROTECTED_TIERS}, dict.fromkeys(PROTECTED_TIERS, 1), new_key())

    @classmethod
    def unwrap_ring(cls, masters: Iterable[bytes], ring: dict[str, Any]) -> TierKeys:
        """Open a stored ring ({master_id, <tier>: {current, keys: {version: wrapped}}}) with whichever master fits."""
        master = next((m for m in masters if master_id(m) == ring["master_id"]), None)
        if master is None:
            raise KeyMaterialError(f"no configured master key opens the key ring of {ring.get('community', '?')} "
                                   "(set LINLI_MASTER_KEY_PREVIOUS while a master-key rotation is under way)")
        keys = {tier: {int(v): unwrap(master, w) for v, w in ring[tier]["keys"].items()} for tier in PROTECTED_TIERS}
        return cls(keys, {tier: ring[tier]["current"] for tier in PROTECTED_TIERS}, unwrap(master, ring["index_key"]))

    def wrap_ring(self, master: bytes) -> dict[str, Any]:
        """The storable form under `master` (also how a master-key rotation re-wraps)."""
        return {"master_id": master_id(master), "index_key": wrap(master, self.index_key),
                **{tier: {"current": self.current[tier],
                          "keys": {str(v): wrap(master, k) for v, k in sorted(self.keys[tier].items())}}
                   for tier in PROTECTED_TIERS}}

    def add_version(self, tier: str) -> int:
        """Start a new tier-key version; new data keys are wrapped under it from now on."""
        version = max(self.keys[tier]) + 1
        self.keys[tier][version] = new_key()
        self.current[tier] = version
        return version

    def drop_old_versions(self, tier: str) -> None:
        """After every data key was re-wrapped under the current version."""
        self.keys[tier] = {self.current[tier]: self.keys[tier][self.current[tier]]}

    def wrap_data_key(self, tier: str, key: bytes, version: int) -> dict[str, Any]:
        tier_version = self.current[tier]
        return {"version": version, "tier_version": tier_version, "wrapped": wrap(self.keys[tier][tier_version], key)}

    def unwrap_data_key(self, tier: str, entry: dict[str, Any]) -> DataKey:
        return DataKey(self.unwrap_raw(tier, entry), entry["version"])

    def unwrap_raw(self, tier: str, entry: dict[str, Any]) -> bytes:
        """The data key's bytes: only to wrap it again, for a phone (keys.wrap_for_phone)."""
        kek = self.keys[tier].get(entry["tier_version"])
        if kek is None:
            raise KeyMaterialError(f"{tier} tier key version {entry['tier_version']} is not in the key ring")
        return unwrap(kek, entry["wrapped"])


WRITE_KEY_TIER = "core"  # what phones may record without reading: health and finance values


def _write_key_context(record_id: str) -> FieldContext:
    return FieldContext(record_id, "write_private", WRITE_KEY_TIER)


def _new_keys(tier_keys: TierKeys, record_id: str, tiers: Iterable[str], versions: dict[str, int]) -> dict[str, Any]:
    """Fresh data keys for `tiers` (each one version past `versions`), wrapped under the tier keys; with the
    core tier, a fresh write key: its public half in clear (phones seal core values with it), its private half
    sealed under the new core data key."""
    fields: dict[str, Any] = {}
    for tier in tiers:
        key, version = new_key(), versions.get(tier, 0) + 1
        fields[tier] = tier_keys.wrap_data_key(tier, key, version)
        if tier == WRITE_KEY_TIER:
            core = DataKey(key, version)
            write = WriteKey.generate(core.version)
            fields["write_public"] = b64url(write.public_raw)
            fields["write_private"] = core.seal_bytes(_write_key_context(record_id), write.private_der())
    return fields


def new_data_key_record(tier_keys: TierKeys, record_id: str) -> dict[str, Any]:
    """A new resident's data keys for every protected tier, and their write key (`_new_keys`)."""
    return _new_keys(tier_keys, record_id, PROTECTED_TIERS, {})


def rotated_record(tier_keys: TierKeys, record: dict[str, Any], tiers: Iterable[str]) -> dict[str, Any]:
    """The record with a new version of each named tier's data key (and, with the core tier, a new write key):
    what is sealed from now on opens only under keys nobody held before. The replaced versions are kept under
    `older` (and `older_write_private`), so what they sealed still opens for whoever may read it."""
    tiers = [t for t in PROTECTED_TIERS if t in tiers]
    older = {t: list(entries) for t, entries in record.get("older", {}).items()}
    for tier in tiers:
        older.setdefault(tier, []).append(record[tier])
    rotated = {**record, **_new_keys(tier_keys, record["_id"], tiers, {t: record[t]["version"] for t in tiers}),
               "older": older}
    if WRITE_KEY_TIER in tiers:
        rotated["older_write_private"] = [*record.get("older_write_private", []), record["write_private"]]
    return rotated


def without_older_keys(record: dict[str, Any]) -> dict[str, Any]:
    """The record keeping only its current keys: once every ciphertext was re-sealed under them (a re-key)."""
    return {k: v for k, v in record.items() if k not in ("older", "older_write_private")}


def most_older_versions(record: dict[str, Any]) -> int:
    """How many older versions the record keeps of its most rotated tier."""
    return max((len(entries) for entries in record.get("older", {}).values()), default=0)


# Not frozen: a write key is added when first opened, and a frozen one costs ~0.5 µs a resident more; with slots,
# made (one a resident a page or a sync opens) and read faster.
@dataclass(slots=True)
class ResidentKeys:
    """One resident's unwrapped keys: the current data key per tier to seal with, and every version (data keys
    and, with the core tier, write keys) to open with.

    Older versions are those a rotation replaced (someone who held them lost the right to): they open what
    was sealed before, and seal nothing new. A write key's private half is opened from `sealed_write_keys` (core
    version → sealed under that core data key) the first time a value sealed for it is opened: an EC key parse
    costs several times a record's fields, and only values phones sealed for the resident (v2) need one.
    """

    current: dict[str, DataKey]
    versions: dict[tuple[str, int], DataKey | WriteKey]
    record_id: str = ""
    sealed_write_keys: dict[int, str] = field(default_factory=dict)

    def for_envelope(self, tier: str, raw: bytes) -> DataKey | WriteKey | None:
        """The key that opens decoded envelope bytes of this tier. A data key's envelope (version 3, or 1 sealed
        before it), nearly every field, names its key version in bytes 1-4 and is looked up straight; anything else
        goes by `for_header`."""
        key = self.versions.get((tier, int.from_bytes(raw[1:5], "big"))) if raw[:1] in _DATA_KEY_TAGS else None
        return key if key is not None else self.for_header(tier, *header_of(raw))

    def for_header(self, tier: str, version: int, key_version: int) -> DataKey | WriteKey | None:
        """The key that opens an envelope of this version and key version (see envelope.header_of)."""
        if version == SEALED_VERSION:
            return self._write_key(key_version) if tier == WRITE_KEY_TIER else None
        return self.versions.get((tier, key_version))

    def _write_key(self, version: int) -> DataKey | WriteKey | None:
        key = self.versions.get(("write", version))
        if key is None:
            core, sealed = self.versions.get((WRITE_KEY_TIER, version)), self.sealed_write_keys.get(version)
            if isinstance(core, DataKey) and sealed is not None:
                # Two threads sharing cached keys (sync/ciphertext.py) may both open it: the same key, kept once.
                key = self.versions[("write", version)] = _open_write_key(core, self.record_id, sealed)
        return key


def _open_write_key(core: DataKey, record_id: str, sealed_private: str) -> WriteKey:
    return WriteKey.from_der(core.open_bytes(_write_key_context(record_id), sealed_private), core.version)


def open_data_keys(tier_keys: TierKeys, record: dict[str, Any],
                   tiers: Iterable[str] = PROTECTED_TIERS) -> ResidentKeys:
    """Unwrap the named tiers of a stored data-key record, current and older versions (write keys: when first
    needed, see ResidentKeys)."""
    tiers = tuple(tiers)
    current = {tier: tier_keys.unwrap_data_key(tier, record[tier]) for tier in tiers}
    versions: dict[tuple[str, int], DataKey | WriteKey] = {(t, k.version): k for t, k in current.items()}
    for tier in tiers:
        versions.update({(tier, e["version"]): tier_keys.unwrap_data_key(tier, e)
                         for e in record.get("older", {}).get(tier, [])})
    sealed_write_keys = {key_version_of(sealed): sealed
                         for sealed in [record["write_private"], *record.get("older_write_private", [])]
                         } if WRITE_KEY_TIER in tiers else {}
    return ResidentKeys(current, versions, record["_id"], sealed_write_keys)


def _rewrap(tier_keys: TierKeys, tier: str, entry: dict[str, Any]) -> dict[str, Any]:
    key = unwrap(tier_keys.keys[tier][entry["tier_version"]], entry["wrapped"])
    return tier_keys.wrap_data_key(tier, key, entry["version"])


def rewrap_data_key_record(tier_keys: TierKeys, record: dict[str, Any]) -> dict[str, Any]:
    """The record with the same data keys wrapped under the current tier-key versions (tier-key rotation)."""
    rewrapped = {**record, **{tier: _rewrap(tier_keys, tier, record[tier]) for tier in PROTECTED_TIERS}}
    if "older" in record:
        rewrapped["older"] = {t: [_rewrap(tier_keys, t, e) for e in entries] for t, entries in record["older"].items()}
    return rewrapped
