"""The dashboard (issue 18 items 1, 2, 8): the figures of an area (street, community, grid), a facet (all, one
department, one category) and a month range, read from the aggregates CouchDB keeps (server/services/figures.py):
the KPI catalogue with formula, denominator, period and target; response and close times with their bounds;
trends by month and the backlog by department as charts with their tables and CSV (Chinese headers, names);
the places one level down ranked by on-time share, leaving out those with fewer than 30 cases. And the published
months (item 7, server/services/snapshots.py), public."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crypto.envelope import b64url
from server.domain import figures as rules
from server.domain.access import Principal
from server.domain.declaration import Role
from server.domain.i18n import DEFAULT_LANG, translator
from server.security.firewall import Firewall
from server.services import figures, figures_cells, snapshots
from server.services import service_requests as sr
from server.services.figures import Scope
from server.store import couch as store
from server.store.couch import Couch, docs_of_type
from server.web import charts
from server.web.preparing import built_soon, preparing_until

MAX_MONTHS = 36  # a range longer than this is cut to its last MAX_MONTHS months
CATCH_UP_WAIT_SECONDS = 0.25  # how long a page waits for the aggregates to take in the latest changes (one catch-up
# of a few changes takes tens of milliseconds)


@dataclass(frozen=True)
class Places:
    """What a user may look at: areas with their names, and each area's areas one level down."""

    names: dict[str, str]
    areas: list[str]  # in the order the form lists them
    below: dict[str, list[str]]
    department: str | None = None  # department staff see their own department's figures only


def places_of(couch: Couch, p: Principal) -> Places:
    """An administrator: the street, its communities and grids; a secretary: her communities and their grids;
    department staff: their street, its communities and grids, for their department alone."""
    docs = {kind: sorted(docs_of_type(couch.main, kind), key=lambda d: (d.get("number", 0), d["_id"]))
            for kind in ("street", "community", "grid")}
    names = {d["_id"]: d["name"] for kind in docs.values() for d in kind}
    if p.has(Role.ADMIN) or (p.has(Role.DEPARTMENT_STAFF) and p.department):
        streets = [d["_id"] for d in docs["street"] if d["_id"] == p.street] or [d["_id"] for d in docs["street"]]
        communities = [d["_id"] for d in docs["community"] if d.get("street") in streets]
    elif p.has(Role.SECRETARY):
        streets, communities = [], [d["_id"] for d in docs["community"] if d["_id"] in p.communities]
    else:
        raise HTTPException(403)
    grids = {c: [g["_id"] for g in docs["grid"] if g["community"] == c] for c in communities}
    below = {s: communities for s in streets} | grids
    department = p.department if p.has(Role.DEPARTMENT_STAFF) and not p.has(Role.ADMIN) else None
    return Places(names, [*streets, *(a for c in communities for a in (c, *grids[c]))], below, department)


def facets_of(places: Places, departments: dict[str, str], categories: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The facets a user may choose ("" all); department staff: their department and its categories, no "all"."""
    facets = {"": "", **{f"department:{d}": n for d, n in departments.items()},
              **{f"category:{c}": d["name"] for c, d in categories.items()}}
    if places.department is None:
        return facets
    return {f: n for f, n in facets.items() if f == f"department:{places.department}"
            or (f.startswith("category:") and categories[f[9:]].get("department") == places.department)}


def scope_of(query: dict[str, str], places: Places, facets: dict[str, str], now: dt.datetime) -> Scope:
    """The scope a query asks for; what it does not say, or says wrong, is the default (the first area, the first
    facet: all, or a department's own; the last twelve months): a page, never an error."""
    area = query.get("area", "")
    facet = query.get("facet", "")
    first, last = figures.default_range(now)
    asked_first = figures.parse_month(query.get("from", "")) or first
    asked_last = figures.parse_month(query.get("to", "")) or last
    asked_first, asked_last = sorted((asked_first, asked_last))
    span = figures.months(asked_first, asked_last)[-MAX_MONTHS:]
    return Scope(area if area in places.areas else places.areas[0], facet if facet in facets else next(iter(facets)),
                 span[0], span[-1])


def _percent(share: float | None) -> str:
    return "" if share is None else f"{share * 100:.1f}%"


def _time_text(t: Callable[..., str], bounds: tuple[float, float | None] | None) -> str:
    if bounds is None:
        return ""
    low, high = (f"{b:g}" if b is not None else None for b in bounds)
    return t("fig_time_above", low=low) if high is None else t("fig_time_bound", low=low, high=high)


def routes(couch: Couch, current_user: Callable[[Request], Awaitable[dict[str, Any]]],
           render: Callable[..., Response], now: Callable[[], dt.datetime]) -> list[Route]:

    async def dashboard_page(request: Request) -> Response:
        p = Principal.of(await current_user(request))
        places = await run_in_threadpool(places_of, couch, p)
        if not places.areas:
            raise HTTPException(403)
        # The aggregates take in what changed since they were last kept (a few documents: done at once). A catch-up
        # that takes longer (many requests changed at once) goes on while the page shows the last count; before the
        # first count (a first start, a bulk load), the page says "preparing".
        catching_up = figures_cells.caught_up(couch)
        recent = await built_soon(catching_up, min(CATCH_UP_WAIT_SECONDS, store.INDEX_WAIT_SECONDS))
        if not recent and not await run_in_threadpool(figures_cells.counted, couch):
            waiting = await preparing_until(request, render, catching_up)
            if waiting is not None:
                return waiting
        departments = await run_in_threadpool(sr.department_names, couch)
        categories = await run_in_threadpool(sr.catalogue, couch, p.street or "", active_only=False)
        facets = facets_of(places, departments, categories)
        scope = scope_of(dict(request.query_params), places, facets, now())
        t = translator(request.cookies.get("lang", DEFAULT_LANG))
        below = places.below.get(scope.area, [])
        span = rules.months(scope.first, scope.last)
        # Every figure below adds up what this reads, once: the area's kept rows over the months, its backlogs.
        kept = await run_in_threadpool(figures.read, couch, scope.area, span, scope.facet, below)
        monthly = kept.by_month(span)
        backlog = kept.backlog if places.department is None else {
            d: n for d, n in kept.backlog.items() if d == places.department}
        if request.url.path.endswith(".csv"):
            table = "backlog" if request.query_params.get("table") == "backlog" else "trend"
            body = figures.backlog_csv(backlog, departments, t) if table == "backlog" else figures.trend_csv(monthly, t)
            name = f"linli-{table}.csv"
            return Response("\ufeff" + body, media_type="text/csv; charset=utf-8",  # BOM: Excel reads it as UTF-8
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})
        total = figures.Counts.total(c for _, c in monthly)  # the months already read, added up
        communities = places.below.get(scope.area, []) if scope.area.startswith("street:") else (
            [scope.area] if scope.area.startswith("community:") else
            [c for c, grids in places.below.items() if scope.area in grids])  # a grid's own community
        if places.department is not None:
            communities = []  # mediation, surveys and confirmed closures are counted by place, not by department
        total.counts.update(await run_in_threadpool(figures.evaluation_counts, couch, communities, scope, kept))
        per_area = kept.per_area(below)
        on_time = rules.KPI_BY_CODE["on_time"]
        ranked, unranked = rules.ranked({a: (on_time.cases(c.counts), on_time.value(c.counts))
                                         for a, c in per_area.items()})
        months = [m for m, _ in monthly]
        description = {"first": scope.first, "last": scope.last}

        def share_chart(chart_id: str, title: str, code: str) -> Any:
            kpi = rules.KPI_BY_CODE[code]
            return charts.share_line(chart_id, t(title), t("fig_chart_desc", title=t(title), **description), months,
                                     [kpi.value(c.counts) for _, c in monthly], kpi.target,
                                     t("fig_target_line", target=_percent(kpi.target)))

        trend_rows = [{"month": m, "requests": c.counts["requests"], "closed": c.counts["closed"],
                       "on_time": _percent(on_time.value(c.counts)),
                       "satisfied": _percent(rules.KPI_BY_CODE["satisfaction"].value(c.counts))} for m, c in monthly]
        return render(
            request, "dashboard.html", places=places, scope=scope, facets=facets, query=request.url.query,
            kpis=[{"kpi": k, "value": _percent(v), "cases": n, "counted": k.denominator in total.counts}
                  for k, v, n in figures.kpi_values(total.counts)],
            percent=_percent,
            times={which: {q: _time_text(t, total.percentile(which, q)) for q in (0.5, 0.9)}
                   for which in ("response", "close")},
            charts={
                "requests": charts.month_bars("chart-requests", t("fig_chart_requests"),
                                              t("fig_chart_desc", title=t("fig_chart_requests"), **description),
                                              months, [c.counts["requests"] for _, c in monthly]),
                "on_time": share_chart("chart-on-time", "fig_chart_on_time", "on_time"),
                "satisfaction": share_chart("chart-satisfaction", "fig_chart_satisfaction", "satisfaction"),
                "backlog": charts.bars_across("chart-backlog", t("fig_backlog"), t("fig_backlog"),
                                              [departments.get(d) or t("not_dispatched") for d in backlog],
                                              list(backlog.values())),
            },
            trend_rows=trend_rows, backlog=backlog, departments=departments,
            ranked=[(a, per_area[a]) for a in ranked], unranked=[(a, per_area[a]) for a in unranked],
            on_time=on_time, min_cases=rules.MIN_CASES_TO_RANK)

    return [Route("/dashboard", dashboard_page), Route("/dashboard.csv", dashboard_page)]


def snapshot_routes(firewall: Firewall, render: Callable[..., Response]) -> list[Route]:
    """The published months (issue 18 item 7), open to everyone signed in or not: `/figures` (a page) and
    `/figures.json` (what anyone checks a month against: counts, hash, filed seq, signature, the signing key)."""
    couch = firewall.couch

    def signing_key() -> str:
        return b64url(firewall.signer.key.public_key().public_bytes_raw())

    async def published_page(request: Request) -> Response:
        docs = await run_in_threadpool(snapshots.published, couch)
        if request.url.path.endswith(".json"):
            return JSONResponse({"signed_by": signing_key(), "snapshots": [
                {k: d[k] for k in ("_id", "community", "month", "version", "counts", "supervision", "corrects",
                                   "adds_supervision", "published_at", "hash", "filed_seq", "signature", "duplicates")
                 if k in d} for d in docs]})
        names = await run_in_threadpool(lambda: {d["_id"]: d["name"] for d in docs_of_type(couch.main, "community")})
        by_id = {d["_id"]: d for d in docs}
        rows = []
        for d in docs:
            n = d["counts"]
            on_time = rules.KPI_BY_CODE["on_time"].value(n)
            satisfied = rules.KPI_BY_CODE["satisfaction"].value(n)
            earlier = by_id.get(d.get("corrects", ""))
            changed = ([k for k in rules.COUNTS if earlier["counts"].get(k) != n.get(k)] if earlier else [])
            supervision = [(key, *pair) for key, pair in d.get("supervision", {}).items()]
            rows.append({"doc": d, "community": names.get(d["community"], d["community"]),
                         "on_time": _percent(on_time), "satisfied": _percent(satisfied), "supervision": supervision,
                         "corrects": earlier, "changed": changed})
        return render(request, "figures_published.html", rows=rows, signed_by=signing_key())

    return [Route("/figures", published_page), Route("/figures.json", published_page)]
