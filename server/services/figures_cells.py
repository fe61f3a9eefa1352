"""The figures' aggregates kept as documents (issue 18 item 1): per grid and month a `figures_cell` (one row of
counts per facet: all, each department, each category; server/domain/figures.py), per grid a `figures_backlog`
(requests not closed, by department). A page reads a few of them whatever a year brings (server/services/
figures.py); on pouchdb-server a reduce view would read every row of its range at each query.

Kept from CouchDB's changes feed after a checkpoint (`CHECKPOINT_ID`: never replicated, never backed up), by the
protocol of server/store/feed.py: every request, alert or mediation case changed since then names its grid and
month, and each cell so named is counted again from `linli/figures_source` (the grid's month of rows, a few thousand
at a million requests a year). Counting a cell again, rather than moving one request's old contribution to its new
one, is what makes a state change, a reopening or a replayed change right without remembering what each request
added: the cell is always what its rows say now. A deleted request's tombstone keeps its grid (access.deletion),
not its month: each of that grid's cells is counted again. A request's grid and time made never change (placement
fields: access.write_refusal).

Idempotent, and right with several processes: a cell is read (its revision) before its rows are, and written
against that revision (feed.write_counted); of two processes writing one cell, the second gets a conflict and
counts it again, so the cell that stands was counted from rows read after every write before it. The checkpoint
moves only once every cell named since it is written; a process that stopped in between leaves it where it was, and
the next run counts those cells again. First run (no checkpoint), or far behind after a bulk load: one pass, grid
by grid.

Closures (the resident-confirmed closure KPI) count in the month a request was closed, which a later change can
move or undo (reopened, closed again) without the request naming the old month. So a cell also says which months
its own requests were closed in (`closed_in`), and counting it again counts first each month where that changed.

Mediation cases (the mediation-success KPI) count in the month they were opened, facet "" only, apart from the rows
(`mediations`: [concluded, succeeded]), as closures are: neither is among the published COUNTS.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from server.domain import figures as rules
from server.services import mediation
from server.store import feed, sweeps
from server.store.couch import Couch, bulk_save, docs_of_type, get_many, get_or_none

SOURCE = "linli/figures_source"
# A new name whenever what a cell holds changes (2: `mediations`): no checkpoint under it, so every cell is counted
# again once, by the new rules, instead of old cells standing until their rows change.
CHECKPOINT_ID = "_local/linli-figures-2"
CELL = "figures_cell"
BACKLOG = "figures_backlog"
COUNTED_PREFIXES = ("service_request:", "alert:", "mediation:")
# Changed documents past which one pass over every grid costs less than counting each named cell again.
REBUILD_ABOVE = 20_000

Doc = dict[str, Any]


def cell_id(grid: str, month: str) -> str:
    return f"{CELL}:{grid}:{month}"


def backlog_id(grid: str) -> str:
    return f"{BACKLOG}:{grid}"


def cell_body(values: Iterable[list[Any]]) -> Doc:
    """A grid's month of `figures_source` values added up: `rows` (by facet), `closures` (requests closed in the
    month, and of those confirmed fixed by the reporter: [closed, confirmed]), `closed_in` (the months the
    month's own requests were closed in, [closed, confirmed] each: what tells a recount which other months a
    reopening or a later closure changed) and `mediations` (cases opened in the month: [concluded, succeeded], by
    server/services/mediation.py's rule)."""
    rows: dict[str, list[int]] = {}
    closures = [0, 0]
    mediations = [0, 0]
    closed_in: dict[str, list[int]] = {}

    def add(facet: str, row: list[int]) -> None:
        total = rows.setdefault(facet, [0] * rules.ROW_LENGTH)
        for i, n in enumerate(row):
            total[i] += n
    for value in values:
        if value[0] == "request":
            row = rules.request_row(value[1:])
            for facet in rules.request_facets(value[1:]):
                add(facet, row)
            month = rules.closure_month(value[1:])
            if month:
                counted = closed_in.setdefault(month, [0, 0])
                counted[0] += 1
                counted[1] += bool(value[1 + rules.REQUEST_FIELDS.index("confirmed_at")])
        elif value[0] == "alert":
            add("", rules.alert_row(value[1], value[2]))
        elif value[0] == "closure":
            closures[0] += 1
            closures[1] += value[1]
        elif value[0] == "mediation":
            mediations[0] += value[1] in mediation.CONCLUDED
            mediations[1] += value[1] in mediation.SUCCEEDED
    return {"rows": rows, "closures": closures, "closed_in": closed_in, "mediations": mediations}


# ---------------------------------------------------------------- keeping up

def catch_up(couch: Couch) -> int:
    """Count again every cell a request or alert changed since the checkpoint named; then move the checkpoint.
    Returns how many documents were taken in."""
    since = feed.changed_since(couch.main, CHECKPOINT_ID, COUNTED_PREFIXES, REBUILD_ABOVE)
    if since.changed is None:
        return rebuild(couch)
    changed = since.changed
    if not changed:
        feed.move(couch.main, CHECKPOINT_ID, since.checkpoint, since.last_seq)
        return 0
    grids = _grids(couch)
    cells: set[tuple[str, str]] = set()
    backlogs: set[str] = set()
    for doc in _current(couch, changed).values():
        if doc.get("_deleted"):
            grid = doc.get("grid")
            backlogs |= {grid} if isinstance(grid, str) else set(grids)
            cells |= _existing_cells(couch, grid if isinstance(grid, str) else None)
            continue
        month = rules.month_of(doc.get("raised_at") if doc.get("type") == "alert" else doc.get("created_at"))
        if isinstance(doc.get("grid"), str) and month:
            cells.add((doc["grid"], month))
            backlogs.add(doc["grid"])
    counted = sweeps.each("figures", sorted(cells), lambda c: _recount_cell(couch, grids, *c))
    counted += sweeps.each("figures", sorted(backlogs), lambda g: _recount_backlog(couch, grids, g))
    if len(counted) == len(cells) + len(backlogs):  # a cell left over keeps the checkpoint where it was
        feed.move(couch.main, CHECKPOINT_ID, since.checkpoint, since.last_seq)
    return len(changed)


def rebuild(couch: Couch) -> int:
    """Every cell counted again, grid by grid; the checkpoint set to the database's sequence read before."""
    seq = feed.current_seq(couch.main)
    current = {r["id"]: r["value"]["rev"] for prefix in (CELL, BACKLOG)
               for r in couch.main.all(startkey=f"{prefix}:", endkey=f"{prefix}:\ufff0", include_docs="false",
                                       as_list=True)}
    grids = _grids(couch)
    docs: list[Doc] = []
    taken = 0
    for grid, place in grids.items():
        by_month: dict[str, list[list[Any]]] = defaultdict(list)
        for row in _source(couch, ["cell", grid]):
            by_month[row["key"][2]].append(row["value"])
            taken += 1
        docs += [_cell(place, grid, month, cell_body(values)) for month, values in by_month.items()]
        docs.append(_backlog(place, grid, _open_rows(couch, grid)))
    written = {d["_id"] for d in docs}
    for doc in docs:
        if doc["_id"] in current:
            doc["_rev"] = current[doc["_id"]]
    # Cells no row names any more (their grid gone) are counted again below, to empty.
    failed = [i for i in current if i not in written] + [
        r.id for start in range(0, len(docs), 500) for r in bulk_save(couch.main, docs[start:start + 500]) if r.error]
    if failed:  # another process wrote these meanwhile: counted again one by one, or left with the checkpoint
        again = sweeps.each("figures", failed, lambda i: _recount_id(couch, grids, i))
        if len(again) < len(failed):
            return taken
    feed.move(couch.main, CHECKPOINT_ID, get_or_none(couch.main, CHECKPOINT_ID), seq)
    return taken


def read(couch: Couch, grids: Iterable[str], months: Iterable[str]) -> list[Doc]:
    """The cells kept for these grids and months (those with nothing counted are not there), in one request."""
    months = list(months)
    return list(get_many(couch.main, (cell_id(g, m) for g in grids for m in months)).values())


def added(cells: Iterable[Doc], name: str) -> tuple[int, int]:
    """A pair the cells keep beside their rows (`closures`: [closed, confirmed]; `mediations`: [concluded,
    succeeded]), added up."""
    total = [0, 0]
    for cell in cells:
        for i, n in enumerate(cell.get(name, (0, 0))):
            total[i] += n
    return total[0], total[1]


def counted(couch: Couch) -> bool:
    """Whether the cells were counted once (a checkpoint exists): a page may show them while a catch-up runs."""
    return get_or_none(couch.main, CHECKPOINT_ID) is not None


# Pages ask for the cells to be caught up before they read them; one catch-up at a time per database, shared.
_runs: dict[str, Future[int]] = {}
_runs_lock = threading.Lock()
_runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="figures")


def caught_up(couch: Couch) -> Future[int]:
    """A future done once the cells have taken in every change up to about now (a page waits for it a moment,
    then says "preparing"): the running catch-up if there is one and it has not finished, else a new one."""
    with _runs_lock:
        run = _runs.get(couch.main.name)
        if run is None or run.done():
            run = _runner.submit(catch_up, couch)
            _runs[couch.main.name] = run
    return run


# ---------------------------------------------------------------- helpers

def _current(couch: Couch, ids: list[str]) -> dict[str, Doc]:
    """The documents as they are now; a deleted one as its tombstone (which keeps its grid)."""
    found: dict[str, Doc] = {}
    for start in range(0, len(ids), 1000):
        for row in couch.main.all(keys=ids[start:start + 1000], as_list=True):
            if row.get("doc"):
                found[row["id"]] = row["doc"]
            elif row.get("value", {}).get("deleted"):
                found[row["id"]] = get_or_none(couch.main, row["id"], rev=row["value"]["rev"]) or {"_deleted": True}
    return found


def _grids(couch: Couch) -> dict[str, Doc]:
    return {g["_id"]: g for g in docs_of_type(couch.main, "grid")}


def _existing_cells(couch: Couch, grid: str | None) -> set[tuple[str, str]]:
    prefix = f"{CELL}:{grid}:" if grid else f"{CELL}:"
    ids = [r["id"] for r in couch.main.all(startkey=prefix, endkey=prefix + "\ufff0", include_docs="false",
                                           as_list=True)]
    return {tuple(i[len(CELL) + 1:].rsplit(":", 1)) for i in ids}  # type: ignore[misc]


def _source(couch: Couch, prefix: list[str]) -> list[Doc]:
    return couch.main.query(SOURCE, startkey=prefix, endkey=[*prefix, {}], as_list=True)


def _open_rows(couch: Couch, grid: str) -> dict[str, int]:
    backlog: dict[str, int] = defaultdict(int)
    for row in _source(couch, ["open", grid]):
        backlog[row["key"][2]] += 1
    return dict(backlog)


def _cell(place: Doc, grid: str, month: str, body: Doc) -> Doc:
    return {"_id": cell_id(grid, month), "type": CELL, "street": place["street"], "community": place["community"],
            "grid": grid, "month": month, **body}


def _backlog(place: Doc, grid: str, open_by_department: dict[str, int]) -> Doc:
    return {"_id": backlog_id(grid), "type": BACKLOG, "street": place["street"], "community": place["community"],
            "grid": grid, "open": open_by_department}


def _recount_cell(couch: Couch, grids: dict[str, Doc], grid: str, month: str,
                  busy: frozenset[str] = frozenset()) -> str:
    """Count the cell again. The months its requests were closed in that differ from what the cell last said
    (a reopening, a closure) are counted again first: a stop in between leaves the cell's old `closed_in`, which
    names them again next time. `busy`: months being counted up the call chain (left alone here)."""
    place = grids.get(grid)
    if place is None:
        raise LookupError("no such grid")

    def count() -> Doc:
        # What the cell said last: read after write_counted read the revision it writes against, so at least as new.
        was = (get_or_none(couch.main, cell_id(grid, month)) or {}).get("closed_in", {})
        doc = _cell(place, grid, month, cell_body(r["value"] for r in _source(couch, ["cell", grid, month])))
        now = doc["closed_in"]
        for other in sorted({*was, *now} - {month, *busy}):
            if was.get(other) != now.get(other):
                _recount_cell(couch, grids, grid, other, busy | {month})
        return doc
    return feed.write_counted(couch.main, cell_id(grid, month), count)


def _recount_backlog(couch: Couch, grids: dict[str, Doc], grid: str) -> str:
    place = grids.get(grid)
    if place is None:
        raise LookupError("no such grid")
    return feed.write_counted(couch.main, backlog_id(grid), lambda: _backlog(place, grid, _open_rows(couch, grid)))


def _recount_id(couch: Couch, grids: dict[str, Doc], doc_id: str) -> str:
    kind, rest = doc_id.split(":", 1)
    if kind == BACKLOG:
        return _recount_backlog(couch, grids, rest)
    grid, month = rest.rsplit(":", 1)
    return _recount_cell(couch, grids, grid, month)
