"""The CouchDB side: connecting, creating databases and views, bulk writes.

Only HTTP APIs that Apache CouchDB 3.x has are used, so the same code runs on
the embedded pouchdb-server and on a production CouchDB cluster.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx2
import pycouchdb
import requests.exceptions
from pycouchdb.exceptions import NotFound

from server.domain import figures, migrations
from server.domain.declaration import ACCOUNTS_DB, MAIN_DB
from server.store.config import Settings

DESIGN_ID = "_design/linli"

# Map functions are JavaScript because CouchDB runs them; keep them tiny.
MAIN_VIEWS = {
    # Listings and counts by place and type: [grid, type], [community, type] and [household, type] (a
    # household's residents, visits, devices, alerts). One view, not three: pouchdb-server indexes each
    # view in its own pass over the database, which is what a first start waits for. In the same pass, what
    # a secretary's day asks of her (server/services/today.py), only while it is open: [community,
    # "attention", type, oldest first] for core-access requests pending, service requests not resolved (by
    # closing deadline), alerts not resolved, needs nobody has handled.
    "by_place": {
        "map": "function (doc) { if (doc.type) { [doc.grid, doc.community, doc.household].forEach("
               "function (place) { if (place) { emit([place, doc.type], null); } });"
               " var open = {access_request: doc.status === 'pending',"
               " service_request: doc.status !== 'resolved' && doc.status !== 'closed',"
               " alert: doc.status !== 'resolved', need: doc.status === 'open'};"
               " if (open[doc.type] && doc.community) { emit([doc.community, 'attention', doc.type,"
               " doc.due_close || doc.raised_at || doc.created_at], null); } } }",
        "reduce": "_count",
    },
    # The filing log by whose record was opened: the resident's own "who looked at my data" list.
    "audit_by_target": {
        "map": "function (doc) { if (doc.type === 'audit_entry') { emit([doc.target, doc.at], null); } }",
    },
    # One slim row per service request for the dashboard (server/services/dashboard.py): no document bodies.
    "request_stats": {
        "map": "function (doc) { if (doc.type === 'service_request') {"
               " emit([doc.community, doc.street, doc.grid, doc._id], [doc.category, doc.department || '',"
               " doc.status, doc.created_at, doc.acknowledged_at || null, doc.resolved_at || null, doc.due_close,"
               " doc.rating || null]); } }",
    },
    # Service requests not yet resolved or closed, by street: what the minute sweep watches.
    "open_requests": {
        "map": "function (doc) { if (doc.type === 'service_request' && doc.status !== 'resolved'"
               " && doc.status !== 'closed') { emit([doc.street, doc.created_at], null); } }",
    },
    # Requests about public places (no resident or household), for the Open311 listing: by street, then
    # service code and open/closed ("" for any), then time, so that each filter is one key range.
    "public_requests": {
        "map": "function (doc) { if (doc.type === 'service_request' && !doc.resident && !doc.household) {"
               " var state = (doc.status === 'resolved' || doc.status === 'closed') ? 'closed' : 'open';"
               " [doc.category, ''].forEach(function (code) { [state, ''].forEach(function (s) {"
               " emit([doc.street, code, s, doc.created_at], null); }); }); } }",
    },
    # Alerts nobody has acknowledged yet, for the escalation sweep (server/services/alerts.py).
    "open_alerts": {
        "map": "function (doc) { if (doc.type === 'alert' && doc.status === 'raised') {"
               " emit([doc.community, doc.raised_at], null); } }",
    },
    # A device's readings by metric and time: the latest of each for a resident's status line (server/services/
    # safety.py), one key range each however many readings a year brings.
    "readings_by_device": {
        "map": "function (doc) { if (doc.type === 'reading') { emit([doc.device, doc.metric, doc.measured_at],"
               " null); } }",
    },
    # Documents with conflicting revisions a person has to resolve (server/web/conflict_pages.py), by street,
    # community and grid ("" above a document's scope), so that one street's or community's are one range.
    "conflicts": {
        "map": "function (doc) { if (doc._conflicts) {"
               " emit([doc.street || '', doc.community || '', doc.grid || ''], null); } }",
    },
    # The time bank's two ledgers (server/services/timebank.py): each transfer's two legs, keyed by community,
    # ledger, account and time. Reduced (`_sum`) they are the balances; no balance is stored anywhere.
    "ledger": {
        "map": "function (doc) { if (doc.type === 'transfer') {"
               " emit([doc.community, doc.ledger, doc.from_account, doc.created_at], -doc.amount);"
               " emit([doc.community, doc.ledger, doc.to_account, doc.created_at], doc.amount); } }",
        "reduce": "_sum",
    },
    # Claims of hours by who made them, whom they are from, and all together ("": the expiry sweep), by state.
    "claims": {
        "map": "function (doc) { if (doc.type === 'claim') { [doc.created_by, doc.resident, ''].forEach("
               "function (party) { emit([party, doc.status, doc.created_at], null); }); } }",
    },
    # The resource pool (server/services/pool.py): each booked slot [community, resource, "b", YYYYMMDDHH] with its
    # state and its booking's first slot, each check-in [community, resource, "c", first slot's hour]: a month
    # of a resource's use is one key range, no document bodies. Of each booking's first slot: ["by", who booked,
    # start] (their bookings), ["due", start] while confirmed (what the no-show sweep watches) and ["requested",
    # resource, start] while it awaits the keeper.
    "pool": {
        "map": "function (doc) { if (doc.type === 'booking') { var hour = doc._id.split(':')[2];"
               " emit([doc.community, doc.resource, 'b', hour], [doc.status, doc.group.split(':')[2]]);"
               " if (doc.group === doc._id) { emit(['by', doc.booked_by, doc.slot_start], null);"
               " if (doc.status === 'confirmed') { emit(['due', doc.slot_start], null); }"
               " if (doc.status === 'requested') { emit(['requested', doc.resource, doc.slot_start], null); } } }"
               " if (doc.type === 'checkin') { emit([doc.community, doc.resource, 'c', doc.booking.split(':')[2]],"
               " null); } }",
    },
}


def _figures_source_map() -> str:
    """The map of `linli/figures_source`: what the figures count, listed, never reduced (server/services/
    figures_cells.py adds it up per grid and month with server/domain/figures.py's rules, into documents a page
    reads a few of). Each service request under ["cell", grid, month] with its fields in figures.REQUEST_FIELDS'
    order; one not closed also under ["open", grid, department]; each elderly-safety alert under ["cell", grid,
    month]. Months are UTC+8 (figures.MONTH_UTC_OFFSET_HOURS). No reduce: pouchdb-server would compute it at query
    time over every row, and one emit per request keeps the index build short."""
    fields = ", ".join("doc.department || ''" if f == "department" else f"doc.{f} === undefined ? null : doc.{f}"
                       for f in figures.REQUEST_FIELDS)
    closed = " || ".join(f"doc.status === '{s}'" for s in figures.CLOSED_STATES)
    return (
        "function (doc) {"
        f" var O = {figures.MONTH_UTC_OFFSET_HOURS * 3600000};"
        f" var SAFETY = {json.dumps(dict.fromkeys(figures.SAFETY_ALERT_KINDS, True))};"
        " function month(s) { var t = typeof s === 'string' ? Date.parse(s) : NaN;"
        "  return isNaN(t) ? null : new Date(t + O).toISOString().slice(0, 7); }"
        " if (typeof doc.grid !== 'string') { return; }"
        " if (doc.type === 'service_request' && month(doc.created_at)) {"
        f"  emit(['cell', doc.grid, month(doc.created_at)], ['request', {fields}]);"
        f"  if (!({closed})) {{ emit(['open', doc.grid, doc.department || ''], null); }}"
        " }"
        " if (doc.type === 'alert' && SAFETY[doc.kind] === true && month(doc.raised_at)) {"
        "  emit(['cell', doc.grid, month(doc.raised_at)], ['alert', doc.acknowledged_at || null,"
        " doc.escalated_at || null]); }"
        "}"
    )


MAIN_VIEWS["figures_source"] = {"map": _figures_source_map()}

ACCOUNT_VIEWS = {
    # Residents by the blind index of their phone or ID card number (server/security/number_index.py), per community.
    "by_number_index": {
        "map": "function (doc) { if (doc.type === 'number_index') {"
               " if (doc.phone_bidx) { emit([doc.community, 'phone', doc.phone_bidx], doc.resident); }"
               " if (doc.id_card_bidx) { emit([doc.community, 'id_card', doc.id_card_bidx], doc.resident); } } }",
    },
    # Who works in which grid, for the secretary's overview.
    "users_by_grid": {
        "map": "function (doc) { if (doc.type === 'user' && doc.grids) {"
               " doc.grids.forEach(function (g) { emit(g, {name: doc.display_name, roles: doc.roles}); }); } }",
    },
    # Who belongs to which community, assigned to a grid or not: the staff page (server/web/console_pages.py).
    "users_by_community": {
        "map": "function (doc) { if (doc.type === 'user' && doc.communities) {"
               " doc.communities.forEach(function (c) { emit(c, null); }); } }",
    },
    # A resident's account and activation code (server/web/activation.py): "does this resident have an account".
    "by_resident": {
        "map": "function (doc) { if ((doc.type === 'user' || doc.type === 'activation_code') && doc.resident) {"
               " emit(doc.resident, doc.type); } }",
    },
    # Documents with conflicting revisions, by type: a ledger lock two CouchDB nodes both took (issue 24,
    # server/services/timebank.py resolve_lock_forks). One node never makes one; so, almost always, no rows.
    "conflicts": {
        "map": "function (doc) { if (doc._conflicts) { emit(doc.type, null); } }",
    },
}


# The database is not there (stopped, restarting, its connection cut mid-answer), as each HTTP client says so:
# pycouchdb's (requests, the pages and commands) and the sync gateway's (httpx2). Pages and phones answer these
# with "recovering" (503), never a traceback.
UNREACHABLE: tuple[type[Exception], ...] = (requests.exceptions.ConnectionError, httpx2.NetworkError,
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

    def save(self, doc: dict[str, Any], batch: bool = False) -> dict[str, Any]:
        return super().save(migrations.upgrade(doc), batch)

    def save_bulk(self, docs: list[dict[str, Any]], try_setting_ids: bool = True,
                  transaction: bool = True) -> list[dict[str, Any]]:
        return super().save_bulk([migrations.upgrade(d) for d in docs], try_setting_ids, transaction)


@dataclass
class Couch:
    """The two databases Linli uses, opened on one server."""

    server: pycouchdb.Server
    main: pycouchdb.client.Database
    accounts: pycouchdb.client.Database
    url: str  # the server as clients connect, credentials included (`server.base_url` has none): never print it

    def db(self, logical: str) -> pycouchdb.client.Database:
        return {MAIN_DB: self.main, ACCOUNTS_DB: self.accounts}[logical]


def connect(settings: Settings, embedded_url: str | None = None, *, designs: bool = True,
            timeout: float = 600) -> Couch:
    """Open (creating if needed) Linli's databases and, unless `designs` is False, their design documents
    (the command line checks the master key first, and writes them after: `ensure_designs`). `timeout`: seconds a
    request may take (a benchmark at a large scale waits longer for pouchdb-server's query-time sums)."""
    url = server_url(settings, embedded_url)
    server = pycouchdb.Server(url, timeout=timeout)
    dbs = {}
    for logical in (MAIN_DB, ACCOUNTS_DB):
        name = settings.db_name(logical)
        opened = server.database(name) if name in server else server.create(name)
        dbs[logical] = Database(opened.resource, opened.name)
    couch = Couch(server=server, main=dbs[MAIN_DB], accounts=dbs[ACCOUNTS_DB], url=url)
    if designs:
        ensure_designs(couch)
    return couch


def ensure_designs(couch: Couch) -> None:
    """Store the design documents (views) where they are missing or differ from this version's."""
    _ensure_design(couch.main, MAIN_VIEWS)
    _ensure_design(couch.accounts, ACCOUNT_VIEWS)


# The views a first page needs; `linli serve` builds these before it prints the URL, the rest just after.
FIRST_VIEWS = ("by_place", "users_by_grid")


def build_views(couch: Couch, names: tuple[str, ...] | None = None, *, exclude: tuple[str, ...] = ()) -> None:
    """Build view indexes now (one query each), so that no page view waits for indexing.

    pouchdb-server indexes each view in its own pass over the database (CouchDB does a design document's
    views together), so on the embedded server this costs seconds per view on first start.
    """
    for db, views in ((couch.main, MAIN_VIEWS), (couch.accounts, ACCOUNT_VIEWS)):
        for name, view in views.items():
            if (names is None or name in names) and name not in exclude:
                db.query(f"linli/{name}", limit=0, as_list=True, **({"reduce": "false"} if "reduce" in view else {}))


# How long a page waits for an index before it says the index is being prepared; a built one answers well within.
INDEX_WAIT_SECONDS = 5.0

# The first query of a view waits until CouchDB has indexed the whole database (on a fresh demo, a minute or
# more behind the other views being built). One query per view at a time, whoever asks meanwhile shares it.
_view_builds: dict[tuple[str, str], Future[Any]] = {}
_view_builds_lock = threading.Lock()
_view_builder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="view-build")


def view_built(db: pycouchdb.client.Database, name: str) -> Future[Any]:
    """A future done once view `name` of `db` is indexed, so that a page can say "preparing" instead of waiting
    (or timing out) while it is built; a failed build is asked again by the next caller."""
    key = (db.name, name)
    with _view_builds_lock:
        build = _view_builds.get(key)
        if build is None or (build.done() and build.exception() is not None):
            build = _view_builder.submit(db.query, f"linli/{name}", limit=0, as_list=True)
            _view_builds[key] = build
    return build


def _ensure_design(db: pycouchdb.client.Database, views: dict[str, Any]) -> None:
    try:
        current = db.get(DESIGN_ID)
    except NotFound:
        current = {"_id": DESIGN_ID}
    if current.get("views") != views:
        db.save({**current, "language": "javascript", "views": views})


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
    """The existing documents among ids, by id, in one _all_docs request."""
    ids = list(ids)
    if not ids:
        return {}
    rows = db.all(keys=ids, as_list=True)
    return {row["id"]: row["doc"] for row in rows if row.get("doc")}


def count_by(db: pycouchdb.client.Database, view: str, keys: Iterable[Any] | None = None) -> dict[tuple, int]:
    """Reduced counts of a `_count` view grouped on its full key."""
    params: dict[str, Any] = {"group": "true"}
    if keys is not None:
        params["keys"] = list(keys)
    return {tuple(row["key"]): row["value"] for row in db.query(view, **params)}
