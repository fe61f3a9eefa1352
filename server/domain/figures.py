"""The published figures' vocabulary (issue 18 items 1, 2): what one aggregate row counts, the time buckets
percentiles are read from, what one service request or alert adds to a row, and the KPI catalogue (formula,
denominator, period, the plan's target).

Pure data and arithmetic. `linli/figures_source` (server/store/couch.py) lists each request's and alert's times
under its grid and month; server/services/figures_cells.py adds them up here into a grid's month, kept as a
document; server/services/figures.py reads those.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# Months are months of China Standard Time (UTC+8, no daylight saving): the plan's reporting months.
MONTH_UTC_OFFSET_HOURS = 8

# What one row of the aggregate counts, in this order (CouchDB `_sum` adds the lists element-wise).
COUNTS = (
    "requests",            # service requests made in the month
    "responded",           # … acknowledged
    "responded_on_time",   # … acknowledged by their response deadline (the category's working days: 1 in the plan)
    "closed",              # … resolved or closed
    "closed_on_time",      # … resolved by their close deadline (3 working days in the plan)
    "open",                # … not resolved or closed yet
    "rated",               # … rated by the resident
    "satisfied",           # … rated 4 or 5 of 5
    "rating_sum",          # the ratings added up (the mean is rating_sum / rated)
    "alerts",              # elderly-safety alerts raised in the month (not equipment going silent)
    "alerts_answered",     # … acknowledged before they were escalated
)
# Elderly-safety alerts: what a person raised or a wristband, meter or sensor noticed about a resident.
SAFETY_ALERT_KINDS = ("sos", "fall", "no_water", "no_activity", "heart_rate", "electricity")

# Upper bounds (hours) of the buckets response and close times are counted in; one more bucket above the last.
# A percentile read from them is known to its bucket: the true value lies between the bucket's bounds.
HOUR_EDGES = (0.25, 0.5, 1, 2, 3, 4, 6, 8, 12, 16, 24, 36, 48, 72, 96, 120, 168, 240, 336, 504, 720)
BUCKETS = len(HOUR_EDGES) + 1
RESPONSE_HISTOGRAM = len(COUNTS)             # offset of the response-time buckets in a row
CLOSE_HISTOGRAM = RESPONSE_HISTOGRAM + BUCKETS
ROW_LENGTH = CLOSE_HISTOGRAM + BUCKETS

# A ranking of places by a KPI leaves out every place with fewer cases than this (a grid closing one request on
# time is not the best grid): they are listed apart, unranked.
MIN_CASES_TO_RANK = 30


def bucket_of(hours: float) -> int:
    """The bucket a time falls in: the first whose upper bound it does not exceed (the map function's rule)."""
    return next((i for i, edge in enumerate(HOUR_EDGES) if hours <= edge), len(HOUR_EDGES))


def bucket_bounds(bucket: int) -> tuple[float, float | None]:
    """The bucket's lower and upper bounds in hours (None: no upper bound)."""
    low = HOUR_EDGES[bucket - 1] if bucket > 0 else 0.0
    return float(low), (float(HOUR_EDGES[bucket]) if bucket < len(HOUR_EDGES) else None)


def percentile_bucket(histogram: Sequence[int], q: float) -> int | None:
    """The bucket holding the q-quantile (nearest rank: the value at index int(q·n) of the sorted times, as the
    old dashboard read it), or None without times."""
    total = sum(histogram)
    if not total:
        return None
    rank = min(total - 1, int(q * total))
    seen = 0
    for bucket, n in enumerate(histogram):
        seen += n
        if rank < seen:
            return bucket
    return len(histogram) - 1  # not reached: rank < total


# ---------------------------------------------------------------- what one request or alert counts

# A service request as `linli/figures_source` lists it (its value after the leading "request"), in this order.
REQUEST_FIELDS = ("category", "department", "status", "created_at", "acknowledged_at", "due_respond",
                  "resolved_at", "due_close", "rating", "closed_at", "confirmed_at")
CLOSED_STATES = ("resolved", "closed")


def _instant(text: object) -> dt.datetime | None:
    """A stored time (ISO 8601 with its offset), or None where there is none or it is not one."""
    if not isinstance(text, str):
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else None


def month_of(text: object) -> str | None:
    """The reporting month ("YYYY-MM", UTC+8) of a stored time, or None."""
    when = _instant(text)
    return None if when is None else (when + dt.timedelta(hours=MONTH_UTC_OFFSET_HOURS)).strftime("%Y-%m")


def months(first: str, last: str) -> list[str]:
    """Every month from first to last, both included ("YYYY-MM")."""
    year, month = map(int, first.split("-"))
    out = []
    while f"{year:04d}-{month:02d}" <= last:
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def _on_time(done: dt.datetime, due: object) -> int:
    deadline = _instant(due)
    return int(deadline is not None and done <= deadline)


def request_row(fields: Sequence[object]) -> list[int]:
    """What one service request adds to a row: counted in its month, whatever state it is in now (a reopened
    request counts open again, its close time gone)."""
    f = dict(zip(REQUEST_FIELDS, fields, strict=True))
    v = [0] * ROW_LENGTH
    at = {name: i for i, name in enumerate(COUNTS)}
    made = _instant(f["created_at"])
    if made is None:
        return v
    v[at["requests"]] = 1
    acknowledged = _instant(f["acknowledged_at"])
    if acknowledged is not None:
        v[at["responded"]] = 1
        v[at["responded_on_time"]] = _on_time(acknowledged, f["due_respond"])
        v[RESPONSE_HISTOGRAM + bucket_of((acknowledged - made).total_seconds() / 3600)] = 1
    resolved = _instant(f["resolved_at"])
    if f["status"] in CLOSED_STATES and resolved is not None:
        v[at["closed"]] = 1
        v[at["closed_on_time"]] = _on_time(resolved, f["due_close"])
        v[CLOSE_HISTOGRAM + bucket_of((resolved - made).total_seconds() / 3600)] = 1
    else:
        v[at["open"]] = 1
    rating = f["rating"]
    if isinstance(rating, int) and not isinstance(rating, bool) and rating > 0:
        v[at["rated"]], v[at["rating_sum"]], v[at["satisfied"]] = 1, rating, int(rating >= 4)
    return v


def closure_month(fields: Sequence[object]) -> str | None:
    """The reporting month a request was closed in, for the resident-confirmed closure KPI (closed, not merely
    resolved: the reporter is asked once it is closed), or None while it is not closed."""
    f = dict(zip(REQUEST_FIELDS, fields, strict=True))
    return month_of(f["closed_at"]) if f["status"] == "closed" else None


def request_facets(fields: Sequence[object]) -> tuple[str, str, str]:
    """The facets a request is counted under: all (""), its department ("department:" not dispatched yet), its
    category."""
    f = dict(zip(REQUEST_FIELDS, fields, strict=True))
    return "", f"department:{f['department'] or ''}", f"category:{f['category']}"


def alert_row(acknowledged_at: object, escalated_at: object) -> list[int]:
    """What one elderly-safety alert adds to its month's row (facet "" only): answered if acknowledged before it
    was escalated."""
    v = [0] * ROW_LENGTH
    v[COUNTS.index("alerts")] = 1
    v[COUNTS.index("alerts_answered")] = int(_instant(acknowledged_at) is not None and not escalated_at)
    return v


def add_rows(rows: Iterable[Sequence[int]]) -> list[int]:
    """Rows added element by element."""
    total = [0] * ROW_LENGTH
    for row in rows:
        for i, n in enumerate(row):
            total[i] += n
    return total


@dataclass(frozen=True)
class Kpi:
    """One indicator of the plan: numerator / denominator over the chosen months, against the plan's target.

    Numerator and denominator name counts (COUNTS, or what another source adds: server/services/figures.py
    `counts_of`); an indicator whose counts no source gives yet is printed with its target and "no data yet".
    Words (name, formula, denominator, period) are i18n keys kpi_<code>, kpi_<code>_formula, kpi_<code>_of."""

    code: str
    numerator: str
    denominator: str
    target: float        # the plan's target share (0–1)
    baseline: float | None = None  # where the plan starts from, if it says
    period: str = "month"  # the period one figure covers: the months chosen, figured month by month

    def value(self, counts: Mapping[str, int]) -> float | None:
        """The share, or None where the denominator is zero or not counted."""
        base = counts.get(self.denominator)
        return counts.get(self.numerator, 0) / base if base else None

    def cases(self, counts: Mapping[str, int]) -> int:
        return counts.get(self.denominator, 0)


# The catalogue (plan §4.1, §4.5). The evaluation work adds its indicators' counts (mediation, confirmed closure,
# survey responses) under these names; until then they show the target alone.
KPIS = (
    Kpi("respond_1d", "responded_on_time", "requests", target=1.0),
    Kpi("close_3d", "closed_on_time", "requests", target=1.0),
    Kpi("on_time", "closed_on_time", "closed", target=1.0),
    Kpi("satisfaction", "satisfied", "rated", target=0.90, baseline=0.76),
    Kpi("safety_alerts", "alerts_answered", "alerts", target=1.0),
    Kpi("mediation_success", "mediations_succeeded", "mediations", target=0.90, baseline=0.75),
    Kpi("confirmed_closure", "closures_confirmed", "closures_asked", target=1.0),
    Kpi("survey_response", "survey_responses", "survey_sampled", target=1.0),
)
KPI_BY_CODE = {k.code: k for k in KPIS}


def ranked(cases_and_values: Mapping[str, tuple[int, float | None]]) -> tuple[list[str], list[str]]:
    """Places ranked by value, best first, among those with MIN_CASES_TO_RANK cases or more; and the others
    (too few cases, or no value), unranked, in name order."""
    rankable = [k for k, (n, v) in cases_and_values.items() if n >= MIN_CASES_TO_RANK and v is not None]
    return (sorted(rankable, key=lambda k: (-(cases_and_values[k][1] or 0), k)),
            sorted(k for k in cases_and_values if k not in rankable))
