"""The time bank in the field, in Chromium against `linli serve` on the demo (issue 16): a volunteer helped a
resident (the demo leaves each grid's first volunteer a need to claim) and, at the door without signal, claims the
hours on their phone while the resident confirms on it with one of their confirmation codes; back in signal the
phone syncs, the server checks the code and moves the hours; both balances show it, and the code is spent.

Community 3, grid 1 (wangge11, zhiyuan11a): no other journey activates residents or claims there. One server for the
session (tests/journeys.py). Screenshots: test-output/journeys/timebank-field/.
"""

from __future__ import annotations

import re
import secrets

from playwright.sync_api import Browser, expect

from tests.browser import screenshot
from tests.journeys import Person, activate
from tests.test_journey_timebank import hours_on
from tests.test_serve import Served

SHOTS = "timebank-field"


def test_a_claim_confirmed_in_person_offline_moves_the_hours_once_synced(
    journey_browser: Browser, journey_served: Served
) -> None:
    note = f"帮忙搬米 {secrets.token_hex(3)}"
    volunteer = Person(journey_browser, journey_served, "zhiyuan11a", role=SHOTS, phone=True)
    volunteer.go("/timebank")  # "preparing" while the ledger's index is built (a first start), then the page
    expect(volunteer.page.locator("h1")).to_have_text("时间银行")
    before = hours_on(volunteer.page)
    task_id = volunteer.page.locator("#claimable li[data-task]").first.get_attribute("data-task")
    assert task_id.startswith("need:"), task_id

    # The resident has an account (their grid worker gives them one) and their own page lists their codes.
    worker = Person(journey_browser, journey_served, "wangge11", role=SHOTS)
    activation = worker.activation_code_for(worker.open_needs_household(task_id))
    page = activate(journey_browser, journey_served, activation, phone=True)
    page.goto(journey_served.url + "timebank")
    codes = page.locator("#my-codes [data-code]")
    expect(codes).to_have_count(5)
    code = codes.nth(2).inner_text()  # any of them, in any order
    owed = hours_on(page)

    # Meanwhile the volunteer's phone made its copy (its service worker's first sync, slow on a server still
    # building its first indexes): the sync bar shows on a page it answers.
    volunteer.go("/timebank")
    expect(volunteer.page.locator("#sync-state")).to_be_visible(timeout=90_000)
    volunteer.synced()  # the phone's copy holds the volunteer's needs, claims and transfers
    volunteer.offline()  # at the door, no signal
    volunteer.go("/timebank")
    row = volunteer.page.locator(f"#claimable li[data-task='{task_id}']")
    row.locator("input[name=hours]").fill("1.5")
    row.locator("input[name=note]").fill(note)
    row.locator("input[name=in_person_code]").fill(code)
    row.locator("input[name=in_person_consent]").check()
    volunteer.shot("1-resident-types-their-code-offline")
    row.locator("button:has-text('申报时长')").click()
    volunteer.page.wait_for_url(re.compile(r"/timebank\?done=claimed$"))
    made = volunteer.page.locator(f"[data-made='claim:{task_id}']")
    expect(made).to_contain_text("待确认")
    expect(made).to_contain_text("居民已当面确认，同步后记入")
    assert hours_on(volunteer.page) == before  # nothing moves on a phone
    expect(volunteer.page.locator("#sync-state")).to_have_attribute("data-pending", re.compile(r"^[1-9]"))
    volunteer.shot("2-claimed-offline")

    volunteer.online()
    volunteer.synced()  # the gateway checked the code, the server spent it and moved the hours
    volunteer.go("/timebank")
    expect(volunteer.page.locator(f"[data-made='claim:{task_id}']")).to_contain_text("已确认")
    assert hours_on(volunteer.page) == before + 1.5
    expect(volunteer.page.locator(f"[data-transfer='transfer:claim:{task_id}']")).to_contain_text("1.5")
    volunteer.shot("3-synced-balance")

    page.goto(journey_served.url + "timebank")
    assert hours_on(page) == owed - 1.5
    expect(page.locator("#my-codes [data-code]", has_text=code)).to_have_count(0)  # spent
    expect(page.locator("#my-codes [data-code]")).to_have_count(5)  # and the next one offered
    screenshot(page, volunteer.shots / "4-resident-balance.png")
    page.context.close()
    for person in (volunteer, worker):
        person.close()
