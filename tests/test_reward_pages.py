"""Points and rewards' pages (issue 16 item 4) on the small demo street through the web app: a volunteer
redeems points on /rewards, the partner honours the voucher on /redeem once and is refused the second time,
naming when; bad input is a clear 4xx with nothing stored changed; statements for the person and the secretary,
and the CSV with Chinese headers and names."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid

import pytest
from starlette.testclient import TestClient

from server.domain import points as rules
from server.domain.declaration import Role
from server.domain.i18n import translator
from server.security import accounts
from server.services import rewards, timebank
from server.services.demo import STREET_ID
from server.store.couch import Couch

from . import street
from .street import csrf_of, hashed
from .test_points import C1, NOW, SECRETARY, SHOP, VOLUNTEER, confirmation, stored

ZH = translator("zh")


@pytest.fixture
def shop_web(web: TestClient, demo_loaded: Couch) -> TestClient:
    demo_loaded.main.save({"_id": SHOP, "type": "organisation", "street": STREET_ID, "community": C1,
                           "name": "测试超市", "kind": "firm"})
    user = accounts.make_user("hezuo-test", "超市店员", [Role.PARTNER], STREET_ID,
                              hashed("demo-password"))
    demo_loaded.accounts.save({**user, "organisation": SHOP})
    return web


def as_user(client: TestClient, username: str) -> None:
    street.as_user(client, username, "demo-password")


def post(client: TestClient, path: str, page: str, **data: str) -> object:
    return client.post(path, data={**data, "csrf_token": csrf_of(client, page)})


def test_points_buy_a_voucher_the_partner_honours_once(shop_web: TestClient, demo_loaded: Couch) -> None:
    web = shop_web
    offered = rewards.offer(demo_loaded, SECRETARY, SHOP, f"理发 {uuid.uuid4().hex[:4]}", "service", 30, 2, NOW)
    timebank.mint(demo_loaded, {"street": STREET_ID, "community": C1}, VOLUNTEER, 40, "test", "web", "user:shuji1",
                  NOW)
    as_user(web, "zhiyuan01a")
    page = web.get("/rewards")
    assert page.status_code == 200 and f'data-reward="{offered["_id"]}"' in page.text
    assert ZH("tb_balance_points", points=40) in page.text and ZH("pt_left", left=2) in page.text
    assert ZH("pt_rule_hours_confirmed", points=rules.POINTS_RULES["hours_confirmed"]) in page.text
    before = stored(demo_loaded)
    for bad, status, key in (("reward:nowhere", 404, "pt_no_reward"), ("", 404, "pt_no_reward"),
                             ("x" * 3000, 404, "pt_no_reward")):
        answer = post(web, "/rewards/redeem", "/rewards", reward=bad)
        assert answer.status_code == status and ZH(key) in answer.text, bad
    assert stored(demo_loaded) == before
    done = post(web, "/rewards/redeem", "/rewards", reward=offered["_id"])
    assert done.status_code == 303 and done.headers["location"] == "/rewards?done=redeemed"
    page = web.get("/rewards?done=redeemed")
    assert ZH("pt_done_redeemed") in page.text and ZH("tb_balance_points", points=10) in page.text
    code = re.search(r"data-code>([^<]+)<", page.text).group(1)
    short = post(web, "/rewards/redeem", "/rewards", reward=offered["_id"])
    assert short.status_code == 400 and ZH("pt_points_short", points=30, balance=10) in short.text

    as_user(web, "hezuo-test")
    assert web.get("/redeem").status_code == 200
    before = stored(demo_loaded)
    forged = post(web, "/redeem", "/redeem", code=code[:-4] + "AAAA")
    assert forged.status_code == 400 and ZH("pt_forged") in forged.text and stored(demo_loaded) == before
    honoured = post(web, "/redeem", "/redeem", code=code)
    assert honoured.status_code == 200 and ZH("pt_done_used", reward=offered["name"], points=30) in honoured.text
    again = post(web, "/redeem", "/redeem", code=code)
    assert again.status_code == 409 and "已于" in again.text and ZH("pt_used", at="")[:6] in again.text

    as_user(web, "zhiyuan01a")  # the holder sees it used
    assert "已于" in web.get("/rewards").text and "data-code>" not in web.get("/rewards").text
    assert web.get("/redeem").status_code == 403  # not a partner
    assert post(web, "/redeem", "/rewards", code=code).status_code == 403


def test_statements_for_a_person_and_the_secretary_with_csv(shop_web: TestClient, demo_loaded: Couch) -> None:
    web = shop_web
    timebank.mint(demo_loaded, {"street": STREET_ID, "community": C1}, VOLUNTEER, 12, "test", "stm", "user:shuji1",
                  NOW)
    as_user(web, "zhiyuan01a")
    page = web.get("/statements?period=2026-03")
    assert page.status_code == 200 and 'data-entry="transfer:mint:stm"' in page.text
    for bad in ("2026-13", "x" * 100, "<script>"):
        answer = web.get("/statements", params={"period": bad})
        assert answer.status_code == 400 and ZH("pt_period") in answer.text and "<script>" not in answer.text
    assert web.get("/statements?community=community:c1").status_code == 403
    assert web.get("/statements.csv").status_code == 403
    as_user(web, "shuji1")
    page = web.get("/statements?community=community:c1&period=2026")
    assert page.status_code == 200 and ZH("statement_minted", points=12) in page.text
    assert web.get("/statements?community=community:c2x").status_code == 404
    sheet = web.get("/statements.csv?community=community:c1&period=2026")
    assert sheet.status_code == 200 and sheet.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(sheet.text.lstrip("\ufeff"))))
    assert rows[0] == list(rules.STATEMENT_CSV_HEADER) and VOLUNTEER not in sheet.text
    volunteer_name = demo_loaded.accounts.get(VOLUNTEER)["display_name"]
    assert [volunteer_name, "志愿者", "2026", "0", "0", "0", "0", "0", "12", "0", "12"] in rows


def test_a_voucher_used_twice_is_shown_to_the_partner_and_the_secretary(shop_web: TestClient,
                                                                         demo_loaded: Couch) -> None:
    """A second use recorded on another phone reaches CouchDB as a branch of the first (tests/test_points.py):
    the partner's counter and the secretary's statements list it."""
    web = shop_web
    offered = rewards.offer(demo_loaded, SECRETARY, SHOP, "体检", "service", 20, 3, NOW)
    timebank.mint(demo_loaded, {"street": STREET_ID, "community": C1}, VOLUNTEER, 20, "test", "twice", "user:shuji1",
                  NOW)
    as_user(web, "zhiyuan01a")
    assert post(web, "/rewards/redeem", "/rewards", reward=offered["_id"]).status_code == 303
    code = re.search(r"data-code>([^<]+)<", web.get("/rewards").text).group(1)
    as_user(web, "hezuo-test")
    assert post(web, "/redeem", "/redeem", code=code).status_code == 200
    first = next(d for d in rewards.redemptions_of(demo_loaded, demo_loaded.main.get(SHOP)))
    second = {k: v for k, v in first.items() if k != "_rev"} | {"created_at": NOW.isoformat(), "_rev": "1-" + "e" * 32}
    demo_loaded.main.resource._request_response("POST", "_bulk_docs", data=json.dumps(
        {"docs": [second], "new_edits": False}).encode(), headers={"Content-Type": "application/json"})
    page = web.get("/redeem")
    assert f'data-twice="{first["_id"]}"' in page.text and "另一次核销被拒绝" in page.text
    as_user(web, "shuji1")
    page = web.get("/statements?community=community:c1")
    assert f'data-twice="{first["_id"]}"' in page.text


def test_a_partner_offers_a_reward_and_sets_its_stock(shop_web: TestClient, demo_loaded: Couch) -> None:
    """/rewards/offer: the partner offers for their own organisation and sets its units, never below those bought;
    bad input is a 4xx naming the field with nothing stored; nobody but an offerer reaches it."""
    web = shop_web
    as_user(web, "hezuo-test")
    page = web.get("/rewards/offer")
    assert page.status_code == 200 and f'value="{SHOP}"' in page.text and "organisation:c1-shop" not in page.text
    name = f"修鞋 {uuid.uuid4().hex[:4]}"
    before = stored(demo_loaded)
    for bad, key in (({"points": "0"}, "pt_whole_number"), ({"points": "abc"}, "pt_whole_number"),
                     ({"stock": "-1"}, "pt_whole_number"), ({"name": " "}, "pt_reward_name"),
                     ({"kind": "cash"}, "pt_reward_kind")):
        form = {"organisation": SHOP, "name": name, "kind": "service", "points": "30", "stock": "1", **bad}
        answer = post(web, "/rewards/offer", "/rewards/offer", **form)
        assert answer.status_code == 400 and ZH(key, most=rules.MAX_REWARD_POINTS)[:6] in answer.text, bad
    assert post(web, "/rewards/offer", "/rewards/offer", organisation="organisation:c1-shop", name=name,
                kind="service", points="30", stock="1").status_code == 404  # not theirs: not even seen
    assert stored(demo_loaded) == before
    done = post(web, "/rewards/offer", "/rewards/offer", organisation=SHOP, name=name, kind="service", points="30",
                stock="1")
    assert done.status_code == 303 and done.headers["location"] == "/rewards/offer?done=offered"
    offered = next(r for r in rewards.catalogue(demo_loaded, C1) if r["name"] == name)
    assert (offered["points"], offered["stock"], offered["organisation"]) == (30, 1, SHOP)

    timebank.mint(demo_loaded, {"street": STREET_ID, "community": C1}, VOLUNTEER, 30, "test", "offer", "user:shuji1",
                  NOW)
    as_user(web, "zhiyuan01a")
    assert web.get("/rewards/offer").status_code == 403  # a volunteer offers nothing
    assert post(web, "/rewards/redeem", "/rewards", reward=offered["_id"]).status_code == 303  # one unit bought

    as_user(web, "hezuo-test")
    stock_path = f"/rewards/{offered['_id']}/stock"
    below = post(web, stock_path, "/rewards/offer", stock="0")
    assert below.status_code == 400 and ZH("pt_stock_below_taken", taken=1) in below.text
    assert post(web, stock_path, "/rewards/offer", stock="x").status_code == 400
    assert post(web, "/rewards/reward:nowhere/stock", "/rewards/offer", stock="3").status_code == 404
    assert demo_loaded.main.get(offered["_id"])["stock"] == 1
    more = post(web, stock_path, "/rewards/offer", stock="4")
    assert more.status_code == 303 and demo_loaded.main.get(offered["_id"])["stock"] == 4
    page = web.get("/rewards/offer?done=stock_set")
    assert ZH("pt_stock_line", stock=4, taken=1) in page.text and ZH("pt_done_stock_set") in page.text

    as_user(web, "shuji1")  # the secretary offers for any organisation of her community
    page = web.get("/rewards/offer")
    assert page.status_code == 200 and f'value="{SHOP}"' in page.text
    assert f'data-offered="{offered["_id"]}"' in page.text


def test_the_secretary_mints_due_points_now(shop_web: TestClient, demo_loaded: Couch) -> None:
    """The button mints what the quarter-hour job would (an hour of help confirmed: 10 points), once."""
    web = shop_web
    confirmation(demo_loaded, VOLUNTEER, 90)
    held = timebank.balance(demo_loaded, C1, "points", VOLUNTEER)
    as_user(web, "zhiyuan01a")
    assert post(web, "/statements/mint", "/rewards", community=C1).status_code == 403
    as_user(web, "shuji1")
    assert post(web, "/statements/mint", f"/statements?community={C1}", community="community:c2").status_code == 403
    done = post(web, "/statements/mint", f"/statements?community={C1}", community=C1)
    assert done.status_code == 303 and done.headers["location"] == f"/statements?community={C1}&minted=1"
    assert ZH("pt_done_minted", count=1) in web.get(done.headers["location"]).text
    assert timebank.balance(demo_loaded, C1, "points", VOLUNTEER) == held + 15
    again = post(web, "/statements/mint", f"/statements?community={C1}", community=C1)
    assert again.headers["location"].endswith("minted=0")
    assert timebank.balance(demo_loaded, C1, "points", VOLUNTEER) == held + 15
