"""Points and rewards' pages (issue 16 item 4): /rewards (my points, how they are earned, the catalogue, my
vouchers), the partner's /redeem (a voucher's code checked and honoured; the offline app answers it too:
pwa/offline/pages.js), /statements (mine by month or year; the secretary's community totals, every account's
lines and /statements.csv).

Every act goes through server/services/rewards.py; a refusal is shown on the page, naming why, with its status.
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

from server.domain import points as rules
from server.domain.access import Principal
from server.domain.declaration import REWARD_KINDS, Role
from server.domain.errors import by_field
from server.domain.i18n import translator
from server.domain.timebank import ACCOUNT_TYPES, account_of, hours_text
from server.security.firewall import Firewall
from server.services import rewards, timebank
from server.services.timebank import LedgerError
from server.store import queries
from server.store.couch import get_many
from server.web.timebank_pages import _names as account_names

Doc = dict[str, Any]


def _community(couch: Any, user: Doc) -> str:
    """The community whose ledger a person's points are on: their resident record's, their organisation's, or the
    first they work in."""
    if user.get("resident"):
        resident = queries.load_doc(couch, user["resident"], "resident")
        if resident:
            return resident["community"]
    if user.get("organisation"):
        organisation = queries.load_doc(couch, user["organisation"], "organisation")
        if organisation:
            return organisation["community"]
    if user.get("communities"):
        return user["communities"][0]
    raise HTTPException(404)


def rewards_context(firewall: Firewall, user: Doc) -> dict[str, Any]:
    couch = firewall.couch
    community, account = _community(couch, user), account_of(user)
    catalogue = rewards.catalogue(couch, community)
    held = rewards.vouchers_of(couch, community, account)
    names = account_names(firewall, Principal.of(user), {r["organisation"] for r in catalogue + held})
    return {"points": timebank.balance(couch, community, "points", account),
            "rules": list(rules.POINTS_RULES.items()), "buying_needs_server": False,
            "catalogue": catalogue, "vouchers": held, "names": names,
            "reward_names": {r["_id"]: r["name"] for r in catalogue}
            | {v["reward"]: queries.load_doc(couch, v["reward"], "reward")["name"] for v in held}}


def redeem_context(firewall: Firewall, user: Doc) -> dict[str, Any]:
    """The partner's screen: their organisation, its latest redemptions and the vouchers found used twice."""
    couch = firewall.couch
    organisation = queries.load_doc(couch, user.get("organisation") or "", "organisation")
    if organisation is None or Role.PARTNER not in queries.roles(user):
        raise HTTPException(403)
    recent = rewards.redemptions_of(couch, organisation)
    twice = [d for d in rewards.used_twice(couch, organisation["community"])
             if d["organisation"] == organisation["_id"]]
    wanted = {d["reward"] for d in recent + twice}
    return {"organisation": organisation, "recent": recent, "twice": twice,
            "reward_names": {i: d["name"] for i, d in get_many(couch.main, wanted).items()}}


def statements_context(firewall: Firewall, user: Doc, period: str, community: str | None) -> dict[str, Any]:
    """A person's own statement; for a secretary (`community` given) her community's lines and totals too."""
    couch = firewall.couch
    p = Principal.of(user)
    if community is not None:
        whole = rewards.community_statements(couch, community, period)
        twice = rewards.used_twice(couch, community)
        names = account_names(firewall, p, set(whole["lines"]))
        return {"period": period, "community": community, "whole": whole, "names": names, "own": None,
                "twice": twice, "hours_text": hours_text,
                "reward_names": {i: d["name"] for i, d in
                                 get_many(couch.main, {d["reward"] for d in twice}).items()}}
    own = rewards.statement(couch, _community(couch, user), account_of(user), period)
    return {"period": period, "community": None, "whole": None, "own": own, "twice": [], "hours_text": hours_text,
            "names": {}, "reward_names": {}}


def offer_context(firewall: Firewall, user: Doc) -> dict[str, Any]:
    """The offerer's page: the organisations whose rewards they may offer and what those offer, with units bought.
    403 for anyone who offers for none."""
    couch = firewall.couch
    organisations = rewards.offerers_organisations(couch, Principal.of(user))
    if not organisations:
        raise HTTPException(403)
    return {"organisations": organisations, "offered": rewards.offered_by(couch, organisations),
            "organisation_names": {o["_id"]: o["name"] for o in organisations}, "kinds": REWARD_KINDS,
            "max_points": rules.MAX_REWARD_POINTS, "max_stock": rules.MAX_STOCK}


def _whole(value: Any) -> int | str:
    """A form's number as an int if it is one, else as typed (the rule then names what is wrong)."""
    text = str(value or "").strip()[:12]
    return int(text) if text.isdigit() else text


DONE = ("redeemed", "offered", "stock_set")
EMPTY_OFFER = {"organisation": "", "name": "", "kind": "", "points": "", "stock": ""}


def routes(firewall: Firewall, current_user: Callable[[Request], Awaitable[Doc]], render: Callable[..., Response],
           now: Callable[[], dt.datetime]) -> list[Route]:
    couch, keys = firewall.couch, firewall.keystore

    async def rewards_page(request: Request, errors: dict[str, Any] | None = None, status: int = 200) -> Response:
        user = await current_user(request)
        context = await run_in_threadpool(rewards_context, firewall, user)
        done = request.query_params.get("done")
        return render(request, "rewards.html", status, errors=errors or {}, done=done if done in DONE else None,
                      **context)

    async def redeem(request: Request) -> Response:
        user = await current_user(request)
        form = await request.form()
        try:
            await run_in_threadpool(rewards.redeem, couch, keys, Principal.of(user), str(form.get("reward", "")),
                                    now())
        except LedgerError as refused:
            return await rewards_page(request, by_field(refused.errors), refused.status)
        return RedirectResponse("/rewards?done=redeemed", status_code=303)

    async def partner_page(request: Request, errors: dict[str, Any] | None = None, status: int = 200,
                           used: Doc | None = None, code: str = "") -> Response:
        user = await current_user(request)
        context = await run_in_threadpool(redeem_context, firewall, user)
        return render(request, "redeem.html", status, errors=errors or {}, used=used, code=code, **context)

    async def honour(request: Request) -> Response:
        user = await current_user(request)
        form = await request.form()
        code = str(form.get("code", ""))[:2000]
        try:
            used = await run_in_threadpool(rewards.use, couch, keys, Principal.of(user), code, now())
        except LedgerError as refused:
            if refused.status == 403 and refused.errors[0].key == "forbidden":
                raise HTTPException(403) from None
            return await partner_page(request, by_field(refused.errors), refused.status, code=code)
        voucher = await run_in_threadpool(couch.main.get, used["voucher"])
        return await partner_page(request, used={**used, "points": voucher["points"]})

    async def offer_page(request: Request, errors: dict[str, Any] | None = None, status: int = 200,
                         values: Doc | None = None) -> Response:
        user = await current_user(request)
        context = await run_in_threadpool(offer_context, firewall, user)
        done = request.query_params.get("done")
        return render(request, "reward_offer.html", status, errors=errors or {}, values=values or EMPTY_OFFER,
                      done=done if done in DONE else None, **context)

    async def offer(request: Request) -> Response:
        user = await current_user(request)
        form = await request.form()
        values = {name: str(form.get(name, ""))[:200] for name in EMPTY_OFFER}
        try:
            await run_in_threadpool(rewards.offer, couch, Principal.of(user), values["organisation"], values["name"],
                                    values["kind"], _whole(values["points"]), _whole(values["stock"]), now())
        except LedgerError as refused:
            if refused.status == 403:
                raise HTTPException(403) from None
            return await offer_page(request, by_field(refused.errors), refused.status, values)
        return RedirectResponse("/rewards/offer?done=offered", status_code=303)

    async def set_stock(request: Request) -> Response:
        user = await current_user(request)
        form = await request.form()
        try:
            await run_in_threadpool(rewards.set_stock, couch, Principal.of(user), request.path_params["reward"],
                                    _whole(form.get("stock")), now())
        except LedgerError as refused:
            if refused.status in (403, 404):
                raise HTTPException(refused.status) from None
            return await offer_page(request, by_field(refused.errors), refused.status)
        return RedirectResponse("/rewards/offer?done=stock_set", status_code=303)

    async def mint_now(request: Request) -> Response:
        """The secretary mints her community's due points now rather than at the job's next quarter hour (the
        same idempotent rewards.mint_due: nothing is minted twice)."""
        user = await current_user(request)
        form = await request.form()
        community = str(form.get("community", ""))[:200]
        if Role.SECRETARY not in queries.roles(user) or community not in user.get("communities", []):
            raise HTTPException(403)
        place = await run_in_threadpool(queries.load_doc, couch, community, "community")
        if place is None:
            raise HTTPException(404)
        minted = await run_in_threadpool(rewards.mint_due, couch, place, now())
        return RedirectResponse(f"/statements?community={community}&minted={minted}", status_code=303)

    async def statements_page(request: Request) -> Response:
        user = await current_user(request)
        period = request.query_params.get("period") or now().strftime("%Y-%m")
        community = request.query_params.get("community")
        if community is not None or request.url.path.endswith(".csv"):
            if Role.SECRETARY not in queries.roles(user) or not user.get("communities"):
                raise HTTPException(403)
            community = community or user["communities"][0]
            if community not in user["communities"]:
                raise HTTPException(404)
        try:
            context = await run_in_threadpool(statements_context, firewall, user, period, community)
        except LedgerError as refused:
            return render(request, "statements.html", refused.status, errors=by_field(refused.errors),
                          period=period[:20], community=community, whole=None, own=None, twice=[], names={},
                          hours_text=hours_text, reward_names={})
        if request.url.path.endswith(".csv"):
            zh = translator("zh")
            kinds = {kind: zh("tb_account_" + kind) for kind in ACCOUNT_TYPES}
            body = rewards.statements_csv(context["whole"], context["names"], kinds)
            return Response("\ufeff" + body, media_type="text/csv; charset=utf-8", headers={
                "Content-Disposition": f'attachment; filename="linli-statements-{context["period"]}.csv"'})
        minted = request.query_params.get("minted", "")
        return render(request, "statements.html", 200, errors={}, minted=int(minted) if minted.isdigit() else None,
                      **context)

    return [Route("/rewards", rewards_page), Route("/rewards/redeem", redeem, methods=["POST"]),
            Route("/redeem", partner_page), Route("/redeem", honour, methods=["POST"]),
            Route("/statements", statements_page), Route("/statements.csv", statements_page),
            Route("/statements/mint", mint_now, methods=["POST"]),
            Route("/rewards/offer", offer_page), Route("/rewards/offer", offer, methods=["POST"]),
            Route("/rewards/{reward:str}/stock", set_stock, methods=["POST"])]
