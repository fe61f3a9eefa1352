"""The figures' aggregates (issue 18 item 1) against a brute-force recount of the same random requests and
alerts, on the real pouchdb-server: counts exact for any area, facet and month range, month by month and the
backlog by department; percentiles within the bucket the page states; still so after requests change state,
reopen, move department, get rated or are deleted, and the aggregates catch up from the changes feed (twice at
once, as two processes would). And the KPI catalogue's rules."""

from __future__ import annotations

import datetime as dt
import itertools
import secrets
import threading
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from server.domain import figures as domain
from server.domain.figures import KPI_BY_CODE, MIN_CASES_TO_RANK, ranked
from server.services import figures, figures_cells
from server.services.figures import Scope
from server.store.couch import Couch, bulk_save, get_many

CST = dt.timezone(dt.timedelta(hours=8))
START = dt.datetime(2025, 12, 25, tzinfo=dt.UTC)  # around a year's end and month ends in UTC and UTC+8
_streets = itertools.count()
# Minutes after START of the instants around which a month changes in UTC+8 but not yet in UTC (and back).
EDGE_MINUTES = [int((dt.datetime(2026, m, 1, tzinfo=CST) - START).total_seconds() // 60) + d
                for m in (1, 2) for d in (-1, 0, 1, 60 * 7)]
times = st.one_of(st.integers(0, 60 * 24 * 70), st.sampled_from(EDGE_MINUTES))
hours = st.one_of(st.none(), st.floats(0, 900, allow_nan=False), st.sampled_from(domain.HOUR_EDGES))

request_strategy = st.fixed_dictionaries({
    "minutes": times,
    "grid": st.sampled_from(["g1", "g2"]),
    "department": st.sampled_from(["department:a", "department:b", None]),
    "category": st.sampled_from(["lamp", "water"]),
    "ack_hours": hours,
    "close_hours": hours,
    "rating": st.one_of(st.none(), st.integers(1, 5)),
    "respond_days": st.integers(0, 3),
    "close_days": st.integers(0, 6),
    # Closed (after resolved) this many hours later, or only resolved; and confirmed fixed by the reporter.
    "closed_after_hours": st.one_of(st.none(), st.sampled_from([0, 5, 24 * 20])),
    "confirmed": st.booleans(),
})
# What happens to a request after the aggregates first counted it.
change_strategy = st.sampled_from(["none", "reopen", "close", "department", "rate", "delete", "confirm"])
# Mediation cases (the mediation-success KPI: server/services/mediation.py), counted in the month they were opened.
mediation_strategy = st.fixed_dictionaries({
    "minutes": times, "grid": st.sampled_from(["g1", "g2"]),
    "status": st.sampled_from(["open", "agreement", "no_agreement", "withdrawn", "kept", "broken"])})
# What a case's status becomes at its next step (a follow-up after an agreement, an outcome after sessions).
NEXT_STATUS = {"open": "agreement", "agreement": "broken", "no_agreement": "no_agreement", "withdrawn": "withdrawn",
               "kept": "kept", "broken": "broken"}
alert_strategy = st.fixed_dictionaries({
    "minutes": times, "kind": st.sampled_from(["sos", "fall", "device_silent"]),
    "answered": st.booleans(), "escalated": st.booleans()})


def _seconds(hours: float) -> dt.timedelta:
    """Whole seconds, as far as deadlines go: CouchDB's JavaScript reads times to the millisecond."""
    return dt.timedelta(seconds=round(hours * 3600))


def _docs(street: str, requests: list[dict[str, Any]], alerts: list[dict[str, Any]],
          mediations: list[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    docs = [{"_id": f"grid:{street}-{g}", "type": "grid", "street": street, "community": f"{street}-c"}
            for g in ("g1", "g2")]
    for i, r in enumerate(requests):
        made = START + dt.timedelta(minutes=r["minutes"])
        doc = {"_id": f"service_request:{street}-{i}", "type": "service_request", "street": street,
               "community": f"{street}-c", "grid": f"grid:{street}-{r['grid']}", "category": r["category"],
               "created_at": made.isoformat(), "status": "received",
               "due_respond": (made + dt.timedelta(days=r["respond_days"])).isoformat(),
               "due_close": (made + dt.timedelta(days=r["close_days"])).astimezone(CST).isoformat()}
        if r["department"]:
            doc["department"] = r["department"]
        if r["ack_hours"] is not None:
            doc["acknowledged_at"] = (made + _seconds(r["ack_hours"])).isoformat()
            doc["status"] = "acknowledged"
        if r["close_hours"] is not None:
            doc["resolved_at"] = (made + _seconds(r["close_hours"])).isoformat()
            doc["status"] = "resolved"
            if r.get("closed_after_hours", 0) is not None:
                doc["closed_at"] = (made + _seconds(r["close_hours"] + r.get("closed_after_hours", 0))).isoformat()
                doc["status"] = "closed"
                if r.get("confirmed"):
                    doc["confirmed_at"] = doc["closed_at"]
        if r["rating"]:
            doc["rating"] = r["rating"]
        docs.append(doc)
    for i, a in enumerate(alerts):
        raised = START + dt.timedelta(minutes=a["minutes"])
        doc = {"_id": f"alert:{street}-{i}", "type": "alert", "street": street, "community": f"{street}-c",
               "grid": f"grid:{street}-g1", "kind": a["kind"], "status": "raised", "raised_at": raised.isoformat()}
        if a["answered"]:
            doc["acknowledged_at"] = (raised + dt.timedelta(minutes=5)).isoformat()
        if a["escalated"]:
            doc["escalated_at"] = (raised + dt.timedelta(minutes=30)).isoformat()
        docs.append(doc)
    docs += [{"_id": f"mediation:{street}-{i}", "type": "mediation", "street": street, "community": f"{street}-c",
              "grid": f"grid:{street}-{m['grid']}", "status": m["status"],
              "created_at": (START + dt.timedelta(minutes=m["minutes"])).isoformat()} for i, m in enumerate(mediations)]
    return docs


def _brute(docs: list[dict[str, Any]], area: str, facet: str, first: str, last: str) -> dict[str, Any]:
    """The counts and raw times recomputed document by document, the slow obvious way."""
    counts = dict.fromkeys(domain.COUNTS, 0)
    response: list[float] = []
    close: list[float] = []
    for d in docs:
        if d["type"] in ("grid", "mediation") or area not in (d["street"], d["community"], d["grid"]):
            continue
        at = dt.datetime.fromisoformat(d.get("created_at") or d["raised_at"])
        if not first <= at.astimezone(CST).strftime("%Y-%m") <= last:
            continue
        if d["type"] == "alert":
            if facet == "" and d["kind"] in domain.SAFETY_ALERT_KINDS:
                counts["alerts"] += 1
                counts["alerts_answered"] += "acknowledged_at" in d and "escalated_at" not in d
            continue
        if facet and facet not in (f"department:{d.get('department', '')}", f"category:{d['category']}"):
            continue
        counts["requests"] += 1
        if "acknowledged_at" in d:
            ack = dt.datetime.fromisoformat(d["acknowledged_at"])
            counts["responded"] += 1
            counts["responded_on_time"] += ack <= dt.datetime.fromisoformat(d["due_respond"])
            response.append((ack - at).total_seconds() / 3600)
        if d["status"] in ("resolved", "closed"):
            done = dt.datetime.fromisoformat(d["resolved_at"])
            counts["closed"] += 1
            counts["closed_on_time"] += done <= dt.datetime.fromisoformat(d["due_close"])
            close.append((done - at).total_seconds() / 3600)
        else:
            counts["open"] += 1
        if d.get("rating"):
            counts["rated"] += 1
            counts["rating_sum"] += d["rating"]
            counts["satisfied"] += d["rating"] >= 4
    return {"counts": counts, "response": response, "close": close}


def _nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _changed(doc: dict[str, Any], change: str) -> dict[str, Any] | None:
    """The request after a change made once its month was counted (None: deleted), as the server would write it."""
    if change == "none" or doc["type"] not in ("service_request", "mediation"):
        return doc
    if doc["type"] == "mediation":
        return None if change == "delete" else doc | {"status": NEXT_STATUS[doc["status"]]}
    made = dt.datetime.fromisoformat(doc["created_at"])
    if change == "delete":
        return None
    if change == "reopen":  # "not fixed": open again, its close time gone
        doc = {k: v for k, v in doc.items() if k not in ("resolved_at", "closed_at", "confirmed_at")} | {
            "status": "reopened"}
    elif change == "close":  # closed (again), maybe in another month than before
        doc = {k: v for k, v in doc.items() if k != "confirmed_at"} | {
            "status": "closed", "resolved_at": (made + dt.timedelta(hours=50)).isoformat(),
            "closed_at": (made + dt.timedelta(days=40)).isoformat()}
    elif change == "confirm" and doc["status"] == "closed":
        doc = doc | {"confirmed_at": doc["closed_at"]}
    elif change == "department":
        doc = doc | {"department": "department:b" if doc.get("department") != "department:b" else "department:a"}
    elif change == "rate":
        doc = doc | {"rating": 5 if doc.get("rating") != 5 else 2}
    return doc


def _catch_up_twice_at_once(couch: Couch) -> None:
    """Two catch-ups over the same changes at the same time, as two processes' minute parts would run."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            figures_cells.catch_up(couch)
        except BaseException as error:  # noqa: BLE001 - reported below, in the test's thread
            errors.append(error)
    both = [threading.Thread(target=run) for _ in range(2)]
    for t in both:
        t.start()
    for t in both:
        t.join(60)
    assert not errors, errors


def _assert_figures(couch: Couch, docs: list[dict[str, Any]], area_id: str, facet: str, first: str,
                    last: str) -> None:
    got = figures.totals(couch, Scope(area_id, facet, first, last))
    want = _brute(docs, area_id, facet, first, last)
    assert got.counts == want["counts"]
    for which in ("response", "close"):
        for q in (0.5, 0.9):
            bounds = got.percentile(which, q)
            if not want[which]:
                assert bounds is None
                continue
            low, high = bounds
            true = _nearest_rank(want[which], q)
            assert (low < true or low == 0) and (high is None or true <= high), (which, q, true, bounds)
    monthly = figures.by_month(couch, Scope(area_id, facet, first, last))
    assert [m for m, _ in monthly] == figures.months(first, last)
    for month, c in monthly:
        assert c.counts == _brute(docs, area_id, facet, month, month)["counts"]
    closures = [d for d in docs if d["type"] == "service_request" and d["status"] == "closed"
                and area_id in (d["street"], d["community"], d["grid"])
                and first <= dt.datetime.fromisoformat(d["closed_at"]).astimezone(CST).strftime("%Y-%m") <= last]
    kept = figures.read(couch, area_id, figures.months(first, last))
    assert figures_cells.added(kept.cells, "closures") == (len(closures), sum("confirmed_at" in d for d in closures))
    cases = [d["status"] for d in docs if d["type"] == "mediation"
             and area_id in (d["street"], d["community"], d["grid"])
             and first <= dt.datetime.fromisoformat(d["created_at"]).astimezone(CST).strftime("%Y-%m") <= last]
    assert figures_cells.added(kept.cells, "mediations") == (
        sum(s in ("agreement", "no_agreement", "kept", "broken") for s in cases),
        sum(s in ("agreement", "kept") for s in cases))
    open_by_department = {}
    for d in docs:
        if d["type"] == "service_request" and d["status"] not in ("resolved", "closed") and area_id in (
                d["street"], d["grid"], d["community"]):
            key = d.get("department", "")
            open_by_department[key] = open_by_department.get(key, 0) + 1
    assert figures.backlog(couch, area_id) == dict(sorted(open_by_department.items(), key=lambda kv: (-kv[1], kv[0])))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=st.lists(request_strategy, max_size=40), alerts=st.lists(alert_strategy, max_size=8),
       mediations=st.lists(mediation_strategy, max_size=6),
       changes=st.lists(change_strategy, max_size=40),
       first=st.sampled_from(["2025-12", "2026-01", "2026-02"]), span=st.integers(0, 3),
       facet=st.sampled_from(["", "department:department:a", "department:", "category:water"]),
       area=st.sampled_from(["street", "c", "g1", "g2"]))
@example(requests=[{"minutes": EDGE_MINUTES[1], "grid": "g1", "department": None, "category": "lamp",
                    "ack_hours": 24, "close_hours": 72, "rating": 4, "respond_days": 1, "close_days": 3}],
         alerts=[], mediations=[{"minutes": EDGE_MINUTES[1], "grid": "g1", "status": "agreement"},
                                 {"minutes": 60, "grid": "g2", "status": "open"}],
         changes=[], first="2026-01", span=0, facet="", area="street")  # a month's first minute, edges
@example(requests=[{"minutes": 60, "grid": "g1", "department": "department:a", "category": "lamp",
                    "ack_hours": 2, "close_hours": 30, "rating": 4, "respond_days": 1, "close_days": 3}] * 3,
         alerts=[], mediations=[], changes=["reopen", "department", "rate"], first="2025-12", span=1,
         facet="department:department:a",
         area="g1")  # a closed request reopened, one moved to another department, one rated again
@example(requests=[{"minutes": 60, "grid": "g1", "department": "department:a", "category": "lamp", "ack_hours": 2,
                    "close_hours": 30, "rating": None, "respond_days": 1, "close_days": 3, "closed_after_hours": 0,
                    "confirmed": True}] * 3,
         alerts=[], mediations=[], changes=["close", "reopen", "confirm"], first="2025-12", span=0, facet="",
         area="c")  # closures counted in December: one closed again in February, one reopened, one left confirmed
def test_aggregates_equal_a_brute_force_recount_and_percentiles_lie_in_the_stated_bucket(
        couch: Couch, requests: list[dict[str, Any]], alerts: list[dict[str, Any]],
        mediations: list[dict[str, Any]], changes: list[str],
        first: str, span: int, facet: str, area: str) -> None:
    street = f"street:p{next(_streets)}{secrets.token_hex(2)}"  # each example its own street in the one database
    docs = _docs(street, requests, alerts, mediations)
    assert not any(r.error for r in bulk_save(couch.main, docs))
    area_id = street if area == "street" else f"{street}-c" if area == "c" else f"grid:{street}-{area}"
    last = figures.months(first, "2026-12")[span]
    figures_cells.catch_up(couch)
    _assert_figures(couch, docs, area_id, facet, first, last)

    stored = get_many(couch.main, (d["_id"] for d in docs))
    later = [_changed(d, change) for d, change in zip(docs, ["none"] * 2 + changes, strict=False)] + docs[
        2 + len(changes):]
    writes = [{**(d or {"_deleted": True}), "_id": old["_id"], "_rev": stored[old["_id"]]["_rev"]}
              for old, d in zip(docs, later, strict=True) if d != old]
    assert not any(r.error for r in bulk_save(couch.main, writes))
    _catch_up_twice_at_once(couch)
    _assert_figures(couch, [d for d in later if d is not None], area_id, facet, first, last)


def test_a_deleted_request_leaves_its_grid_s_months_and_backlog(couch: Couch) -> None:
    """A tombstone without the request's month (as a phone's deletion may leave it): every month of its grid
    is counted again."""
    street = f"street:d{secrets.token_hex(2)}"
    docs = _docs(street, [{"minutes": 60 * 24 * m, "grid": "g1", "department": "department:a", "category": "lamp",
                           "ack_hours": None, "close_hours": None, "rating": None, "respond_days": 1,
                           "close_days": 3} for m in (0, 40)], [])
    assert not any(r.error for r in bulk_save(couch.main, docs))
    figures_cells.catch_up(couch)
    grid = f"grid:{street}-g1"
    assert figures.backlog(couch, grid) == {"department:a": 2}
    gone = couch.main.get(docs[-1]["_id"])
    couch.main.save({"_id": gone["_id"], "_rev": gone["_rev"], "_deleted": True, "type": "service_request",
                     "grid": grid})
    figures_cells.catch_up(couch)
    assert figures.backlog(couch, grid) == {"department:a": 1}
    assert figures.totals(couch, Scope(grid, "", "2025-12", "2026-03")).counts["requests"] == 1


def test_buckets_cover_every_time_and_their_bounds_contain_it() -> None:
    for hours in (0, 0.25, 0.2500001, 1, 23.9, 24, 24.01, 719, 720, 721, 10_000):
        low, high = domain.bucket_bounds(domain.bucket_of(hours))
        assert (low < hours or low == 0) and (high is None or hours <= high)


def test_a_ranking_leaves_out_places_with_fewer_than_30_cases() -> None:
    places = {"a": (MIN_CASES_TO_RANK, 0.5), "b": (MIN_CASES_TO_RANK - 1, 1.0), "c": (200, 0.9), "d": (40, None)}
    assert ranked(places) == (["c", "a"], ["b", "d"])


def test_a_kpi_divides_by_its_denominator_and_says_nothing_without_one() -> None:
    on_time = KPI_BY_CODE["on_time"]
    assert on_time.value({"closed_on_time": 3, "closed": 4}) == 0.75 and on_time.cases({"closed": 4}) == 4
    assert on_time.value({"closed_on_time": 0, "closed": 0}) is None
    assert KPI_BY_CODE["mediation_success"].value({}) is None  # a source not built yet: no figure, no error
