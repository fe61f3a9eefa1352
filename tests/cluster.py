"""What a CouchDB 3 cluster leaves when two nodes each accept a write of one document: revisions of one generation
side by side, one of them CouchDB's winner (the same on every node), the others conflicts. Written here as they
are, with `new_edits=false`, as replication writes them (ARCHITECTURE.md section 6)."""

from __future__ import annotations

import json
from typing import Any

from server.store.couch import Couch

Doc = dict[str, Any]
# CouchDB's winner among leaves of one generation is the revision id that sorts last: these lose and win against
# any a server made.
LOSES, WINS = "0" * 32, "f" * 32


def as_a_cluster_writes(couch: Couch, docs: list[Doc], accounts: bool = False) -> None:
    """Revisions written as they are (`new_edits=false`): a second revision of one generation is kept as a
    conflict, which is what two CouchDB nodes each accepting a write of one document leave behind."""
    _, results = (couch.accounts if accounts else couch.main).resource._request_response(
        "POST", "_bulk_docs", data=json.dumps({"docs": docs, "new_edits": False}).encode(),
        headers={"Content-Type": "application/json"})
    assert not [r for r in results if "error" in r]


def made_on_another_node(couch: Couch, stored: Doc, rev: str, accounts: bool = False, **changes: Any) -> Doc:
    """Another process's first write of `stored`'s id, accepted by another node: `stored` (a first revision, as
    the server saved it) with `changes`, as revision `1-<rev>` beside it. Returns what the winner now is."""
    assert stored["_rev"].startswith("1-") and stored["_rev"] != f"1-{rev}"
    body = {k: v for k, v in stored.items() if k != "_rev"}
    as_a_cluster_writes(couch, [{**body, **changes, "_rev": f"1-{rev}"}], accounts=accounts)
    db = couch.accounts if accounts else couch.main
    winner = db.get(stored["_id"], conflicts="true")
    assert len(winner["_conflicts"]) == 1, winner  # the cluster's result: two revisions of one generation
    return winner
