"""Rules as data (server/domain/vote_rules.py): the three fixtures of issue 15 at their exact boundaries."""

from __future__ import annotations

from fractions import Fraction

import pytest

from server.domain.vote_rules import RULES, Condition, RollEntry, evaluate, shown


def committee(n: int) -> list[RollEntry]:
    return [RollEntry(f"user:m{i}") for i in range(n)]


def households(areas: list[str]) -> list[RollEntry]:
    return [RollEntry(f"household:h{i}", f"household:h{i}", Fraction(a)) for i, a in enumerate(areas)]


def test_two_thirds_of_the_committee_passes_at_exactly_two_thirds_and_not_one_below() -> None:
    rule, roll = RULES["committee_two_thirds"], committee(9)
    six_yes = {f"user:m{i}": "yes" for i in range(6)} | {"user:m6": "no"}
    outcome = evaluate(rule, roll, six_yes)
    [c] = outcome.conditions
    assert (c.numerator, c.denominator, c.passed) == (6, 9, True) and outcome.passed
    five_yes = {**six_yes, "user:m5": "abstain"}
    assert not evaluate(rule, roll, five_yes).passed
    assert evaluate(rule, roll, five_yes).totals == {"yes": 5, "no": 1, "abstain": 1}


def test_three_quarters_of_households_counts_against_the_whole_roll() -> None:
    rule, roll = RULES["households_three_quarters"], households(["80"] * 8)
    six = {f"household:h{i}": "yes" for i in range(6)}
    [c] = evaluate(rule, roll, six).conditions
    assert (c.numerator, c.denominator, c.passed) == (6, 8, True)
    [c] = evaluate(rule, roll, {f"household:h{i}": "yes" for i in range(5)}).conditions
    assert (c.numerator, c.denominator, c.passed) == (5, 8, False)  # silence is not consent


def test_a_vote_of_adults_counts_each_household_once_whoever_of_it_votes() -> None:
    roll = [RollEntry("resident:a1", "household:a", Fraction(90)),
            RollEntry("resident:a2", "household:a", Fraction(90)),
            RollEntry("resident:b1", "household:b", Fraction(60))]
    [c] = evaluate([Condition("approval", "household", "roll", Fraction(1, 2))], roll,
                   {"resident:a1": "yes", "resident:a2": "yes"}).conditions
    assert (c.numerator, c.denominator, c.passed) == (1, 2, True)
    [c] = evaluate([Condition("participation", "area", "roll", Fraction(1, 2))], roll, {"resident:a1": "no"}).conditions
    assert (c.numerator, c.denominator, c.passed) == (45, 150, False)


# Art. 278: 12 households, 1200 m² in all; the two participation and two approval conditions at their edges.
ART_278_ROLL = households(["150", "150", "100", "100", "100", "100", "100", "100", "75", "75", "75", "75"])


def _278(votes: dict[int, str]) -> list[tuple[Fraction, Fraction, bool]]:
    outcome = evaluate(RULES["civil_code_278_major"], ART_278_ROLL, {f"household:h{i}": v for i, v in votes.items()})
    return [(c.numerator, c.denominator, c.passed) for c in outcome.conditions]


def test_civil_code_278_passes_with_every_condition_at_exactly_its_threshold() -> None:
    # 8 of 12 owners take part (2/3) with 150 + 100×5 + 75×2 = 800 of 1200 m² (2/3); 6 of those 8 agree (3/4)
    # with 150 + 100×3 + 75×2 = 600 of 800 m² (3/4).
    votes = {0: "yes", 2: "yes", 3: "yes", 4: "yes", 8: "yes", 9: "yes", 5: "no", 6: "abstain"}
    assert _278(votes) == [(800, 1200, True), (8, 12, True), (600, 800, True), (6, 8, True)]


def test_civil_code_278_fails_on_each_condition_alone() -> None:
    # 7 owners only (one below 2/3), though with 900 m² (area passes).
    assert [ok for *_, ok in _278({0: "yes", 1: "yes", 2: "yes", 3: "yes", 4: "yes", 5: "yes", 6: "no"})] \
        == [True, False, True, True]
    # 8 owners but only 4×100 + 4×75 = 700 m² < 800.
    assert [ok for *_, ok in _278({2: "yes", 3: "yes", 4: "yes", 5: "yes", 8: "yes", 9: "yes", 10: "no", 11: "no"})] \
        == [False, True, True, True]
    # Area approval below 3/4: 6 of 8 owners agree, but the two large flats say no (600 of 900 m²).
    assert _278({0: "no", 1: "no", 2: "yes", 3: "yes", 4: "yes", 5: "yes", 6: "yes", 7: "yes"})[2:] \
        == [(600, 900, False), (6, 8, True)]
    # Headcount approval below 3/4 (6 of 9) while the area agreeing passes: 700 of 925 m² (≥ 693.75).
    assert _278({0: "yes", 1: "yes", 2: "yes", 3: "yes", 4: "yes", 5: "yes", 8: "no", 9: "no", 10: "no"})[2:] \
        == [(700, 925, True), (6, 9, False)]


def test_ballots_off_the_roll_are_not_counted_and_are_named() -> None:
    outcome = evaluate(RULES["committee_two_thirds"], committee(3), {"user:m0": "yes", "user:stranger": "yes"})
    assert outcome.counted == 1 and outcome.not_on_roll == ("user:stranger",)
    assert outcome.conditions[0].numerator == 1


def test_nobody_on_the_roll_passes_nothing_and_an_advisory_rule_decides_nothing() -> None:
    assert not evaluate(RULES["households_three_quarters"], [], {}).passed
    assert evaluate(RULES["advisory"], committee(2), {"user:m0": "b"}).totals == {"b": 1}


def test_conditions_round_trip_as_records_and_shares_print_plainly() -> None:
    for rule in RULES.values():
        assert tuple(Condition.of_record(c.as_record()) for c in rule.conditions) == rule.conditions
    assert (shown(Fraction(6)), shown(Fraction(850, 3))) == ("6", "283.33")
    with pytest.raises(AssertionError, match="^participation is of the roll$"):
        Condition("participation", "area", "participants", Fraction(1, 2))


def test_the_declared_rules_are_issue_15s_fixtures_exactly() -> None:
    # Civil Code art. 278 for major matters: 2/3 of the area and of the owners take part, 3/4 of the participating
    # area and owners agree. A wrong share or unit here would decide real votes wrongly.
    records = {name: [c.as_record() for c in rule.conditions] for name, rule in RULES.items()}
    assert records == {
        "committee_two_thirds": [{"measure": "approval", "unit": "headcount", "base": "roll", "at_least": "2/3"}],
        "households_three_quarters": [{"measure": "approval", "unit": "household", "base": "roll", "at_least": "3/4"}],
        "civil_code_278_major": [
            {"measure": "participation", "unit": "area", "base": "roll", "at_least": "2/3"},
            {"measure": "participation", "unit": "headcount", "base": "roll", "at_least": "2/3"},
            {"measure": "approval", "unit": "area", "base": "participants", "at_least": "3/4"},
            {"measure": "approval", "unit": "headcount", "base": "participants", "at_least": "3/4"}],
        "advisory": []}
    assert [name for name, rule in RULES.items() if not rule.needs_yes_no] == ["advisory"]


@pytest.mark.parametrize(("measure", "unit", "base", "share"), [
    ("turnout", "headcount", "roll", Fraction(1, 2)),  # each word must be one of the declared ones …
    ("approval", "acres", "roll", Fraction(1, 2)),
    ("approval", "headcount", "everyone", Fraction(1, 2)),
    ("approval", "headcount", "roll", Fraction(0)),  # … and a share must be more than nothing, at most all
    ("approval", "headcount", "roll", Fraction(3, 2)),
])
def test_a_condition_outside_the_declared_vocabulary_or_share_cannot_be_made(measure: str, unit: str, base: str,
                                                                             share: Fraction) -> None:
    with pytest.raises(AssertionError, match="Condition"):
        Condition(measure, unit, base, share)


def test_a_condition_of_everyone_can_be_made_and_a_roll_of_one_can_pass_it() -> None:
    unanimous = Condition("approval", "household", "roll", Fraction(1))
    outcome = evaluate([unanimous], households(["60"]), {"household:h0": "yes"})
    assert outcome.passed and outcome.conditions[0].condition is unanimous
    assert (outcome.conditions[0].numerator, outcome.conditions[0].denominator) == (1, 1)
