"""What a phone may store: every document of a `_bulk_docs` batch is checked before CouchDB sees it.

Order of checks, each with its own reason: the protocol's special fields, the
protected tiers (ciphertext only; reasons name fields, never values), the
schema (`server.domain.declaration.validate`), attachments, and the writer's rights
(`server.domain.access.write_refusal`). A refused document gets a per-document
`forbidden` answer; the rest of the batch lands. The answer's `reason` is English, for operators and logs; its
`errors` ({field, key, params}, server/domain/errors.py) are what the phone shows a person, in their language.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from crypto import envelope
from server.domain import migrations
from server.domain.access import (
    VISIBILITY_FIELDS,
    Doc,
    Principal,
    Refs,
    ballot_write_refusal,
    claim_person_refusal,
    survey_write_refusal,
    write_ref_ids,
    write_refusal,
)
from server.domain.declaration import DOC_TYPES, MAIN_DB, PROTECTED_TIERS, ValidationError, validate
from server.domain.errors import FieldError
from server.domain.field_rules import PHOTO_LIMITS, PHOTO_TYPES, photo_refusal

SPECIAL_FIELDS = frozenset({"_id", "_rev", "_deleted", "_attachments", "_revisions"})
_REV = re.compile(r"^[1-9]\d{0,8}-[0-9a-f]{1,64}$")


def tombstone(deletion: Doc, current: Doc) -> Doc:
    """A deletion as stored: it keeps the fields routing reads, so it reaches the phones that had the document."""
    kept = {name: current[name] for name in VISIBILITY_FIELDS if name in current}
    return {**kept, **{name: deletion[name] for name in ("_id", "_rev", "_revisions") if name in deletion},
            "_deleted": True}


def _special_refusal(doc: Doc, new_edits: bool) -> str | None:
    unknown = sorted(name for name in doc if name.startswith("_") and name not in SPECIAL_FIELDS)
    if unknown:
        return f"unknown special field(s) {', '.join(unknown)}"
    rev = doc.get("_rev")
    if rev is not None and not (isinstance(rev, str) and _REV.match(rev)):
        return "_rev must look like \"<n>-<hex>\""
    if not new_edits and rev is None:
        return "new_edits=false needs a _rev on every document"
    revisions = doc.get("_revisions")
    if revisions is not None:
        ids = revisions.get("ids") if isinstance(revisions, dict) else None
        start = revisions.get("start") if isinstance(revisions, dict) else None
        if (not isinstance(ids, list) or not ids or not isinstance(start, int) or isinstance(start, bool)
                or start < len(ids) or not all(isinstance(i, str) and re.fullmatch(r"[0-9a-f]{1,64}", i) for i in ids)
                or (rev is not None and rev != f"{start}-{ids[0]}")):
            return "_revisions must be {start, ids} matching _rev"
    if "_deleted" in doc and not isinstance(doc["_deleted"], bool):
        return "_deleted must be true or false"
    return None


def new_protected_values(doc: Doc, current: Doc | None) -> list[str]:
    """The protected-tier fields to which doc gives a value other than the one stored."""
    return [name for name in DOC_TYPES[doc["type"]].fields_in(*PROTECTED_TIERS)
            if doc.get(name) is not None and (current is None or current.get(name) != doc[name])]


def _protected_refusal(doc: Doc, current: Doc | None) -> str | None:
    """Protected-tier fields must arrive as ciphertext; only a value already stored may stay as it is. (That it
    opens under the right key is checked next, for the whole batch at once: sync/ciphertext.py.)"""
    doc_type = DOC_TYPES[doc["type"]]
    bad = []
    for name in new_protected_values(doc, current):
        try:
            envelope.parse(doc[name])
        except envelope.EnvelopeError as error:
            bad.append(f"{name} ({doc_type.fields[name].effective_tier.value} tier: {error.reason})")
    return "protected fields must arrive encrypted (\"enc:…\"): " + ", ".join(bad) if bad else None


def _attachment_refusal(doc: Doc, current: Doc | None) -> str | None:
    """The one photo rule (server/domain/field_rules.py), as the pages and the offline app apply it: only the
    types that carry photos, at most their count, each a JPEG, PNG or WebP by its bytes, of the type it was sent
    as, within the size limit. A stub (an attachment already stored, not sent again) was judged when it was sent;
    it is served by its bytes whatever it is called (server/domain/http_headers.py attachment_answer). A stub must
    name one this document holds on the server now: pouchdb-server finds a stub's bytes by digest in the whole
    database, so a stub of another document's photo would hand a phone a photo it may not see."""
    attachments = doc.get("_attachments")
    if attachments is None:
        return None
    if not isinstance(attachments, dict):
        return "_attachments must be an object"
    limit = PHOTO_LIMITS.get(doc["type"])
    if limit is None:
        return f"a {doc['type']} carries no attachments"
    if len(attachments) > limit.max_count:
        return f"a {doc['type']} carries at most {limit.max_count} photo(s)"
    for name, att in attachments.items():
        declared = att.get("content_type") if isinstance(att, dict) else None
        if declared not in PHOTO_TYPES:
            return f"attachment {name!r}: only {', '.join(PHOTO_TYPES)} photos may be attached, not {declared}"
        if att.get("stub") is True:
            held = ((current or {}).get("_attachments") or {}).get(name)
            if not isinstance(held, dict) or att.get("digest", held.get("digest")) != held.get("digest"):
                return f"attachment {name!r} is a stub of nothing this document holds"
            continue
        data = att.get("data")
        if not isinstance(data, str):
            return f"attachment {name!r} must carry base64 data or be a stub"
        if len(data) * 3 // 4 > limit.max_bytes + 2:  # before decoding what may be far too large
            return f"attachment {name!r} is larger than {limit.max_bytes // (1024 * 1024)} MB"
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return f"attachment {name!r}: data is not valid base64"
        refused = photo_refusal(raw, declared, limit.max_bytes)
        if refused == "photo_too_large":
            return f"attachment {name!r} is larger than {limit.max_bytes // (1024 * 1024)} MB"
        if refused:
            return f"attachment {name!r}: its bytes are not the {declared} it was sent as"
    return None


@dataclass(frozen=True)
class Refusal:
    reason: str  # English, for operators and logs
    errors: list[FieldError]  # for the person: the schema's, field by field, or that the server refused it

    def answer(self, doc: Any) -> dict[str, Any]:
        """The per-document `forbidden` row of the `_bulk_docs` answer."""
        return {"id": doc.get("_id") if isinstance(doc, dict) else None, "error": "forbidden",
                "reason": self.reason, "errors": [{"field": e.field, **e.as_json()} for e in self.errors]}


def wrong_code(refusal: Refusal) -> bool:
    """A claim refused for a wrong in-person code (counted against the resident: a guess)."""
    return any(e.key == "tb_code_wrong" for e in refusal.errors)


def ref_ids(doc: Any, current: Doc | None) -> set[str]:
    """The ids of the documents `refusal` needs to judge where this document places itself (a household, its
    grid, the people it names; `access.write_ref_ids`): fetched once per batch, from either database."""
    checked = current if isinstance(doc, dict) and doc.get("_deleted") else doc
    return write_ref_ids(checked) if isinstance(checked, dict) else set()


def ciphertext_refusal(doc: Doc, fields: list[str]) -> Refusal:
    """A document whose new protected values do not open under the resident's keys (sync/ciphertext.py)."""
    tiers = DOC_TYPES[doc["type"]].fields
    named = ", ".join(f"{name} ({tiers[name].effective_tier.value} tier)" for name in fields)
    return Refusal(f"protected fields must hold ciphertext that opens under the resident's key: {named}",
                   [FieldError(name, "err_sync_refused") for name in fields])


def refusal(p: Principal, doc: Any, current: Doc | None, new_edits: bool, refs: Refs,
            now: dt.datetime) -> Refusal | None:
    """Why this document may not be stored over `current` (CouchDB's winning revision); None if it may.
    `refs` holds the documents `ref_ids` named, `now` is the server's clock (for the times a write sets)."""
    current = _judged_over(doc, current, new_edits)
    try:
        reason = _reason(p, doc, current, new_edits, refs, now)
    except ValidationError as invalid:
        return Refusal("invalid: " + "; ".join(str(e) for e in invalid.errors), invalid.errors)
    if not reason:
        return None
    is_ballot = isinstance(doc, dict) and doc.get("type") == "ballot"  # a "document" may be any JSON a client sent
    ballot = ballot_write_refusal(p, current, doc, refs, now) if is_ballot else None
    if ballot and ballot[0].text("en") == reason:  # the ballot rule's own reason: the phone shows it as it is
        return Refusal(reason, [ballot[0]])
    return Refusal(reason, _errors_for_person(p, doc, current, refs, now))


def _errors_for_person(p: Principal, doc: Any, current: Doc | None, refs: Refs,
                       now: dt.datetime) -> list[FieldError]:
    """What the phone tells its person about a refused document: a new time-bank claim refused by the time bank's
    rules says why (a wrong confirmation code, hours out of range, another's task), so does a door survey answer
    (no consent, a household not drawn); anything else that the server refused it."""
    if isinstance(doc, dict) and doc.get("type") == "claim" and current is None and not doc.get("_deleted"):
        why = claim_person_refusal(p, doc, refs, now)
        if why:
            return [FieldError("in_person_code" if why[0] == "tb_code_wrong" else "(document)", *why)]
    if isinstance(doc, dict) and doc.get("type") == "survey_response" and current is None \
            and not doc.get("_deleted"):  # a door survey answer: the page's own words (issue 18)
        refused = survey_write_refusal(p, doc, refs)
        if refused:
            return [FieldError(refused[0], refused[1], {"month": str(doc.get("month"))})]
    return [FieldError("(document)", "err_sync_refused")]


def _judged_over(doc: Any, current: Doc | None, new_edits: bool) -> Doc | None:
    """What a write is judged against: CouchDB's winning revision, but none for a ballot arriving as a branch of its
    own (replication, `new_edits: false`): a second ballot for the voter (two phones at the door, the resident's own
    vote) is kept beside the first and counted once by precedence (server/domain/ballots.py), never an edit of it."""
    if (isinstance(doc, dict) and doc.get("type") == "ballot" and not doc.get("_deleted") and not new_edits
            and current is not None and (doc.get("_rev") == current.get("_rev") or creates_conflict(doc, current))):
        return None
    return current


def _reason(p: Principal, doc: Any, current: Doc | None, new_edits: bool, refs: Refs,
            now: dt.datetime) -> str | None:
    if not isinstance(doc, dict):
        return "each document must be a JSON object"
    reason = _special_refusal(doc, new_edits)
    if reason:
        return reason
    if current is not None and current.get("_deleted") and "type" not in current:
        current = None  # a bare tombstone: nothing left to protect
    if doc.get("_deleted"):
        if current is None:
            return "there is no such document to delete"
        return write_refusal(p, current, current, refs, now)
    doc_type = DOC_TYPES.get(doc["type"]) if isinstance(doc.get("type"), str) else None
    if doc_type is None or doc_type.database != MAIN_DB:
        return f"{doc.get('type')!r} is not a document type phones may replicate"
    reason = _protected_refusal(doc, current)
    if reason:
        return reason
    # A document of an older declaration version is judged as the upgrade the server stores of it (sync/app.py);
    # one of a newer version than the server's is refused by `validate`.
    upgraded = migrations.upgrade(doc)
    validate(upgraded)  # its ValidationError names the fields (refusal)
    return _attachment_refusal(doc, current) or write_refusal(p, current, upgraded, refs, now)


def creates_conflict(doc: Doc, current: Doc | None) -> bool:
    """True if storing doc with new_edits=false leaves CouchDB with a second branch."""
    if current is None or current.get("_deleted") or doc.get("_rev") == current.get("_rev"):
        return False
    revisions = doc.get("_revisions") or {"start": 0, "ids": []}
    ancestry = {f"{revisions['start'] - i}-{rev_id}" for i, rev_id in enumerate(revisions["ids"])}
    return current["_rev"] not in ancestry


def audience_users(doc: Doc | None) -> set[str]:
    """Users who see a document because it names them (not because of their grid)."""
    if not doc:
        return set()
    named = set(doc.get("volunteers") or []) | {doc.get("assigned_to"), doc.get("requester")}
    return {u for u in named if isinstance(u, str)}
