"""Points in Chromium against `linli serve` on the demo (issue 16, the journey it names): a partner offers a reward;
a volunteer claims three hours of help on their phone offline; the resident (given an account by their grid
worker) confirms them on their own page; the secretary mints the community's due points now (the button runs the
quarter-hour job's own idempotent mint); the volunteer buys the reward with the 30 points those hours earned and
gets a signed voucher, whose QR code their phone shows without signal too; the partner honours it offline on one
phone, and, offline too, on a second phone; back in signal the first use syncs and stands, the second is refused at
sync and listed on the partner's page.

Community 3, grid 2 (wangge12, zhiyuan12a, shuji3, the partner hezuo3): no other journey claims, activates or
redeems there. One server for the session (tests/journeys.py). Screenshots: test-output/journeys/points/.
"""

from __future__ import annotations

import re
import secrets

from playwright.sync_api import Browser, Page, expect

from tests.browser import screenshot, wait_out_preparing
from tests.journeys import Person, activate
from tests.test_serve import Served

SHOTS = "points"
COMMUNITY = "community:c3"


def points_on(page: Page) -> int:
    """The points balance /rewards shows."""
    return int(re.search(r"-?\d+", page.locator("[data-balance=points]").inner_text()).group(0))


def on_phone(person: Person, path: str) -> None:
    """Open a page the phone answers and wait until its replica holds what the server has."""
    person.go(path)
    try:
        expect(person.page.locator("#sync-state")).to_be_visible(timeout=240_000)  # its first sync, indexes building
    except AssertionError as error:  # what the server was doing, for whoever reads the failure
        health = person.page.request.get(person.url + "healthz").text()
        worker = person.page.evaluate("""async () => { const r = await navigator.serviceWorker.getRegistration();
          return { controlled: !!navigator.serviceWorker.controller, active: r?.active?.state || null,
                   installing: r?.installing?.state || null, waiting: r?.waiting?.state || null }; }""")
        raise AssertionError(f"the phone's bar never showed a sync; its worker: {worker}; the server's /healthz: "
                             f"{health}") from error
    person.synced()


def offer_one(partner: Person, name: str, points: int) -> str:
    """As a partner: offer one unit of a service called `name` for `points` points; its reward id."""
    partner.go("/rewards/offer")
    partner.page.fill("#offer-name", name)
    partner.page.select_option("#offer-kind", "service")
    partner.page.fill("#offer-points", str(points))
    partner.page.fill("#offer-stock", "1")
    partner.act("提供")
    expect(partner.page.locator("p.notice[role=status]")).to_contain_text("兑换项目已提供")
    offered = partner.page.locator("[data-offered]", has_text=name)
    expect(offered).to_contain_text("共 1 份，已兑换 0 份")
    return offered.get_attribute("data-offered")


def test_help_earns_points_that_buy_a_voucher_the_partner_honours_offline_once(
    journey_browser: Browser, journey_served: Served
) -> None:
    tail = secrets.token_hex(3)
    # The partner offers a reward of its own: one unit for the 30 points three hours of help earn.
    partner = Person(journey_browser, journey_served, "hezuo3", role=SHOTS, phone=True)
    reward_name = f"修自行车 {tail}"
    reward_id = offer_one(partner, reward_name, 30)
    partner.shot("1-partner-offers-a-reward")

    # The volunteer helped a resident of their grid (the demo leaves each grid's first volunteer such a need) and
    # claims three hours of it at the door, without signal.
    volunteer = Person(journey_browser, journey_served, "zhiyuan12a", role=SHOTS, phone=True)
    volunteer.go("/timebank")  # "preparing" while the ledger's index is built (a first start), then the page
    task_id = volunteer.page.locator("#claimable li[data-task^='need:']").first.get_attribute("data-task")
    on_phone(volunteer, "/timebank")
    volunteer.offline()
    volunteer.go("/timebank")
    row = volunteer.page.locator(f"#claimable li[data-task='{task_id}']")
    row.locator("input[name=hours]").fill("3")
    row.locator("input[name=note]").fill(f"陪同看病 {tail}")
    row.locator("button:has-text('申报时长')").click()
    volunteer.page.wait_for_url(re.compile(r"/timebank\?done=claimed$"))
    expect(volunteer.page.locator(f"[data-made='claim:{task_id}']")).to_contain_text("待确认")
    volunteer.shot("2-volunteer-claims-offline")
    volunteer.online()
    volunteer.synced()  # the claim reaches the server

    # The resident gets an account from their grid worker and confirms the claim on their own page.
    worker = Person(journey_browser, journey_served, "wangge12", role=SHOTS)
    activation = worker.activation_code_for(worker.open_needs_household(task_id))  # the need's own resident
    page = activate(journey_browser, journey_served, activation, phone=True)
    page.goto(journey_served.url + "timebank")
    wait_out_preparing(page)
    mine = page.locator(f"[data-claim='claim:{task_id}']")
    expect(mine).to_contain_text("申报为您服务 3 小时")
    mine.locator("form[action$='/confirm'] button").click()
    page.wait_for_url(re.compile(r"/timebank\?done=confirmed$"))
    screenshot(page, volunteer.shots / "3-resident-confirmed.png")
    page.context.close()

    # The secretary mints the due points now rather than at the job's next quarter hour.
    secretary = Person(journey_browser, journey_served, "shuji3", role=SHOTS)
    secretary.go(f"/statements?community={COMMUNITY}")
    secretary.act("立即发放积分")
    expect(secretary.page.locator("[data-minted]")).to_be_visible()  # how many: the minute job may have been first
    secretary.shot("4-secretary-mints-points")

    # Three confirmed hours: 30 points, on the volunteer's statement; they buy the partner's reward.
    volunteer.go("/statements")
    mint = volunteer.page.locator(f"[data-entry^='transfer:mint:'][data-entry*='{task_id}']")
    expect(mint).to_contain_text("30")
    volunteer.go("/rewards")
    assert points_on(volunteer.page) >= 30
    held = points_on(volunteer.page)
    volunteer.page.locator(f"[data-reward='{reward_id}'] button:has-text('兑换')").click()
    volunteer.page.wait_for_url(re.compile(r"/rewards\?done=redeemed$"))
    assert points_on(volunteer.page) == held - 30
    voucher = volunteer.page.locator("[data-voucher]", has_text=reward_name)
    expect(voucher).to_contain_text("未使用")
    code = voucher.locator("textarea[data-code]").input_value()
    voucher_id = voucher.get_attribute("data-voucher")
    volunteer.shot("5-volunteer-holds-a-voucher")

    # At the partner's counter without signal, the volunteer opens their vouchers on the phone: the same QR code,
    # from the replica (drawn by the server when the voucher was made); buying there says it needs the network.
    qr = voucher.locator("[data-qr] svg path").get_attribute("d")
    on_phone(volunteer, "/rewards")
    volunteer.offline()
    volunteer.go("/rewards")
    expect(volunteer.page.locator("#catalogue")).to_contain_text("兑换需要联网")
    held_offline = volunteer.page.locator(f"[data-voucher='{voucher_id}']")
    expect(held_offline).to_contain_text("未使用")
    assert held_offline.locator("[data-qr] svg path").get_attribute("d") == qr
    assert points_on(volunteer.page) == held - 30
    volunteer.shot("5b-volunteer-shows-the-voucher-qr-offline")
    volunteer.online()

    # The partner honours it offline; a second phone of the shop, offline too, honours it again.
    second = Person(journey_browser, journey_served, "hezuo3", role=SHOTS, phone=True)
    for phone in (partner, second):
        on_phone(phone, "/redeem")
        phone.offline()
        phone.go("/redeem")
        phone.page.fill("#code", code)
        phone.act("核销")
        expect(phone.page.locator("[data-used]")).to_contain_text(f"核销成功：{reward_name}，30 积分")
    partner.shot("6-partner-honours-offline")
    redemption = "redemption:" + voucher_id.removeprefix("voucher:")
    for phone in (partner, second):  # the first use stands; the second meets it at sync and is refused
        phone.online()
        phone.synced()
    second.go("/redeem")
    twice = second.page.locator(f"[data-twice='{redemption}']")
    expect(twice).to_contain_text("另一次核销被拒绝")
    second.shot("7-second-use-refused-and-listed")
    volunteer.go("/rewards")
    expect(volunteer.page.locator(f"[data-voucher='{voucher_id}']")).to_contain_text("已于")  # used, once
    for person in (partner, second, volunteer, worker, secretary):
        person.close()
