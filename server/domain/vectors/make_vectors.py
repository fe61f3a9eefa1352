"""Write server/domain/vectors/field_rules.json: what server/domain/field_rules.py answers for chosen inputs,
which pwa/offline/rules.js must answer alike (pwa/tests/field_rules.test.mjs).

    .venv/bin/python -m server.domain.vectors.make_vectors

tests/test_field_rules.py checks that the committed file is what this script writes, so a changed rule shows
up as a changed file, and that Node passes it.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from server.domain.declaration import DOC_TYPES, TASK_ANSWERS, TASK_STATES
from server.domain.field_rules import (
    ALERT_ACTIONS,
    URGENT_ALERT_KINDS,
    AlertRefused,
    TaskRefused,
    alert_after,
    alerts_in_order,
    needs_of,
    photo_refusal,
    photo_rule,
    sniffed_type,
    task_answered,
    tasks_in_order,
)

PATH = Path(__file__).resolve().parent / "field_rules.json"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108020000009077")
JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8 " + bytes(10)
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
# Finding 5 of issue 13: a "photo" that runs a script when opened, and a page behind a photo's first bytes.
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>fetch("/pwa/session.json")</script></svg>'
POLYGLOT = JPEG[:4] + b'<HTML><body><SCRIPT>fetch("/pwa/session.json")</SCRIPT></body></html>' + JPEG[4:]

NEEDS = [
    [],
    ["meal_delivery", "cleaning"],
    ["meal_delivery", "meal_delivery"],
    ["修水管\n换灯泡", "  修水管  ", "\n\n", ""],
    ["一\r\n二\r三", "四\u2028五", "六\x0b七\x0c八", "九\x1c十\x85十一"],
    ["  \t tab and spaces\t ", "\u3000全角空格\u3000", "\x1f单元分隔\x1f", "\ufeff零宽\u200b"],
]

ALERTS = [
    {"status": "raised"}, {"status": "escalated"}, {"status": "acknowledged"}, {"status": "visiting"},
    {"status": "resolved"},
    {"status": "acknowledged", "acknowledged_by": "user:other", "acknowledged_at": "2026-11-01T08:00:00+08:00"},
]

ORDERS = [
    [("a", "raised", "no_water", "2026-11-20T09:00:00+08:00"), ("b", "raised", "sos", "2026-11-20T08:00:00+08:00"),
     ("c", "resolved", "fall", "2026-11-20T10:00:00+08:00"), ("d", "visiting", "fall", "2026-11-20T07:00:00+08:00"),
     ("e", "escalated", "heart_rate", "2026-11-20T09:30:00+08:00")],
    # Offsets differ: the order is by the instant, not by the text.
    [("x", "raised", "sos", "2026-11-20T09:00:00+08:00"), ("y", "raised", "sos", "2026-11-20T02:00:00+00:00"),
     ("z", "raised", "sos", "2026-11-20T01:30:00Z")],
    # Same instant: the stored order stays (a stable sort).
    [("p", "raised", "fall", "2026-11-20T09:00:00+08:00"), ("q", "raised", "fall", "2026-11-20T09:00:00+08:00")],
]

# A volunteer's answers: every state × every answer (and one that is none) × notes blank or padded; then a note
# as long as it may be, and one longer.
TASK_NOTES = ["", "  已送到  ", "\u3000\t", "\ufeff"]
TASK_LENGTHS = [("assigned", "done", "长" * 1000), ("accepted", "declined", "长" * 1001)]
# Open ones first, soonest due first, undated last; the rest after; newest first within a day.
TASK_ORDERS = [
    [("a", "done", "2026-11-19", "2026-11-18T09:00:00+08:00"), ("b", "assigned", None, "2026-11-19T09:00:00+08:00"),
     ("c", "accepted", "2026-11-21", "2026-11-17T09:00:00+08:00"),
     ("d", "assigned", "2026-11-20", "2026-11-16T09:00:00+08:00"), ("e", "declined", None, "2026-11-20T09:00:00+08:00"),
     ("f", "assigned", "2026-11-20", "2026-11-18T09:00:00+08:00")],
    # One day's open tasks come newest first whatever their stored order; created at once, they keep it.
    [("g", "assigned", "2026-11-20", "2026-11-16T09:00:00+08:00"),
     ("h", "accepted", "2026-11-20", "2026-11-17T09:00:00+08:00"),
     ("i", "assigned", "2026-11-20", "2026-11-18T09:00:00+08:00"),
     ("j", "assigned", "2026-11-20", "2026-11-18T09:00:00+08:00"),
     ("k", "assigned", "2026-11-20", "2026-11-15T09:00:00+08:00")],
    # Stored last-first: the rest, undated, later, sooner.
    [("m", "done", None, "2026-11-16T09:00:00+08:00"), ("n", "accepted", None, "2026-11-16T09:00:00+08:00"),
     ("o", "assigned", "2026-11-21", "2026-11-16T09:00:00+08:00"),
     ("p", "assigned", "2026-11-20", "2026-11-16T09:00:00+08:00")],
]

MAX_BYTES = 2048
PHOTOS = [
    ("png", PNG, "image/png"), ("jpeg", JPEG, "image/jpeg"), ("webp", WEBP, "image/webp"),
    ("type not said", PNG, None),
    ("png sent as jpeg", PNG, "image/jpeg"), ("jpeg sent as png", JPEG, "image/png"),
    ("text sent as jpeg", b"just some text, not a picture", "image/jpeg"),
    ("pdf sent as jpeg", PDF, "image/jpeg"), ("gif", b"GIF89a" + bytes(20), "image/gif"),
    ("empty", b"", "image/jpeg"), ("riff but not webp", b"RIFF\x1a\x00\x00\x00WAVEfmt ", "image/webp"),
    ("too large", PNG + bytes(MAX_BYTES), "image/png"),
    ("svg with a script", SVG, "image/svg+xml"), ("svg sent as png", SVG, "image/png"),
    ("html behind jpeg bytes", POLYGLOT, "image/jpeg"), ("markup past the window", PNG + bytes(1024) + b"<svg", None),
    ("at the size limit", PNG + bytes(MAX_BYTES - len(PNG)), "image/png"),
    ("lower-case markup behind jpeg bytes", JPEG[:4] + b"<script>alert(1)</script>" + JPEG[4:], "image/jpeg"),
    ("upper-case head behind png bytes", PNG + b"<HEAD><title>x</title></HEAD>", "image/png"),
    ("camera metadata", JPEG[:4] + b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta><rdf:RDF/>'
     + JPEG[4:], "image/jpeg"),
]


def _alert_case(doc: dict[str, Any], action: str) -> dict[str, Any]:
    doc = {"_id": "alert:v", "type": "alert", "kind": "sos", "raised_at": "2026-11-20T09:00:00+08:00", **doc}
    try:
        return {"doc": doc, "action": action, "after": alert_after(doc, action, "user:me",
                                                                   "2026-11-20T10:00:00+08:00")}
    except AlertRefused as refused:
        return {"doc": doc, "action": action, "refused": str(refused)}


def _task_case(status: str, answer: str, note: str) -> dict[str, Any]:
    doc = {"_id": "task:v", "type": "task", "status": status, "assigned_to": "user:me"}
    try:
        return {"doc": doc, "answer": answer, "note": note,
                "after": task_answered(doc, answer, note, "2026-11-20T10:00:00+08:00")}
    except TaskRefused as refused:
        return {"doc": doc, "answer": answer, "note": note, "refused": str(refused)}


def build() -> dict[str, Any]:
    photos = [{"name": name, "bytes": base64.b64encode(data).decode(), "declared": declared, "max_bytes": MAX_BYTES,
               "sniffed": sniffed_type(data), "refusal": photo_refusal(data, declared, MAX_BYTES)}
              for name, data, declared in PHOTOS]
    orders = [{"alerts": [{"_id": i, "status": s, "kind": k, "raised_at": at} for i, s, k, at in case],
               "order": [a["_id"] for a in alerts_in_order([{"_id": i, "status": s, "kind": k, "raised_at": at}
                                                            for i, s, k, at in case])]} for case in ORDERS]
    return {
        "about": "server/domain/field_rules.py answers; pwa/offline/rules.js must answer alike. Photo bytes in base64.",
        "photo_rule": photo_rule(),
        "alert_actions": ALERT_ACTIONS, "urgent_alert_kinds": list(URGENT_ALERT_KINDS), "user": "user:me",
        "at": "2026-11-20T10:00:00+08:00",
        "needs": [{"values": values, "needs": needs_of(values)} for values in NEEDS],
        "alert_after": [_alert_case(doc, action) for doc in ALERTS for action in (*ALERT_ACTIONS, "explode")],
        "alerts_in_order": orders,
        "photos": photos,
        "task_answers": TASK_ANSWERS, "task_note_max": DOC_TYPES["task"].fields["volunteer_note"].max_length,
        "task_answered": [*(_task_case(status, answer, note) for status in TASK_STATES
                            for answer in (*TASK_STATES, "explode") for note in TASK_NOTES),
                          *(_task_case(*case) for case in TASK_LENGTHS)],
        "tasks_in_order": [{"tasks": [{"_id": i, "status": s, **({"due_on": d} if d else {}), "created_at": at}
                                      for i, s, d, at in case],
                            "order": [t["_id"] for t in tasks_in_order([
                                {"_id": i, "status": s, **({"due_on": d} if d else {}), "created_at": at}
                                for i, s, d, at in case])]} for case in TASK_ORDERS],
    }


def render() -> str:
    return json.dumps(build(), ensure_ascii=False, indent=1) + "\n"


if __name__ == "__main__":
    PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {PATH}")
