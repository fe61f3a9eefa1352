"""Matching open needs to offers of help (issue 17, item 4): the matcher against reading the same documents.

    .venv/bin/python bench/matching.py [--needs 20000] [--offers 5000] [--communities 20] [--seed 17] [--repeat 3]

Starts from an empty Linli database on its own pouchdb-server, stores a street of `--communities` communities of
five grids (households with a building each), `--needs` open needs and `--offers` offers of help spread over them
(kinds, languages, weekly hours and capacities drawn from a fixed seed), then times one run of the matcher for the
street's secretary of every community (`server.services.matching.run`: read the open needs, their households'
buildings, the offers and earlier matches; must-match rules; score; write the proposals) against reading the same
documents alone (the same view queries and `_all_docs` of the households), the least any matcher must do: one
warm-up run of each, then `--repeat` interleaved (bench/measure.py; the proposals deleted after each run, untimed;
every run must read the same documents and decide every need). Prints one JSON line: medians with their spread,
their ratio (ours / reading alone, lower is better), proposals written and the share of needs with at least one
proposal.
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

from bench.measure import compare, expect, load_average  # noqa: E402
from bench.stack import embedded_stack  # noqa: E402
from server.domain.access import Principal  # noqa: E402
from server.domain.declaration import SPOKEN_LANGUAGES, Role  # noqa: E402
from server.domain.field_rules import COMMON_NEEDS  # noqa: E402
from server.services import matching  # noqa: E402
from server.store.couch import bulk_save, get_many, iter_view_docs  # noqa: E402

STREET = "street:bench"
GRIDS_PER_COMMUNITY = 5
HOUSEHOLDS_PER_GRID = 200
BATCH = 2000


def _store(couch, docs: list[dict]) -> None:
    for start in range(0, len(docs), BATCH):
        failed = [r for r in bulk_save(couch.main, docs[start:start + BATCH]) if r.error]
        assert not failed, failed[:3]


def _hours(rng: random.Random) -> list[dict]:
    days = rng.sample(range(7), rng.randint(1, 3))
    start = rng.randrange(8, 19)
    return [{"day": d, "start": f"{start:02d}:00", "end": f"{start + rng.randint(1, 3):02d}:00"} for d in sorted(days)]


def street(rng: random.Random, communities: int, needs: int, offers: int, now: dt.datetime) -> list[dict]:
    docs: list[dict] = []
    grids = []
    for c in range(communities):
        community = f"community:b{c:02d}"
        docs.append({"_id": community, "type": "community", "street": STREET, "community": community,
                     "name": f"社区{c}"})
        for g in range(GRIDS_PER_COMMUNITY):
            grid = f"grid:b{c:02d}-g{g}"
            grids.append({"street": STREET, "community": community, "grid": grid})
            docs.append({"_id": grid, "type": "grid", **grids[-1], "name": f"第{g + 1}网格", "number": g + 1})
            docs += [{"_id": f"household:b{c:02d}-g{g}-{h:04d}", "type": "household", **grids[-1],
                      "address": f"基准路{h}号", "building": str(h % 20 + 1)} for h in range(HOUSEHOLDS_PER_GRID)]
    for n in range(needs):
        place = rng.choice(grids)
        household = f"household:{place['grid'][5:]}-{rng.randrange(HOUSEHOLDS_PER_GRID):04d}"
        need = {"_id": f"need:b{n:06d}", "type": "need", **place, "household": household,
                "category": rng.choice(COMMON_NEEDS), "description": "需要帮助", "status": "open",
                "language": rng.choices(SPOKEN_LANGUAGES, (80, 15, 4, 1))[0], "created_by": "user:bench",
                "created_at": (now - dt.timedelta(minutes=n)).isoformat()}
        if rng.random() < 0.5:
            need["hours"] = _hours(rng)
        docs.append(need)
    for n in range(offers):
        place = rng.choice(grids)
        offer = {"_id": f"offer:b{n:06d}", "type": "offer", "street": STREET, "community": place["community"],
                 "provider": f"user:v{n}", "provider_name": f"志愿者{n}", "keeper": f"user:v{n}", "title": "帮忙",
                 "help_kind": rng.choice(COMMON_NEEDS), "capacity": rng.randint(1, 5), "hours": _hours(rng),
                 "languages": ["putonghua"] + (["local_dialect"] if rng.random() < 0.3 else []),
                 "building": str(rng.randrange(20) + 1), "status": "active", "created_by": f"user:v{n}",
                 "created_at": now.isoformat()}
        if rng.random() < 0.8:  # most offers from a grid's own people, some to the whole community
            offer["grid"] = place["grid"]
        docs.append(offer)
    return docs


def _forget_proposals(couch, communities: list[str]) -> None:
    """Delete the proposals a run wrote (untimed), and bring the view up to date again."""
    gone = [{"_id": m["_id"], "_rev": m["_rev"], "_deleted": True} for c in communities
            for m in iter_view_docs(couch.main, "linli/by_place", [c, "match"])]
    _store(couch, gone)
    couch.main.query("linli/by_place", limit=1, as_list=True)


def run(needs: int, offers: int, communities: int, seed: int, repeat: int) -> dict:
    now = dt.datetime.now(dt.UTC)
    with embedded_stack(f"matching_{needs}_") as (_settings, couch, _):
        _store(couch, street(random.Random(seed), communities, needs, offers, now))
        couch.main.query("linli/by_place", limit=1, as_list=True)  # the view indexed before the clock starts
        names = [f"community:b{c:02d}" for c in range(communities)]
        secretary = Principal("user:bench", frozenset({Role.SECRETARY}), STREET, frozenset(names))

        plans_of_runs: list[dict] = []
        documents_read: list[int] = []

        def reference() -> float:
            started = time.perf_counter()
            read = 0
            for community in names:
                found = [n for n in iter_view_docs(couch.main, "linli/by_place", [community, "need"])
                         if n["status"] == "open"]
                read += len(found) + len(get_many(couch.main, {n["household"] for n in found}))
                read += len(list(iter_view_docs(couch.main, "linli/by_place", [community, "offer"])))
                read += len(list(iter_view_docs(couch.main, "linli/by_place", [community, "match"])))
            seconds = time.perf_counter() - started
            documents_read.append(read)
            return seconds

        def ours() -> float:
            started = time.perf_counter()
            plans = matching.run(couch, secretary, now)
            seconds = time.perf_counter() - started
            _forget_proposals(couch, names)  # the next run starts from the same documents
            matched = len({p.need.id for plan in plans.values() for p in plan.proposals})
            expect("needs decided (matched or not)", matched + sum(len(p.unmatched) for p in plans.values()), needs)
            plans_of_runs.append(plans)
            return seconds

        figures = compare(ours, reference, rounds=repeat)
        expect("runs of the reference reading the first run's documents", documents_read.count(documents_read[0]),
               len(documents_read))
        written = [sum(len(p.proposals) for p in plans.values()) for plans in plans_of_runs]
        expect("runs writing the first run's number of proposals", written.count(written[0]), len(written))
        proposals = written[0]
        plans = plans_of_runs[-1]
        matched = len({p.need.id for plan in plans.values() for p in plan.proposals})
        return {"needs": needs, "offers": offers, "communities": communities, "documents_read": documents_read[0],
                "match_seconds": figures["ours"], "reference_read_seconds": figures["reference"],
                "ratio": figures["ratio"], "proposals": proposals,
                "share_matched": round(matched / needs, 3), "repeat": repeat, "load_average": load_average()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--needs", type=int, default=20_000)
    parser.add_argument("--offers", type=int, default=5_000)
    parser.add_argument("--communities", type=int, default=20)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(run(args.needs, args.offers, args.communities, args.seed, args.repeat)), flush=True)


if __name__ == "__main__":
    main()
