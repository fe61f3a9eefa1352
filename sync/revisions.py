"""Revisions just read from CouchDB, kept so that the `_bulk_get` which follows needs no second read.

Replication reads `_changes`, then `_bulk_get`s the revisions it lacks. The
gateway must read `_changes` with documents anyway (to decide who may see
them), so reading them again for `_bulk_get` doubled CouchDB's work; and 500
phones woken by one change asked CouchDB for the same revision 500 times.

`_bulk_get` as PouchDB asks it (`revs=true`) needs each revision's history
(`_revisions`), which CouchDB's changes feed does not give. A first revision's
history is itself, so those are kept as read; a later revision is kept only
with a history read from CouchDB (the live follower reads it once per change,
`hub.py`). A cached revision is served only for an exact (id, rev) request:
its content never changes. Access is decided when serving (`may_see`), never
by the cache, so one cache serves every user of the process. Bounded: the
least recently used revision goes first; a miss is read from CouchDB as before.
"""

from __future__ import annotations

from collections import OrderedDict

from server.domain.access import Doc

MAX_REVISIONS = 10_000  # ≈ ten phones' initial syncs in flight (PouchDB reads ahead up to 10 batches of 100)


class RevisionCache:
    def __init__(self, max_revisions: int = MAX_REVISIONS) -> None:
        self.max_revisions = max_revisions
        self._docs: OrderedDict[tuple[str, str], Doc] = OrderedDict()

    def remember(self, doc: Doc) -> None:
        """Keep a revision read without its history (a changes feed): possible for a first revision only."""
        rev = doc.get("_rev")
        if isinstance(rev, str) and rev.startswith("1-") and "_revisions" not in doc:
            self._keep({**doc, "_revisions": {"start": 1, "ids": [rev[2:]]}})

    def remember_with_history(self, doc: Doc) -> None:
        """Keep a revision read with `revs=true`."""
        if "_revisions" in doc:
            self._keep(doc)

    def get(self, doc_id: str, rev: str) -> Doc | None:
        """The revision with its `_revisions`, if kept; treat it as read-only."""
        doc = self._docs.get((doc_id, rev))
        if doc is not None:
            self._docs.move_to_end((doc_id, rev))
        return doc

    def _keep(self, doc: Doc) -> None:
        self._docs[(doc["_id"], doc["_rev"])] = doc
        self._docs.move_to_end((doc["_id"], doc["_rev"]))
        while len(self._docs) > self.max_revisions:
            self._docs.popitem(last=False)
