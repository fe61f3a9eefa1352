"""Finding a resident by phone or ID card number: blind indexes that only the server holds.

A resident's numbers are sealed (contact tier). So that the server can find one by number without storing it in
clear, it keeps `number_index:<resident>` in the accounts database, which is never replicated: the blind index of
each number (crypto/blind_index.py) under the community's index key, which never leaves the server either. No
phone holds an index or an index key: a phone finds a resident by comparing the typed number with the numbers it
may open (pwa/offline/pages.js findByNumber). An index on a phone beside birth date, gender and hukou let a worker
confirm the ID card number of a resident whose contact details they may not open in ~500 guesses (issue 13,
finding 4; crypto/README.md "Blind index leakage").

`index` keeps a resident's indexes current when their numbers are at hand (sealing, a conflict resolved);
`candidates` looks a typed number up; `migrate` brings an installation from before (indexes on resident
documents, index keys granted to phones) to this, without losing search.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable
from typing import Any

from crypto.blind_index import blind_index
from crypto.envelope import EnvelopeError
from crypto.fields import is_sealed, open_fields
from crypto.keys import new_key
from server.domain.access import deletion
from server.domain.declaration import BLIND_INDEXED, validate
from server.security.keystore import KeyStore, data_key_id
from server.store.couch import Couch, bulk_save, docs_of_type, get_many, iter_view_docs

Doc = dict[str, Any]
Numbers = dict[str, str | None]  # field ("phone", "id_card") → its plaintext, None when the resident has none


def number_index_id(resident: str) -> str:
    return f"number_index:{resident.split(':', 1)[1]}"


def plain_numbers(resident: Doc) -> Numbers:
    """The numbers of a resident about to be sealed, in plain (None: none); a number already sealed is left out,
    so its index stays as it is."""
    return {field: resident.get(field) for field in BLIND_INDEXED if not is_sealed(resident.get(field))}


def index(couch: Couch, keystore: KeyStore, residents: Iterable[tuple[Doc, Numbers]]) -> None:
    """Bring the number_index documents of these residents up to date with the numbers given (other fields'
    indexes kept); a resident left with no number has none."""
    residents = list(residents)
    current = get_many(couch.accounts, [number_index_id(r["_id"]) for r, _ in residents])
    writes = []
    for resident, numbers in residents:
        old = current.get(number_index_id(resident["_id"]))
        doc = _indexed(keystore.tier_keys(resident["community"], resident["street"]).index_key, resident, numbers,
                       old)
        if doc == old:
            continue
        if not _has_index(doc):
            if old:
                writes.append({"_id": old["_id"], "_rev": old["_rev"], "_deleted": True})
            continue
        validate(doc)
        writes.append(doc)
    _save(couch.accounts, writes)


def _indexed(index_key: bytes, resident: Doc, numbers: Numbers, old: Doc | None) -> Doc:
    doc = {**(old or {"_id": number_index_id(resident["_id"]), "type": "number_index"}),
           **{k: resident[k] for k in ("street", "community", "grid")}, "resident": resident["_id"]}
    for field, value in numbers.items():
        if value:
            doc[BLIND_INDEXED[field]] = blind_index(index_key, field, value)
        else:
            doc.pop(BLIND_INDEXED[field], None)
    return doc


def _has_index(doc: Doc) -> bool:
    return any(doc.get(field) for field in BLIND_INDEXED.values())


def opened_numbers(couch: Couch, keystore: KeyStore, residents: list[Doc]) -> list[tuple[Doc, Numbers]]:
    """Each resident with their numbers opened (one request for all their data keys). An erased resident's, or
    a ciphertext that does not open, count as none: nothing can confirm a match with them anyway."""
    records = get_many(couch.main, [data_key_id(r["_id"]) for r in residents])
    opened = []
    for resident in residents:
        record = records.get(data_key_id(resident["_id"]))
        values: dict[str, Any] = {}
        if record is not None:
            with contextlib.suppress(EnvelopeError):
                values = open_fields(resident, keystore.open_record(record, ("contact",)), list(BLIND_INDEXED))
        opened.append((resident, {field: values.get(field) for field in BLIND_INDEXED}))
    return opened


def candidates(couch: Couch, keystore: KeyStore, community: str, street: str, field: str, number: str) -> list[str]:
    """Residents of the community whose `field` may be `number`: an index is 32 bits and may collide, so each must
    be confirmed by opening the number."""
    key = blind_index(keystore.tier_keys(community, street).index_key, field, number)
    rows = couch.accounts.query("linli/by_number_index", key=[community, field, key], as_list=True)
    return [row["value"] for row in rows]


def forget(couch: Couch, resident: str) -> None:
    """Delete a resident's indexes (erasure: an index of an erased number is still about them)."""
    doc = get_many(couch.accounts, [number_index_id(resident)]).get(number_index_id(resident))
    if doc:
        _save(couch.accounts, [{"_id": doc["_id"], "_rev": doc["_rev"], "_deleted": True}])


def migrate(couch: Couch, keystore: KeyStore) -> str | None:
    """An installation from before server-only indexes: for each community whose key ring is not marked
    `indexes_server_only`, a new index key (every phone of the community may hold the old one), every resident's
    numbers opened and indexed under it in number_index documents, the old index fields removed from resident
    documents, and then the ring saved with the new key and the mark (one write, last, so an interrupted run is
    simply run again). Every old index grant is deleted, which also deletes it on its phone at the next sync.
    Returns a note for the operator, or None if there was nothing to do."""
    rings = [ring for ring in docs_of_type(couch.accounts, "keyring") if not ring.get("indexes_server_only")]
    residents = 0
    for ring in rings:
        community, street = ring["community"], ring["street"]
        keys = dataclasses.replace(keystore.tier_keys(community, street, reload=True), index_key=new_key())
        docs = list(iter_view_docs(couch.main, "linli/by_place", [community, "resident"]))
        opened = opened_numbers(couch, keystore, docs)
        current = get_many(couch.accounts, [number_index_id(r["_id"]) for r in docs])
        built = [_indexed(keys.index_key, r, numbers, current.get(number_index_id(r["_id"]))) for r, numbers in opened]
        _save(couch.accounts, [doc for doc in built if _has_index(doc)])
        _save(couch.main, [{k: v for k, v in r.items() if k not in BLIND_INDEXED.values()} for r in docs
                           if any(i in r for i in BLIND_INDEXED.values())])
        keystore.save_tier_keys(community, keys, indexes_server_only=True)
        residents += len(docs)
    grants = docs_of_type(couch.main, "index_grant")
    _save(couch.main, [deletion(g) for g in grants])
    if not rings and not grants:
        return None
    return (f"blind indexes moved off phones: {len(rings)} communities re-indexed under new index keys "
            f"({residents} residents), {len(grants)} index grants deleted (issue 13, finding 4)")


def _save(db: Any, docs: list[Doc]) -> None:
    for start in range(0, len(docs), 1000):
        failed = [r for r in bulk_save(db, docs[start:start + 1000]) if r.error]
        if failed:
            raise RuntimeError(f"number index {failed[0].id}: {failed[0].error}; run it again")
