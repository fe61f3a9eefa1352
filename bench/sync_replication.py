"""The sync gateway under load: initial sync, live fan-out, memory per live client.

    .venv/bin/python bench/sync_replication.py [--docs 10000] [--clients 500]

Starts its own pouchdb-server and `linli serve` in a temporary folder and prints one JSON line:
(a) a grid worker's initial sync of `--docs` documents through the gateway (their database also
holds another grid's documents, which the gateway filters out) against the reference: PouchDB
replicating the same documents straight from a database that holds only them; (b) `--clients`
live PouchDB replicas (one volunteer's small scope each), one document written: p50/p95/max time
until every replica has it; (c) the gateway process's memory per connected live client.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.config import PROJECT_ROOT, load_settings  # noqa: E402
from server.couch import bulk_save, connect  # noqa: E402
from server.embedded_couch import EmbeddedCouch, free_port  # noqa: E402
from tests.sync_harness import G1, G2, household, login, resident, seed, serve, stop  # noqa: E402

NODE_BENCH = PROJECT_ROOT / "pwa" / "tests" / "sync_bench.mjs"


def node(config: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(["node", str(NODE_BENCH), json.dumps(config)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT)


def initial_ms(url: str, cookie: str | None = None, csrf: str | None = None) -> float:
    process = node({"mode": "initial", "url": url, "cookie": cookie, "csrfToken": csrf})
    out, _ = process.communicate(timeout=600)
    return json.loads(out)["ms"]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


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
        served = serve(couch_server.url, settings, free_port())
        try:
            cookie, csrf = login(served.url, "wangge01")
            reference_ms = initial_ms(couch_server.url + "reference_main")
            gateway_ms = initial_ms(served.sync_url, cookie, csrf)
            volunteer_cookie, volunteer_csrf = login(served.url, "zhiyuan01")
            idle_kib = rss_kib(served.process.pid)
            clients = node({"mode": "live", "url": served.sync_url, "cookie": volunteer_cookie,
                            "csrfToken": volunteer_csrf, "clients": args.clients, "doc_id": "household:c1-g1-h999"})
            assert json.loads(clients.stdout.readline())["ready"] == args.clients
            connected_kib = rss_kib(served.process.pid)
            clients.stdin.write("go\n")
            clients.stdin.flush()
            bulk_save(couch.main, [household(G1, 999, volunteers=["user:zhiyuan01"])])
            started = time.perf_counter()
            latencies = json.loads(clients.stdout.readline())["latencies_ms"]
            wall = time.perf_counter() - started
            clients.wait(60)
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
        "live_p50_ms": round(percentile(latencies, 0.5)),
        "live_p95_ms": round(percentile(latencies, 0.95)),
        "live_max_ms": round(max(latencies)),
        "live_wall_seconds": round(wall, 2),
        "memory_per_live_client_kib": round((connected_kib - idle_kib) / args.clients, 1),
    }))


if __name__ == "__main__":
    main()
