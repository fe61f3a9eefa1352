"""First start (issue 19 item 1): `linli serve` on a fresh data folder with the demo, as `./dev up` starts it.

    .venv/bin/python bench/first_start.py [--runs 3] [--residents N]

Each run starts `linli serve` on a new temporary data folder and times, from the command's start: the demo's
documents loaded, each index built before the URL, the URL printed, the first answer of each role's first pages
right after it (tests/first_pages.py), and every index built (`/healthz` says `views.all`). The reference, in the
same run and interleaved with ours (alternating which goes first, bench/measure.py): the same demo's documents
(dumped from the first run's database, revisions and attachments kept) written into a fresh pouchdb-server with no
views, `_bulk_docs` batches of 1,000 (the time a first start would take if loading were all it did). Prints one JSON
line: medians over the runs with their spread, `ratio` = our time to the URL ÷ the reference (lower is better), the
same for CPU seconds (`cpu_ratio`: ours, Python and pouchdb-server, to the URL; the reference's server and client),
the machine's load before each run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx2  # noqa: E402

from bench.measure import expect, interleave, ratio, spread  # noqa: E402
from server.services import demo  # noqa: E402
from server.store.embedded_couch import EmbeddedCouch, admin_password, free_port  # noqa: E402
from tests.first_pages import open_first_pages  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LINLI = ROOT / ".venv" / "bin" / "linli"
BATCH = 1000
# The lines `linli serve` prints on the way to its URL, by the phase they end.
PHASES = {"demo_loaded": re.compile(r"^Loaded \d+ documents"), "url": re.compile(r"^Linli is running")}
INDEX = re.compile(r"^Index (\S+) built in")


def ours(residents: int, dump_to: Path | None) -> dict[str, Any]:
    """One first start: each phase's time from the command's start, each first page's, all indexes'."""
    with tempfile.TemporaryDirectory(prefix="linli-first-start-") as tmp:
        port = free_port()
        env = {**os.environ, "LINLI_DATA_DIR": tmp, "LINLI_PORT": str(port)}
        started = time.monotonic()
        process = subprocess.Popen([str(LINLI), "serve", "--residents", str(residents), "--log-level", "warning",
                                    "--log-format", "text"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        seen: dict[str, float] = {}
        url_printed = threading.Event()

        def read() -> None:
            for line in process.stdout:  # type: ignore[union-attr]
                at = time.monotonic() - started
                for phase, pattern in PHASES.items():
                    if pattern.search(line):
                        seen[phase] = at
                index = INDEX.search(line)
                if index:
                    seen[f"index {index.group(1)}"] = at
                if "Press Ctrl-C" in line:
                    seen["cpu_to_url"] = _cpu_seconds(process.pid)
                    url_printed.set()

        threading.Thread(target=read, daemon=True).start()
        try:
            if not url_printed.wait(1800):
                raise RuntimeError("linli serve printed no URL in 30 min")
            url = f"http://127.0.0.1:{port}/"
            _wait_listening(url)
            password = re.search(r"Demo password for every demo account: (\S+)",
                                 (Path(tmp) / "demo-logins.txt").read_text(encoding="utf-8")).group(1)
            answers = open_first_pages(url, password)
            pages = {f"{a.username} {a.path}": round(a.seconds, 2) for a in answers}
            statuses = {f"{a.username} {a.path}": a.status for a in answers}
            while not httpx2.get(url + "healthz", timeout=30).json()["parts"]["views"]["all"]:
                time.sleep(1)
            seen["all_indexes"] = time.monotonic() - started
            health = httpx2.get(url + "healthz", timeout=30).json()["parts"]["views"]
            if dump_to is not None:
                _dump(Path(tmp) / "couch", dump_to)
        finally:
            process.terminate()
            process.wait(60)
    cpu = seen.pop("cpu_to_url")
    return {"phases": {k: round(v, 1) for k, v in seen.items()}, "cpu_to_url": round(cpu, 1), "first_pages": pages,
            "statuses": statuses, "waited_for": health.get("waited_for", {})}


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process and of its children running now (`linli serve` and its
    pouchdb-server): the work done, whatever else the machine ran meanwhile."""
    tick = os.sysconf("SC_CLK_TCK")

    def own(p: int) -> float:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return own(pid) + sum(own(int(c)) for c in children)


def _wait_listening(url: str) -> None:
    for _ in range(300):
        try:
            httpx2.get(url + "healthz", timeout=2)
            return
        except httpx2.HTTPError:
            time.sleep(0.1)


def _dump(couch_dir: Path, to: Path) -> None:
    """Both databases' documents as stored (revisions, attachments inline), for the reference."""
    record = json.loads((couch_dir / "linli-couch.json").read_text(encoding="utf-8"))
    auth = ("linli", admin_password(couch_dir))
    for db in ("linli_main", "linli_accounts"):
        rows = httpx2.get(f"http://127.0.0.1:{record['port']}/{db}/_all_docs", auth=auth, timeout=600,
                          params={"include_docs": "true", "attachments": "true"}).json()["rows"]
        (to / f"{db}.json").write_text(json.dumps([r["doc"] for r in rows]), encoding="utf-8")


def reference(dump: Path) -> tuple[float, float]:
    """The same documents written into a fresh pouchdb-server, no design documents: seconds from its start, and the
    CPU seconds it and this process spent."""
    docs = {db: [d for d in json.loads((dump / f"{db}.json").read_text(encoding="utf-8"))
                 if not d["_id"].startswith("_design/")] for db in ("linli_main", "linli_accounts")}
    with tempfile.TemporaryDirectory(prefix="linli-first-start-ref-") as tmp:
        started, own_cpu = time.monotonic(), sum(os.times()[:2])
        server = EmbeddedCouch(Path(tmp) / "couch").start()
        try:
            with httpx2.Client(base_url=f"http://127.0.0.1:{server.port}", auth=("linli", server.password),
                               timeout=600) as client:
                for db, batch_docs in docs.items():
                    client.put(f"/{db}").raise_for_status()
                    for i in range(0, len(batch_docs), BATCH):
                        client.post(f"/{db}/_bulk_docs", json={"docs": batch_docs[i:i + BATCH],
                                                               "new_edits": False}).raise_for_status()
                seconds = time.monotonic() - started
                cpu = _cpu_seconds(server.process.pid) + sum(os.times()[:2]) - own_cpu
                for db, batch_docs in docs.items():
                    expect(f"documents in the reference's {db}",
                           client.get(f"/{db}").raise_for_status().json()["doc_count"], len(batch_docs))
            return seconds, cpu
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--residents", type=int, default=demo.PILOT_RESIDENTS)
    args = parser.parse_args()
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="linli-first-start-dump-") as dump:

        def first_start() -> dict[str, Any]:
            loads.append(round(os.getloadavg()[0], 1))
            run = ours(args.residents, Path(dump) if not loads[1:] else None)  # the first run dumps the reference's
            print(f"run: {json.dumps(run)}", file=sys.stderr, flush=True)
            return run

        def bulk_load() -> tuple[float, float]:
            loads.append(round(os.getloadavg()[0], 1))
            seconds, cpu = reference(Path(dump))
            print(f"reference: {seconds:.1f} s, {cpu:.1f} CPU s", file=sys.stderr, flush=True)
            return seconds, cpu

        # Every run from nothing, so no warm-up; the first round runs ours first (it makes the reference's dump).
        runs, reference_runs = interleave(first_start, bulk_load, rounds=args.runs, warm=0)
        references = [seconds for seconds, _ in reference_runs]
        docs = sum(len(json.loads((Path(dump) / f"{db}.json").read_text(encoding="utf-8")))
                   for db in ("linli_main", "linli_accounts"))
    phases = sorted({p for r in runs for p in r["phases"]}, key=lambda p: runs[0]["phases"].get(p, 0))
    url = [r["phases"]["url"] for r in runs]
    print(json.dumps({
        "benchmark": "first_start", "residents": args.residents, "documents": docs, "runs": args.runs,
        "phases_s": {p: spread([r["phases"][p] for r in runs if p in r["phases"]], 1) for p in phases},
        "first_pages_s": {page: spread([r["first_pages"][page] for r in runs], 1) for page in runs[0]["first_pages"]},
        "first_pages_status": [r["statuses"] for r in runs], "index_waits_after_url": [r["waited_for"] for r in runs],
        "reference_bulk_load_s": spread(references, 1),
        "ratio": ratio(url, references),
        # CPU seconds (user + system, Python and pouchdb-server) to the URL and of the reference: the work itself,
        # which a loaded machine stretches less than the wall time
        "cpu_to_url_s": spread([r["cpu_to_url"] for r in runs], 1),
        "reference_cpu_s": spread([cpu for _, cpu in reference_runs], 1),
        "cpu_ratio": ratio([r["cpu_to_url"] for r in runs], [cpu for _, cpu in reference_runs]),
        "load_before_each": loads,
    }))


if __name__ == "__main__":
    main()
