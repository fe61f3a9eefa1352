"""What the pages show, read from CouchDB: only documents `access.may_see` lets the user see.

Only basic-tier fields leave this module: contact, health and finance fields
are the data-security firewall's (server/security/firewall.py) to open.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from server.domain.access import Principal, may_see, write_ref_ids, write_refusal
from server.domain.declaration import ACCOUNTS_DB, DOC_TYPES, MAIN_DB, Role, Tier, database_of
from server.store.couch import Couch, count_by, get_many, get_or_none, ids_of_type, iter_view_docs

PAGE_SIZE = 50
_BASIC_RESIDENT_FIELDS = DOC_TYPES["resident"].fields_in(Tier.PUBLIC, Tier.BASIC)


def roles(user: dict[str, Any]) -> set[Role]:
    return {Role(r) for r in user.get("roles", [])}


def age_on(birth_date: str, today: dt.date) -> int:
    born = dt.date.fromisoformat(birth_date)
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


@dataclass(frozen=True)
class HouseholdRow:
    id: str
    address: str
    head_name: str
    member_count: int
    tags: list[str]


@dataclass(frozen=True)
class HouseholdPage:
    rows: list[HouseholdRow]
    total: int
    next_offset: int | None


def grid_households(couch: Couch, p: Principal, grid_id: str, query: str = "", offset: int = 0,
                    only: set[str] | None = None) -> HouseholdPage:
    """One page of the grid's households p may see, filtered by address or head-of-household name, or to the ids
    in `only` (households of residents found by number, see firewall.find_by_number).

    What p may not see is left out as if it were not there, as it is not on their phone: a volunteer gets the
    households assigned to them, and no head's name (residents are grid staff's)."""
    households = [h for h in iter_view_docs(couch.main, "linli/by_place", [grid_id, "household"]) if may_see(p, h)]
    query = query.strip()
    if only is not None:
        households = [h for h in households if h["_id"] in only]
        query = ""
    if query:
        residents = {d["_id"]: d for d in iter_view_docs(couch.main, "linli/by_place", [grid_id, "resident"])
                     if may_see(p, d)}
        households = [h for h in households
                      if query in h["address"] or query in residents.get(h.get("head", ""), {}).get("name", "")]
        heads = residents
    page = households[offset:offset + PAGE_SIZE]
    if not query:
        heads = {i: d for i, d in get_many(couch.main, [h["head"] for h in page if h.get("head")]).items()
                 if may_see(p, d)}
    rows = [HouseholdRow(h["_id"], h["address"], heads.get(h.get("head", ""), {}).get("name", ""),
                         h.get("member_count", 0), h.get("tags", [])) for h in page]
    end = offset + len(page)
    return HouseholdPage(rows, len(households), end if end < len(households) else None)


def household_detail(couch: Couch, p: Principal, household: dict[str, Any], today: dt.date) -> list[dict[str, Any]]:
    """The household's residents p may see: their basic fields and age for display, and the stored document as
    `doc` (protected fields still sealed) for the firewall to decide on."""
    residents = [r for r in iter_view_docs(couch.main, "linli/by_place", [household["_id"], "resident"])
                 if may_see(p, r)]
    return [{**{k: r[k] for k in _BASIC_RESIDENT_FIELDS if k in r}, "id": r["_id"],
             "age": age_on(r["birth_date"], today), "doc": r} for r in residents]


def user_names(couch: Couch, user_ids: set[str]) -> dict[str, str]:
    return {i: u["display_name"] for i, u in get_many(couch.accounts, user_ids).items()}


OPENINGS_SHOWN = 100  # the newest entries about a resident their own record lists


def openings_about(couch: Couch, resident_id: str, limit: int = OPENINGS_SHOWN) -> list[dict[str, Any]]:
    """The filing log's entries about one resident, newest first (their own record lists them)."""
    rows = couch.main.query("linli/audit_by_target", startkey=[resident_id, {}], endkey=[resident_id],
                            descending="true", include_docs="true", limit=limit, as_list=True)
    return [row["doc"] for row in rows]


def colleague_names(couch: Couch, user: dict[str, Any]) -> dict[str, str]:
    """The names a user's pages show of other people's work (who acknowledged an alert, who visited), for the
    offline app: the staff of the user's communities (of the street's, for street-wide staff), and the user. A
    resident gets their own name and the names of those who opened their record (their own record lists them,
    offline too)."""
    names = {user["_id"]: user["display_name"]}
    if roles(user) <= {Role.RESIDENT}:
        actors = {e["actor"] for e in openings_about(couch, user["resident"])} if user.get("resident") else set()
        return {**user_names(couch, actors), **names}
    # Street-wide staff (a department, the administrator) see work from every community of the street.
    communities = user.get("communities") or ids_of_type(couch.main, "community")
    for community in communities:
        for row in couch.accounts.query("linli/users_by_community", key=community, include_docs="true",
                                        as_list=True):
            if roles(row["doc"]) - {Role.RESIDENT}:
                names[row["id"]] = row["doc"]["display_name"]
    return names


def names_of(couch: Couch, docs: list[dict[str, Any]]) -> dict[str, str]:
    """Display names of the residents and requesters these access requests mention, by id."""
    residents = get_many(couch.main, {d["resident"] for d in docs})
    return {**{i: r["name"] for i, r in residents.items()}, **user_names(couch, {d["requester"] for d in docs})}


@dataclass(frozen=True)
class GridSummary:
    id: str
    name: str
    households: int
    residents: int
    workers: list[str]
    volunteers: list[str]


@dataclass(frozen=True)
class CommunitySummary:
    id: str
    name: str
    grids: list[GridSummary]


def community_overview(couch: Couch, user: dict[str, Any]) -> list[CommunitySummary]:
    """The communities a secretary (or admin) oversees, each with its grids and counts."""
    if Role.ADMIN in roles(user):
        community_ids = ids_of_type(couch.main, "community")
    else:
        community_ids = list(user.get("communities", []))
    communities = get_many(couch.main, community_ids)
    grid_docs = [g for cid in community_ids for g in iter_view_docs(couch.main, "linli/by_place", [cid, "grid"])]
    counts = count_by(couch.main, "linli/by_place",
                      keys=[[g["_id"], t] for g in grid_docs for t in ("household", "resident")])
    staff: dict[str, dict[str, list[str]]] = {}
    for row in couch.accounts.query("linli/users_by_grid", keys=[g["_id"] for g in grid_docs]):
        bucket = staff.setdefault(row["key"], {"workers": [], "volunteers": []})
        bucket["workers" if "grid_worker" in row["value"]["roles"] else "volunteers"].append(row["value"]["name"])
    result = []
    for cid in community_ids:
        if cid not in communities:
            continue
        grids = [GridSummary(g["_id"], g["name"], counts.get((g["_id"], "household"), 0),
                             counts.get((g["_id"], "resident"), 0),
                             staff.get(g["_id"], {}).get("workers", []), staff.get(g["_id"], {}).get("volunteers", []))
                 for g in sorted((g for g in grid_docs if g["community"] == cid), key=lambda g: g["number"])]
        result.append(CommunitySummary(cid, communities[cid]["name"], grids))
    return result


def attention(couch: Couch, communities: list[str]) -> dict[str, list[dict[str, Any]]]:
    """What is still open in these communities, by type (the `by_place` view's "attention" rows: pending access
    requests, unresolved service requests and alerts, needs nobody has handled), each oldest first; one request
    per community."""
    found: dict[str, list[dict[str, Any]]] = {}
    for community in communities:
        for row in couch.main.query("linli/by_place", startkey=[community, "attention"],
                                    endkey=[community, "attention", {}], reduce="false", include_docs="true",
                                    as_list=True):
            if row.get("doc"):
                found.setdefault(row["key"][2], []).append(row["doc"])
    return found


def load_doc(couch: Couch, doc_id: str, type_name: str) -> dict[str, Any] | None:
    """The main-database document with this id if it exists and is of that type."""
    doc = get_or_none(couch.main, doc_id)
    return doc if doc and doc.get("type") == type_name else None


def refusal_to_store(couch: Couch, p: Principal, old: dict[str, Any] | None, new: dict[str, Any],
                     now: dt.datetime) -> str | None:
    """`access.write_refusal` with the documents it needs fetched (`access.write_ref_ids`, one request to each
    database): what a page asks before it stores a document, the rule the sync gateway holds phones to."""
    return write_refusal(p, old, new, write_refs(couch, new), now)


def write_refs(couch: Couch, new: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The documents `access.write_refusal` needs to judge storing `new` (`access.write_ref_ids`), by id."""
    ids = write_ref_ids(new)
    return {**get_many(couch.main, (i for i in ids if database_of(i) == MAIN_DB)),
            **get_many(couch.accounts, (i for i in ids if database_of(i) == ACCOUNTS_DB))}


def latest_reading(couch: Couch, device: str, metric: str) -> dict[str, Any] | None:
    """The device's newest reading of this metric (elderly safety's status line), or None."""
    rows = couch.main.query("linli/readings_by_device", as_list=True, startkey=[device, metric, {}],
                            endkey=[device, metric], descending="true", limit=1, include_docs="true")
    return rows[0]["doc"] if rows else None
