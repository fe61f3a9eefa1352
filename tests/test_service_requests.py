"""Service requests: dispatch, first-contact ownership, transitions, whistles, SLA clocks on working days."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from server.domain.access import Principal, may_see, write_refusal
from server.domain.request_states import OPEN_STATES
from server.domain.workdays import CHINA_2026_HOLIDAYS, CHINA_2026_WORKDAYS, WorkCalendar
from server.services import service_requests as sr
from server.services import workbench
from server.services.demo import STREET_ID
from server.store.couch import Couch
from server.store.queries import refusal_to_store
from sync.audience import document_keys, principal_keys

from .street import TINY_PNG

SHANGHAI = ZoneInfo("Asia/Shanghai")
CAL = WorkCalendar(frozenset(map(dt.date.fromisoformat, CHINA_2026_HOLIDAYS)),
                   frozenset(map(dt.date.fromisoformat, CHINA_2026_WORKDAYS)))
WORKER = Principal("user:wangge01", frozenset({"grid_worker"}), STREET_ID, frozenset({"community:c1"}),
                   frozenset({"grid:c1-g01"}))
SECRETARY = Principal("user:shuji1", frozenset({"secretary"}), STREET_ID, frozenset({"community:c1"}))
DEPARTMENT = Principal("user:bumen_urban_management", frozenset({"department_staff"}), STREET_ID,
                       department="department:urban_management")
STRANGER = Principal("user:wangge02", frozenset({"grid_worker"}), STREET_ID, frozenset({"community:c2"}),
                     frozenset({"grid:c2-g01"}))


def local(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def test_working_days_skip_weekends_and_holidays_and_count_make_up_days() -> None:
    thursday = local("2026-09-24T10:00")  # Mid-Autumn: Fri 25 – Sun 27 off
    assert CAL.add_working_days(thursday, 1) == local("2026-09-28T10:00")
    assert CAL.add_working_days(thursday, 3) == local("2026-09-30T10:00")
    assert CAL.add_working_days(local("2026-09-30T16:00"), 1) == local("2026-10-08T16:00")  # National Day week
    assert CAL.add_working_days(local("2026-10-09T11:00"), 1) == local("2026-10-10T11:00")  # a make-up Saturday
    # Received on a day off: the clock starts the next working morning.
    assert CAL.add_working_days(local("2026-11-28T22:00"), 1) == local("2026-12-01T09:00")


def street_lamp(**changes: object) -> sr.NewRequest:
    values: dict = {"street": STREET_ID, "category": "street_lamp", "description": "3号楼前路灯不亮",
                    "location": {"lat": 30.51, "lon": 114.344}}
    values.update(changes)
    return sr.NewRequest(**values)


def test_dispatch_by_map_position_or_address_and_first_contact_ownership(demo_loaded: Couch) -> None:
    now = local("2026-11-24T10:00")
    by_map = sr.create(demo_loaded, "user:resident-x", street_lamp(), now)
    assert (by_map["grid"], by_map["department"], by_map["status"]) == ("grid:c1-g01", "department:urban_management",
                                                                       "received")
    assert by_map["owner"] == "user:wangge01"  # the grid's worker receives what residents report
    assert by_map["due_respond"] == local("2026-11-25T10:00").astimezone(dt.UTC).isoformat()
    by_address = sr.create(demo_loaded, "user:resident-x", street_lamp(location=None, address="和谐路25号"), now)
    assert by_address["grid"] == "grid:c2-g02"
    at_window = sr.create(demo_loaded, WORKER.user_id, street_lamp(grid="grid:c1-g02", on_behalf=True, consent=True,
                                                                   resident="resident:c1-g02-0001-1"), now)
    assert at_window["owner"] == WORKER.user_id and at_window["grid"] == "grid:c1-g02"
    # A resident's report goes to the grid they live in, wherever the matter is (its place still said).
    from_home = sr.create(demo_loaded, "user:resident-x", street_lamp(home_grid="grid:c2-g02"), now)
    assert (from_home["grid"], from_home["owner"]) == ("grid:c2-g02", "user:wangge04")
    with pytest.raises(sr.RequestError) as nowhere:
        sr.create(demo_loaded, "user:resident-x", street_lamp(home_grid="grid:c2-g02", location=None), now)
    assert nowhere.value.field == "lat"


@pytest.mark.parametrize(("changes", "field"), [
    ({"category": "unicorns"}, "service_code"),
    ({"location": None}, "lat"),
    ({"location": {"lat": 39.9, "lon": 116.4}}, "lat"),  # Beijing is not this street
    ({"location": None, "address": "火星路1号"}, "address_string"),
    ({"description": "  "}, "description"),
    ({"on_behalf": True}, "consent"),
    ({"category": "noise"}, "attribute[time_of_day]"),
    ({"category": "noise", "attributes": {"time_of_day": "dawn"}}, "attribute[time_of_day]"),
    ({"category": "home_repair", "attributes": {"floor": "third"}}, "attribute[floor]"),
    ({"attributes": {"colour": "red"}}, "attribute[colour]"),
])
def test_bad_requests_are_refused_by_field_and_nothing_is_stored(demo_loaded: Couch, changes: dict,
                                                                 field: str) -> None:
    with pytest.raises(sr.RequestError) as refused:
        sr.create(demo_loaded, "user:resident-x", street_lamp(**changes), local("2026-11-24T10:00"))
    assert refused.value.field == field
    assert [d for d in sr.street_requests(demo_loaded, STREET_ID) if d["status"] in OPEN_STATES] == []


def test_transitions_are_recorded_and_checked(demo_loaded: Couch) -> None:
    doc = sr.create(demo_loaded, "user:resident-x", street_lamp(), local("2026-11-24T10:00"))
    with pytest.raises(sr.RequestError, match="cannot become closed"):
        sr.transition(demo_loaded, WORKER, doc, "closed", "", local("2026-11-24T10:05"))
    with pytest.raises(sr.RequestError) as forbidden:
        sr.transition(demo_loaded, STRANGER, doc, "acknowledged", "", local("2026-11-24T10:05"))
    assert forbidden.value.status == 403
    doc = sr.transition(demo_loaded, WORKER, doc, "acknowledged", "已联系城管", local("2026-11-24T10:30"))
    doc = sr.comment(demo_loaded, WORKER, doc, "明天上午维修", local("2026-11-24T11:00"))
    doc = sr.transition(demo_loaded, DEPARTMENT, doc, "resolved", "已更换灯泡", local("2026-11-25T09:00"))
    reporter = Principal("user:resident-x", frozenset({"resident"}), STREET_ID)
    doc = sr.rate(demo_loaded, reporter, doc, 5, "very_satisfied", "很快", local("2026-11-25T12:00"))
    assert doc["status"] == "closed" and doc["acknowledged_at"].startswith("2026-11-24T10:30")
    assert [h["action"] for h in doc["history"]] == ["created", "acknowledged", "comment", "resolved", "rated"]
    assert [h["by"] for h in doc["history"]][1:4] == [WORKER.user_id, WORKER.user_id, DEPARTMENT.user_id]
    doc = sr.transition(demo_loaded, reporter, doc, "reopened", "又坏了", local("2026-11-26T20:00"))
    assert doc["status"] == "reopened" and "closed_at" not in doc
    with pytest.raises(sr.RequestError, match="rated once it is resolved"):
        sr.rate(demo_loaded, reporter, doc, 6, "satisfied", "", local("2026-11-26T21:00"))


def test_sla_warns_then_escalates_across_a_holiday_and_the_whistle_has_its_own_clock(demo_loaded: Couch) -> None:
    received = local("2026-09-24T10:00")  # Thursday before the Mid-Autumn weekend
    doc = sr.create(demo_loaded, "user:resident-x", street_lamp(), received)
    assert sr.sweep(demo_loaded, STREET_ID, local("2026-09-26T10:00")).escalated == 0  # a holiday: not due yet
    warned = sr.sweep(demo_loaded, STREET_ID, local("2026-09-28T07:00"))  # 3 hours before the deadline
    assert (warned.warned, warned.escalated) == (1, 0)
    assert sr.sweep(demo_loaded, STREET_ID, local("2026-09-28T07:30")).warned == 0  # warned once only
    overdue = sr.sweep(demo_loaded, STREET_ID, local("2026-09-28T10:01"))
    assert overdue.escalated == 1
    doc = demo_loaded.main.get(doc["_id"])
    assert doc["status"] == "escalated" and doc["history"][-1]["action"] == "overdue"
    doc = sr.whistle(demo_loaded, SECRETARY, doc, ["department:urban_management", "department:utilities"],
                     "请两部门三日内到场", local("2026-09-28T11:00"))
    assert {w["due"] for w in doc["whistles"]} == {local("2026-10-08T11:00").astimezone(dt.UTC).isoformat()}
    doc = sr.arrive(demo_loaded, DEPARTMENT, doc, local("2026-09-29T09:00"))
    late = sr.sweep(demo_loaded, STREET_ID, local("2026-10-08T11:01"))
    assert late.departments_overdue == 1  # utilities never came; urban management did
    with pytest.raises(sr.RequestError, match="only the community's secretary may whistle"):
        sr.whistle(demo_loaded, WORKER, doc, ["department:health"], "", local("2026-10-09T12:00"))


def test_a_request_made_offline_is_dispatched_and_clocked_from_when_it_was_reported(demo_loaded: Couch) -> None:
    # As a phone writes it and the sync gateway stores it: no department, no deadlines yet.
    reported = local("2026-09-24T10:00")
    phone_doc = {"_id": "service_request:offline1", "type": "service_request", "street": STREET_ID,
                 "community": "community:c1", "grid": "grid:c1-g01", "category": "water_supply",
                 "description": "地下室漏水", "status": "received", "created_by": WORKER.user_id,
                 "created_at": reported.isoformat()}
    # What the sync gateway checks, stored an hour after it was reported.
    assert refusal_to_store(demo_loaded, WORKER, None, phone_doc, reported + dt.timedelta(hours=1)) is None
    demo_loaded.main.save(phone_doc)
    assert sr.intake(demo_loaded, STREET_ID) == 1
    doc = demo_loaded.main.get("service_request:offline1")
    assert (doc["department"], doc["owner"], doc["source"]) == ("department:utilities", WORKER.user_id, "offline")
    assert doc["due_respond"] == local("2026-09-28T10:00").astimezone(dt.UTC).isoformat()  # from when it happened
    assert [h["action"] for h in doc["history"]] == ["created"]
    assert sr.intake(demo_loaded, STREET_ID) == 0  # once


def test_a_residents_offline_report_is_received_by_their_grids_worker(demo_loaded: Couch) -> None:
    """First contact alike online and offline (service_requests.first_owner): not the resident who reported."""
    resident = Principal("user:resident-x", frozenset({"resident"}), STREET_ID, resident="resident:c1-g01-0002-1")
    phone_doc = {"_id": "service_request:offline2", "type": "service_request", "street": STREET_ID,
                 "community": "community:c1", "grid": "grid:c1-g01", "category": "street_lamp", "description": "路灯",
                 "status": "received", "address": "幸福路3号", "resident": resident.resident,
                 "household": "household:c1-g01-0002", "created_by": resident.user_id,
                 "created_at": local("2026-09-24T10:00").isoformat()}
    assert refusal_to_store(demo_loaded, resident, None, phone_doc, local("2026-09-24T11:00")) is None
    demo_loaded.main.save(phone_doc)
    assert sr.intake(demo_loaded, STREET_ID) == 1
    assert demo_loaded.main.get("service_request:offline2")["owner"] == WORKER.user_id


# ---------------------------------------------------------------- the department's part of the loop

UTILITIES = Principal("user:bumen_utilities", frozenset({"department_staff"}), STREET_ID,
                      department="department:utilities")
HEALTH = Principal("user:bumen_health", frozenset({"department_staff"}), STREET_ID, department="department:health")


def test_the_department_a_request_is_dispatched_to_sees_it_and_so_do_whistled_ones(demo_loaded: Couch) -> None:
    doc = sr.create(demo_loaded, "user:resident-x", street_lamp(), local("2026-11-24T10:00"))
    assert doc["department"] == DEPARTMENT.department and "departments" not in doc
    assert may_see(DEPARTMENT, doc) and not may_see(UTILITIES, doc)
    assert document_keys(doc) & principal_keys(DEPARTMENT)  # the sync gateway's fan-out offers it to them
    doc = sr.whistle(demo_loaded, SECRETARY, doc, ["department:utilities"], "", local("2026-11-24T11:00"))
    assert may_see(UTILITIES, doc) and may_see(DEPARTMENT, doc) and not may_see(HEALTH, doc)
    # Nobody moves a request to another department through the sync gateway: dispatch and whistles are the server's.
    now = local("2026-11-24T12:00")
    assert write_refusal(DEPARTMENT, doc, {**doc, "department": "department:health"}, {}, now) is not None
    assert write_refusal(UTILITIES, doc, {**doc, "departments": []}, {}, now) is not None


def test_a_department_cannot_be_whistled_twice(demo_loaded: Couch) -> None:
    doc = sr.create(demo_loaded, "user:resident-x", street_lamp(), local("2026-11-24T10:00"))
    doc = sr.whistle(demo_loaded, SECRETARY, doc, ["department:utilities"], "", local("2026-11-24T11:00"))
    with pytest.raises(sr.RequestError) as twice:
        sr.whistle(demo_loaded, SECRETARY, doc, ["department:health", "department:utilities"], "",
                   local("2026-11-25T11:00"))
    assert twice.value.errors[0].key == "err_already_whistled"
    assert [w["department"] for w in demo_loaded.main.get(doc["_id"])["whistles"]] == ["department:utilities"]


def test_the_department_accepts_goes_on_site_notes_progress_with_a_photo_and_resolves(demo_loaded: Couch) -> None:
    doc = sr.create(demo_loaded, "user:resident-x", street_lamp(), local("2026-11-24T10:00"))
    assert sr.department_actions(DEPARTMENT, doc) == ("accept", "arrive", "progress", "resolve", "hand_back")
    assert sr.department_actions(UTILITIES, doc) == () and sr.department_actions(WORKER, doc) == ()
    doc = sr.accept(demo_loaded, DEPARTMENT, doc, local("2026-11-24T11:00"))
    assert (doc["status"], doc["accepted"]) == ("acknowledged", [DEPARTMENT.department])
    with pytest.raises(sr.RequestError, match="^departments: "):
        sr.accept(demo_loaded, DEPARTMENT, doc, local("2026-11-24T11:05"))  # once
    doc = sr.arrive(demo_loaded, DEPARTMENT, doc, local("2026-11-24T14:00"))
    assert (doc["status"], doc["on_site"]) == ("in_progress", [DEPARTMENT.department])
    with pytest.raises(sr.RequestError) as not_a_photo:
        sr.progress(demo_loaded, DEPARTMENT, doc, "换灯泡", sr.Photo(b"not a picture", "image/png"),
                    local("2026-11-24T15:00"))
    assert not_a_photo.value.errors[0].field == "photo"
    doc = sr.progress(demo_loaded, DEPARTMENT, demo_loaded.main.get(doc["_id"]), "已更换灯泡",
                      sr.Photo(TINY_PNG, "image/png"), local("2026-11-24T15:00"))
    note = doc["history"][-1]
    assert (note["action"], note["note"], note["photo"]) == ("progress", "已更换灯泡", "progress-1.png")
    stored = demo_loaded.main.get(doc["_id"])
    assert stored["_attachments"]["progress-1.png"]["content_type"] == "image/png"
    doc = sr.transition(demo_loaded, DEPARTMENT, stored, "resolved", "", local("2026-11-24T16:00"))
    assert doc["status"] == "resolved" and sr.department_actions(DEPARTMENT, doc) == ()
    assert [h["action"] for h in doc["history"]] == ["created", "accepted", "arrived", "progress", "resolved"]


def test_the_department_hands_back_with_a_reason_and_a_whistled_one_cannot(demo_loaded: Couch) -> None:
    doc = sr.create(demo_loaded, "user:resident-x", street_lamp(), local("2026-11-24T10:00"))
    doc = sr.whistle(demo_loaded, SECRETARY, doc, ["department:utilities"], "", local("2026-11-24T11:00"))
    assert sr.department_actions(UTILITIES, doc) == ("accept", "arrive", "progress", "resolve")
    with pytest.raises(sr.RequestError) as whistled:
        sr.hand_back(demo_loaded, UTILITIES, doc, "不归我们", local("2026-11-24T12:00"))
    assert whistled.value.status == 403
    with pytest.raises(sr.RequestError) as no_reason:
        sr.hand_back(demo_loaded, DEPARTMENT, doc, "  ", local("2026-11-24T12:00"))
    assert no_reason.value.errors[0].field == "reason"
    doc = sr.hand_back(demo_loaded, DEPARTMENT, doc, "路灯属小区物业管理", local("2026-11-24T12:00"))
    assert doc["status"] == "returned" and doc["history"][-1]["note"] == "路灯属小区物业管理"
    assert sr.department_actions(DEPARTMENT, doc) == sr.department_actions(UTILITIES, doc) == ()
    with pytest.raises(sr.RequestError, match="a returned request cannot become returned"):
        sr.transition(demo_loaded, WORKER, doc, "returned", "", local("2026-11-24T12:30"))  # hand_back's alone
    doc = sr.transition(demo_loaded, WORKER, doc, "in_progress", "我来联系物业", local("2026-11-24T13:00"))
    assert doc["status"] == "in_progress"  # the grid takes it on


def test_the_workbench_lists_the_departments_work_overdue_first_and_filters(demo_loaded: Couch) -> None:
    now = local("2026-12-10T10:00")
    late = sr.create(demo_loaded, "user:resident-x", street_lamp(description="早就坏了"), local("2026-12-01T10:00"))
    fresh = sr.create(demo_loaded, "user:resident-x", street_lamp(location=None, address="和谐路25号"),
                      local("2026-12-10T09:00"))
    water = sr.create(demo_loaded, "user:resident-x", street_lamp(category="water_supply"), local("2026-12-10T08:00"))
    whistled = sr.whistle(demo_loaded, SECRETARY, water, [DEPARTMENT.department], "", local("2026-12-10T09:30"))
    done = sr.transition(demo_loaded, DEPARTMENT, sr.create(demo_loaded, "user:resident-x", street_lamp(),
                                                            local("2026-12-09T09:00")), "resolved", "", now)
    ours = {d["_id"] for d in (late, fresh, whistled, done)}

    def listed(**query: str) -> list[str]:
        return [i.doc["_id"] for i in workbench.items(demo_loaded, DEPARTMENT, workbench.Filters.of(query), now)
                if i.doc["_id"] in ours]

    # To do (not what is resolved), by the department's own next deadline: overdue first, then responding to
    # `fresh` (1 working day) before showing up for the whistle (3), although the whistled one came in earlier.
    assert listed() == [late["_id"], fresh["_id"], whistled["_id"]]
    items = {i.doc["_id"]: i for i in workbench.items(demo_loaded, DEPARTMENT, workbench.Filters(), now)}
    assert items[whistled["_id"]].whistled and items[whistled["_id"]].due == whistled["whistles"][0]["due"]
    assert not items[fresh["_id"]].whistled and items[fresh["_id"]].due == fresh["due_respond"]
    assert listed(overdue="1") == [late["_id"]]
    assert listed(category="water_supply") == [whistled["_id"]]
    assert listed(community="community:c2") == [fresh["_id"]]
    assert listed(state="resolved") == [done["_id"]] and len(listed(state="all")) == 4
    assert listed(state="nonsense") == listed()  # a filter that names nothing filters nothing
    assert [i.doc["_id"] for i in workbench.items(demo_loaded, UTILITIES, workbench.Filters(state="all"), now)
            if i.doc["_id"] in ours] == [water["_id"]]  # dispatched to utilities by its category
    assert not [i for i in workbench.items(demo_loaded, HEALTH, workbench.Filters(state="all"), now)
                if i.doc["_id"] in ours]
