"""The departments' daily work, in Chromium against `linli serve` on the demo (issue 14; PRODUCT.md: a matter a
resident or grid worker reports is dispatched by its category to the department that handles it, which takes it
on, goes to the site, reports progress and resolves it, or hands it back to the grid with a reason).

One server for the module. The full loop is walked with 城管中队 (a street lamp); every other department of the demo
gets a request of one of its categories reported by the grid worker, finds it on its workbench and accepts it.
Screenshots of the key steps: test-output/journeys/department/.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from server.services import demo
from tests.browser import launch
from tests.street import TINY_PNG
from tests.test_serve import OUTPUT, Served, demo_password, start_serve, stop

SHOTS = OUTPUT / "journeys" / "department"
# One category of each department that asks no required question (the grid worker's quick report).
CATEGORY_OF = {department: next(code for code, _, _, d, _, questions in demo.SERVICE_CATALOGUE
                                if d == department and not any(q[3] for q in questions))
               for department, _ in demo.DEPARTMENTS}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = start_serve(tmp_path_factory.mktemp("journey-departments"))
    yield s
    if s.process.poll() is None:
        stop(s)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = launch(p)
        yield chromium
        chromium.close()


class Person:
    """One demo account in a browser context of its own. Online work: no service worker, so that no replica is
    synced in the background (the phone's offline journey is the grid worker's)."""

    def __init__(self, browser: Browser, served: Served, username: str) -> None:
        self.url = served.url
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN",
                                           service_workers="block")
        self.page: Page = self.context.new_page()
        self.page.goto(self.url + "login")
        self.page.fill("#username", username)
        self.page.fill("#password", demo_password(served.data_dir))
        self.page.click("button[type=submit]:has-text('登录')")
        self.page.wait_for_load_state()

    def report(self, category: str, description: str) -> str:
        """A grid worker reports a matter in their grid; returns the request's page."""
        page = self.page
        page.goto(self.url + "requests/new")
        page.select_option("select[name=category]", category)
        page.fill("textarea[name=description]", description)
        page.click("button:has-text('提交')")
        page.wait_for_url(re.compile(r"/requests/[0-9a-f]{32}$"))
        expect(page.locator("h1")).to_contain_text("已接收")
        return page.url

    def act(self, label: str) -> None:
        self.page.click(f"button:has-text('{label}')")
        self.page.wait_for_load_state()

    def workbench_row(self, description: str) -> object:
        return self.page.locator("#workbench a.row", has_text=description)

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


def test_a_street_lamp_is_accepted_worked_on_site_with_a_photo_and_resolved(browser: Browser, served: Served,
                                                                            tmp_path: Path) -> None:
    lamp = f"幸福路3号楼前路灯不亮 {secrets.token_hex(3)}"
    worker = Person(browser, served, "wangge01")
    request_url = worker.report("street_lamp", lamp)
    expect(worker.page.locator("dl.facts")).to_contain_text("城管中队")  # dispatched by its category

    department = Person(browser, served, "bumen_urban_management")
    assert department.page.url.endswith("/workbench")  # the department's home
    expect(department.page.locator("h1")).to_contain_text("城管中队")
    row = department.workbench_row(lamp)
    expect(row).to_contain_text("路灯损坏")
    expect(row).to_contain_text("派单")
    expect(row).to_contain_text("时限")  # the deadline to respond
    department.shot("1-workbench")
    row.click()
    department.page.wait_for_url(request_url)
    department.act("接单")
    expect(department.page.locator("h1")).to_contain_text("已受理")
    department.act("部门已到场")
    expect(department.page.locator("h1")).to_contain_text("办理中")
    photo = tmp_path / "lamp.png"
    photo.write_bytes(TINY_PNG)
    department.page.fill("textarea[name=note][required]", "已更换灯泡，正在测试线路")
    department.page.set_input_files("input[name=photo]", str(photo))
    department.act("记录进展")
    progress = department.page.locator("#history li", has_text="已更换灯泡")
    expect(progress).to_contain_text("进展")
    assert progress.locator("img.photo").evaluate("img => img.complete && img.naturalWidth") == 1
    department.shot("2-progress-with-photo")
    department.act("已解决")
    expect(department.page.locator("h1")).to_contain_text("已解决")
    department.page.goto(served.url + "workbench")  # done: no longer among what is to do
    expect(department.workbench_row(lamp)).to_have_count(0)
    department.page.goto(served.url + "workbench?state=resolved")
    expect(department.workbench_row(lamp)).to_have_count(1)

    worker.page.goto(request_url)  # the grid worker, who owns it, sees every step and the photo
    expect(worker.page.locator("h1")).to_contain_text("已解决")
    steps = worker.page.locator("#history li strong").all_inner_texts()
    assert steps == ["提交", "部门接单", "部门到场", "进展", "解决"]
    assert worker.page.locator("#history img.photo").evaluate("img => img.complete && img.naturalWidth") == 1
    worker.shot("3-grid-worker-sees-it-resolved")
    worker.close()
    department.close()


def test_a_request_that_is_not_theirs_is_handed_back_to_the_grid_with_the_reason(browser: Browser,
                                                                                 served: Served) -> None:
    road = f"小区内部道路破损 {secrets.token_hex(3)}"
    worker = Person(browser, served, "wangge01")
    request_url = worker.report("road_damage", road)
    department = Person(browser, served, "bumen_urban_management")
    department.workbench_row(road).click()
    department.page.wait_for_url(request_url)
    department.page.fill("textarea[name=reason]", "小区内部道路由物业负责，请网格联系物业")
    department.act("退回网格")
    expect(department.page.locator("h1")).to_contain_text("已退回网格")
    expect(department.page.locator("button:has-text('接单')")).to_have_count(0)  # their part is over
    department.page.goto(served.url + "workbench")
    expect(department.workbench_row(road)).to_have_count(0)

    worker.page.goto(served.url + "requests")
    expect(worker.page.locator("a.row", has_text=road)).to_contain_text("已退回网格")
    worker.page.goto(request_url)
    handed_back = worker.page.locator("#history li", has_text="退回网格")
    expect(handed_back).to_contain_text("小区内部道路由物业负责")
    expect(worker.page.locator("button:has-text('开始办理')")).to_have_count(1)  # the grid takes it on
    worker.shot("4-handed-back-to-the-grid")
    worker.close()
    department.close()


def test_every_department_finds_what_is_dispatched_to_it_on_its_workbench(browser: Browser, served: Served) -> None:
    worker = Person(browser, served, "wangge01")
    reported = {}
    for department, name in demo.DEPARTMENTS:
        description = f"{name}的事 {secrets.token_hex(3)}"
        reported[department] = (description, worker.report(CATEGORY_OF[department], description))
    worker.close()
    for department, name in demo.DEPARTMENTS:
        description, request_url = reported[department]
        staff = Person(browser, served, f"bumen_{department}")
        expect(staff.page.locator("h1")).to_contain_text(name)
        for other, (other_description, _) in reported.items():  # its own, and nobody else's
            expect(staff.workbench_row(other_description)).to_have_count(1 if other == department else 0)
        staff.workbench_row(description).click()
        staff.page.wait_for_url(request_url)
        staff.act("接单")
        expect(staff.page.locator("h1")).to_contain_text("已受理")
        expect(staff.page.locator("#history li", has_text="部门接单")).to_contain_text(name)
        staff.close()
