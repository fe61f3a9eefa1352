"""What every journey test (issue 14) shares: one `linli serve` on the demo for the whole session, one Chromium per
journey module, and a person signed in to it in a browser context of their own.

Journeys share the server: each makes its own matters (descriptions with a random tail) and asserts on those,
so they run in any order. Screenshots go under test-output/journeys/<role>/.
"""

from __future__ import annotations

import random
import re
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.browser import PHONE, launch, screenshot, wait_out_preparing
from tests.test_serve import OUTPUT, Served, demo_password, start_serve, stop

JOURNEYS = OUTPUT / "journeys"
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(scope="session")
def journey_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`linli serve` on a fresh data folder: the demo with its year of history, as `./dev up` starts it."""
    s = start_serve(tmp_path_factory.mktemp("journeys"))
    yield s
    if s.process.poll() is None:
        stop(s)


@pytest.fixture(scope="module")
def journey_browser() -> Iterator[Browser]:
    # Per module, not per session: Playwright's sync API allows one running instance in a process, and the tests
    # after the journeys (test_pwa.py, test_serve.py, …) start their own.
    with sync_playwright() as p:
        chromium = launch(p)
        yield chromium
        chromium.close()


class Activation(NamedTuple):
    code: str
    resident: str
    household: str


class Person:
    """One demo account signed in, in a browser context of its own.

    On a desk (the default) the context has no service worker, so no replica is synced behind the page. On a
    phone (`phone=True`) the viewport is 390 px wide and the service worker runs: the app syncs its replica and
    works offline (`offline()`, `online()`).
    """

    def __init__(self, browser: Browser, served: Served, username: str, *, role: str, phone: bool = False,
                 locale: str = "zh-CN", password: str | None = None) -> None:
        self.url, self.served = served.url, served
        self.shots = JOURNEYS / role
        self.context = browser.new_context(viewport=PHONE if phone else DESKTOP, locale=locale,
                                           service_workers="allow" if phone else "block")
        self.page: Page = self.context.new_page()
        self.page.goto(self.url + "login")
        self.page.fill("#username", username)
        self.page.fill("#password", password or demo_password(served.data_dir))  # an account of its own: its own
        with self.page.expect_navigation():  # the answer to the sign-in, a home page or the login page saying why
            self.page.click("form[action='/login'] button[type=submit]")

    def go(self, path: str) -> None:
        self.page.goto(self.url + path.lstrip("/"))
        wait_out_preparing(self.page)

    def act(self, label: str) -> None:
        """Press the button labelled `label` and wait for the page it leads to."""
        self.page.click(f"button:has-text('{label}')")
        self.page.wait_for_load_state()

    def row(self, container: str, text: str) -> Locator:
        return self.page.locator(f"{container} a.row", has_text=text)

    def report(self, category: str, description: str) -> str:
        """Report a matter from the report form (the reporter's own grid or address); returns its page's URL."""
        self.go("requests/new")
        self.page.select_option("select[name=category]", category)
        self.page.fill("textarea[name=description]", description)
        self.page.click("button:has-text('提交')")
        self.landed(re.compile(r"/requests/[0-9a-f]{32}$"), f"reporting {description!r}")
        expect(self.page.locator("h1")).to_contain_text("已接收")
        return self.page.url

    def landed(self, url: re.Pattern[str], doing: str) -> None:
        """Wait for the page at `url`; if it never comes, fail with what the person sees and what the server said
        last (a report that timed out once on CI left only "waiting for navigation")."""
        try:
            self.page.wait_for_url(url)
        except PlaywrightTimeoutError:
            seen = self.page.locator("main").inner_text(timeout=5_000)[:600]
            raise AssertionError(f"{doing}: still at {self.page.url}; the page shows {seen!r}; the server's last "
                                 f"lines: {''.join(self.served.output[-15:])}") from None

    def synced(self) -> None:
        """On a phone: press "立即同步" and wait until a sync begun since has finished with nothing waiting."""
        bar = "document.querySelector('#sync-state')"
        before = self.page.get_attribute("#sync-state", "data-last-synced")
        self.page.click("#sync-state button")
        self.page.wait_for_function(
            f"(before) => {bar}.dataset.lastSynced && {bar}.dataset.lastSynced !== before && "
            f"{bar}.dataset.pending === '0' && {bar}.dataset.syncing === 'no'", arg=before, timeout=120_000)

    def offline(self) -> None:
        self.context.set_offline(True)

    def online(self) -> None:
        self.context.set_offline(False)

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        screenshot(self.page, path)
        return path

    def close(self) -> None:
        self.context.close()

    def issue_activation_code(self, households: Sequence[str]) -> Activation:
        """As a grid worker: a code for the first resident without an account in one of `households` (tried in a
        random order: journeys share the server, so another may have activated one); failing, it says what each
        household page showed."""
        seen = []
        for household in random.sample(list(households), len(households)):
            self.go(f"/households/{household}")
            form = self.page.locator("form.activation").first
            if form.count():
                resident_id = form.get_attribute("action").split("/")[2]
                form.locator("button").click()
                self.page.wait_for_load_state()
                return Activation(self.page.locator("#activation-code").inner_text().replace(" ", ""), resident_id,
                                  household)
            seen.append(f"{self.page.url} {self.page.title()!r}")
        raise AssertionError("no resident without an account: " + "; ".join(seen))


    def activation_code_for(self, resident: str) -> str:
        """As a grid worker on the resident's household page: a code for that resident (not the household's first
        without an account, as `issue_activation_code` takes)."""
        self.page.click(f"form[action='/residents/{resident}/activation-code'] button")
        return self.page.locator("#activation-code").inner_text().replace(" ", "")

    def open_needs_household(self, need: str) -> str:
        """As a grid worker: from the need's page to its household's; the resident the need is for."""
        self.go(f"/needs/{need.removeprefix('need:')}")
        resident = self.page.locator("dd[data-resident]").get_attribute("data-resident")
        self.page.click("a.back")
        return resident


def activate(browser: Browser, served: Served, code: str, *, phone: bool = False, username: str = "",
             password: str = "") -> Page:
    """A resident opens /activate on their own device with the code from their grid worker and chooses a username
    and password (random unless given): their signed-in page (in a browser context of its own; close it with
    `page.context.close()`)."""
    context = browser.new_context(viewport=PHONE if phone else DESKTOP, locale="zh-CN", service_workers="block")
    page = context.new_page()
    page.goto(served.url + "activate")
    password = password or demo_password(served.data_dir) + "-" + secrets.token_hex(4)
    for field, value in (("code", code), ("username", username or f"jumin_{secrets.token_hex(3)}"),
                         ("password", password),
                         ("password_again", password)):
        page.fill(f"#{field}", value)
    page.click("button:has-text('开通账户')")
    page.wait_for_url(served.url)
    return page
