"""Closing a street-wide household vote: count against the frozen roll, publish, file and sign the result.

    .venv/bin/python bench/vote_tally.py [--households 6000 100000] [--turnout 0.8]

For each size, starts from an empty Linli database on its own pouchdb-server, stores a community of that many
households (floor areas), opens a matter under Civil Code art. 278 (server/services/deliberation.py: the roll
frozen in one document; `open_seconds`), writes a ballot for `--turnout` of them in `_bulk_docs` batches, then
times the close (`deliberation.close`: read the roll and every ballot with its conflicts, evaluate the four
conditions, hash, file in the filing log, sign, store the result) against reading the same ballot documents
alone (`_all_docs` over the matter's ballot ids, with conflicts), the least any tally must do. Prints one JSON
line per size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import embedded_stack  # noqa: E402
from server.domain.access import Principal  # noqa: E402
from server.domain.declaration import Role  # noqa: E402
from server.security.filing import Signer  # noqa: E402
from server.security.firewall import Firewall  # noqa: E402
from server.services import deliberation as d  # noqa: E402
from server.store.couch import bulk_save  # noqa: E402

STREET, COMMUNITY, GRID = "street:bench", "community:bench", "grid:bench-g1"
BATCH = 2000


def _store(couch, docs: list[dict]) -> None:
    for start in range(0, len(docs), BATCH):
        failed = [r for r in bulk_save(couch.main, docs[start:start + BATCH]) if r.error]
        assert not failed, failed[:3]


def run(households: int, turnout: float) -> dict:
    with embedded_stack(f"vote_{households}_") as (settings, couch, _):
        firewall = Firewall.open(settings, couch)
        place = {"street": STREET, "community": COMMUNITY}
        _store(couch, [{"_id": COMMUNITY, "type": "community", **place, "name": "基准社区"},
                       *({"_id": f"household:b-{n:06d}", "type": "household", **place, "grid": GRID,
                          "address": f"基准路{n}号", "floor_area": 50 + n % 90} for n in range(households))])
        admin = Principal("user:admin", frozenset({Role.ADMIN}), STREET)
        now = dt.datetime.now(dt.UTC)
        couch.main.query("linli/by_place", limit=1, as_list=True)  # the view indexed before the clock starts
        started = time.perf_counter()
        matter = d.open_matter(couch, firewall.keystore, admin, d.NewMatter(
            COMMUNITY, "全街道住户表决", "", "household_assembly", "household", "civil_code_278_major", (),
            now - dt.timedelta(hours=1), now + dt.timedelta(days=1)), now)
        open_seconds = time.perf_counter() - started
        voters = [e["voter"] for e in d.roll_of(couch, matter)][:round(households * turnout)]
        ballots = []
        for n, voter in enumerate(voters):
            ballot = {"_id": d.ballot_id(matter["_id"], voter), "type": "ballot", **place, "matter": matter["_id"],
                      "voter": voter, "household": voter, "choice": ("yes", "yes", "yes", "no", "abstain")[n % 5],
                      "channel": "door", "assisted_by": "user:w", "created_by": "user:w",
                      "receipt": d.format_receipt(f"{n:012x}"), "created_at": now.isoformat()}
            ballots.append(ballot)
        _store(couch, ballots)

        prefix = d.ballot_id(matter["_id"], "")
        started = time.perf_counter()
        read = couch.main.all(startkey=prefix, endkey=prefix + "\ufff0", conflicts="true", as_list=True)
        read_seconds = time.perf_counter() - started
        assert len(read) == len(ballots)

        started = time.perf_counter()
        result = d.close(couch, firewall.keystore, Signer.of(settings), admin, matter, now)
        close_seconds = time.perf_counter() - started
        assert result["counted"] == len(ballots) and len(result["receipts"]) == len(ballots)
        return {"households": households, "ballots": len(ballots), "open_seconds": round(open_seconds, 3),
                "close_seconds": round(close_seconds, 3), "reference_read_seconds": round(read_seconds, 3),
                "ratio": round(close_seconds / read_seconds, 2), "passed": result["passed"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, nargs="+", default=[6000, 100_000])
    parser.add_argument("--turnout", type=float, default=0.8)
    args = parser.parse_args()
    for households in args.households:
        print(json.dumps(run(households, args.turnout)), flush=True)


if __name__ == "__main__":
    main()
