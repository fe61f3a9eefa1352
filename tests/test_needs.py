"""Residents' needs handled (issue 14, item 5), through the pages: a resident's need reaches the grid worker of
their grid and the secretary, who turn it into a service request, answer it with a visit, or close it with a
reason; the resident sees what became of it. Visit notes on the household page, a protected detail left sealed."""

from __future__ import annotations

import datetime as dt
import re

from starlette.testclient import TestClient

from server.security.firewall import Firewall
from server.services import demo
from server.services.demo import STREET_ID
from server.store.couch import Couch, iter_view_docs

from . import street
from .street import csrf_of

PASSWORD = "demo-password"
RESIDENT, HOUSEHOLD, GRID = "resident:c1-g01-0002-1", "household:c1-g01-0002", demo.grid_id(1, 1)


def as_user(client: TestClient, username: str) -> None:
    street.as_user(client, username, PASSWORD)


def post(client: TestClient, path: str, **data: str) -> object:
    return client.post(path, data={**data, "csrf_token": csrf_of(client)})


def submit_need(client: TestClient, couch: Couch, description: str) -> str:
    """The resident sends a need from their own page; returns its id's key (the part after "need:")."""
    as_user(client, "jumin1")
    assert post(client, "/needs", category="shopping", description=description).status_code == 303
    need = next(n for n in iter_view_docs(couch.main, "linli/by_place", [HOUSEHOLD, "need"])
                if n["description"] == description)
    assert need["status"] == "open"
    return need["_id"].split(":", 1)[1]


def test_a_residents_need_reaches_the_grid_worker_who_turns_it_into_a_request(web: TestClient,
                                                                             demo_loaded: Couch) -> None:
    key = submit_need(web, demo_loaded, "腿脚不便，需要帮忙买菜 A7")
    as_user(web, "wangge01")
    grid = web.get(f"/grids/{GRID}")
    assert re.search(rf'href="/needs/{key}".*?腿脚不便，需要帮忙买菜 A7', grid.text, re.S)  # on the grid page
    assert "居民甲" not in grid.text  # (the account's name is not the resident's: the record's name is shown)
    assert f'href="/needs/{key}"' in web.get("/needs/open").text
    page = web.get(f"/needs/{key}")
    assert page.status_code == 200 and "转为服务请求" in page.text and "登记走访" in page.text
    # A category that is not one: the form again, what was typed kept, nothing made.
    bad = post(web, f"/needs/{key}/request", category="nothing", description="帮忙买菜")
    assert bad.status_code == 400 and "帮忙买菜" in bad.text
    asked = post(web, f"/needs/{key}/request", category="elderly_care", description="每周两次帮忙买菜 A7")
    assert asked.status_code == 400 and 'name="attribute.service[]"' in asked.text  # the category's question
    made = post(web, f"/needs/{key}/request", category="elderly_care", description="每周两次帮忙买菜 A7",
                **{"attribute.service[]": "meals"})
    assert made.status_code == 303 and made.headers["location"].startswith("/requests/")
    request = demo_loaded.main.get("service_request:" + made.headers["location"].rsplit("/", 1)[1])
    assert (request["resident"], request["household"], request["grid"]) == (RESIDENT, HOUSEHOLD, GRID)
    assert request["on_behalf"] and request["consent"] and request["owner"] == "user:wangge01"
    assert request["attributes"] == {"service": ["meals"]}
    assert request["reporter_name"] == demo_loaded.main.get(RESIDENT)["name"]  # taken in for them, by name
    need = demo_loaded.main.get(f"need:{key}")
    assert (need["status"], need["request"], need["handled_by"]) == ("in_progress", request["_id"], "user:wangge01")
    assert f'href="/needs/{key}"' not in web.get(f"/grids/{GRID}").text  # handled: off the list
    again = post(web, f"/needs/{key}/request", category="elderly_care", description="再来一次")
    assert again.status_code == 409 and "已经处理过" in again.text  # once only
    as_user(web, "jumin1")
    own = web.get("/")
    assert "已转为服务请求" in own.text and f'href="/requests/{request["_id"].split(":", 1)[1]}"' in own.text
    assert web.get(made.headers["location"]).status_code == 200  # and they may follow it


def test_a_need_closed_with_a_reason_the_resident_reads(web: TestClient, demo_loaded: Couch) -> None:
    key = submit_need(web, demo_loaded, "想找人陪着聊聊天 B3")
    as_user(web, "shuji1")  # the secretary handles needs of her community too
    assert f'href="/needs/{key}"' in web.get("/needs/open").text
    empty = post(web, f"/needs/{key}/close", close_reason="  ")
    assert empty.status_code == 400 and "请写明关闭的原因" in empty.text
    assert post(web, f"/needs/{key}/close", close_reason="已联系社区志愿者每周上门 B3").status_code == 303
    closed = demo_loaded.main.get(f"need:{key}")
    assert (closed["status"], closed["handled_by"]) == ("closed", "user:shuji1")
    as_user(web, "jumin1")
    own = web.get("/").text
    assert "已关闭" in own and "已联系社区志愿者每周上门 B3" in own


def test_needs_are_handled_only_where_one_works(web: TestClient, demo_loaded: Couch) -> None:
    key = submit_need(web, demo_loaded, "需要法律咨询 C9")
    for username in ("wangge02", "shuji2", "zhiyuan01a", "bumen_urban_management"):
        as_user(web, username)
        assert web.get(f"/needs/{key}").status_code == 404, username  # not theirs to see: as if not there
        assert post(web, f"/needs/{key}/close", close_reason="x").status_code == 404, username
    assert demo_loaded.main.get(f"need:{key}")["status"] == "open"
    as_user(web, "jumin1")  # the resident sees their need's page, but does not handle it
    assert "关闭需求" not in web.get(f"/needs/{key}").text
    assert post(web, f"/needs/{key}/close", close_reason="算了").status_code == 403
    assert web.get("/needs/open").status_code == 403
    assert web.get("/needs/nonsense").status_code == 404


def test_a_visit_answers_a_need_and_its_notes_show_on_the_household_page(web: TestClient, demo_loaded: Couch,
                                                                         firewall: Firewall) -> None:
    key = submit_need(web, demo_loaded, "厨房水龙头漏水 D4")
    as_user(web, "wangge01")
    form = web.get(f"/households/{HOUSEHOLD}/visits/new", params={"need": f"need:{key}"})
    assert f'name="need" value="need:{key}"' in form.text and "厨房水龙头漏水 D4" in form.text
    saved = post(web, f"/households/{HOUSEHOLD}/visits/new", kind="needs_list", resident=RESIDENT, need=f"need:{key}",
                 notes="水龙头已换新，老人说不再漏水 D4")
    assert saved.status_code == 303
    need = demo_loaded.main.get(f"need:{key}")
    assert need["status"] == "done" and need["visit"].startswith("visit:")
    assert demo_loaded.main.get(need["visit"])["notes"] == "水龙头已换新，老人说不再漏水 D4"
    # A visit that recorded a blood pressure (health: core tier), sealed as the server stores it.
    at = dt.datetime.now(dt.UTC).isoformat()
    demo_loaded.main.save(firewall.seal_for_storage([{
        "_id": "visit:bp1", "type": "visit", "street": STREET_ID, "community": "community:c1", "grid": GRID,
        "household": HOUSEHOLD, "resident": RESIDENT, "kind": "routine", "visited_at": at, "notes": "精神很好 D4",
        "blood_pressure": "150/95", "needs": [], "created_by": "user:wangge01", "created_at": at}])[0])
    page = web.get(f"/households/{HOUSEHOLD}").text
    assert "水龙头已换新，老人说不再漏水 D4" in page and "精神很好 D4" in page
    assert "150/95" not in page and "enc:" not in page and "健康信息" in page
    # A need already handled, or another household's, leaves an ordinary visit form.
    assert 'name="need"' not in web.get(f"/households/{HOUSEHOLD}/visits/new", params={"need": f"need:{key}"}).text
    assert 'name="need"' not in web.get("/households/household:c1-g01-0003/visits/new",
                                        params={"need": f"need:{key}"}).text


def test_a_resident_says_their_language_and_when_help_suits_them(web: TestClient, demo_loaded: Couch) -> None:
    as_user(web, "jumin1")
    page = web.get("/needs").text
    assert 'name="language"' in page and 'name="day_2"' in page
    description = "周二上午陪我去医院 L5"
    bad = post(web, "/needs", category="medical_escort", description=description, language="klingon",
               day_1="1", start_1="11:00", end_1="09:00")
    assert bad.status_code == 400 and "结束（09:00）要晚于开始（11:00）" in bad.text and "至少选择一种语言" in bad.text
    assert 'value="11:00"' in bad.text  # what was typed is shown again
    made = post(web, "/needs", category="medical_escort", description=description, language="local_dialect",
                day_1="1", start_1="08:00", end_1="11:00")
    assert made.status_code == 303
    (need,) = [n for n in iter_view_docs(demo_loaded.main, "linli/by_place", [HOUSEHOLD, "need"])
               if n["description"] == description]  # one: the refused one was not stored
    assert (need["language"], need["hours"]) == ("local_dialect", [{"day": 1, "start": "08:00", "end": "11:00"}])
    plain = "帮忙换灯泡 L5"
    assert post(web, "/needs", category="home_repair", description=plain).status_code == 303
    (need,) = [n for n in iter_view_docs(demo_loaded.main, "linli/by_place", [HOUSEHOLD, "need"])
               if n["description"] == plain]
    assert "language" not in need and "hours" not in need  # not said: any language, any time
