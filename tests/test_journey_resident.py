"""A resident's journey, in Chromium against `linli serve` on the demo (issue 14; PRODUCT.md: a resident uses
their own phone, or the grid worker at the "human window" (§5.1) — they submit needs, follow progress and rate
the service (§3.3), and see what is held about them and who looked at it).

The grid worker generates an activation code on the resident's card; on their own phone the resident opens an
account with it, sees their own record (and opens their own contact details), reports a broken lamp with their
home's address offered, follows it while the department works on it, and rates it once it is resolved. At the
human window, the grid worker reports a matter for a resident without a smartphone, with their consent recorded.
Screenshots: test-output/journeys/resident/.
"""

from __future__ import annotations

import re
import secrets

from playwright.sync_api import Browser, expect

from tests.browser import PHONE, screenshot
from tests.journeys import JOURNEYS, Person
from tests.test_serve import Served

GRID = "grid:c1-g01"
SHOTS = JOURNEYS / "resident"


def test_a_resident_activates_reports_follows_and_rates_and_the_human_window_reports_for_one(
    journey_browser: Browser, journey_served: Served
) -> None:
    tail = secrets.token_hex(3)
    worker = Person(journey_browser, journey_served, "wangge01", role="resident")
    worker.go(f"grids/{GRID}")
    worker.row("#households", "").nth(5).click()  # a household of the grid; its residents have no account yet
    worker.page.wait_for_load_state()
    home = worker.page.locator("h1").inner_text()
    worker.act("生成激活码")
    code = worker.page.locator("#activation-code").inner_text()
    assert re.fullmatch(r"\d{4} \d{4}", code), code  # 8 digits, shown in two groups; typed as shown
    name = worker.page.locator("h1").inner_text().split(" · ", 1)[1]  # 激活码 · <the resident's name>
    worker.shot("1-worker-issues-a-code")

    # The resident's own phone: an account from the code, then their own record.
    phone = journey_browser.new_context(viewport=PHONE, locale="zh-CN")
    page = phone.new_page()
    page.goto(journey_served.url + "activate")
    page.fill("#code", code)
    page.fill("#username", f"jumin-{tail}")
    page.fill("#password", f"a long password {tail}")
    page.fill("#password_again", f"a long password {tail}")
    page.click("form[action='/activate'] button[type=submit]")
    page.wait_for_url(journey_served.url)
    expect(page.locator("h1")).to_have_text(f"我的档案 · {name}")
    page.locator("#protected-contact button[type=submit]").click()  # what is held: their own contact details
    expect(page.locator("#protected-contact a.number[href^='tel:']").first).to_be_visible()
    page.wait_for_function("() => document.querySelector('#sync-state')?.dataset.lastSynced", timeout=120_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    screenshot(page, SHOTS / "2-own-record.png")

    page.goto(journey_served.url + "requests/new")  # a broken lamp by the house, their home's address offered
    assert page.input_value("input[name=address]") == home
    page.select_option("select[name=category]", "street_lamp")
    page.fill("textarea[name=description]", f"我家楼下路灯不亮 {tail}")
    page.click("main form.stack button[type=submit]")
    page.wait_for_url(re.compile(r"/requests/[0-9a-f]{32}$"))
    expect(page.locator("h1")).to_contain_text("已接收")
    expect(page.locator("dl.facts")).to_contain_text(home)
    request_url = page.url
    page.goto(journey_served.url + "requests")  # following it: their requests
    page.locator("main a.row", has_text=f"我家楼下路灯不亮 {tail}").click()
    page.wait_for_url(request_url)
    expect(page.locator("dl.facts")).to_contain_text("城管中队")
    screenshot(page, SHOTS / "3-following-the-request.png")

    department = Person(journey_browser, journey_served, "bumen_urban_management", role="resident")
    department.go(request_url.split("/", 3)[3])
    department.act("接单")
    department.act("部门已到场")
    department.act("已解决")
    expect(department.page.locator("h1")).to_contain_text("已解决")
    department.close()

    page.reload()  # resolved: the resident rates it
    expect(page.locator("h1")).to_contain_text("已解决")
    steps = page.locator("#history li strong").all_inner_texts()
    assert steps == ["提交", "部门接单", "部门到场", "解决"], steps
    page.check("input[name=rating][value='4']")
    page.select_option("select[name=satisfaction]", "satisfied")
    page.click("button[value=rate]")
    page.wait_for_load_state()
    expect(page.locator("dl.facts")).to_contain_text("4 / 5 · 满意")
    screenshot(page, SHOTS / "4-rated.png")
    phone.close()

    # The human window: a resident without a smartphone asks the grid worker, who reports it for them.
    worker.go("requests/new")
    worker.page.select_option("select[name=category]", "home_repair")
    worker.page.fill("textarea[name=description]", f"独居老人家中水管漏水 {tail}")
    worker.page.fill("input[name=address]", home)
    worker.page.check("input[name=on_behalf]")
    worker.page.fill("input[name=reporter_name]", f"王阿姨{tail}")
    worker.page.check("input[name=consent]")
    worker.page.click("main form.stack button[type=submit]")
    worker.page.wait_for_url(re.compile(r"/requests/[0-9a-f]{32}$"))
    expect(worker.page.locator("dl.facts")).to_contain_text(f"代居民登记王阿姨{tail} · 本人已同意由工作人员代为登记")
    worker.shot("5-human-window-with-consent")
    worker.close()
