"""Figures from the aggregates kept as documents (issue 18 item 1): the counts of any area (street, community,
grid), facet (all, one department, one category) and month range, month by month, and the backlog by department;
the KPI catalogue's values (server/domain/figures.py), percentiles read from bucketed times with their bounds.

Every figure adds up a few documents server/services/figures_cells.py keeps (one per grid and month, one per grid
for the backlog), read in one request: what a page costs grows with the grids and months asked for, not with the
requests a year brings. Pages ask figures_cells.caught_up first.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from server.domain import figures
from server.domain.figures import COUNTS, KPIS, Kpi, months
from server.services import evaluation_figures
from server.services.figures_cells import backlog_id, cell_id
from server.store.config import LOCAL_TZ
from server.store.couch import Couch, docs_of_type, get_many

FACET_KINDS = ("department", "category")


@dataclass(frozen=True)
class Scope:
    """What a figure covers: an area (street, community or grid id), a facet ("" for all, "department:<id>",
    "category:<code>") and a range of months, both ends included ("YYYY-MM")."""

    area: str
    facet: str
    first: str
    last: str


@dataclass(frozen=True)
class Counts:
    """One aggregate row read back: the counts by name, response and close times by bucket."""

    counts: dict[str, int]
    response_histogram: tuple[int, ...]
    close_histogram: tuple[int, ...]

    @classmethod
    def of(cls, row: list[int] | None) -> Counts:
        row = list(row or []) + [0] * (figures.ROW_LENGTH - len(row or []))
        return cls(dict(zip(COUNTS, row, strict=False)),
                   tuple(row[figures.RESPONSE_HISTOGRAM:figures.CLOSE_HISTOGRAM]),
                   tuple(row[figures.CLOSE_HISTOGRAM:figures.ROW_LENGTH]))

    def percentile(self, which: str, q: float) -> tuple[float, float | None] | None:
        """The bounds (hours) between which the q-quantile of response ("response") or close ("close") times
        lies, or None without times."""
        histogram = self.response_histogram if which == "response" else self.close_histogram
        bucket = figures.percentile_bucket(histogram, q)
        return None if bucket is None else figures.bucket_bounds(bucket)

    @classmethod
    def total(cls, counted: Iterable[Counts]) -> Counts:
        """Counts added up (months into a range, grids into their community)."""
        return cls.of(figures.add_rows(c.row for c in counted))

    @property
    def row(self) -> list[int]:
        return [*(self.counts[name] for name in COUNTS), *self.response_histogram, *self.close_histogram]

    @property
    def mean_rating(self) -> float | None:
        return round(self.counts["rating_sum"] / self.counts["rated"], 2) if self.counts["rated"] else None


def grids_of(couch: Couch, areas: Iterable[str]) -> dict[str, str]:
    """The grids in these areas (a street's, a community's, a grid itself), each with the area it is in."""
    wanted = set(areas)
    return {g["_id"]: next(a for a in (g["_id"], g.get("community"), g.get("street")) if a in wanted)
            for g in docs_of_type(couch.main, "grid") if wanted & {g["_id"], g.get("community"), g.get("street")}}


def _cells(couch: Couch, areas: Iterable[str], scope: Scope) -> dict[str, dict[str, Counts]]:
    """The scope's facet month by month in each of these areas: {area: {month: counts}}, months with nothing
    counted left out."""
    grids = grids_of(couch, areas)
    found: dict[str, dict[str, list[Counts]]] = {}
    cells = get_many(couch.main, (cell_id(g, m) for g in grids for m in months(scope.first, scope.last)))
    for cell in cells.values():
        row = cell.get("rows", {}).get(scope.facet)
        if row:
            found.setdefault(grids[cell["grid"]], {}).setdefault(cell["month"], []).append(Counts.of(row))
    return {a: {m: Counts.total(c) for m, c in by_month.items()} for a, by_month in found.items()}


def totals(couch: Couch, scope: Scope) -> Counts:
    """The counts over the scope's months together."""
    return Counts.total(c for _, c in by_month(couch, scope))


def by_month(couch: Couch, scope: Scope) -> list[tuple[str, Counts]]:
    """The counts month by month, every month of the range (a month with nothing counted counts zeros)."""
    found = _cells(couch, [scope.area], scope).get(scope.area, {})
    return [(m, found.get(m, Counts.of(None))) for m in months(scope.first, scope.last)]


def backlog(couch: Couch, area: str) -> dict[str, int]:
    """Requests of the area not closed yet, by department ("" not dispatched yet), most first."""
    found: dict[str, int] = {}
    for doc in get_many(couch.main, map(backlog_id, grids_of(couch, [area]))).values():
        for department, n in doc.get("open", {}).items():
            found[department] = found.get(department, 0) + n
    return dict(sorted(((d, n) for d, n in found.items() if n), key=lambda kv: (-kv[1], kv[0])))


def per_area(couch: Couch, areas: Iterable[str], scope: Scope) -> dict[str, Counts]:
    """The scope's counts for each of these areas instead of the scope's own (a ranking of grids)."""
    areas = list(areas)
    found = _cells(couch, areas, scope)
    return {a: Counts.total(found.get(a, {}).values()) for a in areas}


# The evaluation's indicators (server/services/evaluation_figures.py) under the names the KPI catalogue divides.
EVALUATION_COUNTS = {"kpi_confirmed_closure": ("closures_confirmed", "closures_asked"),
                     "kpi_mediation_success": ("mediations_succeeded", "mediations"),
                     "kpi_survey_response_rate": ("survey_responses", "survey_sampled")}


def evaluation_counts(couch: Couch, communities: list[str], scope: Scope) -> dict[str, int]:
    """Confirmed closures, mediation and the survey's responses over the communities and the scope's months: counted
    per community from their own documents, so only for a community or the street, all departments and categories
    (a grid's or a department's figure for them is not counted: the page says "no data yet")."""
    if not communities or scope.facet:
        return {}
    found = evaluation_figures.figures(couch, communities, (scope.first, scope.last))
    return {name: value for f in found
            for name, value in zip(EVALUATION_COUNTS[f.key], (f.numerator, f.denominator), strict=True)}


def kpi_values(counts: Mapping[str, int]) -> list[tuple[Kpi, float | None, int]]:
    """Each KPI of the catalogue with its value (None: nothing to divide by, or not counted yet) and cases."""
    return [(k, k.value(counts), k.cases(counts)) for k in KPIS]


# ---------------------------------------------------------------- months

def month_of(when: dt.datetime) -> str:
    return when.astimezone(LOCAL_TZ).strftime("%Y-%m")


def parse_month(text: str) -> str | None:
    """A "YYYY-MM" month as typed in a form, or None if it is not one."""
    try:
        return dt.datetime.strptime(text.strip(), "%Y-%m").strftime("%Y-%m")
    except ValueError:
        return None


def default_range(now: dt.datetime, span: int = 12) -> tuple[str, str]:
    """The last `span` months up to this one."""
    last = month_of(now)
    year, month = map(int, last.split("-"))
    index = year * 12 + month - 1 - (span - 1)
    return f"{index // 12:04d}-{index % 12 + 1:02d}", last


# ---------------------------------------------------------------- CSV (Chinese headers, names not ids)

def trend_csv(rows: list[tuple[str, Counts]], t: Callable[..., str]) -> str:
    """Month by month: requests, closed, on time, on-time share, satisfied share, mean rating."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow([t(k) for k in ("csv_month", "csv_requests", "csv_closed", "csv_closed_on_time",
                               "csv_on_time_share", "csv_rated", "csv_satisfied_share", "csv_mean_rating")])
    for month, c in rows:
        n = c.counts
        w.writerow([month, n["requests"], n["closed"], n["closed_on_time"], _share(n["closed_on_time"], n["closed"]),
                    n["rated"], _share(n["satisfied"], n["rated"]), c.mean_rating if c.mean_rating is not None else ""])
    return out.getvalue()


def backlog_csv(rows: Mapping[str, int], names: Mapping[str, str], t: Callable[..., str]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow([t("csv_department"), t("csv_open")])
    for department, n in rows.items():
        w.writerow([names.get(department) or t("not_dispatched"), n])
    return out.getvalue()


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.3f}" if whole else ""
