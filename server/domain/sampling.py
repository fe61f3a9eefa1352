"""The monthly satisfaction survey's statistics (issue 18 item 5): a sample stratified by grid, and the estimate
of the satisfied share with its 95% confidence interval (pure: server/services/survey.py stores and counts).

Each grid is a stratum. The sample is allocated to grids in proportion to their households (largest remainder,
at least MIN_PER_GRID where a grid has that many), drawn without replacement by a seeded generator, so a stored
seed redraws the same sample. The estimate is the stratified one (Cochran, Sampling Techniques, §5.3 and §5.9):

    p̂ = Σ W_h p̂_h,   Var(p̂) = Σ W_h² (1 − n_h/N_h) p̂_h (1 − p̂_h) / (n_h − 1),   p̂ ± 1.96 √Var

with W_h = N_h / N the grid's share of households, n_h its answers and p̂_h the satisfied share among them. Grids
with no answer are left out and the weights of the others renormalised (said on the page: `covered`); a grid with
one answer adds the largest possible variance, W_h² · 0.25, rather than none.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MIN_PER_GRID = 2
Z95 = 1.959964  # the standard normal's 97.5% quantile


def allocate(frame: Mapping[str, int], size: int) -> dict[str, int]:
    """Households to sample per grid: `size` in all (at most the frame). Each grid first gets MIN_PER_GRID (or all
    it has) when the size allows it, so that every grid can be estimated; the rest goes in proportion to the
    households not yet taken, by largest remainder (ties by grid id: the same frame allocates the same way)."""
    size = max(0, min(size, sum(frame.values())))
    floors = {g: min(n, MIN_PER_GRID) for g, n in frame.items()}
    counts = floors if size >= sum(floors.values()) else dict.fromkeys(frame, 0)
    room = {g: frame[g] - counts[g] for g in frame}
    rest, total_room = size - sum(counts.values()), sum(room.values())
    shares = {g: rest * room[g] / total_room if total_room else 0.0 for g in frame}
    counts = {g: counts[g] + math.floor(shares[g]) for g in frame}
    by_remainder = sorted(frame, key=lambda g: (-(shares[g] - math.floor(shares[g])), g))
    for g in by_remainder[:size - sum(counts.values())]:
        counts[g] += 1
    return counts


def draw(households: Mapping[str, Sequence[str]], size: int, seed: str) -> dict[str, list[str]]:
    """The sample: per grid, its allocated number of its households, chosen at random (seeded)."""
    counts = allocate({g: len(h) for g, h in households.items()}, size)
    rng = random.Random(seed)
    return {g: sorted(rng.sample(sorted(households[g]), counts[g])) for g in sorted(households)}


@dataclass(frozen=True)
class Stratum:
    households: int  # N_h: the grid's households when the sample was drawn
    answers: int  # n_h: answers from its sampled households
    satisfied: int  # of those, satisfied


@dataclass(frozen=True)
class Estimate:
    share: float  # the satisfied share, estimated for all households
    low: float  # its 95% confidence interval
    high: float
    covered: float  # the share of households in grids that answered (the estimate speaks for those)


def estimate(strata: Sequence[Stratum]) -> Estimate | None:
    """The stratified estimate of the satisfied share and its 95% interval; None without any answer."""
    answered = [s for s in strata if s.answers > 0]
    population = sum(s.households for s in answered)
    if not answered or population <= 0:
        return None
    share = variance = 0.0
    for s in answered:
        weight, p = s.households / population, s.satisfied / s.answers
        share += weight * p
        fpc = max(0.0, 1 - s.answers / s.households)
        variance += weight ** 2 * fpc * (p * (1 - p) / (s.answers - 1) if s.answers > 1 else 0.25)
    half = Z95 * math.sqrt(variance)
    total = sum(s.households for s in strata)
    return Estimate(share, max(0.0, share - half), min(1.0, share + half), population / total if total else 0.0)
