"""The matter pages (server/web/matter_pages.py) over the small demo street: the secretary opens a matter, the
resident votes on their own page and gets a receipt, the secretary closes, the result is published (page, JSON,
CSV) with the receipt in it; bad input is refused naming why, with nothing stored and no 5xx."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from server.security import accounts, filing
from server.security.filing import Signer
from server.services import deliberation as d
from server.services import figures_cells
from server.services.demo import STREET_ID
from server.store.config import Settings
from server.store.couch import Couch
from server.web.app import create_app

from .street import csrf_of, hashed, logout, post_form

PASSWORD = "demo-password"
RESIDENT = "resident:c1-g01-0002-1"
OTHER_COMMUNITYS_RESIDENT = "resident:c2-g01-0001-1"


@pytest.fixture
def site(demo_loaded: Couch, settings: Settings) -> Iterator[TestClient]:
    for username, resident in (("jumin1", RESIDENT), ("jumin9", OTHER_COMMUNITYS_RESIDENT)):
        demo_loaded.accounts.save(accounts.make_user(username, "居民", [accounts.Role.RESIDENT], STREET_ID,
                                                     hashed(PASSWORD), resident=resident))
    with TestClient(create_app(settings, demo_loaded), follow_redirects=False) as client:
        yield client


def login(client: TestClient, username: str) -> None:
    answer = client.post("/login", data={"username": username, "password": PASSWORD, "next": "/",
                                         "csrf_token": csrf_of(client)})
    assert answer.status_code == 303


def open_matter(client: TestClient, title: str, **fields: str) -> str:
    """The secretary's form, as sent: returns the matter's key."""
    page = client.get("/matters/new")
    values = {name: re.search(rf'name="{name}"[^>]*value="([^"]*)"', page.text).group(1)
              for name in ("opens_at", "closes_at")}
    answer = post_form(client, "/matters/new", {"community": "community:c1", "title": title, "body": "说明",
                                                "kind": "household_assembly", "electorate": "household",
                                                "rule": "households_three_quarters", "options": "", "mode": "open",
                                                **values, **fields})
    assert answer.status_code == 303, answer.text
    return answer.headers["location"].rsplit("/", 1)[1]


def test_open_vote_close_and_the_published_result_holds_the_receipt(site: TestClient, demo_loaded: Couch,
                                                                    settings: Settings) -> None:
    title = "加装电梯 " + uuid.uuid4().hex[:6]
    login(site, "shuji1")
    key = open_matter(site, title)
    page = site.get(f"/matters/{key}")
    assert title in page.text and "表决中" in page.text and "结束表决并公布结果" in page.text
    roll = site.get(f"/matters/{key}/roll")
    assert roll.status_code == 200 and "幸福路" in roll.text  # the households' addresses
    logout(site)

    login(site, "jumin1")
    assert title in site.get("/matters").text
    voted = post_form(site, f"/matters/{key}", {"choice": "yes"})
    assert voted.status_code == 303
    mine = site.get(f"/matters/{key}")
    receipt = re.search(r'id="receipt">([0-9A-F-]{14})<', mine.text).group(1)
    assert "已投票：同意" in mine.text
    again = post_form(site, f"/matters/{key}", {"choice": "no"})
    assert again.status_code == 409 and "您已经投过票了" in again.text
    logout(site)

    login(site, "shuji1")
    assert 'id="ballots-in">1<' in site.get(f"/matters/{key}").text
    closed = post_form(site, f"/matters/{key}/close", {})
    assert closed.status_code == 303 and closed.headers["location"] == f"/matters/{key}/result"
    audit = site.get("/audit")  # the result is filed: the secretary's filing log names it and the matter
    assert audit.status_code == 200 and "公布表决结果" in audit.text and title in audit.text
    logout(site)

    result = site.get(f"/matters/{key}/result")  # published: no sign-in needed
    assert result.status_code == 200 and receipt in result.text and "未通过" in result.text
    assert "1</td><td>16</td>" in result.text  # 1 household agreed of the roll's 16: numerator and denominator
    published = site.get(f"/matters/{key}/result.json").json()
    assert published["receipts"] == [receipt] and published["totals"] == {"yes": 1, "no": 0, "abstain": 0}
    assert filing.result_signed(Signer.of(settings).key.public_key(), "community:c1", f"matter:{key}",
                                published["filed_seq"], d.result_hash(published), published["signature"])
    rows = list(csv.reader(io.StringIO(site.get(f"/matters/{key}/result.csv").text)))
    assert [receipt] in rows and ["yes", "1"] in rows


def test_a_paper_ballot_entered_for_a_household_that_voted_is_a_conflict_counted_once(
        site: TestClient, demo_loaded: Couch) -> None:
    login(site, "shuji1")
    key = open_matter(site, "议题 " + uuid.uuid4().hex[:6])
    logout(site)
    login(site, "jumin1")
    assert post_form(site, f"/matters/{key}", {"choice": "yes"}).status_code == 303
    logout(site)
    login(site, "shuji1")
    home = demo_loaded.main.get(RESIDENT)["household"]
    other = "household:c1-g01-0003"
    for voter, choice in ((home, "no"), (other, "no")):
        assert post_form(site, f"/matters/{key}/paper", {"voter": voter, "choice": choice}).status_code == 303
    page = site.get(f"/matters/{key}")
    assert 'id="ballots-in">2<' in page.text
    conflicts = page.text.split('id="conflicts"')[1].split("</ul>")[0]
    assert home in conflicts and "纸质选票" in conflicts and "本人投票" in conflicts
    own, paper = (conflicts.split(channel)[1].split("；")[0].split("</span>")[0]
                  for channel in ("本人投票", "纸质选票"))
    assert "✓" in own and "✓" not in paper  # the resident's own vote is the one counted
    stranger = post_form(site, f"/matters/{key}/paper", {"voter": "household:c2-g01-0001", "choice": "yes"})
    assert stranger.status_code == 403 and "不在本议题的投票名册上" in stranger.text
    post_form(site, f"/matters/{key}/close", {})
    published = site.get(f"/matters/{key}/result.json").json()
    assert published["totals"] == {"yes": 1, "no": 1, "abstain": 0} and published["conflicts"] == 1


def test_bad_votes_are_refused_naming_why_and_nothing_is_stored(site: TestClient, demo_loaded: Couch) -> None:
    login(site, "shuji1")
    key = open_matter(site, "议题 " + uuid.uuid4().hex[:6])
    logout(site)
    figures_cells.caught_up(demo_loaded).result(timeout=300)  # a dashboard shown earlier may still be counting
    before = demo_loaded.main.config()["doc_count"]

    login(site, "jumin1")
    unknown = post_form(site, f"/matters/{key}", {"choice": "maybe"})
    assert unknown.status_code == 400 and "“maybe”不是本议题的选项" in unknown.text
    logout(site)
    login(site, "jumin9")  # lives in another community: the matter is not there for them
    assert post_form(site, f"/matters/{key}", {"choice": "yes"}).status_code == 404
    logout(site)
    login(site, "zhiyuan01a")  # works in the community, but a volunteer is no household
    not_on_roll = post_form(site, f"/matters/{key}", {"choice": "yes"})
    assert not_on_roll.status_code == 403 and "不在本议题的投票名册上" in not_on_roll.text
    assert site.get("/matters/new").status_code == 403
    assert post_form(site, f"/matters/{key}/close", {}).status_code == 403
    assert site.get(f"/matters/{key}/roll").status_code == 403
    logout(site)
    assert demo_loaded.main.config()["doc_count"] == before

    login(site, "shuji1")
    post_form(site, f"/matters/{key}/close", {})
    logout(site)
    login(site, "jumin1")
    closed = post_form(site, f"/matters/{key}", {"choice": "yes"})
    assert closed.status_code == 409 and "表决已结束" in closed.text


def test_bad_matters_are_refused_naming_why_and_nothing_is_stored(site: TestClient, demo_loaded: Couch) -> None:
    login(site, "shuji1")
    figures_cells.caught_up(demo_loaded).result(timeout=300)  # a dashboard shown earlier may still be counting
    before = demo_loaded.main.config()["doc_count"]
    for fields, status, text in (
            ({"opens_at": "next tuesday"}, 400, "不是有效的日期时间"),
            ({"closes_at": "2020-01-01T09:00"}, 400, "截止时间必须晚于开始时间"),
            ({"rule": "advisory", "options": "只有一个"}, 400, "请填写 2 到 20 个互不相同的选项"),
            ({"mode": "anonymous"}, 400, "不是可选项"),
            ({"kind": "referendum"}, 400, "不是可选项"),
            ({"community": "community:c2"}, 403, "您不是该社区的书记"),
            ({"title": " "}, 400, "请填写议题名称")):
        page = site.get("/matters/new")
        values = {name: re.search(rf'name="{name}"[^>]*value="([^"]*)"', page.text).group(1)
                  for name in ("opens_at", "closes_at")}
        answer = post_form(site, "/matters/new", {"community": "community:c1", "title": "题", "kind": "hearing",
                                                  "electorate": "household", "rule": "households_three_quarters",
                                                  "mode": "open", **values, **fields})
        assert (answer.status_code, text in answer.text) == (status, True), fields
    assert demo_loaded.main.config()["doc_count"] == before
    for path in ("/matters/nonsense", "/matters/nonsense/result", "/matters/nonsense/result.json", "/matters/x/roll"):
        assert site.get(path).status_code == 404, path
    key = open_matter(site, "未结束")
    assert site.get(f"/matters/{key}/result").status_code == 404  # nothing published before the close
