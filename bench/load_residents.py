"""Generate and load the demo community scaled to N residents through _bulk_docs.

    .venv/bin/python bench/load_residents.py [--residents 100000] [--seed 2025] [--rounds 3]

Starts its own pouchdb-server in a temporary folder and prints one JSON line.
The reference, measured in the same run on the same server: the same main
documents (protected fields sealed, residents' data keys included), already
generated, sealed and serialised, POSTed as plain _bulk_docs
batches to a fresh Linli main database (with its design document, which
alone costs pouchdb-server about a quarter of its write rate). Ours loads the
demo without its year of history, which the reference's documents lack. Each load, ours
and the reference's, goes into fresh databases of its own; one warm-up load of
each, then `--rounds` interleaved (bench/measure.py); every main database must
end up holding the same documents. `ratio` = our seconds per document / the
reference's (lower is better; 1.0 would mean generating, validating, sealing
and sending through pycouchdb cost nothing extra).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import compare, expect, load_average  # noqa: E402
from bench.stack import embedded_stack  # noqa: E402
from server.security import accounts  # noqa: E402
from server.security.firewall import Firewall  # noqa: E402
from server.services import demo  # noqa: E402
from server.store.couch import Couch, connect  # noqa: E402

BATCH = 1000  # the same batch size for ours and the reference


def reference_seconds(url: str, db_name: str, docs: list[dict[str, Any]]) -> float:
    """Seconds for bare _bulk_docs of pre-serialised batches into db_name."""
    bodies = [json.dumps({"docs": docs[i:i + BATCH]}).encode() for i in range(0, len(docs), BATCH)]
    with httpx2.Client(base_url=url, timeout=300) as client:
        started = time.perf_counter()
        for body in bodies:
            response = client.post(f"{db_name}/_bulk_docs", content=body,
                                   headers={"Content-Type": "application/json"})
            response.raise_for_status()
            if any("error" in r for r in response.json()):
                raise RuntimeError(f"reference load refused documents: {response.text[:300]}")
        return time.perf_counter() - started


def stored(url: str, db_name: str) -> int:
    """Documents in db_name, its design documents left out."""
    with httpx2.Client(base_url=url, timeout=300) as client:
        total = client.get(db_name).raise_for_status().json()["doc_count"]
        designs = client.get(f"{db_name}/_all_docs", params={"startkey": '"_design/"', "endkey": '"_design0"'})
        return total - len(designs.raise_for_status().json()["rows"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--residents", type=int, default=100_000, help="approximate number of residents")
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved loads of each side (medians)")
    args = parser.parse_args()
    size = demo.DemoSize.for_residents(args.residents)
    with embedded_stack() as (settings, _couch, server):
        # The reference writes the very documents Linli stores (sealed, with data keys), made beforehand.
        reference_couch = connect(replace(settings, db_prefix="reference_"), server.url)
        reference_seal = Firewall.open(settings, reference_couch).seal_for_storage
        generated = demo.generate(args.seed, size)
        docs = [d for batch in iter(lambda: list(itertools.islice(generated, BATCH)), [])
                for d in reference_seal(batch)]
        loads: list[int] = []  # documents each of our loads wrote (main and accounts)
        numbers = itertools.count()

        def fresh(side: str) -> Couch:
            """Databases of their own for one load, created as Linli's own (design documents included)."""
            return connect(replace(settings, db_prefix=f"{side}{next(numbers)}_"), server.url)

        def ours() -> float:
            couch = fresh("ours")
            report = demo.load(couch, Firewall.open(settings, couch), seed=args.seed, size=size,
                               password_hash=accounts.hash_password("bench-password"),
                               progress=sys.stdout.isatty(), batch_size=BATCH,
                               history=False)  # the year of history is not in the reference's documents
            expect(f"main documents {couch.main.name} holds", stored(server.url, couch.main.name), len(docs))
            loads.append(report.docs)
            return report.seconds / report.docs

        def reference() -> float:
            couch = fresh("reference")
            seconds = reference_seconds(server.url, couch.main.name, docs)
            expect(f"main documents {couch.main.name} holds", stored(server.url, couch.main.name), len(docs))
            return seconds / len(docs)

        figures = compare(ours, reference, rounds=args.rounds, digits=9)
    expect("documents each of our loads wrote", loads.count(loads[0]), len(loads))
    print(json.dumps({
        "bench": "load_residents",
        "residents": sum(1 for d in docs if d["type"] == "resident"),
        "docs": loads[0],
        "seconds": round(figures["ours"]["median"] * loads[0], 2),
        "docs_per_second": round(1 / figures["ours"]["median"]),
        "docs_per_second_spread": [round(1 / figures["ours"]["max"]), round(1 / figures["ours"]["min"])],
        "reference_docs_per_second": round(1 / figures["reference"]["median"]),
        "reference_docs_per_second_spread": [round(1 / figures["reference"]["max"]),
                                             round(1 / figures["reference"]["min"])],
        "ratio": figures["ratio"], "rounds": args.rounds, "load_average": load_average(),
    }))


if __name__ == "__main__":
    main()
