"""The utilisation board's kept months (issue 17 item 3, server/services/pool_months.py): after a first count and
after every kind of change (cancelled, no-show, checked in late across a month's end, a slot or a check-in
deleted, new bookings), and with two catch-ups at once, each resource's kept month is exactly what its slots and
check-ins say when read directly; none of them is listed by place."""

from __future__ import annotations

import datetime as dt
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from server.domain import pool as rules
from server.services import pool_months
from server.store import views
from server.store.couch import Couch, get_or_none

Doc = dict[str, Any]
C1, STREET = "community:c1", "street:s"
MONTHS = ["2026-10", "2026-11", "2026-12", "2027-01"]
STATES = ("confirmed", "requested", "no_show", "cancelled", "declined")


def venue(key: str) -> Doc:
    return {"_id": f"resource:{key}", "type": "resource", "street": STREET, "community": C1, "name": key}


def booking(resource: Doc, start: dt.datetime, hours: int, status: str) -> list[Doc]:
    first = rules.slot_id(resource["_id"], start)
    return [{"_id": rules.slot_id(resource["_id"], s), "type": "booking", "street": STREET, "community": C1,
             "resource": resource["_id"], "slot_start": s.isoformat(), "group": first, "hours": hours, "people": 2,
             "status": status, "booked_by": "user:v", "created_at": start.isoformat()}
            for s in rules.slots_of(start, hours)]


def checkin(first: Doc) -> Doc:
    return {"_id": rules.checkin_id(first["_id"]), "type": "checkin", "street": STREET, "community": C1,
            "resource": first["resource"], "booking": first["_id"], "method": "keeper", "created_by": "user:k",
            "created_at": first["slot_start"]}


def direct(couch: Couch, resources: list[Doc]) -> dict[str, dict[str, dict[str, str]]]:
    """Each resource's months read from its slots and check-ins (what the kept months must equal), empty ones left
    out."""
    read = {r["_id"]: {m: pool_months.slot_uses(couch, r, [m]) for m in MONTHS} for r in resources}
    return {r: {m: uses for m, uses in months.items() if uses} for r, months in read.items()}


def kept(couch: Couch, resources: list[Doc]) -> dict[str, dict[str, dict[str, str]]]:
    found = pool_months.months_of(couch, resources, MONTHS)
    return {r["_id"]: {m: uses for m, uses in found.get(r["_id"], {}).items() if uses} for r in resources}


def test_kept_months_are_what_the_slots_and_check_ins_say_after_every_change(couch: Couch) -> None:
    rng = random.Random(17)
    hall, room = venue("hall"), venue("room")
    for doc in (hall, room):
        couch.main.save(doc)
    groups: list[Doc] = []  # each booking's first slot
    taken: set[str] = set()
    for _ in range(40):
        resource = rng.choice((hall, room))
        start = dt.datetime(2026, rng.randint(10, 12), rng.randint(1, 28), rng.randint(8, 18), tzinfo=rules.LOCAL)
        docs = booking(resource, start, rng.randint(1, 3), rng.choice(STATES))
        if taken & {d["_id"] for d in docs}:
            continue
        taken |= {d["_id"] for d in docs}
        for doc in docs:
            couch.main.save(doc)
        groups.append(docs[0])
    # Evening of 30 November into 1 December: its check-in is named by November's hour, its use lies in December.
    late = booking(hall, dt.datetime(2026, 11, 30, 23, tzinfo=rules.LOCAL), 2, "confirmed")
    for doc in late:
        couch.main.save(doc)
    for first in rng.sample(groups, 10):
        couch.main.save(checkin(first))
    assert pool_months.catch_up(couch) > 0  # the first run counts every resource's months
    assert kept(couch, [hall, room]) == direct(couch, [hall, room])
    assert kept(couch, [hall])[hall["_id"]]["2026-12"]["2026120100"] == "booked"

    couch.main.save(checkin(late[0]))  # checked in late, alone: December's hour becomes used
    assert pool_months.catch_up(couch) == 1
    assert kept(couch, [hall])[hall["_id"]]["2026-12"]["2026120100"] == "used"
    for first in rng.sample(groups, 8):
        current = couch.main.get(first["_id"])
        couch.main.save({**current, "status": rng.choice(("cancelled", "no_show", "confirmed"))})
    gone = couch.main.get(groups[0]["_id"])
    couch.main.delete(gone)
    old_checkin = next(c for c in (get_or_none(couch.main, rules.checkin_id(g["_id"])) for g in groups[1:]) if c)
    couch.main.delete(old_checkin)
    for doc in booking(room, dt.datetime(2027, 1, 4, 9, tzinfo=rules.LOCAL), 3, "confirmed"):
        couch.main.save(doc)
    with ThreadPoolExecutor(2) as two:  # two processes' clocks at once
        list(two.map(lambda _: pool_months.catch_up(couch), range(2)))
    assert kept(couch, [hall, room]) == direct(couch, [hall, room])
    assert pool_months.catch_up(couch) == 0  # nothing changed since
    # Read by their ids alone, so never listed by place: no row each in every build of `rows`.
    for type_name in views.READ_BY_ID:
        assert couch.main.query("linli/by_place", key=[C1, type_name], reduce="false", as_list=True) == []
    assert len(couch.main.query("linli/by_place", key=[C1, "resource"], reduce="false", as_list=True)) == 2


def test_a_month_whose_slots_are_gone_is_no_longer_kept_by_a_catch_up_or_a_rebuild(couch: Couch) -> None:
    """Its last slot deleted, a kept month is dropped, by a catch-up and by a rebuild (taken when more than
    REBUILD_ABOVE changed): not left as it was."""
    hall = venue("hall")
    couch.main.save(hall)
    docs = booking(hall, dt.datetime(2026, 11, 3, 9, tzinfo=rules.LOCAL), 2, "confirmed")
    for doc in docs:
        couch.main.save(doc)
    pool_months.catch_up(couch)
    assert kept(couch, [hall]) == {hall["_id"]: {"2026-11": {"2026110309": "booked", "2026110310": "booked"}}}
    couch.main.delete(couch.main.get(docs[0]["_id"]))
    pool_months.catch_up(couch)
    assert kept(couch, [hall]) == {hall["_id"]: {"2026-11": {"2026110310": "booked"}}}
    couch.main.delete(couch.main.get(docs[1]["_id"]))
    pool_months.catch_up(couch)
    assert get_or_none(couch.main, pool_months.month_id(hall["_id"], "2026-11")) is None
    couch.main.save({k: v for k, v in docs[1].items() if k != "_rev"})
    pool_months.catch_up(couch)
    assert kept(couch, [hall]) == {hall["_id"]: {"2026-11": {"2026110310": "booked"}}}
    current = couch.main.get(docs[1]["_id"])
    couch.main.save({**current, "status": "cancelled"})
    pool_months.rebuild(couch)
    assert get_or_none(couch.main, pool_months.month_id(hall["_id"], "2026-11")) is None
