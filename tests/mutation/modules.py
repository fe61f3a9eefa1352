"""The committed module files (`modules/<dotted module>.toml`, the convention in README.md): what to mutate, the
tests that kill its mutants, and the mutants listed as equivalent with their change and reason."""

from __future__ import annotations

import hashlib
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = Path(__file__).resolve().parent / "modules"
# A module file's `pouchdb = true`: the runner starts one pouchdb-server for the whole run and names it to the tests
# in this variable ("<port>:<folder>"); tests/conftest.py's couch_server uses it instead of starting its own.
SHARED_COUCH = "LINLI_MUTATION_COUCH"


@dataclass(frozen=True)
class Equivalent:
    mutant: str
    change: str  # the changed line(s), before → after, as `mutmut show` prints them
    why: str


@dataclass(frozen=True)
class ModuleFile:
    file: Path  # the .toml
    module: str  # the source file, relative to the repository: "server/domain/workdays.py"
    tests: tuple[str, ...]  # test files (or node ids) run against each mutant
    equivalents: tuple[Equivalent, ...]
    pouchdb: bool = False  # its tests use the session's pouchdb-server: one is started for the whole run

    def fingerprint(self) -> str:
        """A hash of what the module's figures depend on: its source, its tests and this file. A full run records it;
        a module whose fingerprint differs has changed since (whatever the commits were called after a merge)."""
        digest = hashlib.sha256()
        for path in (self.file, ROOT / self.module, *sorted({ROOT / t.split("::")[0] for t in self.tests})):
            digest.update(path.read_bytes())
        return digest.hexdigest()[:16]

    @property
    def dotted(self) -> str:
        """The module's dotted name, the prefix of its mutants' names."""
        return self.module.removesuffix(".py").replace("/", ".")


class ModuleFileError(ValueError):
    """A module file that does not follow the convention (named in the message)."""


def load(file: Path) -> ModuleFile:
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ModuleFileError(f"{file.name}: not valid TOML ({error})") from None
    unknown = sorted(set(data) - {"module", "tests", "equivalent", "pouchdb"})
    module, tests = data.get("module"), data.get("tests")
    if unknown:
        raise ModuleFileError(f"{file.name}: unknown key(s) {', '.join(unknown)}")
    if not isinstance(module, str) or not (ROOT / module).is_file():
        raise ModuleFileError(f"{file.name}: `module` must name a source file of the repository, not {module!r}")
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
        raise ModuleFileError(f"{file.name}: `tests` must be a non-empty list of test files")
    missing = [t for t in tests if not (ROOT / t.split("::")[0]).is_file()]
    if missing:
        raise ModuleFileError(f"{file.name}: no such test file(s) {', '.join(missing)}")
    if not isinstance(data.get("pouchdb", False), bool):
        raise ModuleFileError(f"{file.name}: `pouchdb` is true or false")
    entries = data.get("equivalent", [])
    for n, entry in enumerate(entries, 1):
        if set(entry) != {"mutant", "change", "why"} or not all(isinstance(v, str) and v.strip()
                                                               for v in entry.values()):
            raise ModuleFileError(f"{file.name}: equivalent #{n} needs exactly `mutant`, `change` and `why`")
    equivalents = tuple(Equivalent(e["mutant"], e["change"], e["why"]) for e in entries)
    names = [e.mutant for e in equivalents]
    if len(set(names)) != len(names):
        raise ModuleFileError(f"{file.name}: a mutant is listed twice")
    return ModuleFile(file, module, tuple(tests), equivalents, data.get("pouchdb", False))


def all_files() -> list[Path]:
    return sorted(MODULES.glob("*.toml"))


def changed_since(files: list[Path], ref: str) -> list[Path]:
    """The module files whose module, tests or own file changed since `ref` (committed or not)."""
    diff = subprocess.run(["git", "diff", "--name-only", ref, "--"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout
    untracked = subprocess.run(["git", "ls-files", "--others", "--exclude-standard"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout
    changed = set((diff + untracked).split())
    picked = []
    for file in files:
        spec = load(file)
        touched = {str(file.relative_to(ROOT)), spec.module, *(t.split("::")[0] for t in spec.tests)}
        if touched & changed:
            picked.append(file)
    return picked
