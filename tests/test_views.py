"""The logical views, stored together in a few physical views (server/store/views.py), answer every kind of query
exactly as each would alone: same rows, keys, values, documents, reductions."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from pathlib import Path
from typing import Any

import pycouchdb
import pytest

from server.domain.declaration import ACCOUNTS_DB, MAIN_DB
from server.security import accounts
from server.security.firewall import Firewall
from server.services import demo
from server.store import views
from server.store.couch import Couch, connect
from server.store.embedded_couch import EmbeddedCouch
from tests.conftest import make_settings
from tests.street import hashed

NOW = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
SIZE = demo.DemoSize(communities=1, grids_per_community=2, households_per_grid=6)


@pytest.fixture(scope="module")
def with_history(couch_server: EmbeddedCouch, tmp_path_factory: pytest.TempPathFactory) -> Couch:
    """A small demo street with its year of history, and what it lacks for a view to have rows: entries of the
    filing log, residents' accounts, conflicts, alerts nobody acknowledged, readings. Each logical view also
    stored alone (`_design/alone`), as before the merge."""
    settings = make_settings(Path(tmp_path_factory.mktemp("views")), f"views_{secrets.token_hex(3)}_")
    couch = connect(settings, couch_server.url)
    demo.load(couch, Firewall.open(settings, couch), size=SIZE, password_hash=hashed("view-test-password"),
              now=NOW)
    resident = next(r["id"] for r in couch.main.all(startkey="resident:", endkey="resident:\ufff0", limit=1,
                                                     include_docs="false", as_list=True))
    for n in range(3):
        couch.main.save({"_id": f"audit_entry:view-test-{n}", "type": "audit_entry", "target": resident,
                         "at": (NOW + dt.timedelta(minutes=n)).isoformat(), "actor": "user:admin"})
    password = hashed("view-test-password")
    for n, row in enumerate(couch.main.all(startkey="resident:", endkey="resident:\ufff0", limit=3,
                                           include_docs="false", as_list=True)):
        couch.accounts.save(accounts.make_user(f"jumin_views{n}", "居民", [accounts.Role.RESIDENT], demo.STREET_ID,
                                               password, resident=row["id"]))
    for n in range(3):
        couch.main.save({"_id": f"alert:view-test-{n}", "type": "alert", "status": "raised", "kind": "sos",
                         "street": demo.STREET_ID, "community": "community:c1",
                         "raised_at": (NOW - dt.timedelta(hours=n)).isoformat()})
        couch.main.save({"_id": f"reading:view-test-{n}", "type": "reading", "device": f"device:view-test-{n % 2}",
                         "metric": "heart_rate", "measured_at": (NOW - dt.timedelta(hours=n)).isoformat()})
    for db, prefix in ((couch.main, "household:"), (couch.accounts, "user:jumin_views")):
        for row in db.all(startkey=prefix, endkey=prefix + "\ufff0", limit=3, as_list=True):
            other = {**row["doc"], "_rev": "2-" + "a" * 32, "display_name": "冲突"}
            db.resource._request_response("POST", "_bulk_docs", data=json.dumps(
                {"docs": [other], "new_edits": False}).encode(), headers={"Content-Type": "application/json"})
    for database in (MAIN_DB, ACCOUNTS_DB):
        alone = {n: views._LOGICAL[database, n] for p in views.PHYSICAL if p.database == database for n in p.holds}
        couch.db(database).save({"_id": "_design/alone", "language": "javascript", "views": alone})
    return couch


def _alone(db: pycouchdb.client.Database, name: str, **params: Any) -> list[dict[str, Any]]:
    """The logical view queried as its own view (as it was stored before the merge)."""
    return pycouchdb.client.Database.query(db, f"alone/{name}", as_list=True, **params)


def _queries(rows: list[dict[str, Any]], reduces: bool) -> list[dict[str, Any]]:
    """Every kind of query the code asks, built from the rows the view has."""
    keys = [r["key"] for r in rows]
    first, middle, last = keys[0], keys[len(keys) // 2], keys[-1]
    prefix = first[:1] if isinstance(first, list) else first
    asked: list[dict[str, Any]] = [
        {}, {"key": middle}, {"keys": [last, first, "none-such"]}, {"startkey": first, "endkey": middle},
        {"startkey": middle}, {"endkey": middle}, {"descending": "true", "limit": 7, "skip": 2},
        {"startkey": last, "endkey": first, "descending": "true"}, {"include_docs": "true", "limit": 5},
    ]
    if isinstance(first, list):
        asked.append({"startkey": prefix, "endkey": [*prefix, {}]})
    if reduces:
        asked = [{**q, "reduce": "false"} for q in asked]
        asked += [{}, {"group": "true"}, {"group_level": 1}, {"group_level": 2, "startkey": first, "endkey": middle}]
    return asked


@pytest.mark.parametrize(("database", "name"), sorted(views._LOGICAL))
def test_each_logical_view_answers_as_it_would_alone(with_history: Couch, database: str, name: str) -> None:
    db = with_history.db(database)
    definition = views._LOGICAL[database, name]
    rows = _alone(db, name, **({"reduce": "false"} if "reduce" in definition else {}))
    assert len(rows) >= 2, f"no {name} rows to compare"
    for query in _queries(rows, "reduce" in definition):
        expected = _alone(db, name, **query)
        got = db.query(f"linli/{name}", as_list=True, **query)
        assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True), (name, query)


def test_every_logical_view_lives_in_one_physical_view_and_the_first_ones_serve_the_first_pages() -> None:
    assert {p.database for p in views.FIRST} == {MAIN_DB, ACCOUNTS_DB}
    assert {"by_place", "audit_by_target", "conflicts", "users_by_grid", "users_by_community"} <= {
        n for p in views.FIRST for n in p.holds}
    assert sorted((p.database, n) for p in views.PHYSICAL for n in p.holds) == sorted(views._LOGICAL)
