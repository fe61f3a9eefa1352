"""The time bank in Chromium against `linli serve` on the demo (issue 16): a volunteer claims the hours of help
they gave yesterday (the demo's history leaves each grid's first volunteer one such need); at the door the grid
worker cannot confirm for the resident without their consent, so gives the resident an account instead (an
activation code), and the resident confirms on their own phone; both balances move by exactly that, and the
secretary finds the transfer on the ledger with the community's hours summing to zero.

One server for the session (tests/journeys.py). Screenshots: test-output/journeys/timebank/.
"""

from __future__ import annotations

import re
import secrets

from playwright.sync_api import Browser, Page, expect

from tests.browser import screenshot
from tests.journeys import Person, activate
from tests.test_serve import Served


def hours_on(page: Page) -> float:
    """The hours balance the page shows."""
    text = page.locator("[data-balance=hours]").inner_text()
    return float(re.search(r"-?\d+(\.\d+)?", text).group(0))


def test_volunteer_claims_the_resident_confirms_and_the_hours_move(
    journey_browser: Browser, journey_served: Served
) -> None:
    note = f"陪同买菜 {secrets.token_hex(3)}"
    volunteer = Person(journey_browser, journey_served, "zhiyuan01a", role="timebank", phone=True)
    # The first answer waits for the ledger's indexes, which `linli serve` builds after it starts listening.
    volunteer.go("/timebank")  # "preparing" while the ledger's index is built (a first start), then the page
    expect(volunteer.page.locator("h1")).to_have_text("时间银行")
    before = hours_on(volunteer.page)
    task = volunteer.page.locator("#claimable li[data-task]").first
    expect(task).to_be_visible()  # yesterday's help, not yet claimed
    task_id = task.get_attribute("data-task")
    task.locator("input[name=hours]").fill("1.5")
    task.locator("input[name=note]").fill(note)
    volunteer.shot("1-claim")
    task.locator("button:has-text('申报时长')").click()
    volunteer.page.wait_for_url(re.compile(r"/timebank\?done=claimed$"))
    expect(volunteer.page.locator("p.notice[role=status]")).to_contain_text("已申报，等待居民确认")
    expect(volunteer.page.locator(f"[data-made='claim:{task_id}']")).to_contain_text("待确认")
    expect(volunteer.page.locator(f"[data-task='{task_id}']")).to_have_count(0)

    worker = Person(journey_browser, journey_served, "wangge01", role="timebank")
    worker.go("/timebank")
    waiting = worker.page.locator(f"[data-claim='claim:{task_id}']")
    expect(waiting).to_contain_text("1.5")
    expect(waiting).to_contain_text(note)
    waiting.locator("form[action$='/confirm'] button").click()  # without the resident's consent: refused
    worker.page.wait_for_load_state()
    expect(worker.page.locator("#form-errors")).to_contain_text("请勾选居民本人已当面同意")
    worker.shot("2-consent-required")
    # At the door the resident would rather confirm on their own phone: the worker gives them an account.
    household = worker.page.locator(f"[data-claim='claim:{task_id}'] a[data-resident]")
    resident_id = household.get_attribute("data-resident")
    household.click()
    code = worker.activation_code_for(resident_id)

    page = activate(journey_browser, journey_served, code, phone=True)
    page.goto(journey_served.url + "timebank")
    mine = page.locator(f"[data-claim='claim:{task_id}']")
    expect(mine).to_contain_text("申报为您服务 1.5 小时")
    owed = hours_on(page)
    screenshot(page, worker.shots / "3-resident-confirms.png")
    mine.locator("form[action$='/confirm'] button").click()
    page.wait_for_url(re.compile(r"/timebank\?done=confirmed$"))
    assert hours_on(page) == owed - 1.5
    expect(page.locator(f"[data-claim='claim:{task_id}']")).to_have_count(0)
    page.context.close()

    volunteer.go("/timebank")
    assert hours_on(volunteer.page) == before + 1.5
    expect(volunteer.page.locator(f"[data-made='claim:{task_id}']")).to_contain_text("已确认")
    expect(volunteer.page.locator(f"[data-transfer='transfer:claim:{task_id}']")).to_contain_text("1.5")
    volunteer.shot("4-balance")

    secretary = Person(journey_browser, journey_served, "shuji1", role="timebank")
    secretary.go("/ledger")
    expect(secretary.page.locator("[data-hours-total]")).to_contain_text("合计：0 小时")
    expect(secretary.page.locator(f"[data-transfer='transfer:claim:{task_id}']")).to_contain_text("1.5")
    secretary.shot("5-ledger")
    for person in (volunteer, worker, secretary):
        person.close()
