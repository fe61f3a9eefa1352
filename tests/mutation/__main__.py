"""`python -m tests.mutation --all | --module FILE … | --changed-since REF [--max-mutants N] [--time-cap S]`:
one JSON line per module, then a summary line; exit 1 if a module fails the convention (README.md)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

from . import js, modules
from .modules import ROOT, ModuleFileError
from .verdict import Verdict, judge
from .workfolder import run

LAST_FULL_RUN = Path(__file__).resolve().parent / "last_full_run.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true",
                       help="every module file, every mutant: the full run (records last_full_run.json)")
    which.add_argument("--module", action="append", type=Path, metavar="FILE",
                       help="a module file (tests/mutation/modules/….toml) or the source file it names; repeatable")
    which.add_argument("--changed-since", metavar="REF",
                       help="the module files whose module, tests or own file changed since REF")
    parser.add_argument("--max-mutants", type=int, metavar="N",
                        help="at most N mutants over all modules (every k-th of each module's)")
    parser.add_argument("--time-cap", type=float, metavar="SECONDS",
                        help="stop then; judge the mutants checked so far")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once (default 2)")
    args = parser.parse_args(argv)
    try:
        files = _chosen(args)
        specs = [modules.load(f) for f in files]
    except ModuleFileError as error:
        parser.error(str(error))
    deadline = time.monotonic() + (args.time_cap or 10**9)
    per_module = max(1, args.max_mutants // len(specs)) if args.max_mutants and specs else None
    verdicts: list[Verdict] = []
    for spec in specs:
        runner = js.run if spec.module.endswith(".js") else run  # the PWA's JavaScript: StrykerJS's mutants
        verdict = judge(spec, runner(spec, per_module, deadline, args.jobs))
        verdicts.append(verdict)
        print(json.dumps(verdict.as_json(), ensure_ascii=False), flush=True)
    failed = [v.module for v in verdicts if not v.passed]
    summary = {"summary": True, "modules": len(verdicts), "failed": failed,
               "checked": sum(v.checked for v in verdicts), "killed": sum(v.killed for v in verdicts),
               "seconds": round(sum(v.seconds for v in verdicts), 1)}
    if not args.max_mutants and not args.time_cap:  # every mutant of each module run: its latest full run
        summary["recorded"] = _record(specs, verdicts) if not failed else "not recorded: a module failed"
    print(json.dumps(summary, ensure_ascii=False), flush=True)
    return 1 if failed or not verdicts else 0


def _chosen(args: argparse.Namespace) -> list[Path]:
    every = modules.all_files()
    if args.all:
        return every
    if args.changed_since:
        return modules.changed_since(every, args.changed_since)
    by_source = {modules.load(f).module: f for f in every}
    chosen = []
    for given in args.module:
        path = given.resolve()
        rel = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(given)
        if path.suffix == ".toml" and path.is_file():
            chosen.append(path)
        elif rel in by_source:
            chosen.append(by_source[rel])
        else:
            raise ModuleFileError(f"{given}: neither a module file nor a module with one")
    return chosen


def _record(specs: list[modules.ModuleFile], verdicts: list[Verdict]) -> str:
    """Each module's latest full run: its figures, the commit they were measured at and its fingerprint (the
    bounded run checks what changed since). A run of some modules updates theirs and keeps the others'."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.strip()
    finished = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    record = json.loads(LAST_FULL_RUN.read_text(encoding="utf-8")) if LAST_FULL_RUN.exists() else {"modules": {}}
    known = {spec.module for spec in map(modules.load, modules.all_files())}
    record = {"modules": {m: figures for m, figures in record["modules"].items() if m in known}}
    for spec, verdict in zip(specs, verdicts, strict=True):
        figures = {k: verdict.as_json()[k] for k in ("mutants", "killed", "equivalent", "score", "killed_of_all",
                                                     "seconds")}
        record["modules"][verdict.module] = {**figures, "fingerprint": spec.fingerprint(),
                                             "commit": head.stdout.strip(), "uncommitted_changes": bool(dirty),
                                             "finished": finished}
    record["modules"] = dict(sorted(record["modules"].items()))
    LAST_FULL_RUN.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return str(LAST_FULL_RUN.relative_to(ROOT))


if __name__ == "__main__":
    sys.exit(main())
