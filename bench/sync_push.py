"""A BLE gateway's bulk push through the sync gateway, and what checking its ciphertext costs.

    .venv/bin/python bench/sync_push.py [--residents 200] [--readings 4000] [--batch 200] [--rounds 3]

Starts its own pouchdb-server and `linli serve` in a temporary folder and prints one JSON line: `--readings`
heart-rate readings of `--residents` residents, each sealed for its resident's write key (envelope v2, as
ble_gateway/ does), pushed by a gateway token in `_bulk_docs` batches of `--batch` (the gateway's
push_batch): seconds through `linli serve`, against the same batches POSTed straight to CouchDB, each push new
readings of its own, one warm-up push of each then `--rounds` interleaved (bench/measure.py), every reading
answered with a revision; `ratio` = through the gateway / straight (lower is better). And the ciphertext check
alone (sync/ciphertext.py: one read of the residents' keys, every value opened) per batch and per document, in
this process, wall and CPU time, medians of `--rounds` (on a loaded machine the CPU time is the steadier
figure; the load average is printed beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import compare, expect, load_average  # noqa: E402
from crypto.envelope import FieldContext, seal_for  # noqa: E402
from crypto.keys import new_key  # noqa: E402
from server.security.firewall import Firewall  # noqa: E402
from server.store.config import Settings, load_settings  # noqa: E402
from server.store.couch import bulk_save, connect  # noqa: E402
from server.store.embedded_couch import EmbeddedCouch, free_port  # noqa: E402
from sync.auth import new_device_token  # noqa: E402
from sync.ciphertext import CiphertextCheck  # noqa: E402
from sync.upstream import Upstream  # noqa: E402
from sync.writes import new_protected_values  # noqa: E402
from tests.sync_harness import C1, G1, STREET, seed, serve, stop  # noqa: E402


def readings(firewall: Firewall, residents: list[str], count: int, prefix: str) -> list[dict]:
    keys = {r: firewall.keystore.write_public_key(r) for r in residents}
    docs = []
    for n in range(count):
        resident = residents[n % len(residents)]
        doc_id = f"reading:{prefix}-{n:06d}"
        public, version = keys[resident]
        docs.append({"_id": doc_id, "type": "reading", "street": STREET, "community": C1, "grid": G1,
                     "device": "device:c1-g1-wb", "resident": resident,
                     "measured_at": (dt.datetime(2026, 11, 20, tzinfo=dt.UTC) + dt.timedelta(seconds=n)).isoformat(),
                     "metric": "heart_rate", "value": seal_for(public, version,
                                                               FieldContext(doc_id, "value", "core"), 60.0 + n % 40)})
    return docs


def push(url: str, batches: list[list[dict]], headers: dict[str, str]) -> float:
    """Seconds to push every batch; each reading must be answered with its new revision."""
    started = time.perf_counter()
    with httpx2.Client(timeout=300, headers=headers) as client:
        for batch in batches:
            answer = client.post(url, json={"docs": batch})
            if answer.status_code != 201:
                raise RuntimeError(f"{url}: HTTP {answer.status_code}: {answer.text[:500]}")
            expect("readings stored", sum(1 for a in answer.json() if "rev" in a), len(batch))
    return time.perf_counter() - started


async def check_only(settings: Settings, couch_url: str, batches: list[list[dict]]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, its worker threads included)."""
    upstream = Upstream(settings, couch_url)
    check = CiphertextCheck(upstream, settings.master_keys)
    started, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        changed = {i: (doc, new_protected_values(doc, None)) for i, doc in enumerate(batch)}
        assert not await check.refused_fields(changed)
    elapsed = time.perf_counter() - started, time.process_time() - cpu
    await upstream.http.aclose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--residents", type=int, default=200)
    parser.add_argument("--readings", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved pushes of each side (medians)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="linli-bench-") as tmp:
        couch_server = EmbeddedCouch(Path(tmp) / "couch").start()
        os.environ.update({"LINLI_DATA_DIR": tmp, "COUCHDB_URL": couch_server.url, "LINLI_DB_PREFIX": "bench_"})
        settings = dataclasses.replace(load_settings(), master_keys=(new_key(),))  # serve() hands it to linli serve
        couch = connect(settings, couch_server.url)
        seed(couch, households_per_grid=args.residents)
        firewall = Firewall.open(settings, couch)
        residents = [f"resident:c1-g1-h{n:03d}-1" for n in range(1, args.residents + 1)]
        bulk_save(couch.main, [firewall.keystore.new_data_key_doc(couch.main.get(r)) for r in residents])
        token, token_doc = new_device_token("user:gw1", "bench", dt.datetime.now(dt.UTC))
        couch.accounts.save(token_doc)

        def batched(docs: list[dict]) -> list[list[dict]]:
            return [docs[i:i + args.batch] for i in range(0, len(docs), args.batch)]

        pushes = itertools.count()  # each push new readings: a reading pushed twice would be a conflict

        def new_readings(side: str) -> list[list[dict]]:
            return batched(readings(firewall, residents, args.readings, f"{side}{next(pushes)}"))

        served = serve(couch_server.url, settings, free_port(), patience=300)
        try:
            checks = [asyncio.run(check_only(settings, couch_server.url, new_readings("check")))
                      for _ in range(args.rounds)]
            gateway_url, direct_url = served.sync_url + "/_bulk_docs", couch_server.url + settings.db_name("main")
            figures = compare(
                lambda: push(gateway_url, new_readings("gw"), {"Authorization": f"Bearer {token}"}),
                lambda: push(direct_url + "/_bulk_docs", new_readings("direct"), {}), rounds=args.rounds)
        finally:
            try:
                stop(served)
            except subprocess.TimeoutExpired:  # still building its indexes over the pushed readings
                served.process.kill()
            couch_server.stop()
    check_seconds = statistics.median(wall for wall, _ in checks)
    check_cpu = statistics.median(cpu for _, cpu in checks)
    batches = -(-args.readings // args.batch)
    print(json.dumps({
        "bench": "sync_push",
        "residents": args.residents,
        "readings": args.readings,
        "batch": args.batch,
        "gateway_docs_per_second": round(args.readings / figures["ours"]["median"]),
        "gateway_seconds": figures["ours"],
        "direct_docs_per_second": round(args.readings / figures["reference"]["median"]),
        "direct_seconds": figures["reference"],
        "ratio": figures["ratio"],
        "ciphertext_check_ms_per_batch": round(check_seconds * 1000 / batches, 1),
        "ciphertext_check_us_per_doc": round(check_seconds * 1e6 / args.readings),
        "ciphertext_check_us_per_doc_spread": [round(min(w for w, _ in checks) * 1e6 / args.readings),
                                               round(max(w for w, _ in checks) * 1e6 / args.readings)],
        "ciphertext_check_cpu_us_per_doc": round(check_cpu * 1e6 / args.readings),
        "load_average": load_average(),
        "ciphertext_check_share_of_gateway_time": round(check_seconds / figures["ours"]["median"], 3),
    }))


if __name__ == "__main__":
    main()
