"""The filing log in CouchDB: who opened whose protected data, which fields, why, when, from where.

One chain per community. Entry ids are `audit_entry:<community>:<seq>`, so two
server processes racing to append get a CouchDB conflict on the same id and
the loser retries with the next number: no lock. Each append also anchors the
community's new head outside the database (server/security/filing_anchor.py),
so that verify catches a log cut short, not only one altered.

On a CouchDB cluster two writes of one new id reaching different nodes can both be accepted: a fork, one seq
with two entries (a conflicted document). The verifier names it; `repair_forks` (every minute) keeps the entry
the chain goes on from and refiles the others at the head, each naming the seq and hash it was first written as.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pycouchdb.exceptions import Conflict

from crypto import filing_log
from crypto.envelope import b64url, unb64url
from server.domain.access import deletion
from server.domain.declaration import validate
from server.security.filing_anchor import HeadAnchor
from server.store import sweeps
from server.store.config import Settings
from server.store.couch import Couch, bulk_save, docs_of_type, get_or_none, ids_of_type

MAX_APPEND_TRIES = 20
CLAIM_LAPSES = dt.timedelta(minutes=5)  # a process that claimed a report to file and has not, has died


@dataclass(frozen=True)
class Signer:
    """What filing needs of this installation: the checkpoint signing key (derived from the master key) and
    the data folder's head anchor."""

    key: Ed25519PrivateKey
    anchor: HeadAnchor

    @classmethod
    def of(cls, settings: Settings) -> Signer:
        return cls(filing_log.signing_key(settings.master_keys[0]), HeadAnchor(settings.data_dir))


def _community_key(community: str) -> str:
    return community.split(":", 1)[1]


def entry_id(community: str, seq: int) -> str:
    return f"audit_entry:{_community_key(community)}:{seq:012d}"


def checkpoint_id(community: str, seq: int) -> str:
    return f"audit_checkpoint:{_community_key(community)}:{seq:012d}"


def _last_entry(couch: Couch, community: str) -> dict[str, Any] | None:
    prefix = entry_id(community, 0)[:-12]
    rows = couch.main.all(startkey=prefix + "\ufff0", endkey=prefix, descending="true", limit=1, as_list=True)
    return rows[0]["doc"] if rows else None


def append(couch: Couch, signer: Signer, *, street: str, community: str, actor: str, action: str,
           target: str, fields: list[str], purpose: str, device: str, at: dt.datetime,
           keys: list[str] | None = None, report: str | None = None) -> dict[str, Any]:
    """File one access (or, with `keys`, the keys a phone was given or lost: server/security/grants.py; with
    `report`, the offline access report it files: `file_report`); sign a checkpoint every CHECKPOINT_EVERY
    entries."""
    return _append(couch, signer, community, {
        "type": "audit_entry", "street": street, "community": community, "actor": actor, "action": action,
        "target": target, "fields": fields, "purpose": purpose, "device": device, "at": at.isoformat(),
        **({"keys": keys} if keys else {}), **({"report": report} if report else {})})


def refile(couch: Couch, signer: Signer, hidden: dict[str, Any]) -> dict[str, Any]:
    """File again, at the head, an entry a fork hid (`repair_fork`): its content unchanged, `refiled` naming the
    seq, previous hash and hash it was first written with."""
    content = {k: v for k, v in hidden.items()
               if not k.startswith("_") and k not in ("seq", "prev_hash", "hash", "refiled")}
    return _append(couch, signer, hidden["community"], content,
                   {"seq": hidden["seq"], "prev_hash": hidden["prev_hash"], "hash": hidden["hash"]})


def _append(couch: Couch, signer: Signer, community: str, content: dict[str, Any],
            refiled: dict[str, Any] | None = None) -> dict[str, Any]:
    for attempt in range(MAX_APPEND_TRIES):
        if attempt:
            time.sleep(random.uniform(0, 0.005 * attempt))  # back off so that one writer cannot starve
        last = _last_entry(couch, community)
        if refiled and last and last.get("refiled", {}).get("hash") == refiled["hash"]:
            return last  # another process refiled it a moment ago
        seq = (last["seq"] + 1) if last else 1
        entry = {"_id": entry_id(community, seq), **content, "seq": seq,
                 "prev_hash": last["hash"] if last else filing_log.GENESIS, **({"refiled": refiled} if refiled else {})}
        entry["hash"] = filing_log.entry_hash(entry)
        validate(entry)
        try:
            saved = couch.main.save(entry)
        except Conflict:
            continue  # another process took this number; chain onto its entry (or see that it refiled this one)
        signer.anchor.advance(signer.key, community, seq, entry["hash"], entry["at"])
        if seq % filing_log.CHECKPOINT_EVERY == 0:
            checkpoint(couch, signer, content["street"], community, dt.datetime.fromisoformat(content["at"]))
        return saved
    raise RuntimeError(f"could not append to the filing log of {community} after {MAX_APPEND_TRIES} tries")


def checkpoint(couch: Couch, signer: Signer, street: str, community: str,
               at: dt.datetime) -> dict[str, Any] | None:
    """Sign the current head of a community's chain (None if the chain is empty)."""
    last = _last_entry(couch, community)
    if last is None:
        return None
    doc = {"_id": checkpoint_id(community, last["seq"]), "type": "audit_checkpoint", "street": street,
           "community": community, "seq": last["seq"], "hash": last["hash"], "at": at.isoformat(),
           "signature": filing_log.sign_checkpoint(signer.key, community, last["seq"], last["hash"])}
    validate(doc)
    existing = get_or_none(couch.main, doc["_id"])
    return existing or couch.main.save(doc)


def _all_docs_pages(couch: Couch, prefix: str, page: int = 1000, descending: bool = False,
                    start: str | None = None) -> Iterator[dict[str, Any]]:
    """Documents by id prefix, each with `_conflicts` when CouchDB holds more than one leaf revision of it."""
    start, end = (prefix + "\ufff0", prefix) if descending else (start or prefix, prefix + "\ufff0")
    while True:
        rows = couch.main.all(startkey=start, endkey=end, limit=page + 1, as_list=True, conflicts="true",
                              **({"descending": "true"} if descending else {}))
        for row in rows[:page]:
            yield row["doc"]
        if len(rows) <= page:
            return
        start = rows[page]["id"]


def file_reports(couch: Couch, signer: Signer, now: dt.datetime | None = None) -> int:
    """File the openings phones reported from offline (access_report documents), then delete the reports; returns
    how many this process filed (`file_report` each)."""
    now = now or dt.datetime.now(dt.UTC)
    return sum(sweeps.each("offline access reports filed", docs_of_type(couch.main, "access_report"),
                           lambda report: file_report(couch, signer, report, now)))


def file_report(couch: Couch, signer: Signer, report: dict[str, Any], now: dt.datetime) -> bool:
    """File one report as read a moment ago, unless another process is filing it; True if this one did.

    Every server process runs the minute sweep: a process first claims the report (`filing_claimed_at`, one
    CouchDB update of the revision it read, so of two processes claiming at once one gets a conflict and leaves
    it to the other, and `filing_from_seq`, the log's head then); a claim older than CLAIM_LAPSES is of a process
    that died, and is taken over. A report is filed (its entry names it: `report`) before it is deleted: a process
    taking over first looks for that entry after `filing_from_seq`, so one that died between the two is neither
    lost nor filed twice.
    """
    current = get_or_none(couch.main, report["_id"])
    if current is None or current["_rev"] != report["_rev"]:
        return False  # filed (deleted) or claimed since it was read
    claimed = report.get("filing_claimed_at")
    if claimed and now - dt.datetime.fromisoformat(claimed) < CLAIM_LAPSES:
        return False  # another process is filing it
    if claimed and _filed(couch, report):
        bulk_save(couch.main, [deletion(report)])  # its process died after filing it, before deleting it
        return False
    head = _last_entry(couch, report["community"])
    try:
        report = couch.main.save({**report, "filing_claimed_at": now.isoformat(),
                                  "filing_from_seq": report.get("filing_from_seq", head["seq"] if head else 0)})
    except Conflict:
        return False  # another process claimed it in the same moment
    append(couch, signer, street=report["street"], community=report["community"], actor=report["created_by"],
           action="open_offline", target=report["resident"], fields=report["fields"],
           purpose=report["purpose"], device=report["phone_key"], at=dt.datetime.fromisoformat(report["at"]),
           report=report["_id"])
    bulk_save(couch.main, [deletion(report)])
    return True


def _filed(couch: Couch, report: dict[str, Any]) -> bool:
    """Whether the log holds the report's entry, appended after its first claim."""
    after = entry_id(report["community"], report.get("filing_from_seq", 0) + 1)
    return any(e.get("report") == report["_id"]
               for e in _all_docs_pages(couch, f"audit_entry:{_community_key(report['community'])}:", start=after))


def iter_entries(couch: Couch, community: str, newest_first: bool = False) -> Iterator[dict[str, Any]]:
    """The community's filing log, oldest first (newest first for the secretary's page, read a page at a time)."""
    return _all_docs_pages(couch, f"audit_entry:{_community_key(community)}:", page=200 if newest_first else 1000,
                           descending=newest_first)


def _checkpoints(couch: Couch, community: str) -> list[dict[str, Any]]:
    return list(_all_docs_pages(couch, f"audit_checkpoint:{_community_key(community)}:"))


def verify(couch: Couch, signer: Signer, community: str,
           published: Iterable[tuple[int, str]] = ()) -> filing_log.Verdict:
    """The community's chain against its signed checkpoints, the head anchored outside the database and any
    heads published earlier ((seq, hash) from an audit report)."""
    return filing_log.verify(community, iter_entries(couch, community), _checkpoints(couch, community),
                             signer.key.public_key(), signer.anchor.heads().get(community), published)


def _leaves(couch: Couch, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every leaf revision of a document read with conflicts=true: CouchDB's winner first."""
    others = [couch.main.get(doc["_id"], rev=rev) for rev in doc.get("_conflicts", [])]
    return [{k: v for k, v in doc.items() if k != "_conflicts"}, *others]


def forked_communities(couch: Couch) -> list[str]:
    """Communities whose filing log holds a conflicted entry or checkpoint (the conflicts view: few rows)."""
    rows = couch.main.query("linli/conflicts", as_list=True)
    return sorted({row["key"][1] for row in rows
                   if row["id"].startswith(("audit_entry:", "audit_checkpoint:")) and row["key"][1]})


# What a publication filed in the log does when a fork repair refiles its entry (server/services/publications.py):
# given the entry as first written and as refiled, it makes the publication name the refiled one; False while the
# publication's document is not stored yet (its process is between filing and storing it): the fork waits a minute.
Follow = Callable[[dict[str, Any], dict[str, Any]], bool]


def repair_forks(couch: Couch, signer: Signer, follow: Follow | None = None) -> int:
    """Repair every forked filing log (the minute sweep); returns the entries refiled."""
    return sum(sweeps.each("filing-log forks refiled", forked_communities(couch),
                           lambda community: repair_fork(couch, signer, community, follow)))


def repair_fork(couch: Couch, signer: Signer, community: str, follow: Follow | None = None) -> int:
    """Make a forked chain one again, the same way whichever process (or how many at once) runs it.

    The rule: at each forked seq the chain keeps the entry the next kept entry links to (the branch the chain
    went on from); at the head, or where none links, CouchDB's winner (the same revision on every node). Every
    other entry is refiled at the head in (seq, hash) order, its content unchanged and `refiled` naming the seq,
    previous hash and hash it was first written with (the verifier recomputes that hash, and accepts a head
    anchored or published as that entry); then its revision is deleted. Refiling comes first, so a process dying
    in between leaves a refiled entry whose revision the next run deletes, never a lost one; two processes
    refiling at once write the same entry at the same seq (one gets the conflict and sees it is there). A checkpoint
    signed over an entry that was refiled is signed again over the kept one at its seq. A refiled publication (a
    vote's result, a month's figures) is followed (`follow`) before its revision is deleted, so a process dying in
    between leaves the fork for the next run to follow again.
    """
    prefix = f"audit_entry:{_community_key(community)}:"
    forked = [d for d in _all_docs_pages(couch, prefix) if d.get("_conflicts")]
    if not forked:
        return 0
    tail = list(_all_docs_pages(couch, prefix, start=forked[0]["_id"]))
    leaves = {doc["seq"]: _leaves(couch, doc) for doc in tail}
    kept: dict[int, dict[str, Any]] = {}
    for seq in sorted(leaves, reverse=True):
        after = kept.get(seq + 1)
        linked = [e for e in leaves[seq] if after and e["hash"] == after["prev_hash"]]
        kept[seq] = (linked or leaves[seq])[0]
    losers = sorted((e for seq, revs in leaves.items() for e in revs if e["_rev"] != kept[seq]["_rev"]),
                    key=lambda e: (e["seq"], e["hash"]))
    refiled_as = {e["refiled"]["hash"]: e for revs in leaves.values() for e in revs if "refiled" in e}
    refiled = 0
    for loser in losers:
        if loser["hash"] not in refiled_as:
            refiled_as[loser["hash"]] = refile(couch, signer, loser)
            refiled += 1
    waiting = {loser["hash"] for loser in losers if follow and loser["action"] in PUBLISHED_ACTIONS
               and not follow(loser, refiled_as[loser["hash"]])}
    bulk_save(couch.main, [deletion(loser) for loser in losers if loser["hash"] not in waiting])
    _resign_checkpoints(couch, signer, community, kept)
    return refiled


def _resign_checkpoints(couch: Couch, signer: Signer, community: str, kept: dict[int, dict[str, Any]]) -> None:
    """Each checkpoint at a seq the repair chose for: one revision, signed over the kept entry."""
    start = checkpoint_id(community, min(kept))
    for doc in _all_docs_pages(couch, f"audit_checkpoint:{_community_key(community)}:", start=start):
        entry = kept.get(doc["seq"])
        revisions = _leaves(couch, doc)
        if entry is None or (len(revisions) == 1 and doc["hash"] == entry["hash"]):
            continue
        good = next((c for c in revisions if c["hash"] == entry["hash"]), None)
        if good is None:  # signed over an entry that was refiled: the winner signed again over the kept one
            good = revisions[0] = couch.main.save({
                **revisions[0], "hash": entry["hash"],
                "signature": filing_log.sign_checkpoint(signer.key, community, doc["seq"], entry["hash"])})
        bulk_save(couch.main, [deletion(c) for c in revisions if c["_rev"] != good["_rev"]])


def communities(couch: Couch, signer: Signer) -> list[str]:
    """Every community with a filing log to verify: those in the database and those anchored (a community
    deleted from the database together with its log is still named)."""
    return sorted(set(ids_of_type(couch.main, "community")) | set(signer.anchor.heads()))


def resign(couch: Couch, old: Ed25519PrivateKey, new: Ed25519PrivateKey, community: str) -> int:
    """After a master-key rotation: prove the log intact under the old key, then sign its checkpoints anew.

    Checkpoints the new key already signed (a rotation run before, interrupted or not) are left as they are,
    so running the rotation again resumes it. A broken log is not re-signed (that would launder the
    tampering); the error names the first break.
    """
    pending = [c for c in _checkpoints(couch, community)
               if not filing_log.is_signed_by(new.public_key(), community, c)]
    verdict = filing_log.verify(community, iter_entries(couch, community), pending, old.public_key())
    if not verdict.ok:
        raise RuntimeError(f"{community}: filing log {verdict}; not re-signing it")
    checkpoints = [{**c, "signature": filing_log.sign_checkpoint(new, community, c["seq"], c["hash"])}
                   for c in pending]
    failed = [r for r in bulk_save(couch.main, checkpoints) if r.error]
    if failed:
        raise RuntimeError(f"re-signing {failed[0].id} failed: {failed[0].error}; run the rotation again")
    return len(checkpoints)


RESULT_PUBLISHED = "result_published"  # the filing log's action for a published vote result (not an opening)
FIGURES_PUBLISHED = "figures_published"  # … for a month's figures frozen (server/services/snapshots.py)
PUBLISHED_ACTIONS = frozenset({RESULT_PUBLISHED, FIGURES_PUBLISHED})  # publications filed: nobody's data opened
# What each publication's signature is over starts with its own label, so one can never pass for the other.
_LABELS = {RESULT_PUBLISHED: b"linli:vote-result:v1\x00", FIGURES_PUBLISHED: b"linli:figures:v1\x00"}
# A hearing's moderation and corrections (server/services/meetings.py): filed so they answer to the log; not openings.
OPINION_HIDDEN = "opinion_hidden"
PAPER_CORRECTED = "paper_corrected"
NOT_OPENINGS = PUBLISHED_ACTIONS | {OPINION_HIDDEN, PAPER_CORRECTED}  # nobody's data opened (audit_report)


def _published_message(action: str, community: str, target: str, seq: int, content_hash: str) -> bytes:
    return _LABELS[action] + f"{community}\x00{target}\x00{seq}\x00{content_hash}".encode()


def file_published(couch: Couch, signer: Signer, *, action: str, street: str, community: str, actor: str,
                   target: str, content_hash: str, at: dt.datetime) -> tuple[int, str]:
    """File a publication (a vote's result, server/services/deliberation.py; a month's figures) by its hash in the
    community's filing log and sign it with the log's key; returns the entry's seq and the signature over
    community, target, seq and hash, so the publication names the log entry that holds it."""
    entry = append(couch, signer, street=street, community=community, actor=actor, action=action,
                   target=target, fields=[], purpose=f"sha256:{content_hash}", device="server", at=at)
    return entry["seq"], sign_published(signer, action, community, target, entry["seq"], content_hash)


def sign_published(signer: Signer, action: str, community: str, target: str, seq: int, content_hash: str) -> str:
    """The filing log key's signature over a publication filed at `seq` (again when a fork repair refiles it)."""
    return b64url(signer.key.sign(_published_message(action, community, target, seq, content_hash)))


def file_result(couch: Couch, signer: Signer, *, street: str, community: str, actor: str, matter: str,
                result_hash: str, at: dt.datetime) -> tuple[int, str]:
    """A vote's published result filed and signed (file_published)."""
    return file_published(couch, signer, action=RESULT_PUBLISHED, street=street, community=community, actor=actor,
                          target=matter, content_hash=result_hash, at=at)


def published_signed(public_key: Ed25519PublicKey, action: str, community: str, target: str, seq: int,
                     content_hash: str, signature: str) -> bool:
    """Whether a publication's signature is the filing log key's over its community, target, seq and hash."""
    try:
        public_key.verify(unb64url(signature), _published_message(action, community, target, seq, content_hash))
    except (InvalidSignature, ValueError):
        return False
    return True


def result_signed(public_key: Ed25519PublicKey, community: str, matter: str, seq: int, result_hash: str,
                  signature: str) -> bool:
    """Whether a published result's signature is the filing log key's over its community, matter, seq and hash."""
    return published_signed(public_key, RESULT_PUBLISHED, community, matter, seq, result_hash, signature)
