"""Hearings and meetings (issue 15 item 8) as data: their kinds, the participation a person earns points for, and
the rule that reconciles a hearing's paper ballots with who was there. Pure: server/services/meetings.py applies it.

**Participation** is a view over documents that exist anyway (a ballot, an attendance, an opinion), not records of
its own: one fact is stored once, so a hidden opinion or a withdrawn attendance stops counting by itself, and
nothing can disagree with its source. `PARTICIPATION` names, for each kind of participation, the document type it is
read from; `participation_id` gives each event an id made from its source, so whoever mints points for it (the
points slice of issue 16, from server/services/meetings.py `participation`) mints once per event, however often it
reads the view.
"""

from __future__ import annotations

from dataclasses import dataclass

MEETING_KINDS = ("hearing", "joint_meeting", "assembly")  # 听证会, 联席会议, 居民（代表）会议
MEETING_STATES = ("draft", "published")
MAX_AGENDA_ITEMS = 10
MAX_OPINION = 1000  # characters of an opinion
MIN_HIDE_REASON = 4  # characters: a moderation names why

# kind of participation → the document type it is read from (server/services/meetings.py `participation`).
PARTICIPATION: dict[str, str] = {
    "voted": "ballot",  # a counted vote on a matter, by whatever channel (own, door, paper)
    "attended": "attendance",  # marked present at a meeting
    "opinion": "opinion",  # an opinion posted before a meeting and not hidden by the secretary
}


def participation_id(kind: str, source: str, person: str) -> str:
    """The event's id: one per kind, source document and person, whoever reads the view and however often."""
    return f"participation:{kind}:{source}:{person}"


@dataclass(frozen=True)
class PaperCount:
    """One matter's paper ballots at a hearing: the envelopes counted from the box, the voters on the matter's roll
    marked present, and the paper ballots the secretary entered."""

    envelopes: int
    present: int
    entered: int

    def as_text(self) -> str:
        """How a correction remembers the counts it explains: it explains these and no others."""
        return f"{self.envelopes}/{self.present}/{self.entered}"


def paper_mismatch(count: PaperCount, corrected: str | None) -> tuple[str, dict[str, int]] | None:
    """Why a hearing's paper ballots block the matter's close (an i18n key and its figures), or None.

    The envelopes must match the voters marked present (each present voter put one in the box) and the paper ballots
    entered (each envelope entered once). A correction the secretary recorded with its reason lifts the block for
    exactly the counts it explains (`corrected`, PaperCount.as_text); any later change blocks again."""
    if corrected == count.as_text():
        return None
    if count.envelopes != count.present:
        return "meeting_envelopes_vs_present", {"envelopes": count.envelopes, "present": count.present}
    if count.envelopes != count.entered:
        return "meeting_envelopes_vs_entered", {"envelopes": count.envelopes, "entered": count.entered}
    return None
