"""Closing a street-wide household vote: count against the frozen roll, publish, file and sign the result.

    .venv/bin/python bench/vote_tally.py [--households 6000 100000] [--turnout 0.8] [--rounds 3]

For each size, starts from an empty Linli database on its own pouchdb-server, stores a community of that many
households (floor areas), opens `--rounds` + 1 matters under Civil Code art. 278 (server/services/deliberation.py:
each roll frozen in one document; `open_seconds`), writes a ballot for `--turnout` of them in each, in `_bulk_docs`
batches, then times the close (`deliberation.close`: read the roll and every ballot with its conflicts, evaluate
the four conditions, hash, file in the filing log, sign, store the result) against reading the same ballot
documents alone (`_all_docs` over the matter's ballot ids, with conflicts), the least any tally must do: a matter
closes once, so each round closes its own matter and reads another's ballots; the first round warms both up and
is not counted, the others interleave (bench/measure.py); every close must count every ballot, every read read
them all. Prints one JSON line per size: medians with spread, ratio = close / read (lower is better).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import compare, expect, load_average, spread, timed  # noqa: E402
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


def _open_with_ballots(couch, firewall: Firewall, admin: Principal, households: int, turnout: float,
                       now: dt.datetime) -> tuple[float, dict, int]:
    """A new matter of the whole community, and ballots of `turnout` of its roll: (seconds to open it, the
    matter, ballots written)."""
    place = {"street": STREET, "community": COMMUNITY}
    open_seconds, matter = timed(lambda: d.open_matter(couch, firewall.keystore, admin, d.NewMatter(
        COMMUNITY, "全街道住户表决", "", "household_assembly", "household", "civil_code_278_major", (),
        now - dt.timedelta(hours=1), now + dt.timedelta(days=1)), now))
    voters = [e["voter"] for e in d.roll_of(couch, matter)][:round(households * turnout)]
    _store(couch, [{"_id": d.ballot_id(matter["_id"], voter), "type": "ballot", **place, "matter": matter["_id"],
                    "voter": voter, "household": voter, "choice": ("yes", "yes", "yes", "no", "abstain")[n % 5],
                    "channel": "door", "assisted_by": "user:w", "created_by": "user:w",
                    "receipt": d.format_receipt(f"{n:012x}"), "created_at": now.isoformat()}
                   for n, voter in enumerate(voters)])
    return open_seconds, matter, len(voters)


def run(households: int, turnout: float, rounds: int) -> dict:
    with embedded_stack(f"vote_{households}_") as (settings, couch, _):
        firewall = Firewall.open(settings, couch)
        place = {"street": STREET, "community": COMMUNITY}
        _store(couch, [{"_id": COMMUNITY, "type": "community", **place, "name": "基准社区"},
                       *({"_id": f"household:b-{n:06d}", "type": "household", **place, "grid": GRID,
                          "address": f"基准路{n}号", "floor_area": 50 + n % 90} for n in range(households))])
        admin = Principal("user:admin", frozenset({Role.ADMIN}), STREET)
        now = dt.datetime.now(dt.UTC)
        couch.main.query("linli/by_place", limit=1, as_list=True)  # the view indexed before the clock starts
        opened = [_open_with_ballots(couch, firewall, admin, households, turnout, now) for _ in range(rounds + 1)]
        ballots = expect("ballots of each matter", round(households * turnout), opened[0][2])
        to_close, to_read = [m for _, m, _ in opened], [m for _, m, _ in opened]
        passed = []

        def close() -> float:
            seconds, result = timed(lambda: d.close(couch, firewall.keystore, Signer.of(settings), admin,
                                                    to_close.pop(), now))
            expect("ballots the close counted", result["counted"], ballots)
            expect("receipts the close published", len(result["receipts"]), ballots)
            passed.append(result["passed"])
            return seconds

        def read() -> float:
            prefix = d.ballot_id(to_read.pop(0)["_id"], "")
            seconds, rows = timed(lambda: couch.main.all(startkey=prefix, endkey=prefix + "\ufff0", conflicts="true",
                                                         as_list=True))
            expect("ballots the reference read", len(rows), ballots)
            return seconds

        figures = compare(close, read, rounds=rounds)
        return {"households": households, "ballots": ballots,
                "open_seconds": spread([seconds for seconds, _, _ in opened]),
                "close_seconds": figures["ours"], "reference_read_seconds": figures["reference"],
                "ratio": figures["ratio"], "passed": passed[0], "load_average": load_average()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, nargs="+", default=[6000, 100_000])
    parser.add_argument("--turnout", type=float, default=0.8)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved closes and reads (medians)")
    args = parser.parse_args()
    for households in args.households:
        print(json.dumps(run(households, args.turnout, args.rounds)), flush=True)


if __name__ == "__main__":
    main()
