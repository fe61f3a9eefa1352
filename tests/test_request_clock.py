"""The minute sweep reads only the requests with something due (issue 18 item 1: at 1,000,000 requests it read all
31,791 open ones whole every minute). The `request_clock` view keys each open request by the time of its next
action; these tests hold it to what the sweep does, on random requests written with any offset and microseconds:
every request the sweep would change by a time is in the view's range for that time (nothing is missed), anything
else there is due within the millisecond the view's `Date` rounds to; and sweeping by the view over a week leaves
every request exactly as sweeping every open request would."""

from __future__ import annotations

import copy
import datetime as dt
import random
from typing import Any

import pytest

from server.domain.declaration import REQUEST_STATES, VERSION_FIELD, validate
from server.domain.request_states import DEADLINES, OPEN_STATES, WARN_BEFORE
from server.services import service_requests as sr
from server.store.couch import Couch, bulk_save, get_many

STREET, OTHER_STREET = "street:s1", "street:s2"
START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
ZONES = [dt.UTC, dt.timezone(dt.timedelta(hours=8)), dt.timezone(dt.timedelta(hours=-5, minutes=-30)),
         dt.timezone(dt.timedelta(hours=14))]


def _at(rng: random.Random, base: dt.datetime, hours: float) -> dt.datetime:
    """A time up to `hours` after base, with microseconds, in a random offset."""
    return (base + dt.timedelta(seconds=rng.uniform(0, hours * 3600))).astimezone(rng.choice(ZONES))


def random_request(rng: random.Random, n: int, *, taken_in: bool = True) -> dict[str, Any]:
    street = STREET if rng.random() < 0.9 else OTHER_STREET
    created = _at(rng, START, 72)
    doc: dict[str, Any] = {
        "_id": f"service_request:r{n}", "type": "service_request", "street": street, "community": "community:c1",
        "grid": "grid:g1", "category": "street_lamp", "description": "灯不亮", "status": rng.choice(REQUEST_STATES),
        "source": "web", "created_by": "user:u1", "created_at": created.isoformat(),
        "history": [{"at": created.isoformat(), "by": "user:u1", "action": "created", "status": "received"}]}
    if not taken_in:
        return {**doc, "source": "offline", "status": "received"}
    respond = _at(rng, created, 30)
    doc.update(due_respond=respond.isoformat(), due_close=_at(rng, respond, 60).isoformat())
    for (_, done, name), chance in zip(DEADLINES, (0.3, 0.15), strict=True):
        if rng.random() < chance:
            doc[done] = _at(rng, created, 40).isoformat()
        if rng.random() < 0.35:
            doc["warned"] = [*doc.get("warned", []), name]
    for department in rng.sample(["department:d1", "department:d2"], rng.randint(0, 2)):
        called = _at(rng, created, 24)
        whistle = {"department": department, "at": called.isoformat(), "due": _at(rng, called, 80).isoformat()}
        if rng.random() < 0.25:
            whistle["arrived_at"] = _at(rng, called, 80).isoformat()
        if rng.random() < 0.2:
            whistle["overdue"] = True
        doc.setdefault("whistles", []).append(whistle)
    validate(doc)
    return doc


def acts_by(doc: dict[str, Any], now: dt.datetime) -> bool:
    """Whether the sweep at `now` would do anything to this request (taking in one made offline counts)."""
    return "due_close" not in doc or sr.advance_clocks(copy.deepcopy(doc), now) != sr.SweepReport()


def action_times(doc: dict[str, Any]) -> list[dt.datetime]:
    """The instants at which something about the request falls due, to try the view exactly there."""
    times = [dt.datetime.fromisoformat(doc[deadline]) - lead for deadline, _, _ in DEADLINES if deadline in doc
             for lead in (WARN_BEFORE, dt.timedelta(0))]
    return times + [dt.datetime.fromisoformat(w["due"]) for w in doc.get("whistles", [])]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_request_the_sweep_would_change_is_in_the_clock_view(couch: Couch, seed: int) -> None:
    rng = random.Random(seed)
    docs = [random_request(rng, n, taken_in=rng.random() > 0.05) for n in range(300)]
    assert not [r for r in bulk_save(couch.main, docs) if r.error]
    mine = [d for d in docs if d["street"] == STREET and d["status"] in OPEN_STATES]
    nows = [START + dt.timedelta(hours=rng.uniform(-24, 240)) for _ in range(10)]
    exact = rng.sample([t for d in mine for t in action_times(d)], 10)
    nows += exact + [t - dt.timedelta(microseconds=1) for t in exact]
    seen: set[str] = set()
    for now in nows:
        due = {d["_id"] for d in sr.due_requests(couch, STREET, now)}
        expected = {d["_id"] for d in mine if acts_by(d, now)}
        assert expected <= due, f"missed at {now}: {sorted(expected - due)}"
        early = [d for d in mine if d["_id"] in due - expected]  # the view counts whole milliseconds
        assert all(acts_by(d, now + dt.timedelta(milliseconds=1)) for d in early), now
        assert all(d["street"] == STREET and d["status"] in OPEN_STATES for d in docs if d["_id"] in due)
        seen |= {what for d in mine if d["_id"] in expected and "due_close" in d for what, count in
                 vars(sr.advance_clocks(copy.deepcopy(d), now)).items() if count and what != "unreadable"}
    # Each kind of action was due somewhere.
    assert seen == {"warned", "escalated", "departments_overdue", "moot_warnings"}
    # Long after, the view holds exactly what is left to do: requests with nothing left have no row.
    later = START + dt.timedelta(days=365)
    due = {d["_id"] for d in sr.due_requests(couch, STREET, later)}
    assert due == {d["_id"] for d in mine if acts_by(d, later)} and len(due) < len(mine)


@pytest.mark.parametrize("seed", [4, 5])
def test_sweeping_by_the_view_equals_sweeping_every_open_request(couch: Couch, seed: int) -> None:
    rng = random.Random(seed)
    docs = [random_request(rng, n) for n in range(200)]
    assert not [r for r in bulk_save(couch.main, docs) if r.error]
    by_hand = {d["_id"]: copy.deepcopy(d) for d in docs if d["street"] == STREET}
    minutes = sorted(START + dt.timedelta(minutes=rng.randrange(-60, 8 * 24 * 60)) for _ in range(25))
    totals = sr.SweepReport()
    for now in minutes:
        report = sr.sweep(couch, STREET, now)
        for doc in by_hand.values():  # what the sweep did before the view: every open request looked at
            if doc["status"] in OPEN_STATES and sr.advance_clocks(doc, now) != sr.SweepReport():
                doc["updated_at"] = now.isoformat()
        for name in ("warned", "escalated", "departments_overdue", "moot_warnings"):
            setattr(totals, name, getattr(totals, name) + getattr(report, name))
    stored = get_many(couch.main, by_hand)
    for doc_id, expected in by_hand.items():
        kept = {k: v for k, v in stored[doc_id].items() if k not in ("_rev", VERSION_FIELD)}  # the store's own
        assert kept == {k: v for k, v in expected.items() if k != "_rev"}, doc_id
    assert totals.warned and totals.escalated and totals.departments_overdue and totals.moot_warnings
