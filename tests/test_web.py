"""Login, sessions, CSRF, throttling and the first pages, against a real pouchdb-server."""

from __future__ import annotations

import time

from starlette.testclient import TestClient

from server.security import accounts
from server.store.config import Settings
from server.store.couch import Couch
from server.web.app import create_app

from .street import G1, G2, G3, PASSWORD, csrf_of, login


def test_grid_worker_logs_in_and_sees_own_households(client: TestClient) -> None:
    response = login(client, "worker1")
    assert response.status_code == 303 and response.headers["location"] == "/"
    home = client.get("/")
    assert home.headers["location"] == f"/grids/{G1}"
    page = client.get(home.headers["location"])
    assert page.status_code == 200
    assert "第1网格" in page.text and "c1-g01路1号" in page.text and "居民11" in page.text
    assert "独居老人" in page.text  # the elderly-alone tag, in Chinese by default
    assert 'id="household-total">3<' in page.text
    assert "c1-g02路" not in page.text  # another grid's households are not listed


def test_grid_worker_cannot_open_another_grid_or_its_households(client: TestClient) -> None:
    login(client, "worker1")
    # What they may not see answers exactly as what does not exist: no existence oracle (server/web/lookup.py).
    assert client.get(f"/grids/{G3}").status_code == client.get("/grids/grid:nope").status_code == 404
    assert client.get(f"/grids/{G3}").text == client.get("/grids/grid:nope").text
    assert client.get("/households/household:c2-g01-0001").status_code == 404
    assert client.get("/communities").status_code == 403


def test_household_page_shows_basic_fields_only(client: TestClient) -> None:
    login(client, "worker1")
    page = client.get("/households/household:c1-g01-0001")
    assert page.status_code == 200
    assert "居民11" in page.text and "独居" in page.text
    # contact, health and finance fields stay behind the firewall
    for protected in ("10012345678", "高血压", "低保"):
        assert protected not in page.text


def test_htmx_search_returns_only_matching_rows(client: TestClient) -> None:
    login(client, "worker1")
    by_address = client.get(f"/grids/{G1}", params={"q": "路2号"}, headers={"HX-Request": "true"})
    assert by_address.status_code == 200
    assert "<html" not in by_address.text  # a fragment for htmx to swap in
    assert "c1-g01路2号" in by_address.text and "c1-g01路1号" not in by_address.text
    by_name = client.get(f"/grids/{G1}", params={"q": "居民13"}, headers={"HX-Request": "true"})
    assert "c1-g01路3号" in by_name.text and "c1-g01路1号" not in by_name.text
    nothing = client.get(f"/grids/{G1}", params={"q": "不存在"}, headers={"HX-Request": "true"})
    assert "没有找到住户" in nothing.text
    assert client.get(f"/grids/{G1}", params={"offset": "x"}).status_code == 400


def test_secretary_sees_communities_and_grids_with_counts(client: TestClient) -> None:
    login(client, "secretary1")
    assert client.get("/").headers["location"] == "/today"  # her home: what needs her today (test_today.py)
    page = client.get("/communities")
    assert page.status_code == 200
    assert "幸福社区" in page.text and "第1网格" in page.text and "第2网格" in page.text
    assert "和谐社区" not in page.text  # not their community
    assert "住户 3 · 居民 3" in page.text
    assert "张网格" in page.text and "赵志愿" in page.text
    assert client.get(f"/grids/{G2}").status_code == 200
    assert client.get(f"/grids/{G3}").status_code == 404


def test_admin_sees_every_community(client: TestClient) -> None:
    login(client, "admin")
    page = client.get("/communities")
    assert "幸福社区" in page.text and "和谐社区" in page.text


def test_wrong_password_is_refused(client: TestClient) -> None:
    response = login(client, "worker1", "wrong password")
    assert response.status_code == 401
    assert "用户名或密码不正确" in response.text
    assert client.get("/").status_code == 303  # still not logged in
    assert login(client, "nobody", PASSWORD).status_code == 401
    empty = client.post("/login", data={"username": "", "password": "", "csrf_token": csrf_of(client)})
    assert empty.status_code == 400


def test_login_is_throttled_after_repeated_failures(client: TestClient) -> None:
    for _ in range(accounts.MAX_FAILURES):
        assert login(client, "worker1", "wrong password").status_code == 401
    locked = login(client, "worker1")  # even the right password is refused while locked
    assert locked.status_code == 429
    assert "登录失败次数过多" in locked.text
    assert login(client, "worker3").status_code == 303  # other accounts are unaffected


def test_form_post_without_csrf_token_is_rejected(client: TestClient) -> None:
    client.get("/login")
    no_token = client.post("/login", data={"username": "worker1", "password": PASSWORD})
    assert no_token.status_code == 403
    wrong = client.post("/login", data={"username": "worker1", "password": PASSWORD, "csrf_token": "forged"})
    assert wrong.status_code == 403
    login(client, "worker1")
    assert client.post("/logout").status_code == 403  # logout is a form too
    assert client.get("/").status_code == 303  # and it did not log out
    # htmx sends the token as a header instead of a form field
    token = csrf_of(client, f"/grids/{G1}")
    assert client.post("/logout", headers={"X-CSRF-Token": token}).status_code == 303


def test_csrf_on_multipart_forms(client: TestClient) -> None:
    token = csrf_of(client)
    files = {"photo": ("x.txt", b"data", "text/plain")}
    response = client.post("/login", data={"username": "worker1", "password": PASSWORD, "csrf_token": token},
                           files=files)
    assert response.status_code == 303
    assert client.post("/logout", files=files).status_code == 403


def test_logout_ends_the_session(client: TestClient) -> None:
    login(client, "worker1")
    token = csrf_of(client, f"/grids/{G1}")
    assert client.post("/logout", data={"csrf_token": token}).headers["location"] == "/login"
    assert client.get(f"/grids/{G1}").status_code == 303


def test_expired_session_redirects_to_login(loaded: Couch, settings: Settings) -> None:
    short = Settings(**{**settings.__dict__, "session_max_age": 1})
    with TestClient(create_app(short, loaded), follow_redirects=False) as c:
        assert login(c, "worker1").status_code == 303
        assert c.get(f"/grids/{G1}").status_code == 200
        time.sleep(2.1)
        expired = c.get(f"/grids/{G1}")
        assert expired.status_code == 303
        assert expired.headers["location"] == f"/login?next=/grids/{G1}&expired=1"
        assert "登录已过期" in c.get(expired.headers["location"]).text
        htmx = c.get(f"/grids/{G1}", headers={"HX-Request": "true"})
        assert htmx.status_code == 401 and htmx.headers["HX-Redirect"].startswith("/login")


def test_deactivating_a_user_ends_their_open_session(client: TestClient, loaded: Couch) -> None:
    login(client, "worker1")
    assert client.get(f"/grids/{G1}").status_code == 200
    user = loaded.accounts.get("user:worker1")
    loaded.accounts.save({**user, "auth_epoch": user["auth_epoch"] + 1})
    assert client.get(f"/grids/{G1}").status_code == 303


def test_passwords_are_argon2id_hashes(loaded: Couch) -> None:
    stored = loaded.accounts.get("user:worker1")["password_hash"]
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_english_is_available(client: TestClient) -> None:
    token = csrf_of(client)
    response = client.post("/lang", data={"lang": "en", "csrf_token": token})
    assert response.status_code == 303
    page = client.get("/login")
    assert "Log in" in page.text and 'lang="en"' in page.text
    assert client.post("/lang", data={"lang": "xx", "csrf_token": token}).status_code == 400


def test_open_redirect_is_refused(client: TestClient) -> None:
    response = client.post("/login", data={"username": "worker1", "password": PASSWORD,
                                           "next": "//evil.example", "csrf_token": csrf_of(client)})
    assert response.headers["location"] == "/"


def test_schema_json_is_served(client: TestClient) -> None:
    schema = client.get("/schema.json").json()
    assert schema["types"]["resident"]["fields"]["phone"]["tier"] == "contact"
