"""Opening a street-wide vote answers at once and freezes its roll after (issue 15, bench/vote_tally.py: 114 s at
100,000 households): the matter is "preparing the roll" meanwhile, its page says so, and no ballot or close is
taken until the roll is frozen (deliberation.freeze_roll, after the answer; freeze_pending on the minute clock)."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from starlette.testclient import TestClient

from server.domain.access import Principal
from server.security import accounts
from server.security.filing import Signer
from server.security.firewall import Firewall
from server.services import deliberation as d
from server.services.demo import STREET_ID
from server.store.config import Settings
from server.store.couch import Couch, get_or_none
from server.web.app import create_app

from .street import csrf_of, hashed, post_form

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
PASSWORD = "demo-password"
RESIDENT = "resident:c1-g01-0002-1"


def new_matter() -> d.NewMatter:
    return d.NewMatter("community:c1", "加装电梯 " + uuid.uuid4().hex[:6], "", "household_assembly", "household",
                       "households_three_quarters", (), NOW - dt.timedelta(hours=1), NOW + dt.timedelta(days=7))


@pytest.fixture
def site(demo_loaded: Couch, settings: Settings) -> TestClient:
    """The web app without its lifespan: no minute clock, whose freeze_pending would race the preparing page."""
    demo_loaded.accounts.save(accounts.make_user("jumin1", "居民", [accounts.Role.RESIDENT], STREET_ID,
                                                 hashed(PASSWORD), resident=RESIDENT))
    return TestClient(create_app(settings, demo_loaded), follow_redirects=False)


def login(client: TestClient, username: str) -> None:
    answer = client.post("/login", data={"username": username, "password": PASSWORD, "next": "/",
                                         "csrf_token": csrf_of(client)})
    assert answer.status_code == 303


def test_a_preparing_matter_takes_no_ballot_and_no_close_until_its_roll_is_frozen(
        demo_loaded: Couch, firewall: Firewall, settings: Settings) -> None:
    secretary = Principal.of(demo_loaded.accounts.get(accounts.user_id("shuji1")))
    matter = d.open_matter(demo_loaded, firewall.keystore, secretary, new_matter(), NOW, roll_later=True)
    assert matter["status"] == "preparing" and get_or_none(demo_loaded.main, d.roll_id(matter["_id"])) is None
    home = demo_loaded.main.get(RESIDENT)["household"]
    with pytest.raises(d.VoteError) as refused:
        d.cast(demo_loaded, secretary, matter, home, "yes", "paper", NOW, household=home)
    assert refused.value.errors[0].key == "vote_roll_preparing" and refused.value.status == 409
    with pytest.raises(d.VoteError) as refused:
        d.close(demo_loaded, firewall.keystore, Signer.of(settings), secretary, matter, NOW)
    assert refused.value.errors[0].key == "vote_roll_preparing"
    assert d.close_due(demo_loaded, firewall.keystore, Signer.of(settings), NOW + dt.timedelta(days=8)) == 0

    assert d.freeze_pending(demo_loaded, NOW) == 1  # the clock finishes what a stopped process left
    opened = demo_loaded.main.get(matter["_id"])
    roll = demo_loaded.main.get(d.roll_id(matter["_id"]))
    assert opened["status"] == "open" and opened["roll_size"] == len(roll["entries"]) == 16  # the small demo's c1
    assert opened["roll_hash"] == roll["hash"] == d.roll_hash(roll["entries"])
    assert d.freeze_roll(demo_loaded, matter, NOW)["roll_hash"] == roll["hash"]  # twice: the roll frozen first
    assert d.freeze_pending(demo_loaded, NOW) == 0
    d.cast(demo_loaded, secretary, opened, home, "yes", "paper", NOW, household=home)


def test_a_large_community_gets_its_roll_after_the_answer_and_the_page_says_preparing(
        site: TestClient, demo_loaded: Couch, firewall: Firewall, monkeypatch: pytest.MonkeyPatch) -> None:
    secretary = Principal.of(demo_loaded.accounts.get(accounts.user_id("shuji1")))
    preparing = d.open_matter(demo_loaded, firewall.keystore, secretary, new_matter(), NOW, roll_later=True)
    key = d.key_of(preparing["_id"])
    login(site, "jumin1")
    page = site.get(f"/matters/{key}")
    assert page.status_code == 200 and 'id="preparing"' in page.text and "正在准备投票名册" in page.text
    vote = post_form(site, f"/matters/{key}", {"choice": "yes"})
    assert vote.status_code == 409 and "投票名册还在准备中" in vote.text

    monkeypatch.setattr(d, "ROLL_IN_BACKGROUND_FROM", 10)  # the small demo's community 1 has 16 households
    site.cookies.clear()
    login(site, "shuji1")
    form = site.get("/matters/new").text
    times = {n: re.search(rf'name="{n}"[^>]*value="([^"]*)"', form).group(1) for n in ("opens_at", "closes_at")}
    opened = post_form(site, "/matters/new", {"community": "community:c1", "title": "全街道表决", "body": "",
                                              "kind": "household_assembly", "electorate": "household",
                                              "rule": "households_three_quarters", "options": "", "mode": "open",
                                              **times})
    assert opened.status_code == 303
    key = opened.headers["location"].rsplit("/", 1)[1]
    # The answer left before the roll; the test client returns once the background task is done.
    matter = demo_loaded.main.get(f"matter:{key}")
    assert matter["status"] == "open" and matter["roll_size"] == 16 and int(matter["_rev"].split("-")[0]) == 2
