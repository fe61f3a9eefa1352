"""The monthly survey's sample and its answers at the door (issue 18 item 5; server/services/survey.py), online.

- /survey/sample: the secretary draws this month's sample of her community's households, stratified by grid, and
  hands households not yet answered to volunteers of their grid (POST /survey/sample/hand).
- /survey/door: a volunteer or grid worker's sampled households this month (their grids, those they may see),
  each with a form for the answer given at the door, with the resident's consent.
The published page stays /survey/results (server/web/request_pages.py).
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

from server.domain.access import Principal
from server.domain.declaration import Role
from server.domain.errors import by_field
from server.services import survey, tasks
from server.store.config import LOCAL_TZ
from server.store.couch import Couch, get_many, get_or_none
from server.web.lookup import visible_doc

Doc = dict[str, Any]
DEFAULT_SAMPLE = 100


def routes(couch: Couch, current_user: Callable[[Request], Awaitable[Doc]], render: Callable[..., Response],
           now: Callable[[], dt.datetime]) -> list[Route]:
    async def sample_page(request: Request) -> Response:
        p = Principal.of(await current_user(request))
        if not p.has(Role.SECRETARY):
            raise HTTPException(403)
        errors: dict[str, Any] = {}
        size = str(DEFAULT_SAMPLE)
        if request.method == "POST":
            form = await request.form()
            size = str(form.get("size", ""))
            community = await run_in_threadpool(get_or_none, couch.main, str(form.get("community", "")))
            try:
                if community is None or community.get("type") != "community":
                    raise survey.SurveyError("size", "err_survey_secretary", status=403)
                await run_in_threadpool(survey.draw_sample, couch, p, community,
                                        int(size) if size.isdigit() else 0, now(), LOCAL_TZ)
            except survey.SurveyError as bad:
                if bad.status == 403:
                    raise HTTPException(403) from None
                errors = by_field(bad.errors)
        return await sample_answer(request, p, errors, size)

    async def sample_answer(request: Request, p: Principal, errors: dict[str, Any], size: str) -> Response:
        month = survey.month_of(now(), LOCAL_TZ)
        communities = await run_in_threadpool(get_many, couch.main, sorted(p.communities))
        samples = await run_in_threadpool(get_many, couch.main,
                                          [survey.sample_id(c, month) for c in sorted(p.communities)])
        # Each sample's households not yet answered, to hand to a volunteer of their grid.
        answered = {s["community"]: set(s.get("answered", [])) for s in samples.values()}
        waiting = {s["community"]: [e for e in s["households"] if e["household"] not in answered[s["community"]]]
                   for s in samples.values()}
        households = await run_in_threadpool(get_many, couch.main, [e["household"] for w in waiting.values()
                                                                     for e in w])
        grids = sorted({e["grid"] for w in waiting.values() for e in w})
        volunteers = {g: await run_in_threadpool(tasks.volunteers_of, couch, g) for g in grids}
        names = {v: name for grid in volunteers.values() for v, name in grid}
        looked_after = {i: [names[v] for v in h.get("volunteers", []) if v in names] for i, h in households.items()}
        return render(request, "survey_sample.html", 400 if errors else 200, errors=errors, size=size, month=month,
                      communities=[(i, d["name"]) for i, d in sorted(communities.items())],
                      samples={s["community"]: s for s in samples.values()}, households=households,
                      waiting={c: sorted(w, key=lambda e: (e["grid"], households.get(e["household"], {}).get(
                          "address", ""))) for c, w in waiting.items()}, volunteers=volunteers,
                      looked_after=looked_after)

    async def hand_page(request: Request) -> Response:
        p = Principal.of(await current_user(request))
        if not p.has(Role.SECRETARY):
            raise HTTPException(403)
        form = await request.form()
        try:
            await run_in_threadpool(survey.hand_to_volunteer, couch, p, str(form.get("household", "")),
                                    str(form.get("volunteer", "")), now(), LOCAL_TZ)
        except survey.SurveyError as bad:
            if bad.status == 403:
                raise HTTPException(403) from None
            return await sample_answer(request, p, by_field(bad.errors), str(DEFAULT_SAMPLE))
        return RedirectResponse("/survey/sample", status_code=303)

    async def door_page(request: Request) -> Response:
        p = Principal.of(await current_user(request))
        if not p.has(Role.VOLUNTEER, Role.GRID_WORKER):
            raise HTTPException(403)
        errors: dict[str, Any] = {}
        typed = {"household": "", "overall": ""}
        if request.method == "POST":
            form = await request.form()
            typed = {"household": str(form.get("household", "")), "overall": str(form.get("overall", ""))}
            household = await run_in_threadpool(visible_doc, couch, p, typed["household"], "household")
            try:
                await run_in_threadpool(survey.answer_at_door, couch, p, household,
                                        int(typed["overall"]) if typed["overall"].isdigit() else 0,
                                        "consent" in form, now(), LOCAL_TZ)
            except survey.SurveyError as bad:
                if bad.status == 403:
                    raise HTTPException(403) from None
                errors = by_field(bad.errors)
            else:
                typed = {"household": "", "overall": ""}
        rows = await run_in_threadpool(survey.door_list, couch, p, now(), LOCAL_TZ)
        return render(request, "survey_door.html", 400 if errors else 200, rows=rows, errors=errors, typed=typed,
                      month=survey.month_of(now(), LOCAL_TZ))

    return [
        Route("/survey/sample", sample_page, methods=["GET", "POST"]),
        Route("/survey/sample/hand", hand_page, methods=["POST"]),
        Route("/survey/door", door_page, methods=["GET", "POST"]),
    ]
