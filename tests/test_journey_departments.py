"""The departments' daily work, in Chromium against `linli serve` on the demo (issue 14; PRODUCT.md: a matter a
resident or grid worker reports is dispatched by its category to the department that handles it, which takes it
on, goes to the site, reports progress and resolves it, or hands it back to the grid with a reason).

One server for the session (tests/journeys.py). The full loop is walked with 城管中队 (a street lamp); every other
department of the demo gets a request of one of its categories reported by the grid worker, finds it on its
workbench and accepts it.
Screenshots of the key steps: test-output/journeys/department/.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from playwright.sync_api import Browser, expect

from server.services import demo
from tests.journeys import Person
from tests.street import TINY_PNG
from tests.test_serve import Served

# One category of each department that asks no required question (the grid worker's quick report).
CATEGORY_OF = {
    department: next(
        code
        for code, _, _, d, _, questions in demo.SERVICE_CATALOGUE
        if d == department and not any(q[3] for q in questions)
    )
    for department, _ in demo.DEPARTMENTS
}


def test_a_street_lamp_is_accepted_worked_on_site_with_a_photo_and_resolved(
    journey_browser: Browser, journey_served: Served, tmp_path: Path
) -> None:
    lamp = f"幸福路3号楼前路灯不亮 {secrets.token_hex(3)}"
    worker = Person(journey_browser, journey_served, "wangge01", role="department")
    request_url = worker.report("street_lamp", lamp)
    expect(worker.page.locator("dl.facts")).to_contain_text("城管中队")  # dispatched by its category

    department = Person(journey_browser, journey_served, "bumen_urban_management", role="department")
    assert department.page.url.endswith("/workbench")  # the department's home
    expect(department.page.locator("h1")).to_contain_text("城管中队")
    row = department.row("#workbench", lamp)
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
    department.page.goto(journey_served.url + "workbench")  # done: no longer among what is to do
    expect(department.row("#workbench", lamp)).to_have_count(0)
    department.page.goto(journey_served.url + "workbench?state=resolved")
    expect(department.row("#workbench", lamp)).to_have_count(1)

    worker.page.goto(request_url)  # the grid worker, who owns it, sees every step and the photo
    expect(worker.page.locator("h1")).to_contain_text("已解决")
    steps = worker.page.locator("#history li strong").all_inner_texts()
    assert steps == ["提交", "部门接单", "部门到场", "进展", "解决"]
    assert worker.page.locator("#history img.photo").evaluate("img => img.complete && img.naturalWidth") == 1
    worker.shot("3-grid-worker-sees-it-resolved")
    worker.close()
    department.close()


def test_a_request_that_is_not_theirs_is_handed_back_to_the_grid_with_the_reason(
    journey_browser: Browser, journey_served: Served
) -> None:
    road = f"小区内部道路破损 {secrets.token_hex(3)}"
    worker = Person(journey_browser, journey_served, "wangge01", role="department")
    request_url = worker.report("road_damage", road)
    department = Person(journey_browser, journey_served, "bumen_urban_management", role="department")
    department.row("#workbench", road).click()
    department.page.wait_for_url(request_url)
    department.page.fill("textarea[name=reason]", "小区内部道路由物业负责，请网格联系物业")
    department.act("退回网格")
    expect(department.page.locator("h1")).to_contain_text("已退回网格")
    expect(department.page.locator("button:has-text('接单')")).to_have_count(0)  # their part is over
    department.page.goto(journey_served.url + "workbench")
    expect(department.row("#workbench", road)).to_have_count(0)

    worker.page.goto(journey_served.url + "requests")
    expect(worker.page.locator("a.row", has_text=road)).to_contain_text("已退回网格")
    worker.page.goto(request_url)
    handed_back = worker.page.locator("#history li", has_text="退回网格")
    expect(handed_back).to_contain_text("小区内部道路由物业负责")
    expect(worker.page.locator("button:has-text('开始办理')")).to_have_count(1)  # the grid takes it on
    worker.shot("4-handed-back-to-the-grid")
    worker.close()
    department.close()


def test_every_department_finds_what_is_dispatched_to_it_on_its_workbench(
    journey_browser: Browser, journey_served: Served
) -> None:
    worker = Person(journey_browser, journey_served, "wangge01", role="department")
    reported = {}
    for department, name in demo.DEPARTMENTS:
        description = f"{name}的事 {secrets.token_hex(3)}"
        reported[department] = (description, worker.report(CATEGORY_OF[department], description))
    worker.close()
    for department, name in demo.DEPARTMENTS:
        description, request_url = reported[department]
        staff = Person(journey_browser, journey_served, f"bumen_{department}", role="department")
        expect(staff.page.locator("h1")).to_contain_text(name)
        for other, (other_description, _) in reported.items():  # its own, and nobody else's
            expect(staff.row("#workbench", other_description)).to_have_count(1 if other == department else 0)
        staff.row("#workbench", description).click()
        staff.page.wait_for_url(request_url)
        staff.act("接单")
        expect(staff.page.locator("h1")).to_contain_text("已受理")
        expect(staff.page.locator("#history li", has_text="部门接单")).to_contain_text(name)
        staff.close()
