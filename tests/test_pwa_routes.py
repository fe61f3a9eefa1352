"""What the offline app is made of, as the server serves it (server/web/pwa_routes.py)."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from server.domain.i18n import MESSAGES
from server.web.pwa_routes import ONLINE_ONLY_TEMPLATES, PWA_DIR

from .street import login

PAGES_JS = PWA_DIR / "offline" / "pages.js"


def test_the_session_tells_offline_pages_who_is_signed_in_and_nothing_secret(client: TestClient) -> None:
    assert client.get("/pwa/session.json").status_code == 303  # to the login page
    login(client, "worker1")
    session = client.get("/pwa/session.json").json()
    assert session["user"]["_id"] == "user:worker1" and session["user"]["grids"] == ["grid:c1-g01"]
    assert "password_hash" not in session["user"] and "auth_epoch" not in session["user"]
    assert session["csrf_token"] and session["alert_actions"]["resolve"][0] == "resolved"


def test_the_messages_come_apart_from_the_session_by_a_versioned_name(client: TestClient) -> None:
    """The language's messages are not in session.json (sent uncompressed: it carries the CSRF token) but named by
    it, under a name that changes with them: kept a year, sent compressed (tests/test_compression.py)."""
    login(client, "worker1")
    session = client.get("/pwa/session.json").json()
    assert "messages" not in session and session["messages_url"].startswith("/pwa/messages/zh.json?v=")
    messages = client.get(session["messages_url"])
    assert messages.json() == MESSAGES["zh"] and "immutable" in messages.headers["cache-control"]
    unversioned = client.get("/pwa/messages/zh.json")
    assert unversioned.json() == MESSAGES["zh"] and unversioned.headers["cache-control"] == "no-cache"
    client.post("/lang", data={"lang": "en", "csrf_token": session["csrf_token"]})
    english = client.get("/pwa/session.json").json()["messages_url"]
    assert english.startswith("/pwa/messages/en.json?v=") and client.get(english).json() == MESSAGES["en"]
    unknown = client.get("/pwa/messages/xx.json")
    assert unknown.status_code == 404 and "xx" in unknown.json()["reason"]


def test_the_session_asked_for_again_unchanged_costs_a_304(client: TestClient) -> None:
    """Every sync asks for session.json (a few KB, uncompressed on purpose): on a weak signal, an unchanged one is a
    304. Its validator is the whole answer's: another user, another language, another token, another answer."""
    login(client, "worker1")
    first = client.get("/pwa/session.json")
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "private, no-cache" and len(first.content) > 1_000
    again = client.get("/pwa/session.json", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    client.post("/lang", data={"lang": "en", "csrf_token": first.json()["csrf_token"]})
    changed = client.get("/pwa/session.json", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.json()["lang"] == "en" and changed.headers["etag"] != etag
    login(client, "worker3")
    assert client.get("/pwa/session.json", headers={"If-None-Match": changed.headers["etag"]}).status_code == 200


def test_the_shell_lists_what_the_service_worker_keeps(client: TestClient) -> None:
    shell = client.get("/pwa/shell.json").json()
    assert "household.html" in shell["templates"] and not ONLINE_ONLY_TEMPLATES & set(shell["templates"])
    for path in [*shell["files"], *(f"/pwa/templates/{name}" for name in shell["templates"])]:
        assert client.get(path).status_code == 200, path
    worker = client.get("/sw.js")
    assert worker.headers["cache-control"] == "no-cache" and "javascript" in worker.headers["content-type"]
    assert client.get("/manifest.webmanifest").json()["start_url"] == "/"


def test_the_favicon_is_the_app_icon(client: TestClient) -> None:
    icon = client.get("/favicon.ico")  # signed out: browsers ask before anyone signs in
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/png"
    assert icon.content.startswith(b"\x89PNG\r\n\x1a\n")


def test_the_offline_pages_take_the_servers_tables_from_the_session(client: TestClient) -> None:
    """pages.js once re-typed small tables of the server's (how many of a list a page shows, the notices after an
    act, the form field a refusal belongs to): copies that could drift. Now they come in session.json, and
    pages.js declares at its top level nothing but functions and its cache of documents by type."""
    declared = re.findall(r"^(?:const|let|var) (\w+) = (.*)$", PAGES_JS.read_text(encoding="utf-8"), re.M)
    assert declared, "pages.js declares nothing at its top level: the pattern no longer reads it"
    assert [name for name, value in declared if not value.startswith(("(", "async ", "new Map()"))] == []
    login(client, "worker1")
    session = client.get("/pwa/session.json").json()
    assert session["shown"] == {"households": 50, "recent_visits": 5, "resolved_alerts": 200, "tasks": 200,
                                "requests": 200, "openings": 100, "redemptions": 50}
    assert session["timebank"]["claim_fields"]["tb_minutes_range"] == "minutes"
    assert "confirmed" in session["timebank"]["done"] and "redeemed" in session["rewards_done"]
    assert session["pool"]["refusal_fields"]["pool_over_capacity"] == "people"
    assert session["household_form"]["editable"][-2:] == ["housing", "tags"]
