"""The secretary's utilisation board for a community's resources over a year of bookings (issue 17).

    .venv/bin/python bench/pool.py [--resources 500] [--bookings 300] [--changes 1000] [--repeat 3]

Starts from an empty Linli database on its own pouchdb-server, stores `--resources` venues of one community (open
9-17 every day, a blackout day a month), each with `--bookings` booked hours (slots, one document each) in bookings
of 1-3 hours spread over the past year, four bookings in five checked in (a check-in document), the rest no-shows:
at the defaults about 211,000 documents. Times apart: storing them, building the views the pages need (`rows`:
`by_place`, `pool`), and the first count of the kept months (`pool_months.catch_up` with no checkpoint: every
resource's slots and check-ins read by id ranges). Then times the board (`pool.board`: the catch-up, nothing new,
and each venue's twelve kept months read, idle rates and flags) against reading the same booking and check-in
documents alone (`_all_docs` over their ids, with bodies), the least a report over those documents must do
without kept figures: one warm-up run of each, then `--repeat` interleaved (bench/measure.py); every board must
have every venue, every read every document. Then `--repeat` times: `--changes` slots cancelled (untimed) and the
catch-up that takes them in. Prints one JSON line: medians with spread and their ratio (board / read, lower is
better).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import compare, expect, load_average, spread, timed  # noqa: E402
from bench.stack import embedded_stack  # noqa: E402
from server.domain import pool as rules  # noqa: E402
from server.services import pool, pool_months  # noqa: E402
from server.store.couch import bulk_save  # noqa: E402

STREET, COMMUNITY = "street:bench", "community:bench"
BATCH = 5000
NOW = dt.datetime(2026, 12, 1, 9, tzinfo=rules.LOCAL)


def _store(db, docs: list[dict]) -> None:
    for start in range(0, len(docs), BATCH):
        failed = [r for r in bulk_save(db, docs[start:start + BATCH]) if r.error]
        assert not failed, failed[:3]


def _venues(count: int) -> list[dict]:
    place = {"street": STREET, "community": COMMUNITY}
    return [{"_id": f"resource:b{n:04d}", "type": "resource", **place, "name": f"场地{n:04d}", "kind": "room",
             "owner_kind": "community", "place": "基准路", "capacity": 30,
             "open_hours": [{"weekday": d, "opens": 9, "closes": 17} for d in range(7)],
             "blackouts": [{"date": f"2026-{m:02d}-15", "from_hour": 0, "to_hour": 24, "reason": "检修"}
                           for m in range(1, 12)],
             "who_may_book": ["resident", "volunteer", "grid_worker", "secretary"], "book_ahead_days": 14,
             "max_hours": 3, "approval": False, "grace_minutes": 15, "created_by": "user:s",
             "created_at": (NOW - dt.timedelta(days=366)).isoformat()} for n in range(count)]


def _history(venue: dict, bookings: int, rng: random.Random) -> list[dict]:
    """A year of bookings of one venue, `bookings` booked hours in all: distinct starts, 1-3 hours within its open
    hours."""
    docs, taken = [], set()
    while len(taken) < bookings:
        day = (NOW - dt.timedelta(days=rng.randint(1, 365))).date()
        hours = rng.randint(1, 3)
        start = dt.datetime.combine(day, dt.time(rng.randint(9, 17 - hours)), rules.LOCAL)
        slots = rules.slots_of(start, hours)
        if any(s in taken for s in slots):
            continue
        taken.update(slots)
        first = rules.slot_id(venue["_id"], start)
        came = rng.random() < 0.8
        docs += [{"_id": rules.slot_id(venue["_id"], s), "type": "booking", "street": STREET, "community": COMMUNITY,
                  "resource": venue["_id"], "slot_start": s.isoformat(), "group": first, "hours": hours, "people": 5,
                  "status": "confirmed" if came else "no_show", "booked_by": "user:v",
                  "created_at": (start - dt.timedelta(days=2)).isoformat()} for s in slots]
        if came:
            docs.append({"_id": rules.checkin_id(first), "type": "checkin", "street": STREET, "community": COMMUNITY,
                         "resource": venue["_id"], "booking": first, "method": "keeper", "created_by": "user:k",
                         "created_at": start.isoformat()})
    return docs


def _indexed(db, view: str) -> None:
    """Ask for a view until it answers: building it over a year of 500 venues outlasts one request's timeout
    (10 min on a loaded 2-core machine); the server goes on building it meanwhile."""
    while True:
        try:
            db.query(view, limit=1, as_list=True)
            return
        except requests.exceptions.Timeout:
            print(f"{view}: still indexing", file=sys.stderr, flush=True)


def run(resources: int, bookings: int, changes: int, repeat: int) -> dict:
    rng = random.Random(17)
    with embedded_stack(f"pool_{resources}_") as (_, couch, _):
        venues = _venues(resources)
        _store(couch.main, [{"_id": COMMUNITY, "type": "community", "street": STREET, "community": COMMUNITY,
                             "name": "基准社区"}, *venues])
        history = [doc for venue in venues for doc in _history(venue, bookings, rng)]
        started = time.perf_counter()
        _store(couch.main, history)
        store_seconds = time.perf_counter() - started
        print(f"stored {len(history)} documents in {store_seconds:.0f} s", file=sys.stderr, flush=True)
        ids = [d["_id"] for d in history]
        slots = [d for d in history if d["type"] == "booking"]
        started = time.perf_counter()
        for view in ("linli/pool", "linli/by_place"):  # one physical view (`rows`), indexed before the clock starts
            _indexed(couch.main, view)
        index_seconds = time.perf_counter() - started
        print(f"indexed in {index_seconds:.0f} s", file=sys.stderr, flush=True)
        first_count_seconds, counted = timed(lambda: pool_months.catch_up(couch))
        expect("slots counted into months", counted, len(slots))
        print(f"first count in {first_count_seconds:.0f} s", file=sys.stderr, flush=True)
        flagged: list[int] = []

        def board() -> float:
            seconds, rows = timed(lambda: pool.board(couch, COMMUNITY, NOW))
            expect("venues on the board", len(rows), resources)
            flagged.append(sum(r["flagged"] for r in rows))
            return seconds

        def read() -> float:
            seconds, read = timed(lambda: [r for start in range(0, len(ids), BATCH)
                                           for r in couch.main.all(keys=ids[start:start + BATCH], include_docs="true",
                                                                   as_list=True)])
            expect("documents read", sum(1 for r in read if r.get("doc")), len(ids))
            return seconds

        figures = compare(board, read, rounds=repeat)
        print(f"board {figures['ours']}", file=sys.stderr, flush=True)
        catch_ups = []
        for _ in range(repeat):
            picked = rng.sample(slots, changes)
            current = {d["_id"]: d for d in (r["doc"] for r in couch.main.all(keys=[d["_id"] for d in picked],
                                                                               as_list=True))}
            _store(couch.main, [{**current[d["_id"]], "status": "cancelled"} for d in picked])
            seconds, taken = timed(lambda: pool_months.catch_up(couch))
            expect("changes taken in", taken, changes)
            catch_ups.append(seconds)
        return {"resources": resources, "bookings_per_resource": bookings, "documents": len(history),
                "flagged": flagged[0], "store_seconds": round(store_seconds, 1),
                "index_seconds": round(index_seconds, 2), "first_count_seconds": round(first_count_seconds, 2),
                "board_seconds": figures["ours"], "reference_read_seconds": figures["reference"],
                "ratio": figures["ratio"], "changes": changes, "catch_up_seconds": spread(catch_ups),
                "repeat": repeat, "load_average": load_average()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=500)
    parser.add_argument("--bookings", type=int, default=300)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(run(args.resources, args.bookings, args.changes, args.repeat)), flush=True)


if __name__ == "__main__":
    main()
