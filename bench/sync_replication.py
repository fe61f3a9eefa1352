"""The sync gateway under load: initial sync, live fan-out, memory per live client.

    .venv/bin/python bench/sync_replication.py [--docs 10000] [--clients 500] [--rounds 3]

Starts its own pouchdb-server and `linli serve` in a temporary folder and prints one JSON line:
(a) a grid worker's initial sync of `--docs` documents through the gateway (their database also
holds another grid's documents, which the gateway filters out) against the reference: PouchDB
replicating the same documents straight from a database that holds only them. Both on the same
pouchdb-server, one warm-up round each (discarded), then `--rounds` rounds interleaved, alternating which
side goes first (bench/measure.py); each gateway run on a freshly started `linli serve` (a second run in
the same process would find the first one's revisions in its cache, sync/revisions.py), each after its
background indexes are built; every run must bring exactly the grid's documents;
(b) `--clients` live clients, each a distinct grid worker of the grid with its own device token,
caught up and waiting in a longpoll `_changes?include_docs=true` (raw HTTP readers in this
process's asyncio: 500 PouchDB replicas in one Node process measured Node more than the gateway),
one document written: p50/p95/max time until each client has it, in `--rounds` rounds (a new document each),
medians and spread; (c) the gateway process's memory per connected live client (first round). Every wait is
bounded: a stuck step fails the run instead of hanging it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import compare, expect, load_average, spread  # noqa: E402
from crypto.keys import new_key  # noqa: E402
from server.domain.declaration import Role  # noqa: E402
from server.security import accounts  # noqa: E402
from server.store.config import PROJECT_ROOT, load_settings  # noqa: E402
from server.store.couch import bulk_save, connect  # noqa: E402
from server.store.embedded_couch import EmbeddedCouch, free_port  # noqa: E402
from sync.auth import new_device_token  # noqa: E402
from tests.sync_harness import C1, G1, G2, STREET, household, login, resident, seed, serve, stop  # noqa: E402

NODE_BENCH = PROJECT_ROOT / "pwa" / "tests" / "sync_bench.mjs"
STEP_TIMEOUT_S = 300


def node(config: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(["node", str(NODE_BENCH), json.dumps(config)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT)


def answer(process: subprocess.Popen[str], timeout: float = STEP_TIMEOUT_S) -> Any:
    """The next JSON line the Node side prints, or a failure after `timeout` seconds."""
    assert process.stdout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            process.kill()
            raise TimeoutError(f"the Node side said nothing for {timeout} s")
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"the Node side exited ({process.wait()})")
    return json.loads(line)


def initial_seconds(url: str, expected: int, **auth: str) -> float:
    """One PouchDB replica's initial sync from `url`, in seconds; it must bring exactly `expected` documents."""
    process = node({"url": url, **auth})
    try:
        result = answer(process)
    finally:
        process.wait(10)
    expect("documents replicated", result["docs"], expected)
    return result["ms"] / 1000


def indexes_built(url: str) -> None:
    """Wait until `linli serve` has built its background indexes, so that no run shares pouchdb-server with them."""
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while not httpx2.get(url + "healthz", timeout=30).json()["parts"]["views"]["all"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"linli serve's indexes not built in {STEP_TIMEOUT_S} s")
        time.sleep(0.5)


def through_fresh_gateway(couch_url: str, settings: Any, expected: int) -> float:
    """The grid worker's initial sync through a `linli serve` started for it: no revision cached yet."""
    served = serve(couch_url, settings, free_port(), patience=STEP_TIMEOUT_S)
    try:
        indexes_built(served.url)
        cookie, csrf = login(served.url, "wangge01")
        return initial_seconds(served.sync_url, expected, cookie=cookie, csrfToken=csrf)
    finally:
        stop(served)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def live_workers(couch: Any, count: int) -> list[str]:
    """`count` grid workers of grid 1, each with a device token: distinct principals, as real phones are."""
    users, token_docs, tokens = [], [], []
    now = dt.datetime.now(dt.UTC)
    for i in range(count):
        user = accounts.make_user(f"live{i:04d}", f"网格员{i}", [Role.GRID_WORKER], STREET, "unused",
                                  communities=[C1], grids=[G1])
        token, token_doc = new_device_token(user["_id"], "bench", now)
        users.append(user)
        token_docs.append(token_doc)
        tokens.append(token)
    for start in range(0, count, 500):
        bulk_save(couch.accounts, users[start:start + 500] + token_docs[start:start + 500])
    return tokens


async def _wait_for(http: httpx2.AsyncClient, url: str, token: str, doc_id: str, caught_up: asyncio.Event) -> float:
    """When the change of doc_id reaches this client's longpoll (`caught_up` set once it knows where it is)."""
    headers = {"Authorization": f"Bearer {token}"}
    since = (await http.get(url, headers=headers)).json()["update_seq"]
    caught_up.set()
    while True:
        answer = (await http.get(url + "/_changes", headers=headers, params={
            "feed": "longpoll", "since": since, "include_docs": "true", "timeout": "120000"})).json()
        if any(row["id"] == doc_id and row.get("doc") for row in answer["results"]):
            return time.perf_counter()
        since = answer["last_seq"]


async def live(served: Any, tokens: list[str], doc_id: str,
               write: Callable[[], object]) -> tuple[int, list[float], float]:
    """Memory with every client waiting, each client's latency (ms) for one written change, and the wall time."""
    limits = httpx2.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(STEP_TIMEOUT_S), limits=limits) as http:
        caught_up = [asyncio.Event() for _ in tokens]
        waiting = [asyncio.create_task(_wait_for(http, served.sync_url, token, doc_id, ready))
                   for token, ready in zip(tokens, caught_up, strict=True)]
        # Every client knows its update_seq before the write (on a loaded machine some take long to ask: one that
        # asked after the write would wait forever), then a moment for the last longpolls to reach the gateway.
        await asyncio.wait_for(asyncio.gather(*(ready.wait() for ready in caught_up)), STEP_TIMEOUT_S)
        await asyncio.sleep(5)
        assert not any(task.done() for task in waiting), [task.exception() for task in waiting if task.done()]
        connected_kib = rss_kib(served.process.pid)
        started = time.perf_counter()
        await asyncio.to_thread(write)
        arrivals = await asyncio.wait_for(asyncio.gather(*waiting), STEP_TIMEOUT_S)
    return connected_kib, [(t - started) * 1000 for t in arrivals], max(arrivals) - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=10_000, help="documents in the grid worker's replica")
    parser.add_argument("--clients", type=int, default=500, help="live clients")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="linli-bench-") as tmp:
        couch_server = EmbeddedCouch(Path(tmp) / "couch").start()
        os.environ.update({"LINLI_DATA_DIR": tmp, "COUCHDB_URL": couch_server.url, "LINLI_DB_PREFIX": "bench_"})
        settings = dataclasses.replace(load_settings(), master_keys=(new_key(),))  # serve() hands it on
        couch = connect(settings, couch_server.url)
        base = seed(couch, households_per_grid=1)
        grid_docs = [d for n in range(2, args.docs // 2 + 1) for d in (household(G1, n), resident(G1, n))]
        other_grid = [d for n in range(2, args.docs // 10) for d in (household(G2, n),)]
        for start in range(0, len(grid_docs) + len(other_grid), 1000):
            bulk_save(couch.main, (grid_docs + other_grid)[start:start + 1000])
        mine = [d for d in base + grid_docs if d.get("grid") == G1 or d["type"] in ("street", "community")]
        reference = couch.server.create("reference_main")
        for start in range(0, len(mine), 1000):
            bulk_save(reference, [dict(d) for d in mine[start:start + 1000]])
        initial = compare(lambda: through_fresh_gateway(couch_server.url, settings, len(mine)),
                          lambda: initial_seconds(couch_server.url + "reference_main", len(mine)),
                          rounds=args.rounds, digits=2)
        print(json.dumps({"initial_sync": initial}), file=sys.stderr, flush=True)  # kept if the live part fails
        tokens = live_workers(couch, args.clients)
        served = serve(couch_server.url, settings, free_port(), patience=STEP_TIMEOUT_S)
        try:
            indexes_built(served.url)
            idle_kib = rss_kib(served.process.pid)
            rounds = []
            for n in range(args.rounds):
                live_doc = {**household(G1, 1), "_id": f"household:c1-g1-live{n}"}  # an id nobody has yet
                rounds.append(asyncio.run(live(served, tokens, live_doc["_id"],
                                               lambda doc=live_doc: bulk_save(couch.main, [doc]))))
        finally:
            try:
                stop(served)
            except subprocess.TimeoutExpired:  # longpolls still open on a loaded machine
                served.process.kill()
            couch_server.stop()
    connected_kib = rounds[0][0]
    print(json.dumps({
        "bench": "sync_replication",
        "replica_docs": len(mine),
        "database_docs": len(base) + len(grid_docs) + len(other_grid),
        "initial_sync_seconds": initial["ours"],
        "reference_direct_seconds": initial["reference"],
        "initial_ratio": initial["ratio"],
        "live_clients": args.clients,
        "live_client_kind": "longpoll _changes readers (Python asyncio), one device token each",
        "live_p50_ms": spread([percentile(latencies, 0.5) for _, latencies, _ in rounds], 0),
        "live_p95_ms": spread([percentile(latencies, 0.95) for _, latencies, _ in rounds], 0),
        "live_max_ms": spread([max(latencies) for _, latencies, _ in rounds], 0),
        "live_wall_seconds": spread([wall for _, _, wall in rounds], 2),
        "memory_per_live_client_kib": round((connected_kib - idle_kib) / args.clients, 1),
        "load_average": load_average(),
    }))


if __name__ == "__main__":
    main()
