"""Service requests (plan §3.3): report → dispatch → progress → close → rate, with SLA clocks.

Rules this module keeps:
- First contact owns the matter (§5.2): `owner` is whoever received it (the grid worker for a request
  that came from a resident or an Open311 client), and stays so when it is passed on to departments.
- Dispatch is automatic: the category names the department; the place (grid given, map position, or a
  street address) names the grid.
- Every transition is recorded in `history` with who and when; comments go there too, visible to the reporter.
- SLA deadlines come from the working-day calendar: respond within the category's days (1 by default),
  close within its days (3); a "whistle" gives each department its own 3-working-day clock (§3.2).
- Nothing is half-created: a request is validated whole before its single write.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import logging
import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from server.domain.access import Principal, departments_of
from server.domain.declaration import SATISFACTION, Role, ValidationError, validate
from server.domain.errors import FieldError, UserError
from server.domain.field_rules import PHOTO_LIMITS, photo_refusal, sniffed_type
from server.domain.request_states import (
    DEADLINES,
    DEPARTMENT_OPEN_STATES,
    ESCALATES_FROM,
    TRANSITIONS,
    WARN_BEFORE,
)
from server.domain.workdays import WorkCalendar
from server.store import sweeps
from server.store.couch import Couch, docs_of_type, get_or_none, ids_of_type, iter_view_docs

log = logging.getLogger(__name__)

Doc = dict[str, Any]

WHISTLE_DAYS = 3  # departments must show up within 3 working days (§3.2)
MAX_DISPATCH_KM = 3.0
MAX_DESCRIPTION = 2000
DATATYPES = ("string", "number", "datetime", "text", "singlevaluelist", "multivaluelist")
_ADDRESS = re.compile(r"(?P<road>[^\d\s]+?)(?P<number>\d+)号")


class RequestError(UserError):
    """Bad input for a request: the field, a message key (i18n) and its params. Open311 reports str() (English)."""

    def __init__(self, field: str, key: str, status: int = 400, **params: str | int) -> None:
        self.field = field
        super().__init__([FieldError(field, key, params)], status)


def request_id() -> str:
    return f"service_request:{uuid.uuid4().hex}"


def catalogue(couch: Couch, street: str, *, active_only: bool = True) -> dict[str, Doc]:
    """The street's service categories by code."""
    return {d["code"]: d for d in docs_of_type(couch.main, "service_category")
            if d["street"] == street and (d["active"] or not active_only)}


def calendar(couch: Couch, street: str) -> WorkCalendar:
    return WorkCalendar.from_doc(get_or_none(couch.main, f"work_calendar:{street.split(':', 1)[1]}"))


# ---------------------------------------------------------------- validating what people send

def check_attributes(category: Doc, answers: dict[str, Any]) -> dict[str, Any]:
    """The answers to a category's questions, checked against its definition (Open311 attributes)."""
    definitions = {a["code"]: a for a in category.get("attributes", [])}
    unknown = set(answers) - set(definitions)
    if unknown:
        raise RequestError(f"attribute[{sorted(unknown)[0]}]", "err_not_a_question", service=category["code"])
    checked: dict[str, Any] = {}
    for code, definition in definitions.items():
        value = answers.get(code)
        if value in (None, "", []):
            if definition["required"]:
                raise RequestError(f"attribute[{code}]", "err_required")
            continue
        checked[code] = _check_answer(code, definition, value)
    return checked


_CODE = re.compile(r"^[a-z][a-z0-9_]{1,49}$")
YES = ("yes", "是", "true", "1")


def questions_text(attributes: list[Doc]) -> str:
    """A category's questions as the secretary edits them: one a line, `code | datatype | question | yes/no
    (required) | values, comma separated`."""
    return "\n".join(" | ".join([a["code"], a["datatype"], a["description"], "yes" if a["required"] else "no",
                                 ", ".join(a.get("values", []))]).rstrip(" |") for a in attributes)


def parse_questions(text: str) -> list[Doc]:
    """The inverse of questions_text, checking every line; RequestError names the line that is wrong."""
    questions: list[Doc] = []
    for number, line in enumerate((raw for raw in text.splitlines() if raw.strip()), start=1):
        parts = [part.strip() for part in line.split("|")]
        if len(parts) < 4:
            raise RequestError("questions", "err_question_line", line=number)
        code, datatype, description, required = parts[:4]
        values = [v.strip() for v in (parts[4] if len(parts) > 4 else "").split(",") if v.strip()]
        if not _CODE.match(code):
            raise RequestError("questions", "err_question_code", line=number)
        if datatype not in DATATYPES:
            raise RequestError("questions", "err_question_datatype", line=number, choices=", ".join(DATATYPES))
        if not description or len(description) > 200:
            raise RequestError("questions", "err_question_text", line=number)
        if datatype.endswith("valuelist") != bool(values):
            raise RequestError("questions", "err_question_values", line=number)
        if code in {q["code"] for q in questions}:
            raise RequestError("questions", "err_question_twice", line=number, code=code)
        questions.append({"code": code, "datatype": datatype, "description": description,
                          "required": required.lower() in YES, "order": number,
                          **({"values": values} if values else {})})
    return questions


def new_category(code: str, street: str) -> Doc:
    """A new, inactive category for the secretary to fill in."""
    if not _CODE.match(code):
        raise RequestError("code", "err_category_code")
    return {"_id": f"service_category:{code}", "type": "service_category", "street": street, "code": code,
            "name": code, "keywords": [], "attributes": [], "respond_days": 1, "close_days": 3, "active": False}


def _check_answer(code: str, definition: Doc, value: Any) -> Any:
    kind, allowed = definition["datatype"], set(definition.get("values", []))
    name = f"attribute[{code}]"
    if kind == "number":
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise RequestError(name, "err_not_number", got=type(value).__name__) from None
        if not math.isfinite(number):
            raise RequestError(name, "err_not_finite")
        return number
    if kind == "datetime":
        try:
            dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise RequestError(name, "err_not_datetime_input") from None
        return str(value)
    if kind == "multivaluelist":
        values = value if isinstance(value, list) else [value]
        wrong = [v for v in values if not (isinstance(v, str) and v in allowed)]
        if wrong:
            raise RequestError(name, "err_not_choice", value=str(wrong[0]), choices=", ".join(sorted(allowed)))
        return values
    if kind == "singlevaluelist" and value not in allowed:
        raise RequestError(name, "err_not_choice", value=str(value), choices=", ".join(sorted(allowed)))
    if not isinstance(value, str) or len(value) > 500:
        raise RequestError(name, "err_too_long", max=500)
    return value


def _distance_km(a: dict[str, float], b: dict[str, float]) -> float:
    lat1, lat2 = math.radians(a["lat"]), math.radians(b["lat"])
    dlat, dlon = lat2 - lat1, math.radians(b["lon"] - a["lon"])
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 6371.0 * 2 * math.asin(math.sqrt(h))


def _street_grids(couch: Couch, street: str) -> list[Doc]:
    return [g for g in docs_of_type(couch.main, "grid") if g["street"] == street]


def locate(couch: Couch, street: str, location: dict[str, float] | None, address: str) -> Doc:
    """The grid a place belongs to: the nearest grid centre to a map position, or the grid whose area
    (road and house-number range) contains a street address."""
    grids = _street_grids(couch, street)
    if location is not None:
        placed = [(g, _distance_km(location, g["location"])) for g in grids if g.get("location")]
        nearest = min(placed, key=lambda pair: pair[1], default=None)
        if nearest is None or nearest[1] > MAX_DISPATCH_KM:
            raise RequestError("lat", "err_location_outside")
        return nearest[0]
    match = _ADDRESS.search(address or "")
    if match:
        number = int(match["number"])
        for grid in grids:
            area = _AREA.match(grid.get("area", ""))
            if area and area["road"] == match["road"] and int(area["first"]) <= number <= int(area["last"]):
                return grid
    raise RequestError("address_string", "err_address_no_grid")


_AREA = re.compile(r"(?P<road>[^\d]+?)(?P<first>\d+)号至(?P<last>\d+)号")


def first_owner(couch: Couch, reporter: str, grid_id: str, *, on_behalf: bool, source: str) -> str:
    """First contact (§5.2): staff who took a matter in for someone own it; otherwise the grid's worker receives
    it. The same whether it was reported online (`create`) or arrives from a phone (`intake`)."""
    if reporter.startswith("user:") and source != "open311" and on_behalf:
        return reporter
    return _grid_worker(couch, grid_id) or reporter


def department_names(couch: Couch) -> dict[str, str]:
    return {d["_id"]: d["name"] for d in docs_of_type(couch.main, "department")}


def _grid_worker(couch: Couch, grid_id: str) -> str | None:
    for row in couch.accounts.query("linli/users_by_grid", key=grid_id, as_list=True):
        if "grid_worker" in row["value"]["roles"]:
            return row["id"]
    return None


# ---------------------------------------------------------------- the lifecycle

PHOTOS = PHOTO_LIMITS["service_request"]
# The report's photos and the progress notes' together, so that a request stays a small document. Progress
# photos are added by the server only (a phone writes a request when it reports it, PHOTOS.max_count at most).
MAX_ATTACHMENTS = 15


@dataclass(frozen=True)
class Photo:
    """An uploaded photo: its bytes, and the type the sender said it is (None: not said)."""

    data: bytes
    declared: str | None = None


def check_photo(data: bytes, max_bytes: int = PHOTOS.max_bytes, declared: str | None = None) -> str:
    """The content type of an uploaded photo, judged by its bytes, which must be what the sender said
    (server/domain/field_rules.py photo_refusal, the rule the phone and the sync gateway apply too)."""
    refusal = photo_refusal(data, declared, max_bytes)
    if refusal == "photo_too_large":
        raise RequestError("photo", "err_photo_too_big", kb=len(data) // 1024, mb=max_bytes // (1024 * 1024))
    if refusal == "photo_not_image":
        raise RequestError("photo", "err_photo_type")
    if refusal == "photo_type_mismatch":
        raise RequestError("photo", "err_photo_type_mismatch", declared=str(declared))
    return str(sniffed_type(data))


@dataclass(frozen=True)
class NewRequest:
    """What a reporter sends, before dispatch."""

    street: str
    category: str
    description: str
    location: dict[str, float] | None = None
    address: str = ""
    attributes: dict[str, Any] | None = None
    grid: str | None = None  # known when staff enter it for their own grid
    # A resident's own grid: their report goes where they live, whose worker receives it first and knows them
    # (§5.2), wherever the matter is (its address or map position, still required, says where).
    home_grid: str | None = None
    resident: str | None = None
    household: str | None = None
    on_behalf: bool = False
    consent: bool = False
    reporter_name: str = ""
    account_id: str = ""
    media_url: str = ""
    source: str = "web"
    photos: tuple[Photo, ...] = ()


def create(couch: Couch, reporter: str, new: NewRequest, now: dt.datetime) -> Doc:
    """Validate, dispatch and store one request; returns the stored document. Raises RequestError."""
    category = catalogue(couch, new.street).get(new.category)
    if category is None:
        raise RequestError("service_code", "err_unknown_service", code=new.category)
    description = new.description.strip()
    if not description and not new.media_url and not new.photos:
        raise RequestError("description", "err_description_or_photo")
    if len(description) > MAX_DESCRIPTION:
        raise RequestError("description", "err_too_long", max=MAX_DESCRIPTION)
    if new.location is None and not new.address.strip() and new.grid is None:
        raise RequestError("lat", "err_location_required")
    if new.on_behalf and not new.consent:
        raise RequestError("consent", "err_consent_required")
    attributes = check_attributes(category, new.attributes or {})
    if len(new.photos) > PHOTOS.max_count:
        raise RequestError("photo", "err_too_many_photos", max=PHOTOS.max_count)
    photos = {f"photo-{i}.{kind.split('/')[1]}": {"content_type": kind, "data": base64.b64encode(data).decode()}
              for i, (data, kind) in enumerate(((p.data, check_photo(p.data, declared=p.declared))
                                                for p in new.photos), start=1)}
    placed = new.grid or new.home_grid
    grid = couch.main.get(placed) if placed else locate(couch, new.street, new.location, new.address)
    owner = first_owner(couch, reporter, grid["_id"], on_behalf=new.on_behalf, source=new.source)
    cal = calendar(couch, new.street)
    doc: Doc = {
        "_id": request_id(), "type": "service_request", "street": grid["street"], "community": grid["community"],
        "grid": grid["_id"], "category": category["code"], "description": description, "status": "received",
        "department": category["department"], "owner": owner, "source": new.source,
        "on_behalf": new.on_behalf, "consent": new.consent,
        "due_respond": cal.add_working_days(now, category["respond_days"]).isoformat(),
        "due_close": cal.add_working_days(now, category["close_days"]).isoformat(),
        "history": [{"at": now.isoformat(), "by": reporter, "action": "created", "status": "received"}],
        "created_by": reporter, "created_at": now.isoformat(), "updated_at": now.isoformat(),
    }
    optional = {"location": new.location, "address": new.address.strip(), "attributes": attributes,
                "resident": new.resident, "household": new.household, "reporter_name": new.reporter_name.strip(),
                "account_id": new.account_id, "media_url": new.media_url}
    doc.update({k: v for k, v in optional.items() if v})
    validate(doc)
    if photos:  # in the same write as the request: a refused photo leaves nothing half-created
        doc["_attachments"] = photos
    return couch.main.save(doc)


def may_act(p: Principal, doc: Doc) -> bool:
    """Who may move a request on: its owner, the grid's worker, the community's secretary, the departments."""
    return (p.user_id == doc.get("owner") or p.has(Role.ADMIN)
            or (p.has(Role.SECRETARY) and doc["community"] in p.communities)
            or (p.has(Role.GRID_WORKER) and doc["grid"] in p.grids)
            or (p.has(Role.DEPARTMENT_STAFF) and p.department in departments_of(doc)))


def is_reporter(p: Principal, doc: Doc) -> bool:
    return p.user_id == doc["created_by"] or (p.resident is not None and p.resident == doc.get("resident"))


def transition(couch: Couch, p: Principal, doc: Doc, to: str, note: str, now: dt.datetime) -> Doc:
    """Move a request to another state, recording who and when (handing back is `hand_back`'s, with its reason)."""
    if to not in TRANSITIONS.get(doc["status"], ()) or to == "returned":
        raise RequestError("status", "err_transition", from_state=doc["status"], to=to)
    reporter_moves = to in ("closed", "reopened") and is_reporter(p, doc)
    if not (may_act(p, doc) or reporter_moves):
        raise RequestError("status", "err_may_not_change", status=403)
    move_to(doc, to, now.isoformat())
    return _record(couch, doc, p.user_id, to, note, now, status=to)


def move_to(doc: Doc, to: str, stamp: str) -> None:
    """Set a request's status and the timestamps the clock and the figures read (acknowledged, resolved, closed)."""
    doc["status"] = to
    if to == "acknowledged" or (to in ("in_progress", "resolved") and "acknowledged_at" not in doc):
        doc.setdefault("acknowledged_at", stamp)
    if to == "resolved":
        doc["resolved_at"] = stamp
    if to == "closed":
        doc["closed_at"] = stamp
    if to == "reopened":  # closed no longer, so not confirmed either
        for name in ("resolved_at", "closed_at", "confirmed_at", "confirmed_via"):
            doc.pop(name, None)


def comment(couch: Couch, p: Principal, doc: Doc, note: str, now: dt.datetime) -> Doc:
    if not (may_act(p, doc) or is_reporter(p, doc)):
        raise RequestError("comment", "err_may_not_comment", status=403)
    if not note.strip():
        raise RequestError("comment", "err_required")
    return _record(couch, doc, p.user_id, "comment", note, now)


def whistle(couch: Couch, p: Principal, doc: Doc, departments: list[str], note: str, now: dt.datetime) -> Doc:
    """"Community whistles, departments report" (§3.2): the secretary calls departments, each with its own clock."""
    if not (p.has(Role.SECRETARY) and doc["community"] in p.communities):
        raise RequestError("departments", "err_whistle_secretary", status=403)
    known = department_names(couch)
    if not departments or not set(departments) <= set(known):
        raise RequestError("departments", "err_name_departments")
    already = {w["department"] for w in doc.get("whistles", [])}
    twice = [d for d in departments if d in already]
    if twice:  # each department has one clock; calling it again would hide that it is late
        raise RequestError("departments", "err_already_whistled", department=known[twice[0]])
    due = calendar(couch, doc["street"]).add_working_days(now, WHISTLE_DAYS).isoformat()
    doc["whistles"] = doc.get("whistles", []) + [{"department": d, "at": now.isoformat(), "due": due}
                                                  for d in dict.fromkeys(departments)]
    doc["departments"] = sorted(already | set(departments))
    if doc["status"] in TRANSITIONS and "escalated" in TRANSITIONS[doc["status"]]:
        doc["status"] = "escalated"
    called = "、".join(known[d] for d in departments)
    return _record(couch, doc, p.user_id, "whistle", f"{called}：{note}" if note.strip() else called, now,
                   status=doc["status"])


# ---------------------------------------------------------------- a department's work on a request

def department_actions(p: Principal, doc: Doc) -> tuple[str, ...]:
    """What this user's department may do on the request now, in the order of the loop: accept, arrive (on site),
    progress (a note, with a photo), resolve, hand_back (the department it was dispatched to only; a whistled
    department was called by the secretary, who decides). Empty once its part is over (resolved, handed back)."""
    if not (p.has(Role.DEPARTMENT_STAFF) and p.department in departments_of(doc)
            and doc["status"] in DEPARTMENT_OPEN_STATES):
        return ()
    return tuple(action for action, possible in (
        ("accept", p.department not in doc.get("accepted", [])),
        ("arrive", p.department not in doc.get("on_site", [])),
        ("progress", True),
        ("resolve", "resolved" in TRANSITIONS[doc["status"]]),
        ("hand_back", p.department == doc.get("department"))) if possible)


def _department_step(p: Principal, doc: Doc, action: str) -> str:
    """The user's department, once checked that `action` is open to it; RequestError (403) otherwise."""
    if action not in department_actions(p, doc):
        raise RequestError("departments", "err_not_called", status=403)
    return str(p.department)


def accept(couch: Couch, p: Principal, doc: Doc, now: dt.datetime) -> Doc:
    """A department takes the request on; for the department it was dispatched to, that is acknowledging it."""
    department = _department_step(p, doc, "accept")
    doc["accepted"] = [*doc.get("accepted", []), department]
    status = None
    if department == doc.get("department"):  # responding, on the request's own clock
        doc.setdefault("acknowledged_at", now.isoformat())
        if "acknowledged" in TRANSITIONS[doc["status"]]:
            status = doc["status"] = "acknowledged"
    return _record(couch, doc, p.user_id, "accepted", department_names(couch).get(department, ""), now,
                   status=status)


def arrive(couch: Couch, p: Principal, doc: Doc, now: dt.datetime) -> Doc:
    """A department reports that it is on site: a whistled one stops its clock; the one it was dispatched to is
    at work on it (in progress)."""
    department = _department_step(p, doc, "arrive")
    doc["on_site"] = [*doc.get("on_site", []), department]
    for w in doc.get("whistles", []):
        if w["department"] == department:
            w.setdefault("arrived_at", now.isoformat())
    status = None
    if department == doc.get("department") and "in_progress" in TRANSITIONS[doc["status"]]:
        status = doc["status"] = "in_progress"
        doc.setdefault("acknowledged_at", now.isoformat())
    return _record(couch, doc, p.user_id, "arrived", department_names(couch).get(department, ""), now,
                   status=status)


def hand_back(couch: Couch, p: Principal, doc: Doc, reason: str, now: dt.datetime) -> Doc:
    """The department it was dispatched to hands it back to the grid that owns it, saying why (not theirs,
    needs the resident first, ...); the grid worker and the secretary see it as returned."""
    _department_step(p, doc, "hand_back")
    if not reason.strip():
        raise RequestError("reason", "err_required")
    doc["status"] = "returned"
    return _record(couch, doc, p.user_id, "handed_back", reason, now, status="returned")


def progress(couch: Couch, p: Principal, doc: Doc, note: str, photo: Photo | None, now: dt.datetime) -> Doc:
    """A progress note, with a photo of the work if there is one; the reporter sees both."""
    if not may_act(p, doc):
        raise RequestError("comment", "err_may_not_comment", status=403)
    if not note.strip():
        raise RequestError("comment", "err_required")
    name = None
    if photo is not None:
        kind = check_photo(photo.data, declared=photo.declared)
        attachments = doc.setdefault("_attachments", {})
        if len(attachments) >= MAX_ATTACHMENTS:
            raise RequestError("photo", "err_too_many_photos", max=MAX_ATTACHMENTS)
        name = f"progress-{len(attachments) + 1}.{kind.split('/')[1]}"
        attachments[name] = {"content_type": kind, "data": base64.b64encode(photo.data).decode()}
    return _record(couch, doc, p.user_id, "progress", note, now, photo=name)


def rate(couch: Couch, p: Principal, doc: Doc, rating: int, satisfaction: str, note: str, now: dt.datetime) -> Doc:
    """The reporter rates a resolved request (1–5 and the satisfaction question); that closes it."""
    if not is_reporter(p, doc):
        raise RequestError("rating", "err_rate_reporter", status=403)
    if doc["status"] not in ("resolved", "closed"):
        raise RequestError("rating", "err_rate_resolved")
    if not (isinstance(rating, int) and 1 <= rating <= 5):
        raise RequestError("rating", "err_rating_range")
    if satisfaction not in SATISFACTION:
        raise RequestError("satisfaction", "err_not_choice", value=satisfaction, choices=", ".join(SATISFACTION))
    doc.update(rating=rating, satisfaction=satisfaction)
    if doc["status"] == "resolved":
        doc.update(status="closed", closed_at=now.isoformat())
    return _record(couch, doc, p.user_id, "rated", note, now, status=doc["status"])  # the rating is its own field


# ---------------------------------------------------------------- closed means fixed (issue 18 item 3)

def confirm_channels(p: Principal, doc: Doc) -> tuple[str, ...]:
    """How this user may record the reporter's "is it really fixed?" answer on a closed request not yet confirmed:
    the reporter on their own page; the grid's worker or the secretary for them, at the human window or at a visit."""
    if doc["status"] != "closed" or "confirmed_at" in doc:
        return ()
    staff = ((p.has(Role.GRID_WORKER) and doc["grid"] in p.grids)
             or (p.has(Role.SECRETARY) and doc["community"] in p.communities))
    return (("own",) if is_reporter(p, doc) else ()) + (("window", "visit") if staff else ())


def pending_fix_check(couch: Couch, doc: Doc) -> Doc | None:
    """An answer recorded for this request on a phone offline, not yet applied (`apply_fix_checks`)."""
    return next((c for c in iter_view_docs(couch.main, "linli/by_place", [doc["grid"], "fix_check"])
                 if c["request"] == doc["_id"] and "outcome" not in c), None)


def confirm(couch: Couch, p: Principal, doc: Doc, fixed: bool, reason: str, via: str, consent: bool,
            now: dt.datetime) -> Doc:
    """The reporter's answer after closure: "fixed" confirms the closure (counted apart from closed); "not fixed"
    reopens the request with their reason in its history. Staff record it only with the reporter's consent."""
    if doc["status"] != "closed" or "confirmed_at" in doc:
        raise RequestError("confirm", "err_confirm_closed")
    if via not in confirm_channels(p, doc):
        raise RequestError("confirm", "err_confirm_not_yours", status=403)
    if via != "own" and not consent:
        raise RequestError("consent", "err_consent_required")
    if not fixed and not reason.strip():
        raise RequestError("reason", "err_not_fixed_reason")
    if fixed:
        doc.update(confirmed_at=now.isoformat(), confirmed_via=via)
        return _record(couch, doc, p.user_id, "confirmed_fixed", reason, now)
    move_to(doc, "reopened", now.isoformat())
    return _record(couch, doc, p.user_id, "not_fixed", reason, now, status="reopened")


def apply_fix_checks(couch: Couch, street: str, now: dt.datetime) -> int:
    """Answers recorded on a grid worker's phone offline (`fix_check`), applied as `confirm` applies them online,
    by the same rules, as the worker who recorded them; each marked applied or refused (the key saying why)."""
    checks = [c for community in ids_of_type(couch.main, "community")
              for c in iter_view_docs(couch.main, "linli/by_place", [community, "fix_check"])
              if c["street"] == street and "outcome" not in c]

    def apply(check: Doc) -> bool:
        user = get_or_none(couch.accounts, check["created_by"])
        request = get_or_none(couch.main, check["request"])
        try:
            if user is None or request is None:
                raise RequestError("confirm", "err_confirm_not_yours", status=403)
            confirm(couch, Principal.of(user), request, check["fixed"], check.get("reason", ""), check["via"],
                    check["consent"], dt.datetime.fromisoformat(check["created_at"]))
            check.update(outcome="applied")
        except RequestError as refused:
            check.update(outcome="refused", refusal=refused.errors[0].key)
        check["applied_at"] = now.isoformat()
        validate(check)
        couch.main.save(check)
        return check["outcome"] == "applied"
    return sum(sweeps.each("requests' fixed-or-not answers recorded offline", checks, apply))


def _record(couch: Couch, doc: Doc, by: str, action: str, note: str, now: dt.datetime, status: str | None = None,
            photo: str | None = None) -> Doc:
    entry = {"at": now.isoformat(), "by": by, "action": action, **({"status": status} if status else {}),
             **({"note": note.strip()[:500]} if note.strip() else {}), **({"photo": photo} if photo else {})}
    doc["history"] = doc.get("history", []) + [entry]
    doc["updated_at"] = now.isoformat()
    validate(doc)
    return couch.main.save(doc)


# ---------------------------------------------------------------- clocks

@dataclass
class SweepReport:
    warned: int = 0
    escalated: int = 0
    departments_overdue: int = 0
    moot_warnings: int = 0  # deadlines passed unwarned, listed in `warned` without a warning in the history
    unreadable: list[str] = field(default_factory=list)  # request ids that break the declaration: skipped, named


def sweep(couch: Couch, street: str, now: dt.datetime) -> SweepReport:
    """Warn before deadlines, escalate past them; idempotent, so every server process may run it. Reads only the
    requests with something due by now (`due_requests`), never every open one."""
    report = SweepReport()
    categories, cal = catalogue(couch, street, active_only=False), calendar(couch, street)
    sweeps.each("service-request deadlines", due_requests(couch, street, now),
                lambda doc: _sweep_one(couch, doc, categories, cal, report, now))
    return report


def _sweep_one(couch: Couch, doc: Doc, categories: dict[str, Doc], cal: WorkCalendar, report: SweepReport,
               now: dt.datetime) -> None:
    """One open request: taken in if made offline, its clocks advanced to now and stored if that changed it."""
    if "due_close" not in doc:  # made offline, not taken in yet
        taken = _take_in(couch, doc, categories, cal)
        if taken is None:
            report.unreadable.append(doc["_id"])
            return
        doc = taken
    tally = advance_clocks(doc, now)
    if tally != SweepReport():  # counted into the report once stored: a conflict counts nothing
        doc["updated_at"] = now.isoformat()
        validate(doc)
        couch.main.save(doc)
    report.warned += tally.warned
    report.escalated += tally.escalated
    report.departments_overdue += tally.departments_overdue
    report.moot_warnings += tally.moot_warnings


def advance_clocks(doc: Doc, now: dt.datetime) -> SweepReport:
    """What the clocks make of a request taken in, by now, done to `doc` in memory: a deadline within
    WARN_BEFORE warned of, one passed escalated (unless it is) and listed in `warned` (a warning missed, because
    no sweep ran in its window or the request arrived late from a phone, is moot once the deadline passed: so
    listed, the request leaves the sweep's view `request_clock`), each department's whistle past due marked
    overdue. Returns what it did; an empty report means nothing changed."""
    tally = SweepReport()
    for deadline, done_field, name in DEADLINES:
        if done_field in doc:
            continue
        due, warned = dt.datetime.fromisoformat(doc[deadline]), doc.get("warned", [])
        if now >= due:
            if doc["status"] in ESCALATES_FROM:
                doc["status"] = "escalated"
                doc["history"].append({"at": now.isoformat(), "by": "system", "action": "overdue",
                                       "status": "escalated", "note": name})
                tally.escalated += 1
            if name not in warned:
                doc["warned"] = [*warned, name]
                tally.moot_warnings += 1
        elif due - WARN_BEFORE <= now and name not in warned:
            doc["warned"] = [*warned, name]
            doc["history"].append({"at": now.isoformat(), "by": "system", "action": "warning", "note": name})
            tally.warned += 1
    for w in doc.get("whistles", []):
        if "arrived_at" not in w and now >= dt.datetime.fromisoformat(w["due"]) and not w.get("overdue"):
            w["overdue"] = True
            doc["history"].append({"at": now.isoformat(), "by": "system", "action": "department_overdue",
                                   "note": w["department"]})
            tally.departments_overdue += 1
    return tally


def intake(couch: Couch, street: str) -> int:
    """Requests made offline arrive through the sync gateway as the phone wrote them: dispatch them and start
    their clocks from the time they were reported, exactly as `create` does online. Returns how many."""
    categories, cal = catalogue(couch, street, active_only=False), calendar(couch, street)
    waiting = iter_view_docs(couch.main, "linli/request_clock", [street, 0])  # 0: not taken in (views.py)
    return sum(_take_in(couch, doc, categories, cal) is not None for doc in waiting if "due_close" not in doc)


def dispatched(couch: Couch, doc: Doc) -> Doc:
    """A request made offline as it will be once taken in (department, deadlines, history), unsaved: what a page
    shows before the minute sweep has stored it. A request already taken in comes back as it is."""
    if "due_close" in doc:
        return doc
    return _dispatch(couch, doc, catalogue(couch, doc["street"], active_only=False), calendar(couch, doc["street"]))


def _take_in(couch: Couch, doc: Doc, categories: dict[str, Doc], cal: WorkCalendar) -> Doc | None:
    """The request dispatched and stored; None (logged by id and reason) for one that breaks the declaration: no
    gateway or page stores such a request, but the clocks of all the others must not stop for it."""
    try:
        return couch.main.save(_dispatch(couch, doc, categories, cal))
    except ValidationError as e:
        log.warning("request not taken in: %s", e)
        return None


def _dispatch(couch: Couch, doc: Doc, categories: dict[str, Doc], cal: WorkCalendar) -> Doc:
    doc = copy.deepcopy(doc)
    validate(doc)  # names what is missing before anything below reads it
    category = categories.get(doc["category"])
    reported = dt.datetime.fromisoformat(doc["created_at"])
    if category is None:  # an unknown category from an old phone: a person must sort it out
        note = f"unknown category {doc['category']}"
        doc["history"] = doc.get("history", []) + [{"at": reported.isoformat(), "by": "system",
                                                    "action": "comment", "note": note}]
        category = {"department": None, "respond_days": 1, "close_days": 3}
    doc.setdefault("owner", first_owner(couch, doc["created_by"], doc["grid"], on_behalf=doc.get("on_behalf", False),
                                        source=doc.get("source", "offline")))
    if category["department"]:
        doc.setdefault("department", category["department"])
    doc.setdefault("source", "offline")
    doc["due_respond"] = cal.add_working_days(reported, category["respond_days"]).isoformat()
    doc["due_close"] = cal.add_working_days(reported, category["close_days"]).isoformat()
    if not doc.get("history"):
        doc["history"] = [{"at": reported.isoformat(), "by": doc["created_by"], "action": "created",
                           "status": doc["status"]}]
    validate(doc)
    return doc


def street_requests(couch: Couch, street: str) -> list[Doc]:
    """Every request of the street, community by community (the by_place view is keyed by place)."""
    return [d for c in ids_of_type(couch.main, "community")
            for d in iter_view_docs(couch.main, "linli/by_place", [c, "service_request"]) if d["street"] == street]


def due_requests(couch: Couch, street: str, now: dt.datetime) -> list[Doc]:
    """The street's open requests with something for the clocks to do by now (the `request_clock` view, keyed by
    the time of each one's next action), those made offline and not taken in first."""
    rows = couch.main.query("linli/request_clock", as_list=True, startkey=[street], reduce="false",
                            endkey=[street, int(now.timestamp() * 1000)], include_docs="true")
    return [row["doc"] for row in rows]
