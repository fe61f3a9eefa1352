"""Matching residents' needs to offers of help (issue 17, item 4): pure rules, read by the service, the pages and
the bench alike.

The matcher first applies the must-match rules (`MUST_RULES`, in order: kind of help, place, language, time,
capacity left); an offer failing one is no candidate. Candidates are then ranked by a score of declared factors
(`FACTORS`, each 0..1 times its weight): nearness by building and grid (never an exact address), time in common,
skills, reliability, least-used provider first. Each proposal keeps its factors, each unmatched need the rules that
left it without a candidate, as i18n message keys with parameters: people read why, in Chinese or English.

The matcher sees a need only through `NeedView`, built from `NEED_FIELDS_USED` of the need and the building of
its household: fields below the protected tiers (tests/test_matching.py checks that), so it never needs a
protected field opened. Weekly hours are records {day: 0 (Monday) … 6, start: "HH:MM", end: "HH:MM"}.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Doc = dict[str, Any]
Slot = tuple[int, int, int]  # day, start minute, end minute
Words = tuple[str, dict[str, Any]]  # an i18n message key and its parameters

PROPOSALS_PER_NEED = 3  # candidates put to both sides at once; each holds a place of its offer's capacity
MAX_SLOTS = 28  # weekly hours: at most four stretches a day
MAX_CAPACITY = 20  # needs one offer takes on at once
DEFAULT_LANGUAGE = "putonghua"  # a need that names no language
# A need that names no hours can be met at any time of the week.
WHOLE_WEEK: tuple[Slot, ...] = tuple((day, 0, 24 * 60) for day in range(7))
ENOUGH_OVERLAP = 4 * 60  # minutes a week in common that count as fully overlapping
LIVE_STATES = ("proposed", "accepted")  # a match in one of these holds a place of its offer's capacity
# The need's fields the matcher reads (with its household's building): none is of a protected tier.
NEED_FIELDS_USED = ("_id", "community", "grid", "household", "category", "description", "language", "hours",
                    "created_at")
# The kind of volunteer task a need becomes (anything else: a visit, to see what is needed).
TASK_KIND_OF_NEED = {"meal_delivery": "delivery", "shopping": "delivery", "medical_escort": "accompany"}
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


# ---------------------------------------------------------------- weekly hours

def hours_problems(records: Any) -> list[Words]:
    """Why these weekly hours are impossible (none if they are fine): each stretch a day of the week, a start
    before its end on that day, no two overlapping."""
    if not isinstance(records, list) or not records:
        return [("match_hours_missing", {})]
    if len(records) > MAX_SLOTS:
        return [("match_hours_too_many", {"max": MAX_SLOTS})]
    problems: list[Words] = []
    slots: list[Slot] = []
    for i, item in enumerate(records, start=1):
        if not isinstance(item, dict):
            problems.append(("match_hours_shape", {"i": i}))
            continue
        day, start, end = item.get("day"), item.get("start"), item.get("end")
        if not isinstance(day, int) or isinstance(day, bool) or not 0 <= day <= 6:
            problems.append(("match_hours_day", {"i": i}))
        elif not all(isinstance(v, str) and _TIME.match(v) for v in (start, end)):
            problems.append(("match_hours_time", {"i": i}))
        elif _minute(start) >= _minute(end):
            problems.append(("match_hours_order", {"i": i, "start": start, "end": end}))
        else:
            slots.append((day, _minute(start), _minute(end)))
    slots.sort()
    for (d1, _, e1), (d2, s2, _) in zip(slots, slots[1:], strict=False):
        if d1 == d2 and s2 < e1:
            problems.append(("match_hours_overlap", {"day": d1}))
            break
    return problems


def _minute(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


def slots_of(records: Iterable[Mapping[str, Any]] | None) -> tuple[Slot, ...]:
    """Weekly hours as (day, start minute, end minute), sorted; none given: the whole week."""
    if not records:
        return WHOLE_WEEK
    return tuple(sorted((r["day"], _minute(r["start"]), _minute(r["end"])) for r in records))


def common(a: tuple[Slot, ...], b: tuple[Slot, ...]) -> list[Slot]:
    """The stretches of the week both have."""
    found = []
    for day, s1, e1 in a:
        for d2, s2, e2 in b:
            if d2 == day and max(s1, s2) < min(e1, e2):
                found.append((day, max(s1, s2), min(e1, e2)))
    return sorted(found)


def as_records(slots: Iterable[Slot]) -> list[Doc]:
    return [{"day": d, "start": f"{s // 60:02d}:{s % 60:02d}", "end": f"{e // 60:02d}:{e % 60:02d}"}
            for d, s, e in slots]


# ---------------------------------------------------------------- what the matcher sees

@dataclass(frozen=True)
class NeedView:
    """A need as the matcher sees it: no name, no address, nothing protected."""

    id: str
    community: str
    grid: str
    building: str  # of its household ("" if unknown): nearness without an address
    help_kind: str
    description: str
    language: str
    hours: tuple[Slot, ...]
    created_at: str


@dataclass(frozen=True)
class OfferView:
    id: str
    keeper: str  # who answers for it: the volunteer or resident offering, or whoever answers for an organisation
    community: str
    grid: str | None  # None: it reaches the whole community (an organisation's clinic)
    building: str
    help_kind: str
    languages: frozenset[str]
    capacity: int
    hours: tuple[Slot, ...]
    skills: tuple[str, ...]


def need_view(need: Doc, building: str = "") -> NeedView:
    """The matcher's view of a need (only `NEED_FIELDS_USED`) and its household's building. Hours a phone wrote
    that are not possible (the declaration checks their shape only) count as none given: any time."""
    hours = need.get("hours")
    return NeedView(need["_id"], need["community"], need["grid"], building, need["category"],
                    need.get("description", ""), need.get("language") or DEFAULT_LANGUAGE,
                    WHOLE_WEEK if hours_problems(hours) else slots_of(hours), need["created_at"])


def offer_view(offer: Doc) -> OfferView:
    return OfferView(offer["_id"], offer["keeper"], offer["community"], offer.get("grid"), offer.get("building", ""),
                     offer["help_kind"], frozenset(offer["languages"]), offer["capacity"], slots_of(offer["hours"]),
                     tuple(offer.get("skills", ())))


@dataclass
class Record:
    """What the matches so far say of the offers: places taken, and each keeper's history."""

    taken: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # offer -> live matches
    live: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # need -> live matches
    agreed: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # keeper -> proposals they accepted
    dropped: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # keeper -> proposals they declined
    used: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # keeper -> accepted matches
    tried: set[tuple[str, str]] = field(default_factory=set)  # (need, offer) already proposed, whatever came of it

    @classmethod
    def of(cls, matches: Iterable[Doc], finished: frozenset[str] = frozenset()) -> Record:
        """`finished`: accepted matches whose help is over (its task done or declined, its need closed): they no
        longer hold a place of their offer."""
        record = cls()
        for m in matches:
            record.tried.add((m["need"], m["offer"]))
            if m["status"] in LIVE_STATES and m["_id"] not in finished:
                record.taken[m["offer"]] += 1
                record.live[m["need"]] += 1
            if m["status"] in ("accepted", "done"):  # done: an organisation's help given, a use all the same
                record.used[m["keeper"]] += 1
            if m.get("provider_answer") == "accepted":
                record.agreed[m["keeper"]] += 1
            elif m.get("provider_answer") == "declined":
                record.dropped[m["keeper"]] += 1
        return record


# ---------------------------------------------------------------- the rules, declared

@dataclass(frozen=True)
class MustRule:
    name: str
    reason: str  # the message key naming how many offers this rule left out
    holds: Callable[[NeedView, OfferView, Record], bool]


MUST_RULES: tuple[MustRule, ...] = (  # the kind of help first: `plan` and `reasons` look offers up by it
    MustRule("kind", "match_reason_kind", lambda n, o, r: o.help_kind == n.help_kind),
    MustRule("place", "match_reason_place", lambda n, o, r: o.community == n.community and o.grid in (None, n.grid)),
    MustRule("language", "match_reason_language", lambda n, o, r: n.language in o.languages),
    MustRule("time", "match_reason_time", lambda n, o, r: bool(common(n.hours, o.hours))),
    MustRule("capacity", "match_reason_capacity", lambda n, o, r: r.taken[o.id] < o.capacity),
)


@dataclass(frozen=True)
class Factor:
    name: str
    weight: float
    # (0..1, the message key and parameters saying it in plain words)
    judge: Callable[[NeedView, OfferView, Record], tuple[float, Words]]


def _nearness(n: NeedView, o: OfferView, r: Record) -> tuple[float, Words]:
    if o.grid is None:
        return 0.3, ("match_factor_community", {})
    if n.building and o.building == n.building:
        return 1.0, ("match_factor_building", {"building": n.building})
    return 0.6, ("match_factor_grid", {})


def _overlap(n: NeedView, o: OfferView, r: Record) -> tuple[float, Words]:
    minutes = sum(e - s for _, s, e in common(n.hours, o.hours))
    return min(1.0, minutes / ENOUGH_OVERLAP), ("match_factor_time", {"hours": round(minutes / 60, 1)})


def _skills(n: NeedView, o: OfferView, r: Record) -> tuple[float, Words]:
    said = [s for s in o.skills if s and s in n.description]
    return (1.0, ("match_factor_skills", {"skills": "、".join(said)})) if said else (0.0, ("match_factor_no_skills",
                                                                                           {}))


def _reliability(n: NeedView, o: OfferView, r: Record) -> tuple[float, Words]:
    agreed, dropped = r.agreed[o.keeper], r.dropped[o.keeper]
    if agreed + dropped == 0:
        return 0.5, ("match_factor_new", {})
    return agreed / (agreed + dropped), ("match_factor_reliability", {"agreed": agreed, "asked": agreed + dropped})


def _least_used(n: NeedView, o: OfferView, r: Record) -> tuple[float, Words]:
    used = r.used[o.keeper]
    return 1 / (1 + used), ("match_factor_used", {"count": used})


FACTORS: tuple[Factor, ...] = (
    Factor("nearness", 3.0, _nearness),
    Factor("time", 2.0, _overlap),
    Factor("skills", 1.0, _skills),
    Factor("reliability", 1.5, _reliability),
    Factor("least_used", 1.0, _least_used),
)


# ---------------------------------------------------------------- the plan

@dataclass(frozen=True)
class Proposal:
    need: NeedView
    offer: OfferView
    score: float
    factors: list[Doc]  # {factor, points, words: message key, params}: what the match document keeps
    hours: list[Slot]  # the time in common


@dataclass
class Plan:
    proposals: list[Proposal] = field(default_factory=list)
    unmatched: dict[str, list[Words]] = field(default_factory=dict)  # need id -> the reasons, in plain words


def judge(need: NeedView, offer: OfferView, record: Record) -> tuple[float, list[Doc]]:
    """The score of one candidate and each factor's part of it."""
    factors = []
    for factor in FACTORS:
        value, (key, params) = factor.judge(need, offer, record)
        factors.append({"factor": factor.name, "points": round(value * factor.weight, 2), "words": key,
                        "params": params})
    return round(sum(f["points"] for f in factors), 2), factors


def first_failed(need: NeedView, offer: OfferView, record: Record) -> str | None:
    """The first must-match rule this offer fails for this need, or None if it is a candidate."""
    return next((rule.name for rule in MUST_RULES if not rule.holds(need, offer, record)), None)


def plan(needs: Iterable[NeedView], offers: Iterable[OfferView], record: Record) -> Plan:
    """Proposals for these open needs, oldest first, each taking a place of its offer's capacity, up to
    PROPOSALS_PER_NEED live ones a need, and the reasons of every need left without one. Offers already proposed for
    a need (`record.tried`: waiting, accepted or declined) are not proposed again, so re-running leaves what
    people have answered as it is."""
    by_kind: dict[tuple[str, str], list[OfferView]] = defaultdict(list)
    in_community: dict[str, list[OfferView]] = defaultdict(list)
    for offer in offers:
        by_kind[offer.community, offer.help_kind].append(offer)
        in_community[offer.community].append(offer)
    result = Plan()
    for need in sorted(needs, key=lambda n: (n.created_at, n.id)):
        room = PROPOSALS_PER_NEED - record.live[need.id]
        if room <= 0:
            continue
        candidates = []
        for offer in by_kind[need.community, need.help_kind]:
            if (need.id, offer.id) not in record.tried and first_failed(need, offer, record) is None:
                score, factors = judge(need, offer, record)
                candidates.append((-score, offer.id, offer, factors))
        candidates.sort(key=lambda c: c[:2])
        for minus_score, _, offer, factors in candidates[:room]:
            record.taken[offer.id] += 1
            record.tried.add((need.id, offer.id))
            record.live[need.id] += 1
            result.proposals.append(Proposal(need, offer, -minus_score, factors, common(need.hours, offer.hours)))
        if not candidates and record.live[need.id] == 0:
            result.unmatched[need.id] = reasons(need, by_kind[need.community, need.help_kind],
                                                len(in_community[need.community]), record)
    return result


def reasons(need: NeedView, same_kind: list[OfferView], total: int, record: Record) -> list[Words]:
    """Why none of the `total` offers of the need's community is a candidate: how many each must-match rule left
    out, in order. The first rule is the kind of help, so every offer of another kind fails it: only those of the
    same kind (`same_kind`) are judged one by one."""
    if not total:
        return [("match_reason_no_offers", {})]
    failed: dict[str, int] = defaultdict(int)
    failed[MUST_RULES[0].name] = total - len(same_kind)
    for offer in same_kind:
        name = first_failed(need, offer, record)
        failed[name or "tried"] += 1
    words = [(rule.reason, {"count": failed[rule.name], "total": total}) for rule in MUST_RULES
             if failed[rule.name]]
    if failed["tried"]:
        words.append(("match_reason_tried", {"count": failed["tried"]}))
    return words
