"""Hearings and meetings (issue 15 item 8): the secretary schedules and publishes a meeting with its agenda (items
may name a matter), residents and grid workers post opinions before it, the secretary hides one with a reason
(kept and filed, never deleted), marks who came (named only with their consent), counts a hearing's paper ballots,
and publishes the minutes with each decision linked to its matter.

- **Paper ballots at a hearing** (issue 15 item 5): the secretary enters each paper ballot on the matter's page
  (server/services/deliberation.py, channel "paper") and counts the envelopes here. `paper_refusal` reconciles the
  envelopes with the voters on the matter's roll marked present and with the paper ballots entered
  (server/domain/meetings.py `paper_mismatch`); a mismatch blocks the matter's close, by hand and by the clock,
  until fixed or explained by a correction the secretary records (filed).
- **Participation** (`participation`): a view over ballots, attendances and opinions, the events participation
  points are minted from (server/domain/meetings.py says why a view and not records of its own).

Ids: `meeting:<key>`, `opinion:<meeting key>:<random>`, `attendance:<meeting key>:<resident id>` (marking someone
twice keeps one), so a meeting's opinions and attendance are read by id prefix.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from server.domain.access import Principal
from server.domain.declaration import Role, validate
from server.domain.errors import FieldError, UserError
from server.domain.meetings import (
    MAX_AGENDA_ITEMS,
    MAX_OPINION,
    MEETING_KINDS,
    MIN_HIDE_REASON,
    PARTICIPATION,
    PaperCount,
    paper_mismatch,
    participation_id,
)
from server.security import filing
from server.security.filing import Signer
from server.services import deliberation as d
from server.store import queries
from server.store.couch import Couch, get_many, get_or_none, iter_view_docs

Doc = dict[str, Any]
MAX_HEADCOUNT = 100_000


class MeetingError(UserError):
    """A meeting, opinion or count refused, naming the field and why (an i18n key); nothing was stored."""

    def __init__(self, field: str, key: str, status: int = 400, **params: str | int) -> None:
        super().__init__([FieldError(field, key, params)], status)


def key_of(meeting_id: str) -> str:
    return meeting_id.split(":", 1)[1]


def _by_prefix(couch: Couch, prefix: str) -> list[Doc]:
    return [r["doc"] for r in couch.main.all(startkey=prefix, endkey=prefix + "\ufff0", as_list=True)]


def _secretary(p: Principal, meeting: Doc) -> None:
    if not d.is_secretary_of(p, meeting["community"]):
        raise MeetingError("meeting", "vote_not_your_community", 403)


def _published(meeting: Doc) -> None:
    if meeting["status"] != "published":
        raise MeetingError("meeting", "meeting_not_published", 409)


# ---------------------------------------------------------------- scheduling

@dataclass(frozen=True)
class NewMeeting:
    community: str
    kind: str
    title: str
    starts_at: dt.datetime
    place: str
    agenda: tuple[tuple[str, str], ...]  # (title, matter key or ""), as the form's rows give them


def _agenda(couch: Couch, m: NewMeeting) -> list[Doc]:
    """The agenda's items: a row with a matter and no title takes the matter's; a matter must be the community's."""
    items = []
    for title, matter_key in m.agenda:
        matter = queries.load_doc(couch, f"matter:{matter_key.strip()}", "matter") if matter_key.strip() else None
        if matter_key.strip() and (matter is None or matter["community"] != m.community):
            raise MeetingError("agenda", "meeting_matter_elsewhere")
        title = title.strip() or (matter["title"] if matter else "")
        if title:
            items.append({"title": title[:200], **({"matter": matter["_id"]} if matter else {})})
    if not items:
        raise MeetingError("agenda", "meeting_agenda_required")
    if len(items) > MAX_AGENDA_ITEMS:
        raise MeetingError("agenda", "meeting_agenda_too_long", max=MAX_AGENDA_ITEMS)
    return items


def schedule(couch: Couch, p: Principal, m: NewMeeting, now: dt.datetime) -> Doc:
    """The secretary schedules a meeting as a draft (published by `publish`); raises MeetingError, storing nothing."""
    community = queries.load_doc(couch, m.community, "community")
    if community is None or not d.is_secretary_of(p, m.community):
        raise MeetingError("community", "vote_not_your_community", 403)
    if m.kind not in MEETING_KINDS:
        raise MeetingError("kind", "err_not_choice", value=m.kind[:40], choices=", ".join(MEETING_KINDS))
    if not m.title.strip():
        raise MeetingError("title", "err_required")
    if not m.place.strip():
        raise MeetingError("place", "err_required")
    if m.starts_at <= now:
        raise MeetingError("starts_at", "meeting_in_past")
    meeting = {"_id": f"meeting:{uuid.uuid4().hex}", "type": "meeting", "street": community["street"],
               "community": m.community, "kind": m.kind, "title": m.title.strip()[:200],
               "starts_at": m.starts_at.isoformat(), "place": m.place.strip()[:200], "agenda": _agenda(couch, m),
               "status": "draft", "created_by": p.user_id, "created_at": now.isoformat()}
    validate(meeting)
    return couch.main.save(meeting)


def publish(couch: Couch, p: Principal, meeting: Doc, now: dt.datetime) -> Doc:
    _secretary(p, meeting)
    if meeting["status"] == "published":
        return meeting
    return couch.main.save({**meeting, "status": "published", "published_at": now.isoformat()})


def meetings_of(couch: Couch, communities: Iterable[str], *, drafts: bool) -> list[Doc]:
    """The communities' meetings, soonest first (drafts only for who may see them: `drafts`)."""
    found = [m for c in communities for m in iter_view_docs(couch.main, "linli/by_place", [c, "meeting"])
             if drafts or m["status"] == "published"]
    return sorted(found, key=lambda m: m["starts_at"])


def upcoming_and_past(meetings: list[Doc], now: dt.datetime) -> tuple[list[Doc], list[Doc]]:
    """Meetings still to come (soonest first) and those held (latest first)."""
    upcoming = [m for m in meetings if dt.datetime.fromisoformat(m["starts_at"]) >= now]
    past = [m for m in meetings if dt.datetime.fromisoformat(m["starts_at"]) < now]
    return upcoming, past[::-1]


# ---------------------------------------------------------------- opinions

def may_post(p: Principal, meeting: Doc, resident: Doc | None) -> bool:
    """Residents of the community and its grid workers post opinions."""
    return ((resident or {}).get("community") == meeting["community"]
            or (p.has(Role.GRID_WORKER) and meeting["community"] in p.communities))


def opinions_open(meeting: Doc, now: dt.datetime) -> bool:
    return meeting["status"] == "published" and now < dt.datetime.fromisoformat(meeting["starts_at"])


def post_opinion(couch: Couch, p: Principal, user: Doc, resident: Doc | None, meeting: Doc, text: str,
                 now: dt.datetime) -> Doc:
    if not may_post(p, meeting, resident):
        raise MeetingError("text", "meeting_may_not_post", 403)
    if not opinions_open(meeting, now):
        raise MeetingError("text", "meeting_opinions_closed", 409)
    text = text.strip()
    if not text:
        raise MeetingError("text", "err_required")
    if len(text) > MAX_OPINION:
        raise MeetingError("text", "err_too_long", max=MAX_OPINION)
    opinion = {"_id": f"opinion:{key_of(meeting['_id'])}:{uuid.uuid4().hex}", "type": "opinion",
               "street": meeting["street"], "community": meeting["community"], "meeting": meeting["_id"],
               "text": text, "author_name": user.get("display_name") or user["username"],
               **({"resident": resident["_id"]} if resident and resident["community"] == meeting["community"] else {}),
               "created_by": p.user_id, "created_at": now.isoformat()}
    validate(opinion)
    return couch.main.save(opinion)


def opinions(couch: Couch, meeting: Doc) -> list[Doc]:
    """Every opinion on the meeting, hidden ones too, oldest first (pages decide who reads a hidden one's text)."""
    return sorted(_by_prefix(couch, f"opinion:{key_of(meeting['_id'])}:"), key=lambda o: o["created_at"])


def hide_opinion(couch: Couch, signer: Signer, p: Principal, meeting: Doc, opinion_id: str, reason: str,
                 now: dt.datetime) -> Doc:
    """The secretary hides an opinion, naming why: the opinion is kept as it was, marked hidden, and filed."""
    _secretary(p, meeting)
    opinion = queries.load_doc(couch, opinion_id, "opinion")
    if opinion is None or opinion["meeting"] != meeting["_id"]:
        raise MeetingError("opinion", "meeting_no_such_opinion", 404)
    if opinion.get("hidden"):
        raise MeetingError("opinion", "meeting_opinion_hidden_already", 409)
    reason = reason.strip()
    if len(reason) < MIN_HIDE_REASON:
        raise MeetingError("reason", "meeting_hide_reason_short", min=MIN_HIDE_REASON)
    hidden = {**opinion, "hidden": True, "hidden_reason": reason[:500], "hidden_by": p.user_id,
              "hidden_at": now.isoformat()}
    validate(hidden)
    saved = couch.main.save(hidden)
    filing.append(couch, signer, street=meeting["street"], community=meeting["community"], actor=p.user_id,
                  action=filing.OPINION_HIDDEN, target=opinion_id, fields=[], purpose=reason[:500], device="server",
                  at=now)
    return saved


# ---------------------------------------------------------------- attendance

def attendance(couch: Couch, meeting: Doc) -> list[Doc]:
    return _by_prefix(couch, f"attendance:{key_of(meeting['_id'])}:")


def mark_present(couch: Couch, p: Principal, meeting: Doc, resident_id: str, named: bool, now: dt.datetime) -> Doc:
    """The secretary marks a resident of the community present (named in the published attendance only if they
    agree); the head count grows to cover everyone marked. Returns the meeting as saved."""
    _secretary(p, meeting)
    _published(meeting)
    resident = queries.load_doc(couch, resident_id, "resident")
    if resident is None or resident["community"] != meeting["community"]:
        raise MeetingError("resident", "meeting_not_a_resident")
    doc_id = f"attendance:{key_of(meeting['_id'])}:{resident_id}"
    existing = get_or_none(couch.main, doc_id)
    present = {**(existing or {}), "_id": doc_id, "type": "attendance",
               **{k: resident[k] for k in ("street", "community", "grid", "household")}, "meeting": meeting["_id"],
               "resident": resident_id, "named": named, "created_by": p.user_id, "created_at": now.isoformat()}
    validate(present)
    couch.main.save(present)
    return _refresh_attendance(couch, meeting)


def set_headcount(couch: Couch, p: Principal, meeting: Doc, headcount: int) -> Doc:
    """Everyone counted at the door, those without a record too: never fewer than those marked present."""
    _secretary(p, meeting)
    _published(meeting)
    marked = len(attendance(couch, meeting))
    if headcount < marked:
        raise MeetingError("headcount", "meeting_headcount_below_marked", marked=marked)
    if headcount > MAX_HEADCOUNT:
        raise MeetingError("headcount", "meeting_headcount_range", max=MAX_HEADCOUNT)
    return couch.main.save({**meeting, "headcount": headcount})


def _refresh_attendance(couch: Couch, meeting: Doc) -> Doc:
    """The meeting's public attendance from its attendance documents: the names of those who agreed."""
    present = attendance(couch, meeting)
    residents = get_many(couch.main, [a["resident"] for a in present if a["named"]])
    names = sorted(r["name"] for r in residents.values())
    fresh = couch.main.get(meeting["_id"])
    return couch.main.save({**fresh, "named_attendees": names,
                            "headcount": max(fresh.get("headcount", 0), len(present))})


# ---------------------------------------------------------------- a hearing's paper ballots

def paper_record(meeting: Doc, matter_id: str) -> Doc | None:
    return next((r for r in meeting.get("paper", []) if r["matter"] == matter_id), None)


def _withpaper_record(meeting: Doc, record: Doc) -> Doc:
    others = [r for r in meeting.get("paper", []) if r["matter"] != record["matter"]]
    return {**meeting, "paper": [*others, record]}


def _agenda_matter(couch: Couch, meeting: Doc, matter_id: str) -> Doc:
    if matter_id not in {i.get("matter") for i in meeting["agenda"]}:
        raise MeetingError("matter", "meeting_matter_not_on_agenda")
    matter = queries.load_doc(couch, matter_id, "matter")
    if matter is None or matter["status"] != "open" or matter["mode"] != "open":
        raise MeetingError("matter", "meeting_matter_not_paper", 409)
    return matter


def set_envelopes(couch: Couch, p: Principal, meeting: Doc, matter_id: str, envelopes: int) -> Doc:
    """The secretary records how many envelopes the hearing's box held for an open matter on its agenda."""
    _secretary(p, meeting)
    _published(meeting)
    matter = _agenda_matter(couch, meeting, matter_id)
    if not 0 <= envelopes <= matter["roll_size"]:
        raise MeetingError("envelopes", "meeting_envelopes_range", max=matter["roll_size"])
    record = {**(paper_record(meeting, matter_id) or {}), "matter": matter_id, "envelopes": envelopes}
    saved = _withpaper_record(meeting, record)
    validate(saved)
    return couch.main.save(saved)


def hearings_of(couch: Couch, matter: Doc) -> list[Doc]:
    """The community's published meetings that counted envelopes for the matter."""
    return [m for m in meetings_of(couch, [matter["community"]], drafts=False) if paper_record(m, matter["_id"])]


def paper_count(couch: Couch, matter: Doc, hearings: list[Doc]) -> PaperCount:
    """The matter's envelopes at these hearings, the voters of its roll marked present there, its paper ballots."""
    on_roll = {e["voter"] for e in d.roll_of(couch, matter)}
    voter_of = "household" if matter["electorate"] == "household" else "resident"
    present = {a[voter_of] for h in hearings for a in attendance(couch, h)} & on_roll
    entered = sum(v["channel"] == "paper" for voter in d.ballots(couch, matter) for v in voter.versions)
    return PaperCount(sum(paper_record(h, matter["_id"])["envelopes"] for h in hearings), len(present), entered)


def paper_state(couch: Couch, matter: Doc) -> tuple[PaperCount | None, d.VoteError | None]:
    """The matter's paper count at its hearings and why it blocks the close (both counts named), if it does; (None,
    None) when no hearing counted envelopes for it."""
    hearings = hearings_of(couch, matter)
    if not hearings:
        return None, None
    count = paper_count(couch, matter, hearings)
    corrected = next((r.get("corrected") for h in hearings if (r := paper_record(h, matter["_id"]))
                      and r.get("corrected")), None)
    mismatch = paper_mismatch(count, corrected)
    return count, (d.VoteError("close", mismatch[0], 409, **mismatch[1]) if mismatch else None)


def paper_refusal(couch: Couch, matter: Doc) -> d.VoteError | None:
    """Why the matter may not close yet (deliberation.close_refusal), or None."""
    return paper_state(couch, matter)[1]


def correct(couch: Couch, signer: Signer, p: Principal, meeting: Doc, matter_id: str, reason: str,
            now: dt.datetime) -> Doc:
    """The secretary explains a mismatch (say, a voter present who put no envelope in): the correction holds for
    the counts as they stand, and is filed."""
    _secretary(p, meeting)
    matter = _agenda_matter(couch, meeting, matter_id)
    record = paper_record(meeting, matter_id)
    if record is None:
        raise MeetingError("matter", "meeting_no_envelopes")
    reason = reason.strip()
    if len(reason) < MIN_HIDE_REASON:
        raise MeetingError("reason", "meeting_correction_reason_short", min=MIN_HIDE_REASON)
    counts = paper_count(couch, matter, hearings_of(couch, matter)).as_text()
    saved = _withpaper_record(meeting, {**record, "corrected": counts, "reason": reason[:500],
                                         "corrected_by": p.user_id})
    validate(saved)
    saved = couch.main.save(saved)
    filing.append(couch, signer, street=meeting["street"], community=meeting["community"], actor=p.user_id,
                  action=filing.PAPER_CORRECTED, target=matter_id, fields=[], purpose=f"{counts}: {reason[:400]}",
                  device="server", at=now)
    return saved


# ---------------------------------------------------------------- minutes

def publish_minutes(couch: Couch, p: Principal, meeting: Doc, minutes: str, decisions: list[str],
                    now: dt.datetime) -> Doc:
    """The secretary publishes the minutes: a text and a decision per agenda item, linked to the item's matter.
    Published minutes are final (what the community read stays what it was)."""
    _secretary(p, meeting)
    _published(meeting)
    if meeting.get("minutes_published_at"):
        raise MeetingError("minutes", "meeting_minutes_final", 409)
    if not minutes.strip():
        raise MeetingError("minutes", "err_required")
    rows = [{"text": text.strip()[:2000], **({"matter": item["matter"]} if item.get("matter") else {})}
            for item, text in zip(meeting["agenda"], decisions, strict=False) if text.strip()]
    saved = {**meeting, "minutes": minutes.strip()[:10000], "decisions": rows, "minutes_published_at": now.isoformat()}
    validate(saved)
    return couch.main.save(saved)


# ---------------------------------------------------------------- participation

@dataclass(frozen=True)
class Participation:
    """One person's participation: `kind` of server/domain/meetings.py PARTICIPATION, the person (a resident, or a
    user for a committee member or grid worker), the document it is read from, when."""

    id: str
    kind: str
    person: str
    source: str
    at: str


def _event(kind: str, person: str, doc: Doc) -> Participation:
    return Participation(participation_id(kind, doc["_id"], person), kind, person, doc["_id"], doc["created_at"])


# Who took part, as each source document says (a person, or None: nobody's participation).
_PERSON_OF: dict[str, Callable[[Doc], str | None]] = {
    "ballot": lambda b: b.get("resident") or (b["voter"] if b["channel"] == "own" else None),
    "attendance": lambda a: a["resident"],
    "opinion": lambda o: None if o.get("hidden") else (o.get("resident") or o["created_by"]),
}
assert set(_PERSON_OF) == set(PARTICIPATION.values())
_KIND_OF = {type_name: kind for kind, type_name in PARTICIPATION.items()}


def participation_of(doc: Doc) -> Participation | None:
    """The participation one document records, if any: a vote counts for the resident who cast it (their
    household's ballot: the member named on it; a committee member: their account), an attendance for the
    resident marked present, an opinion for its author unless the secretary hid it."""
    type_name = doc.get("type")
    person = _PERSON_OF[type_name](doc) if type_name in _PERSON_OF else None
    return _event(_KIND_OF[type_name], person, doc) if person else None


def participation(couch: Couch, community: str) -> Iterator[Participation]:
    """Every participation in the community: the hook the points ledger mints from (mint once per `id`)."""
    for type_name in PARTICIPATION.values():
        for doc in iter_view_docs(couch.main, "linli/by_place", [community, type_name]):
            event = participation_of(doc)
            if event:
                yield event
