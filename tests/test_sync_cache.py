"""The gateway's per-process caches never widen what anyone sees: the principal cache honours a
deactivation and a move within its bound, the revisions cache answers only through `may_see`,
and the live fan-out index offers every document to everyone who may see it."""

from __future__ import annotations

import itertools

import httpx2

from server.domain.access import RULES, Principal, may_see
from server.domain.declaration import Role
from sync.hub import ChangesHub
from tests.sync_harness import (
    C1,
    G1,
    G2,
    STREET,
    Street,
    login,
    shared_street_fixture,  # noqa: F401 - the fixture: one street and server for the module
    within_principal_ttl,
)


def _client(street: Street, username: str) -> httpx2.Client:
    cookie, csrf = login(street.served.url, username)
    return httpx2.Client(base_url=street.served.sync_url + "/", timeout=30,
                         headers={"Cookie": cookie, "X-CSRF-Token": csrf, "Accept": "application/json"})


def _changed_ids(client: httpx2.Client) -> set[str]:
    return {row["id"] for row in client.get("_changes", params={"since": "0"}).json()["results"]}


def test_a_deactivated_user_is_refused_within_the_bound(street: Street) -> None:
    worker = street.new_user("wangge01")  # deactivated: the module's other tests keep wangge01
    with _client(street, worker) as client:
        assert "household:c1-g1-h001" in _changed_ids(client)
        user = street.couch.accounts.get(f"user:{worker}")
        street.couch.accounts.save({**user, "active": False})
        within_principal_ttl(lambda: client.get("_changes", params={"since": "0"}).status_code == 401)


def test_cached_revisions_reach_only_those_who_may_see_them(street: Street) -> None:
    moved = street.new_user("wangge01")  # moved to the other grid: the module's other tests keep wangge01
    with _client(street, moved) as owner, _client(street, "wangge02") as other:
        feed = owner.get("_changes", params={"since": "0", "style": "all_docs"}).json()["results"]
        wanted = [{"id": row["id"], "rev": row["changes"][0]["rev"]} for row in feed if "c1-g1-" in row["id"]]
        assert len(wanted) >= 40
        # The owner's answer comes from the revisions its _changes just read, identical to CouchDB's own.
        mine = owner.post("_bulk_get", params={"revs": "true", "latest": "true"}, json={"docs": wanted}).json()
        direct = httpx2.post(f"{street.couch_url}{street.couch.main.name}/_bulk_get", params={"revs": "true"},
                             json={"docs": wanted}).json()
        assert mine["results"] == direct["results"]
        # The same revisions, asked for by a worker of the other grid: nothing.
        theirs = other.post("_bulk_get", params={"revs": "true"}, json={"docs": wanted}).json()["results"]
        assert all(entry["docs"][0]["error"]["error"] == "not_found" for entry in theirs)
        # The owner moved to the other grid loses them within the bound, cached or not.
        user = street.couch.accounts.get(f"user:{moved}")
        street.couch.accounts.save({**user, "grids": [G2]})
        within_principal_ttl(lambda: all(
            "error" in entry["docs"][0] for entry in owner.post(
                "_bulk_get", params={"revs": "true"}, json={"docs": wanted}).json()["results"]))


PRINCIPALS = [
    Principal("user:admin", frozenset({Role.ADMIN}), STREET),
    Principal("user:shuji", frozenset({Role.SECRETARY}), STREET, frozenset({C1})),
    Principal("user:wangge", frozenset({Role.GRID_WORKER}), STREET, frozenset({C1}), frozenset({G1})),
    Principal("user:zhiyuan", frozenset({Role.VOLUNTEER}), STREET, frozenset({C1}), frozenset({G1})),
    Principal("user:bumen", frozenset({Role.DEPARTMENT_STAFF}), STREET, department="department:health"),
    Principal("user:jumin", frozenset({Role.RESIDENT}), STREET, resident="resident:r1"),
    Principal("user:gw", frozenset({Role.GATEWAY}), STREET, frozenset({C1}), frozenset({G1}), gateway="gateway:gw"),
    Principal("user:elsewhere", frozenset({Role.ADMIN}), "street:other"),
]


def _documents() -> list[dict[str, object]]:
    """Every type with a read rule, naming each principal's names in turn (and nobody)."""
    namings = [{}, {"community": C1}, {"grid": G1, "community": C1}, {"volunteers": ["user:zhiyuan"]},
               {"assigned_to": "user:zhiyuan"}, {"created_by": "user:wangge"}, {"resident": "resident:r1"},
               {"target": "resident:r1"}, {"departments": ["department:health"]},
               {"department": "department:health"}, {"gateway": "gateway:gw"},
               {"requester": "user:wangge"}, {"user": "user:zhiyuan"}, {"visibility": "grid_worker_only",
                                                                        "grid": G1}]
    ids = ["x:1", C1, G1, "resident:r1", "gateway:gw"]
    return [{"_id": doc_id, "type": doc_type, "street": STREET, **naming}
            for doc_type, naming, doc_id in itertools.product(RULES, namings, ids)]


def test_the_fan_out_index_offers_every_document_to_everyone_who_may_see_it() -> None:
    hub = ChangesHub(upstream=None)  # type: ignore[arg-type] - the index needs no CouchDB
    for p in PRINCIPALS:
        hub.subscribe(p)
    offered = 0
    for doc in _documents():
        audience = {s.principal for s in hub.audience(doc)}
        assert audience == {p for p in PRINCIPALS if may_see(p, doc)}, doc
        offered += len(audience)
    assert offered > 0
