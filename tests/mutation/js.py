"""One PWA module's mutants (`pwa/….js`), made by StrykerJS's instrumenter (`pwa/tests/mutants.mjs`) and run as
Stryker's command runner runs them: the module file's `node --test` files once per mutant, the mutant switched on by
`__STRYKER_ACTIVE_MUTANT__`; a failing run kills it. The runner is ours, not `stryker run`, because a bounded run
needs what Stryker's does not give: every k-th mutant only, and a time cap that keeps the mutants checked so far.
The work folder (outside the checkout) holds a copy of `pwa/` with the instrumented module in it and links to the
rest of the repository, so the tests read the vectors and the declaration they read in the checkout."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from .modules import ROOT, ModuleFile
from .workfolder import Run, normal, work_folder

ACTIVE = "__STRYKER_ACTIVE_MUTANT__"
LINKED = (".venv", "node_modules")  # what the tests use besides the repository's own folders


@dataclass(frozen=True)
class Mutant:
    id: str
    name: str  # "<line>:<column> <mutator>", "#2"… for a second one there: what a module file lists
    change: str  # the line(s) it changes, before → after


@dataclass(frozen=True)
class JsRun(Run):
    change_by_name: dict[str, str]

    def changes(self, mutants: list[str]) -> dict[str, str]:
        return {name: self.change_by_name[name] for name in mutants}


def prepare(spec: ModuleFile) -> Path:
    work = work_folder(spec)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for entry in [*ROOT.iterdir()]:
        if entry.name == "pwa":
            shutil.copytree(entry, work / "pwa", symlinks=True, ignore=shutil.ignore_patterns("vendor"))
        elif not entry.name.startswith(".") or entry.name in LINKED:
            (work / entry.name).symlink_to(entry)
    return work


def mutants_of(spec: ModuleFile, work: Path) -> list[Mutant]:
    """The module's mutants, and the module in the work folder replaced by its instrumented copy."""
    listed = subprocess.run(["node", "pwa/tests/mutants.mjs", spec.module, str(work / spec.module)], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    source = (ROOT / spec.module).read_text(encoding="utf-8").splitlines()
    mutants: list[Mutant] = []
    seen: dict[str, int] = {}
    for m in json.loads(listed):
        (first, start), (last, end) = m["start"], m["end"]
        name = f"{first}:{start} {m['mutator']}"
        seen[name] = seen.get(name, 0) + 1
        name += f"#{seen[name]}" if seen[name] > 1 else ""
        lines = source[first - 1:last]
        after = lines[0][:start] + m["replacement"] + lines[-1][end:]
        mutants.append(Mutant(m["id"], name, normal(f"{' '.join(lines)} → {after}")))
    return mutants


def run(spec: ModuleFile, max_mutants: int | None, deadline: float, jobs: int) -> JsRun:
    """Each mutant (every k-th one if there are more than `max_mutants`) against the module's tests, `jobs` at once,
    until done or the `deadline` (time.monotonic())."""
    started = time.monotonic()
    work = prepare(spec)
    mutants = mutants_of(spec, work)
    step = -(-len(mutants) // max_mutants) if max_mutants and len(mutants) > max_mutants else 1
    selected = mutants[::step]
    names = [m.name for m in mutants]
    status = {m.name: "not checked" for m in selected}
    changes = {m.name: m.change for m in mutants}
    baseline = _tests(spec, work, None, timeout=120)
    if baseline[0] != "survived":  # no mutant on: the tests must pass, or no mutant's death means anything
        return JsRun(spec.module, work, names, [m.name for m in selected], status, time.monotonic() - started, False,
                     f"the tests fail with no mutant on ({baseline[0]}): {baseline[1][-2000:]}", changes)
    timeout = max(10.0, 3 * baseline[2])
    timed_out = False
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        waiting = iter(selected)
        running: dict[Future[tuple[str, str, float]], Mutant] = {}
        while True:
            while len(running) < jobs and time.monotonic() < deadline and (m := next(waiting, None)):
                running[pool.submit(_tests, spec, work, m.id, timeout)] = m
            if not running:
                break
            done, _ = wait(running, timeout=max(0.1, deadline - time.monotonic()), return_when=FIRST_COMPLETED)
            for future in done:
                status[running.pop(future).name] = future.result()[0]
            timed_out = timed_out or time.monotonic() >= deadline
    timed_out = timed_out and "not checked" in status.values()
    return JsRun(spec.module, work, names, [m.name for m in selected], status, time.monotonic() - started, timed_out,
                 None, changes)


def _tests(spec: ModuleFile, work: Path, mutant: str | None, timeout: float) -> tuple[str, str, float]:
    """The module's node tests with `mutant` on: "killed" (they fail), "timeout", or "survived" (they pass); their
    output; the seconds they took."""
    env = {k: v for k, v in os.environ.items() if k != ACTIVE} | ({ACTIVE: mutant} if mutant else {})
    started = time.monotonic()
    # A session of its own: at the timeout, node --test and the test processes it started are stopped together.
    node = subprocess.Popen(["node", "--test", *spec.tests], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = node.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(node.pid, signal.SIGKILL)
        node.communicate()
        return "timeout", "", time.monotonic() - started
    return ("survived" if node.returncode == 0 else "killed"), output, time.monotonic() - started
