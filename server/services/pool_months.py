"""The utilisation board's figures kept as documents (issue 17 item 3): per resource and month a `pool_month`, the
month's booked hours by what became of them (`pool.slot_uses`: "used", "no_show", "booked"). The board reads a
community's resources' twelve months as that many small documents, however many bookings a year brings, instead of
every slot and check-in of the year (bench/pool.py). A month keeps hours, not totals: the idle rate is worked out
at each board from the resource's open hours and blackouts as they are then (`pool.month_of`), so editing those
needs no recount.

Kept from CouchDB's changes feed after a checkpoint (`_local/linli-pool-months`, server/store/feed.py), as the
dashboard's cells are (figures_cells.py): a slot's and a check-in's ids name the resource and the hour
(`pool.slot_id`, `pool.checkin_id`), so every booking or check-in changed since names the months to count again,
whatever wrote it: a page, a phone's booking or check-in synced days later, the no-show sweep, a deletion (its
tombstone keeps its id). A check-in names its booking's first hour; the booking may run into the next month, so it
names both. A month is counted again from its slots and check-ins (`slot_uses`), never adjusted.

Idempotent, and right with several processes: a month is read (its revision) before its slots are and written
against that revision; of two writers the second gets a conflict and counts again. The checkpoint moves only once
every month named since it is written. First run (no checkpoint), or far behind after a bulk load: one pass,
resource by resource.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from server.domain import pool as rules
from server.store import feed, sweeps
from server.store.couch import Couch, bulk_save, docs_of_type, get_many, get_or_none

Doc = dict[str, Any]

CHECKPOINT_ID = "_local/linli-pool-months"
TYPE = "pool_month"
SOURCES = ("booking:", "checkin:")  # the id prefixes whose changes name months
REBUILD_ABOVE = 20_000  # bookings and check-ins changed past which one pass over every resource costs less
LONGEST = dt.timedelta(hours=23)  # a booking's last hour after its first (max_hours is at most 24)


def month_id(resource_id: str, month: str) -> str:
    return f"{TYPE}:{resource_id.removeprefix('resource:')}:{month}"


def named_months(doc_id: str) -> set[tuple[str, str]]:
    """The (resource id, YYYY-MM) a changed slot or check-in may alter: its hour's month; a check-in's booking may
    run into the next month. Nothing for an id that names no hour."""
    kind, _, rest = doc_id.partition(":")
    key, _, stamp = rest.rpartition(":")
    try:
        hour = dt.datetime.strptime(stamp, "%Y%m%d%H")
    except ValueError:
        return set()
    hours = (hour, hour + LONGEST) if kind == "checkin" else (hour,)
    return {(f"resource:{key}", f"{h:%Y-%m}") for h in hours}


def months_of(couch: Couch, resources: Iterable[Doc], months: list[str]) -> dict[str, dict[str, dict[str, str]]]:
    """Each resource's kept months (resource id → month → hour → use), in one request; a month with nothing booked
    is not kept, so absent. The caller catches up first (`catch_up`)."""
    ids = [month_id(r["_id"], m) for r in resources for m in months]
    kept = get_many(couch.main, ids)
    out: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)
    for doc in kept.values():
        out[doc["resource"]][doc["month"]] = doc["uses"]
    return out


def slot_uses(couch: Couch, resource: Doc, months: list[str]) -> dict[str, str]:
    """Every booked slot of a resource in `months` (YYYY-MM, oldest first, consecutive), by hour ("YYYYMMDDHH"):
    "used" (its booking was checked in), "no_show", or "booked" (held, not used). Two ranges of the database's own
    index by id, since a slot's id and its check-in's name the resource and the hour (`slot_id`, `checkin_id`): no
    view row per slot to build over a year of bookings; check-ins without their bodies."""
    key = resource["_id"].removeprefix("resource:")
    first = dt.date.fromisoformat(months[0] + "-01")
    last = months[-1].replace("-", "") + "99"
    rows = couch.main.all(startkey=f"booking:{key}:{first:%Y%m%d}00", endkey=f"booking:{key}:{last}",
                          include_docs="true", as_list=True)
    since = first - dt.timedelta(days=1)  # a booking begun the evening before runs into the first month
    checked = {row["id"].rsplit(":", 1)[1] for row in couch.main.all(
        startkey=f"checkin:{key}:{since:%Y%m%d}00", endkey=f"checkin:{key}:{last}", include_docs="false",
        as_list=True)}
    uses: dict[str, str] = {}
    for row in rows:
        slot = row.get("doc") or {}
        hour, status = row["id"].rsplit(":", 1)[1], slot.get("status")
        if str(slot.get("group", "")).rsplit(":", 1)[-1] in checked:
            uses[hour] = "used"
        elif status == "no_show":
            uses[hour] = "no_show"
        elif status in rules.ACTIVE:
            uses[hour] = "booked"
    return uses


# ---------------------------------------------------------------- keeping up

def catch_up(couch: Couch) -> int:
    """Count again every month a booking or check-in changed since the checkpoint names; then move the
    checkpoint. How many changed documents were taken in."""
    since = feed.changed_since(couch.main, CHECKPOINT_ID, SOURCES, REBUILD_ABOVE)
    if since.changed is None:
        return rebuild(couch)
    named = {pair for doc_id in since.changed for pair in named_months(doc_id)}
    resources = get_many(couch.main, {resource_id for resource_id, _ in named})
    # A resource deleted since has no board to show them on: nothing to count.
    due = sorted(pair for pair in named if pair[0] in resources)
    kept = get_many(couch.main, [month_id(*pair) for pair in due])  # their revisions, read before their slots
    months: dict[str, list[str]] = defaultdict(list)
    for resource_id, month in due:
        months[resource_id].append(month)
    counted = []
    for resource_id, named_here in months.items():  # one read per resource, its first month named to its last (sorted)
        uses = _uses_by_month(couch, resources[resource_id], _span(named_here[0], named_here[-1]))
        counted += [_month(resources[resource_id], m, uses.get(m, {})) for m in named_here]
    changed = [d for d in counted if d["uses"] != kept.get(d["_id"], {}).get("uses", {})]
    if _keep(couch, [d for d in changed if d["uses"]], [d["_id"] for d in changed if not d["uses"]],
             {i: d["_rev"] for i, d in kept.items()}):  # a month left over keeps the checkpoint where it was
        feed.move(couch.main, CHECKPOINT_ID, since.checkpoint, since.last_seq)
    return len(since.changed)


def rebuild(couch: Couch) -> int:
    """Every resource's months counted again, resource by resource (their slots and check-ins in two id ranges
    each); the checkpoint set to the database's sequence read before. How many booked hours were counted."""
    seq = feed.current_seq(couch.main)
    kept = {r["id"]: r["value"]["rev"] for r in couch.main.all(
        startkey=f"{TYPE}:", endkey=f"{TYPE}:\ufff0", include_docs="false", as_list=True)}
    docs, taken = [], 0
    for resource in docs_of_type(couch.main, "resource"):
        booked = _booked_months(couch, resource)
        by_month = _uses_by_month(couch, resource, booked) if booked else {}
        taken += sum(len(uses) for uses in by_month.values())
        docs += [_month(resource, month, uses) for month, uses in by_month.items()]
    written = {d["_id"] for d in docs}
    # Months kept for slots since deleted or cancelled, or of a resource deleted: gone.
    if _keep(couch, docs, [i for i in kept if i not in written], kept):
        feed.move(couch.main, CHECKPOINT_ID, get_or_none(couch.main, CHECKPOINT_ID), seq)
    return taken


# ---------------------------------------------------------------- helpers

def _keep(couch: Couch, counted: list[Doc], gone: list[str], revs: dict[str, str]) -> bool:
    """Write the months counted and delete those `gone`, each against the revision read before its slots
    (`revs`); one another process wrote meanwhile is counted again alone (feed.write_counted). True once every
    one is written."""
    docs = [{**d, "_rev": revs[d["_id"]]} if d["_id"] in revs else d for d in counted] + [
        {"_id": i, "_rev": revs[i], "_deleted": True} for i in gone]
    failed = [r.id for start in range(0, len(docs), 500) for r in bulk_save(couch.main, docs[start:start + 500])
              if r.error]
    return len(sweeps.each("pool months", failed, lambda doc_id: _recount_id(couch, doc_id))) == len(failed)


def _booked_months(couch: Couch, resource: Doc) -> list[str]:
    """Every month from the resource's first booked slot to its last (ids only), oldest first."""
    key = resource["_id"].removeprefix("resource:")
    low, high = f"booking:{key}:", f"booking:{key}:\ufff0"
    ends = [couch.main.all(startkey=start, endkey=end, include_docs="false", limit=1, descending=descending,
                           as_list=True) for start, end, descending in ((low, high, "false"), (high, low, "true"))]
    if not ends[0]:
        return []
    first, last = (end[0]["id"].rsplit(":", 1)[1] for end in ends)
    return _span(f"{first[:4]}-{first[4:6]}", f"{last[:4]}-{last[4:6]}")


def _span(first: str, last: str) -> list[str]:
    """The months (YYYY-MM) from `first` to `last`, both included."""
    month, months = dt.date.fromisoformat(first + "-01"), []
    while f"{month:%Y-%m}" <= last:
        months.append(f"{month:%Y-%m}")
        month = (month + dt.timedelta(days=31)).replace(day=1)
    return months


def _uses_by_month(couch: Couch, resource: Doc, months: list[str]) -> dict[str, dict[str, str]]:
    """`slot_uses` of consecutive months in one read, by month; months with nothing booked left out."""
    by_month: dict[str, dict[str, str]] = defaultdict(dict)
    for hour, use in slot_uses(couch, resource, months).items():
        by_month[f"{hour[:4]}-{hour[4:6]}"][hour] = use
    return by_month


def _month(resource: Doc, month: str, uses: dict[str, str]) -> Doc:
    return {"_id": month_id(resource["_id"], month), "type": TYPE, "street": resource["street"],
            "community": resource["community"], "resource": resource["_id"], "month": month, "uses": uses}


def _recount_id(couch: Couch, doc_id: str) -> str:
    """A kept month counted again alone from its slots and check-ins (feed.write_counted: against the revision read
    before them); one with nothing booked, or of a resource since deleted, is not kept (the board reads a missing
    month as empty)."""
    key, month = doc_id.removeprefix(f"{TYPE}:").rsplit(":", 1)
    resource = get_or_none(couch.main, f"resource:{key}")

    def count() -> Doc | None:
        uses = slot_uses(couch, resource, [month]) if resource else {}
        return _month(resource, month, uses) if resource and uses else None
    return feed.write_counted(couch.main, doc_id, count)
