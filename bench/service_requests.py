"""A street's year of service requests: load N requests, time the dashboard and Open311 against raw rows.

    .venv/bin/python bench/service_requests.py [--requests 1000000] [--queries 400] [--concurrency 8] [--keep-in FOLDER]

Starts its own pouchdb-server in a temporary folder, loads the demo street (the pilot's grids, 5 households each,
no history), then N synthetic service requests spread over a year across its 20 grids and 10 categories (states,
response and close times, ratings drawn like a busy real desk: the plan's Shanghai platform closed 97.3%; those left
open past a deadline escalated, as the year's minute sweeps would have done), written through `_bulk_docs` in
batches after `domain.validate`. With `--keep-in FOLDER` the stack is kept there, and a later run given it skips the
demo and the load and finds the indexes built: a year at 1,000,000 requests is loaded and indexed once.
Prints one JSON line:
- the time pouchdb-server takes to index, after the bulk load, the `figures_source` view, then to count the
  dashboard's aggregates from it (`figures_cells.catch_up`: one pass, grid by grid, with no checkpoint yet),
  and, apart, the raw-row and Open311 views; the first SLA sweep (escalating the requests whose deadlines passed
  since the synthetic year's end) and the catch-up after it, before anything is timed; then the incremental
  catch-up after `--changes` requests change state (closed, reopened) through the changes feed;
Timed measures run in 3 interleaved rounds and report medians (a shared machine's load weighs on both sides).
- the dashboard page (`GET /dashboard`, a community's last twelve months with its KPIs, charts, backlog and
  grids; the administrator's street) p50 and p95 over `--pages` loads, against the same figures computed over
  raw rows (`server/services/dashboard.py` streaming one `request_stats` row per request, street, 4 communities
  and 20 grids, with its peak Python memory) in the same run: the ratio street page p95 / raw rows (lower is
  better); every round's figures with their median, min and max under `rounds`;
- Open311 `GET /requests.json` (last 90 days, a status and a service_code filter) per second, `--concurrency`
  clients in a process of their own (bench/http_load.py) asking the served app at once, with its p95 and the rate
  of one client alone: the same question again and again, as city systems poll (answered from the list kept since
  the last change of a request, category or department: server/web/kept_answers.py), and apart with every
  question a new one (`http_load --distinct`: each list made anew); against `GET /services.json` (no request
  data) asked alike in the same run, and against the same list over raw rows (every request's `request_stats` row
  streamed and filtered; its answer must be the list's, request for request): the ratio one client's list time /
  raw rows;
- the rate of creating requests through the full `service_requests.create` path (validation,
  dispatch by map position, SLA deadlines), on a sample.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import httpx2
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.measure import spread  # noqa: E402
from bench.stack import embedded_stack, served, wait_for_view  # noqa: E402
from server.domain.declaration import MAIN_DB, validate  # noqa: E402
from server.domain.request_states import DEADLINES, OPEN_STATES  # noqa: E402
from server.security import accounts  # noqa: E402
from server.security.firewall import Firewall  # noqa: E402
from server.services import dashboard, demo, figures_cells  # noqa: E402
from server.services import service_requests as sr  # noqa: E402
from server.store.couch import Couch, bulk_save, get_many, ids_of_type  # noqa: E402
from server.web import open311  # noqa: E402

BATCH = 2000
PASSWORD = "bench-password"
NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
ROUNDS = 3
LOADED = "loaded.json"  # written in a --keep-in folder once its requests are all stored


def synthetic(grids: list[dict[str, Any]], categories: list[dict[str, Any]], rng: random.Random) -> dict[str, Any]:
    grid, category = rng.choice(grids), rng.choice(categories)
    created = NOW - dt.timedelta(seconds=rng.randrange(365 * 86400))
    age_h = (NOW - created).total_seconds() / 3600
    respond_h = rng.lognormvariate(1.5, 1.0)
    close_h = respond_h + rng.lognormvariate(3.2, 0.8)
    doc: dict[str, Any] = {
        "_id": f"service_request:{uuid.UUID(int=rng.getrandbits(128)).hex}", "type": "service_request",
        "street": grid["street"], "community": grid["community"], "grid": grid["_id"], "category": category["code"],
        "description": "synthetic", "status": "received", "department": category["department"],
        "owner": "user:wangge01", "source": "web",
        "due_respond": (created + dt.timedelta(days=1)).isoformat(),
        "due_close": (created + dt.timedelta(days=3)).isoformat(),
        "history": [{"at": created.isoformat(), "by": "user:x", "action": "created", "status": "received"}],
        "created_by": "user:x", "created_at": created.isoformat(), "location": grid["location"],
    }
    if respond_h < age_h:
        doc.update(status="acknowledged", acknowledged_at=(created + dt.timedelta(hours=respond_h)).isoformat())
    if close_h < age_h and rng.random() < 0.973:
        doc.update(status="closed", resolved_at=(created + dt.timedelta(hours=close_h)).isoformat(),
                   closed_at=(created + dt.timedelta(hours=close_h + 2)).isoformat())
        if rng.random() < 0.6:
            doc["rating"] = rng.choices((1, 2, 3, 4, 5), (2, 3, 10, 35, 50))[0]
    else:
        escalated_at = created + dt.timedelta(days=1 if "acknowledged_at" not in doc else 3)
        if escalated_at < NOW:  # what the year's minute sweeps did as it went (their first run has little to do)
            doc["status"] = "escalated"
            doc["history"].append({"at": escalated_at.isoformat(), "by": "system", "action": "overdue",
                                   "status": "escalated", "note": "respond" if "acknowledged_at" not in doc
                                   else "close"})
            doc["warned"] = [name for deadline, done, name in DEADLINES  # warned of, or passed unwarned
                             if done not in doc and dt.datetime.fromisoformat(doc[deadline]) <= NOW]
    return doc


def load(couch: Any, n: int, progress: bool) -> float:
    grids = [r["doc"] for r in couch.main.all(startkey="grid:", endkey="grid:\ufff0", as_list=True)]
    categories = list(sr.catalogue(couch, demo.STREET_ID).values())
    rng = random.Random(2025)
    started = time.perf_counter()
    with tqdm(total=n, unit="request", disable=not progress, desc="requests") as bar:
        for start in range(0, n, BATCH):
            batch = [synthetic(grids, categories, rng) for _ in range(min(BATCH, n - start))]
            for doc in batch:
                validate(doc)
            failed = [r for r in bulk_save(couch.main, batch) if r.error]
            if failed:
                raise RuntimeError(f"{failed[0].id}: {failed[0].error}")
            bar.update(len(batch))
    return time.perf_counter() - started


def loaded_before(folder: Path | None, n: int) -> float | None:
    """The load's time in seconds if `folder` already holds a street loaded with n requests (None: load it now)."""
    record = folder / LOADED if folder else None
    if record is None or not record.exists():
        if folder and any(folder.iterdir()):
            raise SystemExit(f"{folder} holds something else than a finished load: give an empty folder")
        return None
    loaded = json.loads(record.read_text())
    if loaded["requests"] != n:
        raise SystemExit(f"{folder} holds {loaded['requests']} requests, not {n}")
    return float(loaded["load_seconds"])


def timed_dashboard(couch: Any, communities: list[str]) -> tuple[float, float, dict[str, Any]]:
    tracemalloc.start()
    started = time.perf_counter()
    tables = dashboard.compute(dashboard.rows(couch, communities))
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak / 2**20, tables["street"][demo.STREET_ID].summary()


def stream_only(couch: Any, communities: list[str]) -> float:
    started = time.perf_counter()
    for _ in dashboard.rows(couch, communities):
        pass
    return time.perf_counter() - started


def raw_rows_list(couch: Couch, communities: list[str], now: dt.datetime) -> list[str]:
    """The Open311 list the benchmark asks for (open street-lamp requests of the last 90 days, the newest page),
    over raw rows: every request's `request_stats` row streamed and filtered (all synthetic requests are public)."""
    since = now - dt.timedelta(days=open311.DEFAULT_DAYS)
    found = [(dt.datetime.fromisoformat(r["value"][3]), r["key"][3]) for r in dashboard.view_rows(couch, communities)
             if r["value"][0] == "street_lamp" and r["value"][2] in OPEN_STATES
             and dt.datetime.fromisoformat(r["value"][3]) >= since]
    return [i.split(":", 1)[1] for _, i in sorted(found, reverse=True)[:open311.PAGE_SIZE]]


def signed_in(client: Any, username: str) -> None:
    form = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    client.post("/login", data={"username": username, "password": PASSWORD, "next": "/", "csrf_token": token})


def page_seconds(client: Any, path: str, params: dict[str, str], n: int) -> tuple[float, float]:
    """p50 and p95 of n loads of a page (the first, which may wait for nothing now, included)."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(path, params=params)
        times.append(time.perf_counter() - started)
        if response.status_code != 200 or response.url.path != path:  # not a sign-in or "preparing" page
            raise RuntimeError(f"{path}: HTTP {response.status_code} at {response.url.path}")
    times.sort()
    return times[len(times) // 2], times[min(n - 1, int(0.95 * n))]


def served_load(url: str, concurrency: int, n: int, distinct: bool = False) -> dict[str, Any]:
    """bench/http_load.py's figures for `url`, its clients in a process of their own; `distinct`: no two requests
    the same question (no answer kept by the server is used)."""
    answer = subprocess.run([sys.executable, "-m", "bench.http_load", url, "--concurrency", str(concurrency),
                             "--requests", str(n), *(["--distinct"] if distinct else [])],
                            cwd=ROOT, capture_output=True, text=True, check=False)
    if answer.returncode != 0:
        raise RuntimeError(f"bench.http_load {url}: {answer.stderr.strip()[-500:]}")
    return json.loads(answer.stdout)


def incremental_catch_up(couch: Any, n: int) -> float:
    """Change n requests' state (open ones closed, closed ones reopened), then time the aggregates' catch-up."""
    ids = [r["id"] for r in couch.main.all(startkey="service_request:", endkey="service_request:\ufff0",
                                            include_docs="false", limit=n, as_list=True)]
    docs = list(get_many(couch.main, ids).values())
    for doc in docs:
        if doc["status"] == "closed":
            doc.update(status="reopened")
            doc.pop("resolved_at", None)
        else:
            doc.update(status="closed", resolved_at=NOW.isoformat())
    assert not [r for r in bulk_save(couch.main, docs) if r.error]
    started = time.perf_counter()
    figures_cells.catch_up(couch)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=400, help="Open311 lists asked per round")
    parser.add_argument("--concurrency", type=int, default=8, help="Open311 clients asking at once")
    parser.add_argument("--creates", type=int, default=300)
    parser.add_argument("--pages", type=int, default=40, help="dashboard page loads timed (p50, p95)")
    parser.add_argument("--changes", type=int, default=1000, help="requests changed before the incremental catch-up")
    parser.add_argument("--keep-in", type=Path, help="a folder to keep the loaded street and its indexes in: a later "
                        "run given it (and the same --requests) times the pages again without loading anew")
    args = parser.parse_args()
    progress = sys.stderr.isatty()
    from server.web.app import create_app

    load_at_start = os.getloadavg()
    if args.keep_in:
        args.keep_in.mkdir(parents=True, exist_ok=True)
    load_seconds = loaded_before(args.keep_in, args.requests)
    loaded_earlier = load_seconds is not None
    with embedded_stack(kept_in=args.keep_in) as (settings, couch, server):
        if load_seconds is None:
            # The pilot's 20 grids and catalogue with few households and no year of history: the requests are the
            # synthetic ones below, and sealing a pilot's households would take most of a run on a loaded machine.
            demo.load(couch, Firewall.open(settings, couch), password_hash=accounts.hash_password(PASSWORD),
                      size=demo.DemoSize(households_per_grid=5), history=False)
            load_seconds = load(couch, args.requests, progress)
            if args.keep_in:
                (args.keep_in / LOADED).write_text(json.dumps({"requests": args.requests,
                                                               "load_seconds": load_seconds}))
        communities = ids_of_type(couch.main, "community")
        database_url = f"{server.url.rstrip('/')}/{settings.db_name(MAIN_DB)}"
        started = time.perf_counter()
        wait_for_view(database_url, "figures_source")
        figures_index_seconds = time.perf_counter() - started
        started = time.perf_counter()
        figures_cells.catch_up(couch)
        cells_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for view in ("request_stats", "public_requests"):
            wait_for_view(database_url, view)
        # The other views are not built here (each is a pass over every document on pouchdb-server): the pages'
        # first loads below build what they use, before anything is timed.
        index_seconds = time.perf_counter() - started
        # The app's first minute sweep escalates every synthetic request left open past its deadline (a one-off of a
        # bulk load): run here, apart, with the aggregates' catch-up after it, so the pages are timed in steady state.
        started = time.perf_counter()
        escalated = sr.sweep(couch, demo.STREET_ID, dt.datetime.now(dt.UTC)).escalated
        sweep_seconds = time.perf_counter() - started
        started = time.perf_counter()
        figures_cells.catch_up(couch)
        sweep_catch_up_seconds = time.perf_counter() - started
        year = {"from": (NOW - dt.timedelta(days=330)).strftime("%Y-%m"), "to": NOW.strftime("%Y-%m")}
        rounds: dict[str, list[float]] = {}
        # Sessions as long as a working day (the shared stack's last a minute): a loaded machine's page loop outlasts
        # a minute, and the pages after it would be the sign-in page (page_seconds refuses those now). Served as
        # `linli serve` serves it, over real HTTP: the Open311 clients run in a process of their own.
        app = create_app(dataclasses.replace(settings, session_max_age=8 * 3600), couch)
        lists: list[dict[str, Any]] = []
        with served(app) as url, httpx2.Client(base_url=url, follow_redirects=True, timeout=600) as client:
            signed_in(client, "admin")
            while client.get("/dashboard").status_code != 200:  # the app's first minute sweep may hold it up
                time.sleep(1)
            open311_list = f"{url}/open311/v2/requests.json?status=open&service_code=street_lamp"
            # Interleaved rounds (each measure once per round, medians reported): a neighbour's load on a
            # shared machine then weighs on the page and on its raw-row reference alike.
            for _ in range(ROUNDS):
                dash_seconds, dash_mib, street = timed_dashboard(couch, communities)
                rounds.setdefault("raw", []).append(dash_seconds)
                rounds.setdefault("stream", []).append(stream_only(couch, communities))
                signed_in(client, "shuji1")
                p50, p95 = page_seconds(client, "/dashboard", {"area": "community:c1", **year}, args.pages)
                rounds.setdefault("community_p50", []).append(p50)
                rounds.setdefault("community_p95", []).append(p95)
                signed_in(client, "admin")
                street_page = client.get("/dashboard", params={"area": demo.STREET_ID, **year})
                p50, p95 = page_seconds(client, "/dashboard", {"area": demo.STREET_ID, **year}, args.pages)
                rounds.setdefault("street_p50", []).append(p50)
                rounds.setdefault("street_p95", []).append(p95)
                lists.append(served_load(open311_list, args.concurrency, args.queries))
                rounds.setdefault("lists", []).append(lists[-1]["queries_per_second"])
                rounds.setdefault("lists_p95", []).append(lists[-1]["p95_s"])
                rounds.setdefault("lists_one_client", []).append(
                    served_load(open311_list, 1, args.queries // 4)["queries_per_second"])
                distinct = served_load(open311_list, args.concurrency, args.queries, distinct=True)
                rounds.setdefault("lists_distinct", []).append(distinct["queries_per_second"])
                rounds.setdefault("lists_distinct_p95", []).append(distinct["p95_s"])
                rounds.setdefault("services", []).append(served_load(
                    f"{url}/open311/v2/services.json", args.concurrency, args.queries)["queries_per_second"])
                started = time.perf_counter()
                raw_list = raw_rows_list(couch, communities, dt.datetime.now(dt.UTC))
                rounds.setdefault("raw_list", []).append(time.perf_counter() - started)
                listed = [r["service_request_id"] for r in client.get(open311_list).json()]
                if listed != raw_list:  # the same question answered alike, or the ratio means nothing
                    raise RuntimeError(f"Open311's list ({len(listed)}) differs from raw rows' ({len(raw_list)})")
        median = {name: statistics.median(values) for name, values in rounds.items()}
        changed_seconds = incremental_catch_up(couch, args.changes)
        started = time.perf_counter()
        rng = random.Random(7)
        for _ in range(args.creates):
            sr.create(couch, "user:bench", sr.NewRequest(
                street=demo.STREET_ID, category="street_lamp", description="bench",
                location={"lat": 30.51 + rng.random() * 0.03, "lon": 114.344 + rng.random() * 0.016}), NOW)
        creates = args.creates / (time.perf_counter() - started)
    print(json.dumps({
        "bench": "service_requests", "requests": args.requests, "load_seconds": round(load_seconds, 1),
        "load_requests_per_second": round(args.requests / load_seconds), "loaded_in_an_earlier_run": loaded_earlier,
        "figures_source_index_seconds": round(figures_index_seconds, 1),
        "figures_cells_first_count_seconds": round(cells_seconds, 1),
        "figures_catch_up_after_changes": {"changed": args.changes, "seconds": round(changed_seconds, 2)},
        "raw_and_open311_index_seconds": round(index_seconds, 1),
        "first_sweep": {"escalated": escalated, "seconds": round(sweep_seconds, 1),
                        "figures_catch_up_seconds": round(sweep_catch_up_seconds, 1)},
        "dashboard_page_community_p50_p95": [round(median["community_p50"], 3), round(median["community_p95"], 3)],
        "dashboard_page_street_p50_p95": [round(median["street_p50"], 3), round(median["street_p95"], 3)],
        "street_page_checked": {"path": street_page.url.path, "bytes": len(street_page.content)},
        "raw_rows_dashboard_seconds": round(median["raw"], 2), "raw_rows_dashboard_peak_mib": round(dash_mib, 1),
        "street_page_p95_over_raw_rows": round(median["street_p95"] / median["raw"], 3),
        "raw_rows_streaming_only_seconds": round(median["stream"], 2),
        "medians_of": f"{ROUNDS} interleaved rounds",
        "rounds": {name: spread(values) for name, values in rounds.items()},
        "street_summary": {k: street[k] for k in ("requests", "open", "response_median_h", "close_p90_h",
                                                   "closed_on_time_share", "satisfaction")},
        "open311_list_queries_per_second": round(median["lists"], 1),
        "open311_list_p95_s": round(median["lists_p95"], 3),
        "open311_list_one_client_queries_per_second": round(median["lists_one_client"], 1),
        "open311_list_answer": {k: lists[-1][k] for k in ("answer_bytes", "concurrency", "requests")},
        "open311_list_distinct_queries_per_second": round(median["lists_distinct"], 1),
        "open311_list_distinct_p95_s": round(median["lists_distinct_p95"], 3),
        "open311_reference": "GET /services.json on the same server, as many clients",
        "open311_services_per_second": round(median["services"], 1),
        "open311_list_over_services": round(median["lists"] / median["services"], 3),
        "open311_raw_rows_list_seconds": round(median["raw_list"], 2),
        "open311_one_list_over_raw_rows": round(1 / median["lists_one_client"] / median["raw_list"], 4),
        "open311_lists_compared": len(listed),
        "create_path_requests_per_second": round(creates, 1),
        "machine_load_1_5_15_min": {"start": [round(x, 1) for x in load_at_start],
                                    "end": [round(x, 1) for x in os.getloadavg()]},
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
