"""A hearing, in Chromium against `linli serve` on the demo (issue 15 item 8 and the paper half of item 5), in
community 2's grids 1 and 2: the secretary opens a household vote and schedules a hearing whose agenda names it,
a resident posts an opinion and another's is hidden with a reason; at the hearing the secretary marks both present,
enters their paper ballots and counts one envelope too many, so the vote's close is refused naming both counts;
recounted, it closes; the minutes are published and the first resident reads them, their name among those who
agreed to be named, the hidden opinion's reason and not its text.

One server for the session (tests/journeys.py); titles carry a random tail, households are tried in a random
order. Screenshots: test-output/journeys/hearing/ (1-scheduled, 2-opinions, 3-hidden, 4-close-blocked,
5-reconciled, 6-minutes, 7-resident-reads).
"""

from __future__ import annotations

import random
import secrets

from playwright.sync_api import Browser, Page, expect

from tests.browser import screenshot
from tests.journeys import Person, activate
from tests.test_journey_deliberation import open_matter
from tests.test_serve import Served


def _new_resident(browser: Browser, served: Served, worker: Person, grid: str) -> tuple[Page, str, str]:
    """A resident of `grid` (community 2) without an account activates one: their signed-in page, their id and
    their household's."""
    activation = worker.issue_activation_code([f"household:{grid}-{h:04d}" for h in range(1, 9)])
    page = activate(browser, served, activation.code)
    return page, activation.resident, activation.household


def _post_opinion(resident: Page, served: Served, title: str, text: str) -> None:
    resident.goto(served.url + "meetings")
    resident.click(f"#meetings-upcoming a.row:has-text('{title}')")
    resident.fill("#opinion-text", text)
    resident.click("button:has-text('发表意见')")
    resident.wait_for_load_state()
    expect(resident.locator("#opinions")).to_contain_text(text)


def test_a_hearing_from_its_agenda_through_paper_ballots_to_minutes_a_resident_reads(
        journey_browser: Browser, journey_served: Served) -> None:
    tail = secrets.token_hex(3)
    matter_title, title = f"小区停车位改划 {tail}", f"停车位改划听证会 {tail}"
    secretary = Person(journey_browser, journey_served, "shuji2", role="hearing")
    open_matter(secretary, matter_title, electorate="household", rule="households_three_quarters")
    matter_url = secretary.page.url
    matter_key = matter_url.rsplit("/", 1)[1]
    secretary.go("/meetings/new")
    secretary.page.fill("#mt-title", title)
    secretary.page.fill("#mt-place", "社区党群服务中心")
    secretary.page.select_option("#mt-matter-1", matter_key)  # the item's title: the matter's
    secretary.act("保存为草稿")
    secretary.act("公布会议")
    meeting_url = secretary.page.url.split("#")[0]
    expect(secretary.page.locator("#agenda")).to_contain_text(matter_title)
    secretary.shot("1-scheduled")

    first_worker = Person(journey_browser, journey_served, "wangge06", role="hearing")
    second_worker = Person(journey_browser, journey_served, "wangge07", role="hearing")
    first, first_id, first_home = _new_resident(journey_browser, journey_served, first_worker, "c2-g01")
    second, second_id, second_home = _new_resident(journey_browser, journey_served, second_worker, "c2-g02")
    _post_opinion(first, journey_served, title, "支持改划，建议给残障人士预留车位")
    screenshot(first, secretary.shots / "2-opinions.png")
    offending = f"谁反对就打我电话 1390000{random.randint(1000, 9999)}"
    _post_opinion(second, journey_served, title, offending)
    second.context.close()

    secretary.page.goto(meeting_url)
    post = secretary.page.locator("#opinions li.opinion", has_text=offending)
    post.locator("input[name=reason]").fill("含个人电话号码，已另行联系本人")
    post.locator("button:has-text('隐藏此意见')").click()
    secretary.page.wait_for_load_state()
    expect(secretary.page.locator("#opinions")).to_contain_text("此意见已被社区书记隐藏，理由：含个人电话号码")
    secretary.shot("3-hidden")

    names = [secretary.page.locator(f"#present-resident option[value='{r}']").inner_text().split(" · ")[0]
             for r in (first_id, second_id)]
    for resident_id, named in ((first_id, True), (second_id, False)):  # at the hearing
        secretary.page.select_option("#present-resident", resident_id)
        if named:
            secretary.page.check("input[name=named]")
        secretary.act("登记为出席")
    expect(secretary.page.locator("#marked")).to_contain_text("已登记出席 2 人")
    secretary.page.goto(matter_url)
    for household in (first_home, second_home):
        secretary.page.select_option("#paper-voter", household)
        secretary.page.select_option("#paper-choice", "yes")
        secretary.act("录入")
    secretary.page.goto(meeting_url)
    paper = secretary.page.locator(f"#paper-{matter_key}")
    paper.locator("input[name=envelopes]").fill("3")  # one envelope too many in the box
    paper.locator("button:has-text('保存')").click()
    secretary.page.wait_for_load_state()
    secretary.page.goto(matter_url)
    secretary.act("结束表决并公布结果")
    expect(secretary.page.locator("#error-close")).to_contain_text("票箱中有 3 个信封，但登记出席的投票人是 2 名")
    assert secretary.page.url.split("#")[0].endswith(f"/matters/{matter_key}/close")
    secretary.shot("4-close-blocked")

    secretary.page.goto(meeting_url)  # recounted: two
    paper = secretary.page.locator(f"#paper-{matter_key}")
    paper.locator("input[name=envelopes]").fill("2")
    paper.locator("button:has-text('保存')").click()
    secretary.page.wait_for_load_state()
    expect(secretary.page.locator(f"#paper-{matter_key}")).to_contain_text("纸质选票已核对一致")
    secretary.shot("5-reconciled")
    secretary.page.goto(matter_url)
    secretary.act("结束表决并公布结果")
    assert secretary.page.url.endswith("/result")
    expect(secretary.page.locator("#totals")).to_contain_text("同意")

    secretary.page.goto(meeting_url)
    secretary.page.fill("#minutes-text", "到会居民听取改划方案并发表意见，纸质选票当场录入并核对。")
    secretary.page.fill("#decision-1", "按方案改划，预留两个无障碍车位")
    secretary.act("公布会议纪要")
    expect(secretary.page.locator("#minutes")).to_contain_text("预留两个无障碍车位")
    secretary.shot("6-minutes")

    first.goto(meeting_url + "/minutes")
    expect(first.locator("#decisions")).to_contain_text("按方案改划")
    expect(first.locator("#decisions a")).to_have_attribute("href", f"/matters/{matter_key}")
    expect(first.locator("#headcount")).to_contain_text("出席 2 人")
    expect(first.locator("#named")).to_contain_text(names[0])  # agreed to be named; the other did not
    expect(first.locator("#named")).not_to_contain_text(names[1])
    first.goto(meeting_url)
    expect(first.locator("#opinions")).to_contain_text("含个人电话号码，已另行联系本人")
    expect(first.locator("#opinions")).not_to_contain_text(offending)
    screenshot(first, secretary.shots / "7-resident-reads.png")
    first.context.close()
