"""Offers of help and matches (issue 17, item 4): recording an offer, running the matcher over the open needs
someone handles, and each side's answer to a proposal. The rules and the score are server/domain/matching.py's.

A proposal is a `match` document with the id `match:<need key>:<offer key>`, so running the matcher again
writes no second proposal for a pair, and never touches one already answered: the matcher only adds proposals
(`Record.tried` skips every pair proposed before). Both sides accept: the need's side (its resident on their own
page, or its grid's worker or secretary for them) and the offer's keeper. When both have, the need is matched to
it, the need's other proposals are withdrawn (both sides see that), and a volunteer's own offer becomes their task
(`task`, assigned and accepted), which they mark done and claim hours for as any task (server/services/timebank.py).
Either side declining ends that proposal; the need stays open and the next run proposes others.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pycouchdb.exceptions import Conflict

from server.domain import matching as rules
from server.domain.access import Principal, may_see
from server.domain.declaration import HELP_KINDS, SPOKEN_LANGUAGES, Role, validate
from server.domain.errors import FieldError, UserError
from server.services import needs as needs_service
from server.store import queries
from server.store.couch import Couch, bulk_save, get_many, get_or_none, iter_view_docs

Doc = dict[str, Any]


class MatchError(UserError):
    """An offer or an answer refused, naming why (a message key of server/domain/matching_messages.py)."""

    def __init__(self, field: str, key: str, params: dict[str, Any] | None = None, status: int = 400) -> None:
        super().__init__([FieldError(field, key, params or {})], status)


# ---------------------------------------------------------------- offers

def new_offer(p: Principal, values: dict[str, Any], place: Doc, provider: tuple[str, str], now: dt.datetime) -> Doc:
    """An offer from the form's values (title, help_kind, languages, capacity, hours, building, skills), by
    `provider` (id, name) at `place` (a grid: only there; a community: all of it). Every field's problem is named."""
    errors: list[FieldError] = []
    title = str(values.get("title", "")).strip()
    if not title or len(title) > 200:
        errors.append(FieldError("title", "offer_title_required"))
    if values.get("help_kind") not in HELP_KINDS:
        errors.append(FieldError("help_kind", "offer_kind_required"))
    languages = [v for v in values.get("languages", []) if v in SPOKEN_LANGUAGES]
    if not languages or len(languages) != len(values.get("languages", [])):
        errors.append(FieldError("languages", "offer_languages_required"))
    capacity = values.get("capacity")
    if not isinstance(capacity, int) or not 1 <= capacity <= rules.MAX_CAPACITY:
        errors.append(FieldError("capacity", "offer_capacity_range", {"max": rules.MAX_CAPACITY}))
    errors += [FieldError("hours", key, params) for key, params in rules.hours_problems(values.get("hours"))]
    skills = [s.strip() for s in values.get("skills", []) if s.strip()]
    if len(skills) > 20 or any(len(s) > 50 for s in skills):
        errors.append(FieldError("skills", "offer_skills_long"))
    building = str(values.get("building", "")).strip()
    if len(building) > 20:
        errors.append(FieldError("building", "offer_building_long"))
    if errors:
        raise UserError(errors)
    routing = {k: place[k] for k in ("street", "community")}
    doc: Doc = {"_id": f"offer:{uuid.uuid4().hex}", "type": "offer", **routing, "provider": provider[0],
                "provider_name": provider[1], "keeper": p.user_id, "title": title, "help_kind": values["help_kind"],
                "languages": languages, "capacity": capacity, "hours": values["hours"], "status": "active",
                "created_by": p.user_id, "created_at": now.isoformat()}
    if place["type"] == "grid":
        doc["grid"] = place["_id"]
    doc.update({k: v for k, v in (("building", building), ("skills", skills)) if v})
    validate(doc)
    return doc


def may_manage_offer(p: Principal, offer: Doc) -> bool:
    """Who edits or withdraws an offer: its keeper, and the community's secretary (organisations' offers)."""
    return offer["keeper"] == p.user_id or (p.has(Role.SECRETARY) and offer["community"] in p.communities)


def managed_offer(couch: Couch, p: Principal, offer_id: str) -> Doc:
    """An active offer p may edit or withdraw; refused as unknown (404) if p may not, as over (409) if withdrawn."""
    offer = get_or_none(couch.main, offer_id) if offer_id.startswith("offer:") else None
    if offer is None or offer.get("type") != "offer" or not may_manage_offer(p, offer):
        raise MatchError("offer", "match_not_yours", status=404)
    if offer["status"] != "active":
        raise MatchError("offer", "offer_not_active", status=409)
    return offer


def edit_offer(couch: Couch, p: Principal, offer_id: str, values: dict[str, Any], now: dt.datetime) -> Doc:
    """The offer as now typed (every field checked as a new one's), same provider, keeper and place; proposals
    made already keep what they said (the matcher proposes anew from the edited offer)."""
    old = managed_offer(couch, p, offer_id)
    place = {"type": "grid" if old.get("grid") else "community", "_id": old.get("grid") or old["community"],
             "street": old["street"], "community": old["community"]}
    fresh = new_offer(p, values, place, (old["provider"], old["provider_name"]), now)
    doc = {**fresh, **{k: old[k] for k in ("_id", "_rev", "keeper", "created_by", "created_at")},
           "updated_at": now.isoformat()}
    validate(doc)
    return couch.main.save(doc)


def withdraw_offer(couch: Couch, p: Principal, offer_id: str, now: dt.datetime) -> Doc:
    """The provider stops offering: the offer is withdrawn and its open proposals with it, visibly to the
    residents waiting on them (accepted matches stand: their tasks go on)."""
    offer = managed_offer(couch, p, offer_id)
    stamp = now.isoformat()
    saved = couch.main.save({**offer, "status": "withdrawn", "updated_at": stamp})
    open_ = [{**m, "status": "withdrawn", "updated_at": stamp} for m in matches_in(couch, offer["community"])
             if m["offer"] == offer_id and m["status"] == "proposed"]
    if open_:
        bulk_save(couch.main, open_)
    return saved


def offers_in(couch: Couch, community: str) -> list[Doc]:
    return list(iter_view_docs(couch.main, "linli/by_place", [community, "offer"]))


# ---------------------------------------------------------------- running the matcher

def _open_needs(couch: Couch, p: Principal, community: str) -> list[Doc]:
    return [n for n in iter_view_docs(couch.main, "linli/by_place", [community, "need"])
            if n["status"] == "open" and needs_service.may_handle(p, n)]


def matches_in(couch: Couch, community: str) -> list[Doc]:
    return list(iter_view_docs(couch.main, "linli/by_place", [community, "match"]))


def views_of(couch: Couch, found: list[Doc]) -> list[rules.NeedView]:
    """The matcher's view of these needs: their household's building, never its address."""
    households = get_many(couch.main, {n["household"] for n in found if n.get("household")})
    return [rules.need_view(n, households.get(n.get("household") or "", {}).get("building") or "") for n in found]


def plan_for(couch: Couch, p: Principal, community: str) -> tuple[rules.Plan, list[Doc], list[Doc]]:
    """What the matcher would propose now for the open needs p handles in a community (nothing written), the
    needs it looked at and the active offers."""
    found = _open_needs(couch, p, community)
    offers = [o for o in offers_in(couch, community) if o["status"] == "active"]
    matches = matches_in(couch, community)
    record = rules.Record.of(matches, finished_matches(couch, matches))
    return rules.plan(views_of(couch, found), map(rules.offer_view, offers), record), found, offers


def finished_matches(couch: Couch, matches: list[Doc]) -> frozenset[str]:
    """The accepted matches whose help is over: their task done or declined, or (no task: an organisation's
    offer) their need done or closed."""
    accepted = [m for m in matches if m["status"] == "accepted"]
    docs = get_many(couch.main, {m.get("task") or m["need"] for m in accepted})
    over = {"task": ("done", "declined"), "need": ("done", "closed", "cancelled")}
    return frozenset(m["_id"] for m in accepted
                     if (d := docs.get(m.get("task") or m["need"])) and d["status"] in over[d["type"]])


def proposal_doc(proposal: rules.Proposal, need: Doc, offer: Doc, by: str, now: dt.datetime) -> Doc:
    doc: Doc = {"_id": match_id(need["_id"], offer["_id"]), "type": "match",
                **{k: need[k] for k in ("street", "community", "grid")}, "need": need["_id"], "offer": offer["_id"],
                "keeper": offer["keeper"], "provider_name": offer["provider_name"], "help_kind": offer["help_kind"],
                "language": proposal.need.language, "hours": rules.as_records(proposal.hours),
                "score": proposal.score, "factors": proposal.factors, "need_answer": "waiting",
                "provider_answer": "waiting", "status": "proposed", "created_by": by, "created_at": now.isoformat()}
    doc.update({k: v for k, v in (("resident", need.get("resident")), ("building", proposal.need.building)) if v})
    validate(doc)
    return doc


def match_id(need_id: str, offer_id: str) -> str:
    return f"match:{need_id.split(':', 1)[1]}:{offer_id.split(':', 1)[1]}"


def may_run(p: Principal) -> bool:
    return p.has(Role.SECRETARY, Role.GRID_WORKER)


def run(couch: Couch, p: Principal, now: dt.datetime) -> dict[str, rules.Plan]:
    """Run the matcher for the open needs p handles, community by community; store its proposals. A pair
    proposed before (whatever its answer) is never written again: `_id` is per pair and bulk_save refuses it."""
    if not may_run(p):
        raise MatchError("(form)", "forbidden", status=403)
    plans = {}
    for community in sorted(p.communities):
        plan, found, active = plan_for(couch, p, community)
        by_id = {n["_id"]: n for n in found}
        offers = {o["_id"]: o for o in active}
        docs = [proposal_doc(pr, by_id[pr.need.id], offers[pr.offer.id], p.user_id, now) for pr in plan.proposals]
        if docs:
            bulk_save(couch.main, docs)  # a conflict here is a proposal made meanwhile by another run: kept as it is
        plans[community] = plan
    return plans


# ---------------------------------------------------------------- answers

def side_of(p: Principal, match: Doc) -> str | None:
    """Which side p answers for: "provider" (the offer's keeper), "need" (its resident, or the need's grid staff
    for them), or None: this match is meant for someone else."""
    if match["keeper"] == p.user_id:
        return "provider"
    if (p.resident is not None and p.resident == match.get("resident")) or needs_service.may_handle(p, match):
        return "need"
    return None


def answer(couch: Couch, p: Principal, match_id_: str, accept: bool, now: dt.datetime) -> Doc:
    """p's side accepts or declines a proposal; once both accepted, the need is matched (see the module). Refused,
    with nothing stored: a match meant for someone else (404, as one p may not see), a side answering twice, a
    proposal no longer open."""
    for _ in range(3):  # the other side may answer at the same moment: read again and apply on top
        match = get_or_none(couch.main, match_id_) if match_id_.startswith("match:") else None
        side = side_of(p, match) if match is not None and may_see(p, match) else None
        if match is None or side is None:
            raise MatchError("match", "match_not_yours", status=404)
        if match["status"] != "proposed":
            raise MatchError("match", "match_closed", {"status": match["status"]}, status=409)
        if match[f"{side}_answer"] != "waiting":
            raise MatchError("match", "match_already_answered", status=409)
        new = {**match, f"{side}_answer": "accepted" if accept else "declined", f"{side}_answered_by": p.user_id,
               "updated_at": now.isoformat()}
        if not accept:
            new["status"] = "declined"
        elif new["need_answer"] == new["provider_answer"] == "accepted":
            return _both_accepted(couch, p, match, new, now)
        validate(new)
        try:
            return couch.main.save(new)
        except Conflict:
            continue
    raise MatchError("match", "match_busy", status=409)


def _both_accepted(couch: Couch, p: Principal, match: Doc, new: Doc, now: dt.datetime) -> Doc:
    """The need is matched to this offer: a volunteer's own offer becomes their task; the need's other proposals
    are withdrawn."""
    need = get_or_none(couch.main, match["need"])
    offer = get_or_none(couch.main, match["offer"])
    if need is None or offer is None or need["status"] != "open":
        raise MatchError("match", "match_need_taken", status=409)
    new["status"] = "accepted"
    task = _task_for(couch, need, offer, p, now) if offer["provider"] == offer["keeper"] else None
    if task is not None:
        new["task"] = task["_id"]
    validate(new)
    try:
        saved = couch.main.save(new)
    except Conflict:
        raise MatchError("match", "match_busy", status=409) from None
    if task is not None:
        couch.main.save(task)
    stamp = now.isoformat()
    matched = {**need, "status": "matched", "match": match["_id"], "handled_by": p.user_id, "handled_at": stamp,
               "updated_at": stamp, **({"task": task["_id"]} if task else {})}
    validate(matched)
    couch.main.save(matched)
    others = [{**m, "status": "withdrawn", "updated_at": stamp} for m in matches_in(couch, need["community"])
              if m["need"] == need["_id"] and m["_id"] != match["_id"] and m["status"] == "proposed"]
    if others:
        bulk_save(couch.main, others)
    return saved


def mark_done(couch: Couch, p: Principal, match_id_: str, now: dt.datetime) -> Doc:
    """The offer's keeper records an organisation's help as given (a free clinic seen, a tutor's hour): the match
    and its need are done. A volunteer's match is done through its task instead (hours claimed from the task)."""
    match = get_or_none(couch.main, match_id_) if match_id_.startswith("match:") else None
    if match is None or match.get("type") != "match" or not may_see(p, match) or side_of(p, match) != "provider":
        raise MatchError("match", "match_not_yours", status=404)
    if match["status"] != "accepted" or match.get("task"):
        raise MatchError("match", "match_not_done_able", status=409)
    stamp = now.isoformat()
    done = {**match, "status": "done", "updated_at": stamp}
    validate(done)
    try:
        saved = couch.main.save(done)
    except Conflict:
        raise MatchError("match", "match_busy", status=409) from None
    need = get_or_none(couch.main, match["need"])
    if need is not None and need["status"] == "matched" and need.get("match") == match_id_:
        finished = {**need, "status": "done", "handled_by": p.user_id, "handled_at": stamp, "updated_at": stamp}
        validate(finished)
        couch.main.save(finished)
    return saved


def _task_for(couch: Couch, need: Doc, offer: Doc, by: Principal, now: dt.datetime) -> Doc | None:
    """The volunteer's task for a need their own offer was matched to (accepted already: they said yes), carrying
    the address and name they now need; None for a need about no household."""
    if not need.get("household"):
        return None
    household = queries.load_doc(couch, need["household"], "household")
    resident = queries.load_doc(couch, need["resident"], "resident") if need.get("resident") else None
    if household is None:
        return None
    task: Doc = {"_id": f"task:{uuid.uuid4().hex}", "type": "task",
                 **{k: household[k] for k in ("street", "community", "grid")}, "household": household["_id"],
                 "address": household["address"], "need": need["_id"],
                 "kind": rules.TASK_KIND_OF_NEED.get(need["category"], "visit"), "notes": need["description"],
                 "assigned_to": offer["keeper"], "status": "accepted", "created_by": by.user_id,
                 "created_at": now.isoformat()}
    if resident is not None:
        task.update(resident=resident["_id"], resident_name=resident["name"])
    validate(task)
    return task


# ---------------------------------------------------------------- who sees which matches

def matches_of(couch: Couch, p: Principal, resident: Doc | None = None) -> list[Doc]:
    """The matches p answers or follows, newest first: a resident's own, an offer keeper's, and the matches of
    the needs grid staff handle."""
    places = set(p.grids) | (p.communities if p.has(Role.SECRETARY, Role.VOLUNTEER, Role.ADMIN) else set())
    if resident is not None:
        places.add(resident["grid"])
    found = {m["_id"]: m for place in sorted(places) for m in iter_view_docs(couch.main, "linli/by_place",
                                                                             [place, "match"]) if may_see(p, m)}
    newest = sorted(found.values(), key=lambda m: m["created_at"], reverse=True)
    return sorted(newest, key=lambda m: m["status"] != "proposed")
