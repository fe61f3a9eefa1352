"""Figures kept from CouchDB's changes feed after a checkpoint (a `_local` document: never replicated, never in a
backup): which documents changed since it, and moving it once everything they name is counted again. Used by the
pool's kept months (server/services/pool_months.py) and the dashboard's cells (server/services/figures_cells.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pycouchdb
from pycouchdb.exceptions import Conflict

from server.store.couch import get_or_none

PAGE = 10_000  # changes read per request
TRIES = 3  # counting a document again after a conflict (another process wrote it meanwhile)


@dataclass(frozen=True)
class Since:
    """What changed after the checkpoint: `changed` is None when there is no checkpoint yet or more changed than
    the caller counts one by one (count everything again); `last_seq` is where the feed ended."""

    checkpoint: dict[str, Any] | None
    changed: list[str] | None
    last_seq: Any


def changed_since(db: pycouchdb.client.Database, checkpoint_id: str, prefixes: Iterable[str], most: int) -> Since:
    """The ids starting with one of `prefixes` changed after the checkpoint `checkpoint_id`, at most `most`."""
    checkpoint = get_or_none(db, checkpoint_id)
    if checkpoint is None:
        return Since(None, None, None)
    changed, seq = changed_after(db, checkpoint["seq"], prefixes, most)
    return Since(checkpoint, changed, seq)


def changed_after(db: pycouchdb.client.Database, seq: Any, prefixes: Iterable[str],
                  most: int) -> tuple[list[str] | None, Any]:
    """The ids starting with one of `prefixes` changed after the sequence `seq` (None if more than `most`), and
    the sequence the feed ended at."""
    wanted, changed = tuple(prefixes), []
    while True:
        page = db.resource.get("_changes", params={"since": str(seq), "limit": str(PAGE)})[1]
        changed += [r["id"] for r in page["results"] if r["id"].startswith(wanted)]
        seq = page["last_seq"]
        if len(changed) > most:
            return None, seq
        if len(page["results"]) < PAGE:
            return changed, seq


def current_seq(db: pycouchdb.client.Database) -> Any:
    """The database's sequence now: what a changes feed read later starts after."""
    return db.resource.get("")[1]["update_seq"]


def move(db: pycouchdb.client.Database, checkpoint_id: str, checkpoint: dict[str, Any] | None, seq: Any) -> None:
    """Set the checkpoint to `seq`; if another process moved it meanwhile, theirs stands (the next run starts from
    it)."""
    if checkpoint is not None and checkpoint.get("seq") == seq:
        return
    with contextlib.suppress(Conflict):
        db.save({"_id": checkpoint_id, "seq": seq, **({"_rev": checkpoint["_rev"]} if checkpoint else {})})


def write_counted(db: pycouchdb.client.Database, doc_id: str, count: Callable[[], dict[str, Any] | None]) -> str:
    """Read the kept document's revision, then `count` it (so the count is at least as new as what it replaces),
    then write it against that revision unless nothing changed; a conflict counts again. A count of None where
    nothing is kept writes nothing."""
    for _ in range(TRIES):
        current = get_or_none(db, doc_id)
        doc = count()
        if doc is None and current is None:
            return doc_id
        if current is not None:
            doc = doc or {"_id": doc_id, "_deleted": True}
            if all(current.get(k) == v for k, v in doc.items()):
                return doc_id
            doc["_rev"] = current["_rev"]
        try:
            db.save(doc)
            return doc_id
        except Conflict:
            continue
    raise Conflict(doc_id)
