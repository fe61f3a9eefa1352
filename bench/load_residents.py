"""Generate and load the demo community scaled to N residents through _bulk_docs.

    .venv/bin/python bench/load_residents.py [--residents 100000] [--seed 2025]

Prints one JSON line. The reference, measured in the same run on the same
pouchdb-server: the same documents, already generated and serialised, POSTed
as plain _bulk_docs batches to a fresh database. `ratio` = ours / reference
(1.0 means generation, validation and pycouchdb cost nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server import demo  # noqa: E402
from server.config import Settings  # noqa: E402
from server.couch import connect  # noqa: E402
from server.embedded_couch import EmbeddedCouch  # noqa: E402

BATCH = 1000


def reference_rate(url: str, docs: list[dict]) -> float:
    """Documents per second for bare _bulk_docs of pre-serialised batches."""
    bodies = [json.dumps({"docs": docs[i:i + BATCH]}).encode() for i in range(0, len(docs), BATCH)]
    with httpx2.Client(base_url=url, timeout=300) as client:
        client.put("bench_reference").raise_for_status()
        started = time.perf_counter()
        for body in bodies:
            client.post("bench_reference/_bulk_docs", content=body,
                        headers={"Content-Type": "application/json"}).raise_for_status()
        return len(docs) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--residents", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=2025)
    args = parser.parse_args()
    size = demo.DemoSize.for_residents(args.residents)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedCouch(Path(tmp) / "couch") as server:
        settings = Settings(data_dir=Path(tmp), couchdb_url=None, couchdb_user=None, couchdb_password=None,
                            db_prefix="bench_", secret_key="bench", host="127.0.0.1", port=0,
                            session_max_age=60, cookie_secure=False)
        couch = connect(settings, server.url)
        report = demo.load(couch, "bench-password", seed=args.seed, size=size, progress=sys.stderr.isatty(),
                           batch_size=BATCH)
        docs = list(demo.generate(args.seed, size))
        residents = sum(1 for d in docs if d["type"] == "resident")
        reference = reference_rate(server.url, docs)
    ours = report.docs / report.seconds
    print(json.dumps({"bench": "load_residents", "residents": residents, "docs": report.docs,
                      "seconds": round(report.seconds, 2), "docs_per_second": round(ours),
                      "reference": "plain _bulk_docs of the same documents",
                      "reference_docs_per_second": round(reference), "ratio": round(ours / reference, 3)}))


if __name__ == "__main__":
    main()
