"""The survey's statistics (server/domain/sampling.py): the sample is stratified by grid and proportional, the
same seed draws the same sample, and the 95% interval is the stratified one: equal to a hand computation, and
covering the true share about 95 times in 100 over repeated samples of a known street."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from server.domain import sampling
from server.domain.sampling import Stratum


@given(st.dictionaries(st.text("gh", min_size=1, max_size=3), st.integers(0, 300), min_size=1, max_size=8),
       st.integers(0, 2000))
@settings(max_examples=200, deadline=None)
def test_allocation_adds_up_never_exceeds_a_grid_and_is_proportional(frame: dict[str, int], size: int) -> None:
    counts = sampling.allocate(frame, size)
    wanted = min(size, sum(frame.values()))
    assert sum(counts.values()) == wanted and all(0 <= counts[g] <= frame[g] for g in frame)
    floors = {g: min(n, sampling.MIN_PER_GRID) for g, n in frame.items()}
    if wanted >= sum(floors.values()):
        assert all(counts[g] >= floors[g] for g in frame)  # every grid can be estimated
        # Beyond its floor each grid gets its proportional share of the rest, rounded by at most one.
        rest, room = wanted - sum(floors.values()), {g: frame[g] - floors[g] for g in frame}
        for g in frame:
            share = rest * room[g] / sum(room.values()) if sum(room.values()) else 0
            assert math.floor(share) <= counts[g] - floors[g] <= math.ceil(share)


def test_the_draw_is_per_grid_and_the_seed_redraws_it() -> None:
    households = {f"grid:{g}": [f"household:{g}-{h}" for h in range(n)] for g, n in (("a", 120), ("b", 40),
                                                                                     ("c", 3))}
    drawn = sampling.draw(households, 33, "seed-1")
    # Floors 2 + 2 + 2, then the other 27 by the 118, 38 and 1 households left: 20.29, 6.53, 0.17 → 20, 7, 0.
    assert {g: len(v) for g, v in drawn.items()} == {"grid:a": 22, "grid:b": 9, "grid:c": 2}
    assert all(set(v) <= set(households[g]) and len(set(v)) == len(v) for g, v in drawn.items())
    assert sampling.draw(households, 33, "seed-1") == drawn != sampling.draw(households, 33, "seed-2")


def test_the_interval_is_the_stratified_one_computed_by_hand() -> None:
    # W = 2/3, 1/3; p = 0.8, 0.4: p̂ = 2/3·0.8 + 1/3·0.4 = 0.6667
    # Var = (2/3)²·(1 − 10/100)·0.8·0.2/9 + (1/3)²·(1 − 5/50)·0.4·0.6/4 = 0.0071111 + 0.006 = 0.0131111
    found = sampling.estimate([Stratum(100, 10, 8), Stratum(50, 5, 2)])
    assert found is not None
    half = 1.959964 * math.sqrt(0.0131111)
    assert math.isclose(found.share, 2 / 3, abs_tol=1e-9) and found.covered == 1.0
    assert math.isclose(found.low, 2 / 3 - half, abs_tol=1e-5) and math.isclose(found.high, 2 / 3 + half, abs_tol=1e-5)
    # A grid with no answer is left out and said so; none at all: no estimate.
    partial = sampling.estimate([Stratum(100, 10, 8), Stratum(300, 0, 0)])
    assert partial is not None and partial.share == 0.8 and partial.covered == 0.25
    assert sampling.estimate([Stratum(10, 0, 0)]) is None


def test_the_interval_covers_the_true_share_about_95_times_in_100() -> None:
    """A street of four grids whose satisfied shares differ; 1,000 samples of 160 households: the interval holds
    the street's true share in 93% to 97% of them (the binomial spread of 1,000 draws around 95% is ±1.4%)."""
    rng = random.Random(18)
    sizes, shares = (400, 250, 150, 600), (0.9, 0.6, 0.75, 0.8)
    street = {f"grid:{i}": [rng.random() < p for _ in range(n)]
              for i, (n, p) in enumerate(zip(sizes, shares, strict=True))}
    truth = sum(sum(v) for v in street.values()) / sum(sizes)
    ids = {g: [f"{g}-{h}" for h in range(len(v))] for g, v in street.items()}
    covered = 0
    for draw in range(1000):
        sample = sampling.draw(ids, 160, f"draw-{draw}")
        strata = [Stratum(len(street[g]), len(hs), sum(street[g][int(h.rsplit("-", 1)[1])] for h in hs))
                  for g, hs in sample.items()]
        found = sampling.estimate(strata)
        assert found is not None
        covered += found.low <= truth <= found.high
    assert 930 <= covered <= 970, covered
