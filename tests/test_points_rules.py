"""Participation points' rules on their own (`server/domain/points.py`): what mints how much, the ids that make
minting and redeeming happen once, and what a redemption or a reward may not be. The acts through the real
services are `test_points.py`'s; these state each rule by name."""

from __future__ import annotations

import pytest

from server.domain import points
from server.domain.declaration import REWARD_KINDS

REWARD = {"_id": "reward:o1-tea", "active": True, "organisation": "organisation:o1", "stock": 3, "points": 40}


def test_each_kind_of_participation_mints_its_declared_points_and_help_by_the_minute() -> None:
    assert {kind: points.points_for(kind) for kind in points.POINTS_RULES} == {
        "hours_confirmed": 10, "survey_answered": 2, "voted": 5, "attended": 5, "opinion": 2}
    assert points.points_for("hours_confirmed", 90) == 15
    assert points.points_for("hours_confirmed", 59) == 9  # pro rata, rounded down
    assert points.points_for("voted", 90) == 5  # minutes count only for help
    assert points.points_for("gossip") == 0  # an undeclared kind mints nothing


def test_minting_and_redeeming_ids_are_made_from_what_they_are_about() -> None:
    event = "participation:voted:matter:m1:resident:r1"
    assert points.mint_id(event) == "transfer:mint:participation:voted:matter:m1:resident:r1"
    voucher = points.voucher_id("reward:o1-tea", 7)
    assert voucher == "voucher:o1-tea:00007"
    assert points.slot_of(voucher) == 7
    assert points.redemption_id(voucher) == "redemption:o1-tea:00007"
    assert points.spend_id(voucher) == "transfer:redemption:o1-tea:00007"
    # Ids of other rewards' slots never coincide, whatever their keys hold.
    assert points.voucher_id("reward:a:1", 2) != points.voucher_id("reward:a", 12)


def test_a_resident_with_enough_points_may_redeem_an_offered_reward_in_stock() -> None:
    assert points.redeem_refusal(REWARD, "resident:r1", 40, 2) is None
    assert points.redeem_refusal(REWARD, "user:zhiyuan1", 100, 0) is None


@pytest.mark.parametrize(("reward", "account", "balance", "taken", "refusal"), [
    (None, "resident:r1", 100, 0, ("pt_no_reward", {})),
    (REWARD | {"active": False}, "resident:r1", 100, 0, ("pt_no_reward", {})),
    (REWARD, "household:h1", 100, 0, ("pt_not_your_account", {})),  # not an account at all
    (REWARD, "community:c1", 100, 0, ("pt_not_your_account", {})),  # the minting account spends nothing
    (REWARD, "organisation:o1", 100, 0, ("pt_not_your_account", {})),  # nobody buys their own reward
    (REWARD, "resident:r1", 100, 3, ("pt_out_of_stock", {})),
    (REWARD, "resident:r1", 39, 0, ("pt_points_short", {"balance": 39, "points": 40})),
])
def test_a_redemption_is_refused_with_its_reason(reward: dict | None, account: str, balance: int, taken: int,
                                                 refusal: tuple) -> None:
    assert points.redeem_refusal(reward, account, balance, taken) == refusal


def test_a_reward_is_offered_with_a_name_a_declared_kind_and_whole_points_and_stock_within_bounds() -> None:
    kind = REWARD_KINDS[0]
    assert points.reward_refusal("理发", kind, 1, 1) is None
    assert points.reward_refusal("理发", kind, points.MAX_REWARD_POINTS, points.MAX_STOCK) is None
    assert points.reward_refusal("  ", kind, 10, 1) == ("name", "pt_reward_name", {})
    assert points.reward_refusal("理发", "lottery", 10, 1) == ("kind", "pt_reward_kind", {})
    most_points, most_stock = {"most": points.MAX_REWARD_POINTS}, {"most": points.MAX_STOCK}
    for bad in (0, -1, points.MAX_REWARD_POINTS + 1, 2.5, "10", True):
        assert points.reward_refusal("理发", kind, bad, 1) == ("points", "pt_whole_number", most_points)
    for bad in (0, points.MAX_STOCK + 1, None, False):
        assert points.reward_refusal("理发", kind, 10, bad) == ("stock", "pt_whole_number", most_stock)


def test_stock_may_go_down_to_what_was_bought_and_no_lower() -> None:
    assert points.stock_refusal(0, 0) is None
    assert points.stock_refusal(points.MAX_STOCK, 5) is None
    assert points.stock_refusal(5, 5) is None
    assert points.stock_refusal(4, 5) == ("pt_stock_below_taken", {"taken": 5})
    for bad in (-1, points.MAX_STOCK + 1, "5", True, 2.0):
        assert points.stock_refusal(bad, 0) == ("pt_stock_range", {"most": points.MAX_STOCK})


@pytest.mark.parametrize(("period", "bounds"), [
    ("2026", ("2026", "2027")),
    ("2026-03", ("2026-03", "2026-04")),
    ("2026-01", ("2026-01", "2026-02")),
    ("2026-12", ("2026-12", "2027-01")),
    ("0999", ("0999", "1000")),
])
def test_a_statement_period_is_a_year_or_a_month(period: str, bounds: tuple[str, str]) -> None:
    assert points.period_bounds(period) == bounds


@pytest.mark.parametrize("period", ["26", "20266", "2026-3", "2026-13", "2026-00", "2026-03-01", "2026-x1", "", "-"])
def test_anything_else_is_not_a_period(period: str) -> None:
    assert points.period_bounds(period) is None
