"""The convention's rules applied to one module's run: (a) killed ÷ (mutants checked − those listed as equivalent)
≥ 0.90, timeouts counting as killed — the usual mutation score: an equivalent mutant is no fault to find (a
string's case in SQL, an argument a library never reads), and counting it would make a module with many such
lines fail however well tested; the share of all mutants killed is printed beside it (`killed_of_all`), so a
module that leans on equivalents shows it; (b) every mutant not killed is listed as equivalent; a listed mutant
that no longer exists, whose change differs from the one listed, or that the tests now kill is a stale entry and
fails the module."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .modules import ModuleFile
from .workfolder import Run, normal

MIN_SCORE = 0.90
KILLED = {"killed", "timeout", "caught by type check"}


@dataclass
class Verdict:
    module: str
    mutants: int
    checked: int
    killed: int
    equivalent: int  # listed in the module file and not killed in this run
    seconds: float
    sampled: bool  # a mutant cap ran every k-th mutant only
    timed_out: bool
    problems: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        faults = self.checked - self.equivalent
        return self.killed / faults if faults else 0.0

    @property
    def killed_of_all(self) -> float:
        return self.killed / self.checked if self.checked else 0.0

    @property
    def passed(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {"module": self.module, "passed": self.passed, "mutants": self.mutants, "checked": self.checked,
                "killed": self.killed, "equivalent": self.equivalent, "score": round(self.score, 4),
                "killed_of_all": round(self.killed_of_all, 4),
                "seconds": round(self.seconds, 1), "sampled": self.sampled, "timed_out": self.timed_out,
                "problems": self.problems}


def judge(spec: ModuleFile, run: Run) -> Verdict:
    checked = [name for name in run.selected if run.status[name] != "not checked"]
    killed = [name for name in checked if run.status[name] in KILLED]
    not_killed = [name for name in checked if run.status[name] not in KILLED]
    listed = {e.mutant: e for e in spec.equivalents}
    existing = set(run.names)
    changes = run.changes(sorted((set(not_killed) | set(listed)) & existing))
    verdict = Verdict(spec.module, len(run.names), len(checked), len(killed),
                      sum(1 for name in not_killed if name in listed), run.seconds,
                      len(run.selected) < len(run.names), run.timed_out)
    problems = verdict.problems
    if run.error:
        problems.append(run.error)
    if not checked:
        problems.append("no mutant was checked (time cap too short?)")
    elif verdict.score < MIN_SCORE:
        problems.append(f"score {verdict.score:.3f} < {MIN_SCORE}: {len(killed)} of {len(checked)} killed, "
                        f"{verdict.equivalent} listed as equivalent")
    for name in not_killed:
        if name not in listed:
            problems.append(f"{run.status[name]}, not listed: {name} ({changes[name]})")
    for name, entry in listed.items():
        if name not in existing:
            problems.append(f"stale entry: no mutant {name} any more")
        elif not same_change(entry.change, changes[name]):
            problems.append(f"stale entry: {name} is now {changes[name]!r}, listed as {normal(entry.change)!r}")
        elif name in killed:
            problems.append(f"stale entry: {name} is killed by the tests now; remove it")
    return verdict


def same_change(listed: str, actual: str) -> bool:
    """The listed change is the mutant's: its changed lines as the runner prints them, or the changed part of them
    (`.encode("utf-8") → .encode("UTF-8")`: each side found in its side of the lines)."""
    before, arrow, after = normal(listed).partition(" → ")
    actual_before, _, actual_after = actual.partition(" → ")
    return bool(arrow) and before in actual_before and after in actual_after
