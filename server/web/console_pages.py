"""The secretary's console (plan §5.1): who works in which grid, and the filing log with its audit report.

- /staff: the community's grid workers and volunteers with their grids; the secretary ticks a person's
  grids. The user document changes at once (every page reads it), the person's phone key grants follow
  (`grants.sync_user`), and the sync gateway re-scopes their replica by itself (sync/README.md, "Sequences").
- /phones: every phone the community's people enrolled (a phone key: when, which phone, how many residents'
  keys it holds), and "revoke": the phone key is revoked and its key grants deleted, both filed
  (server/security/grants.py). A scripted enrolment shows here like any other.
- /audit: the community's filing log, newest first, by person and date; /audit/report: the audit report
  (server/security/audit_report.py) over the last days, findings first.

Secretaries see their own communities only (the administrator sees every community's log, and assigns
nobody: that is the secretary's job).
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pycouchdb.exceptions import Conflict
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.domain.access import Principal
from server.domain.declaration import Role, validate
from server.domain.entitlement import REVEAL_PURPOSES
from server.domain.safety import SAFETY_PURPOSE
from server.security import account_changes, audit_report, filing, grants
from server.security.firewall import Firewall
from server.store import queries
from server.store.config import LOCAL_TZ
from server.store.couch import Couch, get_many, get_or_none, ids_of_type, iter_view_docs
from server.web.preparing import preparing

Doc = dict[str, Any]
logger = logging.getLogger("linli")
STAFF_ROLES = (Role.GRID_WORKER.value, Role.VOLUNTEER.value)
MAX_REPORT_DAYS = 366
SHOWN_SEQS = 10  # entry numbers a finding lists before "…"
# Purposes the filing log holds as keys (shown translated); anything else is a person's own words.
FILED_PURPOSES = [*REVEAL_PURPOSES, "own_record", "search_by_number", "account_activation", grants.PHONE_ENROLLED,
                  grants.PHONE_REVOKED, grants.ENTITLEMENT_CHANGED, grants.APPROVAL_ENDED, SAFETY_PURPOSE,
                  account_changes.FILED_PURPOSE]


class ConsoleError(ValueError):
    """Refused input; `reason` is a UI text key, `status` the HTTP status."""

    def __init__(self, reason: str, status: int = 400) -> None:
        self.reason, self.status = reason, status
        super().__init__(reason)


# ---------------------------------------------------------------- staff

def _grids_of(couch: Couch, community: str) -> list[Doc]:
    return sorted(iter_view_docs(couch.main, "linli/by_place", [community, "grid"]), key=lambda g: g["number"])


def _members(couch: Couch, community: str) -> list[Doc]:
    """Every account naming the community (staff, secretaries), active or not."""
    rows = couch.accounts.query("linli/users_by_community", key=community, include_docs="true", as_list=True)
    return [row["doc"] for row in rows]


def staff_overview(couch: Couch, communities: list[str]) -> list[Doc]:
    """Per community: its grids, and its active grid workers and volunteers with their grids (no secrets)."""
    names = get_many(couch.main, communities)
    overview = []
    for community in communities:
        staff = [{"_id": u["_id"], "username": u["username"], "display_name": u["display_name"],
                  "roles": [r for r in u["roles"] if r in STAFF_ROLES], "grids": u.get("grids", [])}
                 for u in _members(couch, community) if u.get("active") and set(u["roles"]) & set(STAFF_ROLES)]
        staff.sort(key=lambda s: (Role.GRID_WORKER.value not in s["roles"], s["display_name"]))
        overview.append({"_id": community, "name": names.get(community, {}).get("name", community),
                         "grids": [{"_id": g["_id"], "name": g["name"]} for g in _grids_of(couch, community)],
                         "staff": staff})
    return overview


def assign(firewall: Firewall, p: Principal, user_id: str, community: str, chosen: list[str],
           now: dt.datetime) -> tuple[Doc, bool]:
    """Set which of the community's grids a grid worker or volunteer works in (their grids elsewhere stay);
    then their phones' key grants follow. Returns the user document and whether it changed."""
    couch = firewall.couch
    if not (p.has(Role.SECRETARY) and community in p.communities):
        raise ConsoleError("staff_not_your_community", 403)
    user = get_or_none(couch.accounts, user_id) if user_id.startswith("user:") else None
    if (user is None or user.get("type") != "user" or community not in user.get("communities", [])
            or not set(user["roles"]) & set(STAFF_ROLES)):
        raise ConsoleError("staff_not_member")
    grids = [g["_id"] for g in _grids_of(couch, community)]
    if not set(chosen) <= set(grids):
        raise ConsoleError("staff_grid_unknown")
    before = user.get("grids", [])
    after = [g for g in before if g not in grids] + [g for g in grids if g in chosen]
    if after == before:
        return user, False
    user = {**user, "grids": after}
    validate(user)
    try:
        user = couch.accounts.save(user)
    except Conflict:
        raise ConsoleError("staff_conflict", 409) from None
    logger.info("%s set the grids of %s in %s: %s -> %s", p.user_id, user_id, community, before, after)
    grants.sync_user(firewall, user, now)
    return user, True


# ---------------------------------------------------------------- phones

def enrolled_phones(couch: Couch, communities: list[str]) -> list[Doc]:
    """Per community: each member's phone keys, newest first (revoked ones too), with the keys each holds."""
    names = get_many(couch.main, communities)
    overview = []
    for community in communities:
        phones = []
        for user in _members(couch, community):
            held = Counter(g["phone_key"] for g in grants.grants_of(couch, user["_id"]))
            prefix = f"phone_key:{user['_id'].split(':', 1)[1]}."
            for row in couch.accounts.all(startkey=prefix, endkey=prefix + "\ufff0", as_list=True):
                phone = row["doc"]
                phones.append({"_id": phone["_id"], "user": user["_id"], "display_name": user["display_name"],
                               "username": user["username"], "label": phone.get("label", ""),
                               "enrolled_from": phone.get("enrolled_from", ""),
                               "created_at": phone["created_at"], "revoked": phone["revoked"],
                               "revoked_at": phone.get("revoked_at"), "revoked_by": phone.get("revoked_by"),
                               "keys": held[phone["_id"]]})
        overview.append({"_id": community, "name": names.get(community, {}).get("name", community),
                         "phones": sorted(phones, key=lambda ph: (ph["revoked"], _newest_first(ph["created_at"])))})
    return overview


def _newest_first(at: str) -> float:
    return -dt.datetime.fromisoformat(at).timestamp()


def revoke_phone(firewall: Firewall, p: Principal, phone_key_id: str, now: dt.datetime) -> Doc:
    """A secretary revokes a phone of someone in their communities: its key is revoked, its grants deleted
    (filed as keys_withdrawn). Returns the phone's user."""
    couch = firewall.couch
    phone = get_or_none(couch.accounts, phone_key_id) if phone_key_id.startswith("phone_key:") else None
    user = get_or_none(couch.accounts, phone["user"]) if phone and phone.get("type") == "phone_key" else None
    if user is None or not set(user.get("communities", [])) & set(p.communities) or not p.has(Role.SECRETARY):
        raise ConsoleError("phones_not_yours", 404)
    if not grants.unregister_phone(firewall, user, phone_key_id, now, by=p.user_id):
        raise ConsoleError("phones_already_revoked", 409)
    logger.info("%s revoked phone key %s of %s", p.user_id, phone_key_id, user["_id"])
    return user


# ---------------------------------------------------------------- filing log

PAGE_SIZE = queries.PAGE_SIZE


def _at(entry: Doc) -> dt.datetime:
    at = dt.datetime.fromisoformat(entry["at"])
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)  # a phone's report may name no zone: take it as UTC


def filing_log(couch: Couch, communities: Iterable[str], *, actor: str = "", start: dt.date | None = None,
               end: dt.date | None = None, offset: int = 0) -> tuple[list[Doc], int | None]:
    """One page of the communities' filing logs, newest first, filtered by who and by local date; and the
    offset of the next page (None on the last). Each log is read newest first a page at a time, only as far
    as this page needs."""
    def wanted(entry: Doc) -> bool:
        day = _at(entry).astimezone(LOCAL_TZ).date()
        return ((not actor or entry["actor"] == actor) and (start is None or day >= start)
                and (end is None or day <= end))

    merged = heapq.merge(*(filing.iter_entries(couch, c, newest_first=True) for c in communities), key=_at,
                         reverse=True)
    page = list(itertools.islice(filter(wanted, merged), offset, offset + PAGE_SIZE + 1))
    return page[:PAGE_SIZE], offset + PAGE_SIZE if len(page) > PAGE_SIZE else None


def people_of(couch: Couch, communities: list[str]) -> list[Doc]:
    """Everyone with an account in these communities, for the log's "who" filter: id and name only."""
    people = {u["_id"]: u["display_name"] for c in communities for u in _members(couch, c)}
    return [{"_id": i, "display_name": n} for i, n in sorted(people.items(), key=lambda kv: kv[1])]


def entry_names(couch: Couch, entries: list[Doc]) -> dict[str, str]:
    """Display names of the people, residents, communities and matters (a published vote) the entries name, by id."""
    named = get_many(couch.main, {e["target"] for e in entries} | {e["community"] for e in entries})
    people = {e["actor"] for e in entries} | {e["target"] for e in entries
                                              if e["action"] in account_changes.ACCOUNT_ACTIONS}
    return {**{i: d.get("name") or d.get("title", i) for i, d in named.items()}, **queries.user_names(couch, people)}


def report_context(report: audit_report.Report) -> Doc:
    """The report as the page shows it: plain values only (the template contract)."""
    return {
        "community": report.community, "start": report.start.isoformat(), "end": report.end.isoformat(),
        "entries": report.entries,
        "actors": [{"actor": actor, "opens": s.opens, "residents": len(s.residents),
                    "purposes": [{"purpose": purpose, "count": n} for purpose, n in s.purposes.most_common(3)]}
                   for actor, s in sorted(report.actors.items(), key=lambda kv: -kv[1].opens)],
        "findings": [{"actor": f.actor, "kind": f.kind, "count": len(f.seqs),
                      "seqs": ", ".join(map(str, f.seqs[:SHOWN_SEQS])) + (" …" if len(f.seqs) > SHOWN_SEQS else "")}
                     for f in report.findings],
        "account_changes": [{"actor": actor, "count": n} for actor, n in sorted(report.account_changes.items())],
        "head": report.head and {k: report.head[k] for k in ("seq", "hash", "signature")},
    }


def _date_param(request: Request, name: str) -> dt.date | None:
    raw = request.query_params.get(name, "").strip()
    try:
        return dt.date.fromisoformat(raw) if raw else None
    except ValueError:
        raise ConsoleError("audit_date_format") from None


# ---------------------------------------------------------------- pages

CurrentUser = Callable[[Request], Awaitable[Doc]]
Render = Callable[..., Response]


def routes(firewall: Firewall, current_user: CurrentUser, render: Render,
           now: Callable[[], dt.datetime]) -> list[Route]:
    couch = firewall.couch

    async def secretary(request: Request) -> Principal:
        p = Principal.of(await current_user(request))
        if not p.has(Role.SECRETARY):
            raise HTTPException(403)
        return p

    async def overseen(request: Request) -> list[str]:
        """The communities whose filing logs this user may read."""
        p = Principal.of(await current_user(request))
        if p.has(Role.ADMIN):
            return await run_in_threadpool(ids_of_type, couch.main, "community")
        if p.has(Role.SECRETARY):
            return sorted(p.communities)
        raise HTTPException(403)

    async def staff_page(request: Request) -> Response:
        p = await secretary(request)
        saved = error = None
        status = 200
        if request.method == "POST":
            form = await request.form()
            try:
                user, changed = await run_in_threadpool(
                    assign, firewall, p, str(form.get("user", "")), str(form.get("community", "")),
                    [str(g) for g in form.getlist("grids")], now())
                saved = user["display_name"] if changed else None
            except ConsoleError as refused:
                if refused.status == 403:
                    raise HTTPException(403) from None
                error, status = refused.reason, refused.status
        communities = await run_in_threadpool(staff_overview, couch, sorted(p.communities))
        return render(request, "staff.html", status, communities=communities, saved=saved, error=error)

    async def phones_page(request: Request) -> Response:
        p = await secretary(request)
        revoked = error = None
        status = 200
        if request.method == "POST":
            form = await request.form()
            try:
                user = await run_in_threadpool(revoke_phone, firewall, p, str(form.get("phone_key", ""))[:200], now())
                revoked = user["display_name"]
            except ConsoleError as refused:
                if refused.status == 404:
                    raise HTTPException(404) from None
                error, status = refused.reason, refused.status
        communities = await run_in_threadpool(enrolled_phones, couch, sorted(p.communities))
        return render(request, "phones.html", status, communities=communities, revoked=revoked, error=error)

    async def audit_page(request: Request) -> Response:
        communities = await overseen(request)
        waiting = await preparing(request, render, couch.accounts, "users_by_community")  # the "who" filter's
        if waiting is not None:
            return waiting
        filters = {name: request.query_params.get(name, "").strip()[:100] for name in ("actor", "start", "end")}
        entries: list[Doc] = []
        next_offset = error = None
        try:
            start, end = _date_param(request, "start"), _date_param(request, "end")
            if start and end and start > end:
                raise ConsoleError("audit_date_order")
            offset = request.query_params.get("offset", "0")
            if not offset.isdigit():
                raise ConsoleError("audit_offset")
            entries, next_offset = await run_in_threadpool(
                filing_log, couch, communities, actor=filters["actor"], start=start, end=end, offset=int(offset))
        except ConsoleError as bad:
            error = bad.reason
        names = await run_in_threadpool(entry_names, couch, entries)
        people = await run_in_threadpool(people_of, couch, communities)
        return render(request, "audit.html", 400 if error else 200, view="log", entries=entries, names=names,
                      people=people, filters=filters, next_offset=next_offset, error=error,
                      several=len(communities) > 1, purposes_known=FILED_PURPOSES,
                      account_actions=account_changes.ACCOUNT_ACTIONS)

    async def report_page(request: Request) -> Response:
        communities = await overseen(request)
        raw = request.query_params.get("days", "30")
        days = int(raw) if raw.isdigit() else 0
        if not 1 <= days <= MAX_REPORT_DAYS:
            return render(request, "audit.html", 400, view="report", reports=[], names={}, days=raw,
                          error="audit_days_range", purposes_known=FILED_PURPOSES)
        end = now().astimezone(LOCAL_TZ).date()
        start = end - dt.timedelta(days=days - 1)
        reports = await run_in_threadpool(lambda: [
            report_context(audit_report.for_community(couch, firewall.signer.anchor, c, start, end, LOCAL_TZ))
            for c in communities])
        ids = {a["actor"] for r in reports for a in [*r["actors"], *r["account_changes"]]}
        names = {**await run_in_threadpool(queries.user_names, couch, ids),
                 **{c: d["name"] for c, d in (await run_in_threadpool(get_many, couch.main, communities)).items()}}
        return render(request, "audit.html", view="report", reports=reports, names=names, days=str(days), error=None,
                      purposes_known=FILED_PURPOSES)

    return [
        Route("/staff", staff_page, methods=["GET", "POST"]),
        Route("/phones", phones_page, methods=["GET", "POST"]),
        Route("/audit", audit_page),
        Route("/audit/report", report_page),
    ]
