"""bench/measure.py: the one way every benchmark compares ours with its reference (bench/README.md)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bench.measure import CountMismatch, compare, expect, interleave


def _side(name: str, figures: list[float], calls: list[str]) -> Callable[[], float]:
    def run() -> float:
        calls.append(name)
        return figures.pop(0)
    return run


def test_rounds_alternate_which_side_goes_first_after_a_warm_up_of_each_that_is_not_counted() -> None:
    calls: list[str] = []
    ours, theirs = interleave(_side("ours", [99, 1, 2, 3], calls), _side("reference", [98, 10, 20, 30], calls),
                              rounds=3, warm=1)
    assert calls == ["ours", "reference", "reference", "ours", "ours", "reference", "reference", "ours"]
    assert (ours, theirs) == ([1, 2, 3], [10, 20, 30])


def test_the_ratio_is_ours_over_the_reference_of_the_medians_with_each_sides_spread() -> None:
    calls: list[str] = []
    figures = compare(_side("ours", [0, 1, 5, 3], calls), _side("reference", [0, 2, 10, 4], calls), rounds=3)
    assert figures["ratio"] == 0.75  # medians 3 / 4: lower is better
    assert figures["ours"] == {"median": 3, "min": 1, "max": 5, "runs": 3}
    assert figures["reference"] == {"median": 4, "min": 2, "max": 10, "runs": 3}


def test_fewer_than_three_rounds_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 3 rounds, not 2"):
        interleave(lambda: 1.0, lambda: 1.0, rounds=2)


def test_a_run_that_measured_the_wrong_count_fails_loudly() -> None:
    assert expect("documents replicated", 5, 5) == 5
    with pytest.raises(CountMismatch, match="documents replicated: measured 4, expected 5"):
        expect("documents replicated", 4, 5)
