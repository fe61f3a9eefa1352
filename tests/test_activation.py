"""A resident's account from a one-time code (no SMS), and the resident telling the community what they need."""

from __future__ import annotations

import datetime as dt
import re

import httpx
from starlette.testclient import TestClient

from server.domain.access import Principal
from server.security import accounts, filing
from server.security.firewall import Firewall
from server.store.couch import Couch
from server.store.queries import refusal_to_store
from server.web import activation

from .street import PASSWORD, STREET, csrf_of, hashed, login, logout, post_form

RESIDENT = "resident:c1-g01-0001-1"
OTHER = "resident:c1-g02-0001-1"
HOUSEHOLD = "household:c1-g01-0001"




def _issue(client: TestClient, worker: str = "worker1", resident: str = RESIDENT) -> str:
    """The code a worker is shown for the resident (digits only)."""
    login(client, worker)
    page = post_form(client, f"/residents/{resident}/activation-code", {})
    assert page.status_code == 200, page.text
    logout(client)
    return re.search(r'id="activation-code">(\d{4} \d{4})<', page.text).group(1).replace(" ", "")


def _activate(client: TestClient, code: str, username: str = "juming11", password: str = PASSWORD,
              again: str | None = None) -> httpx.Response:
    return post_form(client, "/activate", {"code": code, "username": username, "password": password,
                                       "password_again": password if again is None else again})


def test_resident_activates_with_the_code_and_sees_their_own_record_only(client: TestClient, loaded: Couch) -> None:
    login(client, "worker1")
    household = client.get(f"/households/{HOUSEHOLD}")
    assert f'action="/residents/{RESIDENT}/activation-code"' in household.text and "生成激活码" in household.text
    issued = post_form(client, f"/residents/{RESIDENT}/activation-code", {})
    assert issued.status_code == 200 and issued.headers["cache-control"] == "no-store"
    code = re.search(r'id="activation-code">(\d{4}) (\d{4})<', issued.text).group(1, 2)
    code = "".join(code)
    # Stored as an HMAC only: the accounts database holds no trace of the digits.
    dump = str(loaded.accounts.all(as_list=True))
    assert code not in dump and code[:4] + " " + code[4:] not in dump
    entry = loaded.main.get(filing.entry_id("community:c1", 1))  # issuing is filed
    assert (entry["actor"], entry["action"], entry["target"]) == ("user:worker1", "activation_code", RESIDENT)
    logout(client)

    assert 'href="/activate"' in client.get("/login").text
    assert client.get("/activate").status_code == 200
    done = _activate(client, code[:4] + " " + code[4:])  # typed as read out, with a space
    assert done.status_code == 303 and done.headers["location"] == "/"
    user = loaded.accounts.get("user:juming11")
    assert user["roles"] == ["resident"] and user["resident"] == RESIDENT and user["grids"] == []
    home = client.get("/")  # signed in at once, on their own record
    assert home.status_code == 200 and "我的档案 · 居民11" in home.text
    assert "生成了账户激活码" in home.text and "张网格" in home.text  # who issued the code
    own = client.post(f"/residents/{RESIDENT}/reveal", data={"category": "contact", "purpose": "own_record",
                                                              "csrf_token": csrf_of(client, "/")})
    assert own.status_code == 200 and "10012345678" in own.text
    other = client.post(f"/residents/{OTHER}/reveal", data={"category": "contact", "purpose": "x",
                                                              "csrf_token": csrf_of(client, "/")})
    # Another's record is not found, as one that does not exist (server/web/lookup.py): no existence oracle.
    assert other.status_code == 404 and "10012345678" not in other.text
    assert client.get(f"/residents/{OTHER}/privacy").status_code == 404
    assert client.get("/households/household:c1-g02-0001").status_code == 404
    logout(client)

    again = _activate(client, code, username="someone")
    assert again.status_code == 400 and "已经用过" in again.text
    assert login(client, "juming11").headers["location"] == "/"  # the chosen password works
    logout(client)
    login(client, "worker1")
    household = client.get(f"/households/{HOUSEHOLD}").text  # no code offered to a resident with an account
    assert f'action="/residents/{RESIDENT}/activation-code"' not in household and "生成激活码" not in household
    refused = post_form(client, f"/residents/{RESIDENT}/activation-code", {})
    assert refused.status_code == 409 and "已开通账户" in refused.text and "juming11" in refused.text


def test_expired_wrong_and_malformed_codes_are_refused_clearly(client: TestClient, loaded: Couch,
                                                               firewall: Firewall, settings) -> None:
    worker = Principal.of(loaded.accounts.get("user:worker1"))
    resident = loaded.main.get(RESIDENT)
    key = activation.code_key(settings.secret_key)
    long_ago = dt.datetime.now(dt.UTC) - activation.VALID_FOR - dt.timedelta(minutes=1)
    expired = activation.issue(firewall, key, worker, resident, device="test", now=long_ago)
    answer = _activate(client, expired.code)
    assert answer.status_code == 400 and "已过期" in answer.text
    wrong = "".join("0" if c != "0" else "1" for c in expired.code)
    assert "激活码不正确" in _activate(client, wrong).text
    malformed = _activate(client, "12ab")
    assert malformed.status_code == 400 and "8 位数字" in malformed.text
    current = activation.issue(firewall, key, worker, resident, device="test", now=dt.datetime.now(dt.UTC))
    assert current.replaced  # the expired code was withdrawn
    mismatch = _activate(client, current.code, again="something else")
    assert mismatch.status_code == 400 and "不一致" in mismatch.text
    short = _activate(client, current.code, password="short")
    assert short.status_code == 400 and "至少需要 8 个字符" in short.text
    bad_name = _activate(client, current.code, username="Ab")
    assert bad_name.status_code == 400 and "用户名须为" in bad_name.text and 'value="Ab"' in bad_name.text
    taken = _activate(client, current.code, username="worker1")
    assert taken.status_code == 400 and "已被使用" in taken.text
    # None of these used the code up.
    assert _activate(client, current.code).status_code == 303


def test_a_new_code_replaces_the_previous_one(client: TestClient) -> None:
    first = _issue(client)
    second = _issue(client)
    assert first != second
    assert "激活码不正确" in _activate(client, first).text
    assert _activate(client, second).status_code == 303


def test_guessing_codes_is_throttled_per_client_and_overall(client: TestClient) -> None:
    code = _issue(client)
    wrong = "".join("1" if c != "1" else "2" for c in code)
    for _ in range(activation.CLIENT_LIMIT):
        assert _activate(client, wrong).status_code == 400
    locked = _activate(client, code)  # even the right code, from this client, for 15 minutes
    assert locked.status_code == 429 and "次数过多" in locked.text
    # Others go on guessing, each from their own address, until everyone's guesses together lock activation.
    guessers = activation.OVERALL_LIMIT // activation.CLIENT_LIMIT - 1
    for n in range(guessers):
        with TestClient(client.app, client=(f"10.0.0.{n + 1}", 40000), follow_redirects=False) as guesser:
            for _ in range(activation.CLIENT_LIMIT):
                assert _activate(guesser, wrong).status_code == 400
    with TestClient(client.app, client=("10.0.1.1", 40000), follow_redirects=False) as resident:
        assert _activate(resident, code).status_code == 429


def test_only_the_residents_grid_worker_or_secretary_issues_codes(client: TestClient) -> None:
    # Who may not see the resident finds no such resident; the administrator sees them but may not issue.
    for username, status in (("worker3", 404), ("volunteer1", 404), ("admin", 403)):
        login(client, username)
        assert post_form(client, f"/residents/{RESIDENT}/activation-code", {}).status_code == status, username
        logout(client)
    login(client, "secretary1")
    assert post_form(client, f"/residents/{RESIDENT}/activation-code", {}).status_code == 200
    assert post_form(client, "/residents/resident:nope/activation-code", {}).status_code == 404


def _resident_account(loaded: Couch) -> None:
    loaded.accounts.save(accounts.make_user("resident1", "居民11", [accounts.Role.RESIDENT], STREET,
                                            hashed(PASSWORD), resident=RESIDENT))


def test_resident_tells_what_they_need_and_follows_it(client: TestClient, loaded: Couch) -> None:
    _resident_account(loaded)
    login(client, "resident1")
    page = client.get("/")
    assert 'action="/needs"' in page.text and "居家维修" in page.text and "您还没有提交需求" in page.text
    assert 'href="/requests"' in page.text  # their service requests: progress and rating
    sent = post_form(client, "/needs", {"category": "home_repair", "description": "厨房水管漏水"})
    assert sent.status_code == 303 and sent.headers["location"] == "/#needs"
    need = next(r["doc"] for r in loaded.main.all(startkey="need:", endkey="need:\ufff0", as_list=True))
    assert (need["resident"], need["household"], need["grid"], need["status"], need["created_by"]) == (
        RESIDENT, HOUSEHOLD, "grid:c1-g01", "open", "user:resident1")
    listed = client.get("/")
    assert "居家维修 · 待处理" in listed.text and "厨房水管漏水" in listed.text
    unknown = post_form(client, "/needs", {"category": "pony", "description": "想要一匹小马"})
    assert unknown.status_code == 400 and "请从列表中选择" in unknown.text and "想要一匹小马" in unknown.text
    empty = post_form(client, "/needs", {"category": "cleaning", "description": "  "})
    assert empty.status_code == 400 and "请写明" in empty.text
    assert len(loaded.main.all(startkey="need:", endkey="need:\ufff0", as_list=True)) == 1
    logout(client)
    login(client, "worker1")  # a grid worker has no "own needs" page
    assert post_form(client, "/needs", {"category": "cleaning", "description": "x"}).status_code == 403


def test_a_resident_writes_needs_about_themselves_only(loaded: Couch) -> None:
    _resident_account(loaded)
    p = Principal.of(loaded.accounts.get("user:resident1"))
    routing = {"street": STREET, "community": "community:c1"}
    need = {"_id": "need:x", "type": "need", **routing, "grid": "grid:c1-g01", "household": HOUSEHOLD,
            "resident": RESIDENT, "category": "cleaning", "description": "x", "status": "open",
            "created_by": p.user_id, "created_at": "2026-11-25T10:00:00+00:00"}
    now = dt.datetime(2026, 11, 25, 10, 5, tzinfo=dt.UTC)
    assert refusal_to_store(loaded, p, None, need, now) is None
    other = {**need, "grid": "grid:c1-g02", "household": "household:c1-g02-0001", "resident": OTHER}
    assert refusal_to_store(loaded, p, None, other, now) is not None
    assert refusal_to_store(loaded, p, None, {**need, "created_by": "user:worker1"}, now) is not None
