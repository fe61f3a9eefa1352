"""/accounts: the administrator adds, resets, deactivates and reactivates accounts in the browser; the refusals;
each change filed (who changed which account, never the password); nobody else reaches the page."""

from __future__ import annotations

import datetime as dt
import re

from starlette.testclient import TestClient

from server.security import account_changes, audit_report, filing
from server.security.firewall import Firewall
from server.store.config import LOCAL_TZ
from server.store.couch import Couch

from .street import C1, G1, G3, PASSWORD, STREET, login, logout, post_form

NEW = {"action": "add", "username": "newworker", "display_name": "新网格员", "roles": "grid_worker",
       "community": C1, "grids": G1}


def _shown_password(page: str) -> str:
    return re.search(r'class="one-time-password">([^<]+)<', page).group(1)


def _account_entries(couch: Couch, community: str) -> list[dict]:
    return [e for e in filing.iter_entries(couch, community) if e["action"] in account_changes.ACCOUNT_ACTIONS]


def test_the_administrator_adds_resets_deactivates_and_reactivates_an_account(client: TestClient, loaded: Couch,
                                                                              firewall: Firewall) -> None:
    login(client, "admin")
    listed = client.get("/accounts", params={"role": "grid_worker", "community": C1, "status": "active"})
    assert listed.status_code == 200 and "worker1" in listed.text and "secretary1" not in listed.text
    assert "newworker" not in listed.text

    added = post_form(client, "/accounts", {**NEW, "password": ""})  # empty: one is generated and shown once
    assert added.status_code == 200 and "已添加账号 newworker" in added.text
    assert added.headers["cache-control"] == "no-store"
    first = _shown_password(added.text)
    assert loaded.accounts.get("user:newworker")["grids"] == [G1]
    assert client.get("/accounts").text.count(first) == 0  # shown once, never again
    logout(client)
    login(client, "newworker", first)
    assert client.get(f"/grids/{G1}").status_code == 200  # works at once, in their grid
    logout(client)

    login(client, "admin")
    reset = post_form(client, "/accounts", {"action": "password", "username": "newworker",
                                            "password": "a chosen password"})
    assert reset.status_code == 200 and "其所有登录已结束" in reset.text
    assert _shown_password(reset.text) == "a chosen password"
    assert loaded.accounts.get("user:newworker")["auth_epoch"] == 2  # their open sessions ended
    off = post_form(client, "/accounts", {"action": "deactivate", "username": "newworker"})
    assert off.status_code == 200 and "已停用 newworker" in off.text
    assert not loaded.accounts.get("user:newworker")["active"]
    found = client.get("/accounts", params={"status": "inactive", "q": "新网格"})
    assert 'data-username="newworker"' in found.text and 'data-username="worker1"' not in found.text
    on = post_form(client, "/accounts", {"action": "reactivate", "username": "newworker"})
    assert on.status_code == 200 and loaded.accounts.get("user:newworker")["active"]

    filed = _account_entries(loaded, C1)  # in the account's community, by the administrator, no password
    assert [(e["action"], e["actor"], e["target"]) for e in filed] == [
        (action, "user:admin", "user:newworker") for action in account_changes.ACCOUNT_ACTIONS]
    assert not any(first in str(e) or "a chosen password" in str(e) for e in filed)
    today = dt.datetime.now(LOCAL_TZ).date()
    report = audit_report.for_community(loaded, firewall.signer.anchor, C1, today, today, LOCAL_TZ)
    assert report.account_changes["user:admin"] == 4  # counted apart: no opening, no "outside assignment"
    assert "user:admin" not in report.actors and not [f for f in report.findings if f.actor == "user:admin"]
    audit = client.get("/audit")
    assert "重置密码" in audit.text and "新网格员" in audit.text


def test_refusals_say_why_and_change_nothing(client: TestClient, loaded: Couch) -> None:
    login(client, "admin")
    refusals = [
        ({**NEW, "roles": "mayor", "password": PASSWORD}, "“mayor”不是可选项"),
        ({**NEW, "username": "worker1", "password": PASSWORD}, "用户名“worker1”已被使用"),
        ({**NEW, "password": "short"}, "密码至少需要 8 个字符"),
        ({**NEW, "username": "Bad Name", "password": PASSWORD}, "用户名须为 3 到 32 个"),
        ({**NEW, "grids": G3, "password": PASSWORD}, "不属于所选社区"),
        ({**NEW, "roles": "department_staff", "grids": "", "password": PASSWORD}, "必填"),  # which department?
        ({"action": "deactivate", "username": "admin"}, "不能停用自己正在使用的账号"),
        ({"action": "password", "username": "worker1", "password": "short"}, "密码至少需要 8 个字符"),
    ]
    for form, said in refusals:
        answer = post_form(client, "/accounts", form)
        assert answer.status_code == 400 and said in answer.text, (form, answer.status_code)
    kept = post_form(client, "/accounts", {**NEW, "password": "short"})
    assert 'value="newworker"' in kept.text and 'value="grid_worker" checked' in kept.text  # the form keeps it
    unknown = post_form(client, "/accounts", {"action": "deactivate", "username": "nobody"})
    assert unknown.status_code == 404
    assert loaded.accounts.get("user:worker1")["active"] and "user:newworker" not in loaded.accounts
    assert _account_entries(loaded, C1) == []


def test_the_last_active_administrator_is_not_deactivated(client: TestClient, loaded: Couch,
                                                           firewall: Firewall) -> None:
    now = dt.datetime.now(dt.UTC)
    refused = None
    try:
        account_changes.set_active(firewall, "admin", False, by=account_changes.COMMAND_LINE, device="t", now=now)
    except account_changes.AccountRefused as error:
        refused = error.errors[0].key
    assert refused == "err_account_last_admin"
    assert loaded.accounts.get("user:admin")["active"]


def test_only_the_administrator_reaches_accounts(client: TestClient, loaded: Couch) -> None:
    for username in ("worker1", "secretary1"):
        login(client, username)
        assert client.get("/accounts").status_code == 403
        assert post_form(client, "/accounts", {"action": "deactivate", "username": "admin"}).status_code == 403
        logout(client)
    assert loaded.accounts.get("user:admin")["active"]


def test_a_partner_account_names_its_organisation(client: TestClient, loaded: Couch) -> None:
    """A partner honours one organisation's vouchers: chosen from the street's organisations, required, real."""
    loaded.main.save({"_id": "organisation:c1-bakery", "type": "organisation", "street": STREET,
                      "community": C1, "name": "街口面包房", "kind": "firm"})
    login(client, "admin")
    page = client.get("/accounts")
    assert 'value="organisation:c1-bakery"' in page.text and "街口面包房" in page.text
    partner = {**NEW, "username": "baker1", "roles": "partner", "grids": "", "password": PASSWORD}
    for organisation, said in (("", "必填"), ("organisation:nowhere", "找不到这个单位")):
        answer = post_form(client, "/accounts", {**partner, "organisation": organisation})
        assert answer.status_code == 400 and said in answer.text, organisation
    assert "user:baker1" not in loaded.accounts
    added = post_form(client, "/accounts", {**partner, "organisation": "organisation:c1-bakery"})
    assert added.status_code == 200 and "已添加账号 baker1" in added.text
    assert loaded.accounts.get("user:baker1")["organisation"] == "organisation:c1-bakery"
