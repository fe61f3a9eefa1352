"""Figures from the aggregates kept as documents (issue 18 item 1): the counts of any area (street, community,
grid), facet (all, one department, one category) and month range, month by month, and the backlog by department;
the KPI catalogue's values (server/domain/figures.py), percentiles read from bucketed times with their bounds.

Every figure adds up a few documents server/services/figures_cells.py keeps (one per grid and month, one per grid
for the backlog), read once per page (`read`): what a page costs grows with the grids and months asked for, not
with the requests a year brings. Pages ask figures_cells.caught_up first.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from server.domain import figures
from server.domain.figures import COUNTS, KPIS, Kpi, months
from server.services import evaluation_figures, figures_cells
from server.store.config import LOCAL_TZ
from server.store.couch import Couch

Doc = dict[str, Any]


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


@dataclass(frozen=True)
class Kept:
    """What is kept for an area over some months, for one facet, read once (two key ranges of
    `linli/figures_source`: the cells' rows, the backlogs): a page's figures month by month, its places one level
    down, its backlog and the closures and mediations its KPIs divide all add up these, none read twice."""

    facet: str
    cells: list[Doc]  # per grid and month counted: grid, community, month, below, row (facet ""; closures, mediations)
    backlogs: list[dict[str, int]]  # per grid: requests not closed by department

    def by_month(self, months: list[str], below: str | None = None) -> list[tuple[str, Counts]]:
        """The counts month by month (every one of `months`; nothing counted: zeros), of the whole area or of one
        of the areas one level down."""
        found: dict[str, list[Counts]] = {}
        for cell in self.cells:
            if below is None or cell["below"] == below:
                found.setdefault(cell["month"], []).append(Counts.of(cell["row"]))
        return [(m, Counts.total(found.get(m, []))) for m in months]

    def per_area(self, areas: Iterable[str]) -> dict[str, Counts]:
        """The counts over all the months in each of the areas one level down (a ranking of grids)."""
        found: dict[str, list[Counts]] = {a: [] for a in areas}
        for cell in self.cells:
            if cell["below"] in found:
                found[cell["below"]].append(Counts.of(cell["row"]))
        return {a: Counts.total(c) for a, c in found.items()}

    @property
    def backlog(self) -> dict[str, int]:
        """Requests of the area not closed yet, by department ("" not dispatched yet), most first."""
        found: dict[str, int] = {}
        for open_by_department in self.backlogs:
            for department, n in open_by_department.items():
                found[department] = found.get(department, 0) + n
        return dict(sorted(((d, n) for d, n in found.items() if n), key=lambda kv: (-kv[1], kv[0])))


def read(couch: Couch, area: str, months: list[str], facet: str = "", below: Iterable[str] = ()) -> Kept:
    """What is kept for the area (a street, a community, a grid) over these months (one range: first to last) in
    the facet; each cell placed in the one of `below` (the areas one level down) it is in ("" if none)."""
    below = set(below)
    rows = couch.main.query(figures_cells.SOURCE, startkey=["kept", facet, area, months[0]],
                            endkey=["kept", facet, area, months[-1], {}], as_list=True) if months else []
    cells = [{**r["value"], "month": r["key"][3], "below": next(
        (b for b in (r["value"]["grid"], r["value"]["community"]) if b in below), "")} for r in rows]
    backlogs = [r["value"] for r in couch.main.query(figures_cells.SOURCE, key=["backlog", area], as_list=True)]
    return Kept(facet, cells, backlogs)


def totals(couch: Couch, scope: Scope) -> Counts:
    """The counts over the scope's months together."""
    return Counts.total(c for _, c in by_month(couch, scope))


def by_month(couch: Couch, scope: Scope) -> list[tuple[str, Counts]]:
    """The counts month by month, every month of the range (a month with nothing counted counts zeros)."""
    span = months(scope.first, scope.last)
    return read(couch, scope.area, span, scope.facet).by_month(span)


def backlog(couch: Couch, area: str) -> dict[str, int]:
    """Requests of the area not closed yet, by department ("" not dispatched yet), most first."""
    return read(couch, area, []).backlog


# The evaluation's indicators (server/services/evaluation_figures.py) under the names the KPI catalogue divides.
EVALUATION_COUNTS = {"kpi_confirmed_closure": ("closures_confirmed", "closures_asked"),
                     "kpi_mediation_success": ("mediations_succeeded", "mediations"),
                     "kpi_survey_response_rate": ("survey_responses", "survey_sampled")}


def evaluation_counts(couch: Couch, communities: list[str], scope: Scope, kept: Kept) -> dict[str, int]:
    """Confirmed closures, mediation and the survey's responses over the scope's area and months (`kept`: its cells,
    read already; `communities`: the area's, or the grid's community), all departments and categories: mediation
    and the survey are about places, not departments or categories, so a facet's figure for them is not counted
    (the page says "no data yet")."""
    if not communities or scope.facet:
        return {}
    grid = scope.area if scope.area.startswith("grid:") else None
    found = evaluation_figures.figures(couch, communities, (scope.first, scope.last), kept.cells, grid)
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
