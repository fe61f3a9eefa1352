"""Hearings and meetings (server/services/meetings.py, server/web/meeting_pages.py) over the small demo street: the
secretary schedules and publishes a hearing whose agenda names a matter, a resident posts an opinion, the secretary
hides another with a reason (kept, filed), marks who came (named with consent), counts the paper ballots' envelopes:
a mismatch blocks the matter's close naming both counts, by hand and by the clock, until fixed or explained; the
minutes are published and printable. Participation is read as a view; bad input is refused naming why, nothing
stored, no 5xx."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from server.domain.meetings import PARTICIPATION, PaperCount, paper_mismatch, participation_id
from server.security import accounts, filing
from server.security.filing import Signer
from server.services import deliberation as d
from server.services import figures_cells
from server.services import meetings as mt
from server.services.demo import STREET_ID
from server.store.config import LOCAL_TZ, Settings
from server.store.couch import Couch
from server.web.app import create_app

from .street import csrf_of, hashed, logout, post_form

PASSWORD = "demo-password"
RESIDENT = "resident:c1-g01-0002-1"  # jumin1
NEIGHBOUR = "resident:c1-g01-0003-1"  # jumin2
OTHER_COMMUNITYS_RESIDENT = "resident:c2-g01-0001-1"  # jumin9


@pytest.fixture
def site(demo_loaded: Couch, settings: Settings) -> Iterator[TestClient]:
    for username, resident in (("jumin1", RESIDENT), ("jumin2", NEIGHBOUR), ("jumin9", OTHER_COMMUNITYS_RESIDENT)):
        demo_loaded.accounts.save(accounts.make_user(username, f"居民{username[-1]}", [accounts.Role.RESIDENT],
                                                     STREET_ID, hashed(PASSWORD), resident=resident))
    with TestClient(create_app(settings, demo_loaded), follow_redirects=False) as client:
        yield client


def login(client: TestClient, username: str) -> None:
    answer = client.post("/login", data={"username": username, "password": PASSWORD, "next": "/",
                                         "csrf_token": csrf_of(client)})
    assert answer.status_code == 303


def open_matter(client: TestClient, title: str) -> str:
    page = client.get("/matters/new")
    values = {name: re.search(rf'name="{name}"[^>]*value="([^"]*)"', page.text).group(1)
              for name in ("opens_at", "closes_at")}
    answer = post_form(client, "/matters/new", {"community": "community:c1", "title": title, "body": "",
                                                "kind": "hearing", "electorate": "household",
                                                "rule": "households_three_quarters", "options": "", "mode": "open",
                                                **values})
    assert answer.status_code == 303, answer.text
    return answer.headers["location"].rsplit("/", 1)[1]


def tomorrow() -> str:
    return (dt.datetime.now(LOCAL_TZ) + dt.timedelta(days=1)).strftime("%Y-%m-%dT19:00")


def schedule(client: TestClient, title: str, matter: str = "", **fields: str | list[str]) -> str:
    answer = post_form(client, "/meetings/new", {
        "community": "community:c1", "kind": "hearing", "title": title, "starts_at": tomorrow(), "place": "社区活动室",
        "item_title": ["加装电梯听证", "其他事项"], "item_matter": [matter, ""], **fields})
    assert answer.status_code == 303, answer.text
    return answer.headers["location"].rsplit("/", 1)[1]


def hearing(client: TestClient) -> tuple[str, str, str]:
    """shuji1 (signed in) opens a household vote and publishes a hearing on it: (matter key, meeting key, title)."""
    title = "听证 " + uuid.uuid4().hex[:6]
    matter = open_matter(client, "加装电梯 " + title)
    key = schedule(client, title, matter)
    assert post_form(client, f"/meetings/{key}/publish", {}).status_code == 303
    return matter, key, title


def test_a_hearing_from_its_agenda_to_its_published_minutes(site: TestClient, demo_loaded: Couch,
                                                            settings: Settings) -> None:
    login(site, "shuji1")
    title = "听证 " + uuid.uuid4().hex[:6]
    matter = open_matter(site, "加装电梯 " + title)
    key = schedule(site, title, matter)
    draft = site.get(f"/meetings/{key}")
    assert "草稿（未公布）" in draft.text and f"/matters/{matter}" in draft.text  # the agenda links its matter
    logout(site)
    login(site, "jumin1")  # a draft is not there for residents, as a missing page
    assert site.get(f"/meetings/{key}").status_code == 404 and title not in site.get("/meetings").text
    logout(site)

    login(site, "shuji1")
    assert post_form(site, f"/meetings/{key}/publish", {}).status_code == 303
    logout(site)
    login(site, "jumin1")
    assert title in site.get("/meetings").text.split('id="meetings-upcoming"')[1]
    posted = post_form(site, f"/meetings/{key}/opinions", {"text": "支持加装，希望低层住户也能得到补偿"})
    assert posted.status_code == 303
    logout(site)
    login(site, "wangge01")  # a grid worker of the community posts too
    assert post_form(site, f"/meetings/{key}/opinions", {"text": "请留电话 13800000000 私聊"}).status_code == 303
    logout(site)

    login(site, "shuji1")
    worker_opinion = [o for o in mt.opinions(demo_loaded, {"_id": f"meeting:{key}"}) if "13800000000" in o["text"]]
    hidden = post_form(site, f"/meetings/{key}/hide",
                       {"opinion": worker_opinion[0]["_id"], "reason": "含个人电话号码"})
    assert hidden.status_code == 303
    kept = demo_loaded.main.get(worker_opinion[0]["_id"])
    assert kept["hidden"] and kept["text"] == "请留电话 13800000000 私聊"  # kept as it was, never deleted
    entries = list(filing.iter_entries(demo_loaded, "community:c1"))
    assert any(e["action"] == "opinion_hidden" and e["target"] == kept["_id"] and e["purpose"] == "含个人电话号码"
               for e in entries)
    assert "隐藏会前意见" in site.get("/audit").text
    page = site.get(f"/meetings/{key}")
    assert "13800000000" in page.text  # the secretary still reads it
    for resident, named in ((RESIDENT, "yes"), (NEIGHBOUR, "")):
        assert post_form(site, f"/meetings/{key}/present", {"resident": resident, "named": named}).status_code == 303
    meeting = demo_loaded.main.get(f"meeting:{key}")
    named = demo_loaded.main.get(RESIDENT)["name"]
    assert meeting["headcount"] == 2 and meeting["named_attendees"] == [named]
    assert post_form(site, f"/meetings/{key}/headcount", {"headcount": "5"}).status_code == 303
    decisions = ["同意按方案加装电梯，提交户表决", ""]
    minutes = post_form(site, f"/meetings/{key}/publish-minutes",
                        {"minutes": "到会 5 人，听取意见。", "decision": decisions})
    assert minutes.status_code == 303
    again = post_form(site, f"/meetings/{key}/publish-minutes", {"minutes": "改写", "decision": []})
    assert again.status_code == 409 and "会议纪要已公布，不能再修改" in again.text
    logout(site)

    login(site, "jumin2")  # a neighbour reads the thread, the attendance and the minutes
    page = site.get(f"/meetings/{key}")
    assert "支持加装" in page.text and "13800000000" not in page.text and "含个人电话号码" in page.text
    assert "出席 5 人" in page.text and named in page.text and demo_loaded.main.get(NEIGHBOUR)["name"] not in page.text
    printable = site.get(f"/meetings/{key}/minutes")
    assert printable.status_code == 200 and "同意按方案加装电梯" in printable.text
    assert f"/matters/{matter}" in printable.text
    logout(site)
    login(site, "jumin9")  # another community's resident: no such meeting
    assert site.get(f"/meetings/{key}").status_code == 404 and site.get(f"/meetings/{key}/minutes").status_code == 404


def test_envelopes_that_do_not_match_attendance_block_the_close_until_fixed_or_explained(
        site: TestClient, demo_loaded: Couch, settings: Settings, firewall) -> None:
    login(site, "shuji1")
    matter, key, _ = hearing(site)
    homes = [demo_loaded.main.get(r)["household"] for r in (RESIDENT, NEIGHBOUR)]
    for home in homes:
        assert post_form(site, f"/matters/{matter}/paper", {"voter": home, "choice": "yes"}).status_code == 303
    assert post_form(site, f"/meetings/{key}/present", {"resident": RESIDENT}).status_code == 303
    assert post_form(site, f"/meetings/{key}/envelopes",
                     {"matter": f"matter:{matter}", "envelopes": "2"}).status_code == 303
    blocked = post_form(site, f"/matters/{matter}/close", {})
    assert blocked.status_code == 409 and "票箱中有 2 个信封，但登记出席的投票人是 1 名" in blocked.text
    assert demo_loaded.main.get(f"matter:{matter}")["status"] == "open"
    assert "票箱中有 2 个信封" in site.get(f"/meetings/{key}").text  # the hearing's page says so too
    # Past its closing time, the clock leaves it open as well, and says nothing was closed.
    late = dt.datetime.fromisoformat(demo_loaded.main.get(f"matter:{matter}")["closes_at"]) + dt.timedelta(hours=1)
    assert d.close_due(demo_loaded, firewall.keystore, Signer.of(settings), late) == 0

    assert post_form(site, f"/meetings/{key}/present", {"resident": NEIGHBOUR}).status_code == 303  # fixed
    assert post_form(site, f"/meetings/{key}/envelopes",
                     {"matter": f"matter:{matter}", "envelopes": "3"}).status_code == 303
    blocked = post_form(site, f"/matters/{matter}/close", {})
    assert blocked.status_code == 409 and "票箱中有 3 个信封，但登记出席的投票人是 2 名" in blocked.text
    short = post_form(site, f"/meetings/{key}/correction", {"matter": f"matter:{matter}", "reason": "多"})
    assert short.status_code == 400 and "请写明更正的理由" in short.text
    explained = post_form(site, f"/meetings/{key}/correction",
                          {"matter": f"matter:{matter}", "reason": "一位未登记的旁听者误投空信封"})
    assert explained.status_code == 303
    assert any(e["action"] == "paper_corrected" and e["purpose"].startswith("3/2/2:")
               for e in filing.iter_entries(demo_loaded, "community:c1"))
    closed = post_form(site, f"/matters/{matter}/close", {})
    assert closed.status_code == 303 and site.get(f"/matters/{matter}/result.json").json()["counted"] == 2


def test_a_correction_explains_the_counts_it_names_and_no_others() -> None:
    count = PaperCount(envelopes=3, present=2, entered=2)
    assert paper_mismatch(count, None) == ("meeting_envelopes_vs_present", {"envelopes": 3, "present": 2})
    assert paper_mismatch(count, count.as_text()) is None
    assert paper_mismatch(PaperCount(4, 2, 2), count.as_text()) is not None  # counts moved after: blocked again
    assert paper_mismatch(PaperCount(2, 2, 1), None) == ("meeting_envelopes_vs_entered",
                                                         {"envelopes": 2, "entered": 1})
    assert paper_mismatch(PaperCount(2, 2, 2), None) is None


def test_participation_is_read_from_ballots_attendance_and_opinions_not_hidden(site: TestClient,
                                                                               demo_loaded: Couch) -> None:
    login(site, "shuji1")
    matter, key, _ = hearing(site)
    logout(site)
    login(site, "jumin1")
    assert post_form(site, f"/matters/{matter}", {"choice": "yes"}).status_code == 303
    assert post_form(site, f"/meetings/{key}/opinions", {"text": "同意"}).status_code == 303
    logout(site)
    login(site, "jumin2")
    assert post_form(site, f"/meetings/{key}/opinions", {"text": "广告：低价装修"}).status_code == 303
    logout(site)
    login(site, "shuji1")
    spam = next(o for o in mt.opinions(demo_loaded, {"_id": f"meeting:{key}"}) if "广告" in o["text"])
    hidden = post_form(site, f"/meetings/{key}/hide", {"opinion": spam["_id"], "reason": "广告，与议题无关"})
    assert hidden.status_code == 303
    assert post_form(site, f"/meetings/{key}/present", {"resident": NEIGHBOUR}).status_code == 303
    events = {(e.kind, e.person) for e in mt.participation(demo_loaded, "community:c1")}
    assert {("voted", RESIDENT), ("opinion", RESIDENT), ("attended", NEIGHBOUR)} <= events
    assert ("opinion", NEIGHBOUR) not in events  # hidden: no participation
    ids = [e.id for e in mt.participation(demo_loaded, "community:c1")]
    assert len(ids) == len(set(ids)) and participation_id("attended", f"attendance:{key}:{NEIGHBOUR}", NEIGHBOUR) in ids
    assert set(PARTICIPATION) == {e.kind for e in mt.participation(demo_loaded, "community:c1")}


def test_bad_meeting_input_is_refused_naming_why_and_nothing_is_stored(site: TestClient, demo_loaded: Couch,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    login(site, "shuji1")
    matter, key, _ = hearing(site)
    other = open_matter(site, "不在议程上 " + uuid.uuid4().hex[:6])
    assert post_form(site, f"/meetings/{key}/present", {"resident": NEIGHBOUR}).status_code == 303
    meeting_before = demo_loaded.main.get(f"meeting:{key}")
    figures_cells.caught_up(demo_loaded).result(timeout=300)  # a dashboard shown earlier may still be counting
    before = demo_loaded.main.config()["doc_count"]
    cases = [
        ("/meetings/new", {"community": "community:c1", "kind": "party", "title": "x", "starts_at": tomorrow(),
                           "place": "p", "item_title": ["a"]}, 400, "不是可选项"),
        ("/meetings/new", {"community": "community:c1", "kind": "hearing", "title": "x",
                           "starts_at": "2020-01-01T09:00", "place": "p", "item_title": ["a"]}, 400, "必须在现在之后"),
        ("/meetings/new", {"community": "community:c1", "kind": "hearing", "title": "x", "starts_at": "明天",
                           "place": "p", "item_title": ["a"]}, 400, "明天"),
        ("/meetings/new", {"community": "community:c1", "kind": "hearing", "title": "x", "starts_at": tomorrow(),
                           "place": "p", "item_title": [""]}, 400, "请至少填写一个议题"),
        ("/meetings/new", {"community": "community:c2", "kind": "hearing", "title": "x", "starts_at": tomorrow(),
                           "place": "p", "item_title": ["a"]}, 403, ""),
        ("/meetings/new", {"community": "community:c1", "kind": "hearing", "title": "x", "starts_at": tomorrow(),
                           "place": "p", "item_title": ["a"], "item_matter": ["nowhere"]}, 400, "不属于本社区"),
        (f"/meetings/{key}/hide", {"opinion": "opinion:nowhere", "reason": "理由充分"}, 404, "找不到这条意见"),
        (f"/meetings/{key}/present", {"resident": OTHER_COMMUNITYS_RESIDENT}, 400, "请选择本社区的居民"),
        (f"/meetings/{key}/headcount", {"headcount": "-3"}, 400, "必须是整数"),
        (f"/meetings/{key}/headcount", {"headcount": "0"}, 400, "不能少于已登记出席的 1 人"),
        (f"/meetings/{key}/headcount", {"headcount": "999999"}, 400, "实到人数最多 100000 人"),
        (f"/meetings/{key}/envelopes", {"matter": f"matter:{other}", "envelopes": "1"}, 400, "不在本次会议的议程上"),
        (f"/meetings/{key}/envelopes", {"matter": f"matter:{matter}", "envelopes": "99999"}, 400, "信封数应在 0 到"),
        (f"/meetings/{key}/correction", {"matter": f"matter:{matter}", "reason": "说明一下"}, 400, "请先填写信封数"),
        (f"/meetings/{key}/publish-minutes", {"minutes": "   "}, 400, "必填"),
        (f"/meetings/{key}/opinions", {"text": "书记不在意见名单上"}, 403, "只有本社区的居民和网格员"),
    ]
    for path, data, status, says in cases:
        answer = post_form(site, path, data)
        assert answer.status_code == status and says in answer.text, (path, data, answer.status_code)
    logout(site)
    login(site, "jumin1")
    for path, data, status, says in [
            (f"/meetings/{key}/opinions", {"text": "x" * 1001}, 400, "最多 1000 个字"),
            (f"/meetings/{key}/opinions", {"text": "  "}, 400, "必填"),
            (f"/meetings/{key}/hide", {"opinion": "opinion:x", "reason": "理由充分"}, 403, ""),
            (f"/meetings/{key}/present", {"resident": RESIDENT}, 403, "")]:
        answer = post_form(site, path, data)
        assert answer.status_code == status and says in answer.text, (path, answer.status_code)
    assert site.get("/meetings/new").status_code == 403
    logout(site)
    login(site, "shuji1")  # a form sent from a page the meeting has changed since: refused, not a 500
    stale = mt.set_envelopes  # as if another form saved the meeting between this one's read and its write
    monkeypatch.setattr(mt, "set_envelopes",
                        lambda couch, p, meeting, matter, n: stale(couch, p, {**meeting, "_rev": "1-0"}, matter, n))
    raced = post_form(site, f"/meetings/{key}/envelopes", {"matter": f"matter:{matter}", "envelopes": "1"})
    assert raced.status_code == 409 and "会议刚被修改过" in raced.text
    logout(site)
    assert demo_loaded.main.config()["doc_count"] == before
    assert demo_loaded.main.get(f"meeting:{key}")["_rev"] == meeting_before["_rev"]
