"""The resource pool in Chromium against `linli serve` on the demo (issue 17), in community 4, grid 1: the grid worker
(wangge16) gives a resident of his grid an account; the resident books the community's tool locker for this hour (it
needs its keeper's approval); the keeper, the same worker, approves it on the locker's calendar, reads the check-in
code posted on it and takes the locker tomorrow himself; at the locker the resident's phone is offline: the resident
browses the pool (their booking; the keeper's hour tomorrow held, not whose), the page the QR code opens comes from
the phone, a forged code is refused there, the real one checks in, and they book the locker again from its calendar;
back online the check-in reaches the server and the booking waits for the keeper; the secretary (shuji4) finds the
locker on the utilisation board, flagged, with its breakdown, and adds a school's reading room to the pool (evening
hours, two blackouts on one day). Then (a second test) she adds a study room open round the clock, naming the grid
worker its keeper, who prints its week of check-in codes (a QR code a day); a volunteer (zhiyuan16a) books it on
their phone and, offline, finds it in the pool, sees their hour held on its calendar and checks in by the posted
code; back online the check-in reaches the server.

One server for the session (tests/journeys.py). Screenshots: test-output/journeys/pool/.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets

import pytest
from playwright.sync_api import Browser, expect

from server.domain import pool as rules
from tests.browser import PHONE
from tests.journeys import Person
from tests.test_serve import Served

GRID = "grid:c4-g01"
LOCKER = "resource:c4-v4"  # the demo's tool locker of community 4, open round the clock (demo_history.VENUES)


# Alone on a cold server its first /pool waits for the pool's index over the demo's year (minutes on a loaded
# machine); after the other journeys it is built.
@pytest.mark.timeout(600)
def test_a_resident_books_the_keeper_approves_the_phone_checks_in_offline_the_board_counts(
    journey_browser: Browser, journey_served: Served
) -> None:
    keeper = Person(journey_browser, journey_served, "wangge16", role="pool")
    keeper.page.goto(journey_served.url + f"grids/{GRID}", timeout=240_000)  # a cold server's first answer
    code = keeper.issue_activation_code([f"household:c4-g01-{h:04d}" for h in range(1, 9)]).code

    activation = journey_browser.new_context(viewport=PHONE, locale="zh-CN", service_workers="block")
    page = activation.new_page()
    page.goto(journey_served.url + "activate")
    username, password = f"jumin{secrets.token_hex(3)}", "pool-" + secrets.token_hex(6)
    for field, value in (("code", code), ("username", username), ("password", password),
                         ("password_again", password)):
        page.fill(f"#{field}", value)
    page.click("button:has-text('开通账户')", timeout=120_000)  # the password hashed on a loaded machine
    page.wait_for_url(journey_served.url, timeout=120_000)
    activation.close()

    resident = Person(journey_browser, journey_served, username, role="pool", phone=True, password=password)
    now = dt.datetime.now(rules.LOCAL)
    start = now.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1 if now.minute >= 50 else 0)
    # The first answer may wait for the pool's index, which `linli serve` builds after it starts listening.
    resident.page.goto(journey_served.url + "pool", timeout=240_000)
    resident.page.click(f"a[href='/pool/r/{LOCKER[9:]}']")
    expect(resident.page.locator("h1")).to_have_text("共享工具柜")
    resident.page.fill("#pool-day", start.date().isoformat())
    resident.page.fill("#pool-hour", str(start.hour))
    resident.page.fill("#pool-purpose", "借电钻")
    resident.page.click("#book button[type=submit]")
    expect(resident.page.locator("p.notice[role=status]")).to_contain_text("已提交，等待管理人审核")
    booking = rules.slot_id(LOCKER, start)
    resident.shot("1-resident-books")

    keeper.go(f"/pool/r/{LOCKER[9:]}?day={start.date().isoformat()}")
    waiting = keeper.page.locator(f"#approvals li[data-booking='{booking}']")
    expect(waiting).to_contain_text("借电钻")
    posted = keeper.page.locator("[data-code]").inner_text().strip()
    assert re.fullmatch(r"[A-Z2-9]{12}", posted), posted
    waiting.locator("form[action$='/approve'] button").click()
    keeper.page.wait_for_load_state()
    expect(keeper.page.locator(f"#day li[data-hour='{start.hour}']")).to_have_attribute("data-state", "confirmed")
    keeper.shot("2-keeper-approves")
    tomorrow = start + dt.timedelta(days=1)  # the keeper takes the locker for himself tomorrow, same hour
    keeper.go(f"/pool/r/{LOCKER[9:]}?day={tomorrow.date().isoformat()}")
    keeper.page.fill("#pool-day", tomorrow.date().isoformat())
    keeper.page.fill("#pool-hour", str(tomorrow.hour))
    keeper.page.click("#book button[type=submit]")
    expect(keeper.page.locator("p.notice[role=status]")).to_be_visible()

    resident.go("/pool")
    expect(resident.page.locator(f"#my-bookings li[data-booking='{booking}']")).to_contain_text("已确认")
    resident.synced()  # the confirmed booking in the phone's copy, the hours others hold with the session
    resident.offline()  # at the locker: no signal
    # Offline the resident browses the pool: their booking, and the locker's calendar with the keeper's hour
    # tomorrow held (the phone holds no one else's booking: the session says which hours are held, not by whom).
    resident.go("/pool")
    expect(resident.page.locator(f"#my-bookings li[data-booking='{booking}']")).to_contain_text("已确认")
    resident.go(f"/pool/r/{LOCKER[9:]}?day={tomorrow.date().isoformat()}")
    held = resident.page.locator(f"#day li[data-hour='{tomorrow.hour}']")
    expect(held).to_have_attribute("data-state", re.compile("^(requested|confirmed)$"))
    expect(resident.page.locator("#day li[data-state='free']").first).to_be_visible()  # the rest of the day
    resident.shot("2b-resident-browses-the-locker-offline")
    resident.go(f"/pool/checkin?resource={LOCKER}&code={posted}")
    mine = resident.page.locator(f"li[data-booking='{booking}']")
    expect(mine).to_be_visible()
    mine.locator("input[name=code]").fill("WRONGCODE234")
    mine.locator("button:has-text('签到')").click()
    expect(resident.page.locator("main")).to_contain_text("签到码不对")  # next to the code field
    resident.page.locator(f"li[data-booking='{booking}'] input[name=code]").fill(posted)
    resident.page.locator(f"li[data-booking='{booking}'] button:has-text('签到')").click()
    expect(resident.page.locator("p.notice[role=status]")).to_contain_text("签到成功")
    expect(resident.page.locator(f"li[data-booking='{booking}']")).to_have_count(0)
    resident.shot("3-checked-in-offline")
    later = start + dt.timedelta(days=2)  # still offline, the resident books the locker again from its calendar
    resident.go(f"/pool/r/{LOCKER[9:]}?day={later.date().isoformat()}")
    resident.page.fill("#pool-day", later.date().isoformat())
    resident.page.fill("#pool-hour", str(later.hour))
    resident.page.fill("#pool-purpose", "借梯子")
    resident.page.click("#book button[type=submit]")
    expect(resident.page.locator("p.notice[role=status]")).to_contain_text("已提交，等待管理人审核")
    expect(resident.page.locator(f"#day li[data-hour='{later.hour}']")).to_have_attribute("data-state", "requested")
    resident.shot("3b-resident-books-offline")
    resident.online()
    resident.synced()  # the check-in reaches the server, which holds it to the venue's code; the booking too
    keeper.go(f"/pool/r/{LOCKER[9:]}?day={later.date().isoformat()}")  # it waits for his approval
    expect(keeper.page.locator(f"#approvals li[data-booking='{rules.slot_id(LOCKER, later)}']")).to_contain_text(
        "借梯子")
    resident.go("/pool")
    expect(resident.page.locator(f"#my-bookings li[data-booking='{booking}'] [data-checked-in]")).to_be_visible()

    secretary = Person(journey_browser, journey_served, "shuji4", role="pool")
    secretary.go("/pool/board")
    locker = secretary.page.locator(f"section[data-resource='{LOCKER}']")
    expect(locker).to_have_attribute("data-flagged", "yes")
    expect(locker.locator("tbody tr")).to_have_count(12)
    expect(locker).to_contain_text("多数开放时段无人预约")
    secretary.shot("4-secretary-board")

    # The secretary adds the school's reading room, open weekday evenings; it is on the list to book.
    name = f"第一小学阅览室 {secrets.token_hex(3)}"
    secretary.go("/pool/new")
    form = secretary.page.locator("#resource-form")
    form.locator("input[name=name]").fill(name)
    form.locator("select[name=owner_kind]").select_option("school")
    form.locator("input[name=place]").fill("第一小学二楼")
    for day in range(5):
        form.locator(f"input[name=opens_{day}]").fill("18")
        form.locator(f"input[name=closes_{day}]").fill("21")
    form.locator("textarea[name=blackouts]").fill("2027-01-20 18-19 期末考试\n2027-01-20 20-21 家长会")
    secretary.shot("5-secretary-adds-a-resource")
    form.locator("button[type=submit]").click()
    secretary.page.wait_for_url(re.compile(r"/pool/r/[0-9a-f]{12}\?done=saved$"))
    expect(secretary.page.locator("h1")).to_have_text(name)
    secretary.go("/pool")
    expect(secretary.page.locator("#resources")).to_contain_text(name)
    for person in (keeper, resident, secretary):
        person.close()


@pytest.mark.timeout(600)
def test_the_secretary_names_a_keeper_who_prints_the_codes_a_volunteer_browses_and_checks_in_offline(
    journey_browser: Browser, journey_served: Served
) -> None:
    secretary = Person(journey_browser, journey_served, "shuji4", role="pool")
    keeper = Person(journey_browser, journey_served, "wangge16", role="pool")
    # A study room open round the clock, its keeper the grid worker, named in the form; he prints its week of codes.
    room_name = f"开放自习室 {secrets.token_hex(3)}"
    secretary.go("/pool/new")
    form = secretary.page.locator("#resource-form")
    form.locator("input[name=name]").fill(room_name)
    form.locator("input[name=place]").fill("社区服务中心三楼")
    for day in range(7):
        form.locator(f"input[name=opens_{day}]").fill("0")
        form.locator(f"input[name=closes_{day}]").fill("24")
    form.locator("input[name=grace_minutes]").fill("60")
    form.locator("#keepers input[value='user:wangge16']").check()
    form.locator("button[type=submit]").click()
    secretary.page.wait_for_url(re.compile(r"/pool/r/[0-9a-f]{12}\?done=saved$"))
    room = "resource:" + secretary.page.url.split("/pool/r/")[1].split("?")[0]
    keeper.go(f"/pool/r/{room[9:]}/codes")
    expect(keeper.page.locator("section.code-day")).to_have_count(7)
    expect(keeper.page.locator("section.code-day svg")).to_have_count(7)
    room_code = keeper.page.locator("section.code-day [data-code]").first.inner_text().strip()
    keeper.shot("6-keeper-prints-the-weeks-codes")

    # A volunteer books it on their phone, then, offline, finds the room and their booking there and checks in.
    volunteer = Person(journey_browser, journey_served, "zhiyuan16a", role="pool", phone=True)
    now = dt.datetime.now(rules.LOCAL)
    start = now.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1 if now.minute >= 50 else 0)
    volunteer.go(f"/pool/r/{room[9:]}")
    volunteer.page.fill("#pool-day", start.date().isoformat())
    volunteer.page.fill("#pool-hour", str(start.hour))
    volunteer.page.click("#book button[type=submit]")
    expect(volunteer.page.locator("p.notice[role=status]")).to_contain_text("已预约")
    booked = rules.slot_id(room, start)
    volunteer.synced()  # the room and the booking in the phone's copy
    volunteer.offline()
    volunteer.go("/pool")
    expect(volunteer.page.locator(f"#resources li[data-resource='{room}']")).to_contain_text(room_name)
    expect(volunteer.page.locator(f"#my-bookings li[data-booking='{booked}']")).to_contain_text("已确认")
    volunteer.shot("7-volunteer-browses-the-pool-offline")
    volunteer.page.click(f"a[href='/pool/r/{room[9:]}']")
    expect(volunteer.page.locator("h1")).to_have_text(room_name)
    if start.date() != now.date():  # booked just before midnight: the calendar of tomorrow
        volunteer.go(f"/pool/r/{room[9:]}?day={start.date().isoformat()}")
    hour = volunteer.page.locator(f"#day li[data-hour='{start.hour}']")
    expect(hour).to_have_attribute("data-state", "confirmed")
    expect(volunteer.page.locator(f"#day li[data-hour='{(start.hour + 1) % 24}']")).to_have_attribute(
        "data-state", "free")
    volunteer.shot("8-volunteer-opens-the-room-offline")
    volunteer.go(f"/pool/checkin?resource={room}&code={room_code}")  # the posted sheet's QR code
    volunteer.page.locator(f"li[data-booking='{booked}'] button:has-text('签到')").click()
    expect(volunteer.page.locator("p.notice[role=status]")).to_contain_text("签到成功")
    volunteer.shot("9-volunteer-checks-in-offline")
    volunteer.online()
    volunteer.synced()  # the check-in reaches the server, which holds it to the day's code
    volunteer.go("/pool")
    expect(volunteer.page.locator(f"#my-bookings li[data-booking='{booked}'] [data-checked-in]")).to_be_visible()
    for person in (keeper, secretary, volunteer):
        person.close()
