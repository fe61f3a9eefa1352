"""Measuring ours against a reference fairly, the one way every benchmark does it (bench/README.md).

Both sides run the same number of warm-up rounds (discarded), then `rounds` rounds interleaved, each round
alternating which side goes first (AB, BA, AB, …): a neighbour's load on the shared machine, a cache one side
filled, a server that grew warmer, all fall on both alike. Figures are medians with their spread (min, max), and
every ratio is ours ÷ reference: lower is better.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class CountMismatch(RuntimeError):
    """A run measured a different number of things than it was meant to: its figures mean nothing."""


def expect(what: str, measured: int, expected: int) -> int:
    """`measured`, if it is `expected`; otherwise the run fails loudly (not an assert: `python -O` drops those)."""
    if measured != expected:
        raise CountMismatch(f"{what}: measured {measured}, expected {expected}")
    return measured


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds `action` took, what it returned)."""
    started = time.perf_counter()
    value = action()
    return time.perf_counter() - started, value


def spread(values: list[float], digits: int = 3) -> dict[str, Any]:
    """The median of `values` with their min and max, and how many there were."""
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "runs": len(values)}


def interleave(ours: Callable[[], T], reference: Callable[[], T], *, rounds: int = 3,
               warm: int = 1) -> tuple[list[T], list[T]]:
    """`warm` discarded rounds of each side, then `rounds` measured ones, alternating which goes first. Each
    callable measures one run of its side and returns its figure (seconds, usually, or a run's several figures);
    returns both lists."""
    if rounds < 3:
        raise ValueError(f"medians need at least 3 rounds, not {rounds}")
    figures: dict[str, list[T]] = {"ours": [], "reference": []}
    sides = {"ours": ours, "reference": reference}
    for n in range(warm + rounds):
        for name in ("ours", "reference") if n % 2 == 0 else ("reference", "ours"):
            figure = sides[name]()
            if n >= warm:
                figures[name].append(figure)
    return figures["ours"], figures["reference"]


def ratio(ours: list[float], reference: list[float], digits: int = 3) -> float:
    """Ours ÷ reference, medians of each (lower is better)."""
    return round(statistics.median(ours) / statistics.median(reference), digits)


def compare(ours: Callable[[], float], reference: Callable[[], float], *, rounds: int = 3, warm: int = 1,
            digits: int = 3) -> dict[str, Any]:
    """`interleave`, then the figures as a benchmark prints them: each side's spread and the ratio."""
    mine, theirs = interleave(ours, reference, rounds=rounds, warm=warm)
    return {"ours": spread(mine, digits), "reference": spread(theirs, digits), "ratio": ratio(mine, theirs)}


def load_average() -> list[float]:
    """The machine's 1, 5 and 15-minute load averages: what the figures were measured under."""
    return [round(x, 1) for x in os.getloadavg()]
