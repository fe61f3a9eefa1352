"""The field work's rules that the server and the offline app both apply, pure: a visit's needs list, what an
action makes of an alert and the order the inbox shows alerts in, a volunteer's answer to a task and the order
tasks are listed in, and what an attached photo really is and
where photos may be attached (the one attachment rule of every path: pages, sync, the offline app).

The offline app gets the vocabularies and the photo rule as data (/pwa/session.json) and runs the same rules in
pwa/offline/rules.js; server/domain/vectors/field_rules.json pins both to the same answers (tests/test_field_rules.py
runs them in Python and in Node).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from server.domain.declaration import ALERT_STATES, DOC_TYPES, TASK_ANSWERS

Doc = dict[str, Any]

OPEN_ALERT_STATES = ("raised", "escalated", "acknowledged", "visiting")
# What each action makes of an alert, and from which states: acknowledging may be skipped.
ALERT_ACTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "acknowledge": ("acknowledged", ("raised", "escalated")),
    "visiting": ("visiting", ("raised", "escalated", "acknowledged")),
    "resolve": ("resolved", OPEN_ALERT_STATES),
}
# The buttons a row shows, by the alert's status.
ACTIONS_BY_STATE = {state: [a for a, (_, sources) in ALERT_ACTIONS.items() if state in sources]
                    for state in ALERT_STATES}
assert set(OPEN_ALERT_STATES) | {"resolved"} == set(ALERT_STATES)
URGENT_ALERT_KINDS = ("sos", "fall")  # someone may be lying on the floor: on top, in red

# Needs a visit often finds, offered as checkboxes and stored as these keys; anything else is free text.
COMMON_NEEDS = ("meal_delivery", "medical_escort", "home_repair", "cleaning", "companionship", "shopping",
                "legal_aid", "financial_aid")

# Photos people attach, known by their first bytes (never by the type the sender claims): each type's signature
# is (offset, bytes) pairs that must all match. Nothing else may be attached anywhere: not SVG or HTML (they run
# scripts when opened), not GIF, not PDF (no page, form or phone makes or shows one).
PHOTO_SIGNATURES: dict[str, tuple[tuple[int, bytes], ...]] = {
    "image/jpeg": ((0, b"\xff\xd8\xff"),),
    "image/png": ((0, b"\x89PNG\r\n\x1a\n"),),
    "image/webp": ((0, b"RIFF"), (8, b"WEBP")),
}
PHOTO_TYPES = tuple(PHOTO_SIGNATURES)
# A polyglot (a photo's first bytes, then a page) is no photo either: markup where a browser looks for it when it
# guesses a type (the first 1024 bytes), in any case, is refused. No real photo has these there (cameras' XMP
# metadata starts "<?xpacket", "<x:xmpmeta", "<rdf:": not listed).
MARKUP = (b"<!doctype", b"<html", b"<head", b"<body", b"<script", b"<svg", b"<iframe", b"<object")
MARKUP_WINDOW = 1024


@dataclass(frozen=True)
class PhotoLimit:
    max_bytes: int
    max_count: int


# The documents that carry photos, how many and how large; no other type may carry an attachment.
PHOTO_LIMITS = {
    "service_request": PhotoLimit(max_bytes=5 * 1024 * 1024, max_count=3),  # the reporter's evidence
    "visit": PhotoLimit(max_bytes=10 * 1024 * 1024, max_count=1),  # one from the camera, full size
    "resource": PhotoLimit(max_bytes=2 * 1024 * 1024, max_count=1),  # what a venue looks like (issue 17)
}


class AlertRefused(ValueError):
    """An action the alert's state does not allow; the message is an i18n key."""


def needs_of(values: list[str]) -> list[str]:
    """The visit's needs from its form: checkbox keys and free-text lines, blank lines dropped, in order."""
    lines = (line.strip() for value in values for line in value.splitlines())
    return list(dict.fromkeys(line for line in lines if line))


def alert_after(doc: Doc, action: str, user_id: str, stamp: str) -> Doc:
    """The alert after `action` by `user_id` at `stamp` (ISO time), not stored. Raises AlertRefused."""
    if action not in ALERT_ACTIONS:
        raise AlertRefused("alert_unknown_action")
    to, sources = ALERT_ACTIONS[action]
    if doc["status"] not in sources:
        raise AlertRefused("alert_not_allowed")
    new = {**doc, "status": to}
    if not new.get("acknowledged_by"):  # going to visit or resolving acknowledges it too
        new.update(acknowledged_by=user_id, acknowledged_at=stamp)
    if to == "resolved":
        new["resolved_at"] = stamp
    new["updated_at"] = stamp  # merges of offline edits keep the latest (sync/merge.py)
    return new


def alerts_in_order(alerts: list[Doc]) -> list[Doc]:
    """The inbox's order: open ones first, among them SOS and falls first; each part newest first."""
    newest_first = sorted(alerts, key=lambda d: dt.datetime.fromisoformat(d["raised_at"]), reverse=True)
    return sorted(newest_first, key=lambda d: (d["status"] == "resolved", d["kind"] not in URGENT_ALERT_KINDS))


class TaskRefused(ValueError):
    """An answer the task's state does not allow, or one missing its note; the message is an i18n key."""


OPEN_TASK_STATES = ("assigned", "accepted")
TASK_NOTE_REQUIRED = ("done", "declined")  # how it went, or why not


def task_answered(doc: Doc, answer: str, note: str, stamp: str) -> Doc:
    """The task after its volunteer's `answer` (a state of declaration.TASK_ANSWERS) with `note`, at `stamp`, not
    stored. Raises TaskRefused."""
    if answer not in TASK_ANSWERS.get(doc["status"], ()):
        raise TaskRefused("task_answer_not_allowed")
    note = note.strip()
    if answer in TASK_NOTE_REQUIRED and not note:
        raise TaskRefused("task_note_required")
    if len(note) > DOC_TYPES["task"].fields["volunteer_note"].max_length:
        raise TaskRefused("task_note_too_long")
    return {**doc, "status": answer, "updated_at": stamp, **({"volunteer_note": note} if note else {})}


def tasks_in_order(tasks: list[Doc]) -> list[Doc]:
    """Open tasks first, soonest due first (undated after dated); then the rest; newest first within a day."""
    newest_first = sorted(tasks, key=lambda d: d["created_at"], reverse=True)
    return sorted(newest_first, key=lambda d: (d["status"] not in OPEN_TASK_STATES, d.get("due_on") or "9999"))


def sniffed_type(data: bytes) -> str | None:
    """What a file is by its first bytes: one of PHOTO_TYPES, or None."""
    return next((kind for kind, signature in PHOTO_SIGNATURES.items()
                 if all(data[at:at + len(magic)] == magic for at, magic in signature)), None)


def photo_refusal(data: bytes, declared: str | None, max_bytes: int) -> str | None:
    """Why a photo is refused — "photo_too_large", "photo_not_image" (its bytes are no JPEG, PNG or WebP),
    "photo_type_mismatch" (they are, but not the type it was sent as) — or None. `declared` None or "": not said."""
    if len(data) > max_bytes:
        return "photo_too_large"
    kind = sniffed_type(data)
    head = data[:MARKUP_WINDOW].lower()
    if kind is None or any(marker in head for marker in MARKUP):
        return "photo_not_image"
    if declared and declared != kind:
        return "photo_type_mismatch"
    return None


@dataclass(frozen=True)
class PhotoFit:
    """How a phone sizes a photo before storing it (issue 22 item 2, pwa/photos.js): the long side brought down to
    `long_side` pixels and encoded again as JPEG at the first of `qualities` under `target_bytes`. Encoding it again
    keeps none of the camera's metadata (EXIF, its location included): a form that asks for a location records it
    in its own fields (pwa/geolocate.js), never from a photo's EXIF."""
    long_side: int = 1600
    target_bytes: int = 300 * 1024
    qualities: tuple[float, ...] = (0.82, 0.72, 0.62, 0.5)
    kind: str = "image/jpeg"


PHOTO_FIT = PhotoFit()


def photo_fit() -> dict[str, Any]:
    """PHOTO_FIT as JSON for the phone (/pwa/photo_fit.json)."""
    return {"long_side": PHOTO_FIT.long_side, "target_bytes": PHOTO_FIT.target_bytes,
            "qualities": list(PHOTO_FIT.qualities), "kind": PHOTO_FIT.kind}


def photo_rule() -> dict[str, Any]:
    """The photo rule as JSON, for the offline app (pwa/offline/rules.js): signatures as byte lists, limits by
    document type."""
    return {"signatures": {kind: [[at, list(magic)] for at, magic in signature]
                           for kind, signature in PHOTO_SIGNATURES.items()},
            "markup": [list(marker) for marker in MARKUP], "markup_window": MARKUP_WINDOW,
            "limits": {doc_type: {"max_bytes": limit.max_bytes, "max_count": limit.max_count}
                       for doc_type, limit in PHOTO_LIMITS.items()}}
