"""Decision rules as data (issue 15 item 2), evaluated by one function.

A rule is a list of conditions, all of which must hold. Each condition is a participation quorum or an
approval threshold, measured by headcount, by household or by floor area, and counted against the whole
frozen roll or against those who took part:

    Condition("approval", "area", "participants", Fraction(3, 4))   # ≥ 3/4 of the participating area agrees

Each entry of a roll weighs 1 by headcount; by household and by area, a household's weight (1, its floor area)
is shared equally among its entries on the roll (one entry for a household vote, one per adult for a vote of
adult residents), so that a household never counts more than once whoever of it votes. A voter takes part by
casting any ballot, abstention included; approval counts ballots for the rule's approving option ("yes").
Thresholds are inclusive ("以上" in the Civil Code includes the number itself) and exact (fractions).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

MEASURES = ("participation", "approval")
UNITS = ("headcount", "household", "area")
BASES = ("roll", "participants")
YES_NO_ABSTAIN = ("yes", "no", "abstain")
APPROVE = "yes"


@dataclass(frozen=True)
class Condition:
    measure: str  # participation: who cast a ballot; approval: who chose APPROVE
    unit: str  # headcount, household or area
    base: str  # roll (every eligible voter) or participants (those who cast a ballot)
    at_least: Fraction  # the share that must be reached, inclusive

    def __post_init__(self) -> None:
        assert self.measure in MEASURES and self.unit in UNITS and self.base in BASES, self
        assert 0 < self.at_least <= 1, self
        assert not (self.measure == "participation" and self.base == "participants"), "participation is of the roll"

    def as_record(self) -> dict[str, Any]:
        """As a matter stores it (declaration `matter.conditions`)."""
        return {"measure": self.measure, "unit": self.unit, "base": self.base, "at_least": str(self.at_least)}

    @classmethod
    def of_record(cls, record: Mapping[str, Any]) -> Condition:
        return cls(record["measure"], record["unit"], record["base"], Fraction(record["at_least"]))


@dataclass(frozen=True)
class Rule:
    name: str
    conditions: tuple[Condition, ...]
    # The options a matter under this rule offers: yes/no/abstain where the rule counts approval; any list
    # (at least two) for an advisory rule, which has no condition and publishes totals only.
    needs_yes_no: bool = True


# The fixtures of issue 15. Art. 278 of the Civil Code for major matters (raising or using the maintenance
# fund, rebuilding, changing the use of common parts): at least 2/3 of the area and 2/3 of the owners take
# part, and at least 3/4 of the participating area and 3/4 of the participating owners agree.
RULES: dict[str, Rule] = {r.name: r for r in (
    Rule("committee_two_thirds", (Condition("approval", "headcount", "roll", Fraction(2, 3)),)),
    Rule("households_three_quarters", (Condition("approval", "household", "roll", Fraction(3, 4)),)),
    Rule("civil_code_278_major", (
        Condition("participation", "area", "roll", Fraction(2, 3)),
        Condition("participation", "headcount", "roll", Fraction(2, 3)),
        Condition("approval", "area", "participants", Fraction(3, 4)),
        Condition("approval", "headcount", "participants", Fraction(3, 4)))),
    Rule("advisory", (), needs_yes_no=False),
)}


@dataclass(frozen=True)
class RollEntry:
    """One eligible voter, as frozen when the matter opened: their id (a household, a resident or a user), the
    household they vote for or belong to (None for a committee member) and its floor area."""

    voter: str
    household: str | None = None
    area: Fraction = Fraction(0)


@dataclass(frozen=True)
class ConditionResult:
    condition: Condition
    numerator: Fraction
    denominator: Fraction
    passed: bool


@dataclass(frozen=True)
class Outcome:
    conditions: tuple[ConditionResult, ...]
    totals: dict[str, int]  # ballots counted per option, of voters on the roll
    counted: int
    not_on_roll: tuple[str, ...]  # voters with a ballot but no place on the roll: not counted

    @property
    def passed(self) -> bool:
        """True if every condition holds (an advisory rule has none and decides nothing: True)."""
        return all(c.passed for c in self.conditions)


def _weights(roll: Iterable[RollEntry]) -> dict[str, dict[str, Fraction]]:
    entries = list(roll)
    share: dict[str, int] = {}
    for e in entries:
        share[e.household or e.voter] = share.get(e.household or e.voter, 0) + 1
    return {e.voter: {"headcount": Fraction(1), "household": Fraction(1, share[e.household or e.voter]),
                      "area": e.area / share[e.household or e.voter]} for e in entries}


def evaluate(rule: Rule | Iterable[Condition], roll: Iterable[RollEntry], ballots: Mapping[str, str]) -> Outcome:
    """Each condition of the rule with its numerator, denominator and whether it holds.

    `ballots` maps each voter to the one choice counted for them (conflicts already settled by precedence);
    ballots of voters not on the roll are left out and listed."""
    conditions = rule.conditions if isinstance(rule, Rule) else tuple(rule)
    weights = _weights(roll)
    counted = {v: c for v, c in ballots.items() if v in weights}
    totals: dict[str, int] = {}
    for choice in counted.values():
        totals[choice] = totals.get(choice, 0) + 1

    def weight(unit: str, voters: Iterable[str]) -> Fraction:
        return sum((weights[v][unit] for v in voters), Fraction(0))

    results = []
    for c in conditions:
        chosen = counted if c.measure == "participation" else {v: x for v, x in counted.items() if x == APPROVE}
        numerator = weight(c.unit, chosen)
        denominator = weight(c.unit, weights if c.base == "roll" else counted)
        results.append(ConditionResult(c, numerator, denominator,
                                       denominator > 0 and numerator >= c.at_least * denominator))
    return Outcome(tuple(results), totals, len(counted), tuple(sorted(set(ballots) - set(weights))))


def shown(value: Fraction) -> str:
    """A count or an area as a result page prints it: whole numbers as they are, others to two decimals."""
    return str(value.numerator) if value.denominator == 1 else f"{float(value):.2f}"
