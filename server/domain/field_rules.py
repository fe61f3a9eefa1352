"""The field work's rules that the server and the offline app both apply, pure: a visit's needs list, what an
action makes of an alert and the order the inbox shows alerts in, and what an attached photo really is.

The offline app gets the vocabularies as data (/pwa/session.json) and runs the same rules in
pwa/offline/rules.js; server/domain/vectors/field_rules.json pins both to the same answers (tests/test_field_rules.py
runs them in Python and in Node).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from server.domain.declaration import ALERT_STATES

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

# Photos people attach, by what their first bytes say (never by the type the sender claims).
PHOTO_TYPES = ("image/jpeg", "image/png", "image/webp")
_MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"%PDF-", "application/pdf"))


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


def sniffed_type(data: bytes) -> str | None:
    """What a file is by its first bytes: a JPEG, PNG or WebP image, a PDF; None for anything else."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in _MAGIC if data.startswith(magic)), None)


def photo_refusal(data: bytes, declared: str | None, max_bytes: int) -> str | None:
    """Why a photo is refused — "photo_too_large", "photo_not_image" (its bytes are no JPEG, PNG or WebP),
    "photo_type_mismatch" (they are, but not the type it was sent as) — or None. `declared` None or "": not said."""
    if len(data) > max_bytes:
        return "photo_too_large"
    kind = sniffed_type(data)
    if kind not in PHOTO_TYPES:
        return "photo_not_image"
    if declared and declared != kind:
        return "photo_type_mismatch"
    return None
