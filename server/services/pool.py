"""The resource pool's acts (issue 17): booking slots, the keeper's approval, cancellation and the waitlist,
check-in (by the venue's code or the keeper), the no-show sweep, and the secretary's utilisation board.

A booking is one document per hour slot (`pool.slot_id`), written by the server here for people online and
by phones through the sync gateway (access.py `_pool_refusal`) offline: a slot held twice is one document,
in conflict when two phones took it offline, listed for a person to resolve (`conflicts_of`).
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any

from pycouchdb.exceptions import Conflict

from server.domain import pool as rules
from server.domain.access import Principal
from server.domain.declaration import BOOKER_KINDS, RESOURCE_KINDS, RESOURCE_OWNER_KINDS, Role, validate
from server.domain.errors import FieldError, UserError
from server.domain.field_rules import PHOTO_LIMITS, photo_refusal, sniffed_type
from server.security.keystore import KeyStore
from server.services import pool_months
from server.store import queries, sweeps
from server.store.couch import Couch, bulk_save, docs_of_type, get_many, iter_view_docs

Doc = dict[str, Any]


class PoolError(UserError):
    """A pool act refused, naming why (a message key of server/domain/pool_messages.py)."""

    def __init__(self, key: str, params: dict[str, Any] | None = None, field: str = "(form)",
                 status: int = 400) -> None:
        super().__init__([FieldError(field, key, params or {})], status)


# ---------------------------------------------------------------- resources

def venue_secret(keys: KeyStore, resource_id: str) -> str:
    """The venue's codes' secret, derived from the installation's wrapped code key (rules.venue_secret): never
    stored, so a copy of the database makes no day's code."""
    return rules.venue_secret(keys.code_key(), resource_id)


def add_resource(couch: Couch, keys: KeyStore, resource: Doc, now: dt.datetime) -> None:
    """Store a resource (its routing, name, hours and rules given) with its daily check-in codes' hashes."""
    held = {**resource, "type": "resource", "code_hashes": rules.code_hashes(
        venue_secret(keys, resource["_id"]), now.astimezone(rules.LOCAL).date())}
    validate(held)
    couch.main.save(held)


def renew_codes(couch: Couch, keys: KeyStore, now: dt.datetime) -> int:
    """The minute clock's part: every resource whose code hashes run out within CODE_DAYS_AHEAD days, or do not
    hold today's code (made from a secret it had before: an upgrade, venue_code 1 → 2), gets the hashes from
    CODE_DAYS_KEPT days back to CODE_DAYS_AHEAD ahead again (once a day each). How many."""
    today = now.astimezone(rules.LOCAL).date()
    renewed = []
    for resource in docs_of_type(couch.main, "resource"):
        secret = venue_secret(keys, resource["_id"])
        if rules.codes_due(resource, today) or not rules.code_matches(resource, today.isoformat(),
                                                                      rules.day_code(secret, today)):
            renewed.append({**resource, "code_hashes": rules.code_hashes(secret, today)})
    for doc in renewed:
        validate(doc)
    return sum(not r.error for r in bulk_save(couch.main, renewed)) if renewed else 0


def resources_of(couch: Couch, community: str) -> list[Doc]:
    return sorted(iter_view_docs(couch.main, "linli/by_place", [community, "resource"]), key=lambda r: r["name"])


def venue_code(keys: KeyStore, resource_id: str, now: dt.datetime) -> str:
    """The venue's check-in code today (its keeper's page shows it, and its QR code)."""
    return rules.day_code(venue_secret(keys, resource_id), now.astimezone(rules.LOCAL).date())


def week_codes(keys: KeyStore, resource_id: str, now: dt.datetime) -> list[Doc]:
    """The venue's codes for the coming week, one a day (its keeper prints them: a posted code is good for its
    day only)."""
    return rules.week_codes(venue_secret(keys, resource_id), now.astimezone(rules.LOCAL).date())


def keepers_codes(couch: Couch, keys: KeyStore, user: Doc, now: dt.datetime) -> dict[str, list[Doc]]:
    """The coming week's codes of the venues this person keeps (named a keeper), by resource: what their phone
    shows on the venue's page offline, as the server shows today's online (the secret never leaves the server)."""
    kept = [r["_id"] for c in user.get("communities") or [] for r in resources_of(couch, c)
            if user["_id"] in (r.get("keepers") or [])]
    return {resource_id: week_codes(keys, resource_id, now) for resource_id in kept}


def is_keeper(p: Principal, resource: Doc) -> bool:
    """Who approves and checks people in: the resource's keepers, and the community's secretary."""
    return p.user_id in (resource.get("keepers") or []) or (
        p.has(Role.SECRETARY) and resource["community"] in p.communities) or p.has(Role.ADMIN)


def may_add_resource(p: Principal, community: str) -> bool:
    """The community's secretary adds resources (a keeper edits theirs: `is_keeper`)."""
    return p.has(Role.SECRETARY) and community in p.communities


def keeper_candidates(couch: Couch, community: str) -> dict[str, str]:
    """Whom the secretary may name a resource's keepers: the community's active staff and volunteers (id: name),
    by name."""
    rows = couch.accounts.query("linli/users_by_community", key=community, include_docs="true", as_list=True)
    people = [r["doc"] for r in rows if r["doc"].get("active") and set(queries.roles(r["doc"])) - {Role.RESIDENT}]
    return {u["_id"]: u["display_name"] for u in sorted(people, key=lambda u: (u["display_name"], u["_id"]))}


RESOURCE_FIELDS = ("name", "kind", "owner_kind", "place", "capacity", "open_hours", "blackouts", "who_may_book",
                   "book_ahead_days", "max_hours", "approval", "grace_minutes")
PHOTO = PHOTO_LIMITS["resource"]


def resource_photo(data: bytes, declared: str | None) -> dict[str, Doc]:
    """A resource's photo as its attachment, judged by its bytes (field_rules.photo_refusal, as requests')."""
    refusal = photo_refusal(data, declared, PHOTO.max_bytes)
    if refusal:
        raise PoolError("pool_form_" + refusal, {"mb": PHOTO.max_bytes // (1024 * 1024)}, field="photo")
    kind = str(sniffed_type(data))
    return {"photo." + kind.split("/")[1]: {"content_type": kind, "data": base64.b64encode(data).decode()}}


def save_resource(couch: Couch, keys: KeyStore, p: Principal, community: Doc, values: Doc, now: dt.datetime,
                  old: Doc | None = None, photo: tuple[bytes, str | None] | None = None) -> Doc:
    """Add a resource to `community` (its secretary) or edit `old` (its keeper or the secretary): every field
    of the form checked and named; a new one gets its check-in code. A photo replaces the one it had."""
    if not (is_keeper(p, old) if old else may_add_resource(p, community["_id"])):
        raise PoolError("pool_not_keeper", status=403)
    # The secretary names the keepers; a keeper's own edit leaves them as they are.
    names_keepers = may_add_resource(p, community["_id"])
    candidates = keeper_candidates(couch, community["_id"]) if names_keepers else None
    problems = [FieldError(*problem) for problem in
                rules.resource_problems(values, RESOURCE_KINDS, RESOURCE_OWNER_KINDS, BOOKER_KINDS, candidates)]
    attachments = None
    if photo is not None:
        try:
            attachments = resource_photo(*photo)
        except PoolError as refused:
            problems += refused.errors
    if problems:
        raise UserError(problems)
    fields = {k: (v.strip() if isinstance(v, str) else v) for k, v in values.items() if k in RESOURCE_FIELDS}
    keepers = list(dict.fromkeys(values.get("keepers") or [])) if names_keepers else (old or {}).get("keepers", [])
    fields["keepers"] = keepers
    if old is not None:
        doc = {**old, **fields, "updated_at": now.isoformat()}
        if attachments:
            doc["_attachments"] = attachments
        validate(doc)
        couch.main.save(doc)
        return doc
    doc = {"_id": f"resource:{uuid.uuid4().hex[:12]}", "street": community["street"],
           "community": community["_id"], **fields, "created_by": p.user_id,
           "created_at": now.isoformat(), **({"_attachments": attachments} if attachments else {})}
    add_resource(couch, keys, doc, now)
    return doc


def load_resource(couch: Couch, resource_id: str) -> Doc:
    resource = queries.load_doc(couch, resource_id, "resource")
    if resource is None:
        raise PoolError("pool_no_resource", status=404)
    return resource


# ---------------------------------------------------------------- slots: what a day of a resource looks like

def slots_between(couch: Couch, resource: Doc, first: dt.date, last: dt.date) -> list[Doc]:
    """The resource's booking documents of the days `first` to `last`, in time order (their ids), each with
    `_conflicts` when two phones took it offline."""
    start, end = (rules.slot_id(resource["_id"], dt.datetime.combine(day, dt.time(0), rules.LOCAL))
                  for day in (first, last))
    rows = couch.main.all(startkey=start, endkey=end[:-2] + "99", include_docs="true", conflicts="true",
                          as_list=True)
    return [row["doc"] for row in rows if row.get("doc")]


def day_slots(couch: Couch, resource: Doc, day: dt.date) -> dict[int, Doc]:
    """The day's booking documents by hour (0-23), each with `_conflicts` when two phones took it offline."""
    return {int(doc["_id"][-2:]): doc for doc in slots_between(couch, resource, day, day)}


def held_state(doc: Doc) -> str | None:
    """How a slot's booking document holds it: "conflict" (two phones took it offline), its status while that
    holds the slot (rules.ACTIVE), or None (cancelled, declined, a no-show: free to book again)."""
    return "conflict" if doc.get("_conflicts") else doc["status"] if doc["status"] in rules.ACTIVE else None


def day_view(couch: Couch, resource: Doc, day: dt.date) -> list[Doc]:
    """Each open hour of a day: free, blocked (with why), or held (by whom is the page's to show or not)."""
    held, blocked = day_slots(couch, resource, day), rules.blocked_hours_on(resource, day)
    shown = []
    for hour in sorted(rules.open_hours_on(resource, day)):
        doc = held.get(hour)
        holds = held_state(doc) if doc else None
        state = "conflict" if holds == "conflict" else "blocked" if hour in blocked else holds or "free"
        shown.append({"hour": hour, "state": state, "booking": doc, "reason": blocked.get(hour, "")})
    return shown


def held_ahead(couch: Couch, community: str, now: dt.datetime) -> Doc:
    """What a resident's phone shows of other people's bookings offline (pages.js poolResource), beside their own,
    which its replica holds: for each resource of the community, from today to the end of its booking window, the
    hours held or in conflict, by slot key (YYYYMMDDHH) → state (`held_state`). Whose they are stays on the server:
    a resident's calendar never names them, and their phone holds no one else's booking."""
    today = now.astimezone(rules.LOCAL).date()
    resources = {}
    for resource in resources_of(couch, community):
        until = today + dt.timedelta(days=resource["book_ahead_days"])
        states = {doc["_id"].rsplit(":", 1)[1]: held_state(doc) for doc in slots_between(couch, resource, today, until)}
        resources[resource["_id"]] = {"until": until.isoformat(),
                                      "hours": {slot: state for slot, state in states.items() if state}}
    return {"from": today.isoformat(), "resources": resources}


# ---------------------------------------------------------------- booking, cancelling, the waitlist

def booker_kinds(user: Doc) -> set[str]:
    return rules.booker_kinds(user.get("roles", []), resident=bool(user.get("resident")))


def book(couch: Couch, user: Doc, resource_id: str, start: dt.datetime, hours: Any, people: Any, purpose: str,
         now: dt.datetime) -> list[Doc]:
    """Book `hours` slots from `start` for `user` (online: a resident, anyone at a desk): every slot free and
    within the resource's rules, or nothing is stored."""
    resource = load_resource(couch, resource_id)
    if not isinstance(hours, int) or isinstance(hours, bool) or not 1 <= hours <= 24:
        raise PoolError("pool_too_long", {"max": resource["max_hours"]}, field="hours")
    today = now.astimezone(rules.LOCAL).date()  # a day far off (year 1, year 9999) is refused by its date alone,
    if start.date() < today - dt.timedelta(days=1):  # before any arithmetic on it could overflow
        raise PoolError("pool_past", field="day")
    if start.date() > today + dt.timedelta(days=resource["book_ahead_days"] + 1):
        raise PoolError("pool_too_far", {"days": resource["book_ahead_days"]}, field="day")
    start = start.astimezone(rules.LOCAL)
    group = rules.slot_id(resource_id, start)
    ids = [rules.slot_id(resource_id, s) for s in rules.slots_of(start, hours)]
    stored = get_many(couch.main, ids)
    docs = []
    for slot_id, slot in zip(ids, rules.slots_of(start, hours), strict=True):
        old = stored.get(slot_id)
        if old is not None and old.get("status") in rules.ACTIVE:
            raise PoolError("pool_slot_taken", status=409)
        doc = {"_id": slot_id, **({"_rev": old["_rev"], "waitlist": old["waitlist"]} if old and old.get("waitlist")
                                  else {"_rev": old["_rev"]} if old else {}),
               "type": "booking", "street": resource["street"], "community": resource["community"],
               "resource": resource_id, "slot_start": slot.isoformat(), "group": group, "hours": hours,
               "people": people, "status": "requested" if resource["approval"] else "confirmed",
               "booked_by": user["_id"], "created_at": now.isoformat(),
               **({"resident": user["resident"]} if user.get("resident") else {}),
               **({"purpose": purpose.strip()[:200]} if purpose.strip() else {})}
        refused = rules.booking_refusal(doc, resource, booker_kinds(user), now)
        if refused:
            raise PoolError(*refused, field=REFUSAL_FIELDS.get(refused[0], "(form)"))
        validate(doc)
        docs.append(doc)
    results = bulk_save(couch.main, docs)
    if any(r.error for r in results):  # someone took one of the slots meanwhile: give back what we took
        bulk_save(couch.main, [{**d, "_rev": r.rev, "status": "cancelled"} for d, r in zip(docs, results, strict=True)
                               if not r.error])
        raise PoolError("pool_slot_taken", status=409)
    return docs


# The form field each refusal is shown at (also offline: /pwa/session.json "pool"); any other: the form's.
REFUSAL_FIELDS = {"pool_too_long": "hours", "pool_over_capacity": "people", "pool_past": "day", "pool_too_far": "day",
                  "pool_closed": "hour", "pool_blackout": "hour"}


def group_of(couch: Couch, booking_id: str) -> list[Doc]:
    """Every slot of the booking whose first slot this is (a missing id: none)."""
    first = queries.load_doc(couch, booking_id, "booking")
    if first is None or first["group"] != first["_id"]:
        return []
    start = dt.datetime.fromisoformat(first["slot_start"])
    ids = [rules.slot_id(first["resource"], s) for s in rules.slots_of(start, first["hours"])]
    return [d for d in get_many(couch.main, ids).values() if d.get("group") == booking_id]


def _save_all(couch: Couch, docs: list[Doc]) -> None:
    for doc in docs:
        validate(doc)
    if any(r.error for r in bulk_save(couch.main, docs)):
        raise PoolError("pool_not_pending", status=409)


def cancel(couch: Couch, user: Doc, booking_id: str, now: dt.datetime) -> None:
    """Who booked cancels; each slot goes to the first on its waitlist, if any."""
    slots = group_of(couch, booking_id)
    if not slots:
        raise PoolError("pool_checkin_booking", status=404)
    if slots[0]["booked_by"] != user["_id"]:
        raise PoolError("pool_not_yours", status=403)
    if slots[0]["status"] not in rules.ACTIVE:
        raise PoolError("pool_not_active", status=409)
    resource = load_resource(couch, slots[0]["resource"])
    _save_all(couch, [_next_in_line(slot, resource, now) for slot in slots])


def _next_in_line(slot: Doc, resource: Doc, now: dt.datetime) -> Doc:
    """A slot given up: the first waiting takes it, as a booking of that one hour; else it is free."""
    waiting = slot.get("waitlist") or []
    if not waiting:
        return {**slot, "status": "cancelled", "decided_at": now.isoformat()}
    taken = {k: v for k, v in slot.items() if k not in ("resident", "purpose", "decided_by", "decided_at")}
    return {**taken, "group": slot["_id"], "hours": 1, "booked_by": waiting[0], "waitlist": waiting[1:],
            "status": "requested" if resource["approval"] else "confirmed", "created_at": now.isoformat()}


WAITLIST_MAX = 20


def join_waitlist(couch: Couch, user: Doc, booking_id: str) -> Doc:
    """Queue for a held slot: if its booking is cancelled, the first in line gets it."""
    slot = queries.load_doc(couch, booking_id, "booking")
    if slot is None or slot["status"] not in rules.ACTIVE:
        raise PoolError("pool_not_active", status=409)
    resource = load_resource(couch, slot["resource"])
    if not booker_kinds(user) & set(resource["who_may_book"]):
        raise PoolError("pool_not_for_you", status=403)
    waiting = slot.get("waitlist") or []
    if user["_id"] in waiting or user["_id"] == slot["booked_by"]:
        raise PoolError("pool_waitlist_already", status=409)
    if len(waiting) >= WAITLIST_MAX:
        raise PoolError("pool_waitlist_full", status=409)
    doc = {**slot, "waitlist": [*waiting, user["_id"]]}
    _save_all(couch, [doc])
    return doc


def decide(couch: Couch, p: Principal, booking_id: str, approve: bool, now: dt.datetime) -> None:
    """The keeper approves or declines a booking awaiting approval (every slot of it)."""
    slots = group_of(couch, booking_id)
    if not slots:
        raise PoolError("pool_checkin_booking", status=404)
    if not is_keeper(p, load_resource(couch, slots[0]["resource"])):
        raise PoolError("pool_not_keeper", status=403)
    if slots[0]["status"] != "requested":
        raise PoolError("pool_not_pending", status=409)
    _save_all(couch, [{**s, "status": "confirmed" if approve else "declined", "decided_by": p.user_id,
                       "decided_at": now.isoformat()} for s in slots])


def bookings_of(couch: Couch, user_id: str) -> list[Doc]:
    """A person's bookings (their first slots), newest first."""
    return list(reversed(list(iter_view_docs(couch.main, "linli/pool", ["by", user_id]))))


def to_approve(couch: Couch, resource: Doc) -> list[Doc]:
    """Bookings of this resource awaiting its keeper, soonest first."""
    return list(iter_view_docs(couch.main, "linli/pool", ["requested", resource["_id"]]))


def conflicts_of(couch: Couch, resource: Doc) -> list[str]:
    """Slots of this resource two phones took offline: one document, two branches, for a person to resolve."""
    rows = couch.main.query("linli/conflicts", as_list=True, key=[resource["street"], resource["community"], ""])
    prefix = rules.slot_id(resource["_id"], dt.datetime(2000, 1, 1, tzinfo=rules.LOCAL))[:-10]
    return sorted(row["id"] for row in rows if row["id"].startswith(prefix))


# ---------------------------------------------------------------- check-in and no-shows

def check_in(couch: Couch, user: Doc, booking_id: str, method: str, code: str, now: dt.datetime) -> Doc:
    """Record that they came: the booker by the venue's code, or the keeper (or grid staff) for them."""
    booking = queries.load_doc(couch, booking_id, "booking")
    resource = queries.load_doc(couch, booking["resource"], "resource") if booking else None
    p = Principal.of(user)
    staff = resource is not None and (is_keeper(p, resource) or p.has(Role.GRID_WORKER) and
                                      resource["community"] in p.communities)
    doc = {"_id": rules.checkin_id(booking_id), "type": "checkin", "street": (resource or {}).get("street"),
           "community": (resource or {}).get("community"), "resource": (booking or {}).get("resource"),
           "booking": booking_id, "method": method, **({"code": code.strip().upper()} if method == "scan" else {}),
           "created_by": user["_id"], "created_at": now.isoformat()}
    refused = rules.checkin_refusal(user["_id"], staff, doc, booking, resource)
    if refused:
        raise PoolError(*refused, field="code" if refused[0] == "pool_checkin_code" else "(form)",
                        status=404 if refused[0] == "pool_checkin_booking" else 400)
    validate(doc)
    try:
        return couch.main.save(doc)
    except Conflict:
        raise PoolError("pool_checkin_done", status=409) from None


def checkable(couch: Couch, user: Doc, resource: Doc, now: dt.datetime) -> list[Doc]:
    """This person's bookings of this resource they may check in to now, not checked in yet."""
    mine = [d for d in bookings_of(couch, user["_id"]) if d["resource"] == resource["_id"]]
    checked = get_many(couch.main, [rules.checkin_id(d["_id"]) for d in mine])
    return [d for d in mine if d["status"] == "confirmed" and rules.checkin_id(d["_id"]) not in checked
            and rules.checkin_open(d, resource, now)]


def sweep_no_shows(couch: Couch, now: dt.datetime) -> int:
    """Confirmed bookings whose grace period passed with nobody checked in: a no-show, and every slot of it is
    released. Idempotent (the minute clock runs it); looks back a day, longer than any grace period."""
    rows = couch.main.query("linli/pool", as_list=True, startkey=["due", (now - dt.timedelta(days=1)).astimezone(
        rules.LOCAL).isoformat()], endkey=["due", now.astimezone(rules.LOCAL).isoformat()])
    firsts = get_many(couch.main, [row["id"] for row in rows])
    checked = get_many(couch.main, [rules.checkin_id(i) for i in firsts])
    resources = get_many(couch.main, {d["resource"] for d in firsts.values()})

    def release(first: Doc) -> bool:
        resource = resources.get(first["resource"])
        if resource is None or rules.checkin_id(first["_id"]) in checked or not rules.no_show_due(first, resource,
                                                                                                  now):
            return False
        try:
            _save_all(couch, [{**s, "status": "no_show", "decided_at": now.isoformat()}
                              for s in group_of(couch, first["_id"])])
        except PoolError:  # changed meanwhile (cancelled, another process): the next sweep looks again
            return False
        return True
    return sum(sweeps.each("no-shows", firsts.values(), release))


# ---------------------------------------------------------------- use measured: the utilisation board

def months_back(now: dt.datetime, count: int) -> list[str]:
    """The `count` whole months before this one, oldest first."""
    month = now.astimezone(rules.LOCAL).date().replace(day=1)
    out = []
    for _ in range(count):
        month = (month - dt.timedelta(days=1)).replace(day=1)
        out.append(f"{month:%Y-%m}")
    return out[::-1]


def board(couch: Couch, community: str, now: dt.datetime, months: int = 12) -> list[Doc]:
    """Each resource of the community with its last `months` whole months, its flag and, if flagged, a
    suggestion; flagged first, then by name. Read from the kept months (pool_months.py), caught up first."""
    shown = months_back(now, months)
    resources = resources_of(couch, community)
    pool_months.catch_up(couch)
    kept = pool_months.months_of(couch, resources, shown)
    rows = []
    for resource in resources:
        table = [rules.month_of(resource, m, kept[resource["_id"]].get(m, {})) for m in shown]
        flag = rules.flagged(table)
        rows.append({"resource": resource, "months": table, "flagged": flag,
                     "suggestion": rules.suggestion(resource, table[-rules.IDLE_MONTHS:]) if flag else None})
    return sorted(rows, key=lambda r: (not r["flagged"], r["resource"]["name"]))
