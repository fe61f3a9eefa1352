"""The monthly satisfaction survey per community, with published results (plan §4.5: satisfaction surveyed
monthly and published; target 76% → 90%).

One answer per resident per month (the document id says so, so a second answer is a conflict, not a
double count). Results publish only totals per community and month, never who answered what.

Surveys that mean something (issue 18 item 5): each month the secretary draws a sample of households stratified
by grid (`draw_sample`, server/domain/sampling.py); volunteers and grid workers ask them at the door
(`answer_at_door`), residents answer online (`answer`). The published page gives, beside the totals, the sample's
response rate and the satisfied share estimated from the sampled households' answers with its 95% interval.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from pycouchdb.exceptions import Conflict

from server.domain import sampling
from server.domain.access import Principal, door_answer_id, may_see, survey_door_refusal, survey_sample_id
from server.domain.declaration import Role, validate
from server.domain.errors import FieldError, UserError
from server.services import tasks
from server.store import sweeps
from server.store.couch import Couch, docs_of_type, get_many, get_or_none, iter_view_docs

Doc = dict[str, Any]
SATISFIED_FROM = 4  # 4 or 5 of 5 counts as satisfied


class SurveyError(UserError):
    def __init__(self, field: str, key: str, status: int = 400, **params: str | int) -> None:
        super().__init__([FieldError(field, key, params)], status)


def month_of(now: dt.datetime, tz: ZoneInfo) -> str:
    return now.astimezone(tz).strftime("%Y-%m")


def response_id(community: str, month: str, user_id: str) -> str:
    return f"survey_response:{community.split(':', 1)[1]}:{month}:{user_id.split(':', 1)[1]}"


def answer(couch: Couch, p: Principal, resident: dict[str, Any], overall: int, comment: str, now: dt.datetime,
           tz: ZoneInfo) -> dict[str, Any]:
    """A resident's answer for this month in their community."""
    if p.resident != resident["_id"]:
        raise SurveyError("overall", "err_survey_residents_only")
    if not (isinstance(overall, int) and 1 <= overall <= 5):
        raise SurveyError("overall", "err_survey_overall")
    month = month_of(now, tz)
    doc = {"_id": response_id(resident["community"], month, p.user_id), "type": "survey_response",
           "street": resident["street"], "community": resident["community"], "month": month, "overall": overall,
           "channel": "own", "created_by": p.user_id, "created_at": now.isoformat(),
           **({"household": resident["household"]} if resident.get("household") else {}),
           **({"comment": comment.strip()[:500]} if comment.strip() else {})}
    validate(doc)
    try:
        return couch.main.save(doc)
    except Conflict:
        raise SurveyError("overall", "err_survey_answered", month=month) from None


@dataclass(frozen=True)
class Result:
    community: str
    month: str
    answers: int
    mean: float | None  # None: nobody answered (a month with a sample drawn is published all the same)
    satisfied_share: float | None
    # The month's sample, if one was drawn: its size, the sampled households that answered, and the estimate.
    sample_size: int = 0
    sample_answers: int = 0
    estimate: sampling.Estimate | None = None

    @property
    def response_rate(self) -> float:
        return self.sample_answers / self.sample_size if self.sample_size else 0.0


def results(couch: Couch) -> list[Result]:
    """Totals per community and month, newest month first, with the sample's response rate and estimate: the totals
    from the answers' tally (five rows a month), the sampled months from their answers' rows, no answer read whole."""
    scores: dict[tuple[str, str], dict[int, int]] = {}
    for row in couch.main.query("linli/survey_answers", startkey=["tally"], endkey=["tally", {}], group_level=4,
                                as_list=True):
        _, community, month, overall = row["key"]
        scores.setdefault((community, month), {})[overall] = row["value"]
    samples = {(d["community"], d["month"]): d for d in docs_of_type(couch.main, "survey_sample")}
    sampled_answers = _month_answers(couch, list(samples))
    found = []
    for c, m in scores.keys() | samples.keys():
        counted = scores.get((c, m), {})
        n = sum(counted.values())
        found.append(Result(c, m, n, round(sum(score * k for score, k in counted.items()) / n, 2) if n else None,
                            round(sum(k for score, k in counted.items() if score >= SATISFIED_FROM) / n, 3)
                            if n else None, **_sampled(samples.get((c, m)), sampled_answers.get((c, m), []))))
    return sorted(found, key=lambda r: (r.month, r.community), reverse=True)


def sample_answers(couch: Couch, communities: list[str], months: list[str],
                   grid: str | None = None) -> tuple[int, int]:
    """The households sampled in these communities and months (of one grid: its stratum alone), and of those the
    ones that answered (as `results` counts them). Only the months' own rows are read: the samples by id, then the
    answers of the sampled months."""
    samples = get_many(couch.main, (sample_id(c, m) for c in communities for m in months))
    answers = _month_answers(couch, [(s["community"], s["month"]) for s in samples.values()])
    sampled = answered = 0
    for sample in samples.values():
        if grid is not None:
            sample = {**sample, "households": [e for e in sample["households"] if e["grid"] == grid]}
        counted = _sampled(sample, answers.get((sample["community"], sample["month"]), []))
        sampled += counted.get("sample_size", 0)
        answered += counted.get("sample_answers", 0)
    return sampled, answered


@dataclass(frozen=True)
class Answer:
    """One survey answer as the month's sample counts it (a row of `survey_answers`, not the document)."""

    household: str
    at: str
    id: str
    overall: int


def _month_answers(couch: Couch, months: list[tuple[str, str]]) -> dict[tuple[str, str], list[Answer]]:
    """The answers given in these (community, month)s: one key range per community, from its first month asked to
    its last."""
    found: dict[tuple[str, str], list[Answer]] = {}
    for community in sorted({c for c, _ in months}):
        asked = sorted(m for c, m in months if c == community)
        for row in couch.main.query("linli/survey_answers", startkey=["answer", community, asked[0]],
                                    endkey=["answer", community, asked[-1], {}], reduce="false", as_list=True):
            _, _, month, household, at = row["key"]  # months between those asked, too: never looked up
            found.setdefault((community, month), []).append(Answer(household, at, row["id"], row["value"]))
    return found


def _sampled(sample: Doc | None, answers: list[Answer]) -> dict[str, Any]:
    """What the sample says: one answer per sampled household (the first given), counted in its grid's stratum."""
    if sample is None:
        return {}
    grid_of = {e["household"]: e["grid"] for e in sample["households"]}
    first: dict[str, Answer] = {}
    for a in sorted(answers, key=lambda a: (a.at, a.id)):
        if a.household in grid_of:
            first.setdefault(a.household, a)
    strata = {g: [0, 0] for g in sample["frame"]}
    for household, a in first.items():
        counted = strata.setdefault(grid_of[household], [0, 0])
        counted[0] += 1
        counted[1] += a.overall >= SATISFIED_FROM
    found = sampling.estimate([sampling.Stratum(int(sample["frame"].get(g, n)), n, sat)
                               for g, (n, sat) in sorted(strata.items())])
    return {"sample_size": len(grid_of), "sample_answers": len(first), "estimate": found}


# ---------------------------------------------------------------- the month's stratified sample

MAX_SAMPLE = 5000


sample_id = survey_sample_id  # one id for the server and the sync gateway's rule


def draw_sample(couch: Couch, p: Principal, community: Doc, size: int, now: dt.datetime, tz: ZoneInfo,
                seed: str | None = None) -> Doc:
    """The secretary draws this month's sample of the community's households, stratified by grid; once a month."""
    if not (p.has(Role.SECRETARY) and community["_id"] in p.communities):
        raise SurveyError("size", "err_survey_secretary", status=403)
    if not (isinstance(size, int) and 1 <= size <= MAX_SAMPLE):
        raise SurveyError("size", "err_survey_sample_size", max=MAX_SAMPLE)
    month = month_of(now, tz)
    households = {g["_id"]: [h["_id"] for h in iter_view_docs(couch.main, "linli/by_place", [g["_id"], "household"])]
                  for g in iter_view_docs(couch.main, "linli/by_place", [community["_id"], "grid"])}
    seed = seed or secrets.token_hex(8)
    drawn = sampling.draw(households, size, seed)
    doc = {"_id": sample_id(community["_id"], month), "type": "survey_sample", "street": community["street"],
           "community": community["_id"], "month": month, "seed": seed,
           "households": [{"household": h, "grid": g} for g, hs in drawn.items() for h in hs], "answered": [],
           "frame": {g: len(hs) for g, hs in households.items()}, "created_by": p.user_id,
           "created_at": now.isoformat()}
    validate(doc)
    try:
        return couch.main.save(doc)
    except Conflict:
        raise SurveyError("size", "err_survey_sample_drawn", month=month) from None


def door_list(couch: Couch, p: Principal, now: dt.datetime, tz: ZoneInfo) -> list[Doc]:
    """This month's sampled households this volunteer or grid worker may visit, each with whether it answered."""
    month = month_of(now, tz)
    rows = []
    for community in sorted(p.communities):
        sample = get_or_none(couch.main, sample_id(community, month))
        if sample is None:
            continue
        mine = [e for e in sample["households"] if e["grid"] in p.grids]
        households = {h["_id"]: h for h in (get_or_none(couch.main, e["household"]) for e in mine)
                      if h and may_see(p, h)}
        answered = {a.household for a in _month_answers(couch, [(community, month)]).get((community, month), [])}
        rows += [{"household": h, "answered": i in answered} for i, h in households.items()]
    return sorted(rows, key=lambda r: (r["answered"], r["household"]["address"]))


def hand_to_volunteer(couch: Couch, p: Principal, household_id: str, volunteer: str, now: dt.datetime,
                      tz: ZoneInfo) -> Doc:
    """The secretary hands a household of this month's sample to one of its grid's volunteers to ask at the door:
    the volunteer then looks after it (the household's `volunteers`: the door list, online and offline, and the
    answer's rule go by it). A household answered already, or not sampled, is not handed; nor to anyone but an
    active volunteer of its grid."""
    month = month_of(now, tz)
    household = get_or_none(couch.main, household_id) if household_id.startswith("household:") else None
    if household is None or not (p.has(Role.SECRETARY) and household.get("community") in p.communities):
        raise SurveyError("household", "err_survey_not_yours", status=403)
    sample = get_or_none(couch.main, sample_id(household["community"], month))
    if sample is None or household_id not in {e["household"] for e in sample["households"]}:
        raise SurveyError("household", "err_survey_not_sampled", month=month)
    if household_id in set(sample.get("answered", [])):
        raise SurveyError("household", "err_survey_household_answered", month=month)
    volunteers = dict(tasks.volunteers_of(couch, household["grid"]))
    if volunteer not in volunteers:
        raise SurveyError("volunteer", "err_not_choice", value=volunteer[:40], choices=", ".join(volunteers.values()))
    if volunteer in household.get("volunteers", []):
        return household
    handed = {**household, "volunteers": [*household.get("volunteers", []), volunteer], "updated_by": p.user_id,
              "updated_at": now.isoformat()}
    validate(handed)
    try:
        return couch.main.save(handed)
    except Conflict:  # changed meanwhile (a phone's edit synced): the secretary tries again on the page she gets
        raise SurveyError("household", "err_survey_changed") from None


def mark_answered(couch: Couch, now: dt.datetime, tz: ZoneInfo) -> int:
    """Each community's sample of this month lists the sampled households answered so far (at the door, through a
    phone's sync, or online by a resident): what the collectors' phones show offline as done. Idempotent (a minute
    part; a conflict is retried next minute). Returns how many samples changed."""
    month = month_of(now, tz)
    changed = sweeps.each("survey samples' answered households",
                          [c["_id"] for c in docs_of_type(couch.main, "community")],
                          lambda community: _mark(couch, community, month))
    return sum(changed)


def _mark(couch: Couch, community: str, month: str) -> bool:
    sample = get_or_none(couch.main, sample_id(community, month))
    if sample is None:
        return False
    drawn = {e["household"] for e in sample["households"]}
    answered = sorted({a.household for a in _month_answers(couch, [(community, month)]).get((community, month), [])
                       if a.household in drawn})
    if sample.get("answered") == answered:
        return False
    couch.main.save({**sample, "answered": answered})
    return True


def answer_at_door(couch: Couch, p: Principal, household: Doc, overall: int, consent: bool, now: dt.datetime,
                   tz: ZoneInfo) -> Doc:
    """A sampled household's answer, written down at the door by a volunteer or grid worker who may see it."""
    month = month_of(now, tz)
    doc = {"_id": door_answer_id(household, month), "type": "survey_response", "street": household["street"],
           "community": household["community"], "month": month, "overall": overall, "household": household["_id"],
           "channel": "door", "consent": consent, "created_by": p.user_id, "created_at": now.isoformat()}
    refused = survey_door_refusal(p, doc, household, get_or_none(couch.main, sample_id(household["community"], month)))
    if refused:
        field, key, status = refused
        raise SurveyError(field, key, status, month=month)
    validate(doc)
    try:
        saved = couch.main.save(doc)
    except Conflict:
        raise SurveyError("overall", "err_survey_answered", month=month) from None
    with contextlib.suppress(Conflict):  # another process marked it meanwhile; else the minute part does
        _mark(couch, household["community"], month)
    return saved
