"""Matching in Chromium against `linli serve` on the demo (issue 17, item 4), in community 4's grid 3 (grid 18):
a volunteer offers an hour of company on Saturdays; the grid worker gives a resident an account, the resident
says what they need on their own page (the language they speak, Saturday morning); the grid worker runs the
matcher and sees the proposal with its factors; the resident accepts it on their phone, the volunteer accepts it
(seeing no name or address until then), the match holds and becomes the volunteer's task; they mark it done and
claim the hours in the time bank. The secretary sees the needs nobody could be matched to, each with its reasons.

One server for the session (tests/journeys.py). Screenshots: test-output/journeys/matching/.
"""

from __future__ import annotations

import re
import secrets

from playwright.sync_api import Browser, expect

from tests.browser import PHONE, screenshot
from tests.journeys import JOURNEYS, Person
from tests.test_serve import Served

GRID = "grid:c4-g03"  # wangge18's; zhiyuan18a volunteers there
SHOTS = JOURNEYS / "matching"


def test_a_need_is_proposed_both_sides_accept_it_is_done_and_the_hours_claimed(
    journey_browser: Browser, journey_served: Served
) -> None:
    tail = secrets.token_hex(3)
    volunteer = Person(journey_browser, journey_served, "zhiyuan18a", role="matching")
    volunteer.go("offers")
    form = volunteer.page.locator("#offer-new form")
    form.locator("input[name=title]").fill(f"周六上午陪老人聊天 {tail}")
    form.locator("select[name=help_kind]").select_option("companionship")
    form.locator("input[name=capacity]").fill("1")
    form.locator("select[name=day_1]").select_option("5")
    form.locator("input[name=start_1]").fill("09:00")
    form.locator("input[name=end_1]").fill("11:00")
    form.locator("input[name=skills]").fill(f"下棋，聊天{tail}")
    volunteer.shot("1-offer")
    form.locator("button[type=submit]").click()
    volunteer.page.wait_for_url(re.compile(r"/offers\?done=saved$"))
    mine = volunteer.page.locator("#offers li", has_text=tail)
    expect(mine).to_contain_text("周六 09:00–11:00")
    offer_key = mine.get_attribute("data-offer").split(":", 1)[1]

    # The grid worker gives a resident of the grid an account; the resident says what they need.
    worker = Person(journey_browser, journey_served, "wangge18", role="matching")
    code = worker.issue_activation_code([f"household:c4-g03-{h:04d}" for h in range(4, 9)]).code
    resident_name = worker.page.locator("h1").inner_text().split(" · ", 1)[1]
    resident = journey_browser.new_context(viewport=PHONE, locale="zh-CN", service_workers="block")
    page = resident.new_page()
    page.goto(journey_served.url + "activate")
    password = "matching-" + secrets.token_hex(6)
    for field, value in (("code", code), ("username", f"jumin{tail}"), ("password", password),
                         ("password_again", password)):
        page.fill(f"#{field}", value)
    page.click("button:has-text('开通账户')")
    page.wait_for_url(journey_served.url)
    page.goto(journey_served.url + "needs")
    page.select_option("#need-category", "companionship")
    page.fill("#need-description", f"一个人在家闷，想找人聊天{tail}")
    page.select_option("#need-language", "putonghua")  # what they speak, and when help suits them: the matcher
    page.select_option("#needs select[name=day_1]", "5")  # finds the 2 hours in common with the offer below
    page.fill("#needs input[name=start_1]", "08:00")
    page.fill("#needs input[name=end_1]", "12:00")
    page.click("#needs form button[type=submit]")
    page.wait_for_url(re.compile(r"/#needs$"))

    # The grid worker runs the matcher: the proposal, with its factors in plain words.
    worker.go("matching")
    worker.act("运行匹配")
    expect(worker.page.locator("p.notice[role=status]")).to_contain_text("匹配已运行")
    card = worker.page.locator(f"#waiting [data-match$=':{offer_key}']")
    expect(card).to_contain_text(resident_name)
    expect(card.locator("[data-factor]")).to_have_count(5)
    expect(card.locator("[data-factor=nearness]")).to_contain_text("同一网格")
    expect(card.locator("[data-factor=skills]")).to_contain_text(f"聊天{tail}")  # the need's own words
    worker.shot("2-proposal-with-factors")

    # The resident accepts on their phone; the volunteer then, seeing the need but not who or where.
    page.goto(journey_served.url + "matches")
    proposal = page.locator(f"[data-match$=':{offer_key}']")
    expect(proposal.locator("[data-factor=time]")).to_contain_text("每周有 2 小时时间合适")
    proposal.locator("button:has-text('同意')").click()
    page.wait_for_url(re.compile(r"/matches\?done=accepted$"))
    expect(proposal.locator("[data-answer=need]")).to_have_text("已同意")
    screenshot(page, SHOTS / "3-resident-accepts.png")
    resident.close()

    volunteer.go("matches")
    proposal = volunteer.page.locator(f"[data-match$=':{offer_key}']")
    expect(proposal).to_contain_text("陪伴聊天")
    expect(proposal).not_to_contain_text(resident_name)
    proposal.locator("button:has-text('同意')").click()
    volunteer.page.wait_for_url(re.compile(r"/matches\?done=matched$"))
    expect(proposal).to_contain_text("匹配成功")
    volunteer.shot("4-both-accepted")
    proposal.locator("a:has-text('查看志愿任务')").click()
    volunteer.page.wait_for_url(re.compile(r"/tasks/[0-9a-f]{32}$"))
    task_id = "task:" + volunteer.page.url.rsplit("/", 1)[1]
    expect(volunteer.page.locator("main")).to_contain_text(resident_name)  # now they need to know whom and where
    volunteer.page.fill("textarea[name=volunteer_note]", f"聊了一上午，下了两盘棋 {tail}")
    volunteer.act("已完成")
    expect(volunteer.page.locator("h1")).to_contain_text("已完成")

    # The ledger's indexes are built by `linli serve` after it starts listening: the first answer may wait for them.
    volunteer.go("/timebank")  # "preparing" while the ledger's index is built (a first start), then the page
    claimable = volunteer.page.locator(f"#claimable li[data-task='{task_id}']")
    claimable.locator("input[name=hours]").fill("2")
    claimable.locator("button:has-text('申报时长')").click()
    volunteer.page.wait_for_url(re.compile(r"/timebank\?done=claimed$"))
    expect(volunteer.page.locator(f"[data-made='claim:{task_id}']")).to_contain_text("待确认")
    volunteer.shot("5-hours-claimed")

    # The secretary: the community's needs nobody could be matched to, each with its reasons.
    secretary = Person(journey_browser, journey_served, "shuji4", role="matching")
    secretary.go("matching")
    expect(secretary.page.locator("h1")).to_have_text("待匹配的需求")
    unmatched = secretary.page.locator("#unmatched li[data-need]")
    expect(unmatched.first.locator("[data-reason]").first).to_be_visible()
    secretary.shot("6-unmatched-with-reasons")
    for person in (volunteer, worker, secretary):
        person.close()
