"""The survey's published figures read from the `survey_answers` view equal a count over every answer document
(issue 18 item 5): totals, mean and satisfied share per community and month, and each sample's response rate and
estimate, where a household answered twice (at the door and online), answers came from households outside the
sample or from residents with no household, a sample got no answer (published as 0 of n), and months and
communities are asked in part."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from server.domain import sampling
from server.domain.declaration import validate
from server.services import survey
from server.store.couch import Couch, bulk_save

STREET = "street:s1"
COMMUNITIES = ["community:c1", "community:c2", "community:c3"]
MONTHS = ["2026-05", "2026-06", "2026-07", "2026-08"]
GRIDS = {c: [f"grid:{c[10:]}g{i}" for i in range(3)] for c in COMMUNITIES}
HOUSEHOLDS = {g: [f"household:{g[5:]}h{i}" for i in range(6)] for gs in GRIDS.values() for g in gs}


def answers_and_samples(rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Random answers (some households twice in a month, some with no household) and a sample for most months, one
    of them answered by nobody."""
    answers, samples = [], []
    for community in COMMUNITIES:
        households = [(g, h) for g in GRIDS[community] for h in HOUSEHOLDS[g]]
        for month in MONTHS:
            unanswered = (community, month) == (COMMUNITIES[0], MONTHS[0])  # a sample nobody answered
            if rng.random() < 0.8 or unanswered:
                drawn = rng.sample(households, rng.randint(1, 10))
                samples.append({
                    "_id": survey.sample_id(community, month), "type": "survey_sample", "street": STREET,
                    "community": community, "month": month, "seed": "s", "answered": [],
                    "households": [{"household": h, "grid": g} for g, h in drawn],
                    "frame": {g: len(HOUSEHOLDS[g]) + rng.randint(0, 20) for g in GRIDS[community]},
                    "created_by": "user:shuji", "created_at": f"{month}-01T08:00:00+08:00"})
            for n in range(0 if unanswered else rng.randint(0, 14)):
                household = None if rng.random() < 0.15 else rng.choice(households)[1]
                at = dt.datetime.fromisoformat(f"{month}-01T08:00:00+08:00") + dt.timedelta(
                    minutes=rng.randrange(60 * 24 * 27))
                answers.append({
                    "_id": f"survey_response:{community[10:]}:{month}:a{n}", "type": "survey_response",
                    "street": STREET, "community": community, "month": month, "overall": rng.randint(1, 5),
                    "channel": rng.choice(["own", "door"]), "created_by": f"user:u{n}", "created_at": at.isoformat(),
                    **({"household": household} if household else {})})
    return answers, samples


def by_hand(answers: list[dict[str, Any]], samples: list[dict[str, Any]]) -> list[survey.Result]:
    """What the published page should say, counted over the whole documents."""
    found = []
    for community, month in {(a["community"], a["month"]) for a in answers} | {(s["community"], s["month"])
                                                                               for s in samples}:
        mine = [a for a in answers if (a["community"], a["month"]) == (community, month)]
        scores = [a["overall"] for a in mine]
        sample = next((s for s in samples if (s["community"], s["month"]) == (community, month)), None)
        counted: dict[str, Any] = {}
        if sample:
            grid_of = {e["household"]: e["grid"] for e in sample["households"]}
            first: dict[str, dict[str, Any]] = {}
            for a in sorted(mine, key=lambda a: (a["created_at"], a["_id"])):
                if a.get("household") in grid_of:
                    first.setdefault(a["household"], a)
            strata = []
            for grid in sorted(set(sample["frame"]) | set(grid_of.values())):
                theirs = [a for h, a in first.items() if grid_of[h] == grid]
                strata.append(sampling.Stratum(sample["frame"].get(grid, len(theirs)), len(theirs),
                                               sum(a["overall"] >= survey.SATISFIED_FROM for a in theirs)))
            counted = {"sample_size": len(grid_of), "sample_answers": len(first),
                       "estimate": sampling.estimate(strata)}
        found.append(survey.Result(community, month, len(scores),
                                   round(sum(scores) / len(scores), 2) if scores else None,
                                   round(sum(s >= survey.SATISFIED_FROM for s in scores) / len(scores), 3)
                                   if scores else None, **counted))
    return sorted(found, key=lambda r: (r.month, r.community), reverse=True)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_published_figures_equal_a_count_over_every_answer(couch: Couch, seed: int) -> None:
    rng = random.Random(seed)
    answers, samples = answers_and_samples(rng)
    for doc in answers + samples:
        validate(doc)
    assert not [r for r in bulk_save(couch.main, answers + samples) if r.error]
    expected = by_hand(answers, samples)
    # The cases the rows must count as the documents do are in the data.
    sampled = {(s["community"], s["month"], e["household"]) for s in samples for e in s["households"]}
    twice = [k for k in sampled if sum((a["community"], a["month"], a.get("household")) == k for a in answers) > 1]
    assert twice and any("household" not in a for a in answers) and any(r.estimate for r in expected)
    assert any(r.sample_size and not r.answers for r in expected)  # a sample nobody answered: published, 0/n
    assert survey.results(couch) == expected
    for _ in range(5):  # a page's communities and months: any subset, months in order
        communities = rng.sample(COMMUNITIES, rng.randint(1, len(COMMUNITIES)))
        first = rng.randrange(len(MONTHS))
        months = MONTHS[first:rng.randint(first + 1, len(MONTHS))]
        asked = [r for r in expected if r.community in communities and r.month in months]
        assert survey.sample_answers(couch, communities, months) == (
            sum(r.sample_size for r in asked), sum(r.sample_answers for r in asked))
