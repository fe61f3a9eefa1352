"""The sync gateway under load: initial sync, live fan-out, memory per live client.

    .venv/bin/python bench/sync_replication.py [--docs 10000] [--clients 2000] [--feeds both] [--rounds 3]
                                               [--wait 60] [--live-only]

Starts its own pouchdb-server and `linli serve` in a temporary folder and prints one JSON line:
(a) a grid worker's initial sync of `--docs` documents through the gateway (their database also
holds another grid's documents, which the gateway filters out) against the reference: PouchDB
replicating the same documents straight from a database that holds only them. Both on the same
pouchdb-server, one warm-up round each (discarded), then `--rounds` rounds interleaved, alternating which
side goes first (bench/measure.py); each gateway run on a freshly started `linli serve` (a second run in
the same process would find the first one's revisions in its cache, sync/revisions.py), each after its
background indexes are built; every run must bring exactly the grid's documents. `--live-only` skips it.
(b) `--clients` live clients, each a distinct grid worker of the grid with its own device token, half
holding a longpoll and half a continuous `_changes?include_docs=true` feed (`--feeds` for one kind only),
waiting on the gateway (its /healthz counts them all), then one document written: the time until each client
has it, p50/p95/max per kind and together. The clients are raw asyncio sockets in this (the bench) process,
never in the gateway's (`linli serve` is a subprocess with its own event loop): tests/live_feeds.py. A
warm-up round (discarded: the gateway's first feeds load every principal), then `--rounds` rounds, a new
document each, each client resuming from the sequence the last round gave it as PouchDB does (a longpoll asks
again on its kept-alive connection, a continuous feed stays open); medians and spreads over rounds.
Every client must get exactly that change, once, within `--wait` seconds, or the run fails.
(c) the gateway process's memory (RSS) idle, with every client connected (first timed round), and per client.
The open-file limit is raised in code for the clients' sockets (the gateway inherits it). Every wait is
bounded: a stuck step fails the run instead of hanging it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
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
from server.store.config import PROJECT_ROOT, load_settings  # noqa: E402
from server.store.couch import bulk_save, connect  # noqa: E402
from server.store.embedded_couch import EmbeddedCouch, free_port  # noqa: E402
from tests.live_feeds import KINDS, Feed, follow, phones_with_tokens, raise_open_files, until_live  # noqa: E402
from tests.sync_harness import G1, G2, household, login, resident, seed, serve, stop  # noqa: E402

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


async def live_round(served: Any, feeds: list[Feed], doc_id: str, write: Callable[[], object],
                     wait_s: float) -> tuple[int, dict[str, list[float]], float]:
    """Every feed connected and waiting, one document written: the gateway's memory with them all connected,
    each kind's latencies (ms) from the write to the change's arrival, and the wall time until the last one."""
    had = [len(feed.received) for feed in feeds]
    connecting = asyncio.Semaphore(200)  # a few hundred ask at a time, as phones do not all at one instant
    tasks = [asyncio.create_task(follow(feed, served.sync_url, {doc_id}, connected=connecting)) for feed in feeds]
    try:
        all_live = asyncio.create_task(until_live(served.url, len(feeds), STEP_TIMEOUT_S))
        await asyncio.wait([all_live, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if not all_live.done():  # a feed ended before the write: its error fails the run
            all_live.cancel()
            next(task for task in tasks if task.done()).result()
            raise RuntimeError("a feed ended before the write")
        all_live.result()
        connected_kib = rss_kib(served.process.pid)
        started = time.perf_counter()
        await asyncio.to_thread(write)
        done, late = await asyncio.wait(tasks, timeout=wait_s)
        if late:
            raise TimeoutError(f"{len(late)} of {len(feeds)} feeds did not get {doc_id} within {wait_s} s")
        for task in done:
            task.result()  # a feed's error fails the run
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    # Every feed got exactly this change, once: nothing lost, nothing sent again from an earlier round.
    expect(f"feeds that got {doc_id} and nothing else", sum(
        feed.received[before:] == [doc_id] for feed, before in zip(feeds, had, strict=True)), len(feeds))
    latencies = {kind: [(f.arrived[doc_id] - started) * 1000 for f in feeds if f.kind == kind] for kind in KINDS}
    return connected_kib, latencies, max(f.arrived[doc_id] for f in feeds) - started


async def live(served: Any, feeds: list[Feed], write_doc: Callable[[int], str], rounds: int,
               wait_s: float) -> list[tuple[int, dict[str, list[float]], float]]:
    """One warm-up round (discarded: the gateway's first feeds load every principal and start its follower),
    then `rounds` rounds, each feed resuming from the sequence the last one gave it (continuous feeds stay open)."""
    results = []
    try:
        for n in range(rounds + 1):
            doc_id = f"household:c1-g1-live{n}"  # an id nobody has yet
            results.append(await live_round(served, feeds, doc_id, lambda n=n: write_doc(n), wait_s))
    finally:
        for feed in feeds:
            feed.close()
    return results[1:]


def figures(values: list[list[float]]) -> dict[str, Any]:
    """p50/p95/max per round, each as the median over rounds with its spread."""
    return {"p50_ms": spread([percentile(v, 0.5) for v in values], 0),
            "p95_ms": spread([percentile(v, 0.95) for v in values], 0),
            "max_ms": spread([max(v) for v in values], 0)}


def initial_sync(couch_server: Any, couch: Any, settings: Any, docs: int, rounds: int) -> dict[str, Any]:
    """(a): the grid worker's initial sync through the gateway against PouchDB straight from pouchdb-server."""
    base = seed(couch, households_per_grid=1)
    grid_docs = [d for n in range(2, docs // 2 + 1) for d in (household(G1, n), resident(G1, n))]
    other_grid = [d for n in range(2, docs // 10) for d in (household(G2, n),)]
    for start in range(0, len(grid_docs) + len(other_grid), 1000):
        bulk_save(couch.main, (grid_docs + other_grid)[start:start + 1000])
    mine = [d for d in base + grid_docs if d.get("grid") == G1 or d["type"] in ("street", "community")]
    reference = couch.server.create("reference_main")
    for start in range(0, len(mine), 1000):
        bulk_save(reference, [dict(d) for d in mine[start:start + 1000]])
    initial = compare(lambda: through_fresh_gateway(couch_server.url, settings, len(mine)),
                      lambda: initial_seconds(couch_server.url + "reference_main", len(mine)),
                      rounds=rounds, digits=2)
    print(json.dumps({"initial_sync": initial}), file=sys.stderr, flush=True)  # kept if the live part fails
    return {"replica_docs": len(mine), "database_docs": len(base) + len(grid_docs) + len(other_grid),
            "initial_sync_seconds": initial["ours"], "reference_direct_seconds": initial["reference"],
            "initial_ratio": initial["ratio"]}


def live_fan_out(couch_server: Any, couch: Any, settings: Any, args: argparse.Namespace) -> dict[str, Any]:
    """(b) and (c): `--clients` live feeds, one change per round, and the gateway's memory per feed."""
    kinds = KINDS if args.feeds == "both" else (args.feeds,)
    feeds = [Feed(token, kinds[i % len(kinds)]) for i, token in enumerate(phones_with_tokens(couch, args.clients))]
    raise_open_files(args.clients + 1024)  # this process's sockets; `linli serve` inherits the limit for its own
    served = serve(couch_server.url, settings, free_port(), patience=STEP_TIMEOUT_S)
    try:
        indexes_built(served.url)
        idle_kib = rss_kib(served.process.pid)

        def write(n: int) -> None:
            bulk_save(couch.main, [{**household(G1, 1), "_id": f"household:c1-g1-live{n}"}])
        rounds = asyncio.run(live(served, feeds, write, args.rounds, args.wait))
    finally:
        try:
            stop(served)
        except subprocess.TimeoutExpired:  # feeds still open on a loaded machine
            served.process.kill()
    connected_kib = rounds[0][0]
    out: dict[str, Any] = {
        "live_clients": args.clients,
        "live_client_kind": f"{' and '.join(kinds)} _changes feeds (raw asyncio sockets in the bench process, "
                            "not the gateway's), one device token each",
        "live_all": figures([[ms for kind in kinds for ms in latencies[kind]] for _, latencies, _ in rounds]),
        "live_wall_seconds": spread([wall for _, _, wall in rounds], 2),
        "gateway_rss_idle_mib": round(idle_kib / 1024, 1),
        "gateway_rss_connected_mib": round(connected_kib / 1024, 1),
        "memory_per_live_client_kib": round((connected_kib - idle_kib) / args.clients, 1),
    }
    if len(kinds) > 1:
        out.update({f"live_{kind}": figures([latencies[kind] for _, latencies, _ in rounds]) for kind in kinds})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=10_000, help="documents in the grid worker's replica")
    parser.add_argument("--clients", type=int, default=2_000, help="live clients")
    parser.add_argument("--feeds", choices=("both", *KINDS), default="both",
                        help="the live clients' feeds: half longpoll and half continuous, or all one kind")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians)")
    parser.add_argument("--wait", type=float, default=60, help="seconds every live client has to get the change")
    parser.add_argument("--live-only", action="store_true", help="skip (a), the initial sync")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="linli-bench-") as tmp:
        couch_server = EmbeddedCouch(Path(tmp) / "couch").start()
        try:
            os.environ.update({"LINLI_DATA_DIR": tmp, "COUCHDB_URL": couch_server.url, "LINLI_DB_PREFIX": "bench_"})
            settings = dataclasses.replace(load_settings(), master_keys=(new_key(),))  # serve() hands it on
            couch = connect(settings, couch_server.url)
            initial = {} if args.live_only else initial_sync(couch_server, couch, settings, args.docs, args.rounds)
            if args.live_only:
                seed(couch, households_per_grid=1)
            live_figures = live_fan_out(couch_server, couch, settings, args)
        finally:
            couch_server.stop()
    print(json.dumps({"bench": "sync_replication", **initial, **live_figures, "load_average": load_average()}))


if __name__ == "__main__":
    main()
