"""The gateway never answers with a document outside the caller's scope, refuses malformed protocol
requests with a clear 4xx (nothing stored), and authenticates gateways by device token."""

from __future__ import annotations

import json
import os
import subprocess

import httpx2
import pytest

from crypto.envelope import FieldContext, seal_for
from server.store.couch import bulk_save
from tests.sync_harness import (
    G1,
    LINLI,
    NOW,
    Street,
    household,
    login,
    shared_street_fixture,  # noqa: F401 - the fixture: one street and server for the module
    visit,
    within_principal_ttl,
)

SECRET_ADDRESS = "只有一网格知道的地址"


def _client(street: Street, username: str) -> tuple[httpx2.Client, str]:
    cookie, csrf = login(street.served.url, username)
    client = httpx2.Client(base_url=street.served.sync_url + "/", timeout=30,
                           headers={"Cookie": cookie, "X-CSRF-Token": csrf, "Accept": "application/json"})
    return client, csrf


def test_a_worker_of_another_grid_gets_nothing_from_any_endpoint(street: Street) -> None:
    target = street.couch.main.get("household:c1-g1-h001")
    target = {**target, "_rev": street.couch.main.save({**target, "address": SECRET_ADDRESS})["_rev"],
              "address": SECRET_ADDRESS}
    photo = {"photo.jpg": {"content_type": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}}
    bulk_save(street.couch.main, [household(G1, 500, _attachments=photo)])
    owner, _ = _client(street, "wangge01")
    intruder, _ = _client(street, "wangge02")
    with owner, intruder:
        owner.put("_local/checkpoint", json={"last_seq": "mine"})
        answers = [
            intruder.get("./household:c1-g1-h001"),
            intruder.get("./household:c1-g1-h001", params={"open_revs": "all"}),
            intruder.get("./household:c1-g1-h001", params={"rev": target["_rev"], "revs": "true"}),
            intruder.get("./household:c1-g1-h500/photo.jpg"),
            intruder.post("_bulk_get", params={"revs": "true"},
                          json={"docs": [{"id": "household:c1-g1-h001", "rev": target["_rev"]}]}),
            intruder.post("_revs_diff", json={"household:c1-g1-h001": [target["_rev"]]}),
            intruder.get("_changes", params={"since": "0", "include_docs": "true", "style": "all_docs"}),
            intruder.post("_changes", params={"filter": "_doc_ids", "include_docs": "true"},
                          json={"doc_ids": ["household:c1-g1-h001"]}),
            intruder.get("_changes", params={"feed": "continuous", "since": "0", "include_docs": "true",
                                             "timeout": "500"}),
            intruder.get("_changes", params={"feed": "longpoll", "since": "now", "timeout": "500"}),
            intruder.get("_local/checkpoint"),
            intruder.get("_linli_conflicts"),
            intruder.get("_all_docs"),
        ]
        for answer in answers:
            assert answer.status_code < 500
            assert SECRET_ADDRESS not in answer.text and "c1-g1-h5" not in answer.text.replace(
                "household:c1-g1-h500/photo.jpg", "")
        assert answers[0].status_code == 404 and answers[3].status_code == 404
        assert answers[1].json() == [{"missing": target["_rev"]}]
        assert answers[4].json()["results"][0]["docs"][0]["error"]["error"] == "not_found"
        assert answers[5].json() == {"household:c1-g1-h001": {"missing": [target["_rev"]]}}  # as if unknown
        assert not any("c1-g1" in r["id"] for r in answers[6].json()["results"])
        assert answers[7].json()["results"] == []
        assert answers[10].status_code == 404  # another user's checkpoint cannot be named
        # Their own checkpoint of the same name is theirs alone; the owner's stays as it was.
        assert intruder.put("_local/checkpoint", json={"last_seq": "theirs"}).status_code == 201
        assert owner.get("_local/checkpoint").json()["last_seq"] == "mine"
        # Writing into the other grid is refused per document, and says nothing about its content.
        refused = intruder.post("_bulk_docs", json={"docs": [{**target, "address": "x"}]}).json()
        assert refused[0]["error"] == "forbidden" and SECRET_ADDRESS not in json.dumps(refused)
        assert street.couch.main.get("household:c1-g1-h001")["address"] == SECRET_ADDRESS
        # Deleting is writing: a phone deletes only what it may write. The owner deletes a visit of their own (the
        # control), not their grid (server-only); the intruder not the other grid's household.
        mine = owner.post("_bulk_docs", json={"docs": [visit(G1, 1, "user:wangge01")]}).json()[0]
        deleted = owner.post("_bulk_docs", json={"docs": [{"_id": mine["id"], "_rev": mine["rev"],
                                                           "_deleted": True}]}).json()
        assert "error" not in deleted[0], deleted
        grid = street.couch.main.get(G1)
        for phone, doc in ((owner, grid), (intruder, target)):
            refused = phone.post("_bulk_docs", json={"docs": [{"_id": doc["_id"], "_rev": doc["_rev"],
                                                               "_deleted": True}]}).json()
            assert refused[0].get("error") == "forbidden", refused
        assert street.couch.main.get(G1) == grid and street.couch.main.get(target["_id"])["address"] == SECRET_ADDRESS


MALFORMED = [
    ("POST", "_bulk_docs", {"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400),
    ("POST", "_bulk_docs", {"content": b"{}", "headers": {"Content-Type": "text/plain"}}, 415),
    ("POST", "_bulk_docs", {"json": []}, 400),
    ("POST", "_bulk_docs", {"json": {"docs": "household:x"}}, 400),
    ("POST", "_bulk_docs", {"json": {"docs": [], "new_edits": "no"}}, 400),
    ("POST", "_bulk_docs", {"json": {"docs": [], "all_or_nothing": True}}, 400),
    ("POST", "_revs_diff", {"json": {"household:c1-g1-h001": "1-abc"}}, 400),
    ("POST", "_bulk_get", {"json": {"docs": [{"rev": "1-abc"}]}}, 400),
    ("POST", "_bulk_get", {"json": {"docs": "all"}}, 400),
    ("GET", "_changes?since=yesterday", {}, 400),
    ("GET", "_changes?limit=-1", {}, 400),
    ("GET", "_changes?feed=firehose", {}, 400),
    ("GET", "_changes?style=everything", {}, 400),
    ("GET", "_changes?filter=linli/mine", {}, 400),
    ("GET", "_changes?heartbeat=often", {}, 400),
    ("GET", "_changes?include_docs=yes", {}, 400),
    ("POST", "_changes?filter=_doc_ids", {"json": {"doc_ids": [1, 2]}}, 400),
    ("PUT", "_local/x", {"json": ["not", "an", "object"]}, 400),
    ("POST", "_linli_purges", {"json": {"ids": "household:c1-g1-h001"}}, 400),
    ("GET", "_all_docs", {}, 404),
    ("PUT", "./household:c1-g1-h001", {"json": {}}, 404),
    ("DELETE", "", {}, 404),
    ("GET", "../other_db/", {}, 404),
]


def test_malformed_requests_get_a_clear_4xx_and_store_nothing(street: Street) -> None:
    before = street.couch.main.config()["update_seq"]
    client, _ = _client(street, "wangge01")
    with client:
        for method, path, kwargs, status in MALFORMED:
            answer = client.request(method, path, **kwargs)
            assert answer.status_code == status, (method, path, answer.status_code, answer.text)
            body = answer.json()
            assert body["error"] and body["reason"], (method, path, body)
        bad_docs = client.post("_bulk_docs", json={"new_edits": False, "docs": [
            {"_id": "household:c1-g1-h900", "type": "household"},  # no _rev
            {**household(G1, 901), "_rev": "zz"},
            {**household(G1, 902), "_rev": "1-abc", "_revisions": {"start": 1, "ids": ["def"]}},
            {**household(G1, 903), "_rev": "1-abc", "_surprise": 1},
            "not a document",
        ]})
        assert bad_docs.status_code == 201 and [r["error"] for r in bad_docs.json()] == ["forbidden"] * 5
        no_csrf = httpx2.post(street.served.sync_url + "/_bulk_docs", json={"docs": []},
                              headers={"Cookie": client.headers["Cookie"], "Accept": "application/json"})
        assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["reason"]
        anonymous = httpx2.get(street.served.sync_url + "/_changes")
        assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
    assert street.couch.main.config()["update_seq"] == before  # nothing stored


def _token(street: Street, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LINLI, "device-token", *args], env={**os.environ, **street.served.env},
                          capture_output=True, text=True)


@pytest.mark.timeout(120)
def test_a_ble_gateway_token_sees_its_devices_only_and_can_only_report(street: Street) -> None:
    firewall = street.firewall()
    resident = "resident:c1-g1-h001-1"
    street.couch.main.save(firewall.keystore.new_data_key_doc(street.couch.main.get(resident)))
    public, version = firewall.keystore.write_public_key(resident)
    issued = _token(street, "issue", "gw1", "--label", "活动室")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip().splitlines()[-1]
    stored = street.couch.accounts.get("device_token:" + token[3:].split(".")[0])
    assert token.split(".")[1] not in json.dumps(stored)  # only its hash is kept
    gateway = httpx2.Client(base_url=street.served.sync_url + "/", headers={"Authorization": f"Bearer {token}"})
    with gateway:
        seen = {r["id"] for r in gateway.get("_changes", params={"since": "0"}).json()["results"]}
        # Its configuration, its devices (not the other grid's), and the public names of where it stands.
        assert seen == {"gateway:gw1", "device:c1-g1-wb", "street:s1", "community:c1", G1}
        reading = {"_id": "reading:c1-g1-wb-1", "type": "reading", "street": "street:s1", "community": "community:c1",
                   "grid": G1, "device": "device:c1-g1-wb", "resident": resident,
                   "measured_at": NOW, "metric": "heart_rate",
                   # sealed for the resident's write key, as the gateway does (tests/test_ciphertext_on_write.py)
                   "value": seal_for(public, version, FieldContext("reading:c1-g1-wb-1", "value", "core"), 72.0)}
        answers = gateway.post("_bulk_docs", json={"docs": [reading, household(G1, 990)]}).json()
        assert "rev" in answers[0], answers  # no CSRF header needed with a token
        assert answers[1]["error"] == "forbidden"
        assert gateway.get("./reading:c1-g1-wb-1").status_code == 404  # write-only for the gateway
    assert _token(street, "revoke", token).returncode == 0
    within_principal_ttl(lambda: httpx2.get(street.served.sync_url + "/_changes",
                                            headers={"Authorization": f"Bearer {token}"}).status_code == 401)


def test_bulk_get_never_tells_a_hidden_document_from_an_unknown_one(street: Street) -> None:
    """Finding 14 (issue 13): a hidden document's answer once carried its current _rev, an unknown one's was {}."""
    hidden = street.couch.main.get("household:c1-g1-h001")
    intruder, _ = _client(street, "wangge02")
    with intruder:
        for rev in ({}, {"rev": hidden["_rev"]}):
            answers = [intruder.post("_bulk_get", params={"revs": "true"}, json={"docs": [{"id": doc_id, **rev}]})
                       .json()["results"][0]["docs"] for doc_id in ("household:c1-g1-h001", "household:c1-g1-h999")]
            assert answers[0] == [{"error": {"id": "household:c1-g1-h001", "rev": rev.get("rev", "undefined"),
                                             "error": "not_found", "reason": "missing"}}]
            assert json.dumps(answers[0]).replace("h001", "h999") == json.dumps(answers[1])
        mine = intruder.post("_bulk_get", json={"docs": [{"id": "household:c1-g2-h001"}]}).json()
        assert mine["results"][0]["docs"][0]["ok"]["_id"] == "household:c1-g2-h001"  # visible ones still come


def test_bulk_get_with_one_id_twice(street: Street) -> None:
    """Finding 15 (issue 13): pouchdb-server answers once per id, and the gateway matched answers by position."""
    client, _ = _client(street, "wangge01")
    rev = street.couch.main.get("household:c1-g1-h001")["_rev"]
    with client:
        for docs in ([{"id": "household:c1-g1-h001"}] * 2, [{"id": "household:c1-g1-h001", "rev": rev}] * 2,
                     [{"id": "household:c1-g1-h001"}, {"id": "household:c1-g1-h002"},
                      {"id": "household:c1-g1-h001", "rev": rev}]):
            answer = client.post("_bulk_get", json={"docs": docs})
            assert answer.status_code == 200, answer.text
            results = answer.json()["results"]
            assert [r["id"] for r in results] == [d["id"] for d in docs]
            assert all(entry["ok"]["_id"] == r["id"] for r in results for entry in r["docs"])


def test_a_bearer_header_never_lends_a_cookie_session_csrf_exemption(street: Street) -> None:
    """Finding 11 (issue 13): any `Authorization: Bearer` header skipped the CSRF check, on a cookie session too.
    A request with a token is judged by the token alone: the cookie beside it is not honoured anywhere."""
    cookie, _ = login(street.served.url, "wangge01")
    issued = _token(street, "issue", "gw1", "--label", "活动室")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip().splitlines()[-1]
    reveal = "/residents/resident:c1-g1-h001-1/reveal"
    form = {"category": "contact", "purpose": "routine_visit"}
    before = street.couch.main.config()["update_seq"]
    with httpx2.Client(base_url=street.served.url, timeout=30, follow_redirects=False) as web:
        for bearer in ("Bearer nonsense", f"Bearer {token}"):
            forged = web.post(reveal, data=form, headers={"Cookie": cookie, "Authorization": bearer})
            assert forged.status_code == 303 and forged.headers["location"].startswith("/login"), forged.text[:300]
        assert web.post(reveal, data=form, headers={"Cookie": cookie}).status_code == 403  # no CSRF token
        bogus = web.post(street.served.sync_url + "/_bulk_docs", json={"docs": [household(G1, 950)]},
                         headers={"Cookie": cookie, "Authorization": "Bearer nonsense", "Accept": "application/json"})
        assert bogus.status_code == 401
        # A valid token beside the cookie acts as the token's user, without a CSRF token.
        both = {"Cookie": cookie, "Authorization": f"Bearer {token}"}
        assert web.get("/sync/_session", headers=both).json()["userCtx"]["name"] == "user:gw1"
        assert web.post(street.served.sync_url + "/_bulk_docs", json={"docs": [household(G1, 951)]},
                        headers=both).json()[0]["error"] == "forbidden"  # the gateway's rights, not the worker's
    assert street.couch.main.config()["update_seq"] == before
