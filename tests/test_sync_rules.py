"""The gateway's merge rules, one test each, on plain documents (no server needed)."""

from __future__ import annotations

from sync.merge import merge

BASE = {"_id": "visit:x", "type": "visit", "grid": "grid:g1", "kind": "routine", "needs": ["买菜"]}


def test_identical_branches_merge_to_one() -> None:
    assert merge([{**BASE, "_rev": "2-a"}, {**BASE, "_rev": "2-b"}]) == BASE


def test_append_only_needs_merge_as_a_union_in_order() -> None:
    merged = merge([{**BASE, "needs": ["买菜", "修灯"]}, {**BASE, "needs": ["买菜", "理发"]}])
    assert merged is not None and merged["needs"] == ["买菜", "修灯", "理发"]


def test_bookkeeping_time_takes_the_latest() -> None:
    merged = merge([{**BASE, "updated_at": "2026-11-21T10:00:00+08:00"},
                    {**BASE, "updated_at": "2026-11-21T11:00:00+08:00"}])
    assert merged is not None and merged["updated_at"] == "2026-11-21T11:00:00+08:00"


def test_any_other_difference_is_left_to_a_person() -> None:
    assert merge([{**BASE, "kind": "care"}, {**BASE, "kind": "routine"}]) is None
    household = {"_id": "household:x", "type": "household", "tags": ["low_income"]}
    assert merge([household, {**household, "tags": ["veteran"]}]) is None  # tags are not append-only
