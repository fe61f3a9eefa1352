"""First start (issue 19 item 1): after `linli serve` prints its URL no page or sync waits for an index, and a phone
that syncs while the remaining index is still being built ends with exactly its scope."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx2
import pytest

from server.store.couch import Couch, bulk_save
from server.store.embedded_couch import EmbeddedCouch, free_port
from tests.first_pages import FIRST_PAGES, open_first_pages
from tests.sync_harness import G2, Street, seed, serve, stop, visible_ids, visit
from tests.test_serve import Served, demo_password

# Generous for a loaded CI machine: a built index answers a page in well under a second; building one on demand
# is a pass over every document (tens of seconds on the served demo under load), and is counted apart anyway.
PAGE_SECONDS = 15


def test_every_roles_first_pages_answer_right_after_the_url_without_waiting_for_an_index(
        journey_served: Served) -> None:
    """The journeys' server, before any journey (file order): each role's first pages, timed, none "preparing",
    and the server counted no request that found an index still being built, nor read one it did not build before
    its URL."""
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
FILLER = 20000


@pytest.fixture
def busy_street(couch_server: EmbeddedCouch, couch: Couch, settings) -> Iterator[Street]:
    """The sync tests' street with FILLER more documents, served by a fresh `linli serve` whose remaining index
    (the ledgers' and figures') is built after its URL, from nothing."""
    docs = seed(couch)
    filler = [visit(G2, 1 + n % 20, f"user:filler{n}") for n in range(FILLER)]
    assert not [r for r in bulk_save(couch.main, filler) if r.error]
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
