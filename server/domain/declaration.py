"""The one declaration of Linli's domain: document types, their fields, and
each field's category and protection tier.

Everything else reads this module: the web server validates with it, the sync
gateway routes by its scope fields, the crypto layer encrypts by its tiers, the
BLE gateway builds readings with it, and the PWA gets it as JSON
(`export_json`). Add a field here and nowhere else.

Document ids are `<type>:<key>` so that a document's type is visible in every
log line and replication answer without opening the document.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from server.domain.errors import FieldError, UserError
from server.domain.meetings import MEETING_KINDS, MEETING_STATES
from server.domain.vote_rules import RULES


class Tier(StrEnum):
    """How strongly a field is protected (the plan's data-security firewall, §5.1)."""

    PUBLIC = "public"  # organisational data: names of grids, categories of requests
    BASIC = "basic"  # personal but basic: name, address; grid worker of that grid
    CONTACT = "contact"  # encrypted at rest; grid worker of that grid
    CORE = "core"  # health and finance: encrypted; needs the secretary's approval
    SECRET = "secret"  # server-side secrets (password hashes): never leave the server


class Category(StrEnum):
    """What a field is about; residents choose visibility per category (privacy mode)."""

    BASIC = "basic"
    CONTACT = "contact"
    HEALTH = "health"
    FINANCE = "finance"
    SOCIAL = "social"
    RECORD = "record"  # bookkeeping of the document itself (who, when, status)
    SYSTEM = "system"  # not about a person at all


# The tier a category gets unless a field says otherwise.
CATEGORY_TIER: dict[Category, Tier] = {
    Category.BASIC: Tier.BASIC,
    Category.CONTACT: Tier.CONTACT,
    Category.HEALTH: Tier.CORE,
    Category.FINANCE: Tier.CORE,
    Category.SOCIAL: Tier.BASIC,
    Category.RECORD: Tier.PUBLIC,
    Category.SYSTEM: Tier.PUBLIC,
}

PROTECTED_TIERS = frozenset({Tier.CONTACT, Tier.CORE})


class Role(StrEnum):
    ADMIN = "admin"
    SECRETARY = "secretary"
    GRID_WORKER = "grid_worker"
    VOLUNTEER = "volunteer"
    DEPARTMENT_STAFF = "department_staff"
    RESIDENT = "resident"
    GATEWAY = "gateway"  # a BLE gateway tablet: reads its devices' configuration, reports readings and alerts
    # Staff of an organisation offering rewards for points (issue 16): the account names its organisation and sees
    # that organisation's vouchers and redemptions, nothing about anyone else. Not a volunteer: a shop assistant
    # redeeming a voucher looks after no household.
    PARTNER = "partner"


class Scope(StrEnum):
    """The level a document type belongs to; it decides which routing fields it carries."""

    INSTALLATION = "installation"  # the whole installation: no routing fields, never replicated
    STREET = "street"
    COMMUNITY = "community"
    GRID = "grid"


# Routing fields every document of a scope must carry, outermost first.
SCOPE_FIELDS: dict[Scope, tuple[str, ...]] = {
    Scope.INSTALLATION: (),
    Scope.STREET: ("street",),
    Scope.COMMUNITY: ("street", "community"),
    Scope.GRID: ("street", "community", "grid"),
}

VERSION_FIELD = "schema_version"  # the declaration version a document was written under (absent: 1)
ACCOUNTS_DB = "accounts"  # users and login state: never replicated to phones
MAIN_DB = "main"


@dataclass(frozen=True)
class Field:
    """One field of a document type.

    kind is one of KINDS; `ref` names the document type an id field points to;
    `choices` lists the allowed values of an enum (or of each item of an enum list);
    on a list, `ref` applies to each item. A "records" field is a list of small
    objects whose keys and their kinds are `shape` (a key ending in "?" is optional).
    """

    kind: str
    category: Category = Category.RECORD
    required: bool = False
    tier: Tier | None = None
    choices: tuple[str, ...] = ()
    ref: str | None = None
    max_length: int = 2000
    shape: tuple[tuple[str, str], ...] = ()
    # Set by the server alone (e.g. which key a device's readings are sealed to): no client may write or change it.
    server_only: bool = False
    # Items of a list (default 200) or records (default 500) field: a matter's frozen roll and receipts hold more.
    max_items: int | None = None

    @property
    def effective_tier(self) -> Tier:
        return self.tier or CATEGORY_TIER[self.category]


@dataclass(frozen=True)
class DocType:
    name: str
    scope: Scope
    fields: dict[str, Field]
    database: str = MAIN_DB
    label_zh: str = ""
    label_en: str = ""
    # Phones and BLE gateways may write it (through the sync gateway, under `access.WRITE_RULES`); every other
    # type is the server's alone: filing log, approvals, grants, keys, accounts.
    client_writable: bool = False
    # The type's declaration version: bumped when its documents change shape, with a migration from the one before
    # (server/domain/migrations.py). A document says which it was written under in VERSION_FIELD; none means 1.
    version: int = 1
    # Urgent: a phone coming back online sends and fetches these before anything else (issue 22), so an SOS
    # acknowledgement never waits behind a visit's photos. One carrying photos goes with the rest.
    sync_first: bool = False
    # The household list: a new phone pulls these right after the urgent kinds and before the rest (visits, the
    # year's history), so that its grid and household pages answer offline early in a first sync of minutes.
    sync_list: bool = False
    routing: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "routing", SCOPE_FIELDS[self.scope])

    def fields_in(self, *tiers: Tier) -> list[str]:
        return [n for n, f in self.fields.items() if f.effective_tier in tiers]


def _text(category: Category = Category.RECORD, **kw: Any) -> Field:
    return Field("text", category, **kw)


def _ref(target: str, **kw: Any) -> Field:
    return Field("id", Category.RECORD, ref=target, **kw)


def _enum(choices: Iterable[str], category: Category = Category.RECORD, **kw: Any) -> Field:
    return Field("enum", category, choices=tuple(choices), **kw)


GENDERS = ("male", "female")
ELDERLY_CARE_LEVELS = ("none", "self_reliant", "semi_disabled", "disabled")
# A family member to tell of an alert (`notify`: SOS and falls, if the resident's privacy choice allows).
FAMILY_CONTACT_SHAPE = (("name", "text"), ("relation", "text"), ("phone", "phone"), ("notify", "bool"))
DISABILITY_KINDS = ("none", "physical", "visual", "hearing", "speech", "intellectual", "mental", "multiple")
DEPARTMENT_KINDS = ("civil_affairs", "health", "urban_management", "housing", "police", "utilities", "other")
DEVICE_KINDS = ("wristband", "water_meter", "electricity_meter", "door_sensor", "motion_sensor")
ALERT_KINDS = ("sos", "fall", "no_water", "no_activity", "heart_rate", "electricity", "battery_low", "gateway_silent",
               "device_silent")
ALERT_STATES = ("raised", "acknowledged", "visiting", "resolved", "escalated")
# "returned": the department it was dispatched to handed it back, with a reason, to the grid that owns it (§5.2).
REQUEST_STATES = ("received", "acknowledged", "in_progress", "escalated", "resolved", "closed", "reopened",
                  "returned")
SATISFACTION = ("very_satisfied", "satisfied", "neutral", "dissatisfied", "very_dissatisfied")
# "closed": a grid worker or secretary closed it with a reason the resident sees (server/services/needs.py).
NEED_STATES = ("open", "matched", "in_progress", "done", "cancelled", "closed")
VISIT_KINDS = ("routine", "needs_list", "alert_follow_up", "care", "other")
# The time bank (issue 16): two double-entry ledgers. Hours are kept in whole minutes, so that sums are exact.
LEDGERS = ("hours", "points")
TRANSFER_KINDS = ("claim", "confirmation", "mint", "redemption", "reversal")
# A claim of hours: made by who helped, confirmed or disputed by who was helped, or expired unanswered.
CLAIM_STATES = ("claimed", "confirmed", "disputed", "expired")
ORGANISATION_KINDS = ("school", "firm", "hospital", "social_organisation", "other")
REWARD_KINDS = ("service", "goods")  # what an organisation offers for points (server/domain/points.py)
# A volunteer's task (PRODUCT.md: each grid's volunteers visit, deliver, accompany), assigned by grid staff.
TASK_KINDS = ("visit", "delivery", "accompany", "other")
TASK_STATES = ("assigned", "accepted", "done", "declined")
# How the volunteer assigned answers a task, from each state (done and declined carry their note: access.py).
TASK_ANSWERS: dict[str, tuple[str, ...]] = {"assigned": ("accepted", "done", "declined"),
                                            "accepted": ("done", "declined")}
# Deliberation and voting (issue 15, server/services/deliberation.py).
MATTER_KINDS = ("committee_decision", "household_assembly", "hearing", "consultation")
# Who votes: the residents' committee (the community's secretary and grid workers), one ballot per household,
# one per adult resident.
ELECTORATES = ("committee", "household", "adult_resident")
BALLOT_MODES = ("open", "secret")
# "preparing": opened, its roll being frozen in the background (a street-wide roll takes minutes); no ballots yet.
MATTER_STATES = ("open", "closed", "preparing")
BALLOT_CHANNELS = ("own", "door", "paper")  # the voter's own authenticated vote, at the door, a paper ballot
MAX_ROLL = 200_000  # voters on one matter's roll (a street-wide household vote at scale)
# Matching needs to offers of help (issue 17, item 4; server/domain/matching.py). The kinds of help are the needs
# residents name (field_rules.COMMON_NEEDS, tests/test_matching.py checks) and what organisations offer besides.
HELP_KINDS = ("meal_delivery", "medical_escort", "home_repair", "cleaning", "companionship", "shopping",
              "legal_aid", "financial_aid", "tutoring", "free_clinic")
SPOKEN_LANGUAGES = ("putonghua", "local_dialect", "english", "sign_language")
OFFER_STATES = ("active", "withdrawn")
# A match is proposed to both sides; accepted once both accept, declined once either declines, withdrawn when the
# need was matched with another offer or the offer withdrawn.
MATCH_STATES = ("proposed", "accepted", "declined", "withdrawn", "done")  # done: an organisation's help given
MATCH_ANSWERS = ("waiting", "accepted", "declined")
WEEKLY_HOURS_SHAPE = (("day", "int"), ("start", "text"), ("end", "text"))
# Supervision and evaluation (issue 18; server/services/evaluation.py, mediation.py, survey.py).
# How a reporter's "is it really fixed?" answer was given: on their own page, at the human window, at a visit.
CONFIRM_CHANNELS = ("own", "window", "visit")
MAX_MINUTES = 20_000  # a mediation's minutes, all sessions' notes together (characters)
MEDIATION_KINDS = ("noise", "water_leak", "parking", "boundary", "pets", "rubbish", "other")
# open → agreement | no_agreement | withdrawn; an agreement → kept | broken at its follow-up.
MEDIATION_STATES = ("open", "agreement", "no_agreement", "withdrawn", "kept", "broken")
PROJECT_KINDS = ("home_care", "elderly_canteen", "day_care", "other")
# active → withdrawal_proposed (two failed evaluations in a row) → withdrawn, or active again if the vote keeps it.
PROJECT_STATES = ("active", "withdrawal_proposed", "withdrawn")
SURVEY_CHANNELS = ("own", "door")  # answered online by the resident, or at the door to a volunteer or grid worker
# Protected fields a resident can be found by, and the field of their number_index document holding each one's
# blind index (server-only: no phone holds an index, crypto/README.md "Blind index leakage").
BLIND_INDEXED = {"phone": "phone_bidx", "id_card": "id_card_bidx"}
ACCESS_REQUEST_STATES = ("pending", "approved", "refused", "revoked")
# Categories a core-data access request may ask for: the core tier's categories.
CORE_CATEGORIES = ("health", "finance")
MAX_GRANT_HOURS = 24 * 30
# Privacy mode (§5.1): what a resident chooses per category. The first choice is the default.
PRIVACY_CHOICES: dict[str, tuple[str, ...]] = {
    "contact": ("grid_staff", "secretary_only"),
    "health": ("with_approval", "secretary_only"),
    "finance": ("with_approval", "secretary_only"),
    "utility_alerts": ("grid_staff", "grid_worker_only"),
    "sos_family": ("notify", "do_not_notify"),
}

# The resource pool (issue 17; server/domain/pool.py says what a booking and a check-in must be).
RESOURCE_KINDS = ("room", "equipment", "skill", "service")
RESOURCE_OWNER_KINDS = ("community", "school", "firm", "hospital", "resident")
# Who a resource's rules may let book it: people by the role they book as.
BOOKER_KINDS = ("resident", "volunteer", "grid_worker", "secretary")
# One booking document per hour slot: requested (awaiting the keeper's approval), confirmed, declined by the keeper,
# cancelled by who booked it, or no_show (nobody checked in within the grace period: the rest is released).
BOOKING_STATES = ("requested", "confirmed", "declined", "cancelled", "no_show")
CHECKIN_METHODS = ("scan", "keeper")

_WHO_WHEN = {
    "created_by": _ref("user", required=True),
    "created_at": Field("datetime", required=True),
    "updated_at": Field("datetime"),
}

_PERSONAL_LINKS = {
    "household": _ref("household"),
    "resident": _ref("resident"),
}

# A publication (a vote's result, a month's figures) published again by another process on another CouchDB node:
# each other filing of it, recorded on the one that stands (server/services/publications.py), never a correction.
PUBLISHED_AGAIN = Field("records", Category.SYSTEM,
                        shape=(("filed_seq", "int"), ("hash", "text"), ("signature", "text")))

DOC_TYPES: dict[str, DocType] = {
    t.name: t
    for t in [
        DocType("street", Scope.STREET, {
            "name": _text(Category.SYSTEM, required=True, max_length=100),
            "district": _text(Category.SYSTEM, max_length=100),
            "city": _text(Category.SYSTEM, max_length=100),
        }, label_zh="街道", label_en="Street", client_writable=True, sync_list=True),
        DocType("community", Scope.COMMUNITY, {
            "name": _text(Category.SYSTEM, required=True, max_length=100),
            "office_address": _text(Category.SYSTEM, max_length=200),
        }, label_zh="社区", label_en="Community", client_writable=True, sync_list=True),
        DocType("grid", Scope.GRID, {
            "name": _text(Category.SYSTEM, required=True, max_length=100),
            "number": Field("int", Category.SYSTEM, required=True),
            "area": _text(Category.SYSTEM, max_length=200),
            "location": Field("geo", Category.SYSTEM),  # the grid's centre, for dispatch by map position
        }, label_zh="网格", label_en="Grid", client_writable=True, sync_list=True),
        DocType("department", Scope.STREET, {
            "name": _text(Category.SYSTEM, required=True, max_length=100),
            "kind": _enum(DEPARTMENT_KINDS, Category.SYSTEM, required=True),
            "phone": _text(Category.SYSTEM, max_length=40),
        }, label_zh="部门", label_en="Department", client_writable=True),
        DocType("household", Scope.GRID, {
            "address": _text(Category.BASIC, required=True, max_length=200),
            "building": _text(Category.BASIC, max_length=20),
            "unit": _text(Category.BASIC, max_length=20),
            "room": _text(Category.BASIC, max_length=20),
            "head": _ref("resident"),
            "member_count": Field("int", Category.BASIC),
            "housing": _enum(("owned", "rented", "public_rental", "other"), Category.BASIC),
            # Square metres of the home (专有部分面积), for votes counted by area (server/domain/vote_rules.py). Basic,
            # like the address it describes: the server reads it to freeze a roll, and only totals are published.
            "floor_area": Field("float", Category.BASIC),
            "tags": Field("list", Category.SOCIAL, choices=(
                "elderly_alone", "low_income", "disability", "veteran", "empty_nest", "left_behind_child",
            )),
            # The grid's volunteers who look after this household (they see it and nothing else of the grid).
            "volunteers": Field("list", Category.SYSTEM, ref="user"),
            # The last edit (the household edit page, phones): who made it shows on the conflict screen.
            "updated_by": _ref("user"),
            "updated_at": Field("datetime"),
        }, label_zh="住户", label_en="Household", client_writable=True, sync_list=True),
        DocType("resident", Scope.GRID, {
            "household": _ref("household", required=True),
            # basic
            "name": _text(Category.BASIC, required=True, max_length=50),
            "gender": _enum(GENDERS, Category.BASIC, required=True),
            "birth_date": Field("date", Category.BASIC, required=True),
            "relation_to_head": _enum(
                ("self", "spouse", "child", "parent", "grandchild", "sibling", "other"), Category.BASIC),
            "hukou": _enum(("local", "non_local"), Category.BASIC),
            # contact (encrypted at rest)
            "phone": Field("phone", Category.CONTACT),
            "id_card": Field("id_card", Category.CONTACT),
            "emergency_contact_name": _text(Category.CONTACT, max_length=50),
            "emergency_contact_phone": Field("phone", Category.CONTACT),
            # health (core)
            "chronic_conditions": Field("list", Category.HEALTH),
            "disability": _enum(DISABILITY_KINDS, Category.HEALTH),
            "disability_grade": Field("int", Category.HEALTH),
            "health_notes": _text(Category.HEALTH),
            # finance (core)
            "minimum_living_allowance": Field("bool", Category.FINANCE),
            "allowance_monthly_yuan": Field("float", Category.FINANCE),
            "finance_notes": _text(Category.FINANCE),
            # social
            "living_alone": Field("bool", Category.SOCIAL),
            "elderly_care_level": _enum(ELDERLY_CARE_LEVELS, Category.SOCIAL),
            "social_notes": _text(Category.SOCIAL),
            # elderly care (§3.3 layered service): the plan's services are basic (the grid worker arranges them),
            # its health details core; the family to tell of an alert are contact details.
            "care_plan": _text(Category.SOCIAL, max_length=1000),
            "care_plan_health": _text(Category.HEALTH, max_length=1000),
            "family_contacts": Field("records", Category.CONTACT, shape=FAMILY_CONTACT_SHAPE),
        }, label_zh="居民", label_en="Resident", client_writable=True, sync_list=True),
        DocType("user", Scope.STREET, {
            "username": _text(Category.SYSTEM, required=True, max_length=50),
            "display_name": _text(Category.BASIC, required=True, max_length=50),
            "roles": Field("list", Category.SYSTEM, required=True, choices=tuple(r.value for r in Role)),
            "communities": Field("list", Category.SYSTEM, ref="community"),
            "grids": Field("list", Category.SYSTEM, ref="grid"),
            "department": _ref("department"),
            "resident": _ref("resident"),
            "gateway": _ref("gateway"),  # for a gateway account: the gateway it is
            "organisation": _ref("organisation"),  # for a partner account: the organisation it works for
            "active": Field("bool", Category.SYSTEM, required=True),
            "password_hash": _text(Category.SYSTEM, tier=Tier.SECRET, max_length=300),
            # Bumped to end every open session of the user (logout everywhere, password change).
            "auth_epoch": Field("int", Category.SYSTEM, required=True),
        }, database=ACCOUNTS_DB, label_zh="用户", label_en="User"),
        DocType("visit", Scope.GRID, {
            **_PERSONAL_LINKS,
            "kind": _enum(VISIT_KINDS, required=True),
            "visited_at": Field("datetime", required=True),
            "notes": _text(Category.SOCIAL),
            "needs": Field("list", Category.SOCIAL),
            "blood_pressure": _text(Category.HEALTH, max_length=20),
            "assigned_to": _ref("user"),
            **_WHO_WHEN,
        }, label_zh="走访", label_en="Visit", client_writable=True),
        DocType("need", Scope.GRID, {
            **_PERSONAL_LINKS,
            "category": _text(Category.SOCIAL, required=True, max_length=50),
            "description": _text(Category.SOCIAL, required=True),
            "status": _enum(NEED_STATES, required=True),
            "assigned_to": _ref("user"),
            # What became of it (server/services/needs.py), shown to the resident on their own page: the service
            # request, the visit or the volunteer's task it was turned into, or the reason it was closed; who handled
            # it, and when.
            "request": _ref("service_request"),
            "visit": _ref("visit"),
            "task": _ref("task"),
            "close_reason": _text(Category.SOCIAL, max_length=500),
            "handled_by": _ref("user"),
            "handled_at": Field("datetime"),
            # Matching (server/domain/matching.py): the language the resident speaks and when help suits them
            # (none: any time); the accepted match, set by the server when both sides accepted.
            "language": _enum(SPOKEN_LANGUAGES, Category.SOCIAL),
            "hours": Field("records", Category.SOCIAL, shape=WEEKLY_HOURS_SHAPE, max_items=28),
            "match": _ref("match", server_only=True),
            **_WHO_WHEN,
        }, label_zh="需求", label_en="Need", client_writable=True),
        DocType("task", Scope.GRID, {
            # A volunteer's task, assigned by grid staff. The volunteer sees no resident record (it carries sealed
            # fields), so the task carries what they need to go there: the address and name, basic tier.
            **_PERSONAL_LINKS,
            "household": _ref("household", required=True),
            "need": _ref("need"),  # the resident's need it answers, if any
            "kind": _enum(TASK_KINDS, required=True),
            "due_on": Field("date"),
            "notes": _text(Category.SOCIAL, max_length=1000),  # what to do
            "address": _text(Category.BASIC, required=True, max_length=200),
            "resident_name": _text(Category.BASIC, max_length=50),
            "assigned_to": _ref("user", required=True),
            "status": _enum(TASK_STATES, required=True),
            "volunteer_note": _text(Category.SOCIAL, max_length=1000),  # how it went, or why declined
            **_WHO_WHEN,
        }, label_zh="志愿任务", label_en="Volunteer task", client_writable=True),
        DocType("service_category", Scope.STREET, {
            # The service catalogue (Open311 "services"): who handles what, and what each asks for.
            "code": _text(Category.SYSTEM, required=True, max_length=50),
            "name": _text(Category.SYSTEM, required=True, max_length=100),
            "name_en": _text(Category.SYSTEM, max_length=100),
            "description": _text(Category.SYSTEM, max_length=500),
            "group": _text(Category.SYSTEM, max_length=100),
            "keywords": Field("list", Category.SYSTEM),
            "department": _ref("department", required=True),
            "attributes": Field("records", Category.SYSTEM, shape=(
                ("code", "text"), ("datatype", "text"), ("description", "text"), ("required", "bool"),
                ("order", "int"), ("values?", "list"))),
            "respond_days": Field("int", Category.SYSTEM, required=True),
            "close_days": Field("int", Category.SYSTEM, required=True),
            "active": Field("bool", Category.SYSTEM, required=True),
            "updated_by": _ref("user"),
            "updated_at": Field("datetime"),
        }, label_zh="服务类别", label_en="Service category"),
        DocType("open311_key", Scope.STREET, {
            # An Open311 client's API key: the id holds a hash of the key, never the key (server/web/open311.py).
            "name": _text(Category.SYSTEM, required=True, max_length=100),
            "created_at": Field("datetime", required=True),
            "revoked": Field("bool", required=True),
        }, database=ACCOUNTS_DB, label_zh="Open311 接口密钥", label_en="Open311 API key"),
        DocType("work_calendar", Scope.STREET, {
            # Working days for SLA clocks: weekends and holidays off, make-up working days on.
            "holidays": Field("list", Category.SYSTEM),
            "workdays": Field("list", Category.SYSTEM),
            "timezone": _text(Category.SYSTEM, required=True, max_length=50),
        }, label_zh="工作日历", label_en="Working-day calendar"),
        DocType("service_request", Scope.GRID, {
            **_PERSONAL_LINKS,
            "category": _text(Category.SYSTEM, required=True, max_length=50),  # the service_category code
            "description": _text(Category.BASIC, required=True),
            "status": _enum(REQUEST_STATES, required=True),
            "address": _text(Category.BASIC, max_length=200),
            "location": Field("geo", Category.BASIC),
            "attributes": Field("map", Category.BASIC),  # answers to the category's questions
            "owner": _ref("user"),  # first-contact responsibility (§5.2): who received it, to the end
            "department": _ref("department"),  # dispatched to, by category
            "departments": Field("list", Category.RECORD, ref="department"),  # whistled to (§3.2)
            # Departments (dispatched or whistled) that accepted the request, and that were on site.
            "accepted": Field("list", Category.RECORD, ref="department"),
            "on_site": Field("list", Category.RECORD, ref="department"),
            "whistles": Field("records", shape=(("department", "id"), ("at", "datetime"), ("due", "datetime"),
                                                ("arrived_at?", "datetime"), ("overdue?", "bool"))),
            "source": _enum(("web", "offline", "open311")),
            "on_behalf": Field("bool"),  # entered by staff at the "human window"
            "consent": Field("bool"),  # the resident agreed to that (required when on_behalf)
            "reporter_name": _text(Category.BASIC, max_length=100),
            "account_id": _text(max_length=100),  # an Open311 client's own id for the reporter
            "media_url": _text(max_length=500),
            "token": _text(max_length=64),
            "due_respond": Field("datetime"),
            "due_close": Field("datetime"),
            "acknowledged_at": Field("datetime"),
            "resolved_at": Field("datetime"),
            "closed_at": Field("datetime"),
            "warned": Field("list"),  # which deadlines were warned about: respond, close
            "history": Field("records", shape=(("at", "datetime"), ("by", "text"), ("action", "text"),
                                               ("status?", "text"), ("note?", "text"), ("photo?", "text"))),
            "rating": Field("int", Category.RECORD),
            # Closed means fixed (issue 18): the reporter said it really is fixed, when and through whom; "not fixed"
            # reopens it instead (its history keeps the reason). Set by the server alone (service_requests.confirm).
            "confirmed_at": Field("datetime", server_only=True),
            "confirmed_via": _enum(CONFIRM_CHANNELS, server_only=True),
            "satisfaction": _enum(SATISFACTION),
            **_WHO_WHEN,
        # Version 2: `source` always written (a request without one came from a phone: migrations.py).
        }, label_zh="服务请求", label_en="Service request", client_writable=True, version=2,
           sync_first=True),
        DocType("matter", Scope.COMMUNITY, {
            # Something the community decides or is consulted on. Published to the community: no personal data.
            "title": _text(Category.SYSTEM, required=True, max_length=200),
            "body": _text(Category.SYSTEM, max_length=5000),
            "kind": _enum(MATTER_KINDS, required=True),
            "options": Field("list", Category.SYSTEM, required=True, max_length=100),
            "electorate": _enum(ELECTORATES, required=True),
            "opens_at": Field("datetime", required=True),
            "closes_at": Field("datetime", required=True),
            "mode": _enum(BALLOT_MODES, required=True),
            "rule": _enum(RULES, required=True),
            # The rule's conditions as they stood when the matter opened (vote_rules.Condition.as_record).
            "conditions": Field("records", server_only=True, shape=(
                ("measure", "text"), ("unit", "text"), ("base", "text"), ("at_least", "text"))),
            "status": _enum(MATTER_STATES, required=True),
            # The frozen roll (matter_roll:<key>): how many voters and the hash of its entries.
            "roll_size": Field("int", server_only=True),
            "roll_hash": _text(max_length=64, server_only=True),
            # A secret vote's public key (P-256, base64url): ballots' choices are sealed to it in the browser or on
            # the phone (write without read, crypto/envelope.py seal_for); its private half is matter_key's.
            "seal_public": _text(Category.SYSTEM, max_length=100, server_only=True),
            "closed_at": Field("datetime"),
            "closed_by": _ref("user"),
            **_WHO_WHEN,
        }, label_zh="议题", label_en="Matter"),
        DocType("matter_roll", Scope.COMMUNITY, {
            # Who may vote on a matter, frozen when it opened: later household edits move no threshold. Each entry
            # the voter (household, resident or user), the household it counts for (none when the voter is one)
            # and its floor area then.
            "matter": _ref("matter", required=True),
            "entries": Field("records", max_items=MAX_ROLL, shape=(
                ("voter", "id"), ("household?", "id"), ("area?", "float"))),
            "hash": _text(required=True, max_length=64),
            "created_at": Field("datetime", required=True),
        }, label_zh="投票名册", label_en="Electoral roll"),
        DocType("ballot", Scope.COMMUNITY, {
            # One voter's ballot; its id is ballot:<matter key>:<voter id>, so a second ballot for the same voter is
            # a CouchDB conflict of this document, never a second vote (server/services/deliberation.py).
            "matter": _ref("matter", required=True),
            "voter": Field("id", required=True),  # a household, a resident or a user (committee member)
            "household": _ref("household"),
            "resident": _ref("resident"),  # the person who voted (for a household: which of its members)
            # Not protected personal data, but shown only to the voter and the secretary until the result is
            # published (access.py): who chose what is recorded in an open vote. A secret vote's choice is an
            # envelope sealed to the matter's key (context: the ballot's id, "choice", "basic"), opened at close.
            "choice": _text(Category.SOCIAL, required=True, max_length=400),
            "channel": _enum(BALLOT_CHANNELS, required=True),
            "assisted_by": _ref("user"),  # whoever recorded it for the voter (door, paper)
            "grid": _ref("grid"),  # at the door: the household's grid, where its grid worker recorded it
            # The voter's receipt: made by the server, or by the phone at the door (its shape checked,
            # server/domain/ballots.py); the published result lists those counted.
            "receipt": _text(required=True, max_length=16),
            # At the door (server/domain/ballots.py): the resident agreed to have it recorded (the human-window
            # consent), and confirmed it with their voting card's code (an HMAC under the card's hash, not the code).
            "consent": Field("bool"),
            "confirmation": _text(max_length=64),
            **_WHO_WHEN,
        }, label_zh="选票", label_en="Ballot", client_writable=True),
        DocType("matter_result", Scope.COMMUNITY, {
            # The published result: totals, each condition with numerator and denominator, every receipt counted,
            # signed with the filing log's key and filed in the community's filing log.
            "matter": _ref("matter", required=True),
            "totals": Field("map", required=True),
            "conditions": Field("records", required=True, shape=(
                ("measure", "text"), ("unit", "text"), ("base", "text"), ("at_least", "text"),
                ("numerator", "text"), ("denominator", "text"), ("passed", "bool"))),
            "passed": Field("bool", required=True),
            "roll_size": Field("int", required=True),
            "roll_hash": _text(required=True, max_length=64),
            "counted": Field("int", required=True),
            "receipts": Field("list", required=True, max_length=16, max_items=MAX_ROLL),
            "conflicts": Field("int", required=True),  # voters with more than one ballot, each counted once
            # Secret votes: voters none of whose ballots opened to an option under the matter's key (tampered,
            # or sealed for another ballot): not counted, their receipts not listed.
            "invalid": Field("int"),
            "published_at": Field("datetime", required=True),
            "hash": _text(required=True, max_length=64),
            "signature": _text(required=True, max_length=200),
            "filed_seq": Field("int", required=True),
            "duplicates": PUBLISHED_AGAIN,
        }, label_zh="表决结果", label_en="Result"),
        # ---- hearings and meetings (issue 15 item 8; server/domain/meetings.py, server/services/meetings.py)
        DocType("meeting", Scope.COMMUNITY, {
            # A hearing, joint meeting or assembly, published to the community: its agenda, attendance and minutes.
            "kind": _enum(MEETING_KINDS, required=True),
            "title": _text(Category.SYSTEM, required=True, max_length=200),
            "starts_at": Field("datetime", required=True),
            "place": _text(Category.SYSTEM, required=True, max_length=200),
            # Each item's title and the matter it is about, if any (its vote, its paper ballots at a hearing).
            "agenda": Field("records", required=True, shape=(("title", "text"), ("matter?", "id"))),
            "status": _enum(MEETING_STATES, required=True),
            "published_at": Field("datetime"),
            # Attendance: every person counted at the door, and the names of those who agreed to be named (their
            # attendance documents hold who they are; this is what the community reads).
            "headcount": Field("int"),
            "named_attendees": Field("list", Category.SOCIAL, max_length=100),
            # A hearing's paper ballots per matter: envelopes counted from the box; a correction the secretary
            # explained, for the counts it names (meetings.PaperCount.as_text).
            "paper": Field("records", shape=(("matter", "id"), ("envelopes", "int"), ("corrected?", "text"),
                                             ("reason?", "text"), ("corrected_by?", "id"))),
            "minutes": _text(Category.SYSTEM, max_length=10000),
            "decisions": Field("records", shape=(("text", "text"), ("matter?", "id"))),
            "minutes_published_at": Field("datetime"),
            **_WHO_WHEN,
        }, label_zh="会议", label_en="Meeting"),
        DocType("opinion", Scope.COMMUNITY, {
            # An opinion posted before a meeting. The secretary may hide one, naming why: kept (text and all) and
            # filed in the filing log, never deleted.
            "meeting": _ref("meeting", required=True),
            "text": _text(Category.SOCIAL, required=True, max_length=1000),
            "author_name": _text(Category.SOCIAL, required=True, max_length=100),
            "resident": _ref("resident"),  # a resident's own opinion
            "hidden": Field("bool"),
            "hidden_reason": _text(Category.SYSTEM, max_length=500),
            "hidden_by": _ref("user"),
            "hidden_at": Field("datetime"),
            **_WHO_WHEN,
        }, label_zh="意见", label_en="Opinion"),
        DocType("attendance", Scope.GRID, {
            # One person present at a meeting; its id is attendance:<meeting key>:<resident id>, so marking someone
            # twice keeps one. `named`: they agreed to be named in the published attendance.
            "meeting": _ref("meeting", required=True),
            "resident": _ref("resident", required=True),
            "household": _ref("household", required=True),
            "named": Field("bool", required=True),
            **_WHO_WHEN,
        }, label_zh="出席", label_en="Attendance"),
        DocType("survey_response", Scope.COMMUNITY, {
            # The monthly satisfaction survey (§4.5): one answer per resident per month; only totals are published.
            "month": _text(required=True, max_length=7),
            "overall": Field("int", required=True),
            # The household it speaks for (one answer per sampled household counts: survey.published), and how it
            # was given; at the door, the volunteer or grid worker who wrote it down is created_by.
            "household": _ref("household"),
            "channel": _enum(SURVEY_CHANNELS),
            "comment": _text(Category.SOCIAL, max_length=500),
            "consent": Field("bool"),  # at the door: the resident agreed to the answer being written down
            **_WHO_WHEN,
        # Written at the door from a phone offline too (access.survey_door_refusal: online and synced alike).
        }, label_zh="满意度调查", label_en="Satisfaction survey answer", client_writable=True),
        # ---- the time bank (issue 16; server/domain/timebank.py says what the ledgers allow)
        DocType("organisation", Scope.COMMUNITY, {
            # A school, firm or hospital of the community's resource pool: it holds an account of its own.
            "name": _text(Category.SYSTEM, required=True, max_length=100),
            "kind": _enum(ORGANISATION_KINDS, Category.SYSTEM, required=True),
        }, label_zh="合作单位", label_en="Organisation"),
        DocType("claim", Scope.GRID, {
            # Who helped (created_by) claims minutes for one task from who was helped (resident). Its id is
            # `claim:<task id>`, so one task claimed twice (two phones, a retry) is one document in conflict.
            **_PERSONAL_LINKS,
            "resident": _ref("resident", required=True),
            "task": Field("id", required=True),  # a need, a visit, a volunteer task: any task-like document
            "minutes": Field("int", required=True),
            "note": _text(Category.SOCIAL, max_length=500),
            "status": _enum(CLAIM_STATES, required=True),
            # Set by the server when the resident (or a grid worker with their consent) answers.
            "decided_by": _ref("user"),
            "decided_at": Field("datetime"),
            "consent": Field("bool"),  # answered by a grid worker on the resident's behalf, who agreed to it
            "dispute_note": _text(Category.SOCIAL, max_length=500),
            "transfer": _ref("transfer"),
            # Confirmed in person on the provider's phone (server/domain/timebank.py): the resident's one-time code,
            # their consent and when; the server spends the code and moves the hours when the claim arrives, then
            # drops the code, or keeps the claim waiting with why it could not (`in_person_refused`, a message key).
            "in_person_code": _text(max_length=20),
            "in_person_consent": Field("bool"),
            "in_person_at": Field("datetime"),
            "in_person_refused": _text(max_length=40),
            **_WHO_WHEN,
        }, label_zh="时间银行申报", label_en="Time bank claim", client_writable=True),
        DocType("transfer", Scope.COMMUNITY, {
            # One immutable entry holding both legs (from_account loses `amount`, to_account gains it), so its
            # legs replicate together; balances are sums over a CouchDB view, never a stored field. Accounts
            # are document ids: resident:…, user:… (volunteers), organisation:…, community:… (mints points).
            "ledger": _enum(LEDGERS, required=True),
            "from_account": Field("id", required=True),
            "to_account": Field("id", required=True),
            "amount": Field("int", required=True),  # minutes on the hours ledger, points on the points ledger
            "kind": _enum(TRANSFER_KINDS, required=True),
            "reason": _text(max_length=500),
            "claim": _ref("claim"),
            "reverses": _ref("transfer"),  # a reversal: the transfer it undoes (the secretary's correction)
            "seq": Field("int"),  # the paying account's ledger_lock sequence it was written under (services/timebank)
            **_WHO_WHEN,
        }, label_zh="时间银行转账", label_en="Ledger transfer"),
        DocType("alert", Scope.GRID, {
            **_PERSONAL_LINKS,
            "kind": _enum(ALERT_KINDS, required=True),
            "status": _enum(ALERT_STATES, required=True),
            "device": _ref("device"),
            "raised_at": Field("datetime", required=True),
            "location": Field("geo", Category.BASIC),
            "detail": _text(Category.HEALTH, max_length=500),
            "acknowledged_by": _ref("user"),
            "acknowledged_at": Field("datetime"),
            # Copied from the resident's privacy choice when raised, so routing needs no lookup.
            "visibility": _enum(PRIVACY_CHOICES["utility_alerts"]),
            "escalated_at": Field("datetime"),  # unacknowledged too long: the secretary was told (alerts.py)
            "gateway": _ref("gateway"),  # gateway_silent: which one (server/services/alerts.py)
            "resolved_at": Field("datetime"),  # gateway_silent, device_silent: heard again; or resolved by a person
            "updated_at": Field("datetime"),
        }, label_zh="告警", label_en="Alert", client_writable=True, sync_first=True),
        DocType("device", Scope.GRID, {
            **_PERSONAL_LINKS,
            "kind": _enum(DEVICE_KINDS, required=True),
            "mac": Field("mac", Category.SYSTEM, required=True),
            "model": _text(Category.SYSTEM, max_length=100),
            "gateway": _ref("gateway"),  # the BLE gateway that reads it
            "installed_at": Field("date", Category.SYSTEM),
            # What the gateway needs, copied at registration (`linli device register`) so that it reads its
            # devices' documents and nothing else: the resident's public write key (it seals readings and alert
            # details it cannot open), whether BTHome encryption is required (plain advertisements are then
            # refused as forged), and the resident's choice for utility alerts (alert visibility).
            "registered_at": Field("datetime"),  # re-registering restarts replay tracking (a device's counter reset)
            "encrypted": Field("bool"),
            # Whose key readings are sealed to, and the installation's statement vouching for it
            # (crypto/key_statements.py): set by `linli device register` and re-keys only.
            "resident": _ref("resident", server_only=True),
            "write_public": _text(Category.SYSTEM, max_length=100, server_only=True),
            "write_key_version": Field("int", Category.SYSTEM, server_only=True),
            "write_signature": _text(Category.SYSTEM, max_length=100, server_only=True),
            "utility_alerts": _enum(PRIVACY_CHOICES["utility_alerts"]),
        }, label_zh="设备", label_en="Device", client_writable=True),
        DocType("safety_rules", Scope.GRID, {
            # A resident's elderly-safety thresholds (§7.4), applied by the gateway that reads their devices.
            **_PERSONAL_LINKS,
            "resident": _ref("resident", required=True),
            "gateway": _ref("gateway"),
            "no_water_hours": Field("int", Category.SOCIAL),
            "no_activity_days": Field("int", Category.SOCIAL),
            "heart_rate_min": Field("int", Category.SOCIAL),
            "heart_rate_max": Field("int", Category.SOCIAL),
            "power_max_watts": Field("int", Category.SOCIAL),
            "quiet_start": _text(Category.SOCIAL, max_length=5),  # "22:00": routine alerts wait until quiet_end
            "quiet_end": _text(Category.SOCIAL, max_length=5),
            "escalate_minutes": Field("int", Category.SOCIAL),
            "updated_by": _ref("user", required=True),
            "updated_at": Field("datetime", required=True),
        }, label_zh="安全提醒设置", label_en="Safety rules", client_writable=True),
        DocType("device_health", Scope.GRID, {
            # Written by the gateway: a silent wristband shows as an old last_seen_at.
            **_PERSONAL_LINKS,
            "device": _ref("device", required=True),
            "gateway": _ref("gateway", required=True),
            "last_seen_at": Field("datetime"),
            "battery": Field("int", Category.SYSTEM),
            "battery_low": Field("bool", Category.SYSTEM),
            "rejected": Field("int", Category.SYSTEM),  # advertisements refused: bad MIC, replay, downgrade
            "updated_at": Field("datetime", required=True),
        }, label_zh="设备状态", label_en="Device health", client_writable=True),
        DocType("gateway_health", Scope.COMMUNITY, {
            # Written by the gateway on every heartbeat: a silent gateway shows as an old heartbeat_at.
            "gateway": _ref("gateway", required=True),
            "heartbeat_at": Field("datetime", required=True),
            "started_at": Field("datetime"),
            "scanning": Field("bool", Category.SYSTEM),
            "scanner_restarts": Field("int", Category.SYSTEM),
            "advertisements": Field("int", Category.SYSTEM),
            "unknown_devices": Field("int", Category.SYSTEM),
            "unknown_macs": Field("list", Category.SYSTEM, max_length=17),
            "rejected_bad_mic": Field("int", Category.SYSTEM),
            "rejected_replay": Field("int", Category.SYSTEM),
            "rejected_downgrade": Field("int", Category.SYSTEM),
            "rejected_malformed": Field("int", Category.SYSTEM),
            "outbox_pending": Field("int", Category.SYSTEM),
            "last_push_at": Field("datetime"),
        }, label_zh="网关状态", label_en="Gateway health", client_writable=True),
        DocType("notification", Scope.GRID, {
            # Someone to tell about an alert (family by SMS, the secretary on escalation): the server's outbox.
            **_PERSONAL_LINKS,
            "alert": _ref("alert", required=True),
            "audience": _enum(("family", "secretary"), required=True),
            "status": _enum(("pending", "sent", "failed"), required=True),
            "created_at": Field("datetime", required=True),
        }, label_zh="通知", label_en="Notification"),
        DocType("gateway", Scope.COMMUNITY, {
            # A BLE gateway's configuration; devices name it in their `gateway` field.
            "name": _text(Category.SYSTEM, required=True, max_length=100),
            "place": _text(Category.BASIC, max_length=200),
            "scan_seconds": Field("int", Category.SYSTEM),
        }, label_zh="蓝牙网关", label_en="BLE gateway", client_writable=True),
        DocType("reading", Scope.GRID, {
            **_PERSONAL_LINKS,
            "device": _ref("device", required=True),
            "measured_at": Field("datetime", required=True),
            "metric": _text(Category.SYSTEM, required=True, max_length=50),
            "value": Field("float", Category.HEALTH, required=True),
            "unit": _text(Category.SYSTEM, max_length=20),
            "packet_id": Field("int", Category.SYSTEM),
        }, label_zh="读数", label_en="Reading", client_writable=True),
        DocType("audit_entry", Scope.COMMUNITY, {
            "actor": _ref("user", required=True),
            "action": _text(Category.RECORD, required=True, max_length=50),
            "target": Field("id", Category.RECORD, required=True),
            "fields": Field("list", Category.RECORD),
            "purpose": _text(Category.RECORD, max_length=500),
            "at": Field("datetime", required=True),
            "device": _text(Category.RECORD, max_length=100),
            # Exposure entries (keys_issued, keys_withdrawn): the keys one phone got or lost, "<resident>/<tier>".
            "keys": Field("list", Category.RECORD),
            "seq": Field("int", Category.RECORD, required=True),
            "prev_hash": _text(Category.RECORD, max_length=128),
            "hash": _text(Category.RECORD, required=True, max_length=128),
            # An entry a fork hid, filed again at the head: the seq, prev_hash and hash it was first written with
            # (server/security/filing.py repair_fork).
            "refiled": Field("map", Category.RECORD),
            "report": Field("id", Category.RECORD),  # the offline access report an open_offline entry files
        }, label_zh="审计记录", label_en="Audit entry"),
        DocType("access_request", Scope.GRID, {
            **_PERSONAL_LINKS,
            "resident": _ref("resident", required=True),
            "requester": _ref("user", required=True),
            "categories": Field("list", required=True, choices=CORE_CATEGORIES),
            "purpose": _text(required=True, max_length=500),
            "hours": Field("int", required=True),
            "status": _enum(ACCESS_REQUEST_STATES, required=True),
            "decided_by": _ref("user"),
            "decided_at": Field("datetime"),
            "expires_at": Field("datetime"),
            "decision_note": _text(max_length=500),
            **_WHO_WHEN,
        }, label_zh="核心数据查看申请", label_en="Core data access request"),
        DocType("privacy", Scope.GRID, {
            **_PERSONAL_LINKS,
            "resident": _ref("resident", required=True),
            **{category: _enum(choices) for category, choices in PRIVACY_CHOICES.items()},
            "updated_by": _ref("user", required=True),
            "updated_at": Field("datetime", required=True),
        }, label_zh="隐私设置", label_en="Privacy choices"),
        DocType("data_key", Scope.GRID, {
            # One resident's data keys, one per protected tier, each wrapped under the community's tier key.
            "resident": _ref("resident", required=True),
            **{tier.value: Field("wrapped_key", required=True) for tier in (Tier.CONTACT, Tier.CORE)},
            # The resident's write key (write-without-read): public half in clear, private half sealed under
            # the core data key (crypto/keyring.py).
            "write_public": _text(Category.SYSTEM, required=True, max_length=100),
            "write_private": _text(Category.SYSTEM, required=True, max_length=400),
            # The installation's statement that write_public is this resident's (crypto/key_statements.py): what
            # a phone checks before it seals to the key.
            "write_signature": _text(Category.SYSTEM, max_length=100),
            # Versions replaced by a rotation (someone who held them lost the right to): they open what they
            # sealed, and seal nothing new (crypto/keyring.py rotated_record). A re-key drops them.
            "older": Field("wrapped_keys"),
            "older_write_private": Field("list", Category.SYSTEM, max_length=400),
        }, label_zh="数据密钥", label_en="Data key"),
        DocType("phone_key", Scope.STREET, {
            # A phone's P-256 public key; its private half is non-extractable in the phone's browser.
            "user": _ref("user", required=True),
            "public": _text(Category.SYSTEM, required=True, max_length=100),
            "label": _text(Category.SYSTEM, max_length=100),
            "created_at": Field("datetime", required=True),
            "enrolled_from": _text(Category.SYSTEM, max_length=100),  # browser and address, as the server saw them
            "revoked": Field("bool", required=True),
            "revoked_at": Field("datetime"),
            "revoked_by": _ref("user"),  # the phone's user signing out, or a secretary (/phones)
        }, database=ACCOUNTS_DB, label_zh="手机密钥", label_en="Phone key"),
        DocType("key_grant", Scope.GRID, {
            # One resident's data key for one tier, wrapped for one phone (crypto.keys.wrap_for_phone):
            # what lets a phone open that resident's fields offline. Only its user's phones receive it.
            "user": _ref("user", required=True),
            "phone_key": _ref("phone_key", required=True),
            "resident": _ref("resident", required=True),
            "household": _ref("household", required=True),
            "tier": _enum(("contact", "core"), required=True),
            "key_version": Field("int", required=True),
            "ephemeral_public": _text(Category.SYSTEM, required=True, max_length=100),
            "wrapped_key": _text(Category.SYSTEM, required=True, max_length=100),
            # The resident's older versions of that data key (version → wrapped, under the same key as
            # wrapped_key): they open what was sealed before a rotation.
            "older_keys": Field("wrapped_versions"),
            "expires_at": Field("datetime"),  # core grants: the approval's expiry
            "access_request": _ref("access_request"),  # core grants: the approval they come from
        }, label_zh="密钥授权", label_en="Key grant"),
        DocType("index_grant", Scope.COMMUNITY, {
            # Retired (issue 13, finding 4): a community's blind-index key wrapped for one phone. None is issued
            # any more; declared so that the deletion of each old one reaches the phone that held it.
            "user": _ref("user", required=True),
            "phone_key": _ref("phone_key", required=True),
            "ephemeral_public": _text(Category.SYSTEM, required=True, max_length=100),
            "wrapped_key": _text(Category.SYSTEM, required=True, max_length=100),
        }, label_zh="检索密钥授权（已停用）", label_en="Search key grant (retired)"),
        DocType("number_index", Scope.GRID, {
            # Blind indexes of one resident's phone and ID card numbers (crypto/blind_index.py), under the
            # community's index key: how the server finds a resident by number (firewall.find_by_number). In the
            # accounts database, so no replica, phone or sync answer ever holds an index or the key.
            "resident": _ref("resident", required=True),
            **{index: _text(Category.SYSTEM, max_length=8) for index in BLIND_INDEXED.values()},
        }, database=ACCOUNTS_DB, label_zh="号码检索索引", label_en="Number index"),
        DocType("access_report", Scope.GRID, {
            # A phone's report of a protected field it opened offline; the server files it in the filing log
            # (server/security/filing.py file_reports) and deletes the report. Phones cannot write the log itself.
            **_PERSONAL_LINKS,
            "resident": _ref("resident", required=True),
            "fields": Field("list", required=True),
            "purpose": _text(required=True, max_length=500),
            "at": Field("datetime", required=True),
            "phone_key": _ref("phone_key", required=True),
            # Which server process files it, since when (server/security/filing.py): one of several processes.
            "filing_claimed_at": Field("datetime", Category.SYSTEM),
            "filing_from_seq": Field("int", Category.SYSTEM),  # the filing log's head when first claimed
            **_WHO_WHEN,
        }, label_zh="离线查看报告", label_en="Offline access report", client_writable=True),
        DocType("keyring", Scope.COMMUNITY, {
            # The community's tier keys, wrapped under the master key; never replicated.
            "master_id": _text(Category.SYSTEM, required=True, max_length=32),
            "index_key": _text(Category.SYSTEM, required=True, max_length=100),  # blind-index key, wrapped
            # The index key is one no phone ever held and the indexes are number_index documents (issue 13,
            # finding 4); a ring without it is from before and server/security/number_index.py migrates it.
            "indexes_server_only": Field("bool", Category.SYSTEM),
            **{tier.value: Field("key_versions", Category.SYSTEM) for tier in (Tier.CONTACT, Tier.CORE)},
        }, database=ACCOUNTS_DB, label_zh="密钥环", label_en="Key ring"),
        DocType("matter_key", Scope.COMMUNITY, {
            # A secret vote's private key, wrapped under the master key like the installation key: the server
            # opens the sealed choices with it at close, and nobody else holds it (never replicated).
            "matter": _ref("matter", required=True),
            "master_id": _text(Category.SYSTEM, required=True, max_length=32),
            "wrapped": _text(Category.SYSTEM, required=True, max_length=100),
            "public": _text(Category.SYSTEM, required=True, max_length=100),
            "created_at": Field("datetime", required=True),
        }, database=ACCOUNTS_DB, label_zh="表决密钥", label_en="Vote key"),
        DocType("voting_card", Scope.GRID, {
            # A voter's voting card for the door (voting_card:<matter key>:<voter>, server/domain/ballots.py): the
            # hash of its one-time code and the voter's roll entry. Printed by the secretary; never replicated.
            "matter": _ref("matter", required=True),
            "voter": Field("id", required=True),
            "household": _ref("household", required=True),
            "hash": _text(Category.SYSTEM, required=True, max_length=64),
            **_WHO_WHEN,
        }, database=ACCOUNTS_DB, label_zh="投票卡", label_en="Voting card"),
        DocType("installation_key", Scope.INSTALLATION, {
            # The ECDSA P-256 key the installation vouches for residents' write keys with
            # (crypto/key_statements.py): its private scalar wrapped under the master key, so that a master-key
            # rotation re-wraps it and its public half, pinned by gateways and phones, stays the same.
            "master_id": _text(Category.SYSTEM, required=True, max_length=32),
            "wrapped": _text(Category.SYSTEM, required=True, max_length=100),
            "public": _text(Category.SYSTEM, required=True, max_length=100),
            "created_at": Field("datetime", required=True),
            # Every write key made before statements existed has been vouched for (Firewall.vouch_for_existing_keys).
            "statements_complete": Field("bool", Category.SYSTEM),
        }, database=ACCOUNTS_DB, label_zh="安装签名密钥", label_en="Installation signing key"),
        DocType("master_key_check", Scope.INSTALLATION, {
            # Which master key the installation's key rings are wrapped under (server/security/master_key.py):
            # a MAC under a key derived from it, never the key; checked by every process before it writes.
            "check": _text(Category.SYSTEM, required=True, max_length=100),
            "master_id": _text(Category.SYSTEM, required=True, max_length=32),
            "algorithm": _text(Category.SYSTEM, required=True, max_length=200),
            "generation": Field("int", Category.SYSTEM, required=True),
            "created_at": Field("datetime", required=True),
            "previous_check": _text(Category.SYSTEM, max_length=100),
            "rotating": Field("bool", Category.SYSTEM, required=True),
            "rotated_at": Field("datetime"),
        }, database=ACCOUNTS_DB, label_zh="主密钥校验值", label_en="Master key check"),
        DocType("ledger_lock", Scope.INSTALLATION, {
            # One per account that pays out (server/services/timebank.py _record): every transfer out of it first
            # updates this document, whose revision serialises them, so the hours floor holds under concurrency;
            # `last` is the transfer its holder is writing (the next holder writes it if that one stopped).
            # A resident's also says which of their confirmation codes are spent (domain/timebank.py); the codes'
            # secret is never here: it is derived from the installation's `code_key`, wrapped under the master key.
            # Version 2 dropped the secret kept in the clear (server/domain/migrations.py).
            "account": Field("id", required=True),
            "seq": Field("int", required=True),
            "last": Field("map", Category.SYSTEM),
            "codes_from": Field("int"),
            "codes_used": Field("list", max_length=12),
            # Wrong codes typed for this resident in the last day (domain/timebank.py CODE_MISSES_PER_DAY): each
            # claim's wrong code once, as a hash, never the code; the oldest dropped past the limit.
            "code_misses": Field("records", shape=(("claim", "id"), ("by", "id"), ("code", "text"),
                                                   ("at", "datetime")), max_items=10),
        }, database=ACCOUNTS_DB, label_zh="账户序号", label_en="Ledger lock", version=2),
        DocType("code_key", Scope.INSTALLATION, {
            # The key residents' in-person confirmation codes are derived from (server/domain/timebank.py
            # code_secret), wrapped under the master key like the installation key: a master-key rotation re-wraps
            # it and every code stays the same. Only the server and its sync gateway open it; never replicated.
            "master_id": _text(Category.SYSTEM, required=True, max_length=32),
            "wrapped": _text(Category.SYSTEM, required=True, max_length=100),
            "created_at": Field("datetime", required=True),
        }, database=ACCOUNTS_DB, label_zh="确认码密钥", label_en="Confirmation code key"),
        DocType("audit_checkpoint", Scope.COMMUNITY, {
            "seq": Field("int", Category.RECORD, required=True),
            "hash": _text(Category.RECORD, required=True, max_length=128),
            "at": Field("datetime", required=True),
            "signature": _text(Category.RECORD, required=True, max_length=200),
        }, label_zh="审计检查点", label_en="Audit checkpoint"),
        # ---- points and rewards (issue 16 item 4; server/domain/points.py says what they allow)
        DocType("reward", Scope.COMMUNITY, {
            # What an organisation offers for points: a service or goods, its price and how many (the slots of
            # its vouchers: points.voucher_id).
            "organisation": _ref("organisation", required=True),
            "name": _text(Category.SYSTEM, required=True, max_length=100),
            "kind": _enum(REWARD_KINDS, Category.SYSTEM, required=True),
            "points": Field("int", Category.SYSTEM, required=True),
            "stock": Field("int", Category.SYSTEM, required=True),
            "active": Field("bool", Category.SYSTEM, required=True),
            **_WHO_WHEN,
        }, label_zh="积分兑换项目", label_en="Reward"),
        DocType("voucher", Scope.COMMUNITY, {
            # One unit of a reward bought with points: `code` is the installation's signature over what it is
            # (crypto/vouchers.py), which the partner's phone checks offline. Never edited.
            "reward": _ref("reward", required=True),
            "organisation": _ref("organisation", required=True),
            "holder": Field("id", required=True),  # the account that paid: resident:… or user:…
            "points": Field("int", required=True),
            "transfer": _ref("transfer", required=True),
            "code": _text(required=True, max_length=600),
            # The code as a QR code, drawn once by the server (server/services/qr_drawing.py), so that the holder's
            # phone shows it offline (rewards.html: an unused voucher's, for the partner's camera): its side in modules
            # and an SVG path of its dark modules. A voucher from before them gets them from `linli migrate`.
            "qr_size": Field("int"),
            "qr_path": _text(max_length=60000),
            **_WHO_WHEN,
        }, label_zh="兑换券", label_en="Voucher"),
        DocType("redemption", Scope.COMMUNITY, {
            # A voucher used at the partner: its id is made from the voucher's, so a second use is a conflict.
            "voucher": _ref("voucher", required=True),
            "reward": _ref("reward", required=True),
            "organisation": _ref("organisation", required=True),
            # The voucher's holder, so that the use reaches their phone (their /rewards says it was used, offline
            # too). None where a partner's phone honoured a voucher its replica did not hold yet.
            "holder": Field("id"),
            # Not a use: the voucher voided, why (its debit reversed by the secretary: server/services/rewards.py
            # void). Written by the server only; a partner's phone that honoured it offline meets it as a conflict.
            "voided": _text(max_length=500),
            **_WHO_WHEN,
        }, label_zh="兑换记录", label_en="Redemption", client_writable=True, version=2),
        # ---- the resource pool (issue 17: venues, equipment, skills and services booked; server/domain/pool.py)
        DocType("resource", Scope.COMMUNITY, {
            "name": _text(Category.SYSTEM, required=True, max_length=100),
            "kind": _enum(RESOURCE_KINDS, Category.SYSTEM, required=True),
            "owner_kind": _enum(RESOURCE_OWNER_KINDS, Category.SYSTEM, required=True),
            "owner": Field("id", Category.SYSTEM),  # community:…, organisation:… or resident:… it belongs to
            "place": _text(Category.SYSTEM, required=True, max_length=200),
            "capacity": Field("int", Category.SYSTEM, required=True),  # people at once (1 for a skill, a tool)
            # Open hours, a week: whole hours in China time, so that every hour is one slot with its own id.
            "open_hours": Field("records", Category.SYSTEM, required=True, max_items=50, shape=(
                ("weekday", "int"), ("opens", "int"), ("closes", "int"))),  # weekday 0 = Monday; closes <= 24
            # Hours it cannot be used (a repair, an exam): several on one day each count.
            "blackouts": Field("records", Category.SYSTEM, max_items=2000, shape=(
                ("date", "date"), ("from_hour", "int"), ("to_hour", "int"), ("reason?", "text"))),
            "who_may_book": Field("list", Category.SYSTEM, required=True, choices=BOOKER_KINDS),
            "book_ahead_days": Field("int", Category.SYSTEM, required=True),
            "max_hours": Field("int", Category.SYSTEM, required=True),  # the longest one booking may be
            "approval": Field("bool", Category.SYSTEM, required=True),  # the keeper approves each booking
            "grace_minutes": Field("int", Category.SYSTEM, required=True),  # no check-in by then: a no-show
            "keepers": Field("list", Category.SYSTEM, ref="user"),  # who approves and checks people in
            # The venue's check-in code changes daily (server/domain/pool.py day_code): each day's code as its SHA-256,
            # two weeks back to a week ahead. A phone checks a scanned code against its day's offline and the sync
            # gateway refuses a forged or another day's; the codes' secret is derived on the server from the wrapped
            # code key (pool.venue_secret), never stored.
            "code_hashes": Field("records", Category.SYSTEM, server_only=True, max_items=60, shape=(
                ("date", "date"), ("hash", "text"))),
            **_WHO_WHEN,
        }, label_zh="资源", label_en="Resource"),
        DocType("booking", Scope.COMMUNITY, {
            # One hour slot of one resource: its id is booking:<resource key>:<YYYYMMDDHH> (China time), so two
            # phones booking the same slot offline meet as one document in conflict, never as two bookings.
            "resource": _ref("resource", required=True),
            "slot_start": Field("datetime", required=True),
            # The booking's first slot (itself, for the first): a booking of three hours is three slots of one group.
            # A plain id, not a reference, since the first slot names itself (server/domain/pool.py checks it).
            "group": Field("id", required=True),
            "hours": Field("int", required=True),  # the length of the whole booking
            "people": Field("int", required=True),
            "purpose": _text(Category.SOCIAL, max_length=200),
            "status": _enum(BOOKING_STATES, required=True),
            "booked_by": _ref("user", required=True),
            "resident": _ref("resident"),  # who booked, when a resident did (online, or from their phone offline)
            "waitlist": Field("list", Category.SYSTEM, ref="user", max_items=20),  # next in line if it is cancelled
            "decided_by": _ref("user"),  # the keeper who approved or declined it, the sweep's no-show
            "decided_at": Field("datetime"),
            "created_at": Field("datetime", required=True),
        }, label_zh="预约", label_en="Booking", client_writable=True),
        DocType("checkin", Scope.COMMUNITY, {
            # Someone came: the booker scanned the venue's code (offline too) or the keeper saw them. Its id is
            # checkin:<the booking's first slot key>: one check-in per booking.
            "resource": _ref("resource", required=True),
            "booking": _ref("booking", required=True),
            "method": _enum(CHECKIN_METHODS, required=True),
            "code": _text(Category.SYSTEM, max_length=64),
            **_WHO_WHEN,
        }, label_zh="签到", label_en="Check-in", client_writable=True),
        # The utilisation board's kept figures (server/services/pool_months.py): a resource's month of booked hours by
        # what became of them, counted again from its slots and check-ins whenever one changes, never edited; the
        # server's alone (no read rule: no page or phone gets them as such).
        DocType("pool_month", Scope.COMMUNITY, {
            "resource": _ref("resource", required=True),
            "month": _text(Category.SYSTEM, required=True, max_length=7),
            "uses": Field("map", Category.SYSTEM, required=True),  # hour (YYYYMMDDHH) -> used, no_show or booked
        }, label_zh="资源月度使用", label_en="Resource's month of use"),
        DocType("venue_code", Scope.COMMUNITY, {
            # Left from before version 2, which held the venue's codes' secret in the clear: the secret is now derived
            # from the wrapped code key (pool.venue_secret) and never stored, so nothing writes this type any more.
            # Declared so that `linli migrate` strips the secret (1 → 2) and deletes the husks left (2 → 3,
            # migrations.py).
            "resource": _ref("resource", required=True),
            "created_at": Field("datetime", required=True),
        }, database=ACCOUNTS_DB, label_zh="签到码", label_en="Check-in code", version=3),
        # ---- matching needs to offers of help (issue 17, item 4; server/services/matching.py)
        DocType("offer", Scope.COMMUNITY, {
            # Help someone offers: a volunteer or resident in their grid (`grid`), an organisation to the whole
            # community (no `grid`). `keeper` answers proposals for it: the volunteer, or the staff member who
            # recorded an organisation's offer (organisations have no accounts).
            "provider": Field("id", required=True),  # user:… or organisation:…
            "provider_name": _text(Category.BASIC, required=True, max_length=100),
            "keeper": _ref("user", required=True),
            "title": _text(Category.SOCIAL, required=True, max_length=200),
            "help_kind": _enum(HELP_KINDS, required=True),
            "languages": Field("list", Category.SOCIAL, required=True, choices=SPOKEN_LANGUAGES),
            "capacity": Field("int", required=True),  # needs taken on at once (proposed or accepted)
            "hours": Field("records", Category.SOCIAL, required=True, shape=WEEKLY_HOURS_SHAPE, max_items=28),
            "grid": _ref("grid"),
            "building": _text(Category.BASIC, max_length=20),  # nearness by building, never an address
            "skills": Field("list", Category.SOCIAL, max_length=50, max_items=20),
            "status": _enum(OFFER_STATES, required=True),
            **_WHO_WHEN,
        }, label_zh="服务供给", label_en="Offer of help"),
        DocType("match", Scope.GRID, {
            # A need and an offer proposed to each other (in the need's place), with why: what the volunteer sees
            # of the need before both accept (kind of help, building, language, the time in common), no name or
            # address. Its id is match:<need key>:<offer key>: one proposal per pair, however often the matcher runs.
            "need": _ref("need", required=True),
            "offer": _ref("offer", required=True),
            "resident": _ref("resident"),  # whose need: they answer it on their own page
            "keeper": _ref("user", required=True),  # who answers for the offer
            "provider_name": _text(Category.BASIC, required=True, max_length=100),
            "help_kind": _enum(HELP_KINDS, required=True),
            "building": _text(Category.BASIC, max_length=20),
            "language": _enum(SPOKEN_LANGUAGES, required=True),
            "hours": Field("records", Category.SOCIAL, shape=WEEKLY_HOURS_SHAPE, max_items=28),  # in common
            "score": Field("float", required=True),
            # Each factor of the score: its points and, as an i18n key with parameters, its plain words.
            "factors": Field("records", required=True, shape=(
                ("factor", "text"), ("points", "float"), ("words", "text"), ("params", "map"))),
            "need_answer": _enum(MATCH_ANSWERS, required=True),
            "provider_answer": _enum(MATCH_ANSWERS, required=True),
            "status": _enum(MATCH_STATES, required=True),
            "need_answered_by": _ref("user"),
            "provider_answered_by": _ref("user"),
            "task": _ref("task"),  # the volunteer's task made when both accepted
            **_WHO_WHEN,
        }, label_zh="供需匹配", label_en="Match"),
        # Figures (issue 18 item 7): a community's month frozen, hashed, filed in its filing log and signed; public.
        # A month whose figures changed afterwards gets a new version that names the one it corrects.
        DocType("figures_snapshot", Scope.COMMUNITY, {
            "month": _text(Category.SYSTEM, required=True, max_length=7),
            "version": Field("int", Category.SYSTEM, required=True),
            "counts": Field("map", Category.SYSTEM, required=True),  # server/domain/figures.py COUNTS
            # Supervision's figures (server/services/evaluation_figures.py): KPI key -> [numerator, denominator].
            "supervision": Field("map", Category.SYSTEM),
            "corrects": _ref("figures_snapshot"),  # the version this one replaces
            "adds_supervision": Field("bool", Category.SYSTEM),  # … or adds the supervision figures to, unchanged
            "published_at": Field("datetime", required=True),
            "hash": _text(Category.SYSTEM, required=True, max_length=64),
            # Both absent while the process that claimed the version files it (server/services/snapshots.py freeze):
            # one process publishes a month however many freeze it at once.
            "signature": _text(Category.SYSTEM, max_length=200),
            "filed_seq": Field("int", Category.SYSTEM),
            "filing_claimed_at": Field("datetime", Category.SYSTEM),
            "duplicates": PUBLISHED_AGAIN,
        }, label_zh="月度统计快照", label_en="Monthly figures snapshot"),
        # The dashboard's aggregates (server/services/figures_cells.py): counted again from the requests and alerts
        # whenever one changes, never edited; the server's alone (no read rule: no page or phone gets them as such).
        DocType("figures_cell", Scope.GRID, {
            "month": _text(Category.SYSTEM, required=True, max_length=7),
            "rows": Field("map", Category.SYSTEM, required=True),  # facet -> figures.COUNTS then the time buckets
            "closures": Field("list", Category.SYSTEM),  # closed in the month: [closed, confirmed fixed]
            "closed_in": Field("map", Category.SYSTEM),  # month -> [closed, confirmed] of the month's own requests
        }, label_zh="月度统计格", label_en="Figures of a grid's month"),
        DocType("figures_backlog", Scope.GRID, {
            "open": Field("map", Category.SYSTEM, required=True),  # department ("" not dispatched) -> requests open
        }, label_zh="未结请求统计", label_en="Open requests of a grid"),
        # ---- supervision and evaluation (issue 18 items 3-6)
        DocType("mediation", Scope.GRID, {
            # A dispute between neighbours the grid worker or secretary mediates. Who the parties are and what it
            # is about are protected like contact data, sealed under the keys of the resident who brought it.
            "resident": _ref("resident", required=True),
            "household": _ref("household", required=True),  # the resident's: a re-key finds it there
            "kind": _enum(MEDIATION_KINDS, required=True),
            "parties": _text(Category.CONTACT, required=True, max_length=500),
            "dispute": _text(Category.CONTACT, required=True, max_length=2000),
            "mediator": _ref("user", required=True),
            "sessions": Field("records", shape=(("at", "datetime"), ("by", "id"))),
            # What was said and agreed at each session (调解笔录), one dated entry per session that has a note: sealed
            # as the parties are, appended by the server (server/security/firewall.py `with_minutes`).
            "minutes": _text(Category.CONTACT, max_length=MAX_MINUTES),
            "status": _enum(MEDIATION_STATES, required=True),
            "concluded_at": Field("datetime"),
            "followed_up_at": Field("datetime"),
            **_WHO_WHEN,
        }, label_zh="矛盾调解", label_en="Mediation"),
        DocType("service_project", Scope.COMMUNITY, {
            # A service the community buys (a home-care contract, a canteen for the elderly), evaluated half-yearly.
            "name": _text(Category.SYSTEM, required=True, max_length=100),
            "kind": _enum(PROJECT_KINDS, Category.SYSTEM, required=True),
            "provider": _text(Category.SYSTEM, required=True, max_length=100),
            "targets": _text(Category.SYSTEM, required=True, max_length=1000),
            "budget": Field("int", Category.SYSTEM, required=True),  # yuan a year
            "starts_on": Field("date", required=True),
            "status": _enum(PROJECT_STATES, required=True),
            "withdrawal_matter": _ref("matter"),  # the vote on withdrawing it, opened after two failures in a row
            # That vote's published result: passed → withdrawn, failed → active again (server/services/projects.py).
            "withdrawal_result": _ref("matter_result"),
            **_WHO_WHEN,
        }, label_zh="服务项目", label_en="Service project"),
        DocType("project_evaluation", Scope.COMMUNITY, {
            # One half-year's evaluation (id project_evaluation:<project key>:<period>, so one per period), by a
            # third party; the report is its attachment (a PDF, checked by its bytes).
            "project": _ref("service_project", required=True),
            "period": _text(Category.SYSTEM, required=True, max_length=7),  # 2026-H1
            "scores": Field("records", required=True, max_items=20, shape=(("criterion", "text"), ("score", "int"))),
            "score": Field("int", required=True),  # the mean of the scores, 0-100
            "passed": Field("bool", required=True),
            "evaluator": _text(Category.SYSTEM, required=True, max_length=100),
            **_WHO_WHEN,
        }, label_zh="项目评估", label_en="Project evaluation"),
        DocType("fix_check", Scope.GRID, {
            # "Is it really fixed?" asked at a visit or the human window with the phone offline: the grid worker's
            # record of the reporter's answer, which the server applies to the request when it arrives
            # (service_requests.apply_fix_checks: the same rules as online) and marks applied or refused.
            "request": _ref("service_request", required=True),
            "fixed": Field("bool", required=True),
            "reason": _text(Category.SOCIAL, max_length=500),
            "via": _enum(CONFIRM_CHANNELS[1:], required=True),
            "consent": Field("bool", required=True),
            "outcome": _enum(("applied", "refused"), server_only=True),
            "refusal": _text(max_length=100, server_only=True),  # the i18n key saying why
            "applied_at": Field("datetime", server_only=True),
            **_WHO_WHEN,
        }, label_zh="是否解决的回访记录", label_en="Fixed-or-not answer", client_writable=True),
        DocType("survey_sample", Scope.COMMUNITY, {
            # The month's stratified sample of households, per grid (server/domain/sampling.py), drawn once.
            "month": _text(required=True, max_length=7),
            "households": Field("records", required=True, max_items=5000, shape=(("household", "id"), ("grid", "id"))),
            # Households per grid when it was drawn (the strata's sizes, which weigh each grid's answers).
            "frame": Field("map", required=True),
            "seed": _text(required=True, max_length=64),
            **_WHO_WHEN,
            # Version 2: the sampled households answered so far this month (whoever answered, never what), kept by
            # the server (survey.mark_answered): the collectors' phones see which doors are done, offline too.
            "answered": Field("list", Category.SYSTEM, max_items=5000, ref="household", server_only=True),
        }, label_zh="调查样本", label_en="Survey sample", version=2),
    ]
}

CLIENT_WRITABLE = frozenset(t.name for t in DOC_TYPES.values() if t.client_writable)
SYNC_FIRST_TYPES = frozenset(t.name for t in DOC_TYPES.values() if t.sync_first)
SYNC_LIST_TYPES = frozenset(t.name for t in DOC_TYPES.values() if t.sync_list)
# The sync gateway's `_changes?filter=` for each (a design-document filter's name, as CouchDB spells one).
SYNC_FIRST_FILTER = "linli/urgent"
SYNC_LIST_FILTER = "linli/list"


def database_of(doc_id: str) -> str | None:
    """The database a document id's type lives in (ids are `<type>:<key>`); None for no declared type."""
    doc_type = DOC_TYPES.get(doc_id.split(":", 1)[0])
    return doc_type.database if doc_type else None

KINDS = frozenset({"text", "int", "float", "bool", "date", "datetime", "enum", "list", "id", "phone",
                   "id_card", "mac", "geo", "wrapped_key", "wrapped_keys", "wrapped_versions",
                   "key_versions", "records", "map"})


# ---------------------------------------------------------------- validation

class ValidationError(UserError):
    """A document breaks the declaration; `errors` names every bad field (errors.FieldError)."""

    def __init__(self, doc_id: str, errors: list[FieldError]) -> None:
        self.doc_id = doc_id
        super().__init__(errors)
        self.args = (f"{doc_id or '<no _id>'}: " + "; ".join(str(e) for e in errors),)


Problem = tuple[str, dict[str, Any]]  # a FieldError's key and params, before the field is known

PHONE_PATTERN = re.compile(r"^1\d{10}$")
ID_CARD_PATTERN = re.compile(r"^\d{17}[\dX]$")
MAC_PATTERN = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")
_ID_CARD_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CARD_CHECK = "10X98765432"
# Envelope produced by crypto/ for protected fields; validated there, recognised here.
ENCRYPTED_PREFIX = "enc:"


def id_card_check_char(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits of an ID card number."""
    return _ID_CARD_CHECK[sum(int(c) * w for c, w in zip(first17, _ID_CARD_WEIGHTS, strict=True)) % 11]


def _is_version(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 0xFFFFFFFF


def _is_map_value(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= 500
    if isinstance(value, list):
        return len(value) <= 50 and all(isinstance(v, str) and len(v) <= 200 for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_records(spec: Field, value: Any) -> Problem | None:
    if not isinstance(value, list) or len(value) > (spec.max_items or 500):
        return ("err_records", {"max": spec.max_items or 500})
    shape = {key.rstrip("?"): (kind, not key.endswith("?")) for key, kind in spec.shape}
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            return ("err_record_item", {"i": i, "name": "(object)"})
        unknown = set(item) - set(shape)
        if unknown:
            return ("err_record_item", {"i": i, "name": sorted(unknown)[0]})
        for key, (kind, required) in shape.items():
            if item.get(key) is None:
                if required:
                    return ("err_record_item", {"i": i, "name": key})
                continue
            if _check_value(Field(kind, max_length=500), item[key]):
                return ("err_record_item", {"i": i, "name": key})
    return None


def _is_wrapped_key(value: Any) -> bool:
    return (isinstance(value, dict) and set(value) == {"version", "tier_version", "wrapped"}
            and _is_version(value["version"]) and _is_version(value["tier_version"])
            and isinstance(value["wrapped"], str))


_PROTECTED = frozenset(t.value for t in PROTECTED_TIERS)
MAX_KEY_VERSIONS = 100  # older data-key versions a resident's record may keep; before that, a rotation re-keys


def _not_a_choice(spec: Field, value: str) -> Problem:
    return ("err_not_choice", {"value": value, "choices": ", ".join(spec.choices)})


def _check_value(spec: Field, value: Any) -> Problem | None:
    """(message key, params) if value does not fit spec, else None."""
    kind = spec.kind
    got = {"got": type(value).__name__}
    if kind in ("text", "id", "phone", "id_card", "mac", "enum", "date", "datetime") and not isinstance(value, str):
        return ("err_not_string", got)
    if kind == "text":
        return ("err_too_long", {"max": spec.max_length}) if len(value) > spec.max_length else None
    if kind == "int":
        return None if isinstance(value, int) and not isinstance(value, bool) else ("err_not_integer", got)
    if kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else ("err_not_number", got)
    if kind == "bool":
        return None if isinstance(value, bool) else ("err_not_bool", got)
    if kind == "enum":
        return None if value in spec.choices else _not_a_choice(spec, value)
    if kind == "id":
        if spec.ref and not value.startswith(spec.ref + ":"):
            return ("err_not_ref", {"ref": spec.ref, "value": value})
        return None if ":" in value else ("err_not_doc_id", {"value": value})
    if kind == "phone":
        return None if PHONE_PATTERN.match(value) else ("err_phone", {})
    if kind == "id_card":
        if not ID_CARD_PATTERN.match(value):
            return ("err_id_card_shape", {})
        return None if id_card_check_char(value[:17]) == value[17] else ("err_id_card_check", {})
    if kind == "mac":
        return None if MAC_PATTERN.match(value) else ("err_mac", {})
    if kind in ("date", "datetime"):
        try:
            (dt.date if kind == "date" else dt.datetime).fromisoformat(value)
        except ValueError:
            return (f"err_not_iso_{kind}", {"value": value})
        return None
    if kind == "geo":
        if not (isinstance(value, dict) and set(value) == {"lat", "lon"}):
            return ("err_geo", {})
        lat, lon = value["lat"], value["lon"]
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (lat, lon)):
            return ("err_geo_numbers", {})
        return None if -90 <= lat <= 90 and -180 <= lon <= 180 else ("err_geo_range", {})
    if kind == "records":
        return _check_records(spec, value)
    if kind == "map":
        ok = (isinstance(value, dict) and len(value) <= 50 and all(
            isinstance(k, str) and len(k) <= 50 and _is_map_value(v) for k, v in value.items()))
        return None if ok else ("err_map", {})
    if kind == "wrapped_key":
        return None if _is_wrapped_key(value) else ("err_key_shape", {"shape": "{version, tier_version, wrapped}"})
    if kind == "wrapped_keys":
        ok = isinstance(value, dict) and all(
            k in _PROTECTED and isinstance(v, list) and len(v) <= MAX_KEY_VERSIONS and all(map(_is_wrapped_key, v))
            for k, v in value.items())
        return None if ok else ("err_key_shape", {"shape": "{tier: [{version, tier_version, wrapped}, …]}"})
    if kind == "wrapped_versions":
        ok = isinstance(value, dict) and len(value) <= MAX_KEY_VERSIONS and all(
            k.isdigit() and isinstance(v, str) and len(v) <= 100 for k, v in value.items())
        return None if ok else ("err_key_shape", {"shape": "{version: wrapped}"})
    if kind == "key_versions":
        ok = (isinstance(value, dict) and set(value) == {"current", "keys"} and _is_version(value["current"])
              and isinstance(value["keys"], dict) and str(value["current"]) in value["keys"]
              and all(k.isdigit() and isinstance(v, str) for k, v in value["keys"].items()))
        return None if ok else ("err_key_shape", {"shape": "{current, keys: {version: wrapped}}, current present"})
    if kind == "list":
        if not isinstance(value, list):
            return ("err_not_list", got)
        if len(value) > (spec.max_items or 200):
            return ("err_too_many", {"max": spec.max_items or 200})
        for item in value:
            if not isinstance(item, str) or len(item) > spec.max_length:
                return ("err_list_items", {})
            if spec.choices and item not in spec.choices:
                return _not_a_choice(spec, item)
            if spec.ref and not item.startswith(spec.ref + ":"):
                return ("err_items_ref", {"ref": spec.ref, "value": item})
        return None
    raise AssertionError(f"undeclared kind {kind}")  # pragma: no cover - guarded by _self_check


def validate(doc: Any) -> DocType:
    """Check doc against the declaration; return its DocType or raise ValidationError.

    Protected fields may hold their plain value (before encryption) or an
    encrypted envelope string (after); crypto/ checks envelopes themselves.
    """
    if not isinstance(doc, dict):
        raise ValidationError("", [FieldError("(document)", "err_not_object")])
    doc_id = doc.get("_id", "")
    type_name = doc.get("type")
    if type_name not in DOC_TYPES:
        raise ValidationError(str(doc_id), [FieldError("type", "err_unknown_type", {
            "type": str(type_name), "known": ", ".join(sorted(DOC_TYPES))})])
    doc_type = DOC_TYPES[type_name]
    errors: list[FieldError] = []
    if not isinstance(doc_id, str) or not doc_id.startswith(type_name + ":") or len(doc_id) <= len(type_name) + 1:
        errors.append(FieldError("_id", "err_id_shape", {"type": type_name}))
    for name in doc_type.routing:
        value = doc.get(name)
        if not (isinstance(value, str) and value.startswith(name + ":")):
            errors.append(FieldError(name, "err_routing", {"scope": doc_type.scope.value, "name": name}))
    allowed = set(doc_type.fields) | set(doc_type.routing) | {"type"}
    for name, value in doc.items():
        if name.startswith("_"):
            continue
        if name == VERSION_FIELD:
            if not (_is_version(value) and value <= doc_type.version):
                errors.append(FieldError(name, "err_version_newer", {"known": doc_type.version}))
            continue
        if name not in allowed:
            errors.append(FieldError(name, "err_undeclared", {"type": type_name}))
            continue
        spec = doc_type.fields.get(name)
        if spec is None or value is None:
            continue
        if spec.effective_tier in PROTECTED_TIERS and isinstance(value, str) and value.startswith(ENCRYPTED_PREFIX):
            continue
        problem = _check_value(spec, value)
        if problem:
            errors.append(FieldError(name, *problem))
    for name, spec in doc_type.fields.items():
        if spec.required and doc.get(name) is None:
            errors.append(FieldError(name, "err_required"))
    if errors:
        raise ValidationError(str(doc_id), errors)
    return doc_type


# ---------------------------------------------------------------- export

def export_json() -> dict[str, Any]:
    """The declaration as plain JSON for the browser (served at /schema.json)."""
    return {
        "version": 1,
        "tiers": [t.value for t in Tier],
        "protected_tiers": sorted(t.value for t in PROTECTED_TIERS),
        "categories": {c.value: CATEGORY_TIER[c].value for c in Category},
        "roles": [r.value for r in Role],
        "scopes": {s.value: list(f) for s, f in SCOPE_FIELDS.items()},
        "version_field": VERSION_FIELD,
        "sync_first": {"filter": SYNC_FIRST_FILTER, "types": sorted(SYNC_FIRST_TYPES)},
        "sync_list": {"filter": SYNC_LIST_FILTER, "types": sorted(SYNC_LIST_TYPES)},
        "types": {
            t.name: {
                "version": t.version,
                "scope": t.scope.value,
                "database": t.database,
                "label": {"zh": t.label_zh, "en": t.label_en},
                "fields": {
                    name: {
                        "kind": f.kind,
                        "category": f.category.value,
                        "tier": f.effective_tier.value,
                        "required": f.required,
                        **({"choices": list(f.choices)} if f.choices else {}),
                        **({"max_length": f.max_length} if f.kind == "text" else {}),
                        **({"ref": f.ref} if f.ref else {}),
                        **({"shape": dict(f.shape)} if f.shape else {}),
                        **({"server_only": True} if f.server_only else {}),
                        **({"max_items": f.max_items} if f.max_items else {}),
                    }
                    for name, f in t.fields.items()
                },
            }
            for t in DOC_TYPES.values()
        },
    }


def _self_check() -> None:
    for t in DOC_TYPES.values():
        for name, f in t.fields.items():
            assert f.kind in KINDS, f"{t.name}.{name}: unknown kind {f.kind}"
            assert f.ref is None or f.ref in DOC_TYPES, f"{t.name}.{name}: unknown ref {f.ref}"
            assert name not in t.routing, f"{t.name}.{name} shadows a routing field"
        assert not t.client_writable or t.database == MAIN_DB, f"{t.name}: clients write the main database only"
        assert not (t.sync_first or t.sync_list) or t.database == MAIN_DB, f"{t.name}: only the main database is synced"


_self_check()
