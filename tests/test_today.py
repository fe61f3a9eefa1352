"""The secretary's home answers "what needs me today" (issue 14, item 4): pending approvals, open alerts (SOS and
falls first), late and escalated requests, needs nobody has handled, equipment gone silent; each a count and the
first rows, each row a link to the page that acts on it; only her communities, only what she may see."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from server.domain.access import Principal
from server.domain.declaration import validate
from server.security import accounts
from server.security.firewall import Firewall
from server.services import demo
from server.services import service_requests as sr
from server.services.demo import STREET_ID
from server.store.config import Settings
from server.store.couch import Couch, bulk_save
from server.web.app import create_app

from .street import csrf_of

PASSWORD = "demo-password"
G11, G12, G21 = demo.grid_id(1, 1), demo.grid_id(1, 2), demo.grid_id(2, 1)


def about(grid: str, n: int = 1) -> dict[str, str]:
    community = grid.split(":")[1].split("-")[0]
    key = f"{grid[5:]}-{n:04d}"
    return {"street": STREET_ID, "community": f"community:{community}", "grid": grid,
            "household": f"household:{key}", "resident": f"resident:{key}-1"}


def alert(now: dt.datetime, key: str, grid: str, kind: str, minutes_ago: int, status: str = "raised", n: int = 1,
          **extra: Any) -> dict[str, Any]:
    doc = {"_id": f"alert:today-{key}", "type": "alert", **about(grid, n), "kind": kind, "status": status,
           "raised_at": (now - dt.timedelta(minutes=minutes_ago)).isoformat(), "visibility": "grid_staff", **extra}
    validate(doc)
    return doc


def need(now: dt.datetime, key: str, grid: str, status: str = "open") -> dict[str, Any]:
    doc = {"_id": f"need:today-{key}", "type": "need", **about(grid, 2), "category": "shopping",
           "description": f"需要帮忙买菜 {key}", "status": status, "created_by": "user:wangge01",
           "created_at": (now - dt.timedelta(hours=3)).isoformat()}
    validate(doc)
    return doc


def principal(couch: Couch, username: str) -> Principal:
    return Principal.of(couch.accounts.get(accounts.user_id(username)))


@pytest.fixture
def day(demo_loaded: Couch, firewall: Firewall) -> Couch:
    """Her community's open matters, and some that are not hers to see or no longer open, as of the test's start
    (a time taken at import would leave them older than the alerts' 30 minutes on a slow run)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    worker, other_worker = principal(demo_loaded, "wangge01"), principal(demo_loaded, "wangge03")
    # Household 3's resident keeps water and electricity anomalies between themselves and their grid worker.
    firewall.set_privacy(principal(demo_loaded, "shuji1"), demo_loaded.main.get(about(G11, 3)["resident"]),
                         {"utility_alerts": "grid_worker_only"}, now)
    for p, grid in ((worker, G11), (worker, G11), (other_worker, G21)):
        firewall.request_access(p, demo_loaded.main.get(about(grid)["resident"]), ["health"], "上门随访", 24, now)
    docs = [alert(now, "water", G11, "no_water", 5), alert(now, "sos", G11, "sos", 30),
            alert(now, "fall", G12, "fall", 20, status="acknowledged", acknowledged_by="user:wangge02",
                  acknowledged_at=now.isoformat()),
            alert(now, "private", G11, "no_water", 3, n=3, visibility="grid_worker_only"),  # the resident's choice
            alert(now, "done", G11, "sos", 50, status="resolved", resolved_at=now.isoformat()),
            alert(now, "c2", G21, "sos", 5),
            {**{k: v for k, v in alert(now, "band", G11, "device_silent", 40).items()}, "device": "device:c1-g01-x"},
            need(now, "a", G11), need(now, "b", G12), need(now, "done", G11, status="done"), need(now, "c2", G21)]
    assert not [r for r in bulk_save(demo_loaded.main, docs) if r.error]
    for n, (grid, late) in enumerate(((G11, True), (G12, True), (G11, False), (G21, True))):
        made = sr.create(demo_loaded, "user:wangge01", sr.NewRequest(
            street=STREET_ID, category="street_lamp", description=f"路灯不亮 {n}", grid=grid), now)
        if late:  # its closing deadline passed
            demo_loaded.main.save({**made, "due_close": (now - dt.timedelta(hours=n + 1)).isoformat()})
    escalated = sr.create(demo_loaded, "user:wangge01", sr.NewRequest(
        street=STREET_ID, category="garbage", description="垃圾没人清运", grid=G12), now)
    demo_loaded.main.save({**escalated, "status": "escalated"})
    return demo_loaded


@pytest.fixture
def web(day: Couch, settings: Settings) -> Iterator[TestClient]:
    # The minute sweep escalates the late lamps, run here rather than raced by the app's clock.
    sr.sweep(day, STREET_ID, dt.datetime.now(dt.UTC))
    with TestClient(create_app(settings, day, clocks=False), follow_redirects=False) as client:
        client.post("/login", data={"username": "shuji1", "password": PASSWORD, "next": "/",
                                    "csrf_token": csrf_of(client)})
        yield client


def section(page: str, name: str) -> tuple[int, str]:
    """A list of the day: its count, and its HTML."""
    found = re.search(rf'<section class="card today" id="today-{name.replace("_", "-")}">(.*?)</section>', page, re.S)
    assert found, f"no {name} on the page"
    count = re.search(r'<span class="badge count">(\d+)</span>', found.group(1))
    assert count
    return int(count.group(1)), found.group(1)


def test_the_secretarys_home_is_what_needs_her_today(web: TestClient) -> None:
    assert web.get("/").headers["location"] == "/today"
    page = web.get("/today").text
    count, approvals = section(page, "approvals")
    assert count == 2 and approvals.count('href="/approvals"') == 3  # the heading and each row
    count, alerts = section(page, "alerts")
    assert count == 3  # not the resident's private water alert, not the resolved one, not another community's
    # SOS and falls first (each part newest first): the water alert, the newest, comes after both.
    assert alerts.index("alert-alert-today-fall") < alerts.index("alert-alert-today-sos") \
        < alerts.index("alert-alert-today-water")
    assert 'href="/alerts#alert-alert-today-sos"' in alerts
    count, late = section(page, "late_requests")
    # Escalated, by its status (the garbage, not yet due) or by the sweep at the deadline (the lamps); by deadline.
    assert count == 3 and late.index("路灯不亮 1") < late.index("路灯不亮 0") < late.index("垃圾没人清运")
    assert "路灯不亮 2" not in late and "路灯不亮 3" not in late  # on time; another community's
    assert re.search(r'href="/requests/[0-9a-f]{32}"', late)
    count, needs = section(page, "needs")
    assert count == 2 and 'href="/needs/today-a"' in needs and 'href="/needs/today-b"' in needs
    assert '<a href="/needs/open">' in needs  # all of them, where each is opened and acted on
    count, silent = section(page, "silent")
    assert count == 1 and 'href="/alerts#alert-alert-today-band"' in silent


def test_a_decision_takes_an_approval_off_the_list(web: TestClient, day: Couch) -> None:
    page = web.get("/approvals").text
    first = re.search(r'name="access_request" value="([^"]+)"', page)
    assert first
    decided = web.post("/approvals", data={"access_request": first.group(1), "decision": "approve", "note": "",
                                           "csrf_token": csrf_of(web, "/approvals")})
    assert decided.status_code == 200
    assert section(web.get("/today").text, "approvals")[0] == 1


def test_only_a_secretary_has_the_day(web: TestClient) -> None:
    for username in ("wangge01", "zhiyuan01a", "admin"):
        web.post("/logout", data={"csrf_token": csrf_of(web)})
        web.post("/login", data={"username": username, "password": PASSWORD, "next": "/",
                                 "csrf_token": csrf_of(web)})
        assert web.get("/today").status_code == 403, username
