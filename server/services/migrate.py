"""`linli migrate`: stored documents written under an older declaration version upgraded to the current one
(server/domain/migrations.py), in batches, while the server runs (issue 20 item 4).

Only the types that are past version 1 are read, each by its id range (ids are `<type>:<key>`) in the database it
lives in (most in the main database; `ledger_lock` and `venue_code` in the accounts database), a batch at a time.
Each batch's upgrades are written as ordinary edits on the revisions read: one a page or a phone changed meanwhile
is a conflict (409), read again and upgraded again, so no one's edit is lost.

Resumable: after each batch a checkpoint (`_local/linli-migrate` in the main database: never replicated, never in
a backup) records the last id done. A run killed anywhere starts from the checkpoint: a batch written but not yet
checkpointed is read again and finds its documents current (nothing is written twice), and no id past the
checkpoint was passed over. A run that ends deletes the checkpoint, so the next one looks at everything again
(finding, normally, nothing). `dry_run` reads the same documents and writes nothing, not even the checkpoint.

An upgrade that drops a field (a secret once kept in the clear) leaves the old value in the revision it replaced
until the database is compacted: a run that wrote anything asks each database it wrote to compact (CouchDB and
pouchdb-server drop the bodies of replaced revisions then).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from server.domain import migrations
from server.domain.declaration import DOC_TYPES
from server.store.couch import Couch, bulk_save, get_or_none

CHECKPOINT_ID = "_local/linli-migrate"
BATCH = 200
_RETRIES = 5  # a document edited this often during its own upgrade is left for the next run (and said so)

Doc = dict[str, Any]
Progress = Callable[[str, int], None]  # (type, documents read so far): called after each batch, before its checkpoint


@dataclass(frozen=True)
class Change:
    doc_id: str
    from_version: int
    to_version: int
    fields: list[str]  # names only: some fields are protected


@dataclass
class Report:
    changes: list[Change] = field(default_factory=list)
    read: int = 0
    left: list[str] = field(default_factory=list)  # not stored (edited too often meanwhile, refused): run again
    resumed_after: str | None = None
    compacted: list[str] = field(default_factory=list)  # the databases written to, asked to compact


def behind_types() -> list[str]:
    """The types past version 1: the only ones whose stored documents may be older than their declaration."""
    return sorted(name for name, t in DOC_TYPES.items() if t.version > 1)


def migrate(couch: Couch, *, dry_run: bool = False, batch: int = BATCH, progress: Progress | None = None) -> Report:
    """Upgrade every stored document behind its type's version (see the module's docstring); what it changed."""
    db = couch.main  # where the checkpoint is kept
    checkpoint = None if dry_run else get_or_none(db, CHECKPOINT_ID)
    report = Report(resumed_after=checkpoint.get("after") if checkpoint else None)
    written: set[str] = set()
    for type_name in behind_types():
        start = _resume_from(checkpoint, type_name)
        if start is None:
            continue
        source = DOC_TYPES[type_name].database
        for docs in _batches(couch.db(source), type_name, start, batch):
            report.read += len(docs)
            behind = [d for d in docs if migrations.is_behind(d)]
            report.changes += [_change(d) for d in behind]
            if behind and not dry_run:
                report.left += _write(couch.db(source), behind)
                written.add(source)
            if progress:
                progress(type_name, report.read)
            if not dry_run:
                checkpoint = _save_checkpoint(db, checkpoint, type_name, docs[-1]["_id"])
    if checkpoint and not dry_run:
        db.resource._request_response("DELETE", CHECKPOINT_ID, params={"rev": checkpoint["_rev"]})
    for name in sorted(written):
        couch.db(name).resource.post("_compact", json={})
    report.compacted = sorted(written)
    return report


def _resume_from(checkpoint: Doc | None, type_name: str) -> str | None:
    """The id after which to read `type_name`: its start, the checkpoint's id, or None for a type already done."""
    if checkpoint is None:
        return f"{type_name}:"
    if checkpoint["doing"] == type_name:
        return checkpoint["after"]
    return None if type_name < checkpoint["doing"] else f"{type_name}:"  # types are migrated in name order


def _batches(db: Any, type_name: str, after: str, size: int) -> Iterator[list[Doc]]:
    """The type's documents after id `after`, in id order, `size` at a time."""
    while True:
        rows = db.all(startkey=after, endkey=f"{type_name}:\ufff0", limit=size + 1, as_list=True)
        docs = [r["doc"] for r in rows if r["id"] != after and r.get("doc")][:size]
        if not docs:
            return
        yield docs
        after = docs[-1]["_id"]


def _change(doc: Doc) -> Change:
    new = migrations.upgrade(doc)
    return Change(doc["_id"], migrations.version_of(doc), migrations.version_of(new),
                  migrations.changed_fields(doc, new))


def _write(db: Any, docs: list[Doc]) -> list[str]:
    """Store the upgrades (bulk_save upgrades what it writes) as edits of the revisions read; a document changed
    meanwhile is read again and upgraded again. Returns the ids not stored: still in conflict after _RETRIES
    tries, or refused (named with CouchDB's reason)."""
    refused: list[str] = []
    for _ in range(_RETRIES):
        failed = [r for r in bulk_save(db, docs) if r.error]
        refused += [f"{r.id} ({r.error}: {r.reason})" for r in failed if r.error != "conflict"]
        conflicted = [r.id for r in failed if r.error == "conflict"]
        docs = [d for d in (get_or_none(db, i) for i in conflicted) if d and migrations.is_behind(d)]
        if not docs:
            return refused
    return refused + [d["_id"] for d in docs]


def _save_checkpoint(db: Any, checkpoint: Doc | None, type_name: str, after: str) -> Doc:
    doc = {**(checkpoint or {"_id": CHECKPOINT_ID}), "doing": type_name, "after": after}
    return db.save(doc)
