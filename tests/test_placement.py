"""Every write rule checks every field that places a document (issue 13, findings 5 and 6).

For every type a phone or gateway may write and every demo role, a document the role may write is mutated one
field (then several) at a time, each placement field set to values from another grid, community, household,
resident, device, gateway, user or time, and the rule (`access.write_refusal`) must refuse exactly what an
independent statement of the rules below (`expected`) forbids: exhaustively for single mutations, by hypothesis for
several at once, and for a bounded sample through the real sync gateway. The statement here is written from the
world's own tables (which grid is in which community, who looks after which household), not from access.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.domain import access
from server.domain import timebank as timebank_rules
from server.domain.access import OUTSIDE_SCOPE, Principal, may_write, write_ref_ids, write_refusal
from server.domain.declaration import CLIENT_WRITABLE, DOC_TYPES, Role
from server.domain.errors import FieldError
from server.security import accounts
from server.store.config import Settings
from server.store.couch import Couch, bulk_save
from server.store.embedded_couch import EmbeddedCouch, free_port

from .street import hashed
from .sync_harness import login, serve, stop

Doc = dict[str, Any]
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
PASSWORD = "placement test password"

# ---------------------------------------------------------------- the world, as tables

S, OTHER_STREET = "street:s", "street:elsewhere"
C1, C2 = "community:c1", "community:c2"
G11, G12, G21 = "grid:c1-g1", "grid:c1-g2", "grid:c2-g1"
COMMUNITY_OF = {G11: C1, G12: C1, G21: C2}
GATEWAY_OF = {C1: "gateway:gw1", C2: "gateway:gw2"}
SECOND_GATEWAY_OF = {C1: "gateway:gw1b", C2: "gateway:gw2b"}
COMMUNITY_OF_GATEWAY = {gw: c for gateways in (GATEWAY_OF, SECOND_GATEWAY_OF) for c, gw in gateways.items()}


def household_id(grid: str, n: int) -> str:
    return f"household:{grid[5:]}-h{n}"


def resident_id(grid: str, n: int) -> str:
    return f"resident:{grid[5:]}-h{n}"


def device_id(grid: str, n: int) -> str:
    return f"device:{grid[5:]}-h{n}"


def need_id(grid: str, n: int) -> str:
    return f"need:{grid[5:]}-h{n}"


# Each household has one resident and one wristband, read by one of its community's two gateways, and one need.
PLACES = {(g, n): (household_id(g, n), resident_id(g, n), device_id(g, n)) for g in COMMUNITY_OF for n in (1, 2)}
NEED_OF = {need_id(g, n): ids for (g, n), ids in PLACES.items()}  # need -> its household, resident, device
GATEWAY_OF_DEVICE = {device_id(g, n): (GATEWAY_OF if n == 1 else SECOND_GATEWAY_OF)[COMMUNITY_OF[g]] for g, n in PLACES}
GRID_OF = {i: g for (g, _), ids in PLACES.items() for i in ids}
HOUSEHOLD_OF = {i: household_id(g, n) for (g, n), ids in PLACES.items() for i in ids[1:]}
RESIDENT_OF_DEVICE = {device_id(g, n): resident_id(g, n) for g, n in PLACES}
# What became of a need (its `request`, its `visit`): a service request and a visit about each household's resident.
RECORDS = {(g, n): {"request": f"service_request:{g[5:]}-h{n}-asked", "visit": f"visit:{g[5:]}-h{n}-answer"}
           for g, n in PLACES}
RECORD_PLACE = {i: (g, n) for (g, n), records in RECORDS.items() for i in records.values()}


def user(name: str) -> str:
    return f"user:{name}"


WORKER = {g: user(f"worker-{g[5:]}") for g in COMMUNITY_OF}
VOLUNTEER = {g: user(f"volunteer-{g[5:]}") for g in COMMUNITY_OF}
SECRETARY = {c: user(f"secretary-{c[10:]}") for c in (C1, C2)}
LOOKED_AFTER = {household_id(g, 1): VOLUNTEER[g] for g in COMMUNITY_OF}  # household -> its volunteer


@dataclass(frozen=True)
class Actor:
    role: str
    user_id: str
    roles: tuple[Role, ...]
    communities: tuple[str, ...] = ()
    grids: tuple[str, ...] = ()
    department: str | None = None
    resident: str | None = None
    gateway: str | None = None
    organisation: str | None = None

    @property
    def principal(self) -> Principal:
        return Principal(self.user_id, frozenset(self.roles), S, frozenset(self.communities), frozenset(self.grids),
                         self.department, self.resident, self.gateway, self.organisation)


ACTORS = [
    Actor("grid_worker", WORKER[G11], (Role.GRID_WORKER,), (C1,), (G11,)),
    Actor("volunteer", VOLUNTEER[G11], (Role.VOLUNTEER,), (C1,), (G11,)),
    Actor("secretary", SECRETARY[C1], (Role.SECRETARY,), (C1,)),
    Actor("department", user("dept-health"), (Role.DEPARTMENT_STAFF,), department="department:health"),
    Actor("resident", user("resident-1"), (Role.RESIDENT,), resident=resident_id(G11, 1)),
    Actor("admin", user("admin"), (Role.ADMIN,)),
    Actor("partner", user("partner-1"), (Role.PARTNER,), organisation="organisation:c1-shop"),
    Actor("gateway", user("gateway-1"), (Role.GATEWAY,), (C1,), (G11,), gateway=GATEWAY_OF[C1]),
]
PHONE_REGISTERED = NOW - dt.timedelta(days=30)


def phone_key_id(user_id: str) -> str:
    return f"phone_key:{user_id[5:]}.p1"


# ---------------------------------------------------------------- the rules, stated independently

# The types clients may write; everything else is the server's (filing log, approvals, keys, grants, accounts).
CLIENT_TYPES = {"street", "department", "community", "grid", "gateway", "household", "resident", "visit", "need",
                "service_request", "device", "alert", "reading", "safety_rules", "device_health", "gateway_health",
                "access_report", "claim", "task", "ballot", "redemption", "booking", "checkin",
                "fix_check",  # issue 18: a reporter's "is it really fixed?" answer, recorded by the grid worker offline
                "survey_response"}  # issue 18: a sampled household's survey answer, written down at the door offline
GRID_TYPES = CLIENT_TYPES - {"street", "department", "community", "grid", "gateway", "gateway_health", "redemption",
                             "booking", "checkin", "survey_response"}
STAFF_TYPES = {"household", "resident", "visit", "need", "service_request", "device", "alert", "reading",
               "safety_rules", "access_report", "task"}
# Fields no client sets or changes: whose key a device's readings are sealed to (issue 13, finding 1).
KEY_PICKING = {"device": ("resident", "write_public", "write_key_version", "write_signature")}
# The resource pool (issue 17): who works in a community books its resources' slots and checks in, as themselves.
POOL_TYPES = ("booking", "checkin")
AREA_OF_ROLE = {  # type -> where the role may write it (the document as written, and the version it replaces)
    "admin": {t: lambda d, old: True for t in CLIENT_TYPES - {"device_health", "gateway_health", "claim", "ballot",
                                                             "redemption", "fix_check", "survey_response",
                                                             *POOL_TYPES}},
    "secretary": {**{t: lambda d, old: d["community"] == C1 for t in STAFF_TYPES | {"grid", "gateway"}},
                  **{t: lambda d, old: d["community"] == C1 for t in POOL_TYPES}},
    "grid_worker": {**{t: lambda d, old: d["grid"] == G11 for t in STAFF_TYPES | {"claim", "ballot", "fix_check"}},
                    **{t: lambda d, old: d["community"] == C1 for t in POOL_TYPES},
                    "survey_response": lambda d, old: GRID_OF.get(d["household"]) == G11},
    "volunteer": {  # tasks about the households they look after, or one assigned to them; requests in their grid
        **{t: lambda d, old: (LOOKED_AFTER.get(d.get("household")) == VOLUNTEER[G11]
                              or (old is not None and old.get("assigned_to") == VOLUNTEER[G11]))
           for t in ("visit", "need")},
        "service_request": lambda d, old: d["grid"] == G11,
        "claim": lambda d, old: d["grid"] == G11,
        **{t: lambda d, old: d["community"] == C1 for t in POOL_TYPES},
        "survey_response": lambda d, old: GRID_OF.get(d["household"]) == G11,
        # a task assigned to them: answered only (its state and their note), never made or moved
        "task": lambda d, old: old is not None and old.get("assigned_to") == VOLUNTEER[G11] == d.get("assigned_to")
        and all(old.get(k) == d.get(k) for k in {*old, *d} - {"_rev", "status", "volunteer_note", "updated_at"})},
    "resident": {**{t: lambda d, old: d.get("resident") == resident_id(G11, 1)
                    for t in ("visit", "need", "service_request")},
                 "checkin": lambda d, old: True,  # their own booking's, by the venue's code (_checkin_ok)
                 # for their own household, in its community (offline too: issue 17)
                 "booking": lambda d, old: d.get("resident") == resident_id(G11, 1) and d["community"] == C1},
    "gateway": {
        **{t: lambda d, old: d["grid"] == G11 for t in ("alert", "reading")},
        "device_health": lambda d, old: d["grid"] == G11 and d["gateway"] == GATEWAY_OF[C1],
        "gateway_health": lambda d, old: d["gateway"] == GATEWAY_OF[C1]},
    "department": {},
    # Points (issue 16): a partner's staff honours its own organisation's vouchers, nothing else.
    "partner": {"redemption": lambda d, old: d.get("organisation") == "organisation:c1-shop"},
}
AUTHORS = ("created_by", "updated_by", "acknowledged_by", "owner", "handled_by", "booked_by")
# Time bank (issue 16): the tasks hours may be claimed for, each with its grid, its resident and who did it (the
# person it was assigned to, else who recorded it); a claim's answer is the server's to record. Their needs are
# apart from the open ones every household has (need_id), which are no one's to claim yet.
TASKS = {"need:c1-g1-h1-help": (G11, resident_id(G11, 1), VOLUNTEER[G11]),
         "visit:c1-g1-h1": (G11, resident_id(G11, 1), WORKER[G11]),
         "visit:c1-g1-h2": (G11, resident_id(G11, 2), WORKER[G11]),
         "need:c2-g1-h1-help": (G21, resident_id(G21, 1), VOLUNTEER[G21])}
CLAIM_SERVER_SET = ("decided_by", "decided_at", "consent", "dispute_note", "transfer")
# Points (issue 16): each community's shop, its reward and one voucher of it; a redemption's id is its voucher's.
SHOPS = {C1: "organisation:c1-shop", C2: "organisation:c2-shop"}
VOUCHERS = {f"voucher:{c[10:]}-1:00001": (c, SHOPS[c], f"reward:{c[10:]}-1") for c in (C1, C2)}
# The resource pool: a hall of each community open all day, every day, for everyone who works there, up to 30 days
# ahead, 10 people; its check-in code; a booking of the hall's slot that starts `CHECKIN_LEAD` from now, for each
# person who may book it (what a check-in names); a keeper's decision and the waitlist are the server's.
LOCAL = dt.timezone(dt.timedelta(hours=8))
HALL = {C1: "resource:hall-c1", C2: "resource:hall-c2"}
HALL_CODE = "CODE23456789"
BOOKING_SERVER_SET = ("decided_by", "decided_at", "waitlist")
TOMORROW_TEN = (NOW.astimezone(LOCAL) + dt.timedelta(days=1)).replace(hour=10, minute=0, second=0)
STARTED = NOW.astimezone(LOCAL).replace(minute=0, second=0) - dt.timedelta(hours=2)  # the booking checked in to


def slot_of(resource: str, start: dt.datetime) -> str:
    return f"booking:{resource[9:]}:{start.astimezone(LOCAL):%Y%m%d%H}"


def booking_of(user_id: str) -> str:
    """The booking each person checks in to: the hall's, two hours ago, one slot each (a day apart)."""
    index = sorted({*WORKER.values(), *VOLUNTEER.values(), *SECRETARY.values()}).index(user_id) \
        if user_id in {*WORKER.values(), *VOLUNTEER.values(), *SECRETARY.values()} else 99
    return slot_of(HALL[C1], STARTED - dt.timedelta(days=index))
CLAIM_SERVER_SET = ("decided_by", "decided_at", "consent", "dispute_note", "transfer", "in_person_refused")
# Confirmed in person on the provider's phone: the first resident of grid c1-g1 holds one-time codes 0-7, of which
# 0 and 3 are spent and 7 not yet good (the good ones are the next five unspent); every other resident holds none.
CODE_SECRET = "5e" * 32
CODES = [timebank_rules.confirmation_code(CODE_SECRET, n) for n in range(8)]
GOOD_CODES = {resident_id(G11, 1): {CODES[n] for n in (1, 2, 4, 5, 6)}}
IN_PERSON = [{"in_person_code": code, "in_person_consent": consent,
              "in_person_at": (NOW - dt.timedelta(minutes=5)).isoformat()}
             for code in [*CODES, "12345"] for consent in (True, False)]
IN_PERSON.append({"in_person_code": CODES[1]})  # no consent, no time
SERVER_SET = ("department", "departments", "whistles", "due_respond", "due_close", "accepted", "on_site")
TIMES = ("visited_at", "created_at", "updated_at", "raised_at", "acknowledged_at", "measured_at", "at",
         "registered_at", "last_seen_at", "heartbeat_at", "handled_at")


def _place_ok(d: Doc) -> bool:
    t = d["type"]
    if d["street"] != S:
        return False
    if t == "street":
        return d["_id"] == S
    if t == "community":
        return d["community"] == d["_id"]
    if t == "grid":
        return d["grid"] == d["_id"] and d["community"] in (C1, C2)
    if t in ("gateway", "gateway_health", *POOL_TYPES):
        return d["community"] in (C1, C2)
    if t in GRID_TYPES:
        return COMMUNITY_OF.get(d["grid"]) == d["community"]
    return True


def _links_ok(actor: Actor, d: Doc) -> bool:
    household = d["_id"] if d["type"] == "household" else d.get("household")
    resident = d.get("resident")
    if d["type"] in POOL_TYPES:  # community-wide: a phone books as its user, a resident for their own household
        return resident is None or resident == actor.resident
    if d["type"] == "survey_response":  # community-wide: its household is judged by _survey_ok
        return True
    if household is not None and d["type"] != "household" and GRID_OF.get(household) != d["grid"]:
        return False
    if "head" in d and HOUSEHOLD_OF.get(d["head"]) != household:
        return False
    if resident is not None and (GRID_OF.get(resident) != d["grid"]
                                 or household not in (None, HOUSEHOLD_OF.get(resident))):
        return False
    if "need" in d:  # a task answering a resident's need: that need, of its household and resident
        need_household, need_resident, _ = NEED_OF.get(d["need"], (None, None, None))
        if need_household is None or GRID_OF[need_household] != d["grid"] or household != need_household \
                or resident not in (None, need_resident):
            return False
    if "device" in d:
        device = d["device"]
        if GRID_OF.get(device) != d["grid"] or household not in (None, HOUSEHOLD_OF.get(device)) \
                or resident not in (None, RESIDENT_OF_DEVICE.get(device)):
            return False
        if actor.gateway and GATEWAY_OF_DEVICE[device] != actor.gateway:
            return False
    for name in ("request", "visit"):  # a need's outcome: about the same household and resident, in its grid
        if name in d:
            place = RECORD_PLACE.get(d[name])
            if place is None or RECORDS[place][name] != d[name] or place[0] != d["grid"] \
                    or household not in (None, household_id(*place)) \
                    or resident not in (None, resident_id(*place)):
                return False
    if d["type"] == "need" and "task" in d:  # a need given to a volunteer: a task about its household, in its grid
        task = REFS.get(d["task"])
        if task is None or task["type"] != "task" or task["grid"] != d["grid"] or task["household"] != household:
            return False
    if "gateway" in d and d["type"] != "gateway":
        if COMMUNITY_OF_GATEWAY.get(d["gateway"]) != d["community"]:
            return False
        if actor.gateway and d["gateway"] != actor.gateway:
            return False
    return True


def _works_in(user_id: str, d: Doc) -> bool:
    grid = d.get("grid")
    return user_id in (WORKER.get(grid), VOLUNTEER.get(grid), SECRETARY.get(d.get("community")))


def _people_ok(actor: Actor, d: Doc) -> bool:
    if any(d.get(name) not in (None, actor.user_id) for name in AUTHORS):
        return False
    if any(v != VOLUNTEER.get(d["grid"]) for v in d.get("volunteers", [])):
        return False
    if "assigned_to" in d and not _works_in(d["assigned_to"], d):
        return False
    if d["type"] == "task" and d["assigned_to"] != VOLUNTEER.get(d["grid"]):
        return False  # a task goes to a volunteer of its grid
    if "phone_key" in d and d["phone_key"] != phone_key_id(actor.user_id):
        return False
    return not any(name in d for name in SERVER_SET)


def _when(value: str) -> dt.datetime | None:
    when = dt.datetime.fromisoformat(value)
    return when if when.tzinfo else None


def _times_ok(d: Doc) -> bool:
    earliest = NOW - dt.timedelta(days=90)
    if d["type"] == "access_report":
        earliest = max(earliest, PHONE_REGISTERED - dt.timedelta(minutes=10))
    times = [_when(d[name]) for name in TIMES if name in d]
    return all(t is not None and earliest <= t <= NOW + dt.timedelta(minutes=10) for t in times)


def _claim_ok(actor: Actor, old: Doc | None, d: Doc) -> bool:
    """A claim is made once (never edited), as claimed, under its task's id, for 1 minute to 8 hours of a task the
    writer did, about that task's resident in that task's grid."""
    if d["type"] != "claim":
        return True
    minutes = d.get("minutes")
    return (old is None and d["_id"] == f"claim:{d.get('task')}" and d.get("status") == "claimed"
            and type(minutes) is int and 0 < minutes <= 480
            and TASKS.get(d["task"]) == (d["grid"], d.get("resident"), actor.user_id)
            and not any(name in d for name in CLAIM_SERVER_SET)
            and (not any(name in d for name in ("in_person_code", "in_person_consent", "in_person_at"))
                 or (d.get("in_person_consent") is True and "in_person_at" in d
                     and d.get("in_person_code") in GOOD_CODES.get(d["resident"], set()))))


# Deliberation (issue 15): an open household vote in each community and a closed one, each household's voting card
# (its code "CARD" + the household), and what a ballot at the door must be (server/domain/ballots.py, restated).
MATTERS = {"matter:m1": (C1, "open"), "matter:m2": (C2, "open"), "matter:m3": (C1, "closed")}
# The door survey (issue 18): this month's sample of each community (the first household of each grid), and an
# older month's of community 1 (its second households): an answer counts for a household sampled in its month.
MONTH, LAST_YEAR = NOW.astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m"), "2020-01"
SAMPLED = {(C1, MONTH): {household_id(G11, 1), household_id(G12, 1)}, (C2, MONTH): {household_id(G21, 1)},
           (C1, LAST_YEAR): {household_id(G11, 2)}}


def door_answer_id(household: str, month: str) -> str:
    return f"survey_response:{COMMUNITY_OF[GRID_OF[household]][10:]}:{month}:door-{household[10:]}"


def _survey_ok(actor: Actor, old: Doc | None, d: Doc) -> bool:
    """Written once, at the door, with consent, a score of 1-5, for a household of the writer's grid (a volunteer's:
    one they look after) sampled in the answer's month and community, under that household's id for the month."""
    if d["type"] != "survey_response":
        return True
    household = d["household"]
    return (old is None and d["channel"] == "door" and d["consent"] is True and d["overall"] in (1, 2, 3, 4, 5)
            and not isinstance(d["overall"], bool) and household in SAMPLED.get((d["community"], d["month"]), ())
            and GRID_OF.get(household) in actor.grids and d["_id"] == door_answer_id(household, d["month"])
            and (actor.role != "volunteer" or LOOKED_AFTER.get(household) == actor.user_id))  # theirs to see
MATTER_OPENS, MATTER_CLOSES = NOW - dt.timedelta(days=2), NOW + dt.timedelta(days=2)


def _card_hash(ballot_id: str, household: str) -> str:
    return hashlib.sha256(f"linli voting card\n{ballot_id}\nCARD{household.upper()}".encode()).hexdigest()


def _confirmed(d: Doc, household: str) -> str:
    message = json.dumps({k: d.get(k) for k in ("_id", "assisted_by", "channel", "choice", "created_at")},
                         ensure_ascii=False, separators=(",", ":")).encode()
    return hmac.new(bytes.fromhex(_card_hash(d["_id"], household)), message, hashlib.sha256).hexdigest()


def _ballot_ok(actor: Actor, old: Doc | None, d: Doc) -> bool:
    """Recorded at the door by the writer, once, for a household of its grid on the roll of an open vote of its
    community, within the window, with the resident's consent, their card's confirmation and a known option."""
    if d["type"] != "ballot":
        return True
    matter = MATTERS.get(d.get("matter"))
    household = d.get("household")
    made = _when(d["created_at"])
    return (old is None and matter == (d["community"], "open") and d.get("voter") == household
            and household is not None and COMMUNITY_OF.get(GRID_OF.get(household)) == d["community"]
            and d["_id"] == f"ballot:{d['matter'][7:]}:{household}" and d.get("channel") == "door"
            and d.get("assisted_by") == actor.user_id == d.get("created_by") and d.get("consent") is True
            and d.get("confirmation") == _confirmed(d, household) and d.get("choice") in ("yes", "no", "abstain")
            and made is not None and MATTER_OPENS <= made <= MATTER_CLOSES)


def _redemption_ok(old: Doc | None, d: Doc) -> bool:
    """A redemption is of a voucher that exists, under the id made from it, with its reward, organisation and
    community; never edited (a second one from another phone comes as another first revision: a conflict)."""
    if d["type"] != "redemption":
        return True
    if old is not None and not (str(d.get("_rev", "")).startswith("1-") and d.get("_rev") != old["_rev"]):
        return False
    voucher = VOUCHERS.get(d["voucher"])
    return voucher is not None and d["_id"] == "redemption:" + d["voucher"][8:] \
        and (d["community"], d["organisation"], d["reward"]) == voucher
def _booking_ok(d: Doc) -> bool:
    """A slot of the hall of its community, named by the hour it starts, ahead within 30 days, one hour of one
    booking, 1-10 people, confirmed (the hall needs no approval); nothing the server sets."""
    start = _when(d["slot_start"])
    return (d.get("resource") == HALL.get(d["community"]) and start is not None
            and d["_id"] == d["group"] == slot_of(d["resource"], start) and start.minute == 0
            and NOW - dt.timedelta(hours=1) < start <= NOW + dt.timedelta(days=30)
            and d["status"] == "confirmed" and d["hours"] == 1 and 1 <= d["people"] <= 10
            and not any(name in d for name in BOOKING_SERVER_SET))


def _checkin_ok(actor: Actor, old: Doc | None, d: Doc) -> bool:
    """Made once, for a booking of the hall: by who booked it with the hall's code (any case), or by grid staff
    as its keeper; from 30 minutes before the booking starts to 15 minutes after."""
    at = _when(d["created_at"])
    booking = REFS.get(d["booking"])
    scanned = booking is not None and booking["booked_by"] == actor.user_id and d["code"].upper() == HALL_CODE
    return (old is None and booking is not None and d["_id"] == "checkin:" + d["booking"][8:]
            and d["resource"] == booking["resource"] and at is not None
            and (d["method"] == "scan" and scanned or d["method"] == "keeper" and actor.role in ("grid_worker",
                                                                                             "secretary"))
            and _when(booking["slot_start"]) - dt.timedelta(minutes=30) <= at
            <= _when(booking["slot_start"]) + dt.timedelta(minutes=15))


def _pool_ok(actor: Actor, old: Doc | None, d: Doc) -> bool:
    if d["type"] == "booking":
        return _booking_ok(d)
    return d["type"] != "checkin" or _checkin_ok(actor, old, d)


def expected(actor: Actor, old: Doc | None, d: Doc) -> bool:
    """May this actor store d over old? Stated from the world's tables, not from access.py."""
    area = AREA_OF_ROLE[actor.role].get(d["type"])
    if area is None or not area(d, old):
        return False
    if old is not None and any(old.get(k) != d.get(k) for k in ("street", "community", "grid", "created_by")):
        return False
    if old is not None and actor.role == "gateway" and d["type"] in ("alert", "reading"):
        return False  # a gateway cannot read back what it reported, so it cannot edit it
    if any((old or {}).get(k) != d.get(k) for k in KEY_PICKING.get(d["type"], ())):
        return False
    return _place_ok(d) and _links_ok(actor, d) and _people_ok(actor, d) and _claim_ok(actor, old, d) \
        and _ballot_ok(actor, old, d) and _redemption_ok(old, d) and _pool_ok(actor, old, d) \
        and _times_ok(d) and _survey_ok(actor, old, d)


# ---------------------------------------------------------------- documents

def _ago(**delta: float) -> str:
    return (NOW - dt.timedelta(**delta)).isoformat()


HERE = {"street": S, "community": C1, "grid": G11}
ABOUT = {"household": household_id(G11, 1), "resident": resident_id(G11, 1)}


def base(type_name: str, writer: str) -> Doc:
    """A document of this type at the first household of grid c1-g1, written by `writer` an hour ago."""
    when = _ago(hours=1)
    docs: dict[str, Doc] = {
        "street": {"street": S, "name": "街道"},
        "department": {"street": S, "name": "部门", "kind": "other"},
        "community": {"street": S, "community": "community:new", "name": "社区"},
        "grid": {"street": S, "community": C1, "grid": "grid:new", "name": "网格", "number": 9},
        "gateway": {"street": S, "community": C1, "name": "网关"},
        "household": {**HERE, "address": "幸福路1号", "volunteers": [VOLUNTEER[G11]], "updated_by": writer,
                      "updated_at": when},
        "resident": {**HERE, "household": household_id(G11, 1), "name": "居民", "gender": "female",
                     "birth_date": "1950-01-01"},
        "visit": {**HERE, **ABOUT, "kind": "routine", "visited_at": when, "created_by": writer, "created_at": when},
        "need": {**HERE, **ABOUT, "category": "买菜", "description": "每周买菜", "status": "in_progress",
                 "assigned_to": VOLUNTEER[G11], "request": RECORDS[G11, 1]["request"], "handled_by": writer,
                 "handled_at": when, "created_by": writer, "created_at": when},
        "service_request": {**HERE, **ABOUT, "category": "water_supply", "description": "漏水", "status": "received",
                            "owner": writer, "created_by": writer, "created_at": when},
        "device": {**HERE, **ABOUT, "kind": "wristband", "mac": "AA:BB:CC:DD:EE:99", "gateway": GATEWAY_OF[C1],
                   "registered_at": when},
        "alert": {**HERE, **ABOUT, "device": device_id(G11, 1), "kind": "sos", "status": "raised", "raised_at": when},
        "reading": {**HERE, **ABOUT, "device": device_id(G11, 1), "measured_at": when, "metric": "heart_rate",
                    "value": 72.0},
        "safety_rules": {**HERE, **ABOUT, "gateway": GATEWAY_OF[C1], "updated_by": writer, "updated_at": when},
        "device_health": {**HERE, **ABOUT, "device": device_id(G11, 1), "gateway": GATEWAY_OF[C1],
                          "last_seen_at": when, "updated_at": when},
        "gateway_health": {"street": S, "community": C1, "gateway": GATEWAY_OF[C1], "heartbeat_at": when},
        "access_report": {**HERE, **ABOUT, "fields": ["phone"], "purpose": "routine_visit", "at": when,
                          "phone_key": phone_key_id(writer), "created_by": writer, "created_at": when},
        "claim": {**HERE, **ABOUT, "task": "visit:c1-g1-h1" if writer == WORKER[G11] else "need:c1-g1-h1-help",
                  "minutes": 90, "status": "claimed", "created_by": writer, "created_at": when},
        "task": {**HERE, **ABOUT, "need": need_id(G11, 1), "kind": "visit", "address": "幸福路1号",
                 "assigned_to": VOLUNTEER[G11], "status": "assigned", "created_by": writer, "created_at": when},
        "redemption": {"street": S, "community": C1, "voucher": "voucher:c1-1:00001", "reward": "reward:c1-1",
                       "organisation": SHOPS[C1], "created_by": writer, "created_at": when},
        "booking": {"street": S, "community": C1, "resource": HALL[C1], "slot_start": TOMORROW_TEN.isoformat(),
                    "group": slot_of(HALL[C1], TOMORROW_TEN), "hours": 1, "people": 4, "status": "confirmed",
                    "booked_by": writer, "created_at": when},
        "checkin": {"street": S, "community": C1, "resource": HALL[C1], "booking": booking_of(writer),
                    "method": "scan", "code": HALL_CODE, "created_by": writer,
                    "created_at": (STARTED + dt.timedelta(minutes=5)).isoformat()},
        "fix_check": {**HERE, "request": RECORDS[G11, 1]["request"], "fixed": False, "reason": "还是漏水",
                      "via": "visit", "consent": True, "created_by": writer, "created_at": when},
        "survey_response": {"street": S, "community": C1, "month": MONTH, "overall": 4,
                            "household": household_id(G11, 1), "channel": "door", "consent": True,
                            "created_by": writer, "created_at": when},
    }
    own_id = {"street": S, "community": "community:new", "grid": "grid:new"}.get(type_name, f"{type_name}:new")
    if type_name == "claim":  # a claim's id is its task's
        own_id = f"claim:{docs['claim']['task']}"
    if type_name == "redemption":  # a redemption's id is its voucher's
        own_id = "redemption:c1-1:00001"
    if type_name == "ballot":  # a ballot's id is its matter's and voter's, its confirmation made with the code
        own_id = f"ballot:m1:{household_id(G11, 1)}"
        doc = {"_id": own_id, "type": type_name, **HERE, "matter": "matter:m1", "voter": household_id(G11, 1),
               "household": household_id(G11, 1), "choice": "yes", "channel": "door", "assisted_by": writer,
               "consent": True, "receipt": "0123-4567-89AB", "created_by": writer, "created_at": when}
        return {**doc, "confirmation": _confirmed(doc, household_id(G11, 1))}
    if type_name == "booking":  # a booking's id is its slot's, a check-in's its booking's
        own_id = docs["booking"]["group"]
    if type_name == "checkin":
        own_id = "checkin:" + docs["checkin"]["booking"][8:]
    if type_name == "survey_response":  # a door answer's id is its household's and month's
        own_id = door_answer_id(household_id(G11, 1), MONTH)
    return {"_id": own_id, "type": type_name, **docs[type_name]}


# Values each placement field is mutated to (a value equal to the base's is skipped).
OTHER_USERS = [WORKER[G11], WORKER[G12], VOLUNTEER[G11], VOLUNTEER[G21], SECRETARY[C1], SECRETARY[C2], user("admin")]
# NOW is the import's; the sync gateway judges by its clock when the sample test runs, up to hours later on a loaded
# machine: each value must be judged alike at both (a value 2 hours ahead was accepted by a gateway reached 2 hours
# after the import). Ahead by 5 minutes stays allowed; a day ahead stays refused.
TIME_VALUES = [_ago(minutes=1), (NOW + dt.timedelta(minutes=5)).isoformat(), (NOW + dt.timedelta(days=1)).isoformat(),
               _ago(days=60), _ago(days=100), "2025-03-01T02:30:00+08:00", "2099-01-01T03:00:00+08:00",
               NOW.replace(tzinfo=None).isoformat()]
POOL: dict[str, list[Any]] = {
    "street": [OTHER_STREET],
    "community": [C1, C2, "community:nowhere"],
    "grid": [G11, G12, G21, "grid:nowhere"],
    "household": [household_id(g, n) for g, n in PLACES] + ["household:nowhere"],
    "resident": [resident_id(g, n) for g, n in PLACES],
    "head": [resident_id(G11, 1), resident_id(G11, 2), resident_id(G21, 1)],
    "device": [device_id(g, n) for g, n in PLACES],
    "need": [*NEED_OF, "need:nowhere"],
    "gateway": [*COMMUNITY_OF_GATEWAY, "gateway:nowhere"],
    "volunteers": [[VOLUNTEER[G11]], [VOLUNTEER[G12]], [VOLUNTEER[G21]], [WORKER[G11]],
                   [VOLUNTEER[G11], VOLUNTEER[G21]]],
    "assigned_to": OTHER_USERS + [VOLUNTEER[G12]],
    "phone_key": [phone_key_id(u) for u in OTHER_USERS] + ["phone_key:nowhere.p1"],
    **{name: OTHER_USERS for name in AUTHORS},
    **{name: TIME_VALUES for name in TIMES},
    "request": [r["request"] for r in RECORDS.values()] + ["service_request:nowhere", RECORDS[G11, 1]["visit"]],
    "visit": [r["visit"] for r in RECORDS.values()] + ["visit:nowhere"],
    "departments": [["department:health"]],
    "due_close": [(NOW + dt.timedelta(days=3)).isoformat()],
    "task": [*TASKS, "need:nowhere", "household:c1-g1-h1"],
    "minutes": [0, -60, 1, 480, 481, 90.5],
    "decided_by": [VOLUNTEER[G11], WORKER[G11]],
    "matter": [*MATTERS, "matter:nowhere"],
    "voter": [household_id(G11, 2), household_id(G21, 1), "household:nowhere"],
    "choice": ["no", "maybe"],
    "consent": [False],
    "assisted_by": OTHER_USERS,
    "confirmation": ["0" * 64],
    "voucher": [*VOUCHERS, "voucher:nowhere"],
    "reward": [voucher[2] for voucher in VOUCHERS.values()] + ["reward:nowhere"],
    "organisation": [*SHOPS.values(), "organisation:nowhere"],
    "resource": [*HALL.values(), "resource:nowhere"],
    "slot_start": [(TOMORROW_TEN + dt.timedelta(hours=1)).isoformat(), STARTED.isoformat(),
                   (TOMORROW_TEN + dt.timedelta(days=40)).isoformat()],
    "people": [0, 10, 11],
    "booking": [booking_of(u) for u in OTHER_USERS] + ["booking:nowhere"],
    "code": ["CODE23456788", HALL_CODE.lower()],
    "method": ["keeper"],
    "overall": [0, 6, 1, 5, True, "4"],
    "month": [LAST_YEAR, "2099-01"],
    "channel": ["own"],
}


def relocated(doc: Doc, grid: str, n: int) -> Doc:
    """doc moved, consistently, to household n of another grid: its community, grid, household, resident, device,
    gateway and the people it names all of that place, so that only where it is decides."""
    household, resident, device = PLACES[grid, n]
    place = {"community": COMMUNITY_OF[grid], "grid": grid, "household": household, "resident": resident,
             "device": device, "gateway": GATEWAY_OF[COMMUNITY_OF[grid]], "volunteers": [VOLUNTEER[grid]],
             "assigned_to": VOLUNTEER[grid], "need": need_id(grid, n), **RECORDS[grid, n]}
    return {**doc, **{k: v for k, v in place.items() if k in doc and doc.get(k) != doc.get("_id")}}


def mutations(doc: Doc) -> Iterator[Doc]:
    """doc with one field set to each value of the pool (every field of the pool its type declares, those the document
    holds and the optional ones a client might add: head, volunteers, assigned_to, owner, server-set fields...), then
    doc moved whole to each household (and a claim made for each other task)."""
    fields = DOC_TYPES[doc["type"]].fields
    for name, values in POOL.items():
        if name in doc or name in fields:
            yield from ({**doc, name: v} for v in values if v != doc.get(name))
    if "grid" in doc or doc["type"] in ("gateway", "gateway_health"):
        yield from (relocated(doc, g, n) for g, n in PLACES if (g, n) != (G11, 1))
    if doc["type"] == "claim":  # a claim for another task, under that task's id (someone else's, elsewhere)
        yield from ({**doc, "task": task, "_id": f"claim:{task}"} for task in TASKS if task != doc["task"])
        yield from ({**doc, **in_person} for in_person in IN_PERSON)  # the resident's code typed in person
    if doc["type"] == "redemption":  # another voucher, under its id, with or without its reward and place
        for voucher, (community, shop, reward) in VOUCHERS.items():
            moved = {**doc, "voucher": voucher, "_id": "redemption:" + voucher[8:]}
            yield from (moved, {**moved, "community": community, "organisation": shop, "reward": reward})
        yield {**doc, "_id": "redemption:c1-1:00002"}  # its own voucher, under another voucher's id
    if doc["type"] == "survey_response":  # another household or month, under its own id too, in its community too
        for (community, month), households in SAMPLED.items():
            for household in sorted(households):
                moved = {**doc, "household": household, "month": month, "_id": door_answer_id(household, month)}
                yield from (moved, {**moved, "community": community})


# The stored documents write_refusal is given (as the sync gateway fetches them), each schema-valid.

def _user_doc(user_id: str, roles: list[Role], **where: Any) -> Doc:
    return accounts.make_user(user_id[5:], user_id[5:], roles, S, "!", **where)


def world_docs() -> tuple[list[Doc], list[Doc]]:
    """(main database, accounts database) of the world above."""
    main: list[Doc] = [{"_id": S, "type": "street", "street": S, "name": "街道"},
                       {"_id": "department:health", "type": "department", "street": S, "name": "卫生",
                        "kind": "health"}]
    for c in (C1, C2):
        main += [{"_id": c, "type": "community", "street": S, "community": c, "name": c}]
        main += [{"_id": gateways[c], "type": "gateway", "street": S, "community": c, "name": "网关"}
                 for gateways in (GATEWAY_OF, SECOND_GATEWAY_OF)]
    for g, c in COMMUNITY_OF.items():
        main.append({"_id": g, "type": "grid", "street": S, "community": c, "grid": g, "name": g, "number": 1})
    for task, (g, r, doer) in TASKS.items():
        kind = task.split(":")[0]
        main.append({"_id": task, "type": kind, "street": S, "community": COMMUNITY_OF[g], "grid": g,
                     "household": HOUSEHOLD_OF[r], "resident": r, "created_by": WORKER.get(g, doer),
                     "created_at": PHONE_REGISTERED.isoformat(),
                     **({"assigned_to": doer, "category": "买菜", "description": "买菜", "status": "done"}
                        if kind == "need" else {"kind": "routine", "visited_at": PHONE_REGISTERED.isoformat()})})
    for voucher, (c, shop, reward) in VOUCHERS.items():
        place = {"street": S, "community": c}
        main += [{"_id": shop, "type": "organisation", **place, "name": "超市", "kind": "firm"},
                 {"_id": reward, "type": "reward", **place, "organisation": shop, "name": "理发", "kind": "service",
                  "points": 30, "stock": 5, "active": True, "created_by": SECRETARY[c],
                  "created_at": PHONE_REGISTERED.isoformat()},
                 {"_id": voucher, "type": "voucher", **place, "reward": reward, "organisation": shop,
                  "holder": VOLUNTEER[G11], "points": 30, "transfer": "transfer:redemption:x:1", "code": "LV1.x.y",
                  "created_by": VOLUNTEER[G11], "created_at": PHONE_REGISTERED.isoformat()}]
    for (g, n), (h, r, d) in PLACES.items():
        where = {"street": S, "community": COMMUNITY_OF[g], "grid": g}
        looked_after = {"volunteers": [LOOKED_AFTER[h]]} if h in LOOKED_AFTER else {}
        main += [{"_id": h, "type": "household", **where, "address": f"{g} {n}号", "head": r, **looked_after},
                 {"_id": r, "type": "resident", **where, "household": h, "name": "居民", "gender": "male",
                  "birth_date": "1940-02-02"},
                 {"_id": d, "type": "device", **where, "household": h, "resident": r, "kind": "wristband",
                  "mac": f"AA:BB:CC:DD:{len(main) % 100:02d}:0{n}", "gateway": GATEWAY_OF_DEVICE[d]},
                 {"_id": need_id(g, n), "type": "need", **where, "household": h, "resident": r, "category": "买菜",
                  "description": "每周买菜", "status": "open", "created_by": WORKER[g],
                  "created_at": NOW.isoformat()}]
        about, made = {**where, "household": h, "resident": r}, {"created_by": WORKER[g], "created_at": _ago(days=1)}
        main += [{"_id": RECORDS[g, n]["request"], "type": "service_request", **about, "category": "water_supply",
                  "description": "漏水", "status": "received", **made},
                 {"_id": RECORDS[g, n]["visit"], "type": "visit", **about, "kind": "routine",
                  "visited_at": _ago(days=1), **made}]
    for c, hall in HALL.items():
        main.append({"_id": hall, "type": "resource", "street": S, "community": c, "name": "活动室", "kind": "room",
                     "owner_kind": "community", "place": "社区中心", "capacity": 10,
                     "open_hours": [{"weekday": d, "opens": 0, "closes": 24} for d in range(7)],
                     "who_may_book": ["resident", "volunteer", "grid_worker", "secretary"], "book_ahead_days": 30,
                     "max_hours": 3, "approval": False, "grace_minutes": 15,
                     # The day's code the check-ins scan (the same each day here: pool.day_code rotates it; that
                     # a code of another day is refused is tests/test_pool.py's)
                     "code_hashes": [{"date": (STARTED + dt.timedelta(days=n)).date().isoformat(),
                                      "hash": hashlib.sha256(HALL_CODE.encode()).hexdigest()} for n in (-1, 0, 1)],
                     "created_by": SECRETARY[c], "created_at": _ago(days=100)})
    for person in sorted({*WORKER.values(), *VOLUNTEER.values(), *SECRETARY.values()}):
        booking = booking_of(person)
        start = dt.datetime.strptime(booking[-10:], "%Y%m%d%H").replace(tzinfo=LOCAL)
        main.append({"_id": booking, "type": "booking", "street": S, "community": C1, "resource": HALL[C1],
                     "slot_start": start.isoformat(), "group": booking, "hours": 1, "people": 2,
                     "status": "confirmed", "booked_by": person, "created_at": _ago(days=20)})
    users = [_user_doc(people[g], [role], communities=[c], grids=[g]) for g, c in COMMUNITY_OF.items()
             for people, role in ((WORKER, Role.GRID_WORKER), (VOLUNTEER, Role.VOLUNTEER))]
    users += [_user_doc(SECRETARY[c], [Role.SECRETARY], communities=[c]) for c in (C1, C2)]
    for actor in ACTORS:
        if actor.user_id not in {u["_id"] for u in users}:
            users.append(_user_doc(actor.user_id, list(actor.roles), communities=list(actor.communities),
                                   grids=list(actor.grids), department=actor.department, resident=actor.resident,
                                   gateway=actor.gateway, organisation=actor.organisation))
    phones = [{"_id": phone_key_id(u["_id"]), "type": "phone_key", "street": S, "user": u["_id"], "public": "p",
               "created_at": PHONE_REGISTERED.isoformat(), "revoked": False} for u in users]
    main += [{"_id": m, "type": "matter", "street": S, "community": c, "title": "表决", "kind": "household_assembly",
              "options": ["yes", "no", "abstain"], "electorate": "household", "opens_at": MATTER_OPENS.isoformat(),
              "closes_at": MATTER_CLOSES.isoformat(), "mode": "open", "rule": "households_three_quarters",
              "status": status, "created_by": SECRETARY[c], "created_at": MATTER_OPENS.isoformat()}
             for m, (c, status) in MATTERS.items()]
    cards = [{"_id": f"voting_card:{m[7:]}:{h}", "type": "voting_card", "street": S, "community": c, "grid": g,
              "matter": m, "voter": h, "household": h, "hash": _card_hash(f"ballot:{m[7:]}:{h}", h),
              "created_by": SECRETARY[c], "created_at": MATTER_OPENS.isoformat()}
             for m, (c, _) in MATTERS.items() for (g, _), (h, _, _) in PLACES.items() if COMMUNITY_OF[g] == c]
    main += [{"_id": f"survey_sample:{c[10:]}:{m}", "type": "survey_sample", "street": S, "community": c, "month": m,
              "households": [{"household": h, "grid": GRID_OF[h]} for h in sorted(hs)], "frame": {}, "seed": "s",
              "created_by": SECRETARY[c], "created_at": _ago(days=1)} for (c, m), hs in SAMPLED.items()]
    codes = {"_id": timebank_rules.ledger_lock_id(resident_id(G11, 1)), "type": "ledger_lock",
             "account": resident_id(G11, 1), "seq": 0, "secret": CODE_SECRET, "codes_from": 1, "codes_used": ["3"]}
    return main, users + phones + cards + [codes]


MAIN, ACCOUNTS = world_docs()
REFS = {d["_id"]: d for d in MAIN + ACCOUNTS}


def decided(actor: Actor, old: Doc | None, new: Doc) -> bool:
    return write_refusal(actor.principal, old, new, REFS, NOW) is None


def stored(doc: Doc) -> Doc:
    return {**doc, "_rev": "1-a"}


# ---------------------------------------------------------------- against the pure rule

def test_the_declaration_lists_the_types_clients_may_write() -> None:
    assert CLIENT_WRITABLE == CLIENT_TYPES
    for type_name in set(DOC_TYPES) - CLIENT_TYPES:  # the server's own: refused to everyone
        doc = {"_id": f"{type_name}:x", "type": type_name, **HERE, "created_by": user("admin")}
        for actor in ACTORS:
            assert "server only" in (write_refusal(actor.principal, None, doc, REFS, NOW) or "")


@pytest.mark.parametrize("actor", ACTORS, ids=lambda a: a.role)
def test_each_role_writes_what_the_rules_allow_where_they_allow_it(actor: Actor) -> None:
    """The unmutated documents: accepted exactly for the roles and types the statement allows."""
    for type_name in sorted(CLIENT_TYPES):
        doc = base(type_name, actor.user_id)
        assert decided(actor, None, doc) == expected(actor, None, doc), (actor.role, type_name)


@pytest.mark.parametrize("actor", ACTORS, ids=lambda a: a.role)
def test_every_single_mutation_of_a_placement_field_is_judged_by_the_rules(actor: Actor) -> None:
    """Exhaustive: every type, every placement field, every value of the pool; as a new document and as an edit of
    the document the role may write (where the `moved` and `created_by` checks and the volunteer's assignment
    matter)."""
    wrong, checked = [], 0
    for type_name in sorted(CLIENT_TYPES):
        doc = base(type_name, actor.user_id)
        old = stored(doc) if expected(actor, None, doc) else None
        for new in mutations(doc):
            for previous in [None] if old is None else [None, old]:
                checked += 1
                if decided(actor, previous, new) != expected(actor, previous, new):
                    wrong.append((type_name, "edit" if previous else "new", {k: v for k, v in new.items()
                                                                             if v != doc.get(k)}))
    assert checked > 200 and not wrong, wrong[:20]


def test_the_mutations_reach_every_reference_and_placement_field_of_every_type() -> None:
    """What the exhaustive test above covers: every field of the pool that each client-writable type declares is
    mutated, and the pool holds every reference field (`ref`) they declare, so a new type's or field's placement
    cannot be left out of the table unnoticed."""
    unmutated, missing = [], []
    for type_name in sorted(CLIENT_TYPES):
        fields = DOC_TYPES[type_name].fields
        missing += [(type_name, name) for name, field in fields.items() if field.kind == "ref" and name not in POOL]
        for actor in ACTORS:
            doc = base(type_name, actor.user_id)
            changed = {k for new in mutations(doc) for k in new.keys() | doc.keys() if new.get(k) != doc.get(k)}
            unmutated += [(type_name, actor.role, name) for name in fields if name in POOL and name not in changed]
    assert not missing, f"reference fields the pool has no values for: {missing}"
    assert not unmutated, f"declared fields of the pool never mutated: {unmutated}"


def test_a_volunteer_cannot_place_visits_or_needs_in_another_grid_or_community() -> None:
    """Finding 5 as reported: the rule checked only `created_by`."""
    volunteer = ACTORS[1]
    for type_name in ("visit", "need"):
        doc = base(type_name, volunteer.user_id)
        assert decided(volunteer, None, doc)
        elsewhere = {**doc, "community": C2, "grid": G21, "household": household_id(G21, 1),
                     "resident": resident_id(G21, 1), "assigned_to": VOLUNTEER[G21]}
        assert not decided(volunteer, None, elsewhere)
        not_theirs = {**doc, "household": household_id(G11, 2), "resident": resident_id(G11, 2)}
        assert not decided(volunteer, None, not_theirs)


def test_a_worker_cannot_forge_access_reports_elsewhere_or_at_other_times() -> None:
    """Finding 6 as reported: another community, its residents, at night in 2025 and in 2099."""
    worker = ACTORS[0]
    report = base("access_report", worker.user_id)
    assert decided(worker, None, report)
    for forged in ({**report, "community": C2}, {**report, "resident": resident_id(G21, 1)},
                   {**report, "household": household_id(G12, 1), "resident": resident_id(G12, 1)},
                   {**report, "at": "2025-03-01T02:30:00+08:00"}, {**report, "at": "2099-01-01T03:00:00+08:00"},
                   {**report, "phone_key": phone_key_id(WORKER[G12])}):
        assert not decided(worker, None, forged), forged


def test_a_volunteer_only_answers_the_tasks_assigned_to_them() -> None:
    """A task the grid worker assigned: its volunteer accepts it, marks it done with a note or declines it with a
    reason (declaration.TASK_ANSWERS), and changes nothing else; nobody else of the volunteers answers it."""
    volunteer = ACTORS[1]
    task = stored(base("task", WORKER[G11]))
    # As a phone sends it: a new revision of the stored one
    answered = {**task, "updated_at": _ago(minutes=1), "_rev": "2-b", "_revisions": {"start": 2, "ids": ["b", "a"]}}
    for new, allowed in (({**answered, "status": "accepted"}, True),
                         ({**answered, "status": "done", "volunteer_note": "已送到"}, True),
                         ({**answered, "status": "declined", "volunteer_note": "这周出差"}, True),
                         ({**answered, "status": "done"}, False),  # done says how it went
                         ({**answered, "status": "declined", "volunteer_note": "  "}, False),  # declined says why
                         ({**answered, "status": "accepted", "notes": "改成别的"}, False),  # staff's instruction
                         ({**answered, "due_on": "2099-01-01"}, False),
                         ({**answered, "assigned_to": VOLUNTEER[G12]}, False)):
        assert decided(volunteer, task, new) == allowed, new
    accepted = {**answered, "status": "accepted"}
    assert decided(volunteer, accepted, {**accepted, "volunteer_note": "周六上午去"})  # a note, the state kept
    done = {**answered, "status": "done", "volunteer_note": "已送到"}
    assert not decided(volunteer, done, {**done, "status": "accepted"})  # done is done; staff may re-open it
    assert decided(ACTORS[0], done, {**done, "status": "assigned"})
    theirs = {**task, "assigned_to": VOLUNTEER[G12]}  # another volunteer's: not this one's to answer
    assert not decided(volunteer, theirs, {**theirs, "status": "accepted"})


@pytest.mark.parametrize("actor", ACTORS, ids=lambda a: a.role)
def test_the_documents_a_write_names_are_all_the_rule_needs_to_judge_it(actor: Actor) -> None:
    """The sync gateway fetches only `write_ref_ids(new)` for the rule: judged with those alone, every document and
    single mutation of the exhaustive test above is answered as with the whole world at hand."""
    wrong, checked = [], 0
    for type_name in sorted(CLIENT_TYPES):
        doc = base(type_name, actor.user_id)
        old = stored(doc) if expected(actor, None, doc) else None
        for new in [doc, *mutations(doc)]:
            named = write_ref_ids(new)
            refs = {i: REFS[i] for i in named if i in REFS}
            for previous in [None] if old is None else [None, old]:
                checked += 1
                if may_write(actor.principal, previous, new, refs, NOW) != decided(actor, previous, new):
                    wrong.append((type_name, "edit" if previous else "new", sorted(named)))
    assert checked > 200 and not wrong, wrong[:20]


def test_a_write_of_no_known_type_names_nothing_to_fetch() -> None:
    for doc in ({"_id": "x"}, {"_id": "x", "type": ["visit"]}, {"_id": "x", "type": "no_such_type", "grid": G11}):
        assert write_ref_ids(doc) == set(), doc
    assert write_ref_ids(base("visit", WORKER[G11])) >= {G11, household_id(G11, 1)}  # the positive control
    # Not yet validated: what names its matter, resident or community oddly still gets an answer, of ids only
    for type_name, odd in (("ballot", {"matter": None}), ("ballot", {"matter": 7}), ("claim", {"resident": None}),
                           ("claim", {"resident": ["x"]}), ("survey_response", {"community": None}),
                           ("visit", {"grid": None, "household": 5, "assigned_to": [None, 3]})):
        assert all(isinstance(i, str) for i in write_ref_ids({**base(type_name, WORKER[G11]), **odd})), odd
    # A document's own id is not among what it names (a grid's `grid` is itself: its previous version is `old`)
    assert "grid:new" not in write_ref_ids(base("grid", SECRETARY[C1]))


def test_a_ballot_at_the_door_is_never_changed_once_stored() -> None:
    """A second ballot of a voter arrives as a conflicting branch, judged as new; an edit of a stored one is a 409
    naming the rule (the sync gateway's answer to the phone)."""
    worker = ACTORS[0]
    ballot = base("ballot", worker.user_id)
    assert access.ballot_write_refusal(worker.principal, None, ballot, REFS, NOW) is None  # the positive control
    assert access.ballot_write_refusal(worker.principal, stored(ballot), {**ballot, "choice": "no"}, REFS, NOW) == (
        FieldError("(document)", "vote_ballot_kept", {}), 409)


def test_two_places_never_share_a_survey_sample_or_door_answer_id() -> None:
    """One sample per community and month, one door answer per household and month (a second is a conflict): the
    whole name after the type's prefix makes the id, so ids that differ after another colon stay apart."""
    assert access.survey_sample_id("community:a:1", MONTH) != access.survey_sample_id("community:b:1", MONTH)
    assert access.survey_sample_id("community:a", MONTH) == f"survey_sample:a:{MONTH}"
    households = ("household:x:1", "household:x:2", "household:1:x", "household:2:x")  # ids hold colons: vouchers'
    communities = ("community:a:1", "community:a:2", "community:1:a", "community:2:a")
    answers = {access.door_answer_id({"_id": h, "community": c}, MONTH) for h in households for c in communities}
    assert len(answers) == 16
    assert access.door_answer_id({"_id": "household:h", "community": "community:a"}, MONTH) == \
        f"survey_response:a:{MONTH}:door-h"


def test_a_door_survey_refusal_names_its_field_message_and_status_for_the_page_and_the_phone() -> None:
    """One rule (survey_door_refusal) answers the page (its field, message and HTTP status) and the sync gateway:
    a household not sampled in the month (or none), not the writer's, no consent, a score outside 1-5, another
    id or channel."""
    worker = ACTORS[0].principal
    answer = base("survey_response", worker.user_id)
    sample = REFS[f"survey_sample:c1:{MONTH}"]

    def refusal(new: Doc, household: str | None = household_id(G11, 1), p: Principal = worker) -> Any:
        return access.survey_door_refusal(p, new, REFS.get(household or ""), sample)

    not_sampled = ("household", "err_survey_not_sampled", 400)
    assert refusal(answer) is None  # the positive control
    assert refusal(answer, household=None) == not_sampled
    unsampled = household_id(G11, 2)  # sampled last year, not this month: under its own id for the month
    assert refusal({**answer, "household": unsampled, "_id": door_answer_id(unsampled, MONTH)},
                   household=unsampled) == not_sampled
    assert refusal(answer, p=ACTORS[2].principal) == ("household", "err_survey_not_yours", 403)  # a secretary
    assert refusal({**answer, "consent": False}) == ("consent", "err_survey_consent", 400)
    assert refusal({**answer, "overall": 6}) == ("overall", "err_survey_overall", 400)
    assert refusal({**answer, "channel": "own"}) == not_sampled
    assert refusal({**answer, "_id": door_answer_id(household_id(G12, 1), MONTH)}) == not_sampled


def test_a_claim_naming_no_task_or_resident_is_refused_with_a_reason() -> None:
    """A scripted phone's claim missing its task or resident, or naming them by something not an id, gets the
    time bank's reason (a 4xx for the phone), never an error."""
    volunteer = ACTORS[1]
    claim = base("claim", volunteer.user_id)
    assert access.claim_person_refusal(volunteer.principal, claim, REFS, NOW) is None  # the positive control
    for name in ("task", "resident"):
        for odd in ({k: v for k, v in claim.items() if k != name}, {**claim, name: [claim[name]]}):
            assert access.claim_person_refusal(volunteer.principal, odd, REFS, NOW) is not None, odd


def test_in_person_codes_rest_after_too_many_wrong_ones_on_the_servers_clock() -> None:
    """Five wrong codes for a resident within a day (timebank.CODE_MISSES_PER_DAY) and their good codes are refused
    too until the day is over, by the server's clock the sync gateway passes in."""
    volunteer = ACTORS[1]
    claim = {**base("claim", volunteer.user_id), "in_person_code": CODES[1], "in_person_consent": True,
             "in_person_at": _ago(minutes=5)}
    assert decided(volunteer, None, claim)  # the positive control: a good code
    lock_id = timebank_rules.ledger_lock_id(resident_id(G11, 1))
    misses = [{"at": _ago(hours=n), "claim": "claim:x", "by": WORKER[G11], "code": "0"} for n in range(1, 6)]
    resting = {**REFS, lock_id: {**REFS[lock_id], "code_misses": misses}}
    assert write_refusal(volunteer.principal, None, claim, resting, NOW) is not None
    yesterday = {**REFS, lock_id: {**REFS[lock_id], "code_misses": [{**m, "at": _ago(days=2)} for m in misses]}}
    assert write_refusal(volunteer.principal, None, claim, yesterday, NOW) is None


def test_a_task_goes_only_to_an_active_volunteer_account_of_its_street_and_grid() -> None:
    """Who a task names must be a user document, active, of the task's street, a volunteer of its grid: a
    deactivated account, another street's, another kind of document, a missing one or a user document without its
    roles or places is refused with a reason (never an error)."""
    worker = ACTORS[0]
    task = base("task", worker.user_id)
    assert decided(worker, None, task)  # the positive control: the grid's volunteer
    volunteer = REFS[VOLUNTEER[G11]]
    odd = {"user:deactivated": {**volunteer, "active": False}, "user:elsewhere": {**volunteer, "street": OTHER_STREET},
           "user:not-a-user": {**volunteer, "type": "resident"},
           "user:no-roles": {k: v for k, v in volunteer.items() if k != "roles"},
           "user:no-grids": {k: v for k, v in volunteer.items() if k != "grids"},
           "user:no-communities": {**{k: v for k, v in volunteer.items() if k != "communities"},
                                   "roles": ["secretary"]}}
    refs = {**REFS, **{user_id: {**doc, "_id": user_id} for user_id, doc in odd.items()}}
    for assignee in [*odd, "user:missing"]:
        assert write_refusal(worker.principal, None, {**task, "assigned_to": assignee}, refs, NOW) is not None, assignee


def test_a_stored_assignment_is_not_judged_again_when_staff_edit_the_task() -> None:
    """The assignee was checked when the task was written: an edit that keeps it (the worker re-opening a task of a
    volunteer who has since moved grids) is judged on what it changes."""
    worker = ACTORS[0]
    task = {**stored(base("task", worker.user_id)), "status": "done", "volunteer_note": "已送到"}
    moved = {**REFS, VOLUNTEER[G11]: {**REFS[VOLUNTEER[G11]], "grids": [G12]}}
    assert write_refusal(worker.principal, task, {**task, "status": "assigned"}, moved, NOW) is None
    assert write_refusal(worker.principal, None, task, moved, NOW) is not None  # a new task for them is refused
    household = stored(base("household", worker.user_id))  # looked after by the volunteer who moved
    assert write_refusal(worker.principal, household, {**household, "address": "幸福路3号"}, moved, NOW) is None


def test_times_a_client_sets_are_judged_to_the_bounds_and_kept_ones_are_not_judged_again() -> None:
    """Up to CLOCK_SKEW (10 minutes) ahead of the server's clock and MAX_OFFLINE (90 days) back, both bounds
    included; an access report not before its phone key existed, less the clock skew (only an access report: a
    stray phone_key on another type binds nothing); a time kept from the stored version is not judged again."""
    worker = ACTORS[0]
    visit = base("visit", worker.user_id)
    for when, allowed in ((NOW + dt.timedelta(minutes=10), True), (NOW + dt.timedelta(minutes=10, seconds=1), False),
                          (NOW - dt.timedelta(days=90), True), (NOW - dt.timedelta(days=90, seconds=1), False)):
        assert decided(worker, None, {**visit, "visited_at": when.isoformat()}) == allowed, when
    report = base("access_report", worker.user_id)
    for when, allowed in ((PHONE_REGISTERED - dt.timedelta(minutes=10), True),
                          (PHONE_REGISTERED - dt.timedelta(minutes=10, seconds=1), False)):
        assert decided(worker, None, {**report, "at": when.isoformat()}) == allowed, when
    young_key = {**REFS, "phone_key:young": {**REFS[phone_key_id(worker.user_id)], "created_at": _ago(minutes=1)}}
    assert write_refusal(worker.principal, None, {**visit, "phone_key": "phone_key:young"}, young_key, NOW) is None
    old = {**stored(base("household", worker.user_id)), "updated_at": _ago(days=200)}
    assert decided(worker, old, {**old, "address": "幸福路2号"})


def _reasons() -> list[tuple[Actor, Doc | None, Doc, str]]:
    """(writer, stored version, write, the reason the phone is told): one case of each refusal."""
    worker, volunteer, secretary, admin, partner, gateway = (ACTORS[i] for i in (0, 1, 2, 5, 6, 7))
    visit, need, task = (base(t, worker.user_id) for t in ("visit", "need", "task"))
    mine = stored(task)
    answering = {**mine, "_rev": "2-b"}
    accepted = {**mine, "status": "accepted"}
    claim = base("claim", volunteer.user_id)
    redemption = base("redemption", partner.user_id)
    device, alert = base("device", worker.user_id), base("alert", gateway.user_id)
    checkin = base("checkin", worker.user_id)
    grid = base("grid", secretary.user_id)
    return [
        (worker, None, {"_id": "user:x", "type": "user"}, "user documents are written by the server only"),
        (worker, None, {"_id": "x"}, "untyped documents are written by the server only"),
        (worker, None, {**device, "write_public": "k"},
         "resident, write_public of a device are set by the server only"),
        (worker, stored({**visit, "grid": G21, "community": C2}), visit, OUTSIDE_SCOPE),
        (worker, stored(visit), {**visit, "type": "need"}, "a document's type may not change"),
        (worker, stored(visit), {**visit, "grid": G12}, "a document may not move to another grid"),
        (worker, stored(visit), {**visit, "grid": G21, "community": C2},
         "a document may not move to another community, grid"),
        (worker, stored(visit), {**visit, "created_by": WORKER[G12]}, "created_by may not change"),
        (worker, None, {**visit, "created_by": WORKER[G12]}, "created_by must be the writer's own user id"),
        (worker, None, {k: v for k, v in visit.items() if k != "created_by"},
         "created_by must be the writer's own user id"),  # a new document says who wrote it
        (worker, None, {**visit, "grid": G12}, "your role may not write this visit here"),
        (secretary, None, {**grid, "grid": G11}, "a grid's grid field must be its own id"),
        (admin, None, {"_id": "street:new", "type": "street", "street": S, "name": "街道"},
         "a street's street field must be its own id"),
        (worker, None, {**visit, "community": C2}, f"{G11} is not in this document's community"),
        (worker, None, {**base("reading", worker.user_id), "device": device_id(G11, 2)},
         f"device: {device_id(G11, 2)} belongs to another household, resident"),
        (secretary, None, {**grid, "community": "community:nowhere"},
         "your role may not write this grid here"),  # its secretary's own community first
        (admin, None, {**grid, "community": "community:nowhere"}, "there is no community community:nowhere"),
        (admin, None, {**base("gateway", admin.user_id), "street": OTHER_STREET},
         "your role may not write this gateway here"),
        (worker, None, {**visit, "household": "household:nowhere"}, "household: there is no household:nowhere"),
        (worker, None, {**visit, "household": household_id(G12, 1)},
         f"household: {household_id(G12, 1)} is elsewhere"),
        (worker, None, {**visit, "resident": resident_id(G11, 2)},
         f"resident: {resident_id(G11, 2)} belongs to another household"),
        (gateway, None, {**alert, "gateway": SECOND_GATEWAY_OF[C1]}, "a gateway writes only its own documents"),
        (gateway, None, {**alert, "device": device_id(G11, 2), "household": household_id(G11, 2),
                         "resident": resident_id(G11, 2)}, f"{device_id(G11, 2)} is not read by this gateway"),
        (worker, None, {**visit, "updated_by": WORKER[G12]}, "updated_by must be the writer's own user id"),
        (worker, None, {**base("household", worker.user_id), "_id": "household:new2",
                        "volunteers": [VOLUNTEER[G12]]}, "volunteers: each must be a volunteer of this grid"),
        (worker, None, {**need, "assigned_to": VOLUNTEER[G21]},
         "assigned_to: must be a volunteer, grid worker or secretary working here"),
        (volunteer, None, {**base("visit", volunteer.user_id), "household": household_id(G11, 2),
                           "resident": resident_id(G11, 2)},
         "a volunteer writes only about the households they look after"),
        (worker, None, {**base("access_report", worker.user_id), "phone_key": phone_key_id(WORKER[G12])},
         "phone_key: must be one of the writer's own phones"),
        (worker, None, {**base("service_request", worker.user_id), "whistles": 1}, "whistles is set by the server"),
        (worker, None, {**task, "assigned_to": WORKER[G11]}, "assigned_to: a task goes to a volunteer of its grid"),
        (volunteer, None, base("task", volunteer.user_id), "a volunteer answers only the tasks assigned to them"),
        (volunteer, mine, {**answering, "notes": "改"}, "a volunteer changes only a task's state and their note"),
        (volunteer, accepted, {**accepted, "status": "assigned"}, "a task accepted may not become assigned"),
        (volunteer, mine, {**answering, "status": "done"},
         "volunteer_note: a task done or declined says how it went, or why"),
        (worker, None, {**visit, "visited_at": "yesterday"}, "visited_at is not a date and time"),
        (worker, None, {**visit, "visited_at": NOW.replace(tzinfo=None).isoformat()},
         "visited_at must carry its offset from UTC"),
        (worker, None, {**visit, "visited_at": (NOW + dt.timedelta(hours=1)).isoformat()},
         "visited_at is in the future"),
        (worker, None, {**visit, "visited_at": _ago(days=100)}, "visited_at is implausibly old"),
        (volunteer, stored(claim), {**claim, "minutes": 60},
         "a claim is not changed once made: the resident confirms or disputes it"),
        (partner, stored(redemption), {**redemption, "_rev": "2-b"}, "a redemption is not changed once made"),
        (partner, stored(redemption), {**redemption, "_rev": "1-a"}, "a redemption is not changed once made"),
        # The time bank's and the ballot rule's own reasons, in English for the log (the phone's person gets theirs)
        (volunteer, None, {**claim, "minutes": 0}, "Hours of help must be more than 0 and at most 8."),
        (worker, None, {**base("ballot", worker.user_id), "choice": "maybe"},
         "The code does not match the voting card: let the resident check it and type it again."),
        (partner, None, {k: v for k, v in redemption.items() if k != "voucher"},
         "a redemption names a voucher that exists"),
        (partner, None, {**redemption, "_id": "redemption:c1-1:00002"},
         "a redemption is its voucher's: its id, reward, organisation, place and holder"),
        (partner, None, {**redemption, "voided": _ago(minutes=1)},
         "only the server voids a voucher (its debit reversed)"),
        (worker, None, {**base("survey_response", worker.user_id), "household": household_id(G11, 2),
                        "_id": door_answer_id(household_id(G11, 2), MONTH)},
         f"This household was not drawn for the {MONTH} survey."),
        (worker, stored(base("survey_response", worker.user_id)), {**base("survey_response", worker.user_id),
                                                                   "overall": 5},
         "a survey answer is not changed once given"),
        (worker, stored(checkin), {**checkin, "method": "keeper"}, "a check-in is not changed once made"),
        (worker, None, {**base("booking", worker.user_id), "resident": resident_id(G11, 1)},
         "a phone's booking names no resident but its own user's"),
    ]


def test_a_second_redemption_made_offline_is_judged_as_new_not_as_an_edit() -> None:
    """Another phone's redemption of the same voucher arrives as another first revision (a conflicting branch): it
    is judged as a new redemption (kept, the second use shown), while any later revision of a stored one is an edit."""
    partner = ACTORS[6]
    redemption = base("redemption", partner.user_id)
    assert decided(partner, stored(redemption), {**redemption, "_rev": "1-b"})
    assert not decided(partner, stored(redemption), {**redemption, "_rev": "2-b"})
    assert not decided(partner, stored(redemption), redemption)  # no revision at all: not a branch
    voucher = "voucher:c1-1:00001"
    gone = {**REFS, voucher: {**REFS[voucher], "_deleted": True}}  # the voucher deleted since the first one
    assert write_refusal(partner.principal, stored(redemption), {**redemption, "_rev": "1-b"}, gone, NOW) == \
        "a redemption names a voucher that exists"


def test_a_redemption_carries_its_vouchers_reward_and_organisation() -> None:
    """A partner's staff honours a voucher for what it was bought for, at the organisation it was bought from: another
    reward or another shop of the same community (each a real one, there) is refused."""
    partner = ACTORS[6]
    redemption = base("redemption", partner.user_id)
    refs = {**REFS, "reward:c1-2": {**REFS["reward:c1-1"], "_id": "reward:c1-2"},
            "organisation:c1-other": {**REFS[SHOPS[C1]], "_id": "organisation:c1-other"}}
    assert write_refusal(partner.principal, None, redemption, refs, NOW) is None  # the positive control
    assert write_refusal(partner.principal, None, {**redemption, "reward": "reward:c1-2"}, refs, NOW) is not None
    # Its holder, named so that the use reaches the holder's phone: the voucher's, or none (a phone without it).
    assert write_refusal(partner.principal, None, {**redemption, "holder": VOLUNTEER[G11]}, refs, NOW) is None
    assert write_refusal(partner.principal, None, {**redemption, "holder": "resident:someone-else"}, refs, NOW) == \
        "a redemption is its voucher's: its id, reward, organisation, place and holder"
    other_shop = Principal(user("partner-2"), frozenset({Role.PARTNER}), S, organisation="organisation:c1-other")
    theirs = {**redemption, "organisation": "organisation:c1-other", "created_by": other_shop.user_id}
    assert write_refusal(other_shop, None, theirs, refs, NOW) == \
        "a redemption is its voucher's: its id, reward, organisation, place and holder"


def test_a_held_slot_is_cancelled_only_by_its_booker_and_taken_by_nobody_else() -> None:
    """An edit of a booking that holds its slot (requested or confirmed): its booker may cancel it and change nothing
    else; anyone else's edit of it is "this slot is booked" (a branch made offline is kept as a conflict instead)."""
    worker, volunteer = ACTORS[0], ACTORS[1]
    mine = stored(base("booking", worker.user_id))
    edit = {**mine, "_rev": "2-b", "_revisions": {"start": 2, "ids": ["b", "a"]}}
    assert decided(worker, mine, {**edit, "status": "cancelled"})
    assert write_refusal(worker.principal, mine, {**edit, "status": "cancelled", "people": 5}, REFS, NOW) == \
        "This booking is cancelled or over."
    assert write_refusal(volunteer.principal, mine, {**edit, "booked_by": volunteer.user_id}, REFS, NOW) == \
        "This slot is booked: you may join the waitlist."


def test_only_who_works_in_a_community_books_its_resources() -> None:
    """A booking is written by a volunteer, grid worker or secretary whose account names its community: a volunteer
    of community c1 may not book c2's hall (a booking there, of its hall, in every other way right), c2's may."""
    volunteer = ACTORS[1]
    hall_c2 = {**base("booking", volunteer.user_id), "community": C2, "resource": HALL[C2],
               "_id": slot_of(HALL[C2], TOMORROW_TEN), "group": slot_of(HALL[C2], TOMORROW_TEN)}
    assert write_refusal(volunteer.principal, None, hall_c2, REFS, NOW) == "your role may not write this booking here"
    theirs = Principal(VOLUNTEER[G21], frozenset({Role.VOLUNTEER}), S, frozenset({C2}), frozenset({G21}))
    assert write_refusal(theirs, None, {**hall_c2, "booked_by": theirs.user_id}, REFS, NOW) is None


def test_a_phone_books_as_its_users_working_roles_never_as_a_resident() -> None:
    """What a phone books as is its user's volunteer, grid worker or secretary role (pool.booker_kinds, resident
    False): a room only residents may book is refused to a worker's phone even when the worker lives there (a
    resident books online, through the server)."""
    worker = ACTORS[0]
    at_home = Principal(worker.user_id, frozenset(worker.roles), S, frozenset(worker.communities),
                        frozenset(worker.grids), resident=resident_id(G11, 2))
    booking = base("booking", worker.user_id)
    residents_only = {**REFS, HALL[C1]: {**REFS[HALL[C1]], "who_may_book": ["resident"]}}
    for p in (worker.principal, at_home):
        assert write_refusal(p, None, booking, REFS, NOW) is None  # the positive control: a hall open to workers
        assert write_refusal(p, None, booking, residents_only, NOW) == "This resource's rules do not let you book it."


def test_a_write_naming_a_deleted_document_is_refused_as_naming_nothing() -> None:
    """A deleted document (the server's tombstone keeps its type and place) is no household, grid or resident to
    name: a new visit about a deleted household, or a household in a deleted grid, is refused as naming nothing."""
    worker = ACTORS[0]
    visit, household = base("visit", worker.user_id), base("household", worker.user_id)
    assert decided(worker, None, visit) and decided(worker, None, household)  # the positive controls
    gone = household_id(G11, 1)
    without_household = {**REFS, gone: access.deletion(stored(REFS[gone]))}
    assert write_refusal(worker.principal, None, visit, without_household, NOW) == f"household: there is no {gone}"
    without_grid = {**REFS, G11: access.deletion(stored(REFS[G11]))}
    assert write_refusal(worker.principal, None, household, without_grid, NOW) == f"there is no grid {G11}"


def test_a_documents_place_is_judged_when_it_is_made_and_kept_by_its_edits() -> None:
    """Where a document is was judged when it was made, and no edit moves it (the `moved` check): an edit of a
    household is not refused because its grid has since been removed (merged into another, say), while a new
    household there is."""
    worker = ACTORS[0]
    household = stored(base("household", worker.user_id))
    without_grid = {**REFS, G11: access.deletion(stored(REFS[G11]))}
    assert write_refusal(worker.principal, household, {**household, "address": "幸福路2号"}, without_grid, NOW) is None
    assert write_refusal(worker.principal, None, base("household", worker.user_id), without_grid, NOW) is not None


def test_a_households_head_lives_in_it() -> None:
    """A household's head is one of its own residents: set on an edit once the residents are stored, a resident of
    the household is accepted and one of another household is refused."""
    worker = ACTORS[0]
    home = stored(REFS[household_id(G11, 1)])
    second = {**REFS[resident_id(G11, 1)], "_id": "resident:c1-g1-h1-second"}
    refs = {**REFS, second["_id"]: second}
    assert write_refusal(worker.principal, home, {**home, "head": second["_id"]}, refs, NOW) is None
    assert write_refusal(worker.principal, home, {**home, "head": resident_id(G11, 2)}, refs, NOW) == \
        f"head: {resident_id(G11, 2)} belongs to another household"


def test_a_client_edit_keeps_the_server_set_fields_it_was_given() -> None:
    """The key a device's readings are sealed to and a request's dispatch are the server's to set; a worker's edit
    that keeps them as stored (a new wristband address, a fuller description) is judged on what it changes."""
    worker = ACTORS[0]
    device = {**stored(base("device", worker.user_id)), "write_public": "k", "write_key_version": 1}
    assert decided(worker, device, {**device, "mac": "AA:BB:CC:DD:EE:98"})
    assert not decided(worker, device, {**device, "write_public": "k2"})
    # A request as dispatch left it: its department, deadline and whistles kept by the worker's edit
    request = {**stored(base("service_request", worker.user_id)), "department": "department:health",
               "due_close": (NOW + dt.timedelta(days=3)).isoformat(), "whistles": 1}
    assert decided(worker, request, {**request, "description": "漏水，楼下也湿了"})
    assert not decided(worker, request, {**request, "whistles": 2})


def test_department_staff_edit_only_the_requests_whistled_to_their_department() -> None:
    """A request whistled to a department (§3.2: its `departments`, set by the server) is that department's staff's
    to work on; one whistled elsewhere is not."""
    staff = ACTORS[3]
    request = {**stored(base("service_request", WORKER[G11])), "departments": ["department:health"]}
    update = {"description": "已派人查看", "updated_by": staff.user_id, "updated_at": _ago(minutes=1)}
    assert decided(staff, request, {**request, **update})
    elsewhere = {**request, "departments": ["department:housing"]}
    assert not decided(staff, elsewhere, {**elsewhere, **update})


def test_each_refusal_tells_the_phone_the_rule_that_refused_it() -> None:
    """The reason the sync gateway returns with a refused document names the rule (and the field) that refused it."""
    wrong = [(actor.role, reason, write_refusal(actor.principal, old, new, REFS, NOW))
             for actor, old, new, reason in _reasons() if write_refusal(actor.principal, old, new, REFS, NOW) != reason]
    assert not wrong, wrong
    far = {**REFS, "community:far": {"_id": "community:far", "type": "community", "street": OTHER_STREET,
                                     "community": "community:far", "name": "远方"}}
    admin = ACTORS[5]
    assert write_refusal(admin.principal, None, {**base("gateway", admin.user_id), "community": "community:far"},
                         far, NOW) == "community:far is not in this document's street"


_MUTATION = st.sampled_from(sorted(POOL)).flatmap(lambda name: st.tuples(st.just(name), st.sampled_from(POOL[name])))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actor=st.sampled_from(ACTORS), type_name=st.sampled_from(sorted(CLIENT_TYPES)),
       changes=st.lists(_MUTATION, min_size=2, max_size=4), edit=st.booleans())
def test_several_mutations_at_once_are_judged_by_the_rules(actor: Actor, type_name: str,
                                                           changes: list[tuple[str, Any]], edit: bool) -> None:
    doc = base(type_name, actor.user_id)
    fields = DOC_TYPES[type_name].fields
    new = {**doc, **{name: value for name, value in changes if name in doc or name in fields}}
    old = stored(doc) if edit and expected(actor, None, doc) else None
    assert decided(actor, old, new) == expected(actor, old, new)


# ---------------------------------------------------------------- through the real sync gateway

@pytest.fixture(name="gateway_url")
def gateway_url_fixture(couch_server: EmbeddedCouch, couch: Couch, settings: Settings) -> Iterator[str]:
    main, accounts_docs = world_docs()
    password_hash = hashed(PASSWORD)
    accounts_docs = [{**d, "password_hash": password_hash} if d["type"] == "user" else d for d in accounts_docs]
    for db, docs in ((couch.main, main), (couch.accounts, accounts_docs)):
        assert not [r for r in bulk_save(db, docs) if r.error]
    served = serve(couch_server.url, settings, free_port())
    yield served.url
    stop(served)


def _renamed(doc: Doc, n: int) -> Doc:
    """doc under an id of its own (`…:new<n>`); a routing field that named its old id (a grid's `grid`) follows."""
    new_id = f"{doc['_id']}{n}" if doc["_id"].endswith(":new") else doc["_id"]
    return {k: new_id if v == doc["_id"] else v for k, v in doc.items()}


def test_a_sample_through_the_sync_gateway_is_judged_by_the_rules(gateway_url: str) -> None:
    """Bounded: every role's unmutated documents of every type and 80 single mutations (fixed seed), as each role's
    `_bulk_docs` batch. Left out: readings (their value must be a sealed envelope, which the rule does not read),
    the street (its one id exists already), claims (their id is their task's, so a claim and its mutations
    share one id: tests/test_timebank_sync.py sends claims through the gateway) and redemptions (their id is
    their voucher's, alike), and bookings and check-ins (their ids are a slot's and a booking's, shared the
    same way: tests/test_pool.py sends them through the gateway), and door survey answers (their id is their
    household's and month's: tests/test_evaluation.py sends one through the gateway)."""
    rng = random.Random(13)
    cases = [(actor, base(t, actor.user_id)) for actor in ACTORS
             for t in sorted(CLIENT_TYPES - {"reading", "street", "claim", "redemption", "survey_response",
                                             *POOL_TYPES})]
    cases += rng.sample([(actor, new) for actor, doc in cases for new in mutations(doc)], 80)
    wrong, accepted = [], 0
    for actor in ACTORS:
        docs = [_renamed(doc, n) for n, (who, doc) in enumerate(cases) if who is actor]
        cookie, csrf = login(gateway_url, actor.user_id[5:], PASSWORD)
        answers = httpx2.post(gateway_url + "sync/main/_bulk_docs", json={"docs": docs}, timeout=60,
                              headers={"Cookie": cookie, "X-CSRF-Token": csrf}).json()
        for doc, answer in zip(docs, answers, strict=True):
            if ("rev" in answer) != expected(actor, None, doc) or answer.get("error") not in (None, "forbidden"):
                wrong.append((actor.role, doc, answer))
            accepted += "rev" in answer
    assert not wrong, wrong[:5]
    assert 30 < accepted < len(cases) - 60  # both answers well represented
    # What names places is read before the schema is checked: values of any JSON shape are refused, not a 5xx.
    odd = [{"_id": "visit:odd1", "type": [1]}, {**base("visit", WORKER[G11]), "_id": "visit:odd2", "grid": [1],
                                                "household": {"a": 1}, "assigned_to": [{}]}]
    answer = httpx2.post(gateway_url + "sync/main/_bulk_docs", json={"docs": odd}, timeout=30,
                         headers={"Cookie": cookie, "X-CSRF-Token": csrf})
    assert answer.status_code == 201 and [row["error"] for row in answer.json()] == ["forbidden", "forbidden"]
