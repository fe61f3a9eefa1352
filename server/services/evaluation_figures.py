"""Supervision's three figures as data, each one's numerator and denominator for some communities over a period of
months: closures confirmed fixed and mediation cases from the kept figures (server/services/figures_cells.py), the
survey from its samples. The KPI catalogue (server/domain/figures.py `KPIS`) declares their formulas, periods and
targets; the dashboard divides them (server/services/figures.py `evaluation_counts`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from server.domain import figures as rules
from server.services import figures_cells, survey
from server.store.couch import Couch, docs_of_type

Doc = dict[str, Any]


@dataclass(frozen=True)
class Figure:
    key: str
    numerator: int
    denominator: int

    @property
    def share(self) -> float | None:
        return self.numerator / self.denominator if self.denominator else None


def figures(couch: Couch, communities: Iterable[str], months: tuple[str, str],
            cells: list[Doc] | None = None, grid: str | None = None) -> list[Figure]:
    """The three figures over the communities for the months first..last ("2026-01", "2026-06"), both included, or
    over one `grid` of theirs. Closures (by the month they were closed in) and mediation cases (by the month they
    were opened) are read from the kept figures (server/services/figures_cells.py: as of its last catch-up; `cells`:
    the area's cells over those months where a page read them already); the survey from the months' samples and
    their answers (a grid's: its stratum)."""
    communities = sorted(communities)
    span = rules.months(*months)
    if cells is None:
        grids = [grid] if grid else [g["_id"] for g in docs_of_type(couch.main, "grid")
                                     if g.get("community") in communities]
        cells = figures_cells.read(couch, grids, span)
    closed, confirmed = figures_cells.added(cells, "closures")
    concluded, succeeded = figures_cells.added(cells, "mediations")
    sampled, answered = survey.sample_answers(couch, communities, span, grid)
    return [Figure("kpi_confirmed_closure", confirmed, closed),
            Figure("kpi_mediation_success", succeeded, concluded),
            Figure("kpi_survey_response_rate", answered, sampled)]
