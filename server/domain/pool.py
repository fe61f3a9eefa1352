"""What the resource pool allows (issue 17): pure rules for bookings, check-ins and idle time, read by the
services, the pages, the sync gateway's write rules (access.py) and the tests alike.

Time is cut into whole hours in China time. Each hour of a resource is one slot with its own document id
(`slot_id`), so a slot booked twice (two phones offline) is one document with two revisions in conflict, never
two bookings. Every refusal names why: an i18n message key (server/domain/pool_messages.py) with its parameters.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

Doc = dict[str, Any]
Refusal = tuple[str, dict[str, Any]]

LOCAL = dt.timezone(dt.timedelta(hours=8), "CST")  # China time: no daylight saving, so an hour is an hour
SLOT = dt.timedelta(hours=1)
ACTIVE = ("requested", "confirmed")  # states that hold a slot; the others leave it free to book again
CHECKIN_EARLY = dt.timedelta(minutes=30)  # a check-in counts from this long before the booking starts
IDLE_FLAG = 0.30  # idle more than this share of its usable hours …
IDLE_MONTHS = 2  # … so many months running: flagged for the secretary
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # a venue's check-in code: no 0/O, 1/I, read off a wall and typed
CODE_LENGTH = 12
# A venue's code changes every day (`day_code`): one seen once checks in on that day only. Its resource carries the
# hashes of the days' codes (`code_hashes`) from CODE_DAYS_KEPT days back (a phone offline that long still syncs
# its check-in) to CODE_DAYS_AHEAD ahead (a phone offline that long still checks a code); the minute clock
# renews them (server/services/pool.py renew_codes).
CODE_DAYS_KEPT = 14
CODE_DAYS_AHEAD = 7
SHEET_DAYS = 7  # the keeper prints a week of codes (one per day) to post at the venue; their phone holds the same
DAYS_SHOWN = 366  # a resource's calendar shows a day within a year either way of today (else today)


def slot_id(resource_id: str, start: dt.datetime) -> str:
    """booking:<resource key>:<YYYYMMDDHH>, the hour in China time."""
    return f"booking:{resource_id.removeprefix('resource:')}:{start.astimezone(LOCAL):%Y%m%d%H}"


def checkin_id(booking_id: str) -> str:
    """One check-in per booking, named by its first slot."""
    return "checkin:" + booking_id.removeprefix("booking:")


def code_hash(code: str) -> str:
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


def venue_secret(code_key: bytes, resource_id: str) -> str:
    """A venue's codes' secret (hex), derived from the installation's code key (server/security/keystore.py
    code_key, stored only wrapped under the master key): never stored itself, the same after a master-key rotation,
    different for every venue. A copy of the database holds no secret a day's code can be made from."""
    return hmac.new(code_key, f"linli venue secret {resource_id}".encode(), hashlib.sha256).hexdigest()


def day_code(secret: str, day: dt.date) -> str:
    """The venue's check-in code on one day (China time), derived from its secret (`venue_secret`, never stored):
    the keeper's page shows today's; nobody can work out another day's from it."""
    digest = hmac.new(secret.encode(), day.isoformat().encode(), hashlib.sha256).digest()
    return "".join(CODE_ALPHABET[b % len(CODE_ALPHABET)] for b in digest[:CODE_LENGTH])  # 256 % 32 == 0: unbiased


def week_codes(secret: str, today: dt.date) -> list[Doc]:
    """The venue's codes from today for SHEET_DAYS days: [{"date", "code"}], the keeper's printed sheet."""
    days = (today + dt.timedelta(days=n) for n in range(SHEET_DAYS))
    return [{"date": day.isoformat(), "code": day_code(secret, day)} for day in days]


def code_hashes(secret: str, today: dt.date) -> list[Doc]:
    """What a resource carries to check a day's code by: each day's code's hash, CODE_DAYS_KEPT back to
    CODE_DAYS_AHEAD ahead."""
    days = (today + dt.timedelta(days=n) for n in range(-CODE_DAYS_KEPT, CODE_DAYS_AHEAD + 1))
    return [{"date": day.isoformat(), "hash": code_hash(day_code(secret, day))} for day in days]


def codes_due(resource: Doc, today: dt.date) -> bool:
    """Its code hashes end before CODE_DAYS_AHEAD days from today: time to renew them."""
    last = max((h["date"] for h in resource.get("code_hashes") or []), default="")
    return last < (today + dt.timedelta(days=CODE_DAYS_AHEAD)).isoformat()


def booker_kinds(roles: Iterable[str], resident: bool) -> set[str]:
    """What someone books as: their working roles, and resident if they book for their own household."""
    return {r for r in roles if r in ("volunteer", "grid_worker", "secretary")} | ({"resident"} if resident else set())


def _hours_of(records: Iterable[Doc], pick: Any) -> set[int]:
    return {h for r in records if pick(r) for h in range(max(0, r["opens"]), min(24, r["closes"]))}


def open_hours_on(resource: Doc, day: dt.date) -> set[int]:
    """The hours (0-23, China time) the resource is open on this day by its weekly hours."""
    return _hours_of(resource.get("open_hours") or [], lambda r: r["weekday"] == day.weekday())


def blocked_hours_on(resource: Doc, day: dt.date) -> dict[int, str]:
    """The hours of this day its blackouts cover, each with its blackout's reason: every blackout of the day
    counts, however many (LibreBooking keeps only the last one of a day)."""
    hours: dict[int, str] = {}
    for b in resource.get("blackouts") or []:
        if b["date"] == day.isoformat():
            for h in range(max(0, b["from_hour"]), min(24, b["to_hour"])):
                hours.setdefault(h, b.get("reason") or "")
    return hours


def slots_of(start: dt.datetime, hours: int) -> list[dt.datetime]:
    return [start + SLOT * i for i in range(hours)]


def _group_start(booking: Doc) -> dt.datetime | None:
    """When the whole booking starts: its first slot's hour, read from the group id."""
    try:
        stamp = str(booking["group"]).rsplit(":", 1)[1]
        return dt.datetime.strptime(stamp, "%Y%m%d%H").replace(tzinfo=LOCAL)
    except (KeyError, IndexError, ValueError):
        return None


def booking_refusal(booking: Doc, resource: Doc | None, kinds: set[str], now: dt.datetime) -> Refusal | None:
    """Why this slot of a booking may not be booked (message key, params); None if it may. `kinds`: what the booker
    books as (`booker_kinds`). Checks the slot against the resource's hours, blackouts, capacity and rules."""
    if resource is None or resource.get("type") != "resource" or resource.get("_deleted") \
            or booking.get("resource") != resource["_id"] or booking.get("community") != resource.get("community"):
        return ("pool_no_resource", {})
    try:
        start = dt.datetime.fromisoformat(booking["slot_start"])
    except (KeyError, TypeError, ValueError):
        return ("pool_slot_id", {})
    if start.tzinfo is None or booking.get("_id") != slot_id(resource["_id"], start) \
            or start.astimezone(LOCAL).minute or start.second:
        return ("pool_slot_id", {})
    hours, first = booking.get("hours"), _group_start(booking)
    if not isinstance(hours, int) or isinstance(hours, bool) or hours < 1 or first is None \
            or booking["group"] != slot_id(resource["_id"], first) or not first <= start < first + SLOT * hours:
        return ("pool_slot_id", {})
    if hours > resource["max_hours"]:
        return ("pool_too_long", {"max": resource["max_hours"]})
    if first + SLOT <= now:  # the hour under way may still be booked, for what is left of it
        return ("pool_past", {})
    if first > now + dt.timedelta(days=resource["book_ahead_days"]):
        return ("pool_too_far", {"days": resource["book_ahead_days"]})
    local = start.astimezone(LOCAL)
    if local.hour not in open_hours_on(resource, local.date()):
        return ("pool_closed", {"hours": opening_text(resource, local.date())})
    blocked = blocked_hours_on(resource, local.date())
    if local.hour in blocked:
        return ("pool_blackout", {"reason": blocked[local.hour] or "-"})
    people = booking.get("people")
    if not isinstance(people, int) or isinstance(people, bool) or not 1 <= people <= resource["capacity"]:
        return ("pool_over_capacity", {"capacity": resource["capacity"]})
    if not kinds & set(resource["who_may_book"]):
        return ("pool_not_for_you", {})
    if booking.get("status") != ("requested" if resource["approval"] else "confirmed"):
        return ("pool_status", {})
    return None


def opening_text(resource: Doc, day: dt.date) -> str:
    """A day's open hours as people read them: "9-12, 14-18", or "-" when closed."""
    hours = sorted(open_hours_on(resource, day))
    runs: list[list[int]] = []
    for h in hours:
        if runs and runs[-1][1] == h:
            runs[-1][1] = h + 1
        else:
            runs.append([h, h + 1])
    return ", ".join(f"{a}-{b}" for a, b in runs) or "-"


def descends_from(new: Doc, old: Doc) -> bool:
    """True if `new` is an edit of `old` (its revision history holds old's revision), False if it is a branch of
    its own: a phone's booking made offline of a slot someone else booked meanwhile."""
    revisions = new.get("_revisions") or {}
    ancestry = {f"{revisions.get('start', 0) - i}-{rev}" for i, rev in enumerate(revisions.get("ids") or [])}
    return old.get("_rev") in ancestry | {new.get("_rev")}


def checkin_refusal(writer: str, staff: bool, checkin: Doc, booking: Doc | None, resource: Doc | None) -> \
        Refusal | None:
    """Why this check-in may not be recorded; None if it may. A scan needs the venue's code of the day it was made
    (its hash is on the resource) and the booker; the keeper (or grid staff) checks anyone in. It counts from
    `CHECKIN_EARLY` before the booking starts until its grace period ends."""
    if booking is None or resource is None or booking.get("type") != "booking" or booking.get("_deleted") \
            or booking.get("group") != booking.get("_id") or checkin.get("_id") != checkin_id(booking["_id"]) \
            or checkin.get("resource") != booking.get("resource") or resource.get("_id") != booking.get("resource"):
        return ("pool_checkin_booking", {})
    if booking.get("status") not in ("confirmed", "no_show"):  # a no-show marked before a late phone synced
        return ("pool_checkin_not_confirmed", {})
    try:
        at = dt.datetime.fromisoformat(checkin["created_at"])
    except (KeyError, TypeError, ValueError):
        at = None
    if checkin.get("method") == "scan":
        if writer != booking.get("booked_by"):
            return ("pool_checkin_not_yours", {})
        day = at.astimezone(LOCAL).date().isoformat() if at is not None and at.tzinfo is not None else ""
        if not code_matches(resource, day, str(checkin.get("code") or "")):
            return ("pool_checkin_code", {})
    elif not (staff or writer in (resource.get("keepers") or [])):
        return ("pool_checkin_not_keeper", {})
    if at is None or at.tzinfo is None or not checkin_open(booking, resource, at):
        return ("pool_checkin_window", {"minutes": resource["grace_minutes"]})
    return None


def code_matches(resource: Doc, day: str, code: str) -> bool:
    """`code` is the venue's code of `day` (YYYY-MM-DD, China time), as its resource's hashes say (pages.js checks
    a scanned code the same way offline)."""
    expected = next((h["hash"] for h in resource.get("code_hashes") or [] if h.get("date") == day), None)
    return expected is not None and hmac.compare_digest(code_hash(code), str(expected))


def checkin_open(booking: Doc, resource: Doc, at: dt.datetime) -> bool:
    """A check-in counts from `CHECKIN_EARLY` before the booking starts until its grace period ends."""
    start = dt.datetime.fromisoformat(booking["slot_start"])
    return start - CHECKIN_EARLY <= at <= start + dt.timedelta(minutes=resource["grace_minutes"])


def no_show_due(booking: Doc, resource: Doc, now: dt.datetime) -> bool:
    """A confirmed booking's grace period is over (the caller knows nobody checked in)."""
    return booking.get("status") == "confirmed" and booking["group"] == booking["_id"] and \
        dt.datetime.fromisoformat(booking["slot_start"]) + dt.timedelta(minutes=resource["grace_minutes"]) <= now


# ---------------------------------------------------------------- use measured: the idle rate and its flags

@dataclass(frozen=True)
class Month:
    """One resource's month: usable = open - blocked; idle = 1 - used / usable. Hours."""

    month: str  # YYYY-MM
    open: int
    blocked: int
    used: int
    no_show: int
    never_booked: int

    @property
    def usable(self) -> int:
        return self.open - self.blocked

    @property
    def idle(self) -> float | None:
        # One division, correctly rounded: 3 idle hours of 10 is 0.3 exactly, not flagged as more than IDLE_FLAG
        # (1 - 7 / 10 is 0.30000000000000004).
        return None if self.usable <= 0 else (self.usable - self.used) / self.usable


def _days(month: str) -> Iterator[dt.date]:
    day = dt.date.fromisoformat(month + "-01")
    while day.strftime("%Y-%m") == month:
        yield day
        day += dt.timedelta(days=1)


def month_of(resource: Doc, month: str, slots: dict[str, str]) -> Month:
    """A month's hours by what became of them. `slots`: the month's booked slots, by hour ("YYYYMMDDHH"), as
    "used" (its booking was checked in), "no_show" or "booked" (held, not used: awaiting, or no check-in yet).
    Only open, unblocked hours count: a booking outside them (made before a blackout) is not use of open time."""
    opened = blocked = used = no_show = never = 0
    for day in _days(month):
        open_today, blocked_today = open_hours_on(resource, day), blocked_hours_on(resource, day)
        for hour in open_today:
            opened += 1
            if hour in blocked_today:
                blocked += 1
                continue
            what = slots.get(f"{day:%Y%m%d}{hour:02d}")
            used += what == "used"
            no_show += what == "no_show"
            never += what is None
    return Month(month, opened, blocked, used, no_show, never)


def flagged(months: list[Month]) -> bool:
    """Idle more than `IDLE_FLAG` in each of the last `IDLE_MONTHS` months (oldest first)."""
    last = months[-IDLE_MONTHS:]
    return len(last) == IDLE_MONTHS and all(m.idle is not None and m.idle > IDLE_FLAG for m in last)


def suggestion(resource: Doc, months: list[Month]) -> str:
    """What the secretary might do about an idle resource (an i18n key): most idle hours never booked and the
    rules let few book it: open it to other groups; mostly no-shows: confirm bookings with the keeper; else
    its hours do not fit when people want it: change them."""
    never = sum(m.never_booked for m in months)
    no_show = sum(m.no_show for m in months)
    if no_show > never:
        return "pool_suggest_approval"
    if set(resource["who_may_book"]) != {"resident", "volunteer", "grid_worker", "secretary"}:
        return "pool_suggest_open"
    return "pool_suggest_hours"


# ---------------------------------------------------------------- a resource as its keeper describes it

RESOURCE_NUMBERS = {  # field: (least, most) a resource's form accepts
    "capacity": (1, 10000), "book_ahead_days": (1, 365), "max_hours": (1, 24), "grace_minutes": (0, 240)}


def parse_blackouts(text: str) -> tuple[list[Doc], list[int]]:
    """A blackout per line as people type it: "2026-12-05 9-12 检修" (date, hours from-to, why, optional).
    The records, and the numbers (from 1) of the lines that are not one."""
    records: list[Doc] = []
    bad: list[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.replace("–", "-").split(maxsplit=2)
        if not parts:
            continue
        try:
            day = dt.date.fromisoformat(parts[0])
            start, end = (int(h) for h in parts[1].split("-"))
        except (IndexError, ValueError):
            bad.append(number)
            continue
        if not 0 <= start < end <= 24:
            bad.append(number)
            continue
        records.append({"date": day.isoformat(), "from_hour": start, "to_hour": end,
                        **({"reason": parts[2].strip()[:100]} if len(parts) > 2 and parts[2].strip() else {})})
    return records, bad


def blackouts_text(resource: Doc) -> str:
    """The blackouts as the form shows them again (parse_blackouts reads it back)."""
    return "\n".join(f"{b['date']} {b['from_hour']}-{b['to_hour']}" + (f" {b['reason']}" if b.get("reason") else "")
                     for b in resource.get("blackouts") or [])


KEEPERS_MAX = 10


def resource_problems(values: Doc, kinds: tuple[str, ...], owners: tuple[str, ...], bookers: tuple[str, ...],
                      keepers: Iterable[str] | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """What is wrong with a resource as typed (field, message key, params), every field checked; none: it may be
    stored. `kinds`, `owners`, `bookers`: the declared vocabularies (declaration.RESOURCE_KINDS …); `keepers`: whom
    the secretary may name its keepers (None: the keepers are not being set)."""
    problems: list[tuple[str, str, dict[str, Any]]] = []
    if keepers is not None:
        chosen = values.get("keepers") or []
        if len(chosen) > KEEPERS_MAX or not set(chosen) <= set(keepers):
            problems.append(("keepers", "pool_form_keepers", {"max": KEEPERS_MAX}))
    for name, most in (("name", 100), ("place", 200)):
        if not 1 <= len(str(values.get(name) or "").strip()) <= most:
            problems.append((name, "pool_form_text", {"max": most}))
    if values.get("kind") not in kinds:
        problems.append(("kind", "pool_form_choice", {}))
    if values.get("owner_kind") not in owners:
        problems.append(("owner_kind", "pool_form_choice", {}))
    for name, (least, most) in RESOURCE_NUMBERS.items():
        number = values.get(name)
        if not isinstance(number, int) or isinstance(number, bool) or not least <= number <= most:
            problems.append((name, "pool_form_number", {"min": least, "max": most}))
    hours = values.get("open_hours") or []
    if not hours:
        problems.append(("open_hours", "pool_form_no_hours", {}))
    elif not all(isinstance(h.get("opens"), int) and isinstance(h.get("closes"), int)
                 and 0 <= h["opens"] < h["closes"] <= 24 for h in hours):
        problems.append(("open_hours", "pool_form_hours", {}))
    if values.get("blackout_lines"):
        problems.append(("blackouts", "pool_form_blackouts", {"lines": ", ".join(map(str, values["blackout_lines"]))}))
    who = values.get("who_may_book") or []
    if not who or any(w not in bookers for w in who):
        problems.append(("who_may_book", "pool_form_who", {}))
    return problems
