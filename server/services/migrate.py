"""`linli migrate`: stored documents written under an older declaration version upgraded to the current one
(server/domain/migrations.py), in batches, while the server runs (issue 20 item 4).

Beside the upgrades, fills (`FILLS`): fields an older document lacks that no pure upgrade can write (the migrations
import the standard library only and read no other document): a voucher's QR drawing, from before it was kept with
the voucher, and a redemption's `holder`, from before redemptions named it, which only its voucher tells. A fill
leaves a document as it is when there is nothing to fill (or nothing certain to fill it with), so a second run finds
nothing to write; it changes no version. One left without its field for want of anything certain is listed in the
report (`unfilled`), so that an operator knows which are left, and why.

Only the types that are past version 1 or have a fill are read, each by its id range (ids are `<type>:<key>`) in
the database it lives in (most in the main database; `ledger_lock` and `venue_code` in the accounts database), a
batch at a time. Each batch's upgrades are written as ordinary edits on the revisions read: one a page or a phone
changed meanwhile is a conflict (409), read again and upgraded again, so no one's edit is lost.

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

from server.domain import migrations, points
from server.domain.declaration import DOC_TYPES
from server.services import qr_drawing
from server.store.couch import Couch, bulk_save, get_many, get_or_none

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
    unfilled: list[str] = field(default_factory=list)  # "<id>: <field>": nothing certain to fill it with; left as is


def _drawn(_db: Any, vouchers: list[Doc]) -> list[Doc]:
    """Vouchers from before their QR code was kept with them: drawn now from their code, as a new voucher's is
    (rewards.py), so that the holder's phone shows it offline too (rewards.html, online or from the replica)."""
    return [v if "qr_path" in v else {**v, **qr_drawing.draw(v["code"])} for v in vouchers]


def _holders(db: Any, redemptions: list[Doc]) -> list[Doc]:
    """Redemptions from before they named the voucher's holder (or made by a partner's phone that did not hold the
    voucher): its voucher's holder, so that the use reaches their phone. Certain: a redemption is its voucher's
    (access.py refuses one whose holder differs) and a voucher is never edited. One whose voucher is not stored, or
    is not the voucher its id is made from, is left without: who used it is not guessed."""
    wanted = {r["voucher"] for r in redemptions if "holder" not in r and isinstance(r.get("voucher"), str)}
    vouchers = get_many(db, wanted)
    return [r if (holder := _holder(r, vouchers.get(str(r.get("voucher"))))) is None else {**r, "holder": holder}
            for r in redemptions]


def _holder(redemption: Doc, voucher: Doc | None) -> str | None:
    """The holder a redemption without one is to name: its voucher's, if that is the voucher its id is made from."""
    if "holder" in redemption or voucher is None or voucher.get("type") != "voucher":
        return None
    holder = voucher.get("holder")
    return holder if isinstance(holder, str) and redemption["_id"] == points.redemption_id(voucher["_id"]) else None


@dataclass(frozen=True)
class Fill:
    """What fills a batch of a type's documents (read from the database `db`), each as it is or filled; `field` is
    the one it fills: a document still without it afterwards is reported unfilled."""

    field: str
    fill: Callable[[Any, list[Doc]], list[Doc]]


FILLS: dict[str, Fill] = {"voucher": Fill("qr_path", _drawn), "redemption": Fill("holder", _holders)}


def types_read() -> list[str]:
    """The types `linli migrate` reads: past version 1 (the only ones whose stored documents may be older than their
    declaration) or with a fill."""
    return sorted({name for name, t in DOC_TYPES.items() if t.version > 1} | set(FILLS))


def migrate(couch: Couch, *, dry_run: bool = False, batch: int = BATCH, progress: Progress | None = None) -> Report:
    """Upgrade every stored document behind its type's version and fill what its type's fill fills (see the module's
    docstring); what it changed."""
    db = couch.main  # where the checkpoint is kept
    checkpoint = None if dry_run else get_or_none(db, CHECKPOINT_ID)
    report = Report(resumed_after=checkpoint.get("after") if checkpoint else None)
    written: set[str] = set()
    for type_name in types_read():
        start = _resume_from(checkpoint, type_name)
        if start is None:
            continue
        source = DOC_TYPES[type_name].database
        for docs in _batches(couch.db(source), type_name, start, batch):
            report.read += len(docs)
            pending = _pending(couch.db(source), docs)
            report.changes += [_change(old, new) for old, new in pending]
            report.unfilled += _unfilled(docs, [new for _, new in pending])
            if pending and not dry_run:
                report.left += _write(couch.db(source), [new for _, new in pending])
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


def _pending(db: Any, docs: list[Doc]) -> list[tuple[Doc, Doc]]:
    """(as read, as it is to be stored) for each of `docs` (of one type) that its fill or its upgrade changes."""
    fill = FILLS.get(docs[0]["type"]) if docs else None
    pairs = zip(docs, fill.fill(db, docs) if fill else docs, strict=True)
    return [(old, new) for old, new in ((old, migrations.upgrade(filled)) for old, filled in pairs) if new is not old]


def _unfilled(docs: list[Doc], changed: list[Doc]) -> list[str]:
    """"<id>: <field>" for each of `docs` (of one type) still without the field its type's fill fills, as stored
    after this batch (`changed`: those the batch changes)."""
    fill = FILLS.get(docs[0]["type"]) if docs else None
    after = {d["_id"]: d for d in changed}
    return [f"{d['_id']}: {fill.field}" for d in docs if fill and fill.field not in after.get(d["_id"], d)]


def _change(old: Doc, new: Doc) -> Change:
    return Change(old["_id"], migrations.version_of(old), migrations.version_of(new),
                  migrations.changed_fields(old, new))


def _write(db: Any, docs: list[Doc]) -> list[str]:
    """Store the documents filled and upgraded (bulk_save upgrades what it writes) as edits of the revisions read; a
    document changed meanwhile is read again, filled and upgraded again. Returns the ids not stored: still in
    conflict after _RETRIES tries, or refused (named with CouchDB's reason)."""
    refused: list[str] = []
    for _ in range(_RETRIES):
        failed = [r for r in bulk_save(db, docs) if r.error]
        refused += [f"{r.id} ({r.error}: {r.reason})" for r in failed if r.error != "conflict"]
        conflicted = [r.id for r in failed if r.error == "conflict"]
        docs = [new for _, new in _pending(db, [d for d in (get_or_none(db, i) for i in conflicted) if d])]
        if not docs:
            return refused
    return refused + [d["_id"] for d in docs]


def _save_checkpoint(db: Any, checkpoint: Doc | None, type_name: str, after: str) -> Doc:
    doc = {**(checkpoint or {"_id": CHECKPOINT_ID}), "doing": type_name, "after": after}
    return db.save(doc)
