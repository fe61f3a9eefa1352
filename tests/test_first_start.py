"""First start (issue 19 item 1): after `linli serve` prints its URL no page or sync waits for an index, and a phone
that syncs while the remaining index is still being built ends with exactly its scope."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from collections import Counter
from collections.abc import Iterator

import httpx2
import pytest

from server.security.firewall import Firewall
from server.security.keystore import INSTALLATION_KEY_ID
from server.services import demo
from server.store import embedded_couch, views
from server.store.couch import Couch, bulk_save, connect
from server.store.embedded_couch import EmbeddedCouch, free_port
from tests.conftest import make_settings
from tests.first_pages import FIRST_PAGES, open_first_pages
from tests.street import hashed
from tests.sync_harness import G2, Street, seed, serve, stop, visible_ids, visit
from tests.test_serve import Served, demo_password

# Generous for a loaded CI machine: a built index answers a page in well under a second; building one on demand
# is a pass over every document (tens of seconds on the served demo under load), and is counted apart anyway.
PAGE_SECONDS = 15


@pytest.mark.right_after_start
def test_every_roles_first_pages_answer_right_after_the_url_without_waiting_for_an_index(
        journey_served: Served) -> None:
    """The journeys' server, before any journey (first of all tests, whatever the order): each role's first pages,
    timed, none "preparing", and the server counted no request that found an index still being built, nor read one
    it did not build before its URL."""
    health = journey_served.url + "healthz"
    read_before = set(httpx2.get(health, timeout=30).json()["parts"]["views"]["read_by_requests"])
    answers = open_first_pages(journey_served.url, demo_password(journey_served.data_dir))
    assert [(a.username, a.path) for a in answers] == [(u, p) for u, paths in FIRST_PAGES.items() for p in paths]
    for a in answers:
        assert a.status == 200 and a.seconds < PAGE_SECONDS, a
    homes = {a.username: a.final_path for a in answers if a.path == "/"}
    assert homes == {"shuji1": "/today", "admin": "/communities", "wangge01": "/grids/grid:c1-g01",
                     "zhiyuan01a": "/tasks", "bumen_urban_management": "/workbench", "hezuo1": "/redeem"}
    views = httpx2.get(health, timeout=30).json()["parts"]["views"]
    assert views["first_pages"] and views["waited_for"] == {}, views
    assert set(views["read_by_requests"]) - read_before <= set(views["built_before_url"]), views


# Another grid's visits: work for the index builds (before the URL and after it), and nothing the phone may get.
# Enough that the remaining index outlasts the phone's sign-in on a quiet machine now that a pass costs a tenth of
# what it did (server/store/couch_maps.js).
FILLER = 20000


@pytest.fixture
def busy_street(couch_server: EmbeddedCouch, couch: Couch, settings) -> Iterator[Street]:
    """The sync tests' street with FILLER more documents, served by a fresh `linli serve` whose remaining index
    (the ledgers' and figures') is built after its URL, from nothing."""
    docs = seed(couch)
    filler = [visit(G2, 1 + n % 20, f"user:filler{n}") for n in range(FILLER)]
    for i in range(0, FILLER, 5000):
        assert not [r for r in bulk_save(couch.main, filler[i:i + 5000]) if r.error]
    served = serve(couch_server.url, settings, free_port(), patience=600)  # the first index is built before the URL
    yield Street(couch, settings, served, docs + filler, couch_server.url)
    stop(served)


def test_a_phone_that_syncs_while_an_index_is_built_ends_with_exactly_its_scope(busy_street: Street) -> None:
    """Right after the URL (the fixture returns as soon as it answers) the phone signs in and pulls its replica
    through the sync gateway while the server still builds the ledgers' and figures' index."""
    health = busy_street.served.url + "healthz"
    building = not httpx2.get(health, timeout=30).json()["parts"]["views"]["all"]
    phone = busy_street.phone("wangge01")
    try:
        phone.call("pull")
        assert phone.ids() == visible_ids(busy_street.couch, "wangge01")
        assert not any(i.startswith("visit:c1-g2") for i in phone.ids())
    finally:
        phone.close()
    deadline = time.monotonic() + 300
    while not httpx2.get(health, timeout=30).json()["parts"]["views"]["all"]:
        assert time.monotonic() < deadline, "the remaining index was not built in 5 minutes"
        time.sleep(0.5)
    assert building, "the index was built before the phone synced: the test did not test the fault (more FILLER)"


PER_TYPE = 20  # documents of each type: every view's map sees some, the stock server's passes stay short
# The map functions' environment as each evaluator gives it: what a map function can reach (nothing of the server).
PROBE = ("function (doc) { if (doc._id === 'street:hongshan') { emit('probe', [typeof process, typeof require,"
         " typeof globalThis.process, typeof log, isArray([]), toJSON('[1]'), this === undefined]); } }")


def test_map_functions_compiled_once_index_exactly_as_pouchdb_mapreduce_does(
        couch_server: EmbeddedCouch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """server/store/couch_maps.js (each map function compiled once, documents passed in as JSON) against
    pouchdb-mapreduce's own evaluation (a new V8 context per document), in a stock pouchdb-server beside ours: the
    same documents (a small demo street with its year of history, a deleted one, a conflicted one, one that makes a
    map function throw) give every physical view the same rows (ids, keys, values) and the same reductions, and a
    map function sees the same sandbox."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(embedded_couch, "PRELOADS", embedded_couch.PRELOADS[:1])  # the door only
        stock = EmbeddedCouch(tmp_path_factory.mktemp("stock-couch")).start()
    try:
        size = demo.DemoSize(communities=1, grids_per_community=2, households_per_grid=6)
        now = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
        main = _some_of_each_type([*demo.generate(size=size),
                                   *demo.generate_history(size=size, now=now, code_key=bytes(32))])
        accounts = demo.user_docs(size=size, password_hash=hashed("map-test-password"))
        # users_by_grid's forEach throws on the first: the document is skipped.
        odd = [{**accounts[1], "_id": "user:odd", "grids": "not a list"},
               {"_id": "visit:deleted", "_rev": "1-" + "a" * 32, "_deleted": True}]
        twins = [{**main[-1], "_rev": f"1-{c * 32}", "note": c} for c in "bc"]  # a conflict, the same winner
        rows = {}
        for server in (stock, couch_server):
            couch = connect(make_settings(tmp_path_factory.mktemp("maps"), f"maps_{secrets.token_hex(3)}_"),
                            server.url)
            couch.main.save({"_id": "_design/probe", "language": "javascript", "views": {"probe": {"map": PROBE}}})
            for db, docs in ((couch.main, [*main, *odd[1:], *twins]), (couch.accounts, [*accounts, odd[0]])):
                for i in range(0, len(docs), 500):
                    db.resource._request_response("POST", "_bulk_docs", data=json.dumps(
                        {"docs": [{"_rev": "1-" + "f" * 32, **d} for d in docs[i:i + 500]], "new_edits": False}
                    ).encode(), headers={"Content-Type": "application/json"})
            rows[server] = {
                (db.name.rsplit("_", 1)[-1], view, grouped): db.resource.get(
                    f"_design/{design}/_view/{view}", params={"group": "true"} if grouped else {"reduce": "false"}
                )[1]["rows"]
                for db in (couch.main, couch.accounts)
                for design, view, grouped in [*(("linli", p.name, g) for p in views.PHYSICAL
                                                if p.database == db.logical for g in (False, True)),
                                              *((("probe", "probe", False),) if db is couch.main else ())]}
        assert rows[stock] == rows[couch_server]
        assert len(rows[stock]["main", "rows", False]) > len(main), "the views emitted little: not a test of them"
        assert rows[stock]["main", "probe", False][0]["value"] == ["undefined", "undefined", "undefined", "function",
                                                                     True, [1], True]
    finally:
        stock.stop()


def _some_of_each_type(docs: list[dict]) -> list[dict]:
    """The first PER_TYPE documents of each type, in their order."""
    seen: Counter[str] = Counter()
    kept = []
    for doc in docs:
        seen[doc["type"]] += 1
        if seen[doc["type"]] <= PER_TYPE:
            kept.append(doc)
    return kept


def test_only_an_installation_with_data_keys_from_before_its_installation_key_reads_them_to_vouch(
        couch: Couch, settings) -> None:
    """A new installation's installation key says every write key has its statement, so that `linli serve`'s first
    start does not read the demo's 15,000 data keys to find one without (Firewall.vouch_for_existing_keys); an
    installation whose data keys were made before its installation key still has them read and vouched for."""
    resident = next(d for d in demo.generate(size=demo.DemoSize(1, 1, 2)) if d["type"] == "resident")
    firewall = Firewall.open(settings, couch)
    record = firewall.keystore.new_data_key_doc(resident)  # the installation key is made first, for its statement
    assert couch.accounts.get(INSTALLATION_KEY_ID)["statements_complete"] is True
    assert firewall.vouch_for_existing_keys() == 0
    couch.main.save({k: v for k, v in record.items() if k != "write_signature"})  # as made before statements
    couch.accounts.delete(couch.accounts.get(INSTALLATION_KEY_ID))
    older = Firewall.open(settings, couch)
    assert older.vouch_for_existing_keys() == 1
    assert couch.main.get(record["_id"])["write_signature"]
