"""Conflicts: merged automatically where a rule makes it safe, otherwise kept for a person.

Two phones editing the same document offline leave CouchDB with two branches
(replication writes with new_edits=false). Nothing is lost either way: a rule
merges only when every difference between the branches is one the rule
covers; anything else stays a conflict until a person picks (issue 5's UI,
listed by `conflicts_for` meanwhile).

Rules:
- identical: the branches differ in nothing but their revision: keep one.
- append-only lists (`APPEND_ONLY`, e.g. a visit's needs): the union, in order of first appearance.
- bookkeeping time (`updated_at`): the latest.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from server.domain.access import Doc, Principal, may_see
from server.domain.ballots import CONFLICTS_KEPT
from server.domain.declaration import MAIN_DB
from server.store import views
from server.store.couch import INDEX_WAIT_SECONDS

from .upstream import Upstream
from .writes import tombstone

APPEND_ONLY: dict[str, frozenset[str]] = {
    "visit": frozenset({"needs"}),
}
LATEST_WINS = frozenset({"updated_at"})
_REVISION_FIELDS = frozenset({"_rev", "_revisions", "_conflicts"})


def merge(branches: list[Doc]) -> Doc | None:
    """The winning branch with the others merged in, or None if some difference needs a person."""
    winner = branches[0]
    if winner.get("type") in CONFLICTS_KEPT:  # a voter's ballots: every version kept, counted once by precedence
        return None
    merged = {k: v for k, v in winner.items() if k not in _REVISION_FIELDS}
    names = {k for branch in branches for k in branch if k not in _REVISION_FIELDS}
    append_only = APPEND_ONLY.get(winner.get("type", ""), frozenset())
    for name in names:
        values = [branch.get(name) for branch in branches]
        if all(v == values[0] for v in values):
            continue
        if name in append_only and all(v is None or isinstance(v, list) for v in values):
            merged[name] = list(dict.fromkeys(item for v in values for item in v or []))
        elif name in LATEST_WINS and all(isinstance(v, str) for v in values):
            merged[name] = max(values)
        else:
            return None
    return merged


async def resolve(upstream: Upstream, doc_id: str) -> bool:
    """Merge a document's conflicting branches if the rules allow; True if it did."""
    current = await upstream.get(upstream.main, doc_id, conflicts="true")
    if not current or not current.get("_conflicts"):
        return False
    answers = await upstream.get(upstream.main, doc_id, open_revs=json.dumps(current["_conflicts"]))
    losers = [a["ok"] for a in answers or [] if "ok" in a]
    if len(losers) != len(current["_conflicts"]):
        return False
    merged = merge([current, *losers])
    if merged is None:
        return False
    docs = [{**merged, "_rev": current["_rev"]}, *(tombstone({"_id": doc_id, "_rev": d["_rev"]}, d) for d in losers)]
    results = await upstream.call("POST", upstream.main, "_bulk_docs", body={"docs": docs})
    return all("error" not in r for r in results)  # a concurrent edit wins: the next write retries


async def conflicts_for(upstream: Upstream, p: Principal) -> list[dict[str, Any]] | None:
    """The conflicted documents this user may see: what a person has to resolve. Read from the server's own
    `conflicts` view (server/store/couch.py, also behind the conflict screen), the user's street only; None
    while CouchDB still builds that view (first start): the phone asks again at its next sync, instead of
    waiting past the HTTP client's patience (that was a 502)."""
    physical, params = views.translate(MAIN_DB, "conflicts", {"include_docs": "true", "conflicts": "true",
                                                    "startkey": [p.street], "endkey": [p.street, {}]})
    try:
        answer = await asyncio.wait_for(upstream.call(
            "GET", upstream.main, f"_design/linli/_view/{physical.name}", params={
                k: json.dumps(v) if k in ("startkey", "endkey") else v for k, v in params.items()}),
            INDEX_WAIT_SECONDS)
    except TimeoutError:
        return None
    return [{"id": row["doc"]["_id"], "type": row["doc"].get("type"), "rev": row["doc"]["_rev"],
             "conflicts": row["doc"].get("_conflicts", [])}
            for row in answer["rows"] if row.get("doc") and may_see(p, row["doc"])
            and row["doc"].get("type") not in CONFLICTS_KEPT]  # listed for the secretary on the matter's page
