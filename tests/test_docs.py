"""The map stays honest: ARCHITECTURE.md and the folder READMEs name what exists, and everything that exists.

- every sub-package of server/ has a README naming each of its modules (and folders);
- every file, module or function a README or ARCHITECTURE.md names exists (paths like `server/web/app.py`,
  bare names like `app.py` beside the README, dotted names like `crypto.keys.wrap_for_device`);
- ARCHITECTURE.md names every layer of the layers contract in pyproject.toml and every root package;
- in ARCHITECTURE.md's sequence diagrams, each participant that is a path exists, and each call `name(` of a
  message is found in the code of its sender or its receiver;
- every folder README says what it may import, and for a package under an import contract that statement
  names nothing the contracts forbid it and everything of ours its code does import.
"""

from __future__ import annotations

import ast
import importlib
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "server"
ARCHITECTURE = ROOT / "ARCHITECTURE.md"
SUBPACKAGES = sorted(p for p in SERVER.iterdir() if (p / "__init__.py").exists())
SKIPPED_DIRS = {"node_modules", "vendor", "data", "test-output", "__pycache__"}
ROOT_PACKAGES = ("server", "sync", "crypto", "ble_gateway")
SOURCE = r"(?:py|js|mjs|md)"
# A path with at least one folder, not inside a longer path or a relative link ("../").
PATH = re.compile(rf"(?<![\w/.-])((?:[\w-]+/)+[\w.-]+\.{SOURCE})(?![\w/])")
BARE = re.compile(rf"`([\w-]+\.{SOURCE})`")
DOTTED = re.compile(rf"(?<![\w/.-])((?:{'|'.join(ROOT_PACKAGES)})(?:\.\w+)+)")
FILE_SUFFIXES = {"py", "js", "mjs", "md", "toml", "json"}


def _docs() -> list[Path]:
    readmes = [p for p in ROOT.rglob("README.md")
               if not any(part.startswith(".") or part in SKIPPED_DIRS for part in p.relative_to(ROOT).parts)]
    return sorted({ARCHITECTURE, *readmes})


DOCS = _docs()
FOLDER_READMES = [p for p in DOCS if p.parent != ROOT and p.parent.parent in (ROOT, SERVER)
                  and p.parent.name != "deploy"]


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


def _resolve(doc: Path, name: str) -> Path | None:
    """A named file, looked for beside the document, then from the repository's root."""
    for base in (doc.parent, ROOT):
        if (base / name).exists():
            return base / name
    return None


def named_files(doc: Path) -> set[str]:
    text = doc.read_text(encoding="utf-8")
    return set(PATH.findall(text)) | set(BARE.findall(text))


def dotted_names(doc: Path) -> set[str]:
    return {n for n in DOTTED.findall(doc.read_text(encoding="utf-8")) if n.rsplit(".", 1)[1] not in FILE_SUFFIXES}


def resolves(dotted: str) -> bool:
    """True if `dotted` is a module of ours, or a module and attributes (a function, a class, a method)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize("package", SUBPACKAGES, ids=_ids(SUBPACKAGES))
def test_every_server_sub_package_has_a_readme_naming_each_of_its_modules(package: Path) -> None:
    readme = package / "README.md"
    assert readme.exists(), f"{readme.relative_to(ROOT)} is missing"
    text = readme.read_text(encoding="utf-8")
    modules = [p.name for p in package.glob("*.py") if p.name != "__init__.py"]
    folders = [f"{p.name}/" for p in package.iterdir() if p.is_dir() and p.name not in SKIPPED_DIRS]
    missing = [name for name in sorted(modules + folders) if f"`{name}`" not in text]
    assert not missing, f"{readme.relative_to(ROOT)} does not name {missing}"
    assert package.name in (SERVER / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_every_file_a_document_names_exists(doc: Path) -> None:
    missing = sorted(name for name in named_files(doc) if _resolve(doc, name) is None)
    assert not missing, f"{doc.relative_to(ROOT)} names files that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_every_module_and_function_a_document_names_exists(doc: Path) -> None:
    missing = sorted(name for name in dotted_names(doc) if not resolves(name))
    assert not missing, f"{doc.relative_to(ROOT)} names modules or functions that do not exist: {missing}"


def test_architecture_names_every_layer_and_root_package_of_the_import_contracts() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    layers = [layer for c in config["contracts"] if c["type"] == "layers" for layer in c["layers"]]
    assert layers, "pyproject.toml has no layers contract"
    text = ARCHITECTURE.read_text(encoding="utf-8")
    missing = [name for name in [*layers, *config["root_packages"]] if not re.search(rf"\b{re.escape(name)}\b", text)]
    assert not missing, f"ARCHITECTURE.md does not name {missing}"


def sequence_diagrams(text: str) -> list[str]:
    return [block for block in re.findall(r"```mermaid\n(.*?)```", text, re.S) if block.startswith("sequenceDiagram")]


def diagram_errors(block: str) -> list[str]:
    """Participants that are paths must exist; each call `name(` must be in its sender's or receiver's code."""
    files: dict[str, list[Path]] = {}
    # Mermaid ends a statement at ";": a message with one is cut short and the diagram does not render.
    errors = [f"a ';' breaks this line: {line.strip()}" for line in block.splitlines() if ";" in line]
    for alias, target in re.findall(r"^\s*participant (\w+) as (\S+)$", block, re.M):
        if "/" in target:
            path = ROOT / target
            if not path.exists():
                errors.append(f"participant {alias}: {target} does not exist")
            files[alias] = sorted(path.rglob("*.py")) if path.is_dir() else [path]
    for sender, receiver, message in re.findall(r"^\s*(\w+)-[->x)]+(\w+): (.*)$", block, re.M):
        code = "\n".join(p.read_text(encoding="utf-8") for p in files.get(sender, []) + files.get(receiver, [])
                         if p.exists())
        if not code:
            continue
        for name in re.findall(r"\b([A-Za-z_]\w*)\(", message):
            if not re.search(rf"\b{name}\b", code):
                errors.append(f"{sender}->>{receiver}: {name}() is in neither's code")
    return errors


def test_the_sequence_diagrams_name_real_files_and_real_calls() -> None:
    blocks = sequence_diagrams(ARCHITECTURE.read_text(encoding="utf-8"))
    assert len(blocks) >= 3, "ARCHITECTURE.md should walk three paths as sequence diagrams"
    errors = [e for block in blocks for e in diagram_errors(block)]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("readme", FOLDER_READMES, ids=_ids(FOLDER_READMES))
def test_every_folder_readme_says_what_it_may_import(readme: Path) -> None:
    assert re.search(r"^May (import|use)\b", readme.read_text(encoding="utf-8"), re.M), (
        f"{readme.relative_to(ROOT)} does not say what it may import")


def contracts() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]


def _contracted() -> dict[Path, str]:
    """Folder READMEs of the packages the import contracts speak about, and the package each one is."""
    config = contracts()
    packages = {*config["root_packages"], *(layer for c in config["contracts"] for layer in c.get("layers", []))}
    readmes = {readme: ".".join(readme.parent.relative_to(ROOT).parts) for readme in FOLDER_READMES}
    return {readme: package for readme, package in readmes.items() if package in packages and package != "server"}


CONTRACTED = _contracted()


def forbidden_for(package: str) -> set[str]:
    """What the contracts forbid `package` to import: forbidden contracts' lists, and the layers above it."""
    forbidden: set[str] = set()
    for contract in contracts()["contracts"]:
        if contract["type"] == "forbidden" and any(package == s or package.startswith(s + ".")
                                                   for s in contract["source_modules"]):
            forbidden |= set(contract["forbidden_modules"])
        if contract["type"] == "layers" and package in contract["layers"]:
            forbidden |= set(contract["layers"][:contract["layers"].index(package)])
    return forbidden


def may_import_statement(readme: Path) -> str:
    """The first sentence of the README's "May import: …" (what follows, "Never …", is not a permission)."""
    found = re.search(r"^May (?:import|use)\b(.*?)\.(?:\s|$)", readme.read_text(encoding="utf-8"), re.M | re.S)
    return found.group(1) if found else ""


def named_modules(statement: str) -> set[str]:
    """Modules a statement names: `server.store.config`, `crypto/`, and third-party names as plain words."""
    names = {token.rstrip("/").replace("/", ".") for token in re.findall(r"`([\w./]+)`", statement)}
    return names | {word.lower() for word in re.findall(r"\b(Starlette|pycouchdb|httpx2?)\b", statement, re.I)}


def unit(module: str) -> str:
    """The part of the project an import lands in: a server sub-package, or a root package."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "server" else parts[0]


def imported_units(package: str) -> set[str]:
    """The parts of the project the package's own code imports (itself left out)."""
    units = set()
    for path in (ROOT / package.replace(".", "/")).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                       else [])
            units |= {unit(m) for m in modules if m.split(".")[0] in ROOT_PACKAGES}
    return units - {unit(package)}


@pytest.mark.parametrize("readme", sorted(CONTRACTED), ids=_ids(sorted(CONTRACTED)))
def test_what_a_readme_says_it_may_import_agrees_with_the_contracts_and_the_code(readme: Path) -> None:
    package = CONTRACTED[readme]
    named = named_modules(may_import_statement(readme))
    against = sorted(n for n in named for f in forbidden_for(package) if n == f or n.startswith(f + "."))
    assert not against, f"{readme.relative_to(ROOT)} allows what the contracts forbid {package}: {against}"
    unnamed = sorted(u for u in imported_units(package) if not any(unit(n) == u for n in named))
    assert not unnamed, f"{package} imports {unnamed}, which {readme.relative_to(ROOT)} does not say it may"
