"""Offers of help and matches (issue 17, item 4; server/services/matching.py), online only:

- `/offers`: the community's offers, and the form to offer help: a volunteer or a resident for themselves (in
  their grid), the secretary for one of the community's organisations (to the whole community);
  `/offers/{key}/edit` and `/offers/{key}/withdraw` for its keeper (and the secretary).
- `/matches`: the proposals p answers, each with its factors in plain words: a resident's own needs', a
  volunteer's or keeper's offers', and grid staff's (for the residents of the needs they handle).
- `/matching`: grid staff run the matcher over the open needs they handle; needs it cannot match, and why.

Online only, for volunteers too: a proposal is answered when it is put, and an answer counts only against the
server's current state (the other side may have answered, the need been matched elsewhere, the offer filled), so
an answer queued on a phone could only turn out stale later. Once both accept, the volunteer's task is on their
phone and works offline as every task (server/web/task_pages.py).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server.domain import matching as rules
from server.domain.access import Principal, may_see
from server.domain.declaration import HELP_KINDS, SPOKEN_LANGUAGES, Role
from server.domain.errors import UserError, by_field
from server.services import matching
from server.store import queries
from server.store.couch import Couch, get_many, iter_view_docs
from server.web.forms import weekly_hours
from server.web.need_pages import need_names

Doc = dict[str, Any]
HOURS_ROWS = 3  # rows of weekly hours the offer form shows
OFFER_FIELDS = ("title", "help_kind", "capacity", "building", "skills", "organisation")


def _offer_values(form: FormData) -> dict[str, Any]:
    """The offer form as the service takes it: languages a list, capacity a number, hours records (rows left
    empty skipped; a row half filled kept, to be refused by name)."""
    values: dict[str, Any] = {k: str(form.get(k, "")) for k in OFFER_FIELDS}
    values["languages"] = [str(v) for v in form.getlist("languages")]
    capacity = values["capacity"].strip()
    values["capacity"] = int(capacity) if capacity.isdigit() and len(capacity) < 4 else None
    values["skills"] = [s for s in re.split(r"[,，、]", values["skills"]) if s.strip()]
    values["hours"] = weekly_hours(form, HOURS_ROWS)
    return values



OFFER_DONE = {"saved": "offer_saved", "updated": "offer_updated", "withdrawn": "offer_withdrawn_done"}


def _offer_shown(offer: Doc | None) -> dict[str, Any] | None:
    """An offer being edited as the form's values (None: a new one)."""
    if offer is None:
        return None
    return {**{k: offer.get(k, "") for k in OFFER_FIELDS}, "skills": offer.get("skills", []),
            "languages": offer["languages"], "hours": offer["hours"], "capacity": offer["capacity"]}


def _form_shown(values: dict[str, Any] | None) -> dict[str, Any]:
    """What the form shows again after an error (or empty)."""
    if values is None:
        return {"title": "", "help_kind": HELP_KINDS[0], "capacity": "1", "building": "", "skills": "",
                "languages": ["putonghua"], "hours": [], "organisation": ""}
    return {**values, "capacity": "" if values["capacity"] is None else str(values["capacity"]),
            "skills": "，".join(values["skills"])}


def _organisations(couch: Couch, p: Principal) -> list[Doc]:
    return sorted((o for c in sorted(p.communities) for o in iter_view_docs(couch.main, "linli/by_place",
                                                                           [c, "organisation"])),
                  key=lambda o: o["name"])


def _offer_place(couch: Couch, p: Principal, user: Doc, values: dict[str, Any]) -> tuple[Doc, tuple[str, str]]:
    """Where an offer from p reaches and whose it is: an organisation's (the secretary), or p's own, in their grid
    (a volunteer's first grid, a resident's own)."""
    if p.has(Role.SECRETARY):
        organisation = next((o for o in _organisations(couch, p) if o["_id"] == values["organisation"]), None)
        if organisation is None:
            raise matching.MatchError("organisation", "offer_provider_unknown")
        community = queries.load_doc(couch, organisation["community"], "community")
        if community is None:
            raise matching.MatchError("organisation", "offer_provider_unknown")
        return community, (organisation["_id"], organisation["name"])
    grid_id = sorted(p.grids)[0] if p.has(Role.VOLUNTEER) and p.grids else None
    if grid_id is None and p.resident:
        resident = queries.load_doc(couch, p.resident, "resident")
        grid_id = resident["grid"] if resident else None
    grid = queries.load_doc(couch, grid_id, "grid") if grid_id else None
    if grid is None:
        raise HTTPException(403)
    return grid, (p.user_id, user["display_name"])


def may_offer(p: Principal) -> bool:
    return p.has(Role.VOLUNTEER, Role.SECRETARY) or p.resident is not None


def _match_names(couch: Couch, p: Principal, shown: list[Doc]) -> dict[str, str]:
    """The residents' names of these matches' needs, where p may see them (grid staff, the resident), and the
    grids' names."""
    names = need_names(couch, p, shown)
    grids = get_many(couch.main, {m["grid"] for m in shown})
    return {**names, **{i: g["name"] for i, g in grids.items()}}


def routes(couch: Couch, current_user: Callable[[Request], Awaitable[Doc]], render: Callable[..., Response],
           now: Callable[[], dt.datetime]) -> list[Route]:
    async def offers_page(request: Request) -> Response:
        """The community's offers and the form to offer help; /offers/{key}/edit: the same form for an offer p
        keeps (or, the secretary, an organisation's), filled with it."""
        user = await current_user(request)
        p = Principal.of(user)
        editing = None
        if "key" in request.path_params:
            try:
                editing = await run_in_threadpool(matching.managed_offer, couch, p,
                                                  "offer:" + request.path_params["key"])
            except UserError as refused:
                raise HTTPException(refused.status) from None
        values, errors, status = _offer_shown(editing), {}, 200
        if request.method == "POST":
            if not may_offer(p):
                raise HTTPException(403)
            values = _offer_values(await request.form())
            try:
                if editing:
                    await run_in_threadpool(matching.edit_offer, couch, p, editing["_id"], values, now())
                else:
                    place, provider = await run_in_threadpool(_offer_place, couch, p, user, values)
                    offer = matching.new_offer(p, values, place, provider, now())
                    await run_in_threadpool(couch.main.save, offer)
            except UserError as bad:
                errors, status = by_field(bad.errors), bad.status
            else:
                return RedirectResponse(f"/offers?done={'updated' if editing else 'saved'}", status_code=303)
        communities = set(p.communities)
        if p.resident:
            resident = await run_in_threadpool(queries.load_doc, couch, p.resident, "resident")
            communities |= {resident["community"]} if resident else set()
        shown = await run_in_threadpool(
            lambda: [o for c in sorted(communities) for o in matching.offers_in(couch, c) if may_see(p, o)])
        shown.sort(key=lambda o: o["created_at"], reverse=True)
        organisations = await run_in_threadpool(_organisations, couch, p) if p.has(Role.SECRETARY) and not editing \
            else []
        return render(request, "offers.html", status, offers=shown, may_offer=may_offer(p), editing=editing,
                      managed={o["_id"] for o in shown if o["status"] == "active" and matching.may_manage_offer(p, o)},
                      organisations=organisations, help_kinds=list(HELP_KINDS), languages=list(SPOKEN_LANGUAGES),
                      values=_form_shown(values), errors=errors, rows=list(range(1, HOURS_ROWS + 1)),
                      done=OFFER_DONE.get(request.query_params.get("done", "")))

    async def withdraw(request: Request) -> Response:
        p = Principal.of(await current_user(request))
        try:
            await run_in_threadpool(matching.withdraw_offer, couch, p, "offer:" + request.path_params["key"], now())
        except UserError as refused:
            raise HTTPException(refused.status) from None
        return RedirectResponse("/offers?done=withdrawn", status_code=303)

    async def matches_page(request: Request, error: dict[str, Any] | None = None, status: int = 200) -> Response:
        user = await current_user(request)
        p = Principal.of(user)
        resident = await run_in_threadpool(queries.load_doc, couch, p.resident, "resident") if p.resident else None
        shown = await run_in_threadpool(matching.matches_of, couch, p, resident)
        names = await run_in_threadpool(_match_names, couch, p, shown)
        sides = {m["_id"]: matching.side_of(p, m) for m in shown}
        return render(request, "matches.html", status, matches=shown, names=names, sides=sides, errors=error or {},
                      staff=matching.may_run(p), notice=request.query_params.get("done", ""))

    async def answer(request: Request) -> Response:
        p = Principal.of(await current_user(request))
        accept = request.url.path.endswith("/accept")
        match_id = "match:" + request.path_params["key"]
        try:
            saved = await run_in_threadpool(matching.answer, couch, p, match_id, accept, now())
        except UserError as bad:
            if bad.status == 404:
                raise
            return await matches_page(request, by_field(bad.errors), bad.status)
        done = "declined" if not accept else "matched" if saved["status"] == "accepted" else "accepted"
        return RedirectResponse(f"/matches?done={done}", status_code=303)

    async def done(request: Request) -> Response:
        p = Principal.of(await current_user(request))
        try:
            await run_in_threadpool(matching.mark_done, couch, p, "match:" + request.path_params["key"], now())
        except UserError as bad:
            if bad.status == 404:
                raise
            return await matches_page(request, by_field(bad.errors), bad.status)
        return RedirectResponse("/matches?done=given", status_code=303)

    async def board(request: Request) -> Response:
        p = Principal.of(await current_user(request))
        if not matching.may_run(p):
            raise HTTPException(403)
        ran = None
        if request.method == "POST":
            plans = await run_in_threadpool(matching.run, couch, p, now())
            ran = {"proposed": sum(len(x.proposals) for x in plans.values()),
                   "unmatched": sum(len(x.unmatched) for x in plans.values())}
        unmatched: list[tuple[Doc, list[rules.Words]]] = []
        for community in sorted(p.communities):
            plan, found, _ = await run_in_threadpool(matching.plan_for, couch, p, community)
            unmatched += [(n, plan.unmatched[n["_id"]]) for n in found if n["_id"] in plan.unmatched]
        waiting = [m for m in await run_in_threadpool(matching.matches_of, couch, p) if m["status"] == "proposed"]
        names = await run_in_threadpool(_match_names, couch, p, [n for n, _ in unmatched] + waiting)
        return render(request, "matching.html", unmatched=unmatched, waiting=waiting, names=names, ran=ran)

    return [
        Route("/offers", offers_page, methods=["GET", "POST"]),
        Route("/offers/{key}/edit", offers_page, methods=["GET", "POST"]),
        Route("/offers/{key}/withdraw", withdraw, methods=["POST"]),
        Route("/matches", matches_page),
        Route("/matches/{key}/accept", answer, methods=["POST"]),
        Route("/matches/{key}/decline", answer, methods=["POST"]),
        Route("/matches/{key}/done", done, methods=["POST"]),
        Route("/matching", board, methods=["GET", "POST"]),
    ]
