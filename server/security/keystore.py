"""Where the key hierarchy lives in CouchDB, and the rotations that re-wrap it.

    keyring:<community>           accounts database: the community's tier keys, wrapped under the master key
    data_key:<resident>           main database: the resident's data keys, wrapped under the tier keys, and
                                  their write key with the installation's statement vouching for it
    installation_key:signing      accounts database: the key those statements are signed with, wrapped under
                                  the master key (crypto/key_statements.py)
    code_key:confirmation         accounts database: the key residents' in-person confirmation codes are derived
                                  from (server/domain/timebank.py code_secret), wrapped under the master key

None is usable without the master key, which is never stored in CouchDB.
A process caches unwrapped tier keys by the ring's revision; when a wrapped data
key names a tier-key version it has not seen, it reloads the ring (another
process rotated it), so rotations need no restart and no downtime.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple, TypeVar

from cryptography.hazmat.primitives.asymmetric import ec
from pycouchdb.exceptions import Conflict
from tqdm import tqdm

from crypto import key_statements
from crypto.envelope import WriteKey, b64url, unb64url
from crypto.keyring import (
    PROTECTED_TIERS,
    WRITE_KEY_TIER,
    ResidentKeys,
    TierKeys,
    master_id,
    new_data_key_record,
    open_data_keys,
    rewrap_data_key_record,
    rotated_record,
    without_older_keys,
)
from crypto.keys import KeyMaterialError, unwrap, wrap
from server.domain.declaration import validate
from server.store.couch import Couch, bulk_save, docs_of_type, get_many, get_or_none

T = TypeVar("T")
INSTALLATION_KEY_ID = "installation_key:signing"
CODE_KEY_ID = "code_key:confirmation"


class GrantableKey(NamedTuple):
    """One resident's data key of one tier as bytes, to wrap for a phone: the current version and the older
    ones a rotation kept (version → bytes)."""

    raw: bytes
    version: int
    older: dict[int, bytes]


class ShreddedError(LookupError):
    """The resident's data keys are gone (crypto-shredded, or never made): their data cannot be opened."""


MATTER_KEY_VERSION = 1  # a secret vote's key is made once and never rotated: its ballots live days


def _key_of(doc_id: str) -> str:
    return doc_id.split(":", 1)[1]


def open_wrapped(master_keys: tuple[bytes, ...], doc: dict[str, Any]) -> bytes:
    """The bytes a key document (installation key, code key, a vote's key) holds wrapped under one of the
    configured master keys; KeyMaterialError if none of them is the one it names."""
    master = next((m for m in master_keys if master_id(m) == doc["master_id"]), None)
    if master is None:
        raise KeyMaterialError(f"no configured master key opens {doc['_id']} (set LINLI_MASTER_KEY_PREVIOUS while "
                               "a master-key rotation is under way)")
    return unwrap(master, doc["wrapped"])


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
        self._installation_key: ec.EllipticCurvePrivateKey | None = None
        self._code_key: bytes | None = None

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

    # ------------------------------------------------------------ the installation key

    def installation_key(self) -> ec.EllipticCurvePrivateKey:
        """The key the installation vouches for write keys with, created on first use."""
        if self._installation_key is None:
            doc = get_or_none(self.couch.accounts, INSTALLATION_KEY_ID) or self._create_installation_key()
            master = next((m for m in self.master_keys if master_id(m) == doc["master_id"]), None)
            if master is None:
                raise KeyMaterialError("no configured master key opens the installation key (set "
                                       "LINLI_MASTER_KEY_PREVIOUS while a master-key rotation is under way)")
            scalar = int.from_bytes(unwrap(master, doc["wrapped"]), "big")
            self._installation_key = ec.derive_private_key(scalar, ec.SECP256R1())
        return self._installation_key

    def installation_public(self) -> str:
        """The installation key's public half, base64url: what gateways and phones pin."""
        return b64url(key_statements.public_raw(self.installation_key()))

    def _installation_key_doc(self, key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
        scalar = key.private_numbers().private_value.to_bytes(32, "big")
        return {"master_id": master_id(self.master_keys[0]), "wrapped": wrap(self.master_keys[0], scalar),
                "public": b64url(key_statements.public_raw(key))}

    def _create_installation_key(self) -> dict[str, Any]:
        # No resident has data keys yet: none was made before statements, and each made from now on is vouched for
        # as it is made (new_data_key_doc), so `linli serve` need not read them all to find one without
        # (Firewall.vouch_for_existing_keys: 15,000 records on the demo's first start).
        new = not self.couch.main.all(startkey="data_key:", endkey="data_key:\ufff0", limit=1, include_docs="false",
                                      as_list=True)
        doc = {"_id": INSTALLATION_KEY_ID, "type": "installation_key",
               "created_at": dt.datetime.now(dt.UTC).isoformat(),
               **self._installation_key_doc(key_statements.new_installation_key()),
               **({"statements_complete": True} if new else {})}
        validate(doc)
        try:
            return self.couch.accounts.save(doc)
        except Conflict:  # another process made it first: use theirs
            return self.couch.accounts.get(INSTALLATION_KEY_ID)

    # ------------------------------------------------------------ the code key

    def code_key(self) -> bytes:
        """The key residents' confirmation codes are derived from (server/domain/timebank.py code_secret), made on
        first use; stored only wrapped under the master key."""
        if self._code_key is None:
            doc = get_or_none(self.couch.accounts, CODE_KEY_ID)
            if doc is None:
                doc = {"_id": CODE_KEY_ID, "type": "code_key", "master_id": master_id(self.master_keys[0]),
                       "wrapped": wrap(self.master_keys[0], secrets.token_bytes(32)),
                       "created_at": dt.datetime.now(dt.UTC).isoformat()}
                validate(doc)
                try:
                    doc = self.couch.accounts.save(doc)
                except Conflict:  # another process made it first: use theirs
                    doc = self.couch.accounts.get(CODE_KEY_ID)
            self._code_key = open_wrapped(self.master_keys, doc)
        return self._code_key

    def vouched(self, record: dict[str, Any]) -> dict[str, Any]:
        """The data_key record with the installation's statement for its current write key. Every code path that
        gives a resident a new write key (a new resident, a re-key, a rotation) stores the record through this."""
        resident = record["resident"]
        version = record[WRITE_KEY_TIER]["version"]
        return {**record, "write_signature": key_statements.vouch(self.installation_key(), resident, version,
                                                                  record["write_public"])}

    # ------------------------------------------------------------ data keys

    def new_data_key_doc(self, resident: dict[str, Any]) -> dict[str, Any]:
        """A data_key document for a new resident (not saved: the caller saves it with the resident)."""
        keys = self.tier_keys(resident["community"], resident["street"])
        doc_id = data_key_id(resident["_id"])
        doc = self.vouched({"_id": doc_id, "type": "data_key", "resident": resident["_id"],
                            **{k: resident[k] for k in ("street", "community", "grid")},
                            **new_data_key_record(keys, doc_id)})
        validate(doc)
        return doc

    def _with_ring(self, record: dict[str, Any], unwrap: Callable[[TierKeys], T]) -> T:
        """unwrap(the record's community ring), reloading the ring once if it was rotated meanwhile."""
        try:
            return unwrap(self.tier_keys(record["community"], record["street"]))
        except KeyMaterialError:
            return unwrap(self.tier_keys(record["community"], record["street"], reload=True))

    def open_record(self, record: dict[str, Any], tiers: tuple[str, ...] = PROTECTED_TIERS) -> ResidentKeys:
        """Unwrap a data_key document's named tiers (keyring.open_data_keys)."""
        return self._with_ring(record, lambda keys: open_data_keys(keys, record, tiers))

    def data_keys(self, resident: str, tiers: tuple[str, ...] = PROTECTED_TIERS) -> ResidentKeys:
        record = get_or_none(self.couch.main, data_key_id(resident))
        if record is None or record.get("_deleted"):
            raise ShreddedError(f"{resident} has no data keys (erased)")
        return self.open_record(record, tiers)

    # ------------------------------------------------------------ secret votes

    def new_matter_key(self, matter: dict[str, Any], now: dt.datetime) -> str:
        """Make and store a secret vote's key (matter_key:<key>, accounts database); its public half, base64url,
        which the matter carries for ballots to be sealed to."""
        private = ec.generate_private_key(ec.SECP256R1())
        scalar = private.private_numbers().private_value.to_bytes(32, "big")
        public = b64url(key_statements.public_raw(private))
        doc = {"_id": "matter_key:" + _key_of(matter["_id"]), "type": "matter_key", "street": matter["street"],
               "community": matter["community"], "matter": matter["_id"], "master_id": master_id(self.master_keys[0]),
               "wrapped": wrap(self.master_keys[0], scalar), "public": public, "created_at": now.isoformat()}
        validate(doc)
        self.couch.accounts.save(doc)
        return public

    def matter_key(self, matter_id: str) -> WriteKey:
        """The secret vote's private key, to open its ballots' choices at close."""
        doc = self.couch.accounts.get("matter_key:" + _key_of(matter_id))
        master = next((m for m in self.master_keys if master_id(m) == doc["master_id"]), None)
        if master is None:
            raise KeyMaterialError("no configured master key opens this vote's key")
        return WriteKey(ec.derive_private_key(int.from_bytes(unwrap(master, doc["wrapped"]), "big"), ec.SECP256R1()),
                        MATTER_KEY_VERSION)

    # ------------------------------------------------------------ rotation

    def rotate_master(self, progress: bool = False) -> int:
        """Re-wrap every key ring under the current master key (LINLI_MASTER_KEY; the old one as _PREVIOUS)."""
        communities = self.communities()
        for community in tqdm(communities, desc="key rings", unit="ring", disable=not progress):
            ring = self.couch.accounts.get(keyring_id(community))
            self.save_tier_keys(community, TierKeys.unwrap_ring(self.master_keys, ring))
        for doc in docs_of_type(self.couch.accounts, "matter_key"):  # secret votes' keys: the same keys, re-wrapped
            if doc["master_id"] != master_id(self.master_keys[0]):
                scalar = unwrap(next(m for m in self.master_keys if master_id(m) == doc["master_id"]), doc["wrapped"])
                self.couch.accounts.save({**doc, "master_id": master_id(self.master_keys[0]),
                                          "wrapped": wrap(self.master_keys[0], scalar)})
        code_key = get_or_none(self.couch.accounts, CODE_KEY_ID)  # the same key: residents' codes stay the same
        if code_key is not None and code_key["master_id"] != master_id(self.master_keys[0]):
            self.couch.accounts.save({**code_key, "master_id": master_id(self.master_keys[0]),
                                      "wrapped": wrap(self.master_keys[0], open_wrapped(self.master_keys, code_key))})
        # The installation key itself stays the same: gateways and phones keep their pinned copy.
        doc = get_or_none(self.couch.accounts, INSTALLATION_KEY_ID)
        if doc is not None and doc["master_id"] != master_id(self.master_keys[0]):
            self.couch.accounts.save({**doc, **self._installation_key_doc(self.installation_key())})
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

    def rotate(self, tiers_of: Mapping[str, Iterable[str]]) -> dict[str, dict[str, Any]]:
        """For each resident, new versions of the data keys of the named tiers (and with core a new write key), the
        replaced ones kept to open what they sealed (keyring.rotated_record); returns resident → stored record
        (erased residents are left out).

        No re-encryption, and one read and one write for the whole batch: a worker moved off a grid rotates the
        keys of ~700 residents at once.
        """
        pending, stored = {r: tuple(t) for r, t in tiers_of.items()}, {}
        for _ in range(3):  # a concurrent change of a record: rotate it again as it now is
            if not pending:
                return stored
            records = get_many(self.couch.main, map(data_key_id, pending))
            # Each rotated record vouched for: a core rotation makes a new write key (key_statements).
            rotated = [self.vouched(self._with_ring(r, lambda keys, r=r, t=pending[r["resident"]]:
                                                    rotated_record(keys, r, t)))
                       for r in records.values() if not r.get("_deleted")]
            for doc in rotated:
                validate(doc)
            results = bulk_save(self.couch.main, rotated)
            for doc, result in zip(rotated, results, strict=True):
                if not result.error:
                    stored[doc["resident"]] = {**doc, "_rev": result.rev}
            pending = {doc["resident"]: pending[doc["resident"]] for doc, result in zip(rotated, results, strict=True)
                       if result.error}
        if not pending:
            return stored
        raise RuntimeError(f"rotating the keys of {next(iter(pending))} kept conflicting; run it again")

    def rekey(self, resident: str, reseal: Callable[[ResidentKeys], int]) -> int:
        """New data keys for one resident, every ciphertext re-sealed under them, then the old ones forgotten: the
        old keys open nothing stored afterwards (a grant leaked, or too many older versions piled up).

        `reseal(keys)` re-encrypts the resident's documents (opening with every version, sealing with
        keys.current). Interrupted, it can simply be run again.
        """
        record = self.rotate({resident: PROTECTED_TIERS}).get(resident)
        if record is None:
            raise ShreddedError(f"{resident} has no data keys (erased)")
        resealed = reseal(self.open_record(record))
        self.couch.main.save(without_older_keys(record))
        return resealed

    def raw_data_keys(self, wanted: Iterable[tuple[str, str]]) -> dict[tuple[str, str], GrantableKey]:
        """(resident, tier) → the data key's bytes, current and older versions, to wrap for a phone; one request
        for all the records. Erased residents are left out."""
        wanted = list(wanted)
        records = get_many(self.couch.main, {data_key_id(resident) for resident, _ in wanted})
        result = {}
        for resident, tier in wanted:
            record = records.get(data_key_id(resident))
            if record is not None:
                result[(resident, tier)] = self._with_ring(record, lambda keys, r=record, t=tier: GrantableKey(
                    keys.unwrap_raw(t, r[t]), r[t]["version"],
                    {e["version"]: keys.unwrap_raw(t, e) for e in r.get("older", {}).get(t, [])}))
        return result

    def write_public_key(self, resident: str) -> tuple[bytes, int]:
        """The resident's public write key and its version: what a phone seals core values with."""
        record = self._data_key_record(resident)
        return unb64url(record["write_public"]), record[WRITE_KEY_TIER]["version"]

    def write_key_copy(self, resident: str) -> dict[str, Any]:
        """The resident's public write key, its version and the installation's statement, as a device document
        carries them for its gateway. A record from before statements is vouched for (and stored) here."""
        record = self._data_key_record(resident)
        if not record.get("write_signature"):
            record = self.couch.main.save(self.vouched(record))
        return {"write_public": record["write_public"], "write_key_version": record[WRITE_KEY_TIER]["version"],
                "write_signature": record["write_signature"]}

    def _data_key_record(self, resident: str) -> dict[str, Any]:
        record = get_or_none(self.couch.main, data_key_id(resident))
        if record is None or record.get("_deleted"):
            raise ShreddedError(f"{resident} has no data keys (erased)")
        return record
