"""Each month's figures frozen and published (issue 18 item 7): a community's counts for a month (the aggregates
of server/services/figures.py) hashed, filed in its filing log and signed (`filing.file_published`), kept as a
`figures_snapshot` anyone may read. A month is frozen once it is over; a later look that finds its figures
changed (a request closed late, a rating given) files a new version naming the one it corrects: a correction,
never a silent change. Versions are never overwritten (ids end with the version). On a CouchDB cluster two
processes can both claim and publish one version (`resolve_duplicates`): the first filed stands, the other is
recorded on it as a duplicate."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from pycouchdb.exceptions import Conflict

from server.domain.access import deletion
from server.domain.declaration import validate
from server.domain.figures import COUNTS
from server.security import filing
from server.security.filing import Signer
from server.services import figures
from server.services.figures import Scope
from server.store import sweeps
from server.store.couch import Couch, bulk_save, docs_of_type, get_or_none

Doc = dict[str, Any]

# Past months looked at again for corrections, after the one just over.
RECHECK_MONTHS = 3
ACTOR = "user:system"  # the filing log's actor for what the server publishes by itself


def snapshot_id(community: str, month: str, version: int) -> str:
    return f"figures_snapshot:{community.split(':', 1)[1]}:{month}:{version:04d}"


def content_hash(community: str, month: str, counts: dict[str, int]) -> str:
    """SHA-256 of the canonical JSON of what a snapshot says: filed, signed, compared for corrections."""
    body = {"community": community, "month": month, "counts": {k: counts[k] for k in COUNTS}}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def versions(couch: Couch, community: str, month: str) -> list[Doc]:
    """Every version of a community's month, oldest first."""
    prefix = snapshot_id(community, month, 0)[:-4]
    return [r["doc"] for r in couch.main.all(startkey=prefix, endkey=prefix + "\ufff0", as_list=True)]


def freeze(couch: Couch, signer: Signer, community: Doc, month: str, now: dt.datetime) -> Doc | None:
    """Freeze the community's month: its first snapshot, or a correction if its figures differ from the latest
    version's; None when they do not, when nothing happened in the month (nothing to publish), or when another
    process is publishing it.

    Every process runs the hourly clock: the version's document is written first, unsigned, as a claim (of two
    processes creating one id, one gets the conflict and leaves it), then filed and signed; a claim older than
    filing.CLAIM_LAPSES is of a process that died before filing, and is taken over."""
    counts = figures.totals(couch, Scope(community["_id"], "", month, month)).counts
    digest = content_hash(community["_id"], month, counts)
    earlier = versions(couch, community["_id"], month)
    if earlier and "signature" not in earlier[-1]:
        claimed = earlier.pop()
        if now - dt.datetime.fromisoformat(claimed["filing_claimed_at"]) < filing.CLAIM_LAPSES:
            return None  # another process is publishing this month
    else:
        claimed = None
    if (earlier and earlier[-1]["hash"] == digest) or (not earlier and not any(counts.values())):
        return None  # unchanged, or a month with nothing in it
    version = earlier[-1]["version"] + 1 if earlier else 1
    doc: Doc = {"_id": snapshot_id(community["_id"], month, version), "type": "figures_snapshot",
                "street": community["street"], "community": community["_id"], "month": month, "version": version,
                "counts": counts, "published_at": now.isoformat(), "hash": digest,
                **({"corrects": earlier[-1]["_id"]} if earlier else {}),
                **({"_rev": claimed["_rev"]} if claimed else {})}
    try:
        doc = couch.main.save({**doc, "filing_claimed_at": now.isoformat()})
    except Conflict:
        return None  # another process claimed it in the same moment
    doc["filed_seq"], doc["signature"] = filing.file_published(
        couch, signer, action=filing.FIGURES_PUBLISHED, street=community["street"], community=community["_id"],
        actor=ACTOR, target=doc["_id"], content_hash=digest, at=now)
    return couch.main.save({k: v for k, v in doc.items() if k != "filing_claimed_at"})


def freeze_due(couch: Couch, signer: Signer, now: dt.datetime) -> int:
    """Freeze every community's month just over, and look again at the RECHECK_MONTHS before it: the number of
    snapshots and corrections published (the hourly clock: server/web/app.py)."""
    this_month = figures.month_of(now)
    first, _ = figures.default_range(now, RECHECK_MONTHS + 2)
    due = [m for m in figures.months(first, this_month) if m < this_month]
    return sum(sweeps.each("monthly figures frozen",
                           [(community, month) for community in docs_of_type(couch.main, "community") for month in due],
                           lambda place: freeze(couch, signer, *place, now) is not None))


def published(couch: Couch) -> list[Doc]:
    """Every snapshot, newest month first, each month's versions newest first."""
    docs = [r["doc"] for r in couch.main.all(startkey="figures_snapshot:", endkey="figures_snapshot:\ufff0",
                                              as_list=True) if "signature" in r["doc"]]  # not one being filed
    return sorted(docs, key=lambda d: (d["month"], d["community"], d["version"]), reverse=True)


def signed(public_key: Any, snapshot: Doc) -> bool:
    """Whether the snapshot's signature and hash hold (what anyone checks a published month against)."""
    return (content_hash(snapshot["community"], snapshot["month"], snapshot["counts"]) == snapshot["hash"]
            and filing.published_signed(public_key, filing.FIGURES_PUBLISHED, snapshot["community"], snapshot["_id"],
                                        snapshot["filed_seq"], snapshot["hash"], snapshot["signature"]))


def resolve_duplicates(couch: Couch, now: dt.datetime) -> int:
    """Versions published twice (the minute sweep); returns how many were resolved (`resolve_duplicate`)."""
    rows = couch.main.query("linli/conflicts", as_list=True)
    return sum(sweeps.each("monthly figures published twice", [r["id"] for r in rows
                                                                if r["id"].startswith("figures_snapshot:")],
                           lambda snapshot: resolve_duplicate(couch, snapshot, now)))


def resolve_duplicate(couch: Couch, snapshot: str, now: dt.datetime) -> bool:
    """One version claimed on two CouchDB nodes at once, so published twice: two revisions of its document, each
    filed (a `figures_published` entry) and signed at its own seq. The rule: the one filed first (lowest seq) stands;
    each other is recorded on it under `duplicates` (its seq, hash and signature: the entry is pointed at, and its
    signature still checks) and its revision deleted. A duplicate is never a correction: a correction is a new
    version, made when a month's figures changed. A revision still unsigned is a process publishing it now (left
    for the next sweep) or one that died (dropped once its claim lapsed). False while there is nothing to decide."""
    winner = couch.main.get(snapshot, conflicts="true")
    leaves = [{k: v for k, v in winner.items() if k != "_conflicts"},
              *(couch.main.get(snapshot, rev=rev) for rev in winner.get("_conflicts", []))]
    signed_ = sorted((d for d in leaves if "signature" in d), key=lambda d: (d["filed_seq"], d["_rev"]))
    filing_now = [d for d in leaves if "signature" not in d
                  and now - dt.datetime.fromisoformat(d["filing_claimed_at"]) < filing.CLAIM_LAPSES]
    if len(leaves) < 2 or not signed_ or filing_now:
        return False
    kept, duplicates = signed_[0], signed_[1:]
    recorded = {d["filed_seq"] for d in kept.get("duplicates", [])}
    new = [{"filed_seq": d["filed_seq"], "hash": d["hash"], "signature": d["signature"]} for d in duplicates
           if d["filed_seq"] not in recorded]
    if new:
        kept = {**kept, "duplicates": [*kept.get("duplicates", []), *new]}
        validate(kept)
        kept = couch.main.save(kept)  # first: a process dying after it leaves the duplicates to delete, recorded
    bulk_save(couch.main, [deletion(d) for d in leaves if d["_rev"] != kept["_rev"]])
    return True


def load(couch: Couch, snapshot: str) -> Doc | None:
    doc = get_or_none(couch.main, snapshot)
    return doc if doc and doc.get("type") == "figures_snapshot" and "signature" in doc else None
