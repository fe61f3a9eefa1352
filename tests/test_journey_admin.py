"""The administrator's journey, in Chromium against `linli serve` on the demo (issue 14; PRODUCT.md §5.1: every
use of resident data is filed — who, what, when, why — and audited regularly, anomalies traced).

The administrator signs in and oversees every community. Accounts are managed with `linli user` from a terminal
beside the running server (README "The linli command"; there is no web page for it yet): a new grid worker is
added and works at once (opening a resident's contact details, filed); their password is reset (their open
session ends, the old password no longer signs in, the new one does); they are deactivated (their session ends,
nobody signs in as them). The administrator then finds that worker's openings in the filing log and reads the
audit report with the log's signed head. Screenshots: test-output/journeys/admin/.
"""

from __future__ import annotations

import re
import secrets
import subprocess

from playwright.sync_api import Browser, expect

from server.services import demo
from tests.journeys import Person
from tests.test_serve import LINLI, NEW_PASSWORD, Served, linli_env

GRID = "grid:c1-g01"


def linli_user(served: Served, *args: str, password: str = NEW_PASSWORD) -> None:
    """`linli user …` from another terminal on the server's data folder; a new password from the environment."""
    done = subprocess.run([LINLI, "user", *args], env={**linli_env(served.data_dir), "LINLI_NEW_PASSWORD": password},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def signs_in(person: Person) -> bool:
    """Whether the sign-in took the person past the login page (else it says why, in Chinese)."""
    if "/login" not in person.page.url:
        return True
    expect(person.page.locator("p[role=alert]")).to_have_text("用户名或密码不正确。")
    return False


def test_the_administrator_manages_an_account_and_audits_its_use(journey_browser: Browser,
                                                                  journey_served: Served) -> None:
    tail = secrets.token_hex(3)
    admin = Person(journey_browser, journey_served, "admin", role="admin")
    communities = demo.DemoSize.for_residents(400).communities  # the journeys' demo (tests/test_serve.py)
    for c in range(1, communities + 1):  # every community, each with its grids
        expect(admin.page.locator("main")).to_contain_text(demo.community_name(c))
    admin.shot("1-home")

    username, name = f"wangge-{tail}", f"新网格员{tail}"
    linli_user(journey_served, "add", username, "--display-name", name, "--role", "grid_worker",
               "--street", demo.STREET_ID, "--community", "community:c1", "--grid", GRID)
    worker = Person(journey_browser, journey_served, username, role="admin", password=NEW_PASSWORD)
    assert signs_in(worker) and worker.page.url.endswith(f"/grids/{GRID}")  # works at once, in their grid
    worker.row("#households", "").first.click()
    worker.page.wait_for_load_state()
    opened = worker.page.locator("ul.rows > li.card .row-title").first.inner_text()  # the first resident
    worker.page.locator("section[id$='-contact'] button[type=submit]").first.click()
    expect(worker.page.locator("a.number[href^='tel:']").first).to_be_visible()

    linli_user(journey_served, "password", username, password=f"reset {tail} password")
    worker.page.reload()
    assert "/login" in worker.page.url  # the reset ended the session that was open
    worker.close()
    assert not signs_in(Person(journey_browser, journey_served, username, role="admin", password=NEW_PASSWORD))
    worker = Person(journey_browser, journey_served, username, role="admin", password=f"reset {tail} password")
    assert signs_in(worker)

    linli_user(journey_served, "deactivate", username)
    worker.page.reload()
    assert "/login" in worker.page.url  # deactivated: the session ends at once
    worker.close()
    assert not signs_in(Person(journey_browser, journey_served, username, role="admin",
                               password=f"reset {tail} password"))

    admin.go("audit")  # the filing log: who opened what, when and why
    admin.page.select_option("#actor", label=name)
    admin.page.click("form.audit-filter button[type=submit]")
    row = admin.page.locator("table.audit-log tbody tr", has_text=name).first
    expect(row).to_contain_text(opened)
    expect(row).to_contain_text("日常走访")
    admin.shot("2-filing-log")
    admin.page.click("a[href='/audit/report?days=30']")  # the audit report: findings first, the log's signed head
    report = admin.page.locator("main section.card").first
    expect(report).to_contain_text(re.compile(r"共 \d+ 条登记"))
    expect(report.locator(".audit-head code").first).not_to_be_empty()
    admin.shot("3-audit-report")
    admin.close()
