"""The CouchDB helpers and the embedded CouchDB's door, against a real pouchdb-server."""

from __future__ import annotations

import base64
import os
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest

from crypto.secrets import private_secret
from server.store.couch import Couch, bulk_save, get_many, iter_view_docs
from server.store.embedded_couch import EmbeddedCouch


def test_view_docs_are_paged_without_losing_or_repeating_rows(couch: Couch) -> None:
    # Regression: more rows than one page made the second page request fail (found in a fresh-clone walkthrough).
    routing = {"street": "street:s", "community": "community:c", "grid": "grid:g"}
    docs = [{"_id": f"household:g-{n:04d}", "type": "household", **routing, "address": f"{n}号"} for n in range(23)]
    docs.append({"_id": "household:other", "type": "household", **routing, "grid": "grid:other", "address": "x"})
    assert not [r for r in bulk_save(couch.main, docs) if r.error]
    paged = [d["_id"] for d in iter_view_docs(couch.main, "linli/by_place", ["grid:g", "household"], page=5)]
    assert paged == [d["_id"] for d in docs[:23]]
    exact = list(iter_view_docs(couch.main, "linli/by_place", ["grid:g", "household"], page=23))
    assert len(exact) == 23


def test_get_many_answers_the_existing_documents_only_each_its_winning_revision(couch: Couch) -> None:
    """`get_many` (one `_bulk_get`): documents by id; a missing or deleted one is not in the answer; a conflicted one
    answers its winning revision, as reading it alone does."""
    couch.main.save({"_id": "kept", "n": 1})
    deleted = couch.main.save({"_id": "gone", "n": 2})
    couch.main.delete(deleted)
    couch.main.resource._request_response("POST", "_bulk_docs", data=b'{"new_edits": false, "docs": ['
                                          b'{"_id": "forked", "_rev": "1-aaa", "n": 3},'
                                          b'{"_id": "forked", "_rev": "1-bbb", "n": 4}]}',
                                          headers={"Content-Type": "application/json"})
    found = get_many(couch.main, ["kept", "gone", "missing", "forked", "kept"])
    assert sorted(found) == ["forked", "kept"]
    assert found["kept"]["n"] == 1 and found["forked"] == couch.main.get("forked")
    assert get_many(couch.main, []) == {}


def test_leveldb_flushes_a_large_load_in_32_mb_tables(couch_server: EmbeddedCouch, couch: Couch) -> None:
    """server/store/couch_level.js: LevelDB's memory table is flushed to disk at 32 MB, not at its default 4 MB (the
    documents are random, so that compression does not shrink the tables)."""
    for batch in range(40):  # ~40 MB of documents, in the order of a first start's batches
        docs = [{"_id": f"big-{batch}-{n}", "text": base64.b64encode(os.urandom(75_000)).decode()} for n in range(10)]
        assert not [r for r in bulk_save(couch.main, docs) if r.error]
    log = couch_server.data_dir / couch.main.name / "LOG"
    deadline = time.monotonic() + 30
    while not (flushed := [int(size) for size in re.findall(r"Level-0 table #\d+: (\d+) bytes OK", log.read_text())]):
        assert time.monotonic() < deadline, "LevelDB flushed no table of 40 MB written"
        time.sleep(0.2)
    assert min(flushed) > 16 << 20, flushed


def test_a_map_function_is_compiled_once_per_index_build_in_a_sandbox(couch_server: EmbeddedCouch,
                                                                      couch: Couch) -> None:
    """server/store/couch_maps.js: pouchdb-server compiled every map function once per document in a new V8
    context (~200 documents/s for any view); now once, in a context of its own. Seen here: a
    global a map function keeps counts every document of one build (it would say 1 for each), and the map reaches
    neither Node (`require`, `process`) nor another view's globals."""
    counting = "function (doc) { globalThis.seen = (globalThis.seen || 0) + 1; emit(doc._id, globalThis.seen); }"
    reaching = ("function (doc) { emit(doc._id, [typeof require, typeof process, typeof globalThis.seen,"
                " isArray([])]); }")
    couch.main.save({"_id": "_design/context_test", "views": {"counting": {"map": counting},
                                                              "reaching": {"map": reaching}}})
    assert not [r for r in bulk_save(couch.main, [{"_id": f"d{n}"} for n in range(5)]) if r.error]
    def rows(view: str) -> list[dict]:
        answer = httpx2.get(f"{couch_server.location}{couch.main.name}/_design/context_test/_view/{view}",
                            auth=("linli", couch_server.password), timeout=60)
        return answer.raise_for_status().json()["rows"]

    assert sorted(row["value"] for row in rows("counting")) == [1, 2, 3, 4, 5]
    assert [row["value"] for row in rows("reaching")] == [["undefined", "undefined", "undefined", True]] * 5


def test_the_embedded_couch_refuses_whoever_is_not_its_admin(couch_server: EmbeddedCouch, couch: Couch) -> None:
    """Issue 13, finding 10, below the attack in test_serve.py: pouchdb-server itself would answer these
    (and the first two, anonymous, used to crash it); the gate (server/store/couch_gate.js) refuses them."""
    base, password = couch_server.location, couch_server.password
    sign_up = {"name": "mallory", "password": "x", "roles": [], "type": "user"}
    anonymous = [("PUT", "a_new_database", None), ("PUT", "_users/org.couchdb.user:mallory", sign_up),
                 ("GET", "", None), ("GET", "_all_dbs", None), ("GET", "_utils/", None), ("GET", "_config", None),
                 ("GET", f"{couch.accounts.name}/_all_docs", None)]
    for method, path, body in anonymous:
        answer = httpx2.request(method, base + path, json=body)
        assert answer.status_code == 401 and answer.json()["error"] == "unauthorized", (method, path, answer.text)
    credentials = ("linli", password)
    # A page of another site, even with credentials (a browser that has them), or a name that resolves to the
    # loopback address (DNS rebinding: the browser then calls it same-origin).
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site"}, {"Host": f"evil.example:{couch_server.port}"}):
        answer = httpx2.get(base + "_all_dbs", auth=credentials, headers=headers)
        assert answer.status_code == 403, headers
        assert not [name for name in answer.headers if name.lower().startswith("access-control-")]
    # Its own origin (pouchdb-server's Fauxton in a browser that has the credentials) and Linli's clients pass.
    same_origin = {"Origin": base.rstrip("/"), "Sec-Fetch-Site": "same-origin"}
    assert httpx2.get(base + "_all_dbs", auth=credentials, headers=same_origin).status_code == 200
    assert "a_new_database" not in httpx2.get(couch_server.url + "_all_dbs").json()  # still up, nothing created


def test_a_secret_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    made = private_secret(path, lambda: "first")
    assert made == "first" and private_secret(path, lambda: "second") == "first"  # made once
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o640)
    with pytest.raises(PermissionError, match="chmod 600"):
        private_secret(path, lambda: "second")


def test_the_connection_prints_without_its_credentials(couch: Couch) -> None:
    """A failing test's output or a traceback's locals show the repr: the admin's password must not be in it."""
    password = urlsplit(couch.url).password
    assert password and password in couch.url  # the URL does carry them (a control)
    assert password not in repr(couch) and password not in str(couch)
