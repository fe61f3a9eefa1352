"""A grid worker's day on a phone, in Chromium against `linli serve` on the demo (issue 14; PRODUCT.md: the grid
worker works on a phone, often offline in basements and old estates — their grid's households and residents,
visits, incidents and alerts all work offline and sync later; the secretary sees the community's work).

wangge01 signs in and the phone makes its copy of the grid; the day's list: households, the grid's requests,
the alerts inbox. A resident's number is noted while online (查看, filed). Then the network goes: the worker
visits a household (a note, needs, a photo), reports a broken lamp, and finds the resident who calls by their
phone number, all from the phone's copy. Back online it syncs, and the server and the secretary see all of it.
Screenshots: test-output/journeys/grid_worker/.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from playwright.sync_api import Browser, Locator, expect

from tests.journeys import Person
from tests.street import TINY_PNG
from tests.test_serve import Served

GRID = "grid:c1-g01"


def expect_drawn(photo: Locator) -> None:
    """The photo is on screen, loaded and drawn (thumbnails load lazily, when scrolled to)."""
    photo.scroll_into_view_if_needed()
    photo.page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=photo.element_handle())


def test_a_grid_workers_day_online_and_offline_reaches_the_server_and_the_secretary(
    journey_browser: Browser, journey_served: Served, tmp_path: Path
) -> None:
    tail = secrets.token_hex(3)
    worker = Person(journey_browser, journey_served, "wangge01", role="grid_worker", phone=True)
    page = worker.page
    assert page.url.endswith(f"/grids/{GRID}")  # home: their grid
    page.wait_for_function("() => document.querySelector('#sync-state')?.dataset.lastSynced", timeout=180_000)
    households = worker.page.locator("#households a.row")
    expect(households.first).to_be_visible()
    worker.shot("1-grid-synced")
    worker.go("requests")  # the grid's matters, the open ones with their state
    expect(page.locator("main a.row").first).to_be_visible()
    worker.go("alerts")  # the alerts inbox: the open ones, urgent first, or that there are none
    expect(page.locator("h1")).to_have_text("告警")
    expect(page.locator("main")).to_contain_text(re.compile("待处理|已升级|目前没有需要处理的告警"))
    worker.shot("2-alerts")

    # A resident's number, as the worker notes it while online (opening contact details is filed).
    worker.go(f"grids/{GRID}")
    households.nth(2).click()
    page.wait_for_load_state()
    called = page.url.rsplit("/", 1)[1]
    page.locator("section[id$='-contact'] button[type=submit]").first.click()
    number = page.locator("a.number[href^='tel:']").first.inner_text()
    assert re.fullmatch(r"1\d{10}", number), number

    worker.offline()
    worker.go(f"grids/{GRID}")
    expect(households.first).to_be_visible()  # the grid, from the phone's copy
    visited = households.nth(1)
    address = visited.locator(".row-title").inner_text()
    visited.click()
    page.wait_for_load_state()
    household_url = page.url
    worker.go(household_url.split("/", 3)[3] + "/visits/new")
    page.select_option("select[name=kind]", "routine")
    page.fill("textarea[name=notes]", f"老人身体还好，家里灯泡坏了 {tail}")
    page.check("input[name=needs][value=home_repair]")
    page.fill("textarea[name=needs]", f"换灯泡 {tail}")
    photo = tmp_path / "visit.png"
    photo.write_bytes(TINY_PNG)
    page.set_input_files("input[name=photo]", str(photo))
    page.click("main form.stack button[type=submit]")
    page.wait_for_url(household_url)
    visit = page.locator("ul.visits li", has_text=f"换灯泡 {tail}")
    expect(visit).to_be_visible()
    expect_drawn(visit.locator("img.thumb"))
    worker.shot("3-offline-visit")

    worker.go("requests/new")  # a broken lamp on the way
    page.select_option("select[name=category]", "street_lamp")
    page.fill("textarea[name=description]", f"楼下路灯不亮 {tail}")
    page.fill("input[name=address]", address)
    page.set_input_files("input[name=photo]", str(photo))
    page.click("main form.stack button[type=submit]")
    page.wait_for_url(re.compile(r"/requests/[0-9a-f]{32}$"))
    expect(page.locator("main")).to_contain_text(f"楼下路灯不亮 {tail}")
    expect(page.locator("dl.facts")).to_contain_text("同步后按工作日计算")  # deadlines come from the server
    request_url = page.url
    worker.shot("4-offline-request")

    worker.go(f"grids/{GRID}")  # the resident calls: found by their number, offline
    page.fill("#q", number)
    expect(households).to_have_count(1)
    assert households.first.get_attribute("href").endswith(called)
    worker.shot("5-offline-found-by-number")
    expect(page.locator("#sync-state")).to_have_attribute("data-pending", re.compile(r"^[1-9]"))

    worker.online()
    worker.synced()
    worker.shot("6-back-online-synced")

    secretary = Person(journey_browser, journey_served, "shuji1", role="grid_worker")
    secretary.go("requests")
    row = secretary.row("main", f"楼下路灯不亮 {tail}")
    expect(row).to_have_count(1)
    row.click()
    secretary.page.wait_for_url(request_url)
    expect(secretary.page.locator("dl.facts")).to_contain_text("城管中队")  # dispatched once the server took it
    expect_drawn(secretary.page.locator("img.photo").first)
    secretary.page.goto(household_url)
    seen = secretary.page.locator("ul.visits li", has_text=f"换灯泡 {tail}")
    expect(seen).to_be_visible()
    expect_drawn(seen.locator("img.thumb"))
    secretary.shot("7-secretary-sees-the-day")
    secretary.close()
    worker.close()
