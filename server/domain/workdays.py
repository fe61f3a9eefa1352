"""Working days for SLA clocks (plan §4.1: respond within 1 working day, close within 3; §3.2: departments
show up within 3 working days).

A working day is a weekday that is not a public holiday, or a weekend day declared a make-up working day
(China moves weekends around its holidays). "N working days after t" is the same local time of day on
the N-th following working day; a request made on a day off counts from the start of the next working day.
The calendar lives in CouchDB (`work_calendar:<street>`) so every server process uses the same one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

WEEKEND = (5, 6)  # Saturday, Sunday
WORKDAY_STARTS = dt.time(9, 0)

# The demo street's calendar: mainland China's 2026 public holidays and make-up working days (synthetic list
# for the demo; a real deployment edits its own with `linli calendar`).
CHINA_2026_HOLIDAYS = (
    "2026-01-01", "2026-01-02", "2026-01-03",
    *(f"2026-02-{d:02d}" for d in range(15, 24)),
    "2026-04-04", "2026-04-05", "2026-04-06",
    *(f"2026-05-{d:02d}" for d in range(1, 6)),
    "2026-06-19", "2026-06-20", "2026-06-21",
    "2026-09-25", "2026-09-26", "2026-09-27",
    *(f"2026-10-{d:02d}" for d in range(1, 8)),
)
CHINA_2026_WORKDAYS = ("2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10")


@dataclass(frozen=True)
class WorkCalendar:
    holidays: frozenset[dt.date] = frozenset()
    workdays: frozenset[dt.date] = frozenset()  # weekend days that are working days
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> WorkCalendar:
        if doc is None:
            return cls()
        return cls(frozenset(map(dt.date.fromisoformat, doc.get("holidays", []))),
                   frozenset(map(dt.date.fromisoformat, doc.get("workdays", []))), ZoneInfo(doc["timezone"]))

    def is_working_day(self, day: dt.date) -> bool:
        if day in self.workdays:
            return True
        return day.weekday() not in WEEKEND and day not in self.holidays

    def next_working_day(self, day: dt.date) -> dt.date:
        day += dt.timedelta(days=1)
        while not self.is_working_day(day):
            day += dt.timedelta(days=1)
        return day

    def add_working_days(self, start: dt.datetime, days: int) -> dt.datetime:
        """The deadline `days` working days after `start` (an aware datetime), as an aware datetime in UTC."""
        local = start.astimezone(self.tz)
        day, time_of_day = local.date(), local.timetz().replace(tzinfo=None)
        if not self.is_working_day(day):  # received on a day off: the clock starts next working morning
            day, time_of_day = self.next_working_day(day), WORKDAY_STARTS
        for _ in range(days):
            day = self.next_working_day(day)
        return dt.datetime.combine(day, time_of_day, self.tz).astimezone(dt.UTC)


def calendar_doc(street: str, holidays: Iterable[str], workdays: Iterable[str],
                 timezone: str = "Asia/Shanghai") -> dict[str, Any]:
    return {"_id": f"work_calendar:{street.split(':', 1)[1]}", "type": "work_calendar", "street": street,
            "holidays": sorted(set(holidays)), "workdays": sorted(set(workdays)), "timezone": timezone}
