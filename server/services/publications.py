"""Publications filed in the filing log (a vote's result, server/services/deliberation.py; a month's figures,
server/services/snapshots.py) follow their entry when a fork repair refiles it at a new seq (issue 24).

A publication names its entry by seq (`filed_seq`) and is signed over that seq. On a CouchDB cluster two processes
can file at one seq; the repair (server/security/filing.py `repair_fork`) keeps one entry there and refiles the
other at the head. If the refiled one is a publication's, the publication is made to name the refiled entry and
signed again over its new seq: the entry at `filed_seq` always holds the publication's hash, and the refiled entry
itself names the seq it was first written at.

The same cluster can let two processes publish one thing (two revisions of one result or figures version, each filed
and signed at its own seq): `resolve_duplicates` keeps the one filed first and records the others on it.
"""

from __future__ import annotations

import datetime as dt
from functools import partial
from typing import Any

from server.domain.access import deletion
from server.domain.declaration import validate
from server.security import filing
from server.security.filing import Follow, Signer
from server.services.deliberation import result_id
from server.store import sweeps
from server.store.couch import Couch, bulk_save, get_or_none

Doc = dict[str, Any]


def publication_id(entry: Doc) -> str:
    """The document a publication's entry is about: a matter's result (the entry names the matter), or the figures
    snapshot the entry names."""
    return result_id(entry["target"]) if entry["action"] == filing.RESULT_PUBLISHED else entry["target"]


def follow_refiled(couch: Couch, signer: Signer, first: Doc, refiled: Doc, now: dt.datetime | None = None) -> bool:
    """Make the publication filed as `first` name `refiled` (the same entry, refiled at the head) and sign it again;
    True once nothing is left to follow. False while its document is not stored signed yet, unless the entry is
    older than filing.CLAIM_LAPSES (its process died before storing it: nothing names the entry)."""
    doc = get_or_none(couch.main, publication_id(first))
    if doc is None or "signature" not in doc:
        now = now or dt.datetime.now(dt.UTC)
        return now - dt.datetime.fromisoformat(first["at"]) >= filing.CLAIM_LAPSES
    if doc.get("filed_seq") != first["seq"] or first["purpose"] != f"sha256:{doc['hash']}":
        return True  # names another entry: followed already, or a duplicate's (snapshots.resolve_duplicates)
    followed = {**doc, "filed_seq": refiled["seq"],
                "signature": filing.sign_published(signer, first["action"], first["community"], first["target"],
                                                   refiled["seq"], doc["hash"])}
    validate(followed)
    couch.main.save(followed)  # a conflict (another process followed it first): the sweep skips, the next sees it done
    return True


def follower(couch: Couch, signer: Signer) -> Follow:
    """`follow_refiled` for this database and key, as the fork repair takes it."""
    return partial(follow_refiled, couch, signer)


PUBLICATION_TYPES = ("matter_result", "figures_snapshot")  # documents that name their filing-log entry and are signed


def resolve_duplicates(couch: Couch, now: dt.datetime) -> int:
    """Publications published twice (the minute sweep); returns how many were resolved (`resolve_duplicate`)."""
    rows = couch.main.query("linli/conflicts", as_list=True)
    return sum(sweeps.each("publications filed twice", [r["id"] for r in rows
                                                         if r["id"].split(":", 1)[0] in PUBLICATION_TYPES],
                           lambda publication: resolve_duplicate(couch, publication, now)))


def resolve_duplicate(couch: Couch, publication: str, now: dt.datetime) -> bool:
    """One result or figures version published on two CouchDB nodes at once (two processes closed one vote, or
    claimed one month's version): two revisions of its document, each filed and signed at its own seq. The rule: the
    one filed first (lowest seq) stands; each other is recorded on it under `duplicates` (its seq, hash and
    signature: its entry is pointed at, its signature still checks) and its revision deleted. A duplicate is never a
    correction (a month's correction is a new version). A figures revision still unsigned is a process publishing
    it now (left for the next sweep) or one that died (dropped once its claim lapsed). False: nothing to decide."""
    winner = couch.main.get(publication, conflicts="true")
    leaves = [{k: v for k, v in winner.items() if k != "_conflicts"},
              *(couch.main.get(publication, rev=rev) for rev in winner.get("_conflicts", []))]
    signed = sorted((d for d in leaves if "signature" in d), key=lambda d: (d["filed_seq"], d["_rev"]))
    filing_now = [d for d in leaves if "signature" not in d
                  and now - dt.datetime.fromisoformat(d["filing_claimed_at"]) < filing.CLAIM_LAPSES]
    if len(leaves) < 2 or not signed or filing_now:
        return False
    kept, duplicates = signed[0], signed[1:]
    recorded = {d["filed_seq"] for d in kept.get("duplicates", [])}
    new = [{"filed_seq": d["filed_seq"], "hash": d["hash"], "signature": d["signature"]} for d in duplicates
           if d["filed_seq"] not in recorded]
    if new:
        kept = {**kept, "duplicates": [*kept.get("duplicates", []), *new]}
        validate(kept)
        kept = couch.main.save(kept)  # first: a process stopping after it leaves only deletions to the next sweep
    bulk_save(couch.main, [deletion(d) for d in leaves if d["_rev"] != kept["_rev"]])
    return True
