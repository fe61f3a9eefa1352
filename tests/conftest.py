"""Shared fixtures: a real pouchdb-server for the whole session, fresh databases per test."""

from __future__ import annotations

import importlib.util
import itertools
import logging
import os
import py_compile
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from jinja2 import StrictUndefined, Undefined
from starlette.testclient import TestClient

from crypto.keys import new_key
from server.security.firewall import Firewall
from server.security.keystore import KeyStore
from server.services import demo
from server.store.config import Settings
from server.store.couch import Couch, bulk_save, connect
from server.store.embedded_couch import EmbeddedCouch, free_port
from server.web.app import create_app, templates
from tests.mutation.modules import SHARED_COUCH

from . import street
from .journeys import journey_browser, journey_served  # noqa: F401  (session fixtures of the journey tests)
from .log_scan import (
    KEEPER,
    SERVED_OUTPUT,
    SERVED_RESIDENTS,
    leaks,
    protected_values,
    scanned_lines,
    served_lines,
    tracebacks,
)
from .street import hashed

_prefixes = itertools.count()
SHARED = os.environ.get(SHARED_COUCH)


class PrintedUndefinedFails(StrictUndefined):
    """Jinja2's side of Nunjucks' `throwOnUndefined` (pwa/render.js strict): during tests, printing, iterating or
    looking into an undefined value fails; testing one (`{% if doc.optional_field %}`) is false, as in Nunjucks."""

    def __bool__(self) -> bool:
        return False

    __eq__ = Undefined.__eq__
    __ne__ = Undefined.__ne__
    __hash__ = Undefined.__hash__


templates.env.undefined = PrintedUndefinedFails  # for every page a test renders


@pytest.fixture(scope="session")
def couch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCouch]:
    """One real pouchdb-server process on a free loopback port, torn down at the end; in a mutation run, the one
    the runner started for all its mutants' test runs (tests/mutation/modules.py, SHARED_COUCH)."""
    if SHARED:
        port, folder = SHARED.split(":", 1)
        yield EmbeddedCouch(Path(folder), int(port))  # started and stopped by the runner
        return
    with EmbeddedCouch(tmp_path_factory.mktemp("couch")) as server:
        yield server


def serve_app(app: Any, name: str) -> tuple[uvicorn.Server, str]:
    """An ASGI app served by uvicorn on a free loopback port, in a thread; returns the server (set `should_exit`
    to stop it) and its URL, with a trailing slash."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True, name=name).start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, f"{name} did not start"
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}/"


def make_settings(data_dir: Path, prefix: str, **overrides: object) -> Settings:
    values: dict[str, object] = dict(
        data_dir=data_dir, couchdb_url=None, couchdb_user=None, couchdb_password=None, db_prefix=prefix,
        secret_key=secrets.token_urlsafe(32), host="127.0.0.1", port=0, session_max_age=3600, cookie_secure=False,
        master_keys=(new_key(),))
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, f"t{next(_prefixes)}_{secrets.token_hex(3)}_")


@pytest.fixture
def couch(couch_server: EmbeddedCouch, settings: Settings) -> Iterator[Couch]:
    """Fresh, empty Linli databases (unique prefix) on the session's pouchdb-server."""
    couch = connect(settings, couch_server.url)
    yield couch
    if SHARED:  # hundreds of mutants' runs on one server: each leaves nothing open behind it
        for db in (couch.main, couch.accounts):
            couch.server.delete(db.name)


@pytest.fixture
def firewall(couch: Couch, settings: Settings) -> Firewall:
    return Firewall.open(settings, couch)


@pytest.fixture
def keys(firewall: Firewall) -> KeyStore:
    """The installation's keys (the firewall's keystore): what the time bank opens residents' codes with."""
    return firewall.keystore


@pytest.fixture
def loaded(couch: Couch, firewall: Firewall) -> Couch:
    """The small hand-made street of tests/street.py, stored as the server stores it (sealed)."""
    assert not [r for r in bulk_save(couch.main, firewall.seal_for_storage(street.community_docs())) if r.error]
    assert not [r for r in bulk_save(couch.accounts, street.users()) if r.error]
    return couch


@pytest.fixture
def client(loaded: Couch, settings: Settings) -> Iterator[TestClient]:
    """The web app over `loaded`, not following redirects, so that tests see them."""
    with TestClient(create_app(settings, loaded), follow_redirects=False) as c:
        yield c


DEMO_SIZE = demo.DemoSize(communities=2, grids_per_community=2, households_per_grid=8)


@pytest.fixture
def demo_loaded(couch: Couch, firewall: Firewall) -> Couch:
    """A small demo street (2 communities × 2 grids × 8 households), loaded as `linli serve` loads it, without
    the year of history, so that tests count only what they make (tests/test_demo_history.py loads it)."""
    demo.load(couch, firewall, size=DEMO_SIZE, password_hash=hashed("demo-password"), history=False)
    return couch


@pytest.fixture
def web(demo_loaded: Couch, settings: Settings) -> Iterator[TestClient]:
    """The small demo street's web app, with the resident account `jumin1` (tests/browser.py DEMO_RESIDENT);
    sign in with street.as_user(web, username, "demo-password"). Its clocks do not run: a test runs the minute
    jobs it means to test itself, unraced (one sweep applying a phone's answer between a test's save and its read
    failed CI once)."""
    from server.security import accounts
    from tests.browser import DEMO_RESIDENT

    demo_loaded.accounts.save(accounts.make_user("jumin1", "居民甲", [accounts.Role.RESIDENT], demo.STREET_ID,
                                                 hashed("demo-password"), resident=DEMO_RESIDENT))
    with TestClient(create_app(settings, demo_loaded, clocks=False), follow_redirects=False) as client:
        yield client


def pytest_sessionstart(session: pytest.Session) -> None:
    logging.getLogger().addHandler(KEEPER)  # every record that reaches the root logger, whatever its level
    compile_project()


PACKAGES = ("server", "sync", "crypto", "ble_gateway", "tests")


def compile_project() -> None:
    """With PYTHONDONTWRITEBYTECODE set (this machine's environment sets it) every `linli` process the tests start,
    a hundred and more, compiled the project's modules from source again: about a second each on a quiet core, 4 s
    on a loaded one. Compiled here once, each module again only when its source changed; checked by hash, not time,
    so that a module changed within the same second (a mutant, tests/mutation/) is never run from a stale file."""
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return  # Python writes them itself
    root = Path(__file__).resolve().parent.parent
    for package in PACKAGES:
        for source in (root / package).rglob("*.py"):
            compiled = Path(importlib.util.cache_from_source(str(source)))
            if not _compiled_from(compiled, source.read_bytes()):
                py_compile.compile(str(source), str(compiled),
                                   invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)


CHECKED_HASH_FLAGS = (0b11).to_bytes(4, "little")  # PEP 552: hash-based, checked against the source at import


def _compiled_from(compiled: Path, source: bytes) -> bool:
    try:
        header = compiled.read_bytes()[:16]
    except OSError:
        return False
    return header == importlib.util.MAGIC_NUMBER + CHECKED_HASH_FLAGS + importlib.util.source_hash(source)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any log line written in this process or by a `linli serve` it started holds a protected
    field's plaintext, or if such a server printed a traceback (tests/log_scan.py). In a pytest-xdist worker
    (`./dev test` runs two) the findings go to the controller, which reports every worker's."""
    found, uncaught = _log_findings()
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["log_findings"] = (found[:10], uncaught[:5])
        return
    for worker_found, worker_uncaught in _WORKERS_FINDINGS:
        found += worker_found
        uncaught += worker_uncaught
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for value, line in found[:10]:
        reporter.write_line(f"PROTECTED PLAINTEXT IN A LOG LINE ({value[:3]}…): {line[:300]}", red=True)
    for block in uncaught[:5]:
        reporter.write_line(f"A SERVER PRINTED A TRACEBACK:\n{block[-4000:]}", red=True)
    if found or uncaught:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _log_findings() -> tuple[list[tuple[str, str]], list[str]]:
    """This process's log lines holding a protected value, and its servers' tracebacks."""
    lines = list(scanned_lines())
    if not lines:  # xdist's controller runs no test: nothing to scan, and the demo need not be generated (~8 s)
        return [], []
    served = demo.generate(size=demo.DemoSize.for_residents(SERVED_RESIDENTS)) if SERVED_OUTPUT else ()  # ~8 s
    values = protected_values([*street.community_docs(), *demo.generate(size=DEMO_SIZE), *served])
    return leaks(lines, values), tracebacks(served_lines())


_WORKERS_FINDINGS: list[tuple[list[tuple[str, str]], list[str]]] = []


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook, called in the controller as each worker ends
def pytest_testnodedown(node: Any, error: object) -> None:
    _WORKERS_FINDINGS.append(getattr(node, "workeroutput", {}).get("log_findings", ([], [])))


# ---------------------------------------------------------------- test order
# pytest-randomly, asked for a seed (`--randomly-seed=N`), shuffles the files and the tests inside each: a test that
# needs another to have run first fails under some seed. Without one, the files and tests keep their order and
# `random` is seeded with ORDER_SEED, so every run (CI's too) gives the same answer.
# The journeys keep their file order inside the file (_in_file_order), the files themselves still shuffled: a
# journey's tests are the steps of one person's day on the one shared server (tests/journeys.py), each journey in
# its own grids, and a step cannot come before the one it follows.
# A test marked `right_after_start` runs first of all: it is about the moment after the journeys' server
# (tests/journeys.py) prints its URL, before anyone has used it, which only the first visitor sees.

ORDER_SEED = 1


@pytest.hookimpl(tryfirst=True)  # before pytest-randomly draws a seed of its own
def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("randomly") and config.getoption("randomly_seed") == "default":
        config.option.randomly_seed = ORDER_SEED
        config.option.randomly_reorganize = False


_COLLECTED_AT = pytest.StashKey[int]()
_collected = itertools.count()


def pytest_itemcollected(item: pytest.Item) -> None:
    item.stash[_COLLECTED_AT] = next(_collected)


def _in_file_order(path: Path) -> bool:
    return path.name.startswith("test_journey_")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's worker reads the groups (`--dist loadgroup`)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Runs after pytest-randomly's shuffle (a wrapper around this hook): puts the tests of each file kept in file
    order back in that order, in the places the shuffle gave that file; then those marked `right_after_start`
    first; then gives each test its xdist group (_group_by_file)."""
    kept: dict[str, list[int]] = {}
    for place, item in enumerate(items):
        if _in_file_order(item.path):
            kept.setdefault(str(item.path), []).append(place)
    for places in kept.values():
        in_file_order = sorted((items[p] for p in places), key=lambda item: item.stash[_COLLECTED_AT])
        for place, item in zip(places, in_file_order, strict=True):
            items[place] = item
    items.sort(key=lambda item: item.get_closest_marker("right_after_start") is None)  # stable: the rest keep order
    _group_by_file(items)


def _group_by_file(items: list[pytest.Item]) -> None:
    """`./dev test` runs the tests in two pytest-xdist workers (`--dist loadgroup`), a file at a time on one worker,
    so that a file's module fixtures start once and its tests keep their order; the files that use the journeys'
    server (tests/journeys.py, a `linli serve` with the year's demo) all go to one worker, which starts it once
    and runs them first (the `right_after_start` test leads them)."""
    journeys = {str(item.path) for item in items if "journey_served" in getattr(item, "fixturenames", ())}
    for item in items:
        path = str(item.path)
        item.add_marker(pytest.mark.xdist_group("journeys" if path in journeys else path))

