"""Each month's figures frozen and published (issue 18 item 7): a community's counts for a month (the aggregates
of server/services/figures.py) and its supervision figures (closures confirmed fixed, mediation cases that
succeeded, the survey's response: server/services/evaluation_figures.py, each a numerator and denominator)
hashed, filed in its filing log and signed (`filing.file_published`), kept as a `figures_snapshot` anyone may read.
A month is frozen once it is over; a later look that finds its figures changed (a request closed late, a rating
given) files a new version naming the one it corrects: a correction, never a silent change. Versions are never
overwritten (ids end with the version). On a CouchDB cluster two processes can both claim and publish one version:
the first filed stands, the other is recorded on it as a duplicate (server/services/publications.py
resolve_duplicates). A month published before the supervision figures were part of a snapshot gets a version that
adds them (`adds_supervision`), not a correction, when its counts are unchanged."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from pycouchdb.exceptions import Conflict

from server.domain.figures import COUNTS
from server.security import filing
from server.security.filing import Signer
from server.services import evaluation_figures, figures, figures_cells
from server.services.figures import Scope
from server.store import sweeps
from server.store.couch import Couch, docs_of_type, get_or_none

Doc = dict[str, Any]

# Past months looked at again, after the one just over, though nothing of them was published (a month with nothing in
# it publishes nothing; a phone's visit may reach it late). A month published already is always looked at again.
RECHECK_MONTHS = 3
ACTOR = "user:system"  # the filing log's actor for what the server publishes by itself


def snapshot_id(community: str, month: str, version: int) -> str:
    return f"figures_snapshot:{community.split(':', 1)[1]}:{month}:{version:04d}"


def content_hash(community: str, month: str, counts: dict[str, int],
                 supervision: dict[str, list[int]] | None = None) -> str:
    """SHA-256 of the canonical JSON of what a snapshot says: filed, signed, compared for corrections. A snapshot
    of before the supervision figures has none (None), and its hash stays as it was signed."""
    body: dict[str, Any] = {"community": community, "month": month, "counts": {k: counts[k] for k in COUNTS}}
    if supervision is not None:
        body["supervision"] = supervision
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
    supervision = {f.key: [f.numerator, f.denominator]
                   for f in evaluation_figures.figures(couch, [community["_id"]], (month, month))}
    digest = content_hash(community["_id"], month, counts, supervision)
    earlier = versions(couch, community["_id"], month)
    if earlier and "signature" not in earlier[-1]:
        claimed = earlier.pop()
        if now - dt.datetime.fromisoformat(claimed["filing_claimed_at"]) < filing.CLAIM_LAPSES:
            return None  # another process is publishing this month
    else:
        claimed = None
    happened = any(counts.values()) or any(n or d for n, d in supervision.values())
    if (earlier and earlier[-1]["hash"] == digest) or (not earlier and not happened):
        return None  # unchanged, or a month with nothing in it
    adds = bool(earlier) and "supervision" not in earlier[-1] and earlier[-1]["hash"] == content_hash(
        community["_id"], month, counts)  # the same counts: only the supervision figures are new
    version = earlier[-1]["version"] + 1 if earlier else 1
    doc: Doc = {"_id": snapshot_id(community["_id"], month, version), "type": "figures_snapshot",
                "street": community["street"], "community": community["_id"], "month": month, "version": version,
                "counts": counts, "supervision": supervision, "published_at": now.isoformat(), "hash": digest,
                **({"corrects": earlier[-1]["_id"]} if earlier else {}), **({"adds_supervision": True} if adds else {}),
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
    """Freeze every community's month just over, and look again at the RECHECK_MONTHS before it and at every month
    published already, however old (a change to it is published as a correction, never silently): the number of
    snapshots and corrections published (the hourly clock: server/web/app.py)."""
    figures_cells.catch_up(couch)  # the cells as the requests are now
    this_month = figures.month_of(now)
    first, _ = figures.default_range(now, RECHECK_MONTHS + 2)
    recent = [m for m in figures.months(first, this_month) if m < this_month]
    communities = {c["_id"]: c for c in docs_of_type(couch.main, "community")}
    due = sorted({(c, m) for c in communities for m in recent} | _published_months(couch))
    return sum(sweeps.each("monthly figures frozen", [(communities[c], m) for c, m in due if c in communities],
                           lambda place: freeze(couch, signer, *place, now) is not None))


def _published_months(couch: Couch) -> set[tuple[str, str]]:
    """(community, month) of every snapshot, read from the ids alone."""
    ids = (r["id"] for r in couch.main.all(startkey="figures_snapshot:", endkey="figures_snapshot:\ufff0",
                                            include_docs="false", as_list=True))
    return {(f"community:{key}", month) for key, month, _ in (i.split(":", 1)[1].rsplit(":", 2) for i in ids)}


def published(couch: Couch) -> list[Doc]:
    """Every snapshot, newest month first, each month's versions newest first."""
    docs = [r["doc"] for r in couch.main.all(startkey="figures_snapshot:", endkey="figures_snapshot:\ufff0",
                                              as_list=True) if "signature" in r["doc"]]  # not one being filed
    return sorted(docs, key=lambda d: (d["month"], d["community"], d["version"]), reverse=True)


def signed(public_key: Any, snapshot: Doc) -> bool:
    """Whether the snapshot's signature and hash hold (what anyone checks a published month against)."""
    return (content_hash(snapshot["community"], snapshot["month"], snapshot["counts"], snapshot.get("supervision"))
            == snapshot["hash"]
            and filing.published_signed(public_key, filing.FIGURES_PUBLISHED, snapshot["community"], snapshot["_id"],
                                        snapshot["filed_seq"], snapshot["hash"], snapshot["signature"]))


def load(couch: Couch, snapshot: str) -> Doc | None:
    doc = get_or_none(couch.main, snapshot)
    return doc if doc and doc.get("type") == "figures_snapshot" and "signature" in doc else None
