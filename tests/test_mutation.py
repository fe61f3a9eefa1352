"""Mutation testing in command 2 (issue 23 item 1): the rule modules changed since the last full run (their
fingerprints in `tests/mutation/last_full_run.json`, written by `python -m tests.mutation --all`) keep ≥ 90% of
their mutants killed and every other one listed as equivalent, capped in mutants and time. When none changed, a
fixed sample (every k-th mutant of the SLA working days) is run and judged the same way, so the check runs every
time. The convention's rules themselves are checked on recorded runs below."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

from tests.mutation import modules
from tests.mutation.__main__ import LAST_FULL_RUN
from tests.mutation.modules import ROOT, Equivalent, ModuleFile
from tests.mutation.verdict import judge
from tests.mutation.workfolder import Run

MAX_MUTANTS = 40  # ~1 s each on CI's 2 cores, after ~20 s of set-up per module
TIME_CAP = 150  # seconds, for the whole bounded run
MAX_MODULES = 3  # more changed than this: the first three; the full run (README) covers the rest
SAMPLE = modules.MODULES / "server.domain.workdays.toml"
MIN_CHECKED = 10  # a run that checked fewer has checked nothing worth the name


def bounded_selection() -> list[str]:
    """The module files the bounded run takes: those whose module, tests or own file changed since the last full run
    (or that it did not run), else the sample."""
    recorded = json.loads(LAST_FULL_RUN.read_text(encoding="utf-8"))["modules"]
    changed = [f for f in modules.all_files()
               if (spec := modules.load(f)).fingerprint() != recorded.get(spec.module, {}).get("fingerprint")]
    return [str(f.relative_to(ROOT)) for f in (changed[:MAX_MODULES] or [SAMPLE])]


def test_the_rule_modules_changed_since_the_last_full_run_keep_their_mutants_killed() -> None:
    selection = bounded_selection()
    command = [sys.executable, "-m", "tests.mutation", *(a for f in selection for a in ("--module", f)),
               "--max-mutants", str(MAX_MUTANTS), "--time-cap", str(TIME_CAP)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIME_CAP + 90)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines and lines[-1].get("summary"), done.stdout + done.stderr
    *verdicts, summary = lines
    assert [v["module"] for v in verdicts] == [modules.load(ROOT / f).module for f in selection]
    assert done.returncode == 0, "\n".join(f"{v['module']}: {p}" for v in verdicts for p in v["problems"])
    assert summary["checked"] >= min(MIN_CHECKED, sum(v["mutants"] for v in verdicts)), summary


class Recorded(Run):
    """A run as mutmut left it, with its mutants' changes given (the real ones come from `mutmut show`)."""

    def changes(self, mutants: list[str]) -> dict[str, str]:
        return {name: CHANGES[name] for name in mutants}


M = [f"server.domain.workdays.x_f__mutmut_{n}" for n in range(1, 21)]
CHANGES = {name: f"return {n} → return {n + 1}" for n, name in enumerate(M)}
SPEC = ModuleFile(SAMPLE, "server/domain/workdays.py", ("tests/test_workdays.py",), ())


def recorded(status: dict[str, str], timed_out: bool = False) -> Recorded:
    return Recorded("server/domain/workdays.py", ROOT, M, M, {n: status.get(n, "killed") for n in M}, 1.0, timed_out,
                    None)


def listed(*entries: tuple[str, str]) -> ModuleFile:
    return replace(SPEC, equivalents=tuple(Equivalent(name, change, "same on every path") for name, change in entries))


def test_a_module_passes_with_every_mutant_killed_or_listed_as_equivalent() -> None:
    verdict = judge(listed((M[0], CHANGES[M[0]])), recorded({M[0]: "survived"}))
    assert verdict.passed and (verdict.killed, verdict.equivalent, verdict.score, verdict.killed_of_all) == (
        19, 1, 1.0, 0.95)
    assert judge(listed((M[0], "0 → 1")), recorded({M[0]: "survived"})).passed  # the changed part of the line
    assert judge(SPEC, recorded({M[1]: "timeout"})).passed  # a mutant that hangs the tests is caught


def test_each_rule_of_the_convention_fails_a_module_on_its_own() -> None:
    unlisted = judge(SPEC, recorded({M[0]: "survived"}))
    assert unlisted.problems == [f"survived, not listed: {M[0]} ({CHANGES[M[0]]})"]
    no_tests = judge(SPEC, recorded({M[0]: "no tests"}))
    assert no_tests.problems == [f"no tests, not listed: {M[0]} ({CHANGES[M[0]]})"]
    # A capped run: two of ten checked survive unlisted; the score counts them (8 of 10) and names both.
    capped = recorded(dict.fromkeys(M[:2], "survived") | dict.fromkeys(M[10:], "not checked"), timed_out=True)
    low = judge(SPEC, capped)
    assert low.problems[0] == "score 0.800 < 0.9: 8 of 10 killed, 0 listed as equivalent" and len(low.problems) == 3
    # Equivalents are no faults: three listed of twenty leave 17 of 17 faults killed, and the share of all is shown.
    leaning = judge(listed(*((n, CHANGES[n]) for n in M[:3])), recorded(dict.fromkeys(M[:3], "survived")))
    assert leaning.passed and (leaning.score, leaning.as_json()["killed_of_all"]) == (1.0, 0.85)
    gone = judge(listed(("server.domain.workdays.x_f__mutmut_99", "a → b")), recorded({}))
    assert gone.problems == ["stale entry: no mutant server.domain.workdays.x_f__mutmut_99 any more"]
    changed = judge(listed((M[0], "return 7 → return 8")), recorded({M[0]: "survived"}))
    assert changed.problems == [f"stale entry: {M[0]} is now {CHANGES[M[0]]!r}, listed as 'return 7 → return 8'"]
    assert not judge(listed((M[0], "return 0")), recorded({M[0]: "survived"})).passed  # no arrow: no change named
    killed = judge(listed((M[0], CHANGES[M[0]])), recorded({}))
    assert killed.problems == [f"stale entry: {M[0]} is killed by the tests now; remove it"]
    unchecked = judge(SPEC, recorded(dict.fromkeys(M, "not checked"), timed_out=True))
    assert unchecked.problems == ["no mutant was checked (time cap too short?)"]
