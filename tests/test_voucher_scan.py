"""The partner scans a voucher's QR code (issue 16) in Chromium against `linli serve` on the demo: a volunteer buys a
reward and their /rewards shows the voucher as a QR code; the partner's phone, offline, points its camera at it
(Chromium's fake camera filming a Y4M video of that QR code, tests/browser.py `y4m_of_qr`), the code lands in the
field, and the voucher is honoured once; a QR code that is not a voucher fills the field too and is refused, naming
why; a browser with no camera says so beside the button, and typing stays.

Community 4 (its partner hezuo4; zhiyuan19a, a volunteer of its fourth grid who holds 125 of the demo's participation
points): no other journey redeems there. One server for the session (tests/journeys.py).
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from playwright.sync_api import Browser, expect

from server.services import demo
from tests.browser import launch_with_camera, modules_of_svg, y4m_of_modules, y4m_of_qr
from tests.journeys import Person
from tests.test_journey_points import offer_one, on_phone
from tests.test_serve import Served

SHOTS = "points"
PARTNER = demo.partner_username(4)
VOLUNTEER = demo.volunteer_usernames(19)[0]


def test_the_partner_scans_a_voucher_offline_and_honours_it_once(
    journey_browser: Browser, journey_served: Served, tmp_path: Path
) -> None:
    reward_name = f"理发 {secrets.token_hex(3)}"
    offerer = Person(journey_browser, journey_served, PARTNER, role=SHOTS)
    offer_one(offerer, reward_name, 1)
    offerer.close()
    volunteer = Person(journey_browser, journey_served, VOLUNTEER, role=SHOTS)
    volunteer.go("/rewards")
    volunteer.page.locator("[data-reward]", has_text=reward_name).locator("button:has-text('兑换')").click()
    volunteer.page.wait_for_url(re.compile(r"/rewards\?done=redeemed$"), timeout=240_000)  # indexes may be building
    voucher = volunteer.page.locator("[data-voucher]", has_text=reward_name)
    code = voucher.locator("textarea[data-code]").input_value()
    # The page's QR code, as the server drew it when the voucher was made: the camera below films exactly what the
    # page shows, so the voucher honoured there was read from this drawing.
    size = int(voucher.locator("[data-qr] svg").get_attribute("viewBox").split()[-1])
    shown = modules_of_svg(size, voucher.locator("[data-qr] svg path").get_attribute("d"))
    volunteer.shot("8-volunteer-shows-the-voucher-qr")
    volunteer.close()

    # A browser without a camera: the button says so, and the code can still be typed.
    desk = Person(journey_browser, journey_served, PARTNER, role=SHOTS)
    desk.go("/redeem")
    desk.page.click("button[data-scan]")
    expect(desk.page.locator("[data-scan-status]")).to_have_text(
        re.compile("无法使用摄像头|未获准使用摄像头"))
    desk.close()

    video = tmp_path / "voucher.y4m"
    y4m_of_modules(shown, video)
    camera = launch_with_camera(journey_browser.browser_type, video)
    try:
        partner = Person(camera, journey_served, PARTNER, role=SHOTS, phone=True)
        on_phone(partner, "/redeem")
        # The browser's HTTP cache emptied (a phone's browser evicts it at will): offline, the scanner and jsQR must
        # come from the service worker's shell.
        partner.context.new_cdp_session(partner.page).send("Network.clearBrowserCache")
        partner.offline()
        for honoured, said in ((True, f"核销成功：{reward_name}，1 积分"), (False, "使用过，不能再次核销")):
            partner.go("/redeem")
            expect(partner.page.locator("#code")).to_have_value("")
            partner.page.click("button[data-scan]")
            expect(partner.page.locator("#code")).to_have_value(code, timeout=30_000)
            expect(partner.page.locator("[data-scan-status]")).to_have_text("已读取兑换码，请核对后点“核销”。")
            partner.act("核销")
            expect(partner.page.locator("[data-used]" if honoured else "#honour")).to_contain_text(said)
        partner.shot("9-partner-scans-offline-once")
        partner.close()
    finally:
        camera.close()

    # A QR code that is not a voucher (a web address) is read into the field, and honouring it is refused.
    y4m_of_qr("https://example.org/menu", video)
    camera = launch_with_camera(journey_browser.browser_type, video)
    try:
        partner = Person(camera, journey_served, PARTNER, role=SHOTS)
        partner.go("/redeem")
        partner.page.click("button[data-scan]")
        expect(partner.page.locator("#code")).to_have_value("https://example.org/menu", timeout=30_000)
        partner.act("核销")
        expect(partner.page.locator("#honour")).to_contain_text("兑换码无效：不是本平台签发的兑换券")
        partner.close()
    finally:
        camera.close()
