"""Time-bank balances and statements at scale (issue 16): 100,000 accounts with 1,000,000 transfers (`--full`).

    nice -n 10 .venv/bin/python bench/timebank.py [--accounts 2000] [--transfers 20000] [--full] [--samples 200]
        [--runs 3]

Starts from an empty Linli database on its own pouchdb-server, stores the transfers of one community (hours
between accounts, points minted to them and spent at a shop) in `_bulk_docs` batches, then times:
- the `ledger` view's index build, asked explicitly right after the load (`reduce=false`, nothing summed), apart,
  with its rate in transfers per second (each transfer is two rows: its two legs);
- the first answer after load: every account's balances on both ledgers from the view (the index build plus that
  grouped query), against reading the same transfer documents alone (`_all_docs` with their bodies, in pages of
  10,000) and summing;
- then `--runs` rounds interleaved, alternating which goes first (bench/measure.py; the first answer warmed both
  sides): the balances again against the same read, medians with min and max. Not at `--full`: there one round
  is ~15 min (pouchdb-server sums the grouped reduce over 2,000,000 rows at query time), six would pass the hour,
  and the page a person opens asks one account's balance, measured next;
- per account, for `--samples` accounts: the balances on both ledgers (server/services/timebank.py `balance`, the
  page a person opens) and the statement (server/services/rewards.py `statement`, the year, both ledgers), each
  against reading that account's transfer documents alone (`_all_docs` by their ids) and summing; one round's
  figure is the p95 over the accounts, `--runs` rounds interleaved after one warm-up round, medians with min and
  max; every balance and statement is checked against the documents.
Each phase's figures go to stderr as they come (a run stopped midway still tells its index rate); the result is one
JSON line on stdout; `ratio_*` is ours / reading the documents alone. Requests may take an hour (pouchdb-server sums
a grouped reduce at query time, over every row).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import compare, expect, interleave, load_average, ratio, spread, timed  # noqa: E402
from bench.stack import embedded_stack, wait_for_view  # noqa: E402
from server.domain.declaration import LEDGERS, MAIN_DB  # noqa: E402
from server.services import rewards, timebank  # noqa: E402
from server.store.couch import bulk_save  # noqa: E402

STREET, COMMUNITY, SHOP = "street:bench", "community:bench", "organisation:bench-shop"
BATCH = 5000
PAGE = 10_000  # documents per `_all_docs` page of the reference read
YEAR = 2026
REQUEST_SECONDS = 3600


def _transfers(accounts: int, transfers: int, rng: random.Random):
    """Transfers and, per account, the ids of those touching it: 60 % hours between two accounts, 30 % points
    minted, 10 % points spent at the shop (never more than minted: spends follow mints of the same account)."""
    start = dt.datetime(YEAR, 1, 1, tzinfo=dt.UTC)
    minted = [0] * accounts
    touching: dict[str, list[str]] = {}
    for n in range(transfers):
        a = rng.randrange(accounts)
        kind = rng.random()
        if kind < 0.6:
            b = (a + 1 + rng.randrange(accounts - 1)) % accounts
            ledger, source, target, amount, what = "hours", f"user:b{a}", f"user:b{b}", rng.choice((60, 90, 120)), \
                "confirmation"
        elif kind < 0.9 or minted[a] < 10:
            amount = rng.randint(5, 30)
            minted[a] += amount
            ledger, source, target, what = "points", COMMUNITY, f"user:b{a}", "mint"
        else:
            amount = rng.randint(1, minted[a])
            minted[a] -= amount
            ledger, source, target, what = "points", f"user:b{a}", SHOP, "redemption"
        doc = {"_id": f"transfer:b{n:08d}", "type": "transfer", "street": STREET, "community": COMMUNITY,
               "ledger": ledger, "from_account": source, "to_account": target, "amount": amount, "kind": what,
               "created_by": "user:bench", "created_at": (start + dt.timedelta(seconds=n * 31_536_000 // transfers))
               .isoformat()}
        for account in (source, target):
            touching.setdefault(account, []).append(doc["_id"])
        yield doc, touching


def _read_all(couch, transfers: int) -> dict[tuple[str, str], int]:
    """The reference: every transfer document read (all `transfers` of them) and summed per ledger and account."""
    held: dict[tuple[str, str], int] = {}
    start, read = "transfer:", 0
    while True:
        rows = couch.main.all(startkey=start, endkey="transfer:\ufff0", include_docs="true", limit=PAGE + 1,
                              as_list=True)
        read += len(rows[:PAGE])
        for row in rows[:PAGE]:
            t = row["doc"]
            held[t["ledger"], t["from_account"]] = held.get((t["ledger"], t["from_account"]), 0) - t["amount"]
            held[t["ledger"], t["to_account"]] = held.get((t["ledger"], t["to_account"]), 0) + t["amount"]
        if len(rows) <= PAGE:
            expect("transfer documents read", read, transfers)
            return held
        start = rows[PAGE]["id"]


def _balances(couch) -> dict[str, dict[str, int]]:
    return {ledger: timebank.balances(couch, COMMUNITY, ledger) for ledger in LEDGERS}


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def _note(phase: str, **figures: object) -> None:
    print(json.dumps({"phase": phase, **figures}), file=sys.stderr, flush=True)


def _per_account(couch, accounts: list[str], touching: dict[str, list[str]], expected: dict[tuple[str, str], int],
                 runs: int) -> dict[str, dict]:
    """An account's balances and its year's statement, each against reading its transfer documents alone: one
    round's figure is the p95 over `accounts`; every answer is checked against the documents."""
    def p95_of(measure) -> float:
        return _p95([measure(a) for a in accounts])

    def balances(account: str) -> float:
        seconds, held = timed(lambda: {ledger: timebank.balance(couch, COMMUNITY, ledger, account)
                                       for ledger in LEDGERS})
        for ledger in LEDGERS:
            expect(f"{account}'s {ledger} balance", held[ledger], expected.get((ledger, account), 0))
        return seconds

    def statement(account: str) -> float:
        seconds, made = timed(lambda: rewards.statement(couch, COMMUNITY, account, str(YEAR)))
        expect(f"entries of {account}'s statement", sum(len(s["entries"]) for s in made["ledgers"].values()),
               len(touching[account]))
        for ledger in LEDGERS:
            expect(f"{account}'s {ledger} closing", made["ledgers"][ledger]["closing"],
                   expected.get((ledger, account), 0))
        return seconds

    def documents(account: str) -> float:
        seconds, held = timed(lambda: _read_account(couch, touching[account], account))
        for ledger in LEDGERS:
            expect(f"{account}'s {ledger} balance read", held.get(ledger, 0), expected.get((ledger, account), 0))
        return seconds

    figures = {}
    for name, ours in (("balance", balances), ("statement", statement)):
        figures[name] = compare(lambda m=ours: p95_of(m), lambda: p95_of(documents), rounds=runs, digits=4)
        _note(f"{name} per account", **figures[name])
    return figures


def _read_account(couch, ids: list[str], account: str) -> dict[str, int]:
    """The reference for one account: its transfer documents read by id and its legs summed per ledger."""
    held: dict[str, int] = {}
    for row in couch.main.all(keys=ids, include_docs="true", as_list=True):
        t = row["doc"]
        held[t["ledger"]] = held.get(t["ledger"], 0) + (t["amount"] if t["to_account"] == account else -t["amount"])
    return held


def run(accounts: int, transfers: int, samples: int, runs: int, all_balances_rounds: bool) -> dict:
    rng = random.Random(2026)
    with embedded_stack("tb_bench_", timeout=REQUEST_SECONDS) as (settings, couch, server):
        batch, touching = [], {}
        started = time.perf_counter()
        for doc, touched in _transfers(accounts, transfers, rng):
            touching = touched
            batch.append(doc)
            if len(batch) == BATCH:
                assert not [r for r in bulk_save(couch.main, batch) if r.error]
                batch = []
        if batch:
            assert not [r for r in bulk_save(couch.main, batch) if r.error]
        load_seconds = time.perf_counter() - started
        _note("loaded", transfers=transfers, seconds=round(load_seconds, 1))

        index_seconds, _ = timed(lambda: wait_for_view(f"{server.url.rstrip('/')}/{settings.db_name(MAIN_DB)}",
                                                        "ledger"))
        _note("indexed", seconds=round(index_seconds, 1), transfers_per_second=round(transfers / index_seconds))
        query_seconds, first = timed(lambda: _balances(couch))
        first_seconds = index_seconds + query_seconds
        reference_first_seconds, reference = timed(lambda: _read_all(couch, transfers))
        _note("first answer", balances_query_seconds=round(query_seconds, 1),
              reference_read_seconds=round(reference_first_seconds, 1))
        assert all(first[ledger].get(a, 0) == v for (ledger, a), v in reference.items())
        assert sum(first["hours"].values()) == 0 and min(v for a, v in first["points"].items() if a != COMMUNITY) >= 0
        result = {"accounts": accounts, "transfers": transfers, "load_seconds": round(load_seconds, 1),
                  "index_build_seconds": round(index_seconds, 1),
                  "index_transfers_per_second": round(transfers / index_seconds),
                  "first_answer_seconds": round(first_seconds, 1),
                  "first_balances_query_seconds": round(query_seconds, 1),
                  "reference_first_read_seconds": round(reference_first_seconds, 1),
                  "ratio_first": round(first_seconds / reference_first_seconds, 2)}

        if all_balances_rounds:
            # Interleaved, alternating which goes first (bench/measure.py); the first answer warmed both sides.
            ours, theirs = interleave(lambda: timed(lambda: _balances(couch))[0],
                                      lambda: timed(lambda: _read_all(couch, transfers))[0], rounds=runs, warm=0)
            _note("balances warm", ours=[round(s, 1) for s in ours], reference=[round(s, 1) for s in theirs])
            result |= {"balances_seconds": spread(ours, 2), "reference_read_seconds": spread(theirs, 2),
                       "ratio_balances": ratio(ours, theirs)}

        chosen = rng.sample(sorted(a for a in touching if a.startswith("user:")), min(samples, accounts))
        per_account = _per_account(couch, chosen, touching, reference, runs)
        return {**result, "balance_p95_seconds": per_account["balance"],
                "statement_p95_seconds": per_account["statement"], "samples": len(chosen), "runs": runs,
                "load_average": load_average()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--transfers", type=int, default=20_000)
    parser.add_argument("--full", action="store_true", help="the issue's scale: 100,000 accounts, 1,000,000 transfers")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    accounts, transfers = (100_000, 1_000_000) if args.full else (args.accounts, args.transfers)
    print(json.dumps(run(accounts, transfers, args.samples, args.runs, all_balances_rounds=not args.full)),
          flush=True)


if __name__ == "__main__":
    main()
