"""The CouchDB side: connecting, creating databases and views, bulk writes.

Only HTTP APIs that Apache CouchDB 3.x has are used, so the same code runs on
the embedded pouchdb-server and on a production CouchDB cluster.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx2
import pycouchdb
import requests.exceptions
from pycouchdb.exceptions import NotFound

from server.domain import migrations
from server.domain.declaration import ACCOUNTS_DB, MAIN_DB
from server.store import views
from server.store.config import Settings

# The database is not there (stopped, restarting, its connection cut mid-answer), as each HTTP client says so:
# pycouchdb's (requests, the pages and commands) and the sync gateway's (httpx2). Pages and phones answer these
# with "recovering" (503), never a traceback.
UNREACHABLE: tuple[type[Exception], ...] = (requests.exceptions.ConnectionError,
                                            requests.exceptions.ChunkedEncodingError, httpx2.NetworkError,
                                            httpx2.RemoteProtocolError)


def server_url(settings: Settings, embedded_url: str | None = None) -> str:
    """The CouchDB base URL with credentials folded in the way pycouchdb reads them."""
    url = settings.couchdb_url or embedded_url
    if not url:
        raise RuntimeError("no CouchDB: set COUCHDB_URL or start the embedded server")
    if settings.couchdb_user and settings.couchdb_password:
        parts = urlsplit(url)
        host = parts.netloc.rsplit("@", 1)[-1]
        creds = f"{quote(settings.couchdb_user, safe='')}:{quote(settings.couchdb_password, safe='')}"
        url = urlunsplit(parts._replace(netloc=f"{creds}@{host}"))
    return url.rstrip("/") + "/"


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without `user:password@`, and those (unquoted) if it had them: for an HTTP client's `auth`,
    so that no URL a client logs or puts into an error message carries the password."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    plain = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))
    return plain, (unquote(parts.username), unquote(parts.password or ""))


class Database(pycouchdb.client.Database):
    """A pycouchdb database whose writes upgrade each document to its type's current declaration version
    (server/domain/migrations.py): whatever the server stores is current, however old what it read was."""

    logical = MAIN_DB  # or ACCOUNTS_DB: whose views `query` asks (set by `connect`)

    def save(self, doc: dict[str, Any], batch: bool = False) -> dict[str, Any]:
        return super().save(migrations.upgrade(doc), batch)

    def save_bulk(self, docs: list[dict[str, Any]], try_setting_ids: bool = True,
                  transaction: bool = True) -> list[dict[str, Any]]:
        return super().save_bulk([migrations.upgrade(d) for d in docs], try_setting_ids, transaction)

    def query(self, name: str, wrapper: Any = None, flat: Any = None, pagesize: None = None, as_list: bool = False,
              **params: Any) -> Any:
        """A logical view ("linli/<name>", server/store/views.py) asked of the physical view holding it, rows
        answered with the logical keys. Within a request (`INDEX_PATIENCE` set), an index not built yet is waited
        for that long, then IndexPreparing is raised: the page says "preparing" instead of waiting for the build."""
        assert pagesize is None, "pagesize pages by physical keys: page with skip (iter_view_docs)"
        physical, params = views.translate(self.logical, name.removeprefix("linli/"), params)
        patience = INDEX_PATIENCE.get()
        if patience is not None:
            _index_used.add(f"{self.name}/{physical.name}")
            build = view_built(self, physical.name)
            if not build.done():
                _index_waits[f"{self.name}/{physical.name}"] += 1
            try:
                build.result(timeout=patience)
            except TimeoutError:
                raise IndexPreparing(physical.name) from None
        rows = views.logical_rows(self.logical, name.removeprefix("linli/"),
                                  super().query(f"linli/{physical.name}", as_list=True, **params))
        if wrapper is not None or flat is not None:
            rows = [row[flat] if flat is not None else wrapper(row) for row in rows]
        return rows if as_list else iter(rows)


class _VerifyingResource(pycouchdb.resource.Resource):
    """pycouchdb's Resource makes each sub-resource (a database, a document) with `verify=False`, which it sets on
    the one session they all share, so that one sub-resource turns certificate checks off for every request after
    it (pycouchdb 1.16). Here a sub-resource keeps the session's verification."""

    def __call__(self, *path: str) -> _VerifyingResource:
        return _VerifyingResource(pycouchdb.utils.urljoin(self.base_url, *path), session=self.session,
                                  timeout=self.timeout, verify=self.session.verify)


@dataclass
class Couch:
    """The two databases Linli uses, opened on one server."""

    server: pycouchdb.Server
    main: pycouchdb.client.Database
    accounts: pycouchdb.client.Database
    # The server as clients connect, credentials included (`server.base_url` has none): never print it, so not in
    # the repr either (a failing test's or a traceback's locals show the repr).
    url: str = field(repr=False)

    def db(self, logical: str) -> pycouchdb.client.Database:
        return {MAIN_DB: self.main, ACCOUNTS_DB: self.accounts}[logical]


def connect(settings: Settings, embedded_url: str | None = None, *, designs: bool = True,
            timeout: float = 600) -> Couch:
    """Open (creating if needed) Linli's databases and, unless `designs` is False, their design documents
    (the command line checks the master key first, and writes them after: `ensure_designs`). `timeout`: seconds a
    request may take (a benchmark at a large scale waits longer for pouchdb-server's query-time sums)."""
    url = server_url(settings, embedded_url)
    # An https CouchDB (a cluster's load balancer) is verified as the sync gateway's client verifies it: against
    # the CAs of SSL_CERT_FILE if set, else the standard bundle (pycouchdb's default is not to verify at all).
    verify = os.environ.get("SSL_CERT_FILE") or True
    server = pycouchdb.Server(url, timeout=timeout, verify=verify)
    server.resource = _VerifyingResource(server.resource.base_url, session=server.resource.session,
                                         timeout=timeout, verify=verify)
    # Nothing else from the environment: trusted, requests looks up proxies and ~/.netrc on every request (~0.3 ms
    # each, a page asks CouchDB 10 times or more), and COUCHDB_URL names the server and its credentials.
    server.resource.session.trust_env = False
    dbs = {}
    for logical in (MAIN_DB, ACCOUNTS_DB):
        name = settings.db_name(logical)
        opened = server.database(name) if name in server else server.create(name)
        dbs[logical] = Database(opened.resource, opened.name)
        dbs[logical].logical = logical
    couch = Couch(server=server, main=dbs[MAIN_DB], accounts=dbs[ACCOUNTS_DB], url=url)
    if designs:
        ensure_designs(couch)
    return couch


def ensure_designs(couch: Couch) -> None:
    """Store the design documents (views) where they are missing or differ from this version's."""
    _ensure_design(couch.main, views.designs(MAIN_DB))
    _ensure_design(couch.accounts, views.designs(ACCOUNTS_DB))


def build_views(couch: Couch, which: tuple[views.Physical, ...] = views.PHYSICAL) -> dict[str, float]:
    """Build these physical views' indexes now, in order, so that no page waits for them; the seconds each took,
    by "<database>/<view>" (`linli serve` prints them)."""
    took = {}
    for physical in which:
        db = couch.db(physical.database)
        started = time.monotonic()
        view_built(db, physical.name).result()
        took[f"{db.name}/{physical.name}"] = time.monotonic() - started
    return took


# How long a page waits for an index before it says the index is being prepared; a built one answers well within.
INDEX_WAIT_SECONDS = 5.0
# How long a query in this context waits for an index not built yet before raising IndexPreparing: None (wait
# as long as the build takes) unless the web app set it for the request it answers (server/web/preparing.py).
INDEX_PATIENCE: contextvars.ContextVar[float | None] = contextvars.ContextVar("index_patience", default=None)


_index_waits: Counter[str] = Counter()  # requests that found an index not built yet, by view, since the start


_index_used: set[str] = set()  # the views requests have read, since the start


def index_used() -> list[str]:
    """The views ("<database>/<view>") requests have read since the start: /healthz, beside those built before the
    URL, so that a test can tell a first page that needs an index `linli serve` did not build first."""
    return sorted(_index_used)


def index_waits() -> dict[str, int]:
    """Requests that found an index still being built (and waited, or were told "preparing"), by view: /healthz."""
    return dict(_index_waits)


class IndexPreparing(Exception):
    """A request asked a view whose index is still being built (a first start, a new version's views)."""

    def __init__(self, view: str) -> None:
        super().__init__(f"the index of view {view} is being built")
        self.view = view


# The first query of a view waits until CouchDB has indexed the whole database (on a fresh demo, a pass over
# every document). One query per view at a time, whoever asks meanwhile shares it.
_view_builds: dict[tuple[str, str], Future[Any]] = {}
_view_builds_lock = threading.Lock()
_view_builder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="view-build")


def view_built(db: pycouchdb.client.Database, name: str) -> Future[Any]:
    """A future done once view `name` of `db` (a physical view, or a logical one: its physical view) is
    indexed, so that a page can say "preparing" instead of waiting (or timing out) while it is built; a failed
    build is asked again by the next caller."""
    physical = name if name in {p.name for p in views.PHYSICAL} else views.home(db.logical, name).name
    key = (db.name, physical)
    with _view_builds_lock:
        build = _view_builds.get(key)
        if build is None or (build.done() and build.exception() is not None):
            build = _view_builder.submit(index_now, db, physical)
            _view_builds[key] = build
    return build


def index_now(db: pycouchdb.client.Database, physical: str) -> None:
    """Bring physical view `physical` of `db` up to date, waiting: CouchDB indexes what changed since its last query
    (on a fresh database, everything)."""
    # Not this module's Database.query: this is the build that query waits for. Every physical view reduces, so
    # reduce=false (else pouchdb-server would reduce every row to answer limit=0).
    pycouchdb.client.Database.query(db, f"linli/{physical}", limit=0, reduce="false", as_list=True)


def _ensure_design(db: pycouchdb.client.Database, wanted: dict[str, Any]) -> None:
    try:
        current = db.get(views.DESIGN_ID)
    except NotFound:
        current = {"_id": views.DESIGN_ID}
    if current.get("views") != wanted:
        db.save({**current, "language": "javascript", "views": wanted})


# No Linli id comes near this; a longer one cannot even be asked for (pouchdb-server, being Node, refuses a request
# line over 16 KB without a JSON answer), so a lookup of one finds nothing instead of failing.
MAX_ID_BYTES = 2000


def get_or_none(db: pycouchdb.client.Database, doc_id: str, **params: str) -> dict[str, Any] | None:
    if len(doc_id.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        return None
    try:
        doc = db.get(doc_id, **params)
    except NotFound:
        return None
    # pycouchdb leaves "?" and "#" in an id unquoted: "?x" reads the database's own info. Not that document.
    return doc if doc.get("_id") == doc_id else None


@dataclass(frozen=True)
class BulkResult:
    id: str
    rev: str | None
    error: str | None
    reason: str | None


def bulk_save(db: pycouchdb.client.Database, docs: list[dict[str, Any]]) -> list[BulkResult]:
    """POST _bulk_docs (each document upgraded, as `Database` does) and return one result per document, errors
    included.

    pycouchdb.s save_bulk raises on the first per-document error; callers here
    need every result (a batch is never all-or-nothing in CouchDB 3).
    """
    response, results = db.resource._request_response(
        "POST", "_bulk_docs", data=json.dumps({"docs": [migrations.upgrade(d) for d in docs]}).encode(),
        headers={"Content-Type": "application/json"})
    if response.status_code >= 400 or not isinstance(results, list):
        raise RuntimeError(f"_bulk_docs failed with HTTP {response.status_code}: {results}")
    return [BulkResult(r.get("id", ""), r.get("rev"), r.get("error"), r.get("reason")) for r in results]


def iter_view_docs(db: pycouchdb.client.Database, view: str, key_prefix: list[Any],
                   page: int = 500) -> Iterator[dict[str, Any]]:
    """Documents whose view key starts with key_prefix, in key order, fetched a page at a time.

    Paged here with `skip` rather than with pycouchdb's `pagesize`, which
    JSON-encodes the end key a second time on the second page; and not by
    `startkey_docid`, which pouchdb-server ignores. Listings here are at most a
    grid's few thousand documents, where skip costs little.
    """
    for skip in itertools.count(0, page):
        rows = db.query(view, as_list=True, startkey=key_prefix, endkey=[*key_prefix, {}], reduce="false",
                        include_docs="true", limit=page, skip=skip)
        for row in rows:
            yield row["doc"]
        if len(rows) < page:
            return


def docs_of_type(db: pycouchdb.client.Database, type_name: str) -> list[dict[str, Any]]:
    """Every document of a type, by its id prefix (ids are `<type>:<key>`): for the small, street-wide types."""
    return [r["doc"] for r in db.all(startkey=f"{type_name}:", endkey=f"{type_name}:\ufff0", as_list=True)]


def ids_of_type(db: pycouchdb.client.Database, type_name: str) -> list[str]:
    return [r["id"] for r in db.all(startkey=f"{type_name}:", endkey=f"{type_name}:\ufff0", include_docs="false",
                                    as_list=True)]


def get_many(db: pycouchdb.client.Database, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The existing documents among ids (each its winning revision), by id, in one `_bulk_get` request.

    Not `_all_docs` with `keys`, which pouchdb-server answers with a whole `_all_docs` query per key (counting the
    database each time): two to three times the work, which sealing a demo load's batches spent seconds on."""
    ids = list(ids)
    if not ids:
        return {}
    response, answer = db.resource._request_response(
        "POST", "_bulk_get", data=json.dumps({"docs": [{"id": i} for i in ids]}).encode(),
        headers={"Content-Type": "application/json"})
    if response.status_code >= 400 or not isinstance(answer, dict):
        raise RuntimeError(f"_bulk_get failed with HTTP {response.status_code}: {answer}")
    # Each id answers one entry: {"ok": document} when it exists (a deleted one is an error, or a stub here)
    return {found["_id"]: found for result in answer["results"] for entry in result["docs"]
            if (found := entry.get("ok")) and not found.get("_deleted")}


def count_by(db: pycouchdb.client.Database, view: str, keys: Iterable[Any] | None = None) -> dict[tuple, int]:
    """Reduced counts of a `_count` view grouped on its full key."""
    params: dict[str, Any] = {"group": "true"}
    if keys is not None:
        params["keys"] = list(keys)
    return {tuple(row["key"]): row["value"] for row in db.query(view, **params)}
