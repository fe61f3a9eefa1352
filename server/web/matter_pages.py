"""Matters and votes (issue 15), online: the secretary opens and closes, voters vote on their own page, the
result is published to anyone with its link.

- /matters: the community's matters (people who work there: `access.may_see`; a resident: their own record's
  community); /matters/new: the secretary opens one (server/services/deliberation.py freezes its roll).
- /matters/{key}: the matter, the signed-in voter's ballot form or receipt, and for the secretary the frozen
  roll's size and hash, the ballots in, each conflict with its versions and the one counted, and "close".
- /matters/{key}/roll: the frozen roll (the secretary's), where a grid's voting cards are printed
  (/matters/{key}/cards, POST: the door ballot's codes, shown once); /matters/{key}/paper: the secretary enters a paper
  ballot for a voter on the roll (open ballots only); /matters/{key}/close: count and publish.
- /matters/{key}/result (page), result.json, result.csv: the published result, without signing in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from crypto.envelope import b64url
from server.domain.access import Principal, may_see
from server.domain.declaration import BALLOT_MODES, ELECTORATES, MATTER_KINDS, Role
from server.domain.errors import FieldError, UserError, by_field
from server.domain.vote_rules import RULES
from server.security.firewall import Firewall
from server.services import deliberation as d
from server.store import queries
from server.store.config import LOCAL_TZ
from server.store.couch import get_many, get_or_none, iter_view_docs

Doc = dict[str, Any]
CurrentUser = Callable[[Request], Awaitable[Doc]]
FORM_FIELDS = ("community", "title", "body", "kind", "electorate", "rule", "options", "opens_at", "closes_at", "mode")


def _local(value: str, name: str) -> dt.datetime:
    """A form's datetime-local value ("2026-12-01T09:00"), read in the installation's time zone."""
    try:
        return dt.datetime.fromisoformat(value).replace(tzinfo=LOCAL_TZ)
    except ValueError:
        raise UserError([FieldError(name, "err_not_iso_datetime", {"value": value[:40]})]) from None


def _form_value(when: dt.datetime) -> str:
    return when.astimezone(LOCAL_TZ).strftime("%Y-%m-%dT%H:%M")


def routes(firewall: Firewall, current_user: CurrentUser, render: Callable[..., Response],
           now: Callable[[], dt.datetime]) -> list[Route]:
    couch = firewall.couch

    def resident_of(user: Doc) -> Doc | None:
        return queries.load_doc(couch, user["resident"], "resident") if user.get("resident") else None

    def visible_matter(p: Principal, user: Doc, key: str) -> tuple[Doc, Doc | None]:
        """The matter and the user's resident record: 404 unless they work in its community or live there."""
        matter = queries.load_doc(couch, f"matter:{key}", "matter")
        resident = resident_of(user)
        if matter is None or not (may_see(p, matter) or (resident or {}).get("community") == matter["community"]):
            raise HTTPException(404)
        return matter, resident

    def communities_of(p: Principal, user: Doc) -> list[str]:
        if p.has(Role.ADMIN):
            return sorted(r["id"] for r in couch.main.all(startkey="community:", endkey="community:\ufff0",
                                                          include_docs="false", as_list=True))
        resident = resident_of(user)
        return sorted(p.communities | ({resident["community"]} if resident else set()))

    async def list_page(request: Request) -> Response:
        user = await current_user(request)
        p = Principal.of(user)
        communities = await run_in_threadpool(communities_of, p, user)
        matters = await run_in_threadpool(d.matters_of, couch, communities)
        names = await run_in_threadpool(get_many, couch.main, communities)
        return render(request, "matters.html", matters=matters, names={i: c["name"] for i, c in names.items()},
                      may_open=any(d.is_secretary_of(p, c) for c in communities), door=p.has(Role.GRID_WORKER))

    def new_form(p: Principal, values: dict[str, str] | None = None) -> dict[str, Any]:
        start = now().replace(second=0, microsecond=0)
        communities = sorted(p.communities)
        names = get_many(couch.main, communities)
        return {"values": values or {"community": communities[0] if communities else "", "title": "", "body": "",
                                     "kind": MATTER_KINDS[0], "electorate": "household",
                                     "rule": "households_three_quarters", "options": "", "mode": "open",
                                     "opens_at": _form_value(start),
                                     "closes_at": _form_value(start + dt.timedelta(days=7))},
                "communities": [(c, names.get(c, {}).get("name", c)) for c in communities],
                "kinds": MATTER_KINDS, "electorates": ELECTORATES, "rules": list(RULES), "modes": BALLOT_MODES}

    async def new_page(request: Request) -> Response:
        p = Principal.of(await current_user(request))
        if not p.has(Role.SECRETARY):
            raise HTTPException(403)
        errors: dict[str, Any] = {}
        status = 200
        values = None
        if request.method == "POST":
            form = await request.form()
            values = {name: str(form.get(name, ""))[:5000] for name in FORM_FIELDS}
            try:
                matter = d.NewMatter(
                    values["community"], values["title"], values["body"], values["kind"], values["electorate"],
                    values["rule"], tuple(values["options"].splitlines()), _local(values["opens_at"], "opens_at"),
                    _local(values["closes_at"], "closes_at"), values["mode"])
                later = await run_in_threadpool(d.roll_takes_long, couch, matter.community)
                opened = await run_in_threadpool(d.open_matter, couch, firewall.keystore, p, matter, now(),
                                                 roll_later=later)
            except UserError as refused:
                errors, status = by_field(refused.errors), refused.status
            else:  # a large roll is frozen after the answer (the matter's page says "preparing the roll" meanwhile)
                freeze = BackgroundTask(d.freeze_roll, couch, opened, now()) if later else None
                return RedirectResponse(f"/matters/{d.key_of(opened['_id'])}", status_code=303, background=freeze)
        context = await run_in_threadpool(new_form, p, values)
        return render(request, "matter_new.html", status, errors=errors, **context)

    def matter_context(p: Principal, matter: Doc, resident: Doc | None) -> dict[str, Any]:
        voter = d.voter_for(p, matter, resident)
        mine = d.ballot_of(couch, matter, voter)
        secretary = d.is_secretary_of(p, matter["community"])
        on_roll = voter is not None and any(e["voter"] == voter for e in d.roll_of(couch, matter))
        own = [v for v in mine.versions if v["channel"] == "own"] if mine else []
        context: dict[str, Any] = {
            "matter": matter, "secretary": secretary, "on_roll": on_roll, "my_ballot": own[0] if own else None,
            "may_vote": on_roll and not own and d.window_refusal(matter, now()) is None,
            "ballot_id": d.ballot_id(matter["_id"], voter) if voter else "",  # what a secret choice is sealed to
            "result": get_or_none(couch.main, d.result_id(matter["_id"])), "key": d.key_of(matter["_id"]),
            "paper_voters": []}
        if secretary:
            voters = d.ballots(couch, matter)
            context["ballots_in"] = len(voters)
            paper = matter["status"] == "open" and matter["mode"] == "open"  # secret paper ballots: not yet
            context["paper_voters"] = roll_rows(matter) if paper else []
            context["conflicts"] = [{"voter": v.voter, "counted": v.first, "versions": list(v.versions)}
                                    for v in voters if v.conflicted]
        return context

    async def matter_page(request: Request) -> Response:
        user = await current_user(request)
        p = Principal.of(user)
        matter, resident = await run_in_threadpool(visible_matter, p, user, request.path_params["key"])
        errors: dict[str, Any] = {}
        status = 200
        if request.method == "POST":
            form = await request.form()
            try:
                await run_in_threadpool(
                    d.cast, couch, p, matter, d.voter_for(p, matter, resident), str(form.get("choice", ""))[:200],
                    "own", now(), resident=p.resident, household=resident["household"] if resident else None)
            except d.VoteError as refused:
                errors, status = by_field(refused.errors), refused.status
            else:  # the receipt shows on the matter's page, which a reload does not post again
                return RedirectResponse(f"/matters/{request.path_params['key']}#ballot", status_code=303)
        context = await run_in_threadpool(matter_context, p, matter, resident)
        return render(request, "matter.html", status, errors=errors, **context)

    async def secretary_matter(request: Request) -> tuple[Principal, Doc]:
        user = await current_user(request)
        p = Principal.of(user)
        matter, _ = await run_in_threadpool(visible_matter, p, user, request.path_params["key"])
        if not d.is_secretary_of(p, matter["community"]):
            raise HTTPException(403)
        return p, matter

    def roll_rows(matter: Doc) -> list[Doc]:
        """The frozen roll as the secretary reads it: each voter named (a household's address, a resident's or a
        member's name) with the floor area counted for them."""
        entries = d.roll_of(couch, matter)
        homes = {e["voter"]: e.get("household") or e["voter"] for e in entries}  # a household votes for itself
        named = get_many(couch.main, set(homes.values()) | set(homes))
        users = queries.user_names(couch, {v for v in homes if v.startswith("user:")})
        return [{"voter": e["voter"], "area": e.get("area"),
                 "label": users.get(e["voter"]) or named.get(e["voter"], {}).get("name")
                 or named.get(homes[e["voter"]], {}).get("address") or e["voter"],
                 "address": named.get(homes[e["voter"]], {}).get("address", "")} for e in entries]

    def grids_of(matter: Doc) -> list[Doc]:
        """The community's grids, where voting cards are printed for (none for a committee or a closed vote)."""
        if matter["electorate"] == "committee" or matter["status"] != "open":
            return []
        return sorted(iter_view_docs(couch.main, "linli/by_place", [matter["community"], "grid"]),
                      key=lambda g: g["number"])

    async def roll_page(request: Request) -> Response:
        _, matter = await secretary_matter(request)
        rows = await run_in_threadpool(roll_rows, matter)
        grids = await run_in_threadpool(grids_of, matter)
        return render(request, "matter_roll.html", matter=matter, rows=rows, key=d.key_of(matter["_id"]), grids=grids)

    async def cards_page(request: Request) -> Response:
        """The secretary prints a grid's voting cards (server/domain/ballots.py): the codes are shown this once."""
        p, matter = await secretary_matter(request)
        form = await request.form()
        grid = str(form.get("grid", ""))[:100]
        grids = await run_in_threadpool(grids_of, matter)
        if grid not in {g["_id"] for g in grids}:
            raise HTTPException(404)
        try:
            cards = await run_in_threadpool(d.issue_cards, couch, p, matter, grid, now())
        except d.VoteError as refused:
            rows = await run_in_threadpool(roll_rows, matter)
            return render(request, "matter_roll.html", refused.status, matter=matter, rows=rows, grids=grids,
                          key=d.key_of(matter["_id"]), errors=by_field(refused.errors))
        return render(request, "matter_cards.html", matter=matter, key=d.key_of(matter["_id"]), cards=cards,
                      grid=next(g for g in grids if g["_id"] == grid))

    async def paper_ballot(request: Request) -> Response:
        """The secretary enters a paper ballot for a voter on the roll (channel paper: counted after the voter's own
        vote and a door ballot; a second ballot for the voter is kept as a conflict)."""
        p, matter = await secretary_matter(request)
        form = await request.form()
        voter = str(form.get("voter", ""))[:200]
        try:
            if matter["mode"] != "open":
                raise d.VoteError("voter", "vote_paper_secret")
            household = voter if matter["electorate"] == "household" else None
            await run_in_threadpool(d.cast, couch, p, matter, voter, str(form.get("choice", ""))[:200], "paper",
                                    now(), household=household)
        except d.VoteError as refused:
            context = await run_in_threadpool(matter_context, p, matter, None)
            return render(request, "matter.html", refused.status, errors=by_field(refused.errors), **context)
        return RedirectResponse(f"/matters/{request.path_params['key']}#secretary", status_code=303)

    def door_context(p: Principal, matter: Doc, values: dict[str, str]) -> dict[str, Any]:
        """The door ballot form (pwa/offline/pages.js doorBallot, the same from the phone's replica): the households
        of the worker's grids, and the ballots they recorded on the matter with their receipts."""
        homes = sorted((h for g in p.grids for h in iter_view_docs(couch.main, "linli/by_place", [g, "household"])
                        if h["community"] == matter["community"]), key=lambda h: h["_id"])
        return {"matter": matter, "key": d.key_of(matter["_id"]), "households": homes, "values": values,
                "ballot_prefix": d.ballot_id(matter["_id"], ""), "recorded": d.recorded_by(couch, p, matter),
                "addresses": {h["_id"]: h["address"] for h in homes}}

    async def door_page(request: Request) -> Response:
        """A grid worker records a household's ballot at its door (a household vote, while it is open)."""
        user = await current_user(request)
        p = Principal.of(user)
        matter, _ = await run_in_threadpool(visible_matter, p, user, request.path_params["key"])
        if not p.has(Role.GRID_WORKER) or matter["electorate"] != "household":
            raise HTTPException(404)
        errors: dict[str, Any] = {}
        status = 200
        values = {"household": ""}
        if request.method == "POST":
            form = await request.form()
            values = {"household": str(form.get("household", ""))[:200]}
            try:
                await run_in_threadpool(d.record_at_door, couch, p, matter, values["household"],
                                        str(form.get("choice", ""))[:1000], str(form.get("code", ""))[:40],
                                        form.get("consent") == "yes", now())
            except d.VoteError as refused:
                errors, status = by_field(refused.errors), refused.status
            else:
                return RedirectResponse(f"/matters/{d.key_of(matter['_id'])}/door#recorded", status_code=303)
        context = await run_in_threadpool(door_context, p, matter, values)
        return render(request, "matter_door.html", status, errors=errors, **context)

    async def close_matter(request: Request) -> Response:
        p, matter = await secretary_matter(request)
        try:
            await run_in_threadpool(d.close, couch, firewall.keystore, firewall.signer, p, matter, now())
        except d.VoteError as refused:  # a hearing's paper ballots not reconciled (server/services/meetings.py)
            context = await run_in_threadpool(matter_context, p, matter, None)
            return render(request, "matter.html", refused.status, errors=by_field(refused.errors), **context)
        return RedirectResponse(f"/matters/{d.key_of(matter['_id'])}/result", status_code=303)

    def published(key: str) -> tuple[Doc, Doc]:
        matter = queries.load_doc(couch, f"matter:{key}", "matter")
        result = get_or_none(couch.main, d.result_id(f"matter:{key}")) if matter else None
        if matter is None or result is None:
            raise HTTPException(404)
        return matter, result

    def signing_key() -> str:
        return b64url(firewall.signer.key.public_key().public_bytes_raw())

    async def result_page(request: Request) -> Response:
        matter, result = await run_in_threadpool(published, request.path_params["key"])
        return render(request, "matter_result.html", matter=matter, result=result, key=request.path_params["key"],
                      signed_by=signing_key())

    async def result_json(request: Request) -> Response:
        matter, result = await run_in_threadpool(published, request.path_params["key"])
        return JSONResponse(d.published(result, matter, signing_key()))

    async def result_csv(request: Request) -> Response:
        matter, result = await run_in_threadpool(published, request.path_params["key"])
        return Response(d.result_csv(result, matter), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="result-{request.path_params["key"]}.csv"'})

    return [
        Route("/matters", list_page),
        Route("/matters/new", new_page, methods=["GET", "POST"]),
        Route("/matters/{key}", matter_page, methods=["GET", "POST"]),
        Route("/matters/{key}/roll", roll_page),
        Route("/matters/{key}/cards", cards_page, methods=["POST"]),
        Route("/matters/{key}/close", close_matter, methods=["POST"]),
        Route("/matters/{key}/paper", paper_ballot, methods=["POST"]),
        Route("/matters/{key}/door", door_page, methods=["GET", "POST"]),
        Route("/matters/{key}/result", result_page),
        Route("/matters/{key}/result.json", result_json),
        Route("/matters/{key}/result.csv", result_csv),
    ]
