"""Sessions are revocable one by one (issue 13, finding 8), against `linli serve` (web app and sync gateway
in one process, as production runs them) on the real pouchdb-server: a copied cookie dies with the logout, at
once, on a page and on /sync, while the user's other sessions live on; deactivation and a new password end
every session of the user."""

from __future__ import annotations

import subprocess

import httpx2

from tests.sync_harness import (
    G1,
    LINLI,
    Street,
    login,
    shared_street_fixture,  # noqa: F401 - the fixture: one street and server for the module
    within_principal_ttl,
)

PAGE = f"/grids/{G1}"


def _as(street: Street, cookie: str, csrf: str) -> httpx2.Client:
    return httpx2.Client(base_url=street.served.url, timeout=30, follow_redirects=False,
                         headers={"Cookie": cookie, "X-CSRF-Token": csrf, "Accept": "application/json"})


def _signed_in(client: httpx2.Client) -> bool:
    return client.get(PAGE).status_code == 200


def _syncs(client: httpx2.Client) -> bool:
    return client.get("sync/main/_changes", params={"since": "now"}).status_code == 200


def test_a_copied_cookie_dies_with_the_logout_on_pages_and_sync(street: Street) -> None:
    url = street.served.url
    with _as(street, *login(url, "wangge01")) as phone, _as(street, *login(url, "wangge01")) as laptop:
        copied = _as(street, phone.headers["Cookie"], phone.headers["X-CSRF-Token"])
        assert _signed_in(copied) and _syncs(copied)  # the gateway's cache now holds this session
        assert phone.post("logout").headers["location"] == "/login"
        # The copy, right after: the page sends it to the login form, the gateway refuses it (cache or not).
        refused = copied.get(PAGE)
        assert refused.status_code == 303 and refused.headers["location"].startswith("/login")
        answer = copied.get("sync/main/_changes", params={"since": "now"})
        assert answer.status_code == 401 and answer.json()["reason"] == "the session has ended; sign in again"
        # The same user's other session lives on.
        assert _signed_in(laptop) and _syncs(laptop)
        copied.close()


def test_deactivation_and_a_new_password_end_every_session_of_the_user(street: Street) -> None:
    url, env = street.served.url, street.served.env
    worker = street.new_user("wangge01")  # re-passworded and deactivated: the module's other test keeps wangge01
    sessions = [_as(street, *login(url, worker)) for _ in range(2)]
    assert all(_signed_in(s) and _syncs(s) for s in sessions)
    changed = subprocess.run([LINLI, "--quiet", "user", "password", worker], capture_output=True, text=True,
                             env={**env, "LINLI_NEW_PASSWORD": "a brand new password"})
    assert changed.returncode == 0, changed.stderr
    assert not any(_signed_in(s) for s in sessions)  # pages: at once
    for s in sessions:  # the gateway of another process (here: the command's): within its cache's bound
        within_principal_ttl(lambda s=s: not _syncs(s))
    records = street.couch.accounts.all(startkey="session:", endkey="session:\ufff0", as_list=True)
    assert [r for r in records if r["doc"]["user"] == f"user:{worker}"] == []  # deleted, not just outdated

    again = _as(street, *login(url, worker, "a brand new password"))
    assert _signed_in(again)
    off = subprocess.run([LINLI, "--quiet", "user", "deactivate", worker], capture_output=True, text=True,
                         env=env)
    assert off.returncode == 0, off.stderr
    assert not _signed_in(again)
    within_principal_ttl(lambda: not _syncs(again))
    for s in [*sessions, again]:
        s.close()

