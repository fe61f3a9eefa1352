"""Mediation cases (issue 18 item 4), online, for the grid worker and the secretary (server/services/mediation.py).

- /mediations: the cases where they work, open first, and the mediation-success figure over them.
- /mediations/new?grid=…: open a case for a household's head (kind, parties, dispute: the last two sealed).
- /mediations/{key}: the case; POST …/open shows the parties and the dispute (filed as an opening of the resident's
  contact data); POST …/act records a session, the outcome, or the follow-up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from crypto.envelope import EnvelopeError
from server.domain.access import Principal, may_see
from server.domain.declaration import MEDIATION_KINDS, Role
from server.domain.errors import UserError, by_field
from server.domain.figures import KPI_BY_CODE
from server.security.firewall import AccessDenied, Firewall
from server.services import mediation
from server.store import queries
from server.store.couch import iter_view_docs
from server.web.lookup import visible_doc

Doc = dict[str, Any]
CurrentUser = Callable[[Request], Awaitable[Doc]]


def routes(firewall: Firewall, current_user: CurrentUser, render: Callable[..., Response],
           now: Callable[[], dt.datetime], device: Callable[[Request], str]) -> list[Route]:
    couch = firewall.couch

    async def staff(request: Request) -> Principal:
        p = Principal.of(await current_user(request))
        if not p.has(Role.GRID_WORKER, Role.SECRETARY):
            raise HTTPException(403)
        return p

    def case_of(p: Principal, key: str) -> Doc:
        return visible_doc(couch, p, f"mediation:{key}", "mediation", mediation.may_mediate)

    async def list_page(request: Request) -> Response:
        p = await staff(request)
        cases = await run_in_threadpool(mediation.cases_of, couch, p)
        grids = await run_in_threadpool(_grids_of, p)
        return render(request, "mediations.html", cases=cases, figure=mediation.success(cases), grids=grids,
                      target=KPI_BY_CODE["mediation_success"].target,
                      names=await run_in_threadpool(queries.user_names, couch, {c["mediator"] for c in cases}))

    def _grids_of(p: Principal) -> list[Doc]:
        places = sorted(p.communities) if p.has(Role.SECRETARY) else []
        found = [g for c in places for g in iter_view_docs(couch.main, "linli/by_place", [c, "grid"])]
        found += [g for g in (queries.load_doc(couch, g, "grid") for g in sorted(p.grids)) if g]
        return sorted({g["_id"]: g for g in found if may_see(p, g)}.values(), key=lambda g: g["_id"])

    def _households(p: Principal, grid_id: str) -> list[Doc]:
        grid = visible_doc(couch, p, grid_id, "grid")
        return [h for h in iter_view_docs(couch.main, "linli/by_place", [grid["_id"], "household"])
                if h.get("head") and may_see(p, h)]

    async def new_page(request: Request) -> Response:
        p = await staff(request)
        grid_id = request.query_params.get("grid", "")
        if not grid_id:
            return RedirectResponse("/mediations", status_code=303)
        households = await run_in_threadpool(_households, p, grid_id)
        values = {"household": "", "kind": "", "parties": "", "dispute": ""}
        errors: dict[str, Any] = {}
        if request.method == "POST":
            form = await request.form()
            values = {k: str(form.get(k, "")) for k in values}
            head = next((h["head"] for h in households if h["_id"] == values["household"]), None)
            resident = await run_in_threadpool(queries.load_doc, couch, head, "resident") if head else None
            if resident is None:
                errors = {"household": {"key": "err_required", "params": {}}}
            else:
                try:
                    case = await run_in_threadpool(mediation.open_case, firewall, p, resident, values["kind"],
                                                   values["parties"], values["dispute"], now())
                except mediation.MediationError as bad:
                    if bad.status == 403:
                        raise HTTPException(403) from None
                    errors = by_field(bad.errors)
                else:
                    return RedirectResponse(f"/mediations/{case['_id'].split(':', 1)[1]}", status_code=303)
        return render(request, "mediation_new.html", 400 if errors else 200, households=households, grid=grid_id,
                      kinds=MEDIATION_KINDS, values=values, errors=errors)

    async def detail(request: Request, opened: dict[str, Any] | None = None, error: str | None = None,
                     errors: dict[str, Any] | None = None, note: str = "") -> Response:
        p = await staff(request)
        case = await run_in_threadpool(case_of, p, request.path_params["key"])
        names = await run_in_threadpool(queries.user_names, couch,
                                        {case["mediator"], *(s["by"] for s in case["sessions"])})
        household = await run_in_threadpool(queries.load_doc, couch, case["household"], "household")
        return render(request, "mediation.html", 400 if errors else 200, case=case, names=names,
                      address=(household or {}).get("address", ""), opened=opened, error=error,
                      errors=errors or {}, outcomes=mediation.OUTCOMES, follow_ups=mediation.FOLLOW_UPS, note=note)

    async def reveal(request: Request) -> Response:
        p = await staff(request)
        case = await run_in_threadpool(case_of, p, request.path_params["key"])
        resident = await run_in_threadpool(queries.load_doc, couch, case["resident"], "resident")
        if resident is None:
            raise HTTPException(404)
        try:
            opened = await run_in_threadpool(lambda: firewall.open_mediation(p, resident, case, device=device(request),
                                                                             now=now()))
        except AccessDenied as denied:
            return await detail(request, error=denied.reason)
        except EnvelopeError:
            return await detail(request, error="fw_tampered")
        return await detail(request, opened=opened)

    async def act(request: Request) -> Response:
        p = await staff(request)
        case = await run_in_threadpool(case_of, p, request.path_params["key"])
        form = await request.form()
        action = str(form.get("action", ""))
        try:
            if action == "session":
                await run_in_threadpool(lambda: mediation.add_session(
                    firewall, p, case, now(), str(form.get("note", "")), device=device(request)))
            elif action == "conclude":
                await run_in_threadpool(mediation.conclude, couch, p, case, str(form.get("outcome", "")), now())
            elif action == "follow_up":
                await run_in_threadpool(mediation.follow_up, couch, p, case, str(form.get("result", "")), now())
            else:
                raise mediation.MediationError("action", "err_unknown_action", action=action[:40])
        except UserError as bad:  # MediationError, or the minutes grown past their length (ValidationError)
            if bad.status == 403:
                raise HTTPException(403) from None
            return await detail(request, errors=by_field(bad.errors), note=str(form.get("note", "")))
        return RedirectResponse(f"/mediations/{request.path_params['key']}", status_code=303)

    return [
        Route("/mediations", list_page),
        Route("/mediations/new", new_page, methods=["GET", "POST"]),
        Route("/mediations/{key}", detail),
        Route("/mediations/{key}/open", reveal, methods=["POST"]),
        Route("/mediations/{key}/act", act, methods=["POST"]),
    ]
