"""Hearings and meetings (issue 15 item 8), online: secretaries work at a desk and residents read and post from
their own browsers; the hearing's attendance and paper ballots are the secretary's, taken in the hall. No page here
is rendered offline (server/web/pwa_routes.py ONLINE_ONLY_TEMPLATES): a grid worker's offline work on votes is the
door ballot, on the matter's pages, and an opinion thread moderated live would show phones' offline posts late.

- /meetings: the community's meetings to come and held (drafts to its staff); /meetings/new: the secretary
  schedules one with its agenda (rows naming a matter, server/services/meetings.py).
- /meetings/{key}: the meeting, its agenda and opinion thread (a hidden opinion reads as hidden, with the reason;
  its author and the secretary still read it), attendance (the head count and the names of those who agreed),
  and for the secretary: publish, hide, mark present, head count, envelopes and corrections, the minutes' form.
- /meetings/{key}/minutes: the published minutes as a printable page.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from pycouchdb.exceptions import Conflict
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server.domain.access import Principal, may_see
from server.domain.declaration import Role
from server.domain.errors import FieldError, UserError, by_field
from server.domain.meetings import MAX_AGENDA_ITEMS, MEETING_KINDS
from server.security.firewall import Firewall
from server.services import deliberation as d
from server.services import meetings as mt
from server.store import queries
from server.store.config import LOCAL_TZ
from server.store.couch import get_many, iter_view_docs

Doc = dict[str, Any]
CurrentUser = Callable[[Request], Awaitable[Doc]]
AGENDA_ROWS = 5  # rows the new-meeting form offers
MAX_TEXT = 10_000


def _local(value: str, name: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(value).replace(tzinfo=LOCAL_TZ)
    except ValueError:
        raise UserError([FieldError(name, "err_not_iso_datetime", {"value": value[:40]})]) from None


def _count(form: FormData, name: str) -> int:
    value = str(form.get(name, "")).strip()
    if not value.isdigit() or len(value) > 6:
        raise UserError([FieldError(name, "err_not_integer", {"got": value[:20]})])
    return int(value)


def routes(firewall: Firewall, current_user: CurrentUser, render: Callable[..., Response],
           now: Callable[[], dt.datetime]) -> list[Route]:
    couch = firewall.couch

    def resident_of(user: Doc) -> Doc | None:
        return queries.load_doc(couch, user["resident"], "resident") if user.get("resident") else None

    def communities_of(p: Principal, resident: Doc | None) -> list[str]:
        if p.has(Role.ADMIN):
            return [r["id"] for r in couch.main.all(startkey="community:", endkey="community:\ufff0",
                                                    include_docs="false", as_list=True)]
        return sorted(p.communities | ({resident["community"]} if resident else set()))

    def visible_meeting(p: Principal, user: Doc, key: str) -> tuple[Doc, Doc | None]:
        """The meeting and the user's resident record: 404 unless they work in its community, or live there and it
        is published."""
        meeting = queries.load_doc(couch, f"meeting:{key}", "meeting")
        resident = resident_of(user)
        lives_there = (resident or {}).get("community") == meeting["community"] if meeting else False
        if meeting is None or not (may_see(p, meeting) or (lives_there and meeting["status"] == "published")):
            raise HTTPException(404)
        return meeting, resident

    async def list_page(request: Request) -> Response:
        user = await current_user(request)
        p = Principal.of(user)

        def context() -> dict[str, Any]:
            communities = communities_of(p, resident_of(user))
            found = [m for m in mt.meetings_of(couch, communities, drafts=True)
                     if m["status"] == "published" or may_see(p, m)]
            upcoming, past = mt.upcoming_and_past(found, now())
            names = get_many(couch.main, communities)
            return {"upcoming": upcoming, "past": past, "names": {i: c["name"] for i, c in names.items()},
                    "may_schedule": any(d.is_secretary_of(p, c) for c in communities)}

        return render(request, "meetings.html", **await run_in_threadpool(context))

    def new_form(p: Principal, values: dict[str, Any] | None) -> dict[str, Any]:
        communities = sorted(p.communities)
        names = get_many(couch.main, communities)
        matters = [m for c in communities for m in iter_view_docs(couch.main, "linli/by_place", [c, "matter"])
                   if m["status"] == "open"]
        start = (now() + dt.timedelta(days=7)).astimezone(LOCAL_TZ).replace(hour=19, minute=0, second=0,
                                                                             microsecond=0)
        blank = {"community": communities[0] if communities else "", "kind": MEETING_KINDS[0], "title": "",
                 "place": "", "starts_at": start.strftime("%Y-%m-%dT%H:%M"), "items": [("", "")] * AGENDA_ROWS}
        return {"values": values or blank, "kinds": MEETING_KINDS, "matters": matters,
                "communities": [(c, names.get(c, {}).get("name", c)) for c in communities]}

    async def new_page(request: Request) -> Response:
        p = Principal.of(await current_user(request))
        if not p.has(Role.SECRETARY, Role.ADMIN):
            raise HTTPException(403)
        errors: dict[str, Any] = {}
        status, values = 200, None
        if request.method == "POST":
            form = await request.form()
            titles = [str(v)[:200] for v in form.getlist("item_title")][:MAX_AGENDA_ITEMS + 1]
            matters = [str(v)[:100] for v in form.getlist("item_matter")][:MAX_AGENDA_ITEMS + 1]
            rows = [(t, matters[i] if i < len(matters) else "") for i, t in enumerate(titles)]
            values = {**{n: str(form.get(n, ""))[:200] for n in ("community", "kind", "title", "place", "starts_at")},
                      "items": rows + [("", "")] * max(0, AGENDA_ROWS - len(rows))}
            try:
                new = mt.NewMeeting(values["community"], values["kind"], values["title"],
                                    _local(values["starts_at"], "starts_at"), values["place"], tuple(rows))
                meeting = await run_in_threadpool(mt.schedule, couch, p, new, now())
            except UserError as refused:
                errors, status = by_field(refused.errors), refused.status
            else:
                return RedirectResponse(f"/meetings/{mt.key_of(meeting['_id'])}", status_code=303)
        context = await run_in_threadpool(new_form, p, values)
        return render(request, "meeting_new.html", status, errors=errors, **context)

    def meeting_context(p: Principal, meeting: Doc, resident: Doc | None) -> dict[str, Any]:
        secretary = d.is_secretary_of(p, meeting["community"])
        shown = [{**o, "readable": not o.get("hidden") or secretary or o["created_by"] == p.user_id}
                 for o in mt.opinions(couch, meeting)]
        matters = get_many(couch.main, {i["matter"] for i in meeting["agenda"] if i.get("matter")})
        context: dict[str, Any] = {
            "meeting": meeting, "key": mt.key_of(meeting["_id"]), "secretary": secretary, "opinions": shown,
            "matters": {i: {"title": m["title"], "status": m["status"], "key": d.key_of(i)}
                        for i, m in matters.items()},
            "opinions_open": mt.opinions_open(meeting, now()),
            "may_post": mt.may_post(p, meeting, resident) and mt.opinions_open(meeting, now()),
            "community_name": (queries.load_doc(couch, meeting["community"], "community") or {}).get("name", ""),
            "residents": [], "paper": []}
        if secretary:
            present = {a["resident"] for a in mt.attendance(couch, meeting)}
            homes = {h["_id"]: h["address"]
                     for h in iter_view_docs(couch.main, "linli/by_place", [meeting["community"], "household"])}
            context["residents"] = sorted(
                ({"_id": r["_id"], "name": r["name"], "address": homes.get(r["household"], ""),
                  "present": r["_id"] in present}
                 for r in iter_view_docs(couch.main, "linli/by_place", [meeting["community"], "resident"])),
                key=lambda r: (r["present"], r["address"], r["name"]))
            context["marked"] = len(present)
            context["paper"] = [paper_row(meeting, matters[i["matter"]]) for i in meeting["agenda"]
                                if i.get("matter") in matters and matters[i["matter"]]["status"] == "open"
                                and matters[i["matter"]]["mode"] == "open"]
        return context

    def paper_row(meeting: Doc, matter: Doc) -> Doc:
        count, refusal = mt.paper_state(couch, matter)
        record = mt.paper_record(meeting, matter["_id"]) or {}
        return {"matter": matter["_id"], "title": matter["title"], "key": d.key_of(matter["_id"]),
                "envelopes": record.get("envelopes"), "count": count and vars(count), "reason": record.get("reason"),
                "blocked": refusal and refusal.errors[0].as_json()}

    async def meeting_page(request: Request) -> Response:
        user = await current_user(request)
        p = Principal.of(user)
        meeting, resident = await run_in_threadpool(visible_meeting, p, user, request.path_params["key"])
        context = await run_in_threadpool(meeting_context, p, meeting, resident)
        return render(request, "meeting.html", errors={}, **context)

    def act(action: Callable[[Principal, Doc, Doc | None, Doc, FormData], Any], anchor: str) -> Callable[
            [Request], Awaitable[Response]]:
        """A form posted on the meeting's page: done, back to the page (a reload posts nothing); refused, the page
        again with the reason, nothing stored."""
        async def endpoint(request: Request) -> Response:
            user = await current_user(request)
            p = Principal.of(user)
            meeting, resident = await run_in_threadpool(visible_meeting, p, user, request.path_params["key"])
            form = await request.form()
            try:
                try:
                    await run_in_threadpool(action, p, user, resident, meeting, form)
                except Conflict:  # the meeting changed since it was read (another of the secretary's forms)
                    raise UserError([FieldError("meeting", "meeting_changed_meanwhile")], 409) from None
            except UserError as refused:
                context = await run_in_threadpool(meeting_context, p, couch.main.get(meeting["_id"]), resident)
                return render(request, "meeting.html", refused.status, errors=by_field(refused.errors), **context)
            return RedirectResponse(f"/meetings/{request.path_params['key']}#{anchor}", status_code=303)
        return endpoint

    def _text(form: FormData, name: str) -> str:
        return str(form.get(name, ""))[:MAX_TEXT]

    def publish(p: Principal, user: Doc, resident: Doc | None, meeting: Doc, form: FormData) -> Doc:
        return mt.publish(couch, p, meeting, now())

    def post_opinion(p: Principal, user: Doc, resident: Doc | None, meeting: Doc, form: FormData) -> Doc:
        return mt.post_opinion(couch, p, user, resident, meeting, _text(form, "text"), now())

    def hide(p: Principal, user: Doc, resident: Doc | None, meeting: Doc, form: FormData) -> Doc:
        return mt.hide_opinion(couch, firewall.signer, p, meeting, _text(form, "opinion")[:200],
                               _text(form, "reason"), now())

    def present(p: Principal, user: Doc, resident: Doc | None, meeting: Doc, form: FormData) -> Doc:
        return mt.mark_present(couch, p, meeting, _text(form, "resident")[:200], form.get("named") == "yes", now())

    def headcount(p: Principal, user: Doc, resident: Doc | None, meeting: Doc, form: FormData) -> Doc:
        return mt.set_headcount(couch, p, meeting, _count(form, "headcount"))

    def envelopes(p: Principal, user: Doc, resident: Doc | None, meeting: Doc, form: FormData) -> Doc:
        return mt.set_envelopes(couch, p, meeting, _text(form, "matter")[:200], _count(form, "envelopes"))

    def correction(p: Principal, user: Doc, resident: Doc | None, meeting: Doc, form: FormData) -> Doc:
        return mt.correct(couch, firewall.signer, p, meeting, _text(form, "matter")[:200], _text(form, "reason"),
                          now())

    def minutes(p: Principal, user: Doc, resident: Doc | None, meeting: Doc, form: FormData) -> Doc:
        decisions = [str(v)[:2000] for v in form.getlist("decision")][:MAX_AGENDA_ITEMS]
        return mt.publish_minutes(couch, p, meeting, _text(form, "minutes"), decisions, now())

    async def minutes_page(request: Request) -> Response:
        user = await current_user(request)
        p = Principal.of(user)
        meeting, _ = await run_in_threadpool(visible_meeting, p, user, request.path_params["key"])
        if not meeting.get("minutes_published_at"):
            raise HTTPException(404)
        context = await run_in_threadpool(meeting_context, p, meeting, None)
        return render(request, "meeting_minutes.html", **context)

    return [
        Route("/meetings", list_page),
        Route("/meetings/new", new_page, methods=["GET", "POST"]),
        Route("/meetings/{key}", meeting_page),
        Route("/meetings/{key}/publish", act(publish, "agenda"), methods=["POST"]),
        Route("/meetings/{key}/opinions", act(post_opinion, "opinions"), methods=["POST"]),
        Route("/meetings/{key}/hide", act(hide, "opinions"), methods=["POST"]),
        Route("/meetings/{key}/present", act(present, "attendance"), methods=["POST"]),
        Route("/meetings/{key}/headcount", act(headcount, "attendance"), methods=["POST"]),
        Route("/meetings/{key}/envelopes", act(envelopes, "paper"), methods=["POST"]),
        Route("/meetings/{key}/correction", act(correction, "paper"), methods=["POST"]),
        Route("/meetings/{key}/minutes", minutes_page),
        Route("/meetings/{key}/publish-minutes", act(minutes, "minutes"), methods=["POST"]),
    ]
