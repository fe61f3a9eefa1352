"""The administrator's journey, in Chromium against `linli serve` on the demo (issue 14; PRODUCT.md §5.1: every
use of resident data is filed — who, what, when, why — and audited regularly, anomalies traced).

The administrator signs in and oversees every community. Accounts are managed on /accounts: the list filtered by
role; a new grid worker added there with a generated password, shown once, who works at once (opening a
resident's contact details, filed); their password reset on the page (their open session ends, the old password
no longer signs in, the new one does); deactivated on the page (their session ends, nobody signs in as them). The
administrator then finds that worker's openings and the account changes in the filing log and reads the audit
report with the log's signed head. Screenshots: test-output/journeys/admin/.
"""

from __future__ import annotations

import re
import secrets

from playwright.sync_api import Browser, expect

from server.services import demo
from tests.journeys import Person
from tests.test_serve import Served

GRID = "grid:c1-g01"


def signs_in(person: Person) -> bool:
    """Whether the sign-in took the person past the login page (else it says why, in Chinese)."""
    if "/login" not in person.page.url:
        return True
    expect(person.page.locator("p[role=alert]")).to_have_text("用户名或密码不正确。")
    return False


def on_accounts_row(admin: Person, username: str, form: str, password: str = "") -> None:
    """Find the account on /accounts by its username and submit one of its row's forms (a reset with `password`);
    the page says it is done."""
    admin.go(f"accounts?q={username}")
    row = admin.page.locator(f"table.accounts tr[data-username='{username}']")
    if password:
        row.locator(f"form.{form} [name=password]").fill(password)
    with admin.page.expect_navigation():
        row.locator(f"form.{form} button[type=submit]").click()
    expect(admin.page.locator(".account-done")).to_contain_text(username)


def test_the_administrator_manages_an_account_and_audits_its_use(journey_browser: Browser,
                                                                  journey_served: Served) -> None:
    tail = secrets.token_hex(3)
    admin = Person(journey_browser, journey_served, "admin", role="admin")
    communities = demo.DemoSize.for_residents(400).communities  # the journeys' demo (tests/test_serve.py)
    for c in range(1, communities + 1):  # every community, each with its grids
        expect(admin.page.locator("main")).to_contain_text(demo.community_name(c))
    admin.shot("1-home")

    admin.page.click("nav.console a[href='/accounts']")  # accounts, filtered: the grid workers
    admin.page.select_option("form.account-filter select[name=role]", "grid_worker")
    with admin.page.expect_navigation():
        admin.page.click("form.account-filter button[type=submit]")
    expect(admin.page.locator("table.accounts tr[data-username='wangge01']")).to_contain_text("网格员")
    expect(admin.page.locator("table.accounts tr[data-username='shuji1']")).to_have_count(0)
    admin.shot("2-accounts")

    username, name = f"wangge-{tail}", f"新网格员{tail}"
    add = admin.page.locator("form.account-add")
    add.locator("[name=username]").fill(username)
    add.locator("[name=display_name]").fill(name)
    add.locator("input[name=roles][value=grid_worker]").check()
    add.locator("select[name=community]").select_option("community:c1")
    add.locator("select[name=grids]").select_option(GRID)
    with admin.page.expect_navigation():  # no password typed: one is generated, shown this once
        add.locator("button[type=submit]").click()
    expect(admin.page.locator(".account-done")).to_contain_text(f"已添加账号 {username}")
    first_password = admin.page.locator(".one-time-password").inner_text()
    admin.shot("3-account-added")

    worker = Person(journey_browser, journey_served, username, role="admin", password=first_password)
    assert signs_in(worker) and worker.page.url.endswith(f"/grids/{GRID}")  # works at once, in their grid
    worker.row("#households", "").first.click()
    worker.page.wait_for_load_state()
    opened = worker.page.locator("ul.rows > li.card .row-title").first.inner_text()  # the first resident
    worker.page.locator("section[id$='-contact'] button[type=submit]").first.click()
    expect(worker.page.locator("a.number[href^='tel:']").first).to_be_visible()

    on_accounts_row(admin, username, "account-reset", password=f"reset {tail} password")
    expect(admin.page.locator(".account-done")).to_contain_text("其所有登录已结束")
    worker.page.reload()
    assert "/login" in worker.page.url  # the reset ended the session that was open
    worker.close()
    assert not signs_in(Person(journey_browser, journey_served, username, role="admin", password=first_password))
    worker = Person(journey_browser, journey_served, username, role="admin", password=f"reset {tail} password")
    assert signs_in(worker)

    on_accounts_row(admin, username, "account-active")
    expect(admin.page.locator(".account-done")).to_contain_text(f"已停用 {username}")
    expect(admin.page.locator(f"tr[data-username='{username}']")).to_contain_text("已停用")
    admin.shot("4-deactivated")
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
    admin.go("audit")  # and who changed their account: the administrator, each change filed
    changes = admin.page.locator("table.audit-log tbody tr", has_text=name)
    for change in ("添加账号", "重置密码", "停用账号"):
        expect(changes.filter(has_text=change).first).to_contain_text("账号管理")
    admin.shot("5-filing-log")
    admin.page.click("a[href='/audit/report?days=30']")  # the audit report: findings first, the log's signed head
    report = admin.page.locator("main section.card").first
    expect(report).to_contain_text(re.compile(r"共 \d+ 条登记"))
    expect(report.locator(".audit-head code").first).not_to_be_empty()
    admin.shot("6-audit-report")
    admin.close()
