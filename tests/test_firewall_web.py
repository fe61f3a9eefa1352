"""The firewall as people use it in the browser's pages: open with filing, ask, approve, choose privacy."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from server.security import accounts, filing
from server.store.couch import Couch

from .street import G1, PASSWORD, STREET, hashed, login, logout, post_form

RESIDENT = "resident:c1-g01-0001-1"



def test_grid_worker_opens_contact_details_and_the_opening_is_filed(client: TestClient, loaded: Couch) -> None:
    login(client, "worker1")
    page = client.get("/households/household:c1-g01-0001")
    assert "10012345678" not in page.text  # nothing protected until asked for
    assert f'hx-post="/residents/{RESIDENT}/reveal"' in page.text
    shown = post_form(client, f"/residents/{RESIDENT}/reveal", {"category": "contact", "purpose": "routine_visit"},
                      htmx=True)
    assert shown.status_code == 200 and "10012345678" in shown.text and "<html" not in shown.text
    assert '<a class="number" href="tel:10012345678">10012345678</a>' in shown.text  # dialled with a tap, kept whole
    entry = loaded.main.get(filing.entry_id("community:c1", 1))
    assert entry["actor"] == "user:worker1" and entry["target"] == RESIDENT and entry["purpose"] == "routine_visit"
    # Without htmx the same form gives a whole page (progressive enhancement).
    whole = post_form(client, f"/residents/{RESIDENT}/reveal", {"category": "contact", "purpose": "routine_visit"})
    assert "<html" in whole.text and "10012345678" in whole.text


def test_core_data_goes_through_the_secretary(client: TestClient, loaded: Couch) -> None:
    login(client, "worker1")
    refused = post_form(client, f"/residents/{RESIDENT}/reveal", {"category": "health", "purpose": "x"})
    assert refused.status_code == 403 and "高血压" not in refused.text and "批准" in refused.text
    # htmx swaps only successful answers, so the section saying why comes back as one.
    in_place = post_form(client, f"/residents/{RESIDENT}/reveal", {"category": "health", "purpose": "x"}, True)
    assert in_place.status_code == 200 and "高血压" not in in_place.text and "批准" in in_place.text
    assert "<html" not in in_place.text
    assert f"/residents/{RESIDENT}/access-request" in client.get("/households/household:c1-g01-0001").text
    bad = post_form(client, f"/residents/{RESIDENT}/access-request",
                    {"category": "health", "purpose": "", "hours": "2"})
    assert bad.status_code == 400 and "purpose" in bad.text
    sent = post_form(client, f"/residents/{RESIDENT}/access-request",
                 {"category": "health", "purpose": "血压随访", "hours": "2"})
    assert sent.status_code == 200 and "等待社区书记审批" in sent.text
    logout(client)

    login(client, "secretary1")
    approvals = client.get("/approvals")
    assert "血压随访" in approvals.text and "张网格" in approvals.text
    access_request_id = re.search(r'name="access_request" value="([^"]+)"', approvals.text).group(1)
    decided = post_form(client, "/approvals",
                        {"access_request": access_request_id, "decision": "approve", "note": "同意"})
    assert decided.status_code == 200 and "已批准" in decided.text and "血压随访" not in decided.text
    logout(client)

    login(client, "worker1")
    shown = post_form(client, f"/residents/{RESIDENT}/reveal", {"category": "health"}, True)
    assert shown.status_code == 200 and "高血压" in shown.text


def test_other_grid_worker_and_volunteer_cannot_open_anything(client: TestClient) -> None:
    for username in ("worker3", "volunteer1"):  # a resident they may not see is not found, as one that is not there
        login(client, username)
        response = post_form(client, f"/residents/{RESIDENT}/reveal", {"category": "contact", "purpose": "x"}, True)
        assert response.status_code == 404 and "10012345678" not in response.text
        logout(client)


def test_only_secretaries_see_approvals(client: TestClient) -> None:
    login(client, "worker1")
    assert client.get("/approvals").status_code == 403


def test_resident_sets_privacy_and_it_binds_the_grid_worker(client: TestClient, loaded: Couch) -> None:
    loaded.accounts.save(accounts.make_user("resident1", "居民11", [accounts.Role.RESIDENT], STREET,
                                            hashed(PASSWORD), resident=RESIDENT))
    login(client, "resident1")
    page = client.get(f"/residents/{RESIDENT}/privacy")
    assert page.status_code == 200 and 'value="secretary_only"' in page.text
    assert post_form(client, f"/residents/{RESIDENT}/privacy", {"contact": "nobody"}).status_code == 400
    saved = post_form(client, f"/residents/{RESIDENT}/privacy", {"contact": "secretary_only"})
    assert saved.status_code == 200 and "已保存" in saved.text
    own = post_form(client, f"/residents/{RESIDENT}/reveal", {"category": "contact", "purpose": "本人查看"}, True)
    assert "10012345678" in own.text
    logout(client)
    login(client, "worker1")
    refused = post_form(client, f"/residents/{RESIDENT}/reveal", {"category": "contact", "purpose": "x"})
    assert refused.status_code == 403 and "仅社区书记" in refused.text
    assert client.get(f"/residents/{G1}/privacy").status_code == 404


def test_search_by_phone_number_finds_the_household_through_the_blind_index(client: TestClient,
                                                                            loaded: Couch) -> None:
    login(client, "worker1")
    found = client.get(f"/grids/{G1}", params={"q": "100 1234 5678"}, headers={"HX-Request": "true"})
    assert found.status_code == 200
    assert "c1-g01路1号" in found.text and "c1-g01路2号" in found.text  # every test resident has that number
    nothing = client.get(f"/grids/{G1}", params={"q": "19999999999"}, headers={"HX-Request": "true"})
    assert "没有找到住户" in nothing.text
    searches = loaded.main.all(startkey="audit_entry:", endkey="audit_entry:\ufff0", as_list=True)
    assert {row["doc"]["action"] for row in searches} == {"search"}


def test_resident_sees_their_record_and_who_opened_it(client: TestClient, loaded: Couch) -> None:
    loaded.accounts.save(accounts.make_user("resident1", "居民11", [accounts.Role.RESIDENT], STREET,
                                            hashed(PASSWORD), resident=RESIDENT))
    login(client, "worker1")
    post_form(client, f"/residents/{RESIDENT}/reveal", {"category": "contact", "purpose": "routine_visit"}, True)
    logout(client)
    login(client, "resident1")
    home = client.get("/")
    assert home.status_code == 200 and "我的档案" in home.text and "张网格" in home.text and "日常走访" in home.text
    assert f"/residents/{RESIDENT}/privacy" in home.text
    other = post_form(client, "/residents/resident:c1-g02-0001-1/reveal", {"category": "contact", "purpose": "x"}, True)
    assert other.status_code == 404  # only their own record: another's is not found
