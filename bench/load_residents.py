"""Generate and load the demo community scaled to N residents through _bulk_docs.

    .venv/bin/python bench/load_residents.py [--residents 100000] [--seed 2025]

Starts its own pouchdb-server in a temporary folder and prints one JSON line.
The reference, measured in the same run on the same server: the same main
documents (protected fields sealed, residents' data keys included), already
generated, sealed and serialised, POSTed as plain _bulk_docs
batches to a fresh Linli main database (with its design document, which
alone costs pouchdb-server about a quarter of its write rate). `ratio` = ours
/ reference: 1.0 would mean generating, validating, sealing and sending
through pycouchdb cost nothing extra.
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

from bench.stack import embedded_stack  # noqa: E402
from server.security.firewall import Firewall  # noqa: E402
from server.services import demo  # noqa: E402
from server.store.couch import connect  # noqa: E402

BATCH = 1000  # the same batch size for ours and the reference


def reference_rate(url: str, db_name: str, docs: list[dict[str, Any]]) -> float:
    """Documents per second for bare _bulk_docs of pre-serialised batches into db_name."""
    bodies = [json.dumps({"docs": docs[i:i + BATCH]}).encode() for i in range(0, len(docs), BATCH)]
    with httpx2.Client(base_url=url, timeout=300) as client:
        started = time.perf_counter()
        for body in bodies:
            response = client.post(f"{db_name}/_bulk_docs", content=body,
                                   headers={"Content-Type": "application/json"})
            response.raise_for_status()
            if any("error" in r for r in response.json()):
                raise RuntimeError(f"reference load refused documents: {response.text[:300]}")
        return len(docs) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--residents", type=int, default=100_000, help="approximate number of residents")
    parser.add_argument("--seed", type=int, default=2025)
    args = parser.parse_args()
    size = demo.DemoSize.for_residents(args.residents)
    with embedded_stack() as (settings, couch, server):
        seal = Firewall.open(settings, couch).seal_for_storage
        report = demo.load(couch, seal, seed=args.seed, size=size, password="bench-password",
                           progress=sys.stdout.isatty(), batch_size=BATCH)
        # The reference writes the very documents Linli stored (sealed, with data keys), made beforehand.
        reference_couch = connect(replace(settings, db_prefix="reference_"), server.url)
        reference_seal = Firewall.open(settings, reference_couch).seal_for_storage
        generated = demo.generate(args.seed, size)
        docs = [d for batch in iter(lambda: list(itertools.islice(generated, BATCH)), [])
                for d in reference_seal(batch)]
        # connect() created the reference databases exactly as Linli's own, design documents included.
        reference = reference_rate(server.url, reference_couch.main.name, docs)
    ours = report.docs / report.seconds
    print(json.dumps({
        "bench": "load_residents",
        "residents": sum(1 for d in docs if d["type"] == "resident"),
        "docs": report.docs,
        "seconds": round(report.seconds, 2),
        "docs_per_second": round(ours),
        "reference_docs_per_second": round(reference),
        "ratio": round(ours / reference, 3),
    }))


if __name__ == "__main__":
    main()
