"""Household editing and the conflict screen, against a real pouchdb-server.

Conflicts are made as phones make them: two branches written with new_edits=false through `_bulk_docs`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import uuid

import pytest
from starlette.testclient import TestClient

from server.domain.access import Principal
from server.domain.i18n import translator
from server.security.firewall import Firewall
from server.store import couch as store
from server.store.config import Settings
from server.store.couch import Couch, view_built
from server.store.embedded_couch import EmbeddedCouch
from sync import merge
from sync.upstream import Upstream

from .street import C1, G1, STREET, csrf_of, login

HOUSEHOLD = "household:c1-g01-0001"
RESIDENT = "resident:c1-g01-0001-1"

ZH = translator("zh")  # errors show in the page's language, next to their field


def switch_to(client: TestClient, username: str) -> None:
    client.post("/logout", data={"csrf_token": csrf_of(client)})
    login(client, username)


def make_conflict(couch: Couch, doc_id: str, *changes: dict) -> list[str]:
    """One branch per `changes` on top of the stored revision, written as replication writes them."""
    current = couch.main.get(doc_id)
    depth, parent = current["_rev"].split("-")
    branches = []
    for change in changes:
        rev_hash = uuid.uuid4().hex
        body = {k: v for k, v in {**current, **change}.items() if v is not None}
        branches.append({**body, "_rev": f"{int(depth) + 1}-{rev_hash}",
                         "_revisions": {"start": int(depth) + 1, "ids": [rev_hash, parent]}})
    write(couch, branches)
    return [b["_rev"] for b in branches]


def write(couch: Couch, docs: list[dict]) -> None:
    response, answer = couch.main.resource._request_response(
        "POST", "_bulk_docs", data=json.dumps({"docs": docs, "new_edits": False}).encode(),
        headers={"Content-Type": "application/json"})
    assert response.status_code == 201 and answer == [], answer


def leaves(couch: Couch, doc_id: str) -> list[dict]:
    """The document's live (not deleted) leaf revisions."""
    return [a["ok"] for a in couch.main.get(doc_id, open_revs="all") if not a["ok"].get("_deleted")]


def form_of(page: str) -> dict[str, list[str]]:
    """The conflict form's hidden revisions and each radio group's checked value, as a browser would send."""
    data: dict[str, list[str]] = {"_rev": re.findall(r'name="_rev" value="([^"]+)"', page),
                                  "_conflicts": re.findall(r'name="_conflicts" value="([^"]+)"', page)}
    for name, value in re.findall(r'<input type="radio" name="([^"]+)" value="([^"]+)" checked>', page):
        data[name] = [value]
    return data


def resolve(client: TestClient, doc_id: str, form: dict[str, list[str]], **choices: str):
    data = {**form, **{name: [rev] for name, rev in choices.items()}, "csrf_token": [csrf_of(client, "/conflicts")]}
    return client.post(f"/conflicts/{doc_id}", data=data)


ROOM_AND_TAGS = ({"room": "101", "tags": ["veteran"], "updated_by": "user:worker1",
                  "updated_at": "2026-11-21T09:00:00+08:00"},
                 {"room": "202", "building": "3", "tags": ["low_income", "empty_nest"], "updated_by": "user:secretary1",
                  "updated_at": "2026-11-21T10:00:00+08:00"})


def test_the_list_shows_a_conflict_to_the_grids_worker_and_not_to_another_grids(client: TestClient,
                                                                                 loaded: Couch) -> None:
    make_conflict(loaded, HOUSEHOLD, *ROOM_AND_TAGS)
    login(client, "worker1")
    page = client.get("/conflicts")
    assert page.status_code == 200
    assert "住户 · c1-g01路1号" in page.text and "2 个版本" in page.text
    assert f'href="/conflicts/{HOUSEHOLD.replace(":", "%3A")}"' in page.text
    assert 'href="/conflicts"' in page.text  # the navigation link
    switch_to(client, "worker3")
    other = client.get("/conflicts")
    assert "c1-g01路1号" not in other.text and "没有需要处理的冲突" in other.text
    assert client.get(f"/conflicts/{HOUSEHOLD}").status_code == 404  # as if there were none


def test_the_list_says_it_is_being_prepared_while_its_index_is_built(
        client: TestClient, loaded: Couch, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a fresh demo the conflicts index is built behind the others for a minute or more: the first /conflicts
    answered a proxy's 502 then. Now the page says so and offers to try again; once built, it lists."""
    make_conflict(loaded, HOUSEHOLD, *ROOM_AND_TAGS)
    login(client, "worker1")
    monkeypatch.setattr(store, "INDEX_WAIT_SECONDS", 0)  # no index is built in no time
    page = client.get("/conflicts")
    assert page.status_code == 202
    assert ZH("conflicts_preparing") in page.text and 'href="/conflicts">再试一次' in page.text
    assert "c1-g01路1号" not in page.text and ZH("no_conflicts") not in page.text  # not "none": not known yet
    view_built(loaded.main, "conflicts").result(timeout=60)
    listed = client.get("/conflicts")
    assert listed.status_code == 200 and "住户 · c1-g01路1号" in listed.text


def test_the_gateway_says_the_conflicts_are_being_prepared_while_their_index_is_built(
        loaded: Couch, settings: Settings, couch_server: EmbeddedCouch, monkeypatch: pytest.MonkeyPatch) -> None:
    """A phone's first sync on a fresh demo asked `_linli_conflicts` while the index was built and got a 502
    (the gateway's HTTP client gave up): now "preparing", and the phone keeps its count (pwa/sw.js)."""
    make_conflict(loaded, HOUSEHOLD, *ROOM_AND_TAGS)
    worker = Principal.of(loaded.accounts.get("user:worker1"))

    async def ask() -> list[dict] | None:
        upstream = Upstream(settings, couch_server.url)
        try:
            return await merge.conflicts_for(upstream, worker)
        finally:
            await upstream.http.aclose()

    monkeypatch.setattr(merge, "INDEX_WAIT_SECONDS", 0)
    assert asyncio.run(ask()) is None
    monkeypatch.undo()
    assert [c["id"] for c in asyncio.run(ask()) or []] == [HOUSEHOLD]


def test_a_branch_the_user_may_not_see_hides_the_conflict(client: TestClient, loaded: Couch) -> None:
    """A volunteer assigned on one branch only does not see the other branch, so not the conflict either."""
    make_conflict(loaded, HOUSEHOLD, {"volunteers": ["user:volunteer1"], "room": "1"}, {"room": "2"})
    login(client, "volunteer1")
    assert "c1-g01路1号" not in client.get("/conflicts").text
    assert client.get(f"/conflicts/{HOUSEHOLD}").status_code == 404
    switch_to(client, "worker1")
    assert "c1-g01路1号" in client.get("/conflicts").text


def test_the_detail_shows_only_the_differing_fields(client: TestClient, loaded: Couch) -> None:
    revs = make_conflict(loaded, HOUSEHOLD, *ROOM_AND_TAGS)
    winner = loaded.main.get(HOUSEHOLD)["_rev"]
    login(client, "worker1")
    page = client.get(f"/conflicts/{HOUSEHOLD}")
    assert page.status_code == 200
    radios = set(re.findall(r'<input type="radio" name="([^"]+)"', page.text))
    assert radios == {"room", "building", "tags"}  # not address, member_count, head, nor updated_at/updated_by
    assert "房号" in page.text and "楼栋" in page.text and "退役军人" in page.text and "空巢" in page.text
    assert "张网格" in page.text and "王书记" in page.text  # the editors, by display name
    assert "2026-11-21 10:00" in page.text and "（未登记）" in page.text  # an edit time; a building not recorded
    form = form_of(page.text)
    assert form["_rev"] == [winner] and set(form["_rev"] + form["_conflicts"]) == set(revs)
    assert form["room"] == form["tags"] == form["building"] == [winner]  # the current version is the default


def test_resolving_with_a_mixed_choice_leaves_one_leaf_with_the_chosen_values(client: TestClient,
                                                                             loaded: Couch) -> None:
    make_conflict(loaded, HOUSEHOLD, *ROOM_AND_TAGS)
    by_rev = {b["_rev"]: b for b in leaves(loaded, HOUSEHOLD)}
    winner = loaded.main.get(HOUSEHOLD)["_rev"]
    [loser] = set(by_rev) - {winner}
    login(client, "worker1")
    form = form_of(client.get(f"/conflicts/{HOUSEHOLD}").text)
    answer = resolve(client, HOUSEHOLD, form, room=loser, tags=winner, building=loser)
    assert answer.status_code == 303 and answer.headers["location"] == "/conflicts?resolved=1"
    [merged] = leaves(loaded, HOUSEHOLD)
    assert merged["room"] == by_rev[loser]["room"] and merged["tags"] == by_rev[winner]["tags"]
    assert merged.get("building") == by_rev[loser].get("building")
    assert merged["address"] == "c1-g01路1号" and merged["updated_by"] == "user:worker1"
    assert "_conflicts" not in loaded.main.get(HOUSEHOLD, conflicts="true")
    done = client.get("/conflicts?resolved=1")
    assert "冲突已解决" in done.text and "c1-g01路1号" not in done.text
    # Submitting the same form again is refused: those revisions are no longer the document's leaves.
    assert resolve(client, HOUSEHOLD, form, room=loser).status_code == 409


def test_revisions_changed_meanwhile_are_refused(client: TestClient, loaded: Couch) -> None:
    make_conflict(loaded, HOUSEHOLD, *ROOM_AND_TAGS)
    login(client, "worker1")
    form = form_of(client.get(f"/conflicts/{HOUSEHOLD}").text)
    # A phone syncs a further edit of the current version while the page is open.
    make_conflict(loaded, HOUSEHOLD, {"room": "303"})
    now = {b["_rev"] for b in leaves(loaded, HOUSEHOLD)}
    assert now != set(form["_rev"] + form["_conflicts"])
    refused = resolve(client, HOUSEHOLD, form)
    assert refused.status_code == 409 and "刚被别人修改过" in refused.text
    assert {b["_rev"] for b in leaves(loaded, HOUSEHOLD)} == now and len(now) == 2
    assert "303" in refused.text  # the page shows the versions as they are now


def test_a_resolution_must_choose_a_version_of_each_field(client: TestClient, loaded: Couch) -> None:
    make_conflict(loaded, HOUSEHOLD, *ROOM_AND_TAGS)
    login(client, "worker1")
    form = form_of(client.get(f"/conflicts/{HOUSEHOLD}").text)
    refused = resolve(client, HOUSEHOLD, form, room="9-nope")
    assert refused.status_code == 400  # said next to the field left unchosen
    assert f'id="error-room">{ZH("err_choose_version")}<' in refused.text
    assert len(leaves(loaded, HOUSEHOLD)) == 2


def test_a_volunteer_sees_but_may_not_resolve(client: TestClient, loaded: Couch) -> None:
    make_conflict(loaded, HOUSEHOLD, {"volunteers": ["user:volunteer1"], "room": "1"},
                  {"volunteers": ["user:volunteer1"], "room": "2"})
    login(client, "volunteer1")
    page = client.get(f"/conflicts/{HOUSEHOLD}")
    assert page.status_code == 200 and "无权修改这份记录" in page.text and 'type="submit">保存合并结果' not in page.text
    refused = resolve(client, HOUSEHOLD, form_of(page.text))
    assert refused.status_code == 403 and len(leaves(loaded, HOUSEHOLD)) == 2


def test_a_value_another_person_set_on_the_other_branch_may_be_kept(client: TestClient, loaded: Couch) -> None:
    """Two people acknowledged one alert offline: keeping the other one's name is no forgery (it is stored already);
    the write rule judges only what the resolution itself sets (issue 13, finding 5: author fields)."""
    loaded.main.save({"_id": "alert:c1-sos", "type": "alert", "street": STREET, "community": C1, "grid": G1,
                      "household": HOUSEHOLD, "resident": RESIDENT, "kind": "sos", "status": "raised",
                      "raised_at": "2026-11-21T08:00:00+08:00"})
    make_conflict(loaded, "alert:c1-sos", *({"status": "acknowledged", "acknowledged_by": who,
                                             "acknowledged_at": f"2026-11-21T08:0{n}:00+08:00"}
                                            for n, who in enumerate(("user:worker1", "user:worker2"), 1)))
    winner = loaded.main.get("alert:c1-sos")["_rev"]
    [loser] = [b for b in leaves(loaded, "alert:c1-sos") if b["_rev"] != winner]
    login(client, "secretary1")  # resolves, keeping the acknowledgement of the losing branch: neither is hers
    form = form_of(client.get("/conflicts/alert:c1-sos").text)
    answer = resolve(client, "alert:c1-sos", form, acknowledged_by=loser["_rev"], acknowledged_at=loser["_rev"])
    assert answer.status_code == 303, answer.text
    [merged] = leaves(loaded, "alert:c1-sos")
    assert merged["acknowledged_by"] == loser["acknowledged_by"]


def test_protected_fields_are_chosen_without_being_shown(client: TestClient, loaded: Couch,
                                                        firewall: Firewall) -> None:
    stored = loaded.main.get(RESIDENT)
    sealed = {phone: next(d for d in firewall.seal_for_storage([{**stored, "phone": phone}]) if d["_id"] == RESIDENT)
              for phone in ("13900000001", "13900000002")}
    one, two = ({"phone": sealed[n]["phone"]} for n in sealed)  # sealing indexed ...02 last
    make_conflict(loaded, RESIDENT, {**one, "living_alone": False}, two)
    login(client, "worker1")
    page = client.get(f"/conflicts/{RESIDENT}")
    assert page.status_code == 200
    assert "加密内容，各版本不同" in page.text and "手机号" in page.text
    radios = set(re.findall(r'<input type="radio" name="([^"]+)"', page.text))
    assert radios == {"phone", "living_alone"}
    for secret in ("13900000001", "13900000002", "10012345678", "enc:"):
        assert secret not in page.text
    versions = {b["phone"]: b["_rev"] for b in leaves(loaded, RESIDENT)}
    winner = loaded.main.get(RESIDENT)  # living_alone is left at its default: the current version's
    chosen = versions[sealed["13900000001"]["phone"]]
    assert resolve(client, RESIDENT, form_of(page.text), phone=chosen).status_code == 303
    [merged] = leaves(loaded, RESIDENT)
    assert merged["phone"] == sealed["13900000001"]["phone"]  # the envelope moved as it was
    assert merged["living_alone"] is winner["living_alone"]
    shown = client.post(f"/residents/{RESIDENT}/reveal", headers={"HX-Request": "true"},
                        data={"category": "contact", "purpose": "routine_visit", "csrf_token": csrf_of(client)})
    assert "13900000001" in shown.text
    # The search index (server-only) follows the number kept, not the one indexed last.
    worker, grid = Principal.of(loaded.accounts.get("user:worker1")), loaded.main.get(merged["grid"])
    found = {n: firewall.find_by_number(worker, grid, n, device="t", now=dt.datetime.now(dt.UTC))
             for n in sealed}
    assert [r["_id"] for r in found["13900000001"]] == [RESIDENT] and found["13900000002"] == []


# ---------------------------------------------------------------- household editing

def edit(client: TestClient, form: dict, household: str = HOUSEHOLD):
    return client.post(f"/households/{household}/edit", data={**form, "csrf_token": csrf_of(client)})


def test_a_grid_worker_edits_a_household(client: TestClient, loaded: Couch) -> None:
    login(client, "worker1")
    page = client.get(f"/households/{HOUSEHOLD}")
    assert f'href="/households/{HOUSEHOLD}/edit"' in page.text and "编辑住户" in page.text
    form = client.get(f"/households/{HOUSEHOLD}/edit")
    assert form.status_code == 200 and 'value="c1-g01路1号"' in form.text
    rev = re.search(r'name="_rev" value="([^"]+)"', form.text).group(1)
    saved = edit(client, {"_rev": rev, "address": " c1-g01路1号 ", "building": "5", "unit": "", "room": "302",
                          "housing": "rented", "tags": ["elderly_alone", "veteran"]})
    assert saved.status_code == 303 and saved.headers["location"] == f"/households/{HOUSEHOLD}"
    doc = loaded.main.get(HOUSEHOLD)
    assert (doc["address"], doc["building"], doc["room"], doc["housing"]) == ("c1-g01路1号", "5", "302", "rented")
    assert doc["tags"] == ["elderly_alone", "veteran"] and "unit" not in doc
    assert doc["updated_by"] == "user:worker1" and doc["updated_at"] and doc["head"] == "resident:c1-g01-0001-1"
    assert "退役军人" in client.get(f"/households/{HOUSEHOLD}").text


def test_an_invalid_edit_names_the_field_and_stores_nothing(client: TestClient, loaded: Couch) -> None:
    before = loaded.main.get(HOUSEHOLD)
    login(client, "worker1")
    bad = edit(client, {"_rev": before["_rev"], "address": "", "room": "9" * 30, "housing": "castle",
                        "tags": ["veteran"]})
    assert bad.status_code == 400
    assert ZH("err_required") in bad.text and ZH("err_too_long", max=20) in bad.text and "“castle”" in bad.text
    assert 'value="999' in bad.text and 'value="veteran" checked' in bad.text  # what was typed is kept
    assert loaded.main.get(HOUSEHOLD) == before


def test_an_edit_over_a_change_made_meanwhile_is_refused(client: TestClient, loaded: Couch) -> None:
    login(client, "worker1")
    rev = re.search(r'name="_rev" value="([^"]+)"', client.get(f"/households/{HOUSEHOLD}/edit").text).group(1)
    meanwhile = loaded.main.save({**loaded.main.get(HOUSEHOLD), "room": "by someone else"})
    stale = edit(client, {"_rev": rev, "address": "c1-g01路1号", "room": "mine"})
    assert stale.status_code == 409 and "刚被别人修改过" in stale.text
    assert loaded.main.get(HOUSEHOLD) == meanwhile


def test_who_may_edit_a_household(client: TestClient, loaded: Couch) -> None:
    before = loaded.main.get(HOUSEHOLD)
    login(client, "worker3")  # another grid's worker: no such household, as far as they can tell
    assert client.get(f"/households/{HOUSEHOLD}/edit").status_code == 404
    assert edit(client, {"_rev": before["_rev"], "address": "x"}).status_code == 404
    switch_to(client, "volunteer1")  # not assigned to it: not found either
    assert client.get(f"/households/{HOUSEHOLD}/edit").status_code == 404
    assert loaded.main.get(HOUSEHOLD) == before
    switch_to(client, "secretary1")  # the community's secretary may
    assert client.get(f"/households/{HOUSEHOLD}/edit").status_code == 200
    assert client.get("/households/household:nope/edit").status_code == 404
