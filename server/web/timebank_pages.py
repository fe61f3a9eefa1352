"""The time bank's pages (issue 16): /timebank (my balances and history, claims to answer, help to claim) and
the secretary's /ledger (balances against the limit, disputes, transfers to reverse; /ledger.csv).

Every act goes through server/services/timebank.py; a refusal is shown on the page, naming why, with status
400 (403/404/409 where the act is not this person's, or the thing is gone or already answered).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server.domain import timebank as rules
from server.domain.access import Principal, may_see
from server.domain.declaration import LEDGERS, Role
from server.domain.errors import by_field
from server.security.firewall import Firewall
from server.services import rewards, timebank
from server.store import queries
from server.store.couch import get_many
from server.web.preparing import preparing

Doc = dict[str, Any]


def _community_of(user: Doc, resident: Doc | None) -> str | None:
    return resident["community"] if resident else next(iter(user.get("communities") or []), None)


def _names(firewall: Firewall, p: Principal, ids: set[str]) -> dict[str, str]:
    """Display names of what these ids name and the reader may see (`may_see`: a volunteer sees the households
    they look after, not their residents): residents, households (their address), organisations, communities;
    and of people (users)."""
    main = get_many(firewall.couch.main, {i for i in ids if not i.startswith("user:")})
    return {**{i: d.get("name") or d.get("address") or i for i, d in main.items() if may_see(p, d)},
            **queries.user_names(firewall.couch, {i for i in ids if i.startswith("user:")})}


def my_page_context(firewall: Firewall, user: Doc, now: dt.datetime) -> dict[str, Any]:
    """What /timebank shows this person."""
    couch = firewall.couch
    p = Principal.of(user)
    resident = queries.load_doc(couch, user["resident"], "resident") if user.get("resident") else None
    community = _community_of(user, resident)
    account = rules.account_of(user)
    if community is None:
        raise HTTPException(404)
    to_answer = timebank.claims_of(couch, user["resident"], "claimed") if resident else []
    if p.has(Role.GRID_WORKER):  # the human window: claims of their grids' residents, answered with consent
        to_answer += [c for grid in p.grids for c in queries.iter_view_docs(couch.main, "linli/by_place",
                                                                            [grid, "claim"])
                      if c["status"] == "claimed" and c["created_by"] != p.user_id and c not in to_answer]
    made = timebank.claims_of(couch, user["_id"])
    tasks = timebank.claimable_tasks(couch, user, now) if p.has(Role.VOLUNTEER, Role.GRID_WORKER) else []
    entries = timebank.history(couch, community, account)
    names = _names(firewall, p, {c["created_by"] for c in to_answer} | {c["resident"] for c in to_answer + made}
                   | {c["household"] for c in made} | {e["from_account"] for e in entries}
                   | {e["to_account"] for e in entries})
    hours, points = (timebank.balance(couch, community, ledger, account) for ledger in LEDGERS)
    codes = timebank.confirmation_codes(couch, firewall.keystore, resident["_id"]) if resident else []
    return {"hours": rules.hours_text(hours), "points": points, "to_answer": list(map(_shown, to_answer)),
            "codes": codes, "code_misses": timebank.code_misses(couch, resident["_id"], now) if resident else 0,
            "code_misses_most": rules.CODE_MISSES_PER_DAY,
            "made": list(map(_shown, made)), "tasks": tasks, "entries": list(map(_shown, entries)), "names": names,
            "account": account, "floor_hours": -rules.HOURS_FLOOR // 60, "max_minutes": rules.MAX_CLAIM_MINUTES,
            "expires_days": rules.CLAIM_EXPIRES_AFTER.days, "answering_for_others": p.has(Role.GRID_WORKER)}


def _amount_text(ledger: str, amount: int) -> str:
    """An amount as people read it: hours as "1.5" (the ledger keeps minutes), points as they are."""
    return rules.hours_text(amount) if ledger == "hours" else str(amount)


def _shown(doc: Doc) -> Doc:
    """A claim or transfer with its amount as people read it (`shown`; a history entry's as it moved this
    account, `signed`)."""
    if doc["type"] == "claim":
        return {**doc, "shown": rules.hours_text(doc["minutes"])}
    return {**doc, "shown": _amount_text(doc["ledger"], doc.get("signed", doc["amount"]))}


def ledger_context(firewall: Firewall, p: Principal, community: str, limit: int | None = 200) -> dict[str, Any]:
    """What the secretary's /ledger shows of one community (its newest `limit` transfers; None: all)."""
    couch = firewall.couch
    transfers = list(timebank.transfers_of(couch, community, limit))
    reversed_ids = {t["reverses"] for t in transfers if t.get("reverses")}
    table = {ledger: timebank.balances(couch, community, ledger) for ledger in LEDGERS}
    accounts = sorted(set(table["hours"]) | set(table["points"]))
    hours_total = sum(table["hours"].values())
    disputed = [c for c in timebank.claims_of(couch, "", "disputed") if c["community"] == community]
    names = _names(firewall, p, set(accounts) | {t["from_account"] for t in transfers}
                   | {t["to_account"] for t in transfers} | {c["created_by"] for c in disputed}
                   | {c["resident"] for c in disputed})
    shown = {ledger: {a: _amount_text(ledger, v) for a, v in held.items()} for ledger, held in table.items()}
    return {"community": community, "accounts": accounts, "table": table, "table_shown": shown,
            "transfers": list(map(_shown, transfers)), "reversed": reversed_ids,
            "disputed": list(map(_shown, disputed)), "names": names, "floor": rules.HOURS_FLOOR,
            "floor_hours": -rules.HOURS_FLOOR // 60, "hours_total": rules.hours_text(hours_total)}


def ledger_csv(context: dict[str, Any]) -> str:
    """Every transfer of the community, oldest first, one row each (hours in hours)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "created_at", "ledger", "kind", "from_account", "from_name", "to_account", "to_name",
                     "amount", "unit", "reverses", "reason"])
    names = context["names"]
    for t in reversed(context["transfers"]):
        hours = t["ledger"] == "hours"
        writer.writerow([t["_id"], t["created_at"], t["ledger"], t["kind"], t["from_account"],
                         names.get(t["from_account"], ""), t["to_account"], names.get(t["to_account"], ""),
                         rules.hours_text(t["amount"]) if hours else t["amount"], "hours" if hours else "points",
                         t.get("reverses", ""), t.get("reason", "")])
    return out.getvalue()


def _minutes(value: str) -> int | str:
    """Hours as typed ("1.5") in whole minutes; what cannot be read stays text and the rules refuse it."""
    try:
        minutes = float(value) * 60
    except ValueError:
        return value
    return round(minutes) if math.isfinite(minutes) else value


DONE = ("claimed", "confirmed", "disputed", "reversed")  # what a redirect after an act says was done


def _done(request: Request) -> str | None:
    done = request.query_params.get("done")
    return done if done in DONE else None


def _consented(form: Any) -> bool:
    """A grid worker answering for a resident ticked that the resident agreed."""
    return form.get("consent") == "yes"


def routes(firewall: Firewall, current_user: Callable[[Request], Awaitable[Doc]], render: Callable[..., Response],
           now: Callable[[], dt.datetime]) -> list[Route]:
    couch = firewall.couch

    async def my_page(request: Request, errors: dict[str, Any] | None = None, status: int = 200) -> Response:
        user = await current_user(request)
        context = await run_in_threadpool(my_page_context, firewall, user, now())
        return render(request, "timebank.html", status, errors=errors or {}, done=_done(request), **context)

    async def act(request: Request, do: Callable[[Principal, Any], Any], done: str | Callable[[Any], str]) -> Response:
        user = await current_user(request)
        form = await request.form()
        try:
            result = await run_in_threadpool(do, Principal.of(user), form)
        except timebank.LedgerError as refused:
            if refused.status == 404:  # nothing there, or nothing this person may see: answered alike
                raise HTTPException(404) from None
            return await my_page(request, by_field(refused.errors), refused.status)
        return RedirectResponse(f"/timebank?done={done(result) if callable(done) else done}", status_code=303)

    async def new_claim(request: Request) -> Response:
        return await act(request, lambda p, form: timebank.claim(
            couch, firewall.keystore, p, str(form.get("task", "")), _minutes(str(form.get("hours", ""))),
            str(form.get("note", "")), now(), str(form.get("in_person_code", "")),
            form.get("in_person_consent") == "yes"),
            lambda made: "confirmed" if made["status"] == "confirmed" else "claimed")  # in person: settled at once

    async def answer(request: Request) -> Response:
        claim_id = request.path_params["claim_id"]
        if request.path_params["answer"] == "confirm":
            return await act(request, lambda p, form: timebank.confirm(couch, p, claim_id, now(), _consented(form)),
                             "confirmed")
        if request.path_params["answer"] == "dispute":
            return await act(request, lambda p, form: timebank.dispute(
                couch, p, claim_id, str(form.get("note", "")), now(), _consented(form)), "disputed")
        raise HTTPException(404)

    async def secretary(request: Request) -> tuple[Doc, str]:
        user = await current_user(request)
        if Role.SECRETARY not in queries.roles(user) or not user.get("communities"):
            raise HTTPException(403)
        community = request.query_params.get("community") or user["communities"][0]
        if community not in user["communities"]:
            raise HTTPException(404)
        return user, community

    async def ledger_page(request: Request, errors: dict[str, Any] | None = None, status: int = 200) -> Response:
        user, community = await secretary(request)
        waiting = await preparing(request, render, firewall.couch.main, "ledger")  # first start: said, not waited for
        if waiting is not None:
            return waiting
        csv_wanted = request.url.path.endswith(".csv")
        context = await run_in_threadpool(ledger_context, firewall, Principal.of(user), community,
                                          None if csv_wanted else 200)
        if csv_wanted:
            return Response(ledger_csv(context), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": 'attachment; filename="linli-ledger.csv"'})
        return render(request, "ledger.html", status, errors=errors or {}, done=_done(request), **context)

    async def reverse(request: Request) -> Response:
        user, community = await secretary(request)
        form = await request.form()
        try:
            await run_in_threadpool(rewards.reverse, couch, firewall.signer, Principal.of(user),
                                    str(form.get("transfer", "")), str(form.get("reason", "")), now(),
                                    request.headers.get("user-agent", "")[:100])
        except timebank.LedgerError as refused:
            return await ledger_page(request, by_field(refused.errors), refused.status)
        return RedirectResponse("/ledger?done=reversed", status_code=303)

    return [Route("/timebank", my_page), Route("/claims", new_claim, methods=["POST"]),
            Route("/claims/{claim_id}/{answer}", answer, methods=["POST"]),
            Route("/ledger", ledger_page), Route("/ledger.csv", ledger_page),
            Route("/ledger/reverse", reverse, methods=["POST"])]
