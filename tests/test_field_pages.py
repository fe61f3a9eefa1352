"""The alerts inbox (who sees which alert, acknowledge → visiting → resolve, refusals, conflicts) and visit
logging (needs list and a camera photo, round trip to the household page), through the web pages."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from server.domain.declaration import validate
from server.domain.entitlement import privacy_id
from server.domain.i18n import translator
from server.security import accounts
from server.store.config import LOCAL_TZ
from server.store.couch import Couch, bulk_save, iter_view_docs
from server.web.field_pages import RESOLVED_SHOWN

from .street import C1, C2, G1, G2, G3, PASSWORD, STREET, TINY_PNG, csrf_of, hashed, login

HOUSEHOLD = "household:c1-g01-0001"
RESIDENT = "resident:c1-g01-0001-1"


ZH = translator("zh")  # errors show in the page's language, next to their field


def alert(key: str, grid: str, kind: str, raised_at: dt.datetime, status: str = "raised",
          **extra: Any) -> dict[str, Any]:
    community = C2 if grid == G3 else C1
    doc = {"_id": f"alert:{key}", "type": "alert", "street": STREET, "community": community, "grid": grid,
           "household": f"household:{grid[5:]}-0001", "resident": f"resident:{grid[5:]}-0001-1", "kind": kind,
           "status": status, "raised_at": raised_at.isoformat(), "visibility": "grid_staff", **extra}
    validate(doc)
    return doc


def alerts_raised_before(now: dt.datetime) -> list[dict[str, Any]]:
    """The alerts, raised minutes before `now` (the test's own start, never the module's import: the escalation
    sweep that runs as the app starts would find them 30 minutes old on a slow run, and escalate them)."""
    ago = lambda minutes: now - dt.timedelta(minutes=minutes)  # noqa: E731
    return [
        alert("sos", G1, "sos", ago(12)),  # older than the water alert, yet on top: SOS and falls come first
        # the resident chose to keep water and electricity anomalies between themselves and their grid worker
        alert("private", G1, "no_water", ago(10), visibility="grid_worker_only"),
        alert("old", G1, "fall", ago(2), status="resolved", resolved_at=now.isoformat()),
        alert("water", G2, "no_water", ago(15), status="escalated"),
        alert("c2", G3, "fall", ago(20)),
    ]


@pytest.fixture
def alerts(loaded: Couch) -> Couch:
    """The alerts, stored before the app (and its sweep) starts: tests name this fixture before `client`."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    privacy = {"_id": privacy_id(RESIDENT), "type": "privacy", "street": STREET, "community": C1, "grid": G1,
               "household": HOUSEHOLD, "resident": RESIDENT, "utility_alerts": "grid_worker_only",
               "updated_by": "user:worker1", "updated_at": now.isoformat()}
    validate(privacy)
    for doc in [*alerts_raised_before(now), privacy]:
        loaded.main.save(doc)
    return loaded


def shown(page: str) -> list[str]:
    """The alert rows of a page, in order, by id."""
    return re.findall(r'id="alert-alert-([\w-]+)"', page)


def act(client: TestClient, key: str, action: str, htmx: bool = False, **extra: str) -> Any:
    return client.post(f"/alerts/{key}/act", data={"action": action, "csrf_token": csrf_of(client, "/requests"),
                                                   **extra}, headers={"HX-Request": "true"} if htmx else {})


def test_a_grid_worker_sees_the_alerts_of_their_grid_open_ones_first(alerts: Couch, client: TestClient) -> None:
    login(client, "worker1")
    page = client.get("/alerts")
    assert page.status_code == 200
    assert shown(page.text) == ["sos", "private"]  # urgent first; resolved hidden; another grid's not there
    sos = page.text.split('id="alert-alert-sos"')[1].split("</li>")[0]
    assert "urgent" in page.text.split('id="alert-alert-sos"')[0].rsplit("<li", 1)[1]
    assert "紧急" in sos and "紧急求助（SOS）" in sos and "居民11" in sos and "c1-g01路1号" in sos
    raised_at = alerts.main.get("alert:sos")["raised_at"]
    raised = dt.datetime.fromisoformat(raised_at).astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")
    assert raised in sos  # raised time in local time (LINLI_TIMEZONE)
    assert shown(client.get("/alerts", params={"status": "all"}).text) == ["sos", "private", "old"]
    assert '<a href="/alerts">告警</a>' in page.text  # the inbox is in the nav

    login(client, "worker3")
    assert shown(client.get("/alerts").text) == ["c2"]
    login(client, "volunteer1")
    assert client.get("/alerts").status_code == 403


def test_the_secretary_sees_the_community_but_not_what_a_resident_kept_to_their_grid_worker(
        alerts: Couch, client: TestClient) -> None:
    login(client, "secretary1")
    page = client.get("/alerts")
    assert shown(page.text) == ["sos", "water"]  # both grids of C1; not the private one, not C2
    assert "已上报书记" in page.text
    assert act(client, "private", "acknowledge").status_code == 404  # not hers to see: as if there were none


def test_every_open_alert_is_listed_however_many(alerts: Couch, client: TestClient) -> None:
    """The secretary's day links to each open alert (server/services/today.py), so the inbox lists every open one,
    however many (it once showed the first 200, and today's "equipment gone silent" rows, last in order, led to a
    page without them); of the resolved, "show all" adds the newest RESOLVED_SHOWN."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    many = [alert(f"many{n}", G1, "no_water", now - dt.timedelta(minutes=1, seconds=n))
            for n in range(RESOLVED_SHOWN + 5)]
    resolved = [alert(f"done{n}", G1, "no_water", now - dt.timedelta(hours=1, seconds=n), status="resolved",
                      resolved_at=now.isoformat()) for n in range(RESOLVED_SHOWN + 5)]
    assert not [r for r in bulk_save(alerts.main, many + resolved) if r.error]
    login(client, "worker1")
    listed = shown(client.get("/alerts").text)
    assert {d["_id"][6:] for d in many} <= set(listed) and not [key for key in listed if key.startswith("done")]
    everything = shown(client.get("/alerts", params={"status": "all"}).text)
    shown_resolved = [key for key in everything if key.startswith("done") or key == "old"]
    assert len(shown_resolved) == RESOLVED_SHOWN and shown_resolved[:2] == ["old", "done0"]  # the newest


def test_acknowledge_visit_resolve_and_refusals(alerts: Couch, client: TestClient) -> None:
    login(client, "worker1")
    acknowledged = act(client, "sos", "acknowledge")
    assert acknowledged.status_code == 303 and acknowledged.headers["location"] == "/alerts#alert-alert-sos"
    doc = alerts.main.get("alert:sos")
    assert (doc["status"], doc["acknowledged_by"]) == ("acknowledged", "user:worker1") and doc["acknowledged_at"]
    assert "张网格" in client.get("/alerts").text.split('id="alert-alert-sos"')[1].split("</li>")[0]

    row = act(client, "sos", "visiting", htmx=True, _rev=doc["_rev"])
    assert row.status_code == 200 and "<html" not in row.text and row.text.strip().startswith("<li")
    assert "上门中" in row.text and alerts.main.get("alert:sos")["status"] == "visiting"

    stale = act(client, "sos", "resolve", _rev=doc["_rev"])  # the revision before "visiting": never overwrite
    assert stale.status_code == 409 and "刚被他人更新" in stale.text
    assert alerts.main.get("alert:sos")["status"] == "visiting"

    assert act(client, "sos", "resolve").status_code == 303
    resolved = alerts.main.get("alert:sos")
    assert resolved["status"] == "resolved" and resolved["resolved_at"] >= resolved["acknowledged_at"]
    assert resolved["acknowledged_by"] == "user:worker1"

    again = act(client, "sos", "acknowledge")
    assert again.status_code == 400 and "不允许这一步" in again.text
    refused_row = act(client, "sos", "visiting", htmx=True)
    assert refused_row.status_code == 200 and "不允许这一步" in refused_row.text and "已解决" in refused_row.text
    assert alerts.main.get("alert:sos")["_rev"] == resolved["_rev"]
    assert act(client, "private", "dance").status_code == 400

    # resolving straight from raised: acknowledging may be skipped, but it is recorded who took it
    assert act(client, "private", "resolve").status_code == 303
    assert alerts.main.get("alert:private")["acknowledged_by"] == "user:worker1"

    login(client, "worker3")  # another grid's alert and one that does not exist look the same
    assert act(client, "water", "acknowledge").status_code == act(client, "nope", "acknowledge").status_code == 404


def test_a_resident_who_sees_their_own_alert_still_may_not_change_it(alerts: Couch, client: TestClient) -> None:
    alerts.accounts.save(accounts.make_user("jumin", "居民", [accounts.Role.RESIDENT], STREET,
                                            hashed(PASSWORD), resident=RESIDENT))
    login(client, "jumin")
    assert client.post("/alerts/sos/act", data={"action": "acknowledge", "csrf_token": csrf_of(client, "/requests")}
                       ).status_code == 403
    assert alerts.main.get("alert:sos")["status"] == "raised"


def visits_of(couch: Couch, household: str) -> list[dict[str, Any]]:
    return list(iter_view_docs(couch.main, "linli/by_place", [household, "visit"]))


def test_a_visit_with_needs_and_a_photo_round_trip(client: TestClient, loaded: Couch) -> None:
    login(client, "worker1")
    household_page = client.get(f"/households/{HOUSEHOLD}")
    assert f'href="/households/{HOUSEHOLD}/visits/new"' in household_page.text and "暂无走访记录" in household_page.text
    form = client.get(f"/households/{HOUSEHOLD}/visits/new")
    assert form.status_code == 200
    assert 'accept="image/*" capture="environment"' in form.text and 'value="meal_delivery"' in form.text
    assert "blood_pressure" not in form.text  # health data is not entered here
    saved = client.post(f"/households/{HOUSEHOLD}/visits/new",
                        data={"csrf_token": csrf_of(client, "/requests"), "kind": "needs_list", "resident": RESIDENT,
                              "notes": "老人腿脚不便", "needs": ["meal_delivery", "cleaning", "买药\n\n  修水龙头 \n"]},
                        files={"photo": ("door.png", TINY_PNG, "image/png")})
    assert saved.status_code == 303 and saved.headers["location"] == f"/households/{HOUSEHOLD}"
    (visit,) = visits_of(loaded, HOUSEHOLD)
    assert visit["needs"] == ["meal_delivery", "cleaning", "买药", "修水龙头"]
    assert (visit["kind"], visit["resident"], visit["notes"], visit["created_by"]) == (
        "needs_list", RESIDENT, "老人腿脚不便", "user:worker1")
    assert (visit["street"], visit["community"], visit["grid"]) == (STREET, C1, G1)
    assert visit["visited_at"] == visit["created_at"]
    assert visit["_attachments"]["photo.png"]["content_type"] == "image/png"

    page = client.get(saved.headers["location"]).text
    recent = page.split("最近走访")[1]
    assert "需求摸排" in recent and "张网格" in recent and "助餐送餐" in recent and "保洁" in recent
    assert "买药" in recent and "修水龙头" in recent
    photo_path = f"/visits/{visit['_id'].split(':', 1)[1]}/photo"
    assert f'src="{photo_path}"' in recent
    photo = client.get(photo_path)
    assert photo.status_code == 200 and photo.content == TINY_PNG and photo.headers["content-type"] == "image/png"

    login(client, "secretary1")
    assert client.get(photo_path).status_code == 200
    login(client, "worker3")
    assert client.get(photo_path).status_code == 404


def test_a_bad_photo_is_refused_with_a_message_and_nothing_is_stored(client: TestClient, loaded: Couch) -> None:
    login(client, "worker1")
    path = f"/households/{HOUSEHOLD}/visits/new"
    text = client.post(path, data={"csrf_token": csrf_of(client, "/requests"), "kind": "routine", "notes": "门口有积水",
                                   "needs": ["shopping", "陪同散步"]},
                       files={"photo": ("x.gif", b"GIF89a" + bytes(64), "image/gif")})
    assert text.status_code == 400 and f'id="error-photo" hx-swap-oob="true">{ZH("err_photo_type")}<' in text.text
    assert "门口有积水" in text.text and 'value="shopping" checked' in text.text and "陪同散步</textarea>" in text.text
    # a camera photo over 10 MB (sent by htmx or the service worker, with the CSRF header)
    huge = b"\xff\xd8\xff" + bytes(10 * 1024 * 1024)
    too_big = client.post(path, data={"kind": "routine"}, files={"photo": ("big.jpg", huge, "image/jpeg")},
                          headers={"X-CSRF-Token": csrf_of(client, "/requests")})
    assert too_big.status_code == 400 and ZH("err_photo_too_big", kb=10240, mb=10) in too_big.text
    bad_kind = client.post(path, data={"csrf_token": csrf_of(client, "/requests"), "kind": "party"})
    assert bad_kind.status_code == 400 and 'id="error-kind" hx-swap-oob="true">“party”不是可选项' in bad_kind.text
    stranger = client.post(path, data={"csrf_token": csrf_of(client, "/requests"), "kind": "routine",
                                       "resident": "resident:c1-g01-0002-1"})
    assert stranger.status_code == 400 and ZH("err_not_household_member") in stranger.text
    assert visits_of(loaded, HOUSEHOLD) == []


def test_another_grids_household_is_not_found(client: TestClient, loaded: Couch) -> None:
    login(client, "worker1")
    other = "/households/household:c2-g01-0001/visits/new"
    assert client.get(other).status_code == 404
    assert client.post(other, data={"csrf_token": csrf_of(client, "/requests"), "kind": "routine"}).status_code == 404
    assert client.get("/households/household:nope/visits/new").status_code == 404
    assert visits_of(loaded, "household:c2-g01-0001") == []
