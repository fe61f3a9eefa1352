"""The sync gateway under load: initial sync, live fan-out, memory per live client.

    .venv/bin/python bench/sync_replication.py [--docs 10000] [--clients 500]

Starts its own pouchdb-server and `linli serve` in a temporary folder and prints one JSON line:
(a) a grid worker's initial sync of `--docs` documents through the gateway (their database also
holds another grid's documents, which the gateway filters out) against the reference: PouchDB
replicating the same documents straight from a database that holds only them (once each: a second
gateway run would find the first one's revisions in the gateway's cache, sync/revisions.py);
(b) `--clients` live clients, each a distinct grid worker of the grid with its own device token,
caught up and waiting in a longpoll `_changes?include_docs=true` (raw HTTP readers in this
process's asyncio: 500 PouchDB replicas in one Node process measured Node more than the gateway),
one document written: p50/p95/max time until each client has it; (c) the gateway process's memory
per connected live client. Every wait is bounded: a stuck step fails the run instead of hanging it.
"""

from __future__ import annotations

import argparse
import asyncio
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


def initial_ms(url: str, **auth: str) -> float:
    process = node({"url": url, **auth})
    try:
        return answer(process)["ms"]
    finally:
        process.wait(10)


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


async def _wait_for(http: httpx2.AsyncClient, url: str, token: str, doc_id: str) -> float:
    """When the change of doc_id reaches this client's longpoll."""
    headers = {"Authorization": f"Bearer {token}"}
    since = (await http.get(url, headers=headers)).json()["update_seq"]
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
        waiting = [asyncio.create_task(_wait_for(http, served.sync_url, token, doc_id)) for token in tokens]
        await asyncio.sleep(5 + len(tokens) / 100)  # every longpoll is waiting on the gateway
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="linli-bench-") as tmp:
        couch_server = EmbeddedCouch(Path(tmp) / "couch").start()
        os.environ.update({"LINLI_DATA_DIR": tmp, "COUCHDB_URL": couch_server.url, "LINLI_DB_PREFIX": "bench_"})
        settings = load_settings()
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
        live_doc = {**household(G1, 1), "_id": "household:c1-g1-live"}  # an id nobody has yet
        tokens = live_workers(couch, args.clients)
        served = serve(couch_server.url, settings, free_port())
        try:
            cookie, csrf = login(served.url, "wangge01")
            reference_ms = initial_ms(couch_server.url + "reference_main")
            gateway_ms = initial_ms(served.sync_url, cookie=cookie, csrfToken=csrf)
            idle_kib = rss_kib(served.process.pid)
            connected_kib, latencies, wall = asyncio.run(live(served, tokens, live_doc["_id"],
                                                              lambda: bulk_save(couch.main, [live_doc])))
        finally:
            stop(served)
            couch_server.stop()
    print(json.dumps({
        "bench": "sync_replication",
        "replica_docs": len(mine),
        "database_docs": len(base) + len(grid_docs) + len(other_grid),
        "initial_sync_seconds": round(gateway_ms / 1000, 2),
        "reference_direct_seconds": round(reference_ms / 1000, 2),
        "initial_ratio": round(gateway_ms / reference_ms, 3),
        "live_clients": args.clients,
        "live_client_kind": "longpoll _changes readers (Python asyncio), one device token each",
        "live_p50_ms": round(percentile(latencies, 0.5)),
        "live_p95_ms": round(percentile(latencies, 0.95)),
        "live_max_ms": round(max(latencies)),
        "live_wall_seconds": round(wall, 2),
        "memory_per_live_client_kib": round((connected_kib - idle_kib) / args.clients, 1),
    }))


if __name__ == "__main__":
    main()
