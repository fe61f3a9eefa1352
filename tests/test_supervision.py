"""The database going away and coming back (issue 20, item 1): `linli serve` restarts its embedded pouchdb-server
when it dies, pages and phones get a clear "recovering" answer meanwhile (never a 5xx other than that 503, never
a traceback), /healthz and /readyz say how each part is, and nothing stored is lost."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
from starlette.testclient import TestClient

from server.domain.declaration import MAIN_DB
from server.store.config import Settings
from server.store.couch import bulk_save, connect
from server.store.embedded_couch import EmbeddedCouch, read_record
from server.store.health import Health
from server.web.app import create_app
from sync.app import create_sync_app
from sync.auth import TOKEN_PREFIX
from tests import street
from tests.conftest import make_settings
from tests.street import as_user, csrf_of
from tests.test_serve import demo_password, pouchdb_server_pids, start_serve, stop


def pages_and_phones(settings: Settings, database: EmbeddedCouch, health: Health) -> tuple[TestClient, TestClient]:
    """The web app and the sync gateway over `database`, with the small street's accounts, answering errors as
    pages would (no exception raised into the test)."""
    couch = connect(settings, database.url)
    bulk_save(couch.accounts, street.users())
    web = TestClient(create_app(settings, couch, health=health), raise_server_exceptions=False,
                     follow_redirects=False)
    return web, TestClient(create_sync_app(settings, database.url, health), raise_server_exceptions=False)


def test_pages_phones_and_health_say_recovering_while_the_database_is_gone(tmp_path: Path) -> None:
    with EmbeddedCouch(tmp_path / "couch") as database:
        health = Health()
        web, phones = pages_and_phones(make_settings(tmp_path, "sup_"), database, health)
        assert web.get("/healthz").json()["alive"] is True
        assert web.get("/readyz").status_code == 200
        as_user(web, "worker1")
        database.stop()

        login = web.post("/login", data={"username": "worker1", "password": "x", "csrf_token": csrf_of(web)})
        assert web.get("/grids/grid:c1-g01").status_code == 503
        assert login.status_code == 503 and login.headers["retry-after"] == "5", login.text[:300]
        assert "服务器正在恢复" in login.text and login.headers["refresh"] == "10"
        listing = web.get("/open311/v2/requests.json")
        assert listing.status_code == 503 and listing.json()["error"] == "recovering"
        # A phone's device token: the gateway reads it from CouchDB before anything else.
        sync = phones.get(f"/{MAIN_DB}/_changes", headers={"Authorization": f"Bearer {TOKEN_PREFIX}0a1b.secret"})
        assert sync.status_code == 503 and sync.json()["error"] == "recovering", sync.text
        for probe in ("/healthz", "/readyz"):
            answer = web.get(probe)
            assert answer.status_code == 503 and answer.json()["parts"]["database"]["ok"] is False, probe

        database.start()
        assert web.get("/healthz").status_code == 200
        assert web.get("/readyz").json()["parts"]["sync"] == {"ok": True, "live_clients": 0}
        health.first_views_built = False  # a load balancer sends nobody here until the first indexes are built
        assert web.get("/healthz").status_code == 200 and web.get("/readyz").status_code == 503


# What a client reads from a CouchDB killed while it streams an answer: the head, then part of a chunk, then nothing.
CUT_ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"400\r\n{\"total_rows\":12,\"offset\":0,\"rows\":[")


@contextmanager
def answers_cut_midway(port: int) -> Iterator[list[bytes]]:
    """A server on the database's port that starts every answer and dies inside it; yields the requests it got."""
    listener = socket.create_server(("127.0.0.1", port))
    listener.settimeout(0.2)
    received: list[bytes] = []
    stopping = threading.Event()

    def answer() -> None:
        while not stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            with client:
                received.append(client.recv(65536))
                client.sendall(CUT_ANSWER)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        stopping.set()
        thread.join()
        listener.close()


def test_a_database_killed_in_the_middle_of_an_answer_is_recovering_too(tmp_path: Path) -> None:
    with EmbeddedCouch(tmp_path / "couch") as database:
        web, phones = pages_and_phones(make_settings(tmp_path, "cut_"), database, Health())
        as_user(web, "worker1")
        assert web.get("/tasks").status_code == 200  # the page works before the cut
        database.stop()
        with answers_cut_midway(database.port) as received:
            page = web.get("/tasks")
            assert page.status_code == 503 and "服务器正在恢复" in page.text, page.text[:300]
            sync = phones.get(f"/{MAIN_DB}/_changes",
                              headers={"Authorization": f"Bearer {TOKEN_PREFIX}0a1b.secret"})
            assert sync.status_code == 503 and sync.json()["error"] == "recovering", sync.text
        assert len(received) >= 2  # both clients did reach the database and read the start of its answer
        database.start()
        assert web.get("/tasks").status_code == 200


def test_linli_serve_restarts_its_database_after_a_kill_and_loses_nothing(tmp_path: Path) -> None:
    served = start_serve(tmp_path)
    try:
        before = httpx2.get(served.url + "healthz").json()
        assert before["parts"]["database"] == {"ok": True, "supervised": True, "restarts": 0, "last_exit": None,
                                               "down_since": None}
        [pid] = pouchdb_server_pids(tmp_path)
        os.kill(pid, signal.SIGKILL)
        answers, deadline = set(), time.monotonic() + 120
        while time.monotonic() < deadline:  # every answer meanwhile is a page or "recovering", never a 500/502
            answers |= {httpx2.get(served.url + path, timeout=60).status_code
                        for path in ("login", "open311/v2/requests.json")}
            health = httpx2.get(served.url + "healthz", timeout=60)
            answers.add(health.status_code)
            if health.status_code == 200 and health.json()["parts"]["database"]["restarts"] == 1:
                break
            time.sleep(0.1)
        assert answers <= {200, 503}, answers
        after = health.json()
        assert after["documents"] == before["documents"]
        assert after["parts"]["database"]["last_exit"] == -signal.SIGKILL
        [new_pid] = pouchdb_server_pids(tmp_path)
        assert new_pid != pid and read_record(tmp_path / "couch").pid == new_pid  # `linli` commands find it
        with httpx2.Client(base_url=served.url, timeout=60) as browser:  # people sign in again as before
            page = browser.get("login")
            token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            signed_in = browser.post("login", data={"username": "wangge01", "csrf_token": token,
                                                    "password": demo_password(tmp_path), "next": "/"})
            assert signed_in.status_code == 303 and browser.get("/", follow_redirects=True).status_code == 200
    finally:
        output = stop(served)
    assert "embedded CouchDB (pouchdb-server pid" in output and "embedded CouchDB restarted" in output, output
    assert "Traceback" not in output, output
    logged = [json.loads(line) for line in output.splitlines() if line.startswith("{")]  # JSON: not a terminal
    exits = [e for e in logged if e["logger"] == "linli.database" and e["level"] == "ERROR"]
    assert exits and "exited with -9" in exits[0]["message"] and exits[0]["request_id"] == "-", logged[:5]
    assert pouchdb_server_pids(tmp_path) == []  # the restarted one stopped with the server too
