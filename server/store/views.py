"""The views Linli asks CouchDB for, and how they are stored: a few physical views, each holding several logical ones.

pouchdb-server (the embedded CouchDB) indexes each view in its own pass over the whole database, and a pass costs
about as much as loading the database (it writes a record for every document, emitting or not): a first start
with a dozen views spent minutes on passes. So the logical views below (what callers ask for, by name, with their
own keys) live in three physical views, one pass each: `rows` (main: every listing and the figures' source rows,
`_count`), `sums` (main: the ledgers, `_sum`) and `rows` (accounts, `_count`). A logical view's rows are stored under
`[its name, *its key]`; `translate` turns a query of a logical view into one of its physical view and
`logical_rows` turns the answer back, so callers read the keys and ranges they always did
(server/store/couch.py `Database.query`; the sync gateway's HTTP client the same way).

Apache CouchDB 3 builds a design document's views in one pass anyway: there the merge changes nothing but names.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from server.domain import figures, request_states
from server.domain.declaration import ACCOUNTS_DB, MAIN_DB

DESIGN_ID = "_design/linli"


def _ms(span: dt.timedelta) -> int:
    return int(span.total_seconds() * 1000)


# Map functions are JavaScript because CouchDB runs them; keep them tiny.
# Types never listed by place: the pool's hour slots, check-ins and kept months, read by their ids alone
# (server/services/pool_months.py). A year of 500 venues is ~420,000 of them: a row each would be one more document
# pouchdb-server writes into the index for each of them, in every build of `rows`.
READ_BY_ID = ("booking", "checkin", "pool_month")
# Types listed at fewer places than their grid, community and household: only where they are read, for each row is
# written in every build of `rows` (on the demo, each unread place was thousands of rows). A resident's data keys by
# community alone: key rotation reads them so (server/security/keystore.py). A device's readings and health by
# household alone: its resident's safety line reads its health so (server/services/safety.py; readings themselves
# through `readings_by_device`), and re-keying a resident reads everything of their household.
LISTED_AT = {"data_key": ("community",), "reading": ("household",), "device_health": ("household",)}
MAIN_VIEWS = {
    # Listings and counts by place and type: [grid, type], [community, type] and [household, type] (a
    # household's residents, visits, devices, alerts; never READ_BY_ID's types; LISTED_AT's at their places only).
    # A resident's row under their grid holds their place, [street, community, household]: what a phone's key
    # grants need to know of a grid's residents (server/security/grants.py), without reading their sealed records
    # (a view of its own for it wrote 15,000 more rows into every first start's index).
    # In the same pass, what a secretary's day asks of her (server/services/today.py), only while it is open:
    # [community, "attention", type, oldest first] for core-access requests pending, service requests not resolved
    # (by closing deadline), alerts not resolved, needs nobody has handled.
    "by_place": {
        "map": f"function (doc) {{ if (doc.type && {json.dumps(list(READ_BY_ID))}.indexOf(doc.type) < 0) {{"
               f" var listed = {json.dumps(LISTED_AT)}; var at = listed.hasOwnProperty(doc.type) ? listed[doc.type]"
               " : ['grid', 'community', 'household'];"
               " var placed = doc.type === 'resident' ? [doc.street, doc.community, doc.household] : null;"
               " at.forEach(function (level) { if (doc[level]) {"
               " emit([doc[level], doc.type], level === 'grid' ? placed : null); } });"
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
    # Open service requests by street and the time (ms since the epoch) of the next thing the minute sweep must do
    # to each (server/services/service_requests.py `sweep`): warn before a deadline not yet warned of, escalate at
    # a warned deadline unless escalated, mark a department overdue at its whistle's due time; 0 for one made
    # offline and not taken in yet. A request with nothing left to do has no row, so each minute reads only what is
    # due (at a year's scale most open requests are escalated and warned already). Times are compared as instants
    # (`Date`), whatever offset each was written with; an unreadable one counts as due now.
    "request_clock": {
        "map": "function (doc) { if (doc.type === 'service_request'"
               f" && {json.dumps(sorted(request_states.OPEN_STATES))}.indexOf(doc.status) >= 0) {{"
               " var next = null; function at(time) {"
               " var ms = typeof time === 'number' ? time : new Date(time).getTime();"
               " if (isNaN(ms)) { ms = 0; } if (next === null || ms < next) { next = ms; } }"
               " if (doc.due_close === undefined) { at(0); } else {"
               f" {json.dumps(request_states.DEADLINES)}.forEach(function (d) {{ if (doc[d[1]] !== undefined) {{"
               " return; } var due = new Date(doc[d[0]]).getTime();"
               f" if ((doc.warned || []).indexOf(d[2]) < 0) {{ at(due - {_ms(request_states.WARN_BEFORE)}); }}"
               f" else if ({json.dumps(sorted(request_states.ESCALATES_FROM))}.indexOf(doc.status) >= 0) {{ at(due);"
               " } }); (doc.whistles || []).forEach(function (w) { if (w.arrived_at === undefined && !w.overdue) {"
               " at(w.due); } }); } if (next !== null) { emit([doc.street, next], null); } } }",
    },
    # Requests about public places (no resident or household), for the Open311 listing: by street, then service
    # code ("" for any), open/closed, then time, so that each filter is one key range (both states: two). The value
    # is what the list prints (server/web/open311.py `listed`, which makes the same of a document), so a list reads
    # no document.
    "public_requests": {
        "map": "function (doc) { if (doc.type === 'service_request' && !doc.resident && !doc.household) {"
               " var state = (doc.status === 'resolved' || doc.status === 'closed') ? 'closed' : 'open';"
               " var notes = (doc.history || []).filter(function (h) {"
               " return h.action === 'comment' || h.action === 'resolved'; });"
               " var last = notes[notes.length - 1]; var at = doc.location || {};"
               " var listed = {status: state, note: last === undefined ? null : (last.note === undefined ? ''"
               " : last.note), category: doc.category, description: doc.description, department: doc.department,"
               " created_at: doc.created_at, updated_at: doc.updated_at === undefined ? doc.created_at"
               " : doc.updated_at, due_close: doc.due_close === undefined ? null : doc.due_close,"
               " address: doc.address || null, lat: at.lat, lon: at.lon, media_url: doc.media_url || null};"
               " [doc.category, ''].forEach(function (code) {"
               " emit([doc.street, code, state, doc.created_at], listed); }); } }",
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
    # The monthly survey's answers (server/services/survey.py), read by the month and never whole: ["tally",
    # community, month, score] for the published totals (grouped: five rows a month whatever the answers) and
    # ["answer", community, month, household, at] → score for the month's sample (one row an answer, no body).
    "survey_answers": {
        "map": "function (doc) { if (doc.type === 'survey_response' && typeof doc.community === 'string'"
               " && typeof doc.month === 'string') { emit(['tally', doc.community, doc.month, doc.overall], null);"
               " emit(['answer', doc.community, doc.month, doc.household || '', doc.created_at], doc.overall); } }",
        "reduce": "_count",
    },
    # The resource pool (server/services/pool.py), of each booking's first slot only: ["by", who booked, start]
    # (their bookings), ["due", start] while confirmed (what the no-show sweep watches) and ["requested", resource,
    # start] while it awaits the keeper. The utilisation board reads months kept from slots and check-ins read by
    # their ids instead (server/services/pool_months.py): a row per slot made this view's build outlast 20 minutes
    # over a year of 500 resources.
    "pool": {
        "map": "function (doc) { if (doc.type === 'booking' && doc.group === doc._id) {"
               " emit(['by', doc.booked_by, doc.slot_start], null);"
               " if (doc.status === 'confirmed') { emit(['due', doc.slot_start], null); }"
               " if (doc.status === 'requested') { emit(['requested', doc.resource, doc.slot_start], null); } } }",
    },
}


def _figures_source_map() -> str:
    """The map of `linli/figures_source`: what the figures count, listed, never reduced (server/services/
    figures_cells.py adds it up per grid and month with server/domain/figures.py's rules, into documents a page
    reads a few of). Each service request under ["cell", grid, month] with its fields in figures.REQUEST_FIELDS'
    order; one not closed also under ["open", grid, department]; each elderly-safety alert under ["cell", grid,
    month]; a closed request once more under ["cell", grid, month closed] (the confirmed-closure KPI counts
    closures in the month they happened); each mediation case under ["cell", grid, month opened]. Months are UTC+8
    (figures.MONTH_UTC_OFFSET_HOURS). No reduce: pouchdb-server would compute it at query time over every row, and
    few emits per request keep the build short.
    And what is kept from those rows, for the pages: each cell's row of each facet under ["kept", facet, place,
    month] for its street, community and grid (facet "" with the cell's closures and mediations), each grid's
    backlog under ["backlog", place]: a page reads its area's facet in one key range, a small row per grid and
    month, not every facet of every cell (a few kilobytes each)."""
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
        "  if (doc.status === 'closed' && month(doc.closed_at)) {"
        "   emit(['cell', doc.grid, month(doc.closed_at)], ['closure', doc.confirmed_at ? 1 : 0]); }"
        " }"
        " if (doc.type === 'alert' && SAFETY[doc.kind] === true && month(doc.raised_at)) {"
        "  emit(['cell', doc.grid, month(doc.raised_at)], ['alert', doc.acknowledged_at || null,"
        " doc.escalated_at || null]); }"
        " if (doc.type === 'mediation' && month(doc.created_at)) {"
        "  emit(['cell', doc.grid, month(doc.created_at)], ['mediation', doc.status]); }"
        " var places = [doc.street, doc.community, doc.grid];"
        " if (doc.type === 'figures_cell') { var facets = Object.keys(doc.rows);"
        "  if (facets.indexOf('') < 0) { facets.push(''); }"  # closures or mediations in a month of no request
        "  places.forEach(function (place) { facets.forEach(function (facet) {"
        "  emit(['kept', facet, place, doc.month], facet === '' ? {grid: doc.grid, community: doc.community,"
        " row: doc.rows[facet] || null, closures: doc.closures, mediations: doc.mediations}"
        " : {grid: doc.grid, community: doc.community, row: doc.rows[facet]}); }); }); }"
        " if (doc.type === 'figures_backlog') { places.forEach(function (place) {"
        " emit(['backlog', place], doc.open); }); }"
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


@dataclass(frozen=True)
class Physical:
    """A view CouchDB indexes: which database, its name, its reduce, and the logical views it holds."""

    database: str
    name: str
    reduce: str  # each has one, so that one query (reduce=false, limit=0) builds any of them
    holds: tuple[str, ...]


# The first pages' views first (`linli serve` builds those before it prints the URL: FIRST), then the rest.
PHYSICAL = (
    Physical(MAIN_DB, "rows", "_count", ("by_place", "audit_by_target", "request_stats",
                                          "request_clock", "public_requests", "open_alerts", "readings_by_device",
                                          "conflicts", "claims", "pool", "survey_answers", "figures_source")),
    Physical(ACCOUNTS_DB, "rows", "_count", tuple(ACCOUNT_VIEWS)),  # its "conflicts" is the accounts database's
    Physical(MAIN_DB, "sums", "_sum", ("ledger",)),
)
FIRST = PHYSICAL[:2]  # every role's first page and a phone's first sync need only these
_LOGICAL = {(database, name): view for database, table in ((MAIN_DB, MAIN_VIEWS), (ACCOUNTS_DB, ACCOUNT_VIEWS))
            for name, view in table.items()}
_HOME = {(physical.database, name): physical for physical in PHYSICAL for name in physical.holds}
# Keys that are one value, not an array (the accounts views': a grid, a community, a resident id, a type).
_SCALAR_KEYS = frozenset({(ACCOUNTS_DB, n) for n in ("users_by_grid", "users_by_community", "by_resident",
                                                      "conflicts")})
assert set(_HOME) == set(_LOGICAL), "every logical view lives in exactly one physical view"


def _physical_map(physical: Physical) -> str:
    """One map function running each logical view's map with an `emit` that files its rows under its name."""
    calls = "".join(f" (function (emit) {{ return {_LOGICAL[physical.database, name]['map']}; }})"
                    f"(as({json.dumps(name)}))(doc);" for name in physical.holds)
    return ("function (doc) { function as(view) { return function (key, value) {"
            " emit(Array.isArray(key) ? [view].concat(key) : [view, key], value); }; }" + calls + " }")


def designs(database: str) -> dict[str, dict[str, str]]:
    """The `views` of the database's design document."""
    return {p.name: {"map": _physical_map(p), "reduce": p.reduce} for p in PHYSICAL if p.database == database}


def home(database: str, logical: str) -> Physical:
    """The physical view holding a logical one of that database ("main", "accounts"; KeyError for a name it has
    no view of)."""
    return _HOME[database, logical]


def _under(name: str, key: Any) -> list[Any]:
    return [name, *key] if isinstance(key, list) else [name, key]


def translate(database: str, logical: str, params: dict[str, Any]) -> tuple[Physical, dict[str, Any]]:
    """A query of a logical view (`key`, `keys`, `startkey`, `endkey`, `group_level`, … as Python values) as the
    query of its physical view: keys filed under the name, the range kept inside it, no reduce where the logical
    view has none, group levels one deeper."""
    physical = home(database, logical)
    out = dict(params)
    for name in ("key", "startkey", "endkey"):
        if name in out:
            out[name] = _under(logical, out[name])
    if "keys" in out:
        out["keys"] = [_under(logical, k) for k in out["keys"]]
    elif "key" not in out:
        low, high = [logical], [logical, {}]
        descending = str(out.get("descending", "")).lower() == "true"
        out.setdefault("startkey", high if descending else low)
        out.setdefault("endkey", low if descending else high)
    if "group_level" in out:
        out["group_level"] = int(out["group_level"]) + 1
    if "reduce" not in _LOGICAL[database, logical]:
        out["reduce"] = "false"
    return physical, out


def logical_rows(database: str, logical: str, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The physical view's rows as the logical view's: the name taken off each key."""
    scalar = (database, logical) in _SCALAR_KEYS
    return [{**row, "key": row["key"][1] if scalar else row["key"][1:]} if isinstance(row.get("key"), list) else row
            for row in rows]
