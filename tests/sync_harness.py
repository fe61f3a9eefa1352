"""What the sync tests share: a small street in CouchDB, `linli serve` with the gateway as a real
process, logins, and phones (Node + PouchDB, `pwa/tests/sync_phone.mjs`) driven line by line."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from crypto import keys
from server.domain.access import Principal, may_see
from server.domain.declaration import Role
from server.security import accounts
from server.security.firewall import Firewall
from server.store.config import PROJECT_ROOT, Settings
from server.store.couch import Couch, bulk_save, connect
from server.store.embedded_couch import EmbeddedCouch, free_port
from sync.principals import TTL_SECONDS

from .conftest import SHARED, make_settings
from .log_scan import LOG_FILES
from .node_process import NodeProcess
from .street import hashed

LINLI = str(Path(sys.executable).parent / "linli")
PHONE = PROJECT_ROOT / "pwa" / "tests" / "sync_phone.mjs"
PASSWORD = "sync test password"
STREET = "street:s1"
C1 = "community:c1"
G1, G2 = "grid:c1-g1", "grid:c1-g2"


def recently(hours: float = 1) -> str:
    """A time this many hours ago, in the street's zone: what a phone writes now (the gateway refuses a time more
    than 10 minutes ahead or 90 days back, so fixed dates would stop syncing)."""
    return (dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)).astimezone(
        dt.timezone(dt.timedelta(hours=8))).isoformat(timespec="seconds")


NOW = recently()


def household(grid: str, n: int, **extra: Any) -> dict[str, Any]:
    key = f"{grid.split(':')[1]}-h{n:03d}"
    return {"_id": f"household:{key}", "type": "household", "street": STREET, "community": C1, "grid": grid,
            "address": f"幸福路{n}号", "member_count": 1, **extra}


def resident(grid: str, n: int) -> dict[str, Any]:
    key = f"{grid.split(':')[1]}-h{n:03d}"
    return {"_id": f"resident:{key}-1", "type": "resident", "street": STREET, "community": C1, "grid": grid,
            "household": f"household:{key}", "name": f"居民{n}", "gender": "female", "birth_date": "1950-01-01"}


def visit(grid: str, n: int, by: str, **extra: Any) -> dict[str, Any]:
    key = f"{grid.split(':')[1]}-h{n:03d}"
    return {"_id": f"visit:{key}-{by.split(':')[1]}", "type": "visit", "street": STREET, "community": C1,
            "grid": grid, "household": f"household:{key}", "kind": "routine", "visited_at": NOW,
            "created_by": by, "created_at": NOW, **extra}


USERS = {
    "wangge01": dict(roles=[Role.GRID_WORKER], communities=[C1], grids=[G1]),
    "wangge02": dict(roles=[Role.GRID_WORKER], communities=[C1], grids=[G2]),
    "zhiyuan01": dict(roles=[Role.VOLUNTEER], communities=[C1], grids=[G1]),
    "shuji1": dict(roles=[Role.SECRETARY], communities=[C1]),
    "gw1": dict(roles=[Role.GATEWAY], communities=[C1], grids=[G1], gateway="gateway:gw1"),
}


def seed(couch: Couch, households_per_grid: int = 20) -> list[dict[str, Any]]:
    """The street: 2 grids of households with a resident each, a device and a gateway; the accounts."""
    docs: list[dict[str, Any]] = [
        {"_id": STREET, "type": "street", "street": STREET, "name": "洪山街道"},
        {"_id": C1, "type": "community", "street": STREET, "community": C1, "name": "幸福社区"},
        {"_id": "gateway:gw1", "type": "gateway", "street": STREET, "community": C1, "name": "活动室网关"},
    ]
    for grid in (G1, G2):
        docs.append({"_id": grid, "type": "grid", "street": STREET, "community": C1, "grid": grid,
                     "name": grid, "number": int(grid[-1])})
        for n in range(1, households_per_grid + 1):
            volunteers = {"volunteers": ["user:zhiyuan01"]} if grid == G1 and n == 1 else {}
            docs += [household(grid, n, **volunteers), resident(grid, n)]
        docs.append({"_id": f"device:{grid[5:]}-wb", "type": "device", "street": STREET, "community": C1,
                     "grid": grid, "kind": "wristband", "mac": "AA:BB:CC:DD:EE:0" + grid[-1],
                     **({"gateway": "gateway:gw1"} if grid == G1 else {})})
    results = bulk_save(couch.main, docs)
    assert not [r for r in results if r.error], results
    for username, spec in USERS.items():
        couch.accounts.save(accounts.make_user(username, username, street=STREET, password_hash=hashed(PASSWORD),
                                               **spec))
    return docs


def visible_ids(couch: Couch, username: str) -> set[str]:
    """What the one routing policy says this user may see, straight from CouchDB."""
    p = Principal.of(couch.accounts.get(accounts.user_id(username)))
    return {row["doc"]["_id"] for row in couch.main.all(as_list=True) if row.get("doc") and may_see(p, row["doc"])}


def within_principal_ttl(check: Callable[[], bool]) -> float:
    """Seconds until `check()` holds; fails past the gateway's documented staleness bound (sync/principals.py)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < TTL_SECONDS + 1.0, "not honoured within the principal cache's bound"
        time.sleep(0.2)
    return time.monotonic() - started


# ---------------------------------------------------------------- the server

@dataclass
class Served:
    process: subprocess.Popen[bytes]
    url: str  # the web app's base, ending in "/"
    env: dict[str, str]

    @property
    def sync_url(self) -> str:
        return self.url + "sync/main"


def serve(couch_url: str, settings: Settings, port: int, patience: float = 60) -> Served:
    """`linli serve` against the test's databases, as production runs it, with the settings' keys (so it opens
    what the test sealed)."""
    env = {**os.environ, "COUCHDB_URL": couch_url, "LINLI_DB_PREFIX": settings.db_prefix,
           "LINLI_DATA_DIR": str(settings.data_dir), "LINLI_SECRET_KEY": settings.secret_key,
           "LINLI_MASTER_KEY": keys.b64url(settings.master_keys[0]),
           "LINLI_PORT": str(port), "LINLI_HOST": "127.0.0.1"}
    LOG_FILES.append(settings.data_dir / f"serve-{port}.log")  # scanned for protected plaintext at the end
    log = open(LOG_FILES[-1], "ab")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen([LINLI, "serve", "--no-demo", "--log-level", "warning"], env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        assert process.poll() is None, (settings.data_dir / f"serve-{port}.log").read_text()
        try:
            if httpx2.get(url + "healthz", timeout=1).status_code == 200:
                return Served(process, url, env)
        except httpx2.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("linli serve did not start")


def stop(served: Served, sig: int = signal.SIGINT) -> None:
    if served.process.poll() is None:
        served.process.send_signal(sig)
        served.process.wait(30)


def login(url: str, username: str, password: str = PASSWORD) -> tuple[str, str]:
    """Sign in through the login form; the session cookie header and the session's CSRF token."""
    with httpx2.Client(base_url=url, timeout=60) as client:  # a password hash takes seconds on a busy machine
        page = client.get("/login").text
        form_token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        answer = client.post("/login", data={"username": username, "password": password, "csrf_token": form_token,
                                             "next": "/"}, follow_redirects=False)
        assert answer.status_code == 303, answer.text
        session = client.get("/sync/_session").json()
        cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
        return cookie, session["csrf_token"]


class Phone:
    """One phone: a Node process with its own PouchDB replica, alive until closed."""

    def __init__(self, sync_url: str, cookie: str | None = None, csrf: str | None = None,
                 device_token: str | None = None) -> None:
        self.node = NodeProcess(PHONE, {"url": sync_url, "cookie": cookie, "csrfToken": csrf,
                                        "deviceToken": device_token})

    def call(self, op: str, **args: Any) -> Any:
        answer = self.node.ask({"op": op, **args})
        if not answer["ok"]:
            raise PhoneError(answer["error"], answer.get("status"))
        return answer["value"]

    def ids(self) -> set[str]:
        return {i for i in self.call("ids") if not i.startswith("_")}

    def close(self) -> None:
        self.node.close(timeout=5)


class PhoneError(RuntimeError):
    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Street:
    couch: Couch
    settings: Settings
    served: Served
    docs: list[dict[str, Any]]
    couch_url: str

    def phone(self, username: str) -> Phone:
        cookie, csrf = login(self.served.url, username)
        return Phone(self.served.sync_url, cookie, csrf)

    def firewall(self) -> Firewall:
        return Firewall.open(self.settings, self.couch)

    def new_user(self, like: str) -> str:
        """An account of the test's own, with the roles and places of USERS[like] and PASSWORD: for a test that
        deactivates, moves or re-passwords its user on a street other tests share. Returns its username."""
        username = f"{like}_{next(_new_users)}"
        self.couch.accounts.save(accounts.make_user(username, username, street=STREET,
                                                    password_hash=hashed(PASSWORD), **USERS[like]))
        return username


_new_users = itertools.count(1)


@contextlib.contextmanager
def served_street(couch_url: str, couch: Couch, settings: Settings) -> Iterator[Street]:
    """The seeded street on `couch` and `linli serve` (web app + gateway) on it, stopped at the end."""
    docs = seed(couch)
    world = Street(couch, settings, serve(couch_url, settings, free_port()), docs, couch_url)
    try:
        yield world
    finally:
        stop(world.served)


def _own_street(couch_server: EmbeddedCouch, couch: Couch, settings: Settings) -> Iterator[Street]:
    """The street and its `linli serve` for one test alone: for a test that kills, restarts or re-keys the server,
    or fills the street with documents; phones made with street.phone()."""
    with served_street(couch_server.url, couch, settings) as world:
        yield world


street_fixture = pytest.fixture(name="street")(_own_street)
own_street_fixture = pytest.fixture(name="own_street")(_own_street)  # beside a module's shared `street`


@pytest.fixture(name="street", scope="module")
def shared_street_fixture(couch_server: EmbeddedCouch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Street]:
    """One street and `linli serve` for all the tests of a module that import this fixture instead of
    `street_fixture` (a server start is 5-10 s on a loaded 2-core machine). Its tests leave it usable by each other in
    any order: each writes documents of its own ids, reads what it compares when it runs (`visible_ids`), and
    deactivates, moves or re-passwords only an account of its own (`Street.new_user`)."""
    settings = make_settings(tmp_path_factory.mktemp("street"), f"street{next(_new_users)}_{secrets.token_hex(3)}_")
    couch = connect(settings, couch_server.url)
    with served_street(couch_server.url, couch, settings) as world:
        yield world
    if SHARED:  # a mutation run's one pouchdb-server keeps nothing behind (tests/conftest.py's `couch`)
        for db in (couch.main, couch.accounts):
            couch.server.delete(db.name)
