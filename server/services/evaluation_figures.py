"""Supervision's three figures as data (issue 18 item 2's catalogue adds them; the dashboard is not rebuilt here):
each one's numerator and denominator for some communities over a period of months, computed from the documents
this slice keeps (service requests confirmed fixed, mediation cases, the survey's samples).

`CATALOGUE` names each figure, its formula (an i18n key), its denominator, the period it is counted by and the
plan's target (None where the plan sets none); `figures` counts them. A KPI catalogue takes both as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from server.domain import figures as rules
from server.services import figures_cells, mediation, survey
from server.store.couch import Couch, docs_of_type, iter_view_docs

Doc = dict[str, Any]


@dataclass(frozen=True)
class Indicator:
    key: str  # i18n key of its name; `<key>_formula` explains it
    denominator: str  # what is counted below the line
    period: str  # which month a case belongs to
    target: float | None  # the plan's, as a share


CATALOGUE = (
    Indicator("kpi_confirmed_closure", "closed requests", "the month it was closed", None),
    Indicator("kpi_mediation_success", "concluded mediation cases (withdrawn ones not counted)",
              "the month the case was opened", 0.90),
    Indicator("kpi_survey_response_rate", "households in the month's sample", "the survey's month", None),
)


@dataclass(frozen=True)
class Figure:
    key: str
    numerator: int
    denominator: int

    @property
    def share(self) -> float | None:
        return self.numerator / self.denominator if self.denominator else None


def _in(months: tuple[str, str], stamp: str | None) -> bool:
    return stamp is not None and months[0] <= stamp[:7] <= months[1]


def figures(couch: Couch, communities: Iterable[str], months: tuple[str, str]) -> list[Figure]:
    """The three figures over the communities for the months first..last ("2026-01", "2026-06"), both included.
    Closures are read from the kept figures (server/services/figures_cells.py: as of its last catch-up), by the
    reporting month (UTC+8) they were closed in; mediation cases and the survey from their documents (a few a
    month)."""
    communities = sorted(communities)

    def of(kind: str) -> list[Doc]:
        return [d for c in communities for d in iter_view_docs(couch.main, "linli/by_place", [c, kind])]

    grids = [g["_id"] for g in docs_of_type(couch.main, "grid") if g.get("community") in communities]
    closed, confirmed = figures_cells.closures(couch, grids, rules.months(*months))
    cases = mediation.success([c for c in of("mediation") if _in(months, c["created_at"])])
    results = [r for r in survey.results(couch) if r.community in communities and _in(months, r.month)]
    return [Figure("kpi_confirmed_closure", confirmed, closed),
            Figure("kpi_mediation_success", cases.succeeded, cases.concluded),
            Figure("kpi_survey_response_rate", sum(r.sample_answers for r in results),
                   sum(r.sample_size for r in results))]
