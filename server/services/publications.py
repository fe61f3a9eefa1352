"""Publications filed in the filing log (a vote's result, server/services/deliberation.py; a month's figures,
server/services/snapshots.py) follow their entry when a fork repair refiles it at a new seq (issue 24).

A publication names its entry by seq (`filed_seq`) and is signed over that seq. On a CouchDB cluster two processes
can file at one seq; the repair (server/security/filing.py `repair_fork`) keeps one entry there and refiles the
other at the head. If the refiled one is a publication's, the publication is made to name the refiled entry and
signed again over its new seq: the entry at `filed_seq` always holds the publication's hash, and the refiled entry
itself names the seq it was first written at.
"""

from __future__ import annotations

import datetime as dt
from functools import partial
from typing import Any

from server.domain.declaration import validate
from server.security import filing
from server.security.filing import Follow, Signer
from server.services.deliberation import result_id
from server.store.couch import Couch, get_or_none

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
