"""The service-request dashboard (plan §4.1 targets, §4.5 published satisfaction): response and close times
(median, 90th percentile), share closed on time, backlog by category and department, satisfaction — per
grid, community and street; and the same as CSV.

Computed from a slim view (`linli/request_stats`: one row per request, no document bodies), so a street's
million requests stream through without loading documents.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from server.store.couch import Couch

LEVELS = ("street", "community", "grid")
CLOSED = frozenset({"resolved", "closed"})


# The backlog's key for a request with no department yet (made offline, or of a category a person must sort out).
NOT_DISPATCHED = "not_dispatched"


@dataclass(frozen=True)
class Row:
    """What the dashboard needs of one request (the view's value)."""

    street: str
    community: str
    grid: str
    category: str
    department: str
    status: str
    created: dt.datetime
    acknowledged: dt.datetime | None
    resolved: dt.datetime | None
    due_close: dt.datetime
    rating: int | None

    @classmethod
    def of(cls, key: list[str], value: list[Any]) -> Row:
        """From a `request_stats` row: key [community, street, grid, request id]."""
        def when(text: str | None) -> dt.datetime | None:
            return dt.datetime.fromisoformat(text) if text else None

        category, department, status, created, acknowledged, resolved, due_close, rating = value
        return cls(key[1], key[0], key[2], category, department, status, when(created),  # type: ignore[arg-type]
                   when(acknowledged), when(resolved), when(due_close), rating)  # type: ignore[arg-type]


@dataclass
class Stats:
    requests: int = 0
    # Compact arrays: a street's million requests cost 8 bytes a time, not a Python float object each.
    response_hours: array[float] = field(default_factory=lambda: array("d"))
    close_hours: array[float] = field(default_factory=lambda: array("d"))
    closed_on_time: int = 0
    closed: int = 0
    rating_sum: int = 0
    ratings: int = 0
    backlog_by_category: Counter[str] = field(default_factory=Counter)
    backlog_by_department: Counter[str] = field(default_factory=Counter)

    def add(self, row: Row) -> None:
        self.requests += 1
        if row.acknowledged:
            self.response_hours.append((row.acknowledged - row.created).total_seconds() / 3600)
        if row.status in CLOSED and row.resolved:
            self.closed += 1
            self.close_hours.append((row.resolved - row.created).total_seconds() / 3600)
            self.closed_on_time += row.due_close is not None and row.resolved <= row.due_close
        else:
            self.backlog_by_category[row.category] += 1
            self.backlog_by_department[row.department or NOT_DISPATCHED] += 1
        if row.rating:
            self.rating_sum += row.rating
            self.ratings += 1

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "open": sum(self.backlog_by_category.values()),
            "response_median_h": _quantile(self.response_hours, 0.5),
            "response_p90_h": _quantile(self.response_hours, 0.9),
            "close_median_h": _quantile(self.close_hours, 0.5),
            "close_p90_h": _quantile(self.close_hours, 0.9),
            "closed_on_time_share": round(self.closed_on_time / self.closed, 3) if self.closed else None,
            "satisfaction": round(self.rating_sum / self.ratings, 2) if self.ratings else None,
            "backlog_by_category": dict(self.backlog_by_category.most_common()),
            "backlog_by_department": dict(self.backlog_by_department.most_common()),
        }


def _quantile(values: array[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def compute(rows: Iterable[Row]) -> dict[str, dict[str, Stats]]:
    """Stats per street, per community and per grid (keyed by that id), in one pass over the rows."""
    tables: dict[str, dict[str, Stats]] = {level: {} for level in LEVELS}
    for row in rows:
        for level, key in zip(LEVELS, (row.street, row.community, row.grid), strict=True):
            tables[level].setdefault(key, Stats()).add(row)
    return tables


def rows(couch: Couch, communities: Iterable[str], page: int = 10_000) -> Iterator[Row]:
    """Every request of these communities as dashboard rows, streamed page by page."""
    return (Row.of(r["key"], r["value"]) for r in view_rows(couch, communities, page))


def view_rows(couch: Couch, communities: Iterable[str], page: int = 10_000) -> Iterator[dict[str, Any]]:
    """Every request of these communities as its `request_stats` row (key [community, street, grid, request id]),
    streamed page by page."""
    for community in communities:
        start: Any = [community]
        skip = 0
        while True:
            batch = couch.main.query("linli/request_stats", startkey=start, endkey=[community, {}], limit=page,
                                     skip=skip, reduce="false", as_list=True)
            yield from batch
            if len(batch) < page:
                break
            start, skip = batch[-1]["key"], 1  # keys are unique (they end with the request id)


CSV_COLUMNS = ("level", "id", "requests", "open", "response_median_h", "response_p90_h", "close_median_h",
               "close_p90_h", "closed_on_time_share", "satisfaction", "backlog_by_category", "backlog_by_department")


def to_csv(tables: dict[str, dict[str, Stats]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for level, table in tables.items():
        for key, stats in sorted(table.items()):
            summary = stats.summary()
            summary["backlog_by_category"] = "; ".join(f"{k}={v}" for k, v in summary["backlog_by_category"].items())
            summary["backlog_by_department"] = "; ".join(
                f"{k}={v}" for k, v in summary["backlog_by_department"].items())
            writer.writerow([level, key, *(summary[c] for c in CSV_COLUMNS[2:])])
    return out.getvalue()
