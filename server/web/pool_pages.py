"""The resource pool's pages (issue 17): /pool (what there is to book, my bookings), /pool/r/{key} (a day of a
resource, booking, the waitlist; for its keeper the approvals, conflicts, check-ins and the venue's code),
/pool/new and /pool/r/{key}/edit (the secretary adds a resource, its keeper or the secretary edits it, with a
photo judged by its bytes; /pool/r/{key}/photo shows it),
/pool/r/{key}/codes (the keeper prints the coming week's codes, a QR code a day), /pool/checkin (the page the
venue's QR code opens) and the secretary's /pool/board (utilisation, flags;
/pool/board.csv with Chinese headers).

Every act goes through server/services/pool.py; a refusal is shown on the page naming why, with status 400
(403/404/409 where the act is not this person's, or the thing is gone or taken).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server.domain import pool as rules
from server.domain.access import Principal
from server.domain.declaration import BOOKER_KINDS, RESOURCE_KINDS, RESOURCE_OWNER_KINDS, Role
from server.domain.errors import UserError, by_field
from server.domain.http_headers import attachment_answer
from server.domain.i18n import translator
from server.security.firewall import Firewall
from server.services import pool
from server.store import queries
from server.store.couch import get_many
from server.web.qr import qr_svg

Doc = dict[str, Any]
DONE = ("booked", "requested", "cancelled", "waitlisted", "decided", "checked_in", "saved")


def community_of(couch: Any, user: Doc) -> str | None:
    """Where a person books: a resident in their own record's community, a worker in their (first) one."""
    if user.get("resident"):
        resident = queries.load_doc(couch, user["resident"], "resident")
        return resident["community"] if resident else None
    return next(iter(user.get("communities") or []), None)


def _day(value: str | None, now: dt.datetime) -> dt.date:
    """The day a page shows: the one asked for within a year either way, else today."""
    today = now.astimezone(rules.LOCAL).date()
    try:
        day = dt.date.fromisoformat(value or "")
    except ValueError:
        return today
    return day if abs((day - today).days) <= rules.DAYS_SHOWN else today


def _int(value: Any) -> int | str:
    """A number as typed; what is not one stays text and the rules refuse it."""
    try:
        return int(str(value).strip())
    except ValueError:
        return str(value)


FORM_FIELDS = ("hour", "hours", "people", "purpose")


def _typed(form: Any, day: dt.date) -> dict[str, str]:
    """What the booking form shows again after a refusal (first showing: the day asked for, one hour, one)."""
    given = {name: str((form or {}).get(name, ""))[:200] for name in FORM_FIELDS}
    return {**given, "day": str((form or {}).get("day", "")) or day.isoformat(), "hours": given["hours"] or "1",
            "people": given["people"] or "1"}


def resource_values(form: Any) -> Doc:
    """The resource form as the service takes it: numbers as typed (text that is not one is refused by name),
    a week of hours from one row per weekday (both empty: closed), blackouts one per line."""
    values: Doc = {k: str(form.get(k, "")).strip()[:300] for k in ("name", "kind", "owner_kind", "place")}
    values.update({k: _int(form.get(k, "")) for k in rules.RESOURCE_NUMBERS})
    hours = []
    for day in range(7):
        opens, closes = (str(form.get(f"{k}_{day}", "")).strip() for k in ("opens", "closes"))
        if opens or closes:
            hours.append({"weekday": day, "opens": _int(opens), "closes": _int(closes)})
    values["open_hours"] = hours
    values["blackouts"], values["blackout_lines"] = rules.parse_blackouts(str(form.get("blackouts", ""))[:20000])
    values["who_may_book"] = [str(v) for v in form.getlist("who_may_book")][:10]
    values["keepers"] = [str(v)[:200] for v in form.getlist("keepers")][:50]  # more than KEEPERS_MAX: refused
    values["approval"] = form.get("approval") == "yes"
    return values


def resource_form(resource: Doc | None, values: Doc | None = None) -> Doc:
    """What the form shows: what was typed (after a refusal), the resource as it is, or a new one's defaults."""
    shown = values or resource or {"kind": "room", "owner_kind": "community", "capacity": 10, "book_ahead_days": 14,
                                   "max_hours": 3, "grace_minutes": 15, "approval": False,
                                   "who_may_book": ["resident", "volunteer", "grid_worker", "secretary"]}
    week = {h["weekday"]: h for h in shown.get("open_hours") or []}
    return {**shown, "week": [week.get(d, {"opens": "", "closes": ""}) for d in range(7)],
            "blackouts_text": rules.blackouts_text(shown)}


def board_csv(rows: list[Doc]) -> str:
    """One row per resource and month, with Chinese headers (the spreadsheet goes to the street office)."""
    t = translator("zh")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([t("pool_resource"), t("pool_month"), t("pool_open_hours_col"), t("pool_blocked_hours"),
                     t("pool_used_hours"), t("pool_no_show_hours"), t("pool_never_booked"), t("pool_idle"),
                     t("pool_flagged"), t("pool_suggestion")])
    for row in rows:
        for month in row["months"]:
            writer.writerow([row["resource"]["name"], month.month, month.open, month.blocked, month.used,
                             month.no_show, month.never_booked, "" if month.idle is None else f"{month.idle:.0%}",
                             "是" if row["flagged"] else "",
                             t(row["suggestion"]) if row["suggestion"] else ""])
    return out.getvalue()


def routes(firewall: Firewall, current_user: Callable[[Request], Awaitable[Doc]], render: Callable[..., Response],
           now: Callable[[], dt.datetime]) -> list[Route]:
    couch = firewall.couch

    def done_of(request: Request) -> str | None:
        done = request.query_params.get("done")
        return done if done in DONE else None

    async def resource_of(request: Request, user: Doc) -> Doc:
        resource = await run_in_threadpool(queries.load_doc, couch, "resource:" + request.path_params["key"],
                                           "resource")
        if resource is None or resource["community"] != await run_in_threadpool(community_of, couch, user):
            raise HTTPException(404)
        return resource

    async def list_page(request: Request) -> Response:
        user = await current_user(request)
        community = await run_in_threadpool(community_of, couch, user)
        if community is None:
            raise HTTPException(404)
        resources = await run_in_threadpool(pool.resources_of, couch, community)
        mine = (await run_in_threadpool(pool.bookings_of, couch, user["_id"]))[:50]
        checked = await run_in_threadpool(get_many, couch.main, [rules.checkin_id(b["_id"]) for b in mine])
        today = now().astimezone(rules.LOCAL).date()
        return render(request, "pool.html", 200, resources=resources, mine=mine,
                      may_add=pool.may_add_resource(Principal.of(user), community),
                      checked={i.removeprefix("checkin:"): True for i in checked},  # by booking key
                      names={r["_id"]: r["name"] for r in resources}, done=done_of(request), today=today.isoformat(),
                      openings={r["_id"]: rules.opening_text(r, today) for r in resources})

    async def resource_page(request: Request, errors: dict[str, Any] | None = None, status: int = 200,
                            form: Any = None) -> Response:
        user = await current_user(request)
        resource = await resource_of(request, user)
        day = _day(request.query_params.get("day") or (form or {}).get("day"), now())
        p = Principal.of(user)
        keeper = pool.is_keeper(p, resource)

        def gather() -> dict[str, Any]:
            hours = pool.day_view(couch, resource, day)
            to_approve = pool.to_approve(couch, resource) if keeper else []
            seen = {b["booked_by"] for b in (*(h["booking"] for h in hours if h["booking"]), *to_approve)}
            return {"hours": hours, "names": queries.user_names(couch, seen) if keeper else {},
                    "to_approve": to_approve,
                    "conflicts": pool.conflicts_of(couch, resource) if keeper else [],
                    "code": pool.venue_code(firewall.keystore, resource["_id"], now()) if keeper else None}

        context = await run_in_threadpool(gather)
        return render(request, "pool_resource.html", status, resource=resource, day=day, keeper=keeper,
                      prev_day=day - dt.timedelta(days=1), next_day=day + dt.timedelta(days=1),
                      opening=rules.opening_text(resource, day), user_id=user["_id"], errors=errors or {},
                      done=done_of(request), form=_typed(form, day), **context)

    async def act(request: Request, do: Callable[[Doc, Any], Any], back: str, done: str) -> Response:
        user = await current_user(request)
        form = await request.form()
        try:
            result = await run_in_threadpool(do, user, form)
        except pool.PoolError as refused:
            if refused.status == 404:
                raise HTTPException(404) from None
            if "key" in request.path_params:
                return await resource_page(request, by_field(refused.errors), refused.status, form)
            return await checkin_page(request, by_field(refused.errors), refused.status, form)
        return RedirectResponse(f"{back}{'&' if '?' in back else '?'}done={result or done}", status_code=303)

    async def book(request: Request) -> Response:
        user = await current_user(request)
        resource = await resource_of(request, user)

        def do(user: Doc, form: Any) -> str:
            try:
                start = dt.datetime.combine(dt.date.fromisoformat(str(form.get("day", ""))),
                                            dt.time(int(str(form.get("hour", "")))), rules.LOCAL)
            except ValueError:
                raise pool.PoolError("pool_slot_id", field="hour") from None
            booked = pool.book(couch, user, resource["_id"], start, _int(form.get("hours", "1")),
                               _int(form.get("people", "1")), str(form.get("purpose", "")), now())
            return booked[0]["status"] == "requested" and "requested" or "booked"

        return await act(request, do, f"/pool/r/{request.path_params['key']}?day={(await request.form()).get('day')}",
                         "booked")

    async def booking_act(request: Request) -> Response:
        user = await current_user(request)
        resource = await resource_of(request, user)
        booking_id, what = str((await request.form()).get("booking", "")), request.path_params["what"]
        if not booking_id.startswith(rules.slot_id(resource["_id"], now())[:-10]):
            raise HTTPException(404)
        acts: dict[str, tuple[Callable[[Doc, Any], Any], str]] = {
            "cancel": (lambda u, f: pool.cancel(couch, u, booking_id, now()), "cancelled"),
            "waitlist": (lambda u, f: pool.join_waitlist(couch, u, booking_id) and None, "waitlisted"),
            "approve": (lambda u, f: pool.decide(couch, Principal.of(u), booking_id, True, now()), "decided"),
            "decline": (lambda u, f: pool.decide(couch, Principal.of(u), booking_id, False, now()), "decided"),
            "checkin": (lambda u, f: pool.check_in(couch, u, booking_id, "keeper", "", now()) and None,
                        "checked_in"),
        }
        if what not in acts:
            raise HTTPException(404)
        do, done = acts[what]
        return await act(request, do, f"/pool/r/{request.path_params['key']}?day={booking_id[-10:-6]}-"
                                      f"{booking_id[-6:-4]}-{booking_id[-4:-2]}", done)

    async def checkin_page(request: Request, errors: dict[str, Any] | None = None, status: int = 200,
                           form: Any = None) -> Response:
        """What the venue's QR code opens: the person's bookings of it to check in to now, the code filled in (the
        form's again after a refusal)."""
        user = await current_user(request)
        values = form if form is not None else request.query_params
        resource = await run_in_threadpool(queries.load_doc, couch, str(values.get("resource", "")), "resource")
        if resource is None:
            raise HTTPException(404)
        bookings = await run_in_threadpool(pool.checkable, couch, user, resource, now())
        return render(request, "pool_checkin.html", status, resource=resource, bookings=bookings,
                      code=str(values.get("code", ""))[:64], errors=errors or {},
                      done=None if form is not None else done_of(request))

    async def scan(request: Request) -> Response:
        """The booker checks in by the venue's code: only to a booking the page offered (one of theirs, its window
        open now), as the offline page does (pwa/offline/pages.js poolCheckin)."""
        form = await request.form()
        back = f"/pool/checkin?resource={quote(str(form.get('resource', '')))}"

        def do(user: Doc, form: Any) -> None:
            resource = pool.load_resource(couch, str(form.get("resource", "")))
            offered = {b["_id"] for b in pool.checkable(couch, user, resource, now())}
            if str(form.get("booking", "")) not in offered:
                raise pool.PoolError("pool_checkin_window", {"minutes": resource["grace_minutes"]})
            pool.check_in(couch, user, str(form.get("booking", "")), "scan", str(form.get("code", "")), now())

        return await act(request, do, back, "checked_in")

    async def edit_page(request: Request) -> Response:
        """Add a resource (/pool/new, the secretary) or edit one (/pool/r/{key}/edit, its keeper or the secretary):
        every field refused by name, a photo judged by its bytes."""
        user = await current_user(request)
        p = Principal.of(user)
        resource = await resource_of(request, user) if "key" in request.path_params else None
        community_id = resource["community"] if resource else await run_in_threadpool(community_of, couch, user)
        if not (pool.is_keeper(p, resource) if resource else community_id and pool.may_add_resource(p, community_id)):
            raise HTTPException(403)
        errors, status, values = {}, 200, None
        if request.method == "POST":
            form = await request.form()
            values = resource_values(form)
            upload = form.get("photo")
            data = await upload.read() if upload is not None and not isinstance(upload, str) else b""
            photo = (data, upload.content_type) if data and not isinstance(upload, str) else None
            community = await run_in_threadpool(queries.load_doc, couch, community_id, "community")
            try:
                saved = await run_in_threadpool(pool.save_resource, couch, firewall.keystore, p, community, values,
                                                now(), resource, photo)
            except UserError as refused:
                if refused.status in (403, 404):
                    raise HTTPException(refused.status) from None
                errors, status = by_field(refused.errors), refused.status
            else:
                return RedirectResponse(f"/pool/r/{saved['_id'].removeprefix('resource:')}?done=saved",
                                        status_code=303)
        names_keepers = pool.may_add_resource(p, community_id)
        candidates = await run_in_threadpool(pool.keeper_candidates, couch, community_id) if names_keepers else {}
        return render(request, "pool_edit.html", status, resource=resource, values=resource_form(resource, values),
                      errors=errors, kinds=RESOURCE_KINDS, owners=RESOURCE_OWNER_KINDS, bookers=BOOKER_KINDS,
                      weekdays=list(range(7)), names_keepers=names_keepers, candidates=candidates)

    async def codes_page(request: Request) -> Response:
        """The keeper prints the coming week's codes, one day a sheet with its QR code (the page the venue's code
        opens, the code filled in): a code changes daily, so a sheet posted is good on its day only."""
        user = await current_user(request)
        resource = await resource_of(request, user)
        if not pool.is_keeper(Principal.of(user), resource):
            raise HTTPException(403)
        days = await run_in_threadpool(pool.week_codes, firewall.keystore, resource["_id"], now())
        checkin = f"{str(request.base_url).rstrip('/')}/pool/checkin?resource={quote(resource['_id'])}&code="
        return render(request, "pool_codes.html", 200, resource=resource,
                      days=[{**d, "qr": qr_svg(checkin + d["code"])} for d in days])

    async def photo(request: Request) -> Response:
        resource = await resource_of(request, await current_user(request))
        name = next(iter(resource.get("_attachments") or {}), None)
        if name is None:
            raise HTTPException(404)
        data = await run_in_threadpool(lambda: couch.main.resource.get(f"{resource['_id']}/{name}",
                                                                       stream=True)[0].content)
        media_type, headers = attachment_answer(data)
        return Response(data, media_type=media_type, headers=headers)

    async def board_page(request: Request) -> Response:
        user = await current_user(request)
        if Role.SECRETARY not in queries.roles(user) or not user.get("communities"):
            raise HTTPException(403)
        community = request.query_params.get("community") or user["communities"][0]
        if community not in user["communities"]:
            raise HTTPException(404)
        rows = await run_in_threadpool(pool.board, couch, community, now())
        if request.url.path.endswith(".csv"):
            return Response(board_csv(rows),
                            media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": 'attachment; filename="linli-pool-board.csv"'})
        return render(request, "pool_board.html", 200, rows=rows, community=community,
                      flag=int(rules.IDLE_FLAG * 100))

    return [Route("/pool", list_page), Route("/pool/r/{key}", resource_page),
            Route("/pool/new", edit_page, methods=["GET", "POST"]),
            Route("/pool/r/{key}/edit", edit_page, methods=["GET", "POST"]),
            Route("/pool/r/{key}/photo", photo), Route("/pool/r/{key}/codes", codes_page),
            Route("/pool/r/{key}/book", book, methods=["POST"]),
            Route("/pool/r/{key}/{what}", booking_act, methods=["POST"]),
            Route("/pool/checkin", checkin_page), Route("/pool/checkin", scan, methods=["POST"]),
            Route("/pool/board", board_page), Route("/pool/board.csv", board_page)]


