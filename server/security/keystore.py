"""Where the key hierarchy lives in CouchDB, and the rotations that re-wrap it.

    keyring:<community>   accounts database: the community's tier keys, wrapped under the master key
    data_key:<resident>   main database: the resident's data keys, wrapped under the tier keys

Neither is usable without the master key, which is never stored in CouchDB.
A process caches unwrapped tier keys by the ring's revision; when a wrapped data
key names a tier-key version it has not seen, it reloads the ring (another
process rotated it), so rotations need no restart and no downtime.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from pycouchdb.exceptions import Conflict
from tqdm import tqdm

from crypto.envelope import unb64url
from crypto.keyring import (
    PROTECTED_TIERS,
    WRITE_KEY_TIER,
    ResidentKeys,
    TierKeys,
    new_data_key_record,
    open_data_keys,
    rewrap_data_key_record,
)
from crypto.keys import KeyMaterialError
from server.domain.declaration import validate
from server.store.couch import Couch, bulk_save, docs_of_type, get_many, get_or_none

T = TypeVar("T")


class ShreddedError(LookupError):
    """The resident's data keys are gone (crypto-shredded, or never made): their data cannot be opened."""


def _key_of(doc_id: str) -> str:
    return doc_id.split(":", 1)[1]


def keyring_id(community: str) -> str:
    return f"keyring:{_key_of(community)}"


def data_key_id(resident: str) -> str:
    return f"data_key:{_key_of(resident)}"


class KeyStore:
    def __init__(self, couch: Couch, master_keys: tuple[bytes, ...]) -> None:
        if not master_keys:
            raise KeyMaterialError("no master key configured")
        self.couch = couch
        self.master_keys = master_keys
        self._rings: dict[str, tuple[str, TierKeys]] = {}  # community → (revision, keys)

    def __repr__(self) -> str:
        return f"KeyStore(communities cached={len(self._rings)})"

    # ------------------------------------------------------------ tier keys

    def tier_keys(self, community: str, street: str, *, reload: bool = False) -> TierKeys:
        """The community's tier keys, created on first use."""
        if not reload and community in self._rings:
            return self._rings[community][1]
        doc = get_or_none(self.couch.accounts, keyring_id(community))
        if doc is None:
            doc = self._create_ring(community, street)
        keys = TierKeys.unwrap_ring(self.master_keys, doc)
        self._rings[community] = (doc["_rev"], keys)
        return keys

    def _create_ring(self, community: str, street: str) -> dict[str, Any]:
        doc = {"_id": keyring_id(community), "type": "keyring", "street": street, "community": community,
               **TierKeys.new().wrap_ring(self.master_keys[0]), "indexes_server_only": True}
        validate(doc)
        try:
            return self.couch.accounts.save(doc)
        except Conflict:  # another process made it first: use theirs
            return self.couch.accounts.get(doc["_id"])

    def save_tier_keys(self, community: str, keys: TierKeys, **marks: Any) -> None:
        """Store the ring wrapped under the current master key, with `marks` (fields of the ring document, see
        server/security/number_index.py); fails on a concurrent change."""
        doc = self.couch.accounts.get(keyring_id(community))
        doc.update(keys.wrap_ring(self.master_keys[0]), **marks)
        validate(doc)
        saved = self.couch.accounts.save(doc)
        self._rings[community] = (saved["_rev"], keys)

    def communities(self) -> list[str]:
        return [ring["community"] for ring in docs_of_type(self.couch.accounts, "keyring")]

    # ------------------------------------------------------------ data keys

    def new_data_key_doc(self, resident: dict[str, Any]) -> dict[str, Any]:
        """A data_key document for a new resident (not saved: the caller saves it with the resident)."""
        keys = self.tier_keys(resident["community"], resident["street"])
        doc_id = data_key_id(resident["_id"])
        doc = {"_id": doc_id, "type": "data_key", "resident": resident["_id"],
               **{k: resident[k] for k in ("street", "community", "grid")}, **new_data_key_record(keys, doc_id)}
        validate(doc)
        return doc

    def _with_ring(self, record: dict[str, Any], unwrap: Callable[[TierKeys], T]) -> T:
        """unwrap(the record's community ring), reloading the ring once if it was rotated meanwhile."""
        try:
            return unwrap(self.tier_keys(record["community"], record["street"]))
        except KeyMaterialError:
            return unwrap(self.tier_keys(record["community"], record["street"], reload=True))

    def open_record(self, record: dict[str, Any], tiers: tuple[str, ...] = PROTECTED_TIERS, *,
                    write_keys: bool = True) -> ResidentKeys:
        """Unwrap a data_key document's named tiers (see keyring.open_data_keys for `write_keys`)."""
        return self._with_ring(record, lambda keys: open_data_keys(keys, record, tiers, write_keys=write_keys))

    def data_keys(self, resident: str, tiers: tuple[str, ...] = PROTECTED_TIERS) -> ResidentKeys:
        record = get_or_none(self.couch.main, data_key_id(resident))
        if record is None or record.get("_deleted"):
            raise ShreddedError(f"{resident} has no data keys (erased)")
        return self.open_record(record, tiers)

    # ------------------------------------------------------------ rotation

    def rotate_master(self, progress: bool = False) -> int:
        """Re-wrap every key ring under the current master key (LINLI_MASTER_KEY; the old one as _PREVIOUS)."""
        communities = self.communities()
        for community in tqdm(communities, desc="key rings", unit="ring", disable=not progress):
            ring = self.couch.accounts.get(keyring_id(community))
            self.save_tier_keys(community, TierKeys.unwrap_ring(self.master_keys, ring))
        return len(communities)

    def rotate_tier(self, community: str, street: str, tier: str, progress: bool = False) -> int:
        """New tier-key version; every data key of the community re-wrapped under it; the old version dropped.

        Readers keep working throughout: each data key names the tier-key version that wraps it, and the
        ring keeps the old version until the last data key has moved.
        """
        keys = self.tier_keys(community, street, reload=True)
        keys.add_version(tier)
        self.save_tier_keys(community, keys)
        moved = self._rewrap_community(community, keys, progress)
        keys.drop_old_versions(tier)
        self.save_tier_keys(community, keys)
        return moved

    def _rewrap_community(self, community: str, keys: TierKeys, progress: bool) -> int:
        moved = 0
        records = list(self._data_key_docs(community))
        with tqdm(total=len(records), desc=f"data keys {community}", unit="key", disable=not progress) as bar:
            for start in range(0, len(records), 500):
                batch = [rewrap_data_key_record(keys, r) for r in records[start:start + 500]]
                results = bulk_save(self.couch.main, batch)
                failed = [r for r in results if r.error]
                if failed:
                    raise RuntimeError(f"re-wrapping {failed[0].id} failed: {failed[0].error}; run the rotation again")
                moved += len(batch)
                bar.update(len(batch))
        return moved

    def _data_key_docs(self, community: str) -> Iterator[dict[str, Any]]:
        for row in self.couch.main.query("linli/by_place", key=[community, "data_key"], reduce="false",
                                         include_docs="true", as_list=True):
            yield row["doc"]

    def rekey(self, resident: str, reseal: Callable[[ResidentKeys], int]) -> int:
        """New data keys for one resident (a grant leaked): the old ones can no longer open anything afterwards.

        The new keys are stored first with the old ones kept under `rekeying`, so readers open both during
        the re-encryption; `reseal(keys)` re-encrypts the resident's documents (sealing with keys.current);
        then the old keys are dropped. Interrupted, it can simply be run again.
        """
        record = self.couch.main.get(data_key_id(resident))
        keys = self.tier_keys(record["community"], record["street"])
        if "rekeying" not in record:
            record["rekeying"] = {t: record[t] for t in PROTECTED_TIERS}
            record["rekeying_write_private"] = record["write_private"]
            record.update(new_data_key_record(keys, record["_id"], {t: record[t]["version"] for t in PROTECTED_TIERS}))
            validate(record)
            record = self.couch.main.save(record)
        resealed = reseal(self.open_record(record))
        del record["rekeying"], record["rekeying_write_private"]
        self.couch.main.save(record)
        return resealed

    def raw_data_keys(self, wanted: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[bytes, int]]:
        """(resident, tier) → the current data key as bytes and its version, to wrap for a phone; one request
        for all the records. Erased residents are left out."""
        wanted = list(wanted)
        records = get_many(self.couch.main, {data_key_id(resident) for resident, _ in wanted})
        result = {}
        for resident, tier in wanted:
            record = records.get(data_key_id(resident))
            if record is not None:
                raw = self._with_ring(record, lambda keys, r=record, t=tier: keys.unwrap_raw(t, r[t]))
                result[(resident, tier)] = raw, record[tier]["version"]
        return result

    def write_public_key(self, resident: str) -> tuple[bytes, int]:
        """The resident's public write key and its version: what a phone seals core values with."""
        record = get_or_none(self.couch.main, data_key_id(resident))
        if record is None or record.get("_deleted"):
            raise ShreddedError(f"{resident} has no data keys (erased)")
        return unb64url(record["write_public"]), record[WRITE_KEY_TIER]["version"]
