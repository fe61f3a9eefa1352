"""A household vote, in Chromium against `linli serve` on the demo (issue 15): the secretary opens a matter, a
resident activates their account and votes on their own page and keeps the receipt, the secretary sees the ballot
in and closes the vote, and the published result (no sign-in) lists the receipt, the totals and the rule's
condition with its numerator and denominator.

One server for the session (tests/journeys.py); the matter's title carries a random tail.
Screenshots: test-output/journeys/deliberation/ (1-opened, 2-receipt, 3-count, 4-result).
"""

from __future__ import annotations

import random
import re
import secrets
import urllib.parse

from playwright.sync_api import Browser, expect

from tests.browser import screenshot
from tests.journeys import Person, activate
from tests.test_serve import Served


def _activation_code(worker: Person, grid: int = 3) -> str:
    """A code for a resident without an account in community 1's `grid` (the worker's own)."""
    return worker.issue_activation_code([f"household:c1-g{grid:02d}-{h:04d}" for h in range(1, 9)]).code


def open_matter(secretary: Person, title: str, body: str = "", **choices: str) -> None:
    """The secretary opens a matter from /matters/new: its title, body, and the form's choices by field."""
    secretary.go("/matters/new")
    secretary.page.fill("#m-title", title)
    if body:
        secretary.page.fill("#m-body", body)
    for field, value in choices.items():
        secretary.page.select_option(f"#m-{field}", value)
    secretary.act("发起并开始表决")


def test_secretary_opens_resident_votes_secretary_closes_and_the_result_lists_the_receipt(
        journey_browser: Browser, journey_served: Served) -> None:
    title = f"楼道加装照明 {secrets.token_hex(3)}"
    secretary = Person(journey_browser, journey_served, "shuji1", role="deliberation")
    open_matter(secretary, title, body="每单元楼道加装声控灯，费用由公共收益支出。", electorate="household",
                rule="households_three_quarters")
    expect(secretary.page.locator("h1")).to_have_text(title)
    expect(secretary.page.locator("main")).to_contain_text("表决中")
    roll_size = int(secretary.page.locator("#roll-size").inner_text())
    assert roll_size == 40  # community 1's households: 5 grids of 8 (linli serve --residents 400)
    matter_url = secretary.page.url
    secretary.shot("1-opened")

    worker = Person(journey_browser, journey_served, "wangge03", role="deliberation")
    code = _activation_code(worker)
    resident = activate(journey_browser, journey_served, code)  # a resident without an account yet
    resident.goto(journey_served.url + "matters")
    resident.click(f"#matters a.row:has-text('{title}')")
    resident.check("input[name=choice][value=yes]")
    resident.click("button:has-text('提交投票')")
    expect(resident.locator("#ballot")).to_contain_text("已投票：同意")
    receipt = resident.locator("#receipt").inner_text()
    assert re.fullmatch(r"[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}", receipt)
    screenshot(resident, secretary.shots / "2-receipt.png")
    resident.context.close()

    secretary.page.goto(matter_url)
    expect(secretary.page.locator("#ballots-in")).to_have_text("1")
    secretary.shot("3-count")
    secretary.act("结束表决并公布结果")
    result_url = secretary.page.url
    assert result_url.endswith("/result")

    public = journey_browser.new_context(locale="zh-CN").new_page()  # anyone, signed in or not
    public.goto(result_url)
    expect(public.locator("#receipts")).to_contain_text(receipt)
    expect(public.locator("#verdict")).to_have_text("未通过")  # 1 of 40 households is not 3/4
    expect(public.locator("#totals")).to_contain_text("同意")
    expect(public.locator("#conditions tbody tr")).to_contain_text("1")
    expect(public.locator("#conditions tbody tr")).to_contain_text(str(roll_size))
    screenshot(public, secretary.shots / "4-result.png")
    published = public.request.get(result_url + ".json").json()
    assert receipt in published["receipts"] and published["totals"]["yes"] == 1
    public.context.close()


def test_a_secret_committee_vote_is_sealed_in_the_browser_and_counted_at_the_close(
        journey_browser: Browser, journey_served: Served) -> None:
    title = f"社区议事规则修订 {secrets.token_hex(3)}"
    secretary = Person(journey_browser, journey_served, "shuji1", role="deliberation")
    open_matter(secretary, title, kind="committee_decision", electorate="committee", rule="committee_two_thirds",
                mode="secret")
    expect(secretary.page.locator("main")).to_contain_text("无记名投票")
    secretary.page.check("input[data-option][value=yes]")
    with secretary.page.expect_request(lambda r: r.method == "POST" and "/matters/" in r.url) as sent:
        secretary.page.click("button:has-text('提交投票')")
    sent_fields = urllib.parse.parse_qs(sent.value.post_data or "")
    # Only the envelope leaves the browser: no field carries the choice in the clear (a ciphertext's base64 may
    # hold "yes" by chance, so each whole value is compared, not searched).
    assert sent_fields["choice"][0].startswith("enc:") and ["yes"] not in sent_fields.values()
    secretary.page.wait_for_load_state()
    expect(secretary.page.locator("#ballot")).to_contain_text("无记名")
    receipt = secretary.page.locator("#receipt").inner_text()
    secretary.shot("5-secret-receipt")
    secretary.act("结束表决并公布结果")
    expect(secretary.page.locator("#receipts")).to_contain_text(receipt)
    expect(secretary.page.locator("#totals")).to_contain_text("同意")
    assert secretary.page.locator("#totals tbody tr", has_text="同意").locator("td").nth(1).inner_text() == "1"
    secretary.shot("6-secret-result")


def _resident_votes(browser: Browser, served: Served, code: str, title: str, choice: str) -> str:
    """A resident activates their account, votes on the matter's page and keeps the receipt."""
    resident = activate(browser, served, code)
    resident.goto(served.url + "matters")
    resident.click(f"#matters a.row:has-text('{title}')")
    resident.check(f"input[name=choice][value={choice}]")
    resident.click("button:has-text('提交投票')")
    receipt = resident.locator("#receipt").inner_text()
    resident.context.close()
    return receipt


def test_the_grid_worker_records_two_households_at_the_door_offline_and_both_receipts_are_published(
        journey_browser: Browser, journey_served: Served) -> None:
    """Issue 15 items 4-7: the secretary opens a household vote and prints grid 3's voting cards, a resident of
    grid 4 votes online, the grid worker of grid 3 records two households' ballots at their doors with the
    phone offline (each with the code from the household's card and the resident's consent), syncs, and the
    published result lists all three receipts. Screenshots: 7-cards, 8-door-offline, 9-door-result."""
    title = f"小区停车位划线 {secrets.token_hex(3)}"
    secretary = Person(journey_browser, journey_served, "shuji1", role="deliberation")
    open_matter(secretary, title, electorate="household", rule="households_three_quarters")
    matter_url = secretary.page.url
    secretary.go(matter_url.removeprefix(journey_served.url) + "/roll")
    secretary.page.select_option("#cards-grid", "grid:c1-g03")
    secretary.act("打印本网格的投票卡")
    doors = random.sample([f"household:c1-g03-{h:04d}" for h in range(1, 9)], 2)
    codes = [secretary.page.locator(f"tr[data-household='{h}'] .card-code").inner_text() for h in doors]
    secretary.shot("7-cards")

    issuer = Person(journey_browser, journey_served, "wangge04", role="deliberation")
    own_receipt = _resident_votes(journey_browser, journey_served, _activation_code(issuer, grid=4), title,
                                  "yes")
    issuer.close()

    worker = Person(journey_browser, journey_served, "wangge03", role="deliberation", phone=True)
    worker.page.wait_for_function("() => document.querySelector('#sync-state')?.dataset.lastSynced",
                                  timeout=180_000)  # the first sync: the replica holds the matter and the households
    worker.offline()
    receipts = []
    for household, code, choice in zip(doors, codes, ("yes", "no"), strict=True):
        worker.go("/matters")
        worker.row("#matters", title).click()
        worker.page.wait_for_url(re.compile(r"/door$"))
        worker.page.select_option("#door-household", household)
        worker.page.check(f"input[name=choice][value={choice}]")
        worker.page.fill("#door-code", code.lower().replace("-", " "))  # as a resident reads it out
        worker.page.check("input[name=consent]")
        worker.act("保存选票")
        recorded = worker.page.locator("#recorded .receipt")
        expect(recorded).to_have_count(len(receipts) + 1)
        receipts.append(recorded.first.inner_text())
    assert all(re.fullmatch(r"[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}", r) for r in receipts)
    worker.shot("8-door-offline")
    worker.online()
    worker.synced()  # both ballots reached the server: nothing waits, nothing refused
    expect(worker.page.locator("#sync-state [data-sync-refused]")).to_be_hidden()
    worker.close()

    secretary.page.goto(matter_url)
    expect(secretary.page.locator("#ballots-in")).to_have_text("3")
    secretary.act("结束表决并公布结果")
    expect(secretary.page.locator("#receipts")).to_contain_text(own_receipt)
    for receipt in receipts:
        expect(secretary.page.locator("#receipts")).to_contain_text(receipt)
    secretary.shot("9-door-result")


def test_a_secret_ballot_at_the_door_is_sealed_on_the_phone_offline(journey_browser: Browser,
                                                                   journey_served: Served) -> None:
    """Issue 15 item 6: in a secret household vote the phone seals the choice (pwa/secret_ballot.js, to the chosen
    household's ballot) before the offline form writes it; only the envelope leaves the page, the close counts it.
    Screenshot: 10-door-secret-result."""
    title = f"垃圾分类点选址 {secrets.token_hex(3)}"
    secretary = Person(journey_browser, journey_served, "shuji1", role="deliberation")
    open_matter(secretary, title, electorate="household", rule="households_three_quarters", mode="secret")
    matter_url = secretary.page.url
    secretary.go(matter_url.removeprefix(journey_served.url) + "/roll")
    secretary.page.select_option("#cards-grid", "grid:c1-g03")
    secretary.act("打印本网格的投票卡")
    household = f"household:c1-g03-{random.randint(1, 8):04d}"
    code = secretary.page.locator(f"tr[data-household='{household}'] .card-code").inner_text()

    worker = Person(journey_browser, journey_served, "wangge03", role="deliberation", phone=True)
    worker.page.wait_for_function("() => document.querySelector('#sync-state')?.dataset.lastSynced",
                                  timeout=180_000)
    worker.offline()
    worker.go("/matters")
    worker.row("#matters", title).click()
    worker.page.wait_for_url(re.compile(r"/door$"))
    worker.page.select_option("#door-household", household)
    worker.page.check("input[data-option][value=no]")
    worker.page.fill("#door-code", code)
    worker.page.check("input[name=consent]")
    with worker.page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/door")) as sent:
        worker.page.click("button:has-text('保存选票')")
    body = sent.value.post_data or ""
    assert "choice=enc%3A" in body and "sealed_option" not in body and "=no" not in body
    expect(worker.page.locator("#recorded .receipt")).to_have_count(1)
    receipt = worker.page.locator("#recorded .receipt").inner_text()
    worker.online()
    worker.synced()
    expect(worker.page.locator("#sync-state [data-sync-refused]")).to_be_hidden()
    worker.close()

    secretary.page.goto(matter_url)
    secretary.act("结束表决并公布结果")
    expect(secretary.page.locator("#receipts")).to_contain_text(receipt)
    assert secretary.page.locator("#totals tbody tr", has_text="反对").locator("td").nth(1).inner_text() == "1"
    secretary.shot("10-door-secret-result")
