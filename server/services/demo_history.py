"""A year of history for the demo street, so that every list, status and dashboard has something to show.

The year ends at `now` (the moment the demo is loaded), so "overdue" and "last 30 days" mean something.
Each kind of history is one small function `(census, rng, clock) -> documents`, listed in `KINDS` with its
own random stream, so adding a kind (or changing one) leaves the others' documents as they were. Same seed,
same street and same `now` → the same documents and ids.

The documents are the ones the real acts produce (service_requests.py, alerts.py, the gateway's
ble_gateway/documents.py, the visit and need forms, firewall.request_access), written in bulk instead of
one act at a time; protected fields stay plaintext here and are sealed by the loader like every other demo
document. Nothing here opens a protected field, so nothing is filed. The clocks are replayed as the minute
sweeps would have run them (warnings 4 h before a deadline, escalation at it, departments overdue), so the
first sweep after loading finds nothing to do; tests/test_demo_history.py checks that with the real sweeps.

Residents have no accounts in the demo: requests and their ratings are taken at the grid worker's window
(`on_behalf`), and survey answers name the account a resident would have (`user:jumin-<resident key>`).
"""

from __future__ import annotations

import base64
import datetime as dt
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from server.domain import matching, sampling
from server.domain import pool as pool_rules
from server.domain import timebank as rules
from server.domain.declaration import SATISFACTION
from server.domain.entitlement import alert_visibility, may_notify_family, privacy_choices
from server.domain.field_rules import COMMON_NEEDS
from server.domain.request_states import DEADLINES, TRANSITIONS, WARN_BEFORE
from server.domain.vote_rules import RULES, YES_NO_ABSTAIN
from server.domain.workdays import WorkCalendar
from server.security import accounts
from server.services import alerts, deliberation, projects, service_requests
from server.services.mediation import minutes_entry

Doc = dict[str, Any]
DAYS = 365  # the history's length, ending at `now`

# How much happens, per household and year (pilot: 15,000 households → about 3,000 requests), with floors
# so that a test street of a few dozen households still has some of everything.
REQUESTS_PER_HOUSEHOLD = 0.2
MIN_REQUESTS = 40
RECENT_REQUESTS_PER_GRID = 3  # made in the last 8 days, half of them late: every grid has some open and overdue
CARE_VISITS_PER_YEAR = {"elderly_alone": 4, "other": 1}  # households with a care tag (see CARED_FOR)
CARED_FOR = frozenset({"elderly_alone", "empty_nest", "low_income", "disability"})
ALERTS_PER_YEAR = ((0, 1, 2, 3, 4), (35, 30, 20, 10, 5))  # per wristband wearer: counts and weights
READINGS_PER_METRIC = 1  # the latest readings per device and metric (the status line needs the last one)
CURRENT_ALERT_SHARE = 0.08  # wearers with an alert of the last few hours, some still open in the inbox
SURVEY_ANSWERS_PER_HOUSEHOLD_MONTH = 0.01
MIN_SURVEY_ANSWERS = 3
PENDING_ACCESS_REQUESTS = 3  # per community, for the secretary's approvals
DECIDED_ACCESS_REQUESTS = 2  # per community, refused or long expired

# What the service catalogue's categories are like: how often (per 100) and what people say.
REQUEST_STORIES: dict[str, tuple[int, tuple[str, ...], dict[str, Any]]] = {
    "street_lamp": (14, ("楼下路灯不亮，晚上出行不便", "小区门口路灯一直闪烁", "路灯白天也亮着"), {}),
    "road_damage": (8, ("人行道地砖松动，老人容易绊倒", "路面有坑，下雨积水"), {}),
    "garbage": (16, ("垃圾桶满了两天没人清运", "楼道堆放杂物和垃圾"), {}),
    "noise": (10, ("楼上装修噪音太大", "夜间广场舞音响声音太大"), {"time_of_day": ("day", "evening", "night")}),
    "water_supply": (12, ("家里停水，没有收到通知", "楼道水管漏水"), {}),
    "power_outage": (6, ("单元楼停电", "电表箱跳闸"), {}),
    "home_repair": (12, ("卫生间漏水到楼下", "窗户关不上，需要维修"), {"floor": (1, 6)}),
    "elderly_care": (10, ("独居老人需要助餐服务", "老人需要有人陪同就医"),
                     {"service": ("meals", "cleaning", "bathing", "escort")}),
    "allowance_advice": (6, ("咨询低保申请条件", "想了解临时救助怎么申请"), {}),
    "home_medical": (6, ("老人行动不便，需要上门量血压", "需要家庭医生上门随访"), {}),
}
PUBLIC_CATEGORIES = frozenset({"street_lamp", "road_damage", "garbage", "noise"})  # often seen on patrol
NOTES = {"acknowledged": "已受理，已安排人员", "in_progress": "工作人员已到现场处理", "resolved": "已处理完毕",
         "closed": "居民确认已解决", "reopened": "居民反映问题仍未解决"}
HAND_BACK_REASONS = ("不属于本部门职责，请转交物业", "现场核实为私人产权设施，需居民自行维修",
                     "地址不详，请网格员核实后再派")
VISIT_NOTES = ("老人精神状态良好，生活能自理", "家中整洁，按时服药", "反映楼道灯不亮，已记录",
               "子女每周来看望", "提醒注意防滑防跌倒", "询问了助餐服务的情况", "近期睡眠不好，建议就医")
NEED_TEXT = {"meal_delivery": "希望每天送一顿午饭", "medical_escort": "下周去医院复查，需要有人陪同",
             "home_repair": "厨房水龙头漏水", "cleaning": "需要每月一次家政保洁", "companionship": "希望有人常来聊聊天",
             "shopping": "腿脚不便，需要帮忙买菜", "legal_aid": "咨询房屋继承问题", "financial_aid": "咨询医疗救助"}
ACCESS_PURPOSES = ("走访前了解慢性病和用药情况", "协助办理医疗救助，需要核对健康信息", "安排家庭医生上门随访")
SURVEY_COMMENTS = ("网格员很负责", "路灯修得很快", "希望多组织老年活动", "垃圾清运还要更及时", "办事方便多了")


# ---------------------------------------------------------------- what the history is about

@dataclass(frozen=True)
class Person:
    id: str
    age: int
    name: str = ""


@dataclass
class Household:
    id: str
    routing: Doc  # street, community, grid
    address: str
    tags: tuple[str, ...]
    volunteers: tuple[str, ...]
    area: float = 0.0  # floor area, m² (votes by area)
    residents: list[Person] = field(default_factory=list)
    building: str = ""  # nearness for matching (issue 17), never the address
    devices: dict[str, str] = field(default_factory=dict)  # kind → device id


@dataclass(frozen=True)
class Grid:
    id: str
    routing: Doc
    worker: str  # user ids
    volunteers: tuple[str, str]
    secretary: str


class Census:
    """What the history needs of the street demo.generate() made, gathered as its documents stream past."""

    def __init__(self, grids_per_community: int, age_of: Callable[[str], int],
                 volunteer_usernames: Callable[[int], tuple[str, str]]) -> None:
        self.grids: dict[str, Grid] = {}
        self.households: dict[str, Household] = {}
        self.departments: dict[str, str] = {}  # id → name
        self.communities: dict[str, str] = {}  # id → name
        self.categories: dict[str, str] = {}  # service category code → its department
        self.matters: list[Doc] = []  # the history's matters, as generate() yields them
        self._grids_per_community = grids_per_community
        self._age_of = age_of
        self._volunteer_usernames = volunteer_usernames

    def observe(self, doc: Doc) -> Doc:
        kind = doc["type"]
        if kind == "department":
            self.departments[doc["_id"]] = doc["name"]
        elif kind == "community":
            self.communities[doc["_id"]] = doc["name"]
        elif kind == "service_category":
            self.categories[doc["code"]] = doc["department"]
        elif kind == "grid":
            c = int(doc["community"].removeprefix("community:c"))
            n = (c - 1) * self._grids_per_community + doc["number"]
            routing = {k: doc[k] for k in ("street", "community", "grid")}
            self.grids[doc["_id"]] = Grid(doc["_id"], routing, accounts.user_id(f"wangge{n:02d}"),
                                          tuple(map(accounts.user_id, self._volunteer_usernames(n))),  # type: ignore[arg-type]
                                          accounts.user_id(f"shuji{c}"))
        elif kind == "household":
            self.households[doc["_id"]] = Household(
                doc["_id"], {k: doc[k] for k in ("street", "community", "grid")}, doc["address"],
                tuple(doc["tags"]), tuple(doc.get("volunteers", ())), doc.get("floor_area", 0.0),
                building=doc.get("building", ""))
        elif kind == "resident":
            self.households[doc["household"]].residents.append(
                Person(doc["_id"], self._age_of(doc["birth_date"]), doc["name"]))
        elif kind == "device":
            self.households[doc["household"]].devices[doc["kind"]] = doc["_id"]
        return doc

    def in_order(self) -> list[Household]:
        return list(self.households.values())

    def in_grid(self, index: int, rng: random.Random) -> Household:
        """A household of the index-th grid (in the order they were made)."""
        grid = list(self.grids)[index]
        return rng.choice([h for h in self.households.values() if h.routing["grid"] == grid])


@dataclass(frozen=True)
class Clock:
    """The history's `now`, the street's working-day calendar its deadlines are counted in, and the installation's
    code key its venues' check-in codes are made from (server/domain/pool.py venue_secret)."""

    now: dt.datetime
    calendar: WorkCalendar
    code_key: bytes

    def daytime(self, rng: random.Random, days_ago: float) -> dt.datetime:
        """A moment about `days_ago` before now, between 08:00 and 20:00 local time, never after now."""
        day = (self.now - dt.timedelta(days=days_ago)).astimezone(self.calendar.tz).date()
        local = dt.datetime.combine(day, dt.time(8), self.calendar.tz) + dt.timedelta(seconds=rng.randrange(12 * 3600))
        return min(local.astimezone(dt.UTC), self.now - dt.timedelta(minutes=rng.randint(5, 90)))


def _id(rng: random.Random, kind: str) -> str:
    return f"{kind}:{rng.randbytes(16).hex()}"  # the shape uuid4().hex gives, drawn from the seed


def _iso(at: dt.datetime) -> str:
    return at.isoformat()


# ---------------------------------------------------------------- service requests

@dataclass(order=True)
class _Event:
    """One thing that happens to a request: a person's act, or a clock tick the minute sweep would act on."""

    at: dt.datetime
    by: str = field(compare=False)
    action: str = field(compare=False)  # created, acknowledged … (a state), whistle, arrived, rated, or a tick
    note: str = field(default="", compare=False)
    detail: Any = field(default=None, compare=False)


def service_requests_history(census: Census, rng: random.Random, clock: Clock) -> Iterator[Doc]:
    """Requests in every state and category: most answered and closed on time, some late (escalated by the
    clock), some whistled to other departments, most closed ones rated; the recent ones still open."""
    households = census.in_order()
    codes = list(REQUEST_STORIES)
    weights = [REQUEST_STORIES[c][0] for c in codes]
    count = max(MIN_REQUESTS, round(len(households) * REQUESTS_PER_HOUSEHOLD))
    recent = RECENT_REQUESTS_PER_GRID * len(census.grids)
    for n in range(count + recent):
        code = rng.choices(codes, weights)[0]
        household = rng.choice(households) if n < count else census.in_grid(n % len(census.grids), rng)
        # Recent requests are over-represented a little, so that open ones exist in every state.
        # Each grid's first recent one is stuck: made 6 to 8 days ago, still open past its deadline whatever day the
        # demo starts on (the secretary's late list is never empty on a first start).
        stuck = count <= n < count + len(census.grids)
        days_ago = (rng.uniform(6, 8) if stuck else rng.uniform(0, 8) if n >= count
                    else rng.uniform(0, 14) if rng.random() < 0.15 else rng.uniform(0, DAYS))
        on_time = 0.0 if stuck else 0.5 if n >= count else 0.85
        yield _request(rng, clock, census, household, code, census.categories[code], clock.daytime(rng, days_ago),
                       on_time, stuck=stuck)


def _request(rng: random.Random, clock: Clock, census: Census, household: Household, code: str, department: str,
             created: dt.datetime, on_time: float, *, stuck: bool = False) -> Doc:
    grid = census.grids[household.routing["grid"]]
    _, descriptions, questions = REQUEST_STORIES[code]
    patrol = code in PUBLIC_CATEGORIES and rng.random() < 0.5  # the worker saw it on their rounds
    cal = clock.calendar
    doc: Doc = {
        "_id": _id(rng, "service_request"), "type": "service_request", **household.routing, "category": code,
        "description": rng.choice(descriptions), "status": "received", "department": department,
        "owner": grid.worker, "source": "web", "on_behalf": not patrol, "consent": not patrol,
        "address": household.address,
        "due_respond": _iso(cal.add_working_days(created, 1)), "due_close": _iso(cal.add_working_days(created, 3)),
        "history": [], "created_by": grid.worker, "created_at": _iso(created), "updated_at": _iso(created),
    }
    if not patrol:
        doc.update(household=household.id, resident=household.residents[0].id)
    if answers := _answers(rng, questions):
        doc["attributes"] = answers
    plan = _plan(rng, doc, grid, department, census.departments, created, cal, rng.random() < on_time, stuck)
    _replay(doc, plan, clock, census.departments)
    return doc


def _answers(rng: random.Random, questions: dict[str, Any]) -> Doc:
    answers: Doc = {}
    for code, choices in questions.items():
        if code == "floor":
            answers[code] = float(rng.randint(*choices))
        elif code == "service":
            answers[code] = rng.sample(choices, k=rng.randint(1, 2))
        else:
            answers[code] = rng.choice(choices)
    return answers


def _plan(rng: random.Random, doc: Doc, grid: Grid, department: str, departments: dict[str, str], created: dt.datetime,
          cal: WorkCalendar, on_time: bool, stuck: bool = False) -> list[_Event]:
    """What people do to the request, and when, as if nothing stopped them (replay cuts it at now); a stuck one is
    resolved only weeks after its deadline."""
    staff = accounts.user_id("bumen_" + department.removeprefix("department:"))
    due_respond, due_close = (dt.datetime.fromisoformat(doc[k]) for k in ("due_respond", "due_close"))
    hours = dt.timedelta(hours=1)
    acknowledged = (created + rng.uniform(0.3, 6) * hours if on_time
                    else due_respond + rng.uniform(1, 30) * hours)
    started = acknowledged + rng.uniform(0.5, 20) * hours
    resolved = (started + (due_close - started) * rng.uniform(0.1, 0.9) if on_time and due_close > started
                else max(due_close, started) + rng.uniform(2, 72) * (hours * 24 if stuck else hours))
    events = [_Event(created, grid.worker, "created"), _Event(acknowledged, staff, "acknowledged")]
    # Not the department's to do: handed back with a reason, then sent on again by the grid worker a day or more
    # later (more often among late requests: a hand-back is one reason they run late).
    if rng.random() < (0.03 if on_time else 0.2):
        handed_back = acknowledged + rng.uniform(1, 8) * hours
        events.append(_Event(handed_back, staff, "handed_back", note=rng.choice(HAND_BACK_REASONS)))
        acknowledged = handed_back + rng.uniform(24, 120) * hours
        events.append(_Event(acknowledged, grid.worker, "acknowledged"))
        started = max(started, acknowledged + rng.uniform(0.5, 20) * hours)
        resolved = max(resolved, started + rng.uniform(2, 72) * hours)
    events.append(_Event(started, staff, "in_progress"))
    if rng.random() < 0.06:  # the community "whistles" other departments to the scene (§3.2)
        called = rng.sample([d for d in departments if d != department], k=rng.randint(1, 2))
        at = started + rng.uniform(0.5, 4) * hours
        events.append(_Event(at, grid.secretary, "whistle", detail=called))
        for other in called:
            if rng.random() < 0.85:
                arrived = cal.add_working_days(at, rng.choice((0, 1, 2))) + rng.uniform(0.5, 3) * hours
                events.append(_Event(arrived, accounts.user_id("bumen_" + other.removeprefix("department:")),
                                     "arrived", note=departments[other], detail=other))
        resolved = max(resolved, at + 2 * hours)
    events.append(_Event(resolved, staff, "resolved"))
    if rng.random() < 0.04:  # not fixed after all: reopened, then fixed again
        reopened = resolved + rng.uniform(4, 48) * hours
        resolved = reopened + rng.uniform(4, 72) * hours
        events += [_Event(reopened, grid.worker, "reopened"), _Event(resolved, staff, "resolved")]
    closing = rng.random()
    closed = resolved + rng.uniform(2, 72) * hours
    if closing < 0.7:  # rated by the resident at the window: late or reopened requests fare worse
        late = resolved > due_close
        rating = rng.choices((5, 4, 3, 2, 1), (20, 30, 30, 12, 8) if late else (55, 33, 8, 3, 1))[0]
        events.append(_Event(closed, grid.worker, "rated", detail=rating))
    elif closing < 0.9:
        events.append(_Event(closed, grid.worker, "closed"))
    return events


def _replay(doc: Doc, plan: list[_Event], clock: Clock, department_names: dict[str, str]) -> None:
    """Apply the plan up to now, with the clock ticks the minute sweep would have acted on in between."""
    ticks = [_Event(dt.datetime.fromisoformat(doc[deadline]) - when, "system", tick, detail=name)
             for deadline, _, name in DEADLINES
             for tick, when in (("warning", WARN_BEFORE), ("overdue", dt.timedelta(0)))]
    pending = sorted(plan + ticks)
    while pending and pending[0].at <= clock.now:
        event = pending.pop(0)
        if event.action == "whistle":  # its departments' deadlines start ticking now
            called = _whistle(doc, event, clock.calendar, department_names)
            pending = sorted(pending + [_Event(dt.datetime.fromisoformat(w["due"]), "system", "department_overdue",
                                               detail=w["department"]) for w in called])
        else:
            _apply(doc, event)
    doc["updated_at"] = doc["history"][-1]["at"]


DONE_FIELD = {name: done for _, done, name in DEADLINES}


def _apply(doc: Doc, event: _Event) -> None:
    stamp, status = _iso(event.at), doc["status"]
    moves = TRANSITIONS
    entry: Doc = {"at": stamp, "by": event.by, "action": event.action}
    if event.action == "created":
        entry["status"] = "received"
    elif event.action in ("warning", "overdue"):
        if DONE_FIELD[event.detail] in doc:
            return
        if event.action == "warning":
            if event.detail in doc.get("warned", []):
                return
            doc["warned"] = doc.get("warned", []) + [event.detail]
            entry["note"] = event.detail
        else:
            if event.detail not in doc.get("warned", []):  # passed unwarned: moot, as the sweep lists it
                doc["warned"] = doc.get("warned", []) + [event.detail]
            if status == "escalated" or "escalated" not in moves[status]:
                return
            doc["status"] = entry["status"] = "escalated"
            entry["note"] = event.detail
    elif event.action == "department_overdue":
        whistle = next(w for w in doc["whistles"] if w["department"] == event.detail)
        if "arrived_at" in whistle:
            return
        whistle["overdue"] = True
        entry["note"] = event.detail
    elif event.action == "arrived":
        next(w for w in doc["whistles"] if w["department"] == event.detail)["arrived_at"] = stamp
        entry["note"] = event.note
    elif event.action == "handed_back":
        if "returned" not in moves[status]:
            return
        doc["status"] = entry["status"] = "returned"
        entry["note"] = event.note
    elif event.action == "rated":
        rating = event.detail
        doc.update(rating=rating, satisfaction=SATISFACTION[5 - rating])
        if status == "resolved":
            doc.update(status="closed", closed_at=stamp)
        entry.update(status=doc["status"], note=str(rating))
        if status == "resolved" and rating >= 4:  # rated well at the window: confirmed fixed there (issue 18)
            doc.update(confirmed_at=stamp, confirmed_via="window")
            doc["history"] += [entry, {"at": stamp, "by": event.by, "action": "confirmed_fixed"}]
            return
    else:  # a person moves it on: an acknowledgement after the clock escalated it is a start of work
        to = "in_progress" if event.action == "acknowledged" and status == "escalated" else event.action
        if to not in moves[status]:
            return
        service_requests.move_to(doc, to, stamp)
        entry.update(action=to, status=to, note=NOTES[to])
    doc["history"].append(entry)


def _whistle(doc: Doc, event: _Event, cal: WorkCalendar, names: dict[str, str]) -> list[Doc]:
    """The secretary calls departments, each with its own clock (service_requests.whistle)."""
    due = _iso(cal.add_working_days(event.at, service_requests.WHISTLE_DAYS))
    called = [{"department": d, "at": _iso(event.at), "due": due} for d in event.detail]
    doc["whistles"] = doc.get("whistles", []) + called
    doc["departments"] = sorted(w["department"] for w in doc["whistles"])
    if "escalated" in TRANSITIONS[doc["status"]]:
        doc["status"] = "escalated"
    doc["history"].append({"at": _iso(event.at), "by": event.by, "action": "whistle", "status": doc["status"],
                           "note": "、".join(names[d] for d in event.detail)})
    return called


# ---------------------------------------------------------------- visits and needs

def visits_and_needs(census: Census, rng: random.Random, clock: Clock) -> Iterator[Doc]:
    """The grid worker's (and now and then a volunteer's) visits to the households that need looking after,
    with notes, a blood pressure for the elderly, and needs; some needs become `need` documents to act on."""
    for household in census.in_order():
        if not CARED_FOR.intersection(household.tags):
            continue
        grid = census.grids[household.routing["grid"]]
        per_year = CARE_VISITS_PER_YEAR["elderly_alone" if "elderly_alone" in household.tags else "other"]
        for _ in range(per_year):
            at = clock.daytime(rng, rng.uniform(0, DAYS))
            visitor = rng.choice(household.volunteers) if household.volunteers and rng.random() < 0.25 else grid.worker
            person = max(household.residents, key=lambda r: r.age)
            needs = rng.sample(COMMON_NEEDS, k=rng.choices((0, 1, 2), (70, 22, 8))[0])
            kind = "care" if visitor != grid.worker else rng.choice(("routine", "routine", "needs_list"))
            visit = {"_id": _id(rng, "visit"), "type": "visit", **household.routing, "household": household.id,
                     "resident": person.id, "kind": kind, "visited_at": _iso(at), "notes": rng.choice(VISIT_NOTES),
                     "needs": needs, "created_by": visitor, "created_at": _iso(at)}
            if person.age >= 60 and visitor == grid.worker:
                visit["blood_pressure"] = f"{rng.randint(110, 165)}/{rng.randint(65, 100)}"
            yield visit
            for need in needs:
                if rng.random() < 0.5:
                    yield _need(rng, clock, household, person, need, at, grid)


def _need(rng: random.Random, clock: Clock, household: Household, person: Person, category: str,
          at: dt.datetime, grid: Grid) -> Doc:
    """A need heard at a visit: open if recent, otherwise taken up by a volunteer and (mostly) done."""
    age = clock.now - at
    status = "open" if age < dt.timedelta(days=7) else rng.choices(
        ("matched", "in_progress", "done", "cancelled"), (10, 15, 65, 10))[0]
    doc = {"_id": _id(rng, "need"), "type": "need", **household.routing, "household": household.id,
           "resident": person.id, "category": category, "description": NEED_TEXT[category], "status": status,
           "created_by": grid.worker, "created_at": _iso(at)}
    if status in ("matched", "in_progress", "done") and household.volunteers:
        doc.update(assigned_to=rng.choice(household.volunteers),
                   updated_at=_iso(at + min(age / 2, dt.timedelta(days=rng.randint(1, 5)))))
    return doc


# ---------------------------------------------------------------- volunteers' tasks

# Per volunteer: tasks in every state (server/services/tasks.py), the open ones due in the coming days.
TASK_STORIES = {"visit": "上门看望，聊聊近况", "delivery": "送午餐上门（社区食堂已备好）",
                "accompany": "陪同去社区卫生服务中心复诊", "other": "帮忙整理阳台杂物"}
VOLUNTEER_TASKS = (("assigned", 0), ("assigned", 0), ("accepted", 0), ("done", 20), ("done", 45), ("declined", 10))
DONE_NOTES = ("已送到，老人很高兴", "陪同复诊顺利，已送回家", "聊了一个小时，精神不错")
DECLINE_REASONS = ("这周出差，无法前往", "时间冲突，请安排其他志愿者")


def volunteer_tasks(census: Census, rng: random.Random, clock: Clock) -> Iterator[Doc]:
    """Each grid's volunteers' tasks, assigned by its grid worker in the households they look after: some waiting to
    be accepted, one accepted, some done with a note, one declined with a reason."""
    for grid in census.grids.values():
        for volunteer in grid.volunteers:
            households = [h for h in census.in_order() if volunteer in h.volunteers and h.residents] or [
                h for h in census.in_order() if h.routing["grid"] == grid.id and h.residents]
            for status, days_ago in VOLUNTEER_TASKS:
                household = rng.choice(households)
                person = max(household.residents, key=lambda r: r.age)
                kind = rng.choice(tuple(TASK_STORIES))
                created = clock.daytime(rng, days_ago + rng.uniform(1, 3))
                due = (created if days_ago else clock.now + dt.timedelta(days=rng.randint(1, 6))).astimezone(
                    clock.calendar.tz).date()
                task = {"_id": _id(rng, "task"), "type": "task", **household.routing, "household": household.id,
                        "address": household.address, "resident": person.id, "resident_name": person.name,
                        "kind": kind, "due_on": due.isoformat(), "notes": TASK_STORIES[kind],
                        "assigned_to": volunteer, "status": status, "created_by": grid.worker,
                        "created_at": _iso(created)}
                if status != "assigned":
                    task["updated_at"] = _iso(min(created + dt.timedelta(hours=rng.randint(2, 30)),
                                                  clock.now - dt.timedelta(minutes=5)))
                if status in ("done", "declined"):
                    task["volunteer_note"] = rng.choice(DONE_NOTES if status == "done" else DECLINE_REASONS)
                yield task


# ---------------------------------------------------------------- residents' needs, handled

# Each grid's residents' needs: two waiting, one turned into a request, one answered by a visit, one closed.
NEED_OUTCOMES = ("open", "open", "request", "visit", "closed")
NEED_REQUESTS = {"shopping": "elderly_care", "home_repair": "home_repair", "medical_escort": "home_medical"}
CLOSE_REASONS = ("子女已安排，暂不需要社区帮助", "已介绍到街道法律援助站，请带房产证前往咨询",
                 "不符合医疗救助条件，已电话说明原因")


def residents_needs(census: Census, rng: random.Random, clock: Clock) -> Iterator[Doc]:
    """Needs residents sent from their own page (server/web/resident_needs.py), as the grid worker and the
    secretary left them (server/services/needs.py): in every grid two still waiting on the secretary's page of the
    day and the worker's grid page, one turned into a service request, one answered by a visit, one closed with a
    reason the resident reads."""
    for index, grid in enumerate(census.grids.values()):
        for outcome in NEED_OUTCOMES:
            household = census.in_grid(index, rng)
            person = household.residents[0]
            category = rng.choice(list(NEED_REQUESTS)) if outcome == "request" else rng.choice(COMMON_NEEDS)
            sent = clock.daytime(rng, rng.uniform(0.2, 3) if outcome == "open" else rng.uniform(4, 20))
            need: Doc = {"_id": _id(rng, "need"), "type": "need", **household.routing, "household": household.id,
                         "resident": person.id, "category": category, "description": NEED_TEXT[category],
                         "status": "open", "created_by": accounts.user_id("jumin-" + person.id.split(":", 1)[1]),
                         "created_at": _iso(sent)}
            if outcome != "open":
                handled = sent + dt.timedelta(hours=rng.uniform(2, 48))
                handler = grid.worker if outcome != "closed" else grid.secretary
                need.update(handled_by=handler, handled_at=_iso(handled), updated_at=_iso(handled))
            if outcome == "request":
                code = NEED_REQUESTS[category]
                request = _request(rng, clock, census, household, code, census.categories[code], handled, 0.85)
                need.update(status="in_progress", request=request["_id"])
                yield request
            elif outcome == "visit":
                visit = {"_id": _id(rng, "visit"), "type": "visit", **household.routing, "household": household.id,
                         "resident": person.id, "kind": "needs_list", "visited_at": _iso(handled),
                         "notes": f"上门了解需求：{NEED_TEXT[category]}，已当面答复", "needs": [category],
                         "created_by": grid.worker, "created_at": _iso(handled)}
                need.update(status="done", visit=visit["_id"])
                yield visit
            elif outcome == "closed":
                need.update(status="closed", close_reason=rng.choice(CLOSE_REASONS))
            yield need


# ---------------------------------------------------------------- alerts and readings

ALERT_KINDS = {"sos": (15, "wristband"), "fall": (10, "wristband"), "no_water": (30, "water_meter"),
               "no_activity": (20, "wristband"), "heart_rate": (15, "wristband"), "battery_low": (10, "wristband")}


def alerts_and_readings(census: Census, rng: random.Random, clock: Clock) -> Iterator[Doc]:
    """Alerts the elderly living alone's wristbands and meters raised over the year, as the gateway writes
    them, with what the minute sweep added (family told of SOS and falls, the secretary of escalations), the
    worker's follow-up visit, and each device's latest readings (what a status line shows)."""
    kinds, weights = list(ALERT_KINDS), [w for w, _ in ALERT_KINDS.values()]
    for household in census.in_order():
        if not household.devices:
            continue
        grid, person = census.grids[household.routing["grid"]], household.residents[0]
        count = rng.choices(*ALERTS_PER_YEAR)[0]
        raised_at = [clock.now - dt.timedelta(days=rng.uniform(0, DAYS)) for _ in range(count)]
        if rng.random() < CURRENT_ALERT_SHARE:
            raised_at.append(clock.now - dt.timedelta(hours=rng.uniform(0.1, 8)))
        for raised in raised_at:
            yield from _alert(rng, clock, household, person, grid, rng.choices(kinds, weights)[0], raised)
        yield from _latest_readings(rng, clock, household)


def _alert(rng: random.Random, clock: Clock, household: Household, person: Person, grid: Grid, kind: str,
           raised: dt.datetime) -> Iterator[Doc]:
    device = household.devices[ALERT_KINDS[kind][1]]
    owner = person.id if kind == "no_activity" else device
    epoch = int(raised.timestamp())
    alert: Doc = {"_id": f"alert:{owner.split(':', 1)[1]}-{kind}-{epoch}", "type": "alert", **household.routing,
                  "household": household.id, "resident": person.id, "kind": kind, "status": "raised",
                  "device": device, "raised_at": _iso(raised), "detail": _alert_detail(rng, kind, raised),
                  "visibility": alert_visibility(privacy_choices(None), kind)}
    if kind in ("heart_rate", "battery_low", "no_water"):
        metric, unit, value = {"heart_rate": ("heart_rate", "bpm", float(rng.choice((38, 42, 135, 150)))),
                               "battery_low": ("battery", "%", float(rng.randint(3, 9))),
                               "no_water": ("water", "L", float(rng.randint(20_000, 90_000)))}[kind]
        yield _reading(device, household, raised, metric, unit, value)
    if may_notify_family(privacy_choices(None), kind):  # the first sweep after it was raised
        yield _notification(alert, "family", min(raised + dt.timedelta(minutes=1), clock.now))
    answered = dt.timedelta(minutes=rng.choice((rng.uniform(2, 25), rng.uniform(2, 25), rng.uniform(35, 120))))
    escalate = dt.timedelta(minutes=alerts.DEFAULT_ESCALATE_MINUTES)
    if answered >= escalate and raised + escalate <= clock.now:  # nobody answered in time: the secretary is told
        alert.update(status="escalated", escalated_at=_iso(raised + escalate))
        yield _notification(alert, "secretary", raised + escalate)
    if raised + answered <= clock.now:
        alert.update(status="acknowledged", acknowledged_by=grid.worker, acknowledged_at=_iso(raised + answered))
        visited = raised + answered + dt.timedelta(minutes=rng.uniform(10, 60))
        if visited <= clock.now:
            alert["status"] = "visiting"
            done = visited + dt.timedelta(hours=rng.uniform(0.5, 6))
            if done <= clock.now:
                alert.update(status="resolved", resolved_at=_iso(done))
                yield {"_id": _id(rng, "visit"), "type": "visit", **household.routing, "household": household.id,
                       "resident": person.id, "kind": "alert_follow_up", "visited_at": _iso(visited),
                       "notes": "告警后上门查看，老人无大碍", "needs": [], "created_by": grid.worker,
                       "created_at": _iso(done)}
    alert["updated_at"] = max(v for k, v in alert.items() if k.endswith("_at") and k != "updated_at")
    yield alert


def _alert_detail(rng: random.Random, kind: str, raised: dt.datetime) -> str:
    """The gateway's own wording (ble_gateway/rules.py)."""
    if kind in ("sos", "fall"):
        return f"{'SOS key pressed' if kind == 'sos' else 'fall detected'} (event {rng.randint(1, 5000)})"
    if kind == "no_water":
        hours = rng.uniform(12, 30)
        return f"no water used for {hours:.1f} h (last use {_iso(raised - dt.timedelta(hours=hours))})"
    if kind == "no_activity":
        days = rng.randint(2, 4)
        return f"no activity seen for {days} days (last {_iso(raised - dt.timedelta(days=days))})"
    if kind == "heart_rate":
        return f"heart rate {rng.choice((38, 42, 135, 150))} bpm, outside 50–120 since {_iso(raised)}"
    return f"battery {rng.randint(3, 9)}% since {_iso(raised)}"


def _notification(alert: Doc, audience: str, at: dt.datetime) -> Doc:
    """What alerts.sweep filed for the SMS sender, long since sent."""
    return {"_id": f"notification:{alert['_id'].split(':', 1)[1]}-{audience}", "type": "notification",
            **{k: alert[k] for k in ("street", "community", "grid", "household", "resident")},
            "alert": alert["_id"], "audience": audience, "status": "sent", "created_at": _iso(at)}


def _reading(device: str, household: Household, at: dt.datetime, metric: str, unit: str, value: float) -> Doc:
    """A reading as ble_gateway/documents.py writes it (its tag here: the moment it was heard)."""
    return {"_id": f"reading:{device.split(':', 1)[1]}-{int(at.timestamp())}-{metric}", "type": "reading",
            **household.routing, "household": household.id, "resident": household.residents[0].id,
            "device": device, "measured_at": _iso(at), "metric": metric, "value": value, "unit": unit}


def _latest_readings(rng: random.Random, clock: Clock, household: Household) -> Iterator[Doc]:
    """Each device's last few readings: heart rate and battery of the wristband, the meters' counters."""
    water, energy = float(rng.randint(20_000, 90_000)), round(rng.uniform(800, 4000), 1)
    for n in range(READINGS_PER_METRIC, 0, -1):
        ago = dt.timedelta(minutes=rng.randint(5, 50) + 60 * (n - 1) * rng.randint(1, 6))
        at = clock.now - ago
        yield _reading(household.devices["wristband"], household, at, "heart_rate", "bpm", float(rng.randint(58, 96)))
        water += rng.randint(5, 60)
        yield _reading(household.devices["water_meter"], household, at - dt.timedelta(minutes=3), "water", "L", water)
        energy = round(energy + rng.uniform(0.05, 0.8), 1)
        yield _reading(household.devices["electricity_meter"], household, at - dt.timedelta(minutes=7), "energy",
                       "kWh", energy)
    yield _reading(household.devices["wristband"], household, clock.now - dt.timedelta(minutes=rng.randint(20, 80)),
                   "battery", "%", float(rng.randint(15, 100)))


# ---------------------------------------------------------------- gateways and devices' health

def gateway_id(community: str) -> str:
    """The BLE gateway in a community's activity room (the console pairs devices to it)."""
    return f"gateway:{community.split(':', 1)[1]}-hall"


def gateways_and_device_health(census: Census, rng: random.Random, clock: Clock) -> Iterator[Doc]:
    """A gateway in each community's activity room, and each wristband's and meter's health as the gateway last
    wrote it (battery, last heard a few minutes ago): what a resident's safety page shows of their devices. The
    demo's devices name no gateway, so no silence sweep expects a heartbeat from these."""
    for community, name in census.communities.items():
        street = next(g.routing["street"] for g in census.grids.values() if g.routing["community"] == community)
        yield {"_id": gateway_id(community), "type": "gateway", "street": street, "community": community,
               "name": f"{name}活动室网关", "place": f"{name}居民活动室", "scan_seconds": 10}
    for household in census.in_order():
        for kind, device in household.devices.items():
            heard = clock.now - dt.timedelta(minutes=rng.randint(1, 50))
            battery = rng.randint(35, 100) if kind == "wristband" else rng.randint(60, 100)
            yield {"_id": f"device_health:{device.split(':', 1)[1]}", "type": "device_health", **household.routing,
                   "household": household.id, "resident": household.residents[0].id, "device": device,
                   "gateway": gateway_id(household.routing["community"]), "last_seen_at": _iso(heard),
                   "battery": battery, "battery_low": False, "rejected": 0, "updated_at": _iso(heard)}


def urgent_now(census: Census, rng: random.Random, clock: Clock) -> Iterator[Doc]:
    """In every community with wristband wearers, one SOS or fall of the last 40 minutes, still open (its grid
    worker may be on the way): what the secretary's page of the day puts first, at any size of the demo."""
    wearers: dict[str, list[Household]] = {}
    for household in census.in_order():
        if household.devices:
            wearers.setdefault(household.routing["community"], []).append(household)
    for households in wearers.values():
        household = rng.choice(households)
        grid = census.grids[household.routing["grid"]]
        raised = clock.now - dt.timedelta(minutes=rng.uniform(3, 40))  # too recent to be resolved (see _alert)
        yield from _alert(rng, clock, household, household.residents[0], grid, rng.choice(("sos", "fall")), raised)


SILENT_FOR_HOURS = (4, 20)  # how long the demo's door sensor has not been heard (alerts.DEVICE_SILENT_AFTER: 3 h)


def silent_equipment(census: Census, rng: random.Random, clock: Clock) -> Iterator[Doc]:
    """In every community with wristband wearers, a BLE gateway at the community service station (heard a minute
    ago; not the activity room's, which reads no paired device) and a door sensor it reads at one wearer's home,
    not heard for hours: the `device_silent` alert the minute sweep raised
    three hours after it fell silent, escalated to the secretary as the sweep escalates (alerts.py), what her page of
    the day lists under equipment gone silent. A demo running long without a real gateway then sees the gateway
    itself fall silent (alerts.GATEWAY_SILENT_AFTER), as a real installation would."""
    wearers: dict[str, list[Household]] = {}
    for household in census.in_order():
        if household.devices:
            wearers.setdefault(household.routing["community"], []).append(household)
    for community, households in wearers.items():
        household = rng.choice(households)
        street, key = household.routing["street"], community.split(":", 1)[1]
        gateway = f"gateway:{key}-office"
        yield {"_id": gateway, "type": "gateway", "street": street, "community": community, "name": "社区服务站网关",
               "place": "社区服务站"}
        yield {"_id": f"gateway_health:{key}-office", "type": "gateway_health", "street": street,
               "community": community, "gateway": gateway, "heartbeat_at": _iso(clock.now - dt.timedelta(minutes=1)),
               "started_at": _iso(clock.now - dt.timedelta(days=rng.randint(2, 30))), "scanning": True}
        device = f"device:{household.id.split(':', 1)[1]}-1-door_sensor"
        about = {**household.routing, "household": household.id, "resident": household.residents[0].id}
        registered = clock.now - dt.timedelta(days=rng.randint(30, 200))
        yield {"_id": device, "type": "device", **about, "kind": "door_sensor", "gateway": gateway,
               "mac": ":".join(f"{b:02X}" for b in rng.randbytes(6)), "model": "门磁传感器 BTHome",
               "installed_at": registered.date().isoformat(), "registered_at": _iso(registered)}
        seen = clock.now - dt.timedelta(hours=rng.uniform(*SILENT_FOR_HOURS))
        yield {"_id": f"device_health:{device.split(':', 1)[1]}", "type": "device_health", **about, "device": device,
               "gateway": gateway, "last_seen_at": _iso(seen), "battery": rng.randint(2, 40), "updated_at": _iso(seen)}
        raised = seen + alerts.DEVICE_SILENT_AFTER + dt.timedelta(seconds=rng.uniform(0, 60))  # the next sweep
        escalated = raised + dt.timedelta(minutes=alerts.DEFAULT_ESCALATE_MINUTES)
        alert = {"_id": f"{alerts.SILENT_PREFIX}device-{device.split(':', 1)[1]}-{int(seen.timestamp())}",
                 "type": "alert", **about, "kind": "device_silent", "device": device, "raised_at": _iso(raised),
                 "visibility": alert_visibility(privacy_choices(None), "device_silent"), "status": "raised"}
        if escalated <= clock.now:
            alert.update(status="escalated", escalated_at=_iso(escalated))
            yield _notification(alert, "secretary", escalated)
        yield alert


# ---------------------------------------------------------------- surveys

def surveys(census: Census, rng: random.Random, clock: Clock) -> Iterator[Doc]:
    """The monthly satisfaction survey: some residents of each community answer each month, a little more
    satisfied as the year goes on (plan §4.5: 76% → 90%)."""
    tz = clock.calendar.tz
    by_community: dict[str, list[Person]] = {}
    for household in census.in_order():
        by_community.setdefault(household.routing["community"], []).extend(
            r for r in household.residents if r.age >= 18)
    routing_of = {g.routing["community"]: g.routing for g in census.grids.values()}
    this_month = clock.now.astimezone(tz).replace(day=1, hour=9, minute=0, second=0, microsecond=0)
    for month_back in range(11, -1, -1):
        years, month = divmod(this_month.month - 1 - month_back, 12)
        first = this_month.replace(year=this_month.year + years, month=month + 1)
        days = min(27.0, (clock.now - first).total_seconds() / 86400)  # this month: only until now
        if days <= 0:
            continue
        satisfied = 0.74 + 0.14 * (11 - month_back) / 11
        for community, people in by_community.items():
            count = max(MIN_SURVEY_ANSWERS, round(len(people) / 2.5 * SURVEY_ANSWERS_PER_HOUSEHOLD_MONTH))
            for person in rng.sample(people, k=min(count, len(people))):
                at = first + dt.timedelta(days=rng.uniform(0, days))
                month = at.astimezone(tz).strftime("%Y-%m")
                user = accounts.user_id("jumin-" + person.id.split(":", 1)[1])
                overall = rng.choice((4, 5)) if rng.random() < satisfied else rng.choice((1, 2, 3, 3))
                doc = {"_id": f"survey_response:{community.split(':', 1)[1]}:{month}:{user.split(':', 1)[1]}",
                       "type": "survey_response", "street": routing_of[community]["street"], "community": community,
                       "month": month, "overall": overall, "created_by": user, "created_at": _iso(at)}
                if rng.random() < 0.2:
                    doc["comment"] = rng.choice(SURVEY_COMMENTS)
                yield doc


# ---------------------------------------------------------------- access requests

def access_requests(census: Census, rng: random.Random, clock: Clock) -> Iterator[Doc]:
    """Grid workers' requests to see elderly residents' health data: a few waiting for the secretary, some
    refused or approved long ago (expired)."""
    elderly: dict[str, list[tuple[Household, Person]]] = {}
    for household in census.in_order():
        elderly.setdefault(household.routing["community"], []).extend(
            (household, r) for r in household.residents if r.age >= 60)
    for people in elderly.values():
        chosen = rng.sample(people, k=min(PENDING_ACCESS_REQUESTS + DECIDED_ACCESS_REQUESTS, len(people)))
        for n, (household, person) in enumerate(chosen):
            grid = census.grids[household.routing["grid"]]
            pending = n < PENDING_ACCESS_REQUESTS
            at = clock.now - dt.timedelta(hours=rng.uniform(1, 40) if pending else rng.uniform(30, 300) * 24)
            doc: Doc = {"_id": _id(rng, "access_request"), "type": "access_request", **household.routing,
                        "household": household.id, "resident": person.id, "requester": grid.worker,
                        "categories": ["health"], "purpose": rng.choice(ACCESS_PURPOSES), "hours": 72,
                        "status": "pending", "created_by": grid.worker, "created_at": _iso(at)}
            if not pending:
                decided = at + dt.timedelta(hours=rng.uniform(1, 20))
                approve = rng.random() < 0.6
                doc.update(status="approved" if approve else "refused", decided_by=grid.secretary,
                           decided_at=_iso(decided), decision_note="同意，用于上门随访" if approve else "理由不充分")
                if approve:
                    doc["expires_at"] = _iso(decided + dt.timedelta(hours=72))
            yield doc


# ---------------------------------------------------------------- the time bank

TIME_BANK_SHARE = 0.3  # of the households a volunteer looks after, those whose help goes through the time bank
HELP_SESSIONS_PER_YEAR = (1, 3)  # per such household: needs a volunteer did and claimed hours for
HELP_MINUTES = (60, 90, 120, 180)
PENDING_CLAIM_SHARE, DISPUTED_CLAIM_SHARE = 0.15, 0.05  # of the last fortnight's claims: waiting, disputed
PARTNER_SHOPS = ("社区便民超市", "益民药店")  # organisations where volunteers spend points, one per community


def time_bank(census: Census, rng: random.Random, clock: Clock) -> Iterator[Doc]:
    """A year of help given by the grids' volunteers to the households they look after: each a done need, the
    volunteer's claim and, once the resident confirmed, the transfer of hours; the last fortnight's claims partly
    still waiting or disputed, and one claim a grid waiting from the last days; a partner shop per community.
    No resident's hours go below the floor (a confirmation past it would be refused). Points are minted for the
    help (and surveys, votes) by the minting job when the demo is loaded (server/services/rewards.py mint_all),
    dated at each event, and spent then (server/services/demo.py spend_points)."""
    owed: dict[str, int] = {}  # resident -> minutes received
    households = census.in_order()
    shops = {}
    for n, community in enumerate(sorted({h.routing["community"] for h in households})):
        shops[community] = f"organisation:{community.removeprefix('community:')}-shop"
        yield {"_id": shops[community], "type": "organisation", "street": households[0].routing["street"],
               "community": community, "name": PARTNER_SHOPS[n % len(PARTNER_SHOPS)], "kind": "firm"}
    sessions = [(h, clock.daytime(rng, rng.uniform(0, DAYS))) for h in households
                if h.volunteers and rng.random() < TIME_BANK_SHARE for _ in range(rng.randint(*HELP_SESSIONS_PER_YEAR))]
    for grid in census.grids.values():
        looked_after = [h for h in households if h.volunteers and h.routing["grid"] == grid.id]
        if looked_after:
            sessions.append((rng.choice(looked_after), clock.daytime(rng, rng.uniform(0.2, 3))))
        theirs = [h for h in looked_after if grid.volunteers[0] in h.volunteers]
        if theirs:  # help the grid's first volunteer gave yesterday and has yet to claim (/timebank offers it)
            household = rng.choice(theirs)
            at = clock.daytime(rng, rng.uniform(0.5, 1.5))
            yield _done_need(rng, household, rng.choice(household.residents), grid.volunteers[0], at)
    for household, at in sorted(sessions, key=lambda s: s[1]):
        person, volunteer, minutes = rng.choice(household.residents), rng.choice(household.volunteers), \
            rng.choice(HELP_MINUTES)
        recent = clock.now - at < rules.CLAIM_EXPIRES_AFTER
        state = rng.choices(("claimed", "disputed", "confirmed"),
                            (PENDING_CLAIM_SHARE, DISPUTED_CLAIM_SHARE, 1))[0] if recent else "confirmed"
        if clock.now - at < dt.timedelta(days=3):
            state = "claimed"  # the last days' claims: waiting for the resident
        if state == "confirmed" and owed.get(person.id, 0) + minutes > -rules.HOURS_FLOOR:
            continue  # past the floor: this help was not asked of the time bank
        # Claimed an hour after the help, answered within two days, never after now.
        claimed = min(at + dt.timedelta(hours=1), clock.now - dt.timedelta(minutes=2))
        answered = min(claimed + dt.timedelta(hours=rng.uniform(2, 48)), clock.now - dt.timedelta(minutes=1))
        yield from _help(rng, household, person, volunteer, minutes, (at, claimed, answered), state)
        if state == "confirmed":
            owed[person.id] = owed.get(person.id, 0) + minutes


def _done_need(rng: random.Random, household: Household, person: Person, volunteer: str, at: dt.datetime) -> Doc:
    """A need a volunteer met and did."""
    category = rng.choice(("shopping", "companionship", "medical_escort", "cleaning"))
    return {"_id": _id(rng, "need"), "type": "need", **household.routing, "household": household.id,
            "resident": person.id, "category": category, "description": NEED_TEXT[category], "status": "done",
            "assigned_to": volunteer, "created_by": volunteer, "created_at": _iso(at)}


def _help(rng: random.Random, household: Household, person: Person, volunteer: str, minutes: int,
          times: tuple[dt.datetime, dt.datetime, dt.datetime], state: str) -> Iterator[Doc]:
    """One piece of help: the need, the claim, and what the resident's answer did (times: helped, claimed,
    answered)."""
    at, claimed, answered = times
    need = _done_need(rng, household, person, volunteer, at)
    claim = {"_id": rules.claim_id(need["_id"]), "type": "claim", **household.routing, "household": household.id,
             "resident": person.id, "task": need["_id"], "minutes": minutes, "status": state,
             "created_by": volunteer, "created_at": _iso(claimed)}
    yield need
    if state == "claimed":
        yield claim
        return
    claim.update(decided_by=f"user:jumin-{person.id.removeprefix('resident:')}", decided_at=_iso(answered))
    if state == "disputed":
        yield {**claim, "dispute_note": "服务时间没有这么长"}
        return
    transfer = rules.transfer_id_of_claim(claim["_id"])
    yield {**claim, "transfer": transfer}
    yield {"_id": transfer, "type": "transfer", "street": household.routing["street"],
           "community": household.routing["community"], "ledger": "hours", "from_account": person.id,
           "to_account": volunteer, "amount": minutes, "kind": "confirmation", "claim": claim["_id"],
           "created_by": claim["decided_by"], "created_at": _iso(answered)}


# ---------------------------------------------------------------- matters and votes

# Per community: (title, kind, electorate, rule, opened days ago, days open, share voting, share agreeing). The
# last is still open; the others are past their closing time, counted and published when the demo is loaded
# (deliberation.close_due: signed and filed like any close).
MATTERS = (
    ("使用专项维修资金更换屋面防水", "household_assembly", "household", "civil_code_278_major", 120, 21, 0.68, 0.85),
    ("社区活动中心开放时间调整", "committee_decision", "committee", "committee_two_thirds", 40, 3, 1.0, 0.8),
    ("垃圾分类投放点位置调整", "household_assembly", "household", "households_three_quarters", 2, 7, 0.1, 0.75),
)
MATTER_BODY = "请各位居民（户代表）在表决时间内投票；可由网格员入户代录。"


def matters_and_votes(census: Census, rng: random.Random, clock: Clock) -> Iterator[Doc]:
    """Each community's votes: two past (a household vote under Civil Code art. 278, a committee decision) and one
    open (3/4 of households); ballots recorded at the door by the grid worker (residents have no
    accounts in the demo), the committee's members voting themselves."""
    for community in sorted({g.routing["community"] for g in census.grids.values()}):
        grids = [g for g in census.grids.values() if g.routing["community"] == community]
        homes = sorted((h for h in census.in_order() if h.routing["community"] == community), key=lambda h: h.id)
        committee = sorted({grids[0].secretary, *(g.worker for g in grids)})
        for title, kind, electorate, rule, days_ago, days_open, voting, agreeing in MATTERS:
            key = rng.randbytes(16).hex()
            opens = clock.daytime(rng, days_ago)
            closes = opens + dt.timedelta(days=days_open)
            entries = ([{"voter": u} for u in committee] if electorate == "committee" else
                       [{"voter": h.id, "area": h.area} for h in homes])
            where = {"street": grids[0].routing["street"], "community": community}
            matter_id = f"matter:{key}"
            yield {"_id": f"matter_roll:{key}", "type": "matter_roll", **where, "matter": matter_id,
                   "entries": entries, "hash": deliberation.roll_hash(entries), "created_at": _iso(opens)}
            yield {"_id": matter_id, "type": "matter", **where, "title": title, "body": MATTER_BODY, "kind": kind,
                   "options": list(YES_NO_ABSTAIN), "electorate": electorate, "opens_at": _iso(opens),
                   "closes_at": _iso(closes), "mode": "open", "rule": rule,
                   "conditions": [c.as_record() for c in RULES[rule].conditions], "status": "open",
                   "roll_size": len(entries), "roll_hash": deliberation.roll_hash(entries),
                   "created_by": grids[0].secretary, "created_at": _iso(opens)}
            until = min(closes, clock.now - dt.timedelta(minutes=5))
            for entry in entries:
                if rng.random() >= voting:
                    continue
                choice = "yes" if rng.random() < agreeing else rng.choice(("no", "no", "abstain"))
                at = opens + (until - opens) * rng.random()
                yield _ballot(rng, matter_id, where, entry["voter"], choice, at,
                              census.households.get(entry["voter"]), census)


def _ballot(rng: random.Random, matter: str, where: Doc, voter: str, choice: str, at: dt.datetime,
            household: Household | None, census: Census) -> Doc:
    """A committee member's own vote, or a household's recorded at the door by its grid worker."""
    doc: Doc = {"_id": deliberation.ballot_id(matter, voter), "type": "ballot", **where, "matter": matter,
                "voter": voter, "choice": choice, "channel": "own", "created_by": voter,
                "receipt": deliberation.format_receipt(rng.randbytes(6).hex()), "created_at": _iso(at)}
    if household is not None:
        worker = census.grids[household.routing["grid"]].worker
        adults = [r.id for r in household.residents if r.age >= 18] or [household.residents[0].id]
        doc.update(household=household.id, resident=adults[0], channel="door", assisted_by=worker, created_by=worker)
    return doc


# ---------------------------------------------------------------- rewards for points (issue 16 item 4)

REWARDS = (("理发一次", "service", 30, 20), ("上门维修一次", "service", 60, 10), ("大米 5 公斤", "goods", 50, 30),
           ("体检套餐", "service", 120, 5))  # name, kind, points, stock: what each community's shop offers


def rewards_catalogue(census: Census, rng: random.Random, clock: Clock) -> Iterator[Doc]:
    """Each community's partner shop (time_bank) offers the same few rewards, put up by the secretary a year ago.
    Vouchers need the installation's key: they are bought and used after loading (demo.spend_points)."""
    secretaries = {g.routing["community"]: (g.secretary, g.routing["street"]) for g in census.grids.values()}
    for community, (secretary, street) in sorted(secretaries.items()):
        key = community.removeprefix("community:")
        for n, (name, kind, points, stock) in enumerate(REWARDS, start=1):
            yield {"_id": f"reward:{key}-{n}", "type": "reward", "street": street, "community": community,
                   "organisation": f"organisation:{key}-shop", "name": name, "kind": kind, "points": points,
                   "stock": stock, "active": True, "created_by": secretary,
                   "created_at": _iso(clock.now - dt.timedelta(days=DAYS - 1))}
# ---------------------------------------------------------------- the resource pool

# Per community: (name, kind, owner kind, place, capacity, open hours (weekdays, opens, closes), who may book, needs
# approval, how a session is booked (share of sessions booked, until how many days ago; then the share after; whole
# sessions or some hours of one), share of bookings checked in). The hall is used; the meeting room fell idle three
# months ago (flagged: change its hours); the school's sports ground lets few book it and is rarely used (flagged:
# open it to other groups).
VENUES = (
    ("社区活动室", "room", "community", "社区服务中心二楼", 40, ((1, 3, 5), 9, 12), ("resident", "volunteer",
     "grid_worker", "secretary"), True, (0.95, 0, 0.95, "whole"), 0.93),
    ("社区会议室", "room", "community", "社区服务中心一楼", 12, ((0, 1, 2, 3, 4), 14, 17), ("resident", "volunteer",
     "grid_worker", "secretary"), False, (0.6, 90, 0.1, "some"), 0.8),
    ("学校操场", "room", "school", "第一小学", 100, ((5, 6), 8, 12), ("grid_worker", "secretary"), False,
     (0.1, 0, 0.1, "some"), 0.7),
    # A self-service locker of tools, open round the clock, lent an hour at a time with the keeper's approval and
    # picked up within the hour: little used by the hour (flagged), but bookable whenever a journey runs.
    ("共享工具柜", "equipment", "community", "社区服务中心门口", 1, ((0, 1, 2, 3, 4, 5, 6), 0, 24),
     ("resident", "volunteer", "grid_worker", "secretary"), True, (0.05, 0, 0.05, "one"), 0.8),
)
LOCKER_GRACE = 60  # minutes: a tool is picked up any time within the hour booked
VENUE_PURPOSES = ("太极拳练习", "老年合唱团排练", "书法班", "居民议事会", "儿童绘本阅读", "志愿者培训")
CHINA = dt.timezone(dt.timedelta(hours=8))


def resource_pool(census: Census, rng: random.Random, clock: Clock) -> Iterator[Doc]:
    """Each community's venues with a year of sessions booked, checked in (by the booker's scan or the keeper)
    or not (a no-show), two blackouts on one day; a few bookings of the coming week."""
    now = clock.now.astimezone(CHINA)
    for community in sorted({g.routing["community"] for g in census.grids.values()}):
        grids = [g for g in census.grids.values() if g.routing["community"] == community]
        where = {"street": grids[0].routing["street"], "community": community}
        bookers = [p for g in grids for p in (g.worker, *g.volunteers)]
        keeper = grids[0].worker
        for n, (name, kind, owner, place, capacity, (days, opens, closes), who, approval, booked, shown) in \
                enumerate(VENUES, 1):
            resource = f"resource:{community.removeprefix('community:')}-v{n}"
            secret = pool_rules.venue_secret(clock.code_key, resource)  # its daily codes' (never stored)
            twice = (now - dt.timedelta(days=20 + n)).date()  # a day with two blackouts, both count
            yield {"_id": resource, "type": "resource", **where, "name": name, "kind": kind, "owner_kind": owner,
                   **({"owner": community} if owner == "community" else {}), "place": place, "capacity": capacity,
                   "open_hours": [{"weekday": d, "opens": opens, "closes": closes} for d in days],
                   "blackouts": [{"date": twice.isoformat(), "from_hour": 0, "to_hour": opens + 1,
                                  "reason": "消防检查"},
                                 {"date": twice.isoformat(), "from_hour": closes - 1, "to_hour": 24,
                                  "reason": "设备维修"}],
                   "who_may_book": list(who), "book_ahead_days": 14, "max_hours": min(closes - opens, 3),
                   "approval": approval, "grace_minutes": LOCKER_GRACE if kind == "equipment" else 15,
                   "keepers": [keeper],
                   "code_hashes": pool_rules.code_hashes(secret, now.astimezone(CHINA).date()),
                   "created_by": grids[0].secretary,
                   "created_at": _iso(clock.now - dt.timedelta(days=DAYS))}
            share, until, after, length = booked
            staff = [p for p in bookers if "wangge" in p or "shuji" in p] or bookers
            for days_ago in range(DAYS - 1, -8 if kind == "room" else 1, -1):  # the locker: nothing ahead
                day = (now - dt.timedelta(days=days_ago)).date()
                if day.weekday() not in days or day == twice or rng.random() >= (share if days_ago >= until
                                                                                  else after):
                    continue
                hours = closes - opens if length == "whole" else 1 if length == "one" else rng.randint(1, 3)
                start = dt.datetime.combine(day, dt.time(opens + rng.randint(0, closes - opens - hours)), CHINA)
                if start + dt.timedelta(hours=hours) > now and start <= now:
                    continue  # the session under way: nothing to show yet either way
                booker = rng.choice(bookers if "resident" in who else staff)
                yield from _venue_booking(rng, where, (resource, secret, keeper, approval), start, hours, booker,
                                          clock, came=None if start > now else rng.random() < shown)


def _venue_booking(rng: random.Random, where: Doc, venue: tuple[str, str, str, bool], start: dt.datetime, hours: int,
                   booker: str, clock: Clock, came: bool | None) -> Iterator[Doc]:
    """One booking's slots (confirmed, by the keeper where the venue needs approval, or a no-show), and its
    check-in if they came (None: still ahead), by that day's code. `venue`: the resource, its codes' secret, its
    keeper, whether it needs approval."""
    resource, secret, keeper, approval = venue
    first = pool_rules.slot_id(resource, start)
    made = min(max(start - dt.timedelta(days=rng.randint(1, 7)), clock.now - dt.timedelta(days=DAYS)),
               clock.now - dt.timedelta(hours=1))
    for slot in pool_rules.slots_of(start, hours):
        yield {"_id": pool_rules.slot_id(resource, slot), "type": "booking", **where, "resource": resource,
               "slot_start": slot.isoformat(), "group": first, "hours": hours, "people": rng.randint(3, 12),
               "purpose": rng.choice(VENUE_PURPOSES), "status": "no_show" if came is False else "confirmed",
               "booked_by": booker, "created_at": _iso(made),
               **({"decided_by": keeper, "decided_at": _iso(min(made + dt.timedelta(hours=2), clock.now))}
                  if approval else {}),
               **({"decided_at": _iso(start + dt.timedelta(minutes=16))} if came is False else {})}
    if came:
        scanned = rng.random() < 0.7
        yield {"_id": pool_rules.checkin_id(first), "type": "checkin", **where, "resource": resource,
               "booking": first, "method": "scan" if scanned else "keeper",
               **({"code": pool_rules.day_code(secret, start.astimezone(CHINA).date())} if scanned else {}),
               "created_by": booker if scanned else keeper,
               "created_at": _iso(start + dt.timedelta(minutes=rng.randint(-10, 10)))}
# ---------------------------------------------------------------- hearings and meetings

JOINT_MEETING_AGENDA = (("本月民生工作通报", "听取各网格反映的问题"), ("老旧小区改造进度", "楼道堆物清理安排"),
                        ("夏季防汛准备", "社区食堂运营情况"), ("冬季供暖问题汇总", "志愿服务积分兑换"))
MEETING_PLACE = "社区党群服务中心二楼会议室"
DEMO_OPINIONS = ("居民反映：希望会上说明费用怎么分摊", "低层住户担心采光，建议听取他们的意见",
                 "建议把表决时间延长到周末，方便上班族参加", "支持，希望尽快实施")
MINUTES = "会议由社区书记主持，各网格员通报情况，到会居民发表意见，会议形成以下决定。"
DECISIONS = ("会后由网格员逐户征求意见", "同意按方案实施，报街道备案", "下次会议继续讨论")


def meetings_and_hearings(census: Census, rng: random.Random, clock: Clock) -> Iterator[Doc]:
    """Per community: a joint meeting every month and a hearing on each of its matters, published, with opinions
    posted by the grid workers before, attendance (residents named only by consent: about half), and minutes; the
    hearing on the open matter is still to come, its opinions coming in. No paper ballots (the demo's votes are
    recorded at the door) and no hidden opinion (a hiding is filed in the filing log, which the history does not
    write)."""
    for community in sorted(census.communities):
        grids = [g for g in census.grids.values() if g.routing["community"] == community]
        adults = [(h, p) for h in census.in_order() if h.routing["community"] == community for p in h.residents
                  if p.age >= 18]
        where = {"street": grids[0].routing["street"], "community": community}
        plans = [(clock.daytime(rng, 30 * month + 10), "joint_meeting", f"{month}月社区联席会议",
                  [{"title": t} for t in JOINT_MEETING_AGENDA[month % len(JOINT_MEETING_AGENDA)]])
                 for month in range(1, 12)]
        for matter in census.matters:
            if matter["community"] == community and matter["kind"] == "household_assembly":
                starts = dt.datetime.fromisoformat(matter["opens_at"]) + dt.timedelta(days=2)
                if matter["status"] == "open" and dt.datetime.fromisoformat(matter["closes_at"]) > clock.now:
                    starts = max(starts, clock.now + dt.timedelta(days=2))
                plans.append((starts, "hearing", f"听证会：{matter['title']}",
                              [{"title": matter["title"], "matter": matter["_id"]}, {"title": "其他事项"}]))
        for starts, kind, title, agenda in sorted(plans, key=lambda plan: plan[0]):
            yield from _meeting(rng, clock, where, grids, adults, starts, kind, title, agenda)


def _meeting(rng: random.Random, clock: Clock, where: Doc, grids: list[Grid], adults: list[tuple[Household, Person]],
             starts: dt.datetime, kind: str, title: str, agenda: list[Doc]) -> Iterator[Doc]:
    key = rng.randbytes(16).hex()
    meeting_id = f"meeting:{key}"
    announced = starts - dt.timedelta(days=7)
    for n, grid in enumerate(rng.sample(grids, min(len(grids), rng.randint(0, 2)))):
        at = announced + dt.timedelta(hours=20 + 30 * n)
        if at < clock.now:
            yield {"_id": f"opinion:{key}:{rng.randbytes(8).hex()}", "type": "opinion", **where, "meeting": meeting_id,
                   "text": rng.choice(DEMO_OPINIONS), "author_name": f"第{grid.id[-2:].lstrip('0')}网格网格员",
                   "created_by": grid.worker, "created_at": _iso(at)}
    meeting: Doc = {"_id": meeting_id, "type": "meeting", **where, "kind": kind, "title": title,
                    "starts_at": _iso(starts), "place": MEETING_PLACE, "agenda": agenda, "status": "published",
                    "published_at": _iso(announced), "created_by": grids[0].secretary, "created_at": _iso(announced)}
    if starts < clock.now:
        present = rng.sample(adults, min(len(adults), rng.randint(3, 6)))
        named = []
        for household, person in present:
            consents = rng.random() < 0.5
            named += [person.name] if consents else []
            yield {"_id": f"attendance:{key}:{person.id}", "type": "attendance", **household.routing,
                   "meeting": meeting_id, "resident": person.id, "household": household.id, "named": consents,
                   "created_by": grids[0].secretary, "created_at": _iso(starts)}
        ended = starts + dt.timedelta(hours=2)
        meeting.update(headcount=len(present) + rng.randint(5, 25), named_attendees=sorted(named), minutes=MINUTES,
                       decisions=[{"text": rng.choice(DECISIONS), **({"matter": i["matter"]} if "matter" in i else {})}
                                  for i in agenda],
                       minutes_published_at=_iso(min(ended + dt.timedelta(days=1), clock.now)))
    yield meeting
# ---------------------------------------------------------------- supervision and evaluation (issue 18)

MEDIATIONS_PER_GRID = 4
MEDIATION_STORIES = {
    "noise": ("楼上夜间装修，影响老人休息", "楼下开店音响声音太大"),
    "water_leak": ("楼上卫生间漏水到楼下天花板", "空调冷凝水滴到楼下阳台"),
    "parking": ("车辆长期占用他人车位", "电动车堵住单元门口"),
    "pets": ("邻居的狗夜里叫，楼道有粪便",),
    "rubbish": ("楼道堆放杂物，存在消防隐患",),
}
# What a session's minutes say (each session's note: mediation.minutes_entry).
MEDIATION_MINUTES = ("双方到场，各自说明了情况和诉求，约定下周再谈。", "请物业工作人员一起查看了现场，问题确实存在。",
                     "一方未到场，电话沟通后同意下次参加。", "双方同意按调解员提出的方案处理，约定期限内完成。",
                     "双方各让一步，口头达成一致，下次签订书面协议。")
# Concluded cases, by how they ended (weights): most reach an agreement, most agreements hold.
MEDIATION_ENDINGS = (("kept", 60), ("broken", 8), ("no_agreement", 20), ("withdrawn", 7), ("agreement", 5))
# Each community's service projects and their last two half-years' scores (PASS_MARK is 60): one doing well, one
# that failed once and recovered, one that failed both (withdrawal proposed, the vote open).
SERVICE_PROJECTS = (
    ("居家养老上门服务", "home_care", "康乐居家养老服务中心", "为 80 户独居、空巢老人每周上门服务两次，满意度 85% 以上",
     480_000, (82, 86)),
    ("长者食堂", "elderly_canteen", "邻里餐饮有限公司", "每天供应午餐 120 份，60 岁以上老人优惠，食品安全零事故",
     360_000, (57, 68)),
    ("日间照料中心", "day_care", "安心照护服务社", "每天照料 20 位失能、半失能老人，提供康复训练",
     300_000, (55, 52)),
)
EVALUATORS = ("武汉市社会组织评估中心", "湖北众信第三方评估所")
REPORT_PDF = (b"%PDF-1.4\n% demo evaluation report\n1 0 obj << /Type /Catalog >> endobj\n"
              b"trailer << /Root 1 0 R >>\n%%EOF\n")
SURVEY_SAMPLE_SHARE = 0.02  # of a community's households, each month (at least 2 a grid: sampling.MIN_PER_GRID)
SURVEY_SAMPLE_MONTHS = 2  # the last months with a sample: this one (answers still coming in) and the one before
DOOR_RESPONSE_RATE = 0.75


def supervision_and_evaluation(census: Census, rng: random.Random, clock: Clock) -> Iterator[Doc]:
    """Mediation cases in every grid (most concluded, some open), each community's service projects with their
    half-yearly evaluations (one proposed for withdrawal, its committee vote open), and the last months' survey
    samples answered at the door. (Closures confirmed at the window are the requests' own: `_apply`.)"""
    yield from _mediations(census, rng, clock)
    for community in sorted({g.routing["community"] for g in census.grids.values()}):
        yield from _projects(census, rng, clock, community)
    yield from _survey_samples(census, rng, clock)


def _mediations(census: Census, rng: random.Random, clock: Clock) -> Iterator[Doc]:
    endings, weights = zip(*MEDIATION_ENDINGS, strict=True)
    for grid in census.grids.values():
        homes = [h for h in census.in_order() if h.routing["grid"] == grid.id and h.residents]
        if len(homes) < 2:  # a dispute between neighbours needs two homes (a tiny demo, `--residents 40`)
            continue
        for _ in range(MEDIATIONS_PER_GRID):
            home, neighbour = rng.sample(homes, 2)
            kind = rng.choice(list(MEDIATION_STORIES))
            opened = clock.daytime(rng, rng.uniform(1, DAYS - 30))
            age = (clock.now - opened).days
            after = sorted(dt.timedelta(days=rng.uniform(0, 20)) for _ in range(rng.randint(1, 3)))
            sessions = [opened + d for d in after if opened + d < clock.now]
            status = rng.choices(endings, weights)[0] if age > 40 else rng.choice(("open", "open", "agreement"))
            status = "open" if not sessions and status != "withdrawn" else status
            doc = {"_id": _id(rng, "mediation"), "type": "mediation", **grid.routing,
                   "resident": home.residents[0].id, "household": home.id, "kind": kind, "mediator": grid.worker,
                   "parties": f"{home.residents[0].name}（{home.address}）与 {neighbour.address} 住户",
                   "dispute": rng.choice(MEDIATION_STORIES[kind]),
                   "sessions": [{"at": _iso(s), "by": grid.worker} for s in sessions], "status": status,
                   "created_by": grid.worker, "created_at": _iso(opened)}
            if sessions:  # drawn apart (seeded by the case), so that the rest of the demo draws as before
                said = random.Random(doc["_id"])
                doc["minutes"] = "\n".join(minutes_entry(s, said.choice(MEDIATION_MINUTES)) for s in sessions)
            if status != "open":
                concluded = (sessions[-1] if sessions else opened) + dt.timedelta(hours=2)
                doc["concluded_at"] = _iso(concluded)
                if status in ("kept", "broken"):
                    doc["followed_up_at"] = _iso(min(concluded + dt.timedelta(days=30), clock.now))
            doc["updated_at"] = max(doc["created_at"], doc.get("followed_up_at") or doc.get("concluded_at") or "")
            yield doc


def _half_years(clock: Clock, count: int) -> list[tuple[str, dt.datetime]]:
    """The last `count` half-years ended before now, oldest first: their names (2026-H1) and when they ended."""
    now = clock.now.astimezone(clock.calendar.tz)
    year, half = (now.year, 1) if now.month > 6 else (now.year - 1, 2)
    periods = []
    for _ in range(count):
        end = dt.datetime(year + (half == 2), 1 if half == 2 else 7, 1, tzinfo=clock.calendar.tz)
        periods.append((f"{year}-H{half}", end.astimezone(dt.UTC)))
        year, half = (year, 1) if half == 2 else (year - 1, 2)
    return periods[::-1]


def _projects(census: Census, rng: random.Random, clock: Clock, community: str) -> Iterator[Doc]:
    grids = [g for g in census.grids.values() if g.routing["community"] == community]
    where, secretary = {"street": grids[0].routing["street"], "community": community}, grids[0].secretary
    periods = _half_years(clock, 2)
    for name, kind, provider, targets, budget, scores in SERVICE_PROJECTS:
        key = rng.randbytes(16).hex()
        project = {"_id": f"service_project:{key}", "type": "service_project", **where, "name": name, "kind": kind,
                   "provider": provider, "targets": targets, "budget": budget,
                   "starts_on": (periods[0][1] - dt.timedelta(days=182)).date().isoformat(), "status": "active",
                   "created_by": secretary,  # within the history's year, though it started before
                   "created_at": _iso(max(periods[0][1] - dt.timedelta(days=190), clock.now - dt.timedelta(days=360)))}
        evaluations = []
        for (period, ended), score in zip(periods, scores, strict=True):
            at = min(ended + dt.timedelta(days=20), clock.now - dt.timedelta(hours=1))
            parts = [("服务质量", score + rng.randint(-4, 4)), ("目标完成", score), ("居民满意度", score)]
            parts[2] = (parts[2][0], 3 * score - parts[0][1] - parts[1][1])  # the mean is the score
            evaluations.append({
                "_id": f"project_evaluation:{key}:{period}", "type": "project_evaluation", **where,
                "project": project["_id"], "period": period, "scores": [{"criterion": c, "score": s} for c, s in parts],
                "score": score, "passed": score >= projects.PASS_MARK, "evaluator": rng.choice(EVALUATORS),
                "created_by": secretary, "created_at": _iso(at),
                "_attachments": {"report.pdf": {"content_type": "application/pdf",
                                                "data": base64.b64encode(REPORT_PDF).decode()}}})
        if not evaluations[-1]["passed"] and not evaluations[-2]["passed"]:
            proposed = _at(evaluations[-1]["created_at"])
            committee = sorted({secretary, *(g.worker for g in grids)})
            entries = [{"voter": u} for u in committee]
            matter_key = rng.randbytes(16).hex()
            yield {"_id": f"matter_roll:{matter_key}", "type": "matter_roll", **where,
                   "matter": f"matter:{matter_key}", "entries": entries, "hash": deliberation.roll_hash(entries),
                   "created_at": _iso(proposed)}
            yield {"_id": f"matter:{matter_key}", "type": "matter", **where, "title": f"撤回服务项目：{name}",
                   "body": f"服务项目“{name}”（{provider}）连续两次评估未达标，按规定提议撤回。",
                   "kind": "committee_decision", "options": list(YES_NO_ABSTAIN), "electorate": "committee",
                   "opens_at": _iso(proposed), "closes_at": _iso(max(proposed, clock.now) + projects.WITHDRAWAL_VOTE),
                   "mode": "open", "rule": "committee_two_thirds",
                   "conditions": [c.as_record() for c in RULES["committee_two_thirds"].conditions], "status": "open",
                   "roll_size": len(entries), "roll_hash": deliberation.roll_hash(entries), "created_by": secretary,
                   "created_at": _iso(proposed)}
            project.update(status="withdrawal_proposed", withdrawal_matter=f"matter:{matter_key}",
                           updated_at=_iso(proposed))
        yield project
        yield from evaluations


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _survey_samples(census: Census, rng: random.Random, clock: Clock) -> Iterator[Doc]:
    """A sample drawn on each of the last months' first day, per community, answered at the door over the month
    by the grid's worker or volunteers (this month's answers only until now)."""
    tz = clock.calendar.tz
    this_month = clock.now.astimezone(tz).replace(day=1, hour=9, minute=0, second=0, microsecond=0)
    for back in range(SURVEY_SAMPLE_MONTHS - 1, -1, -1):
        years, month = divmod(this_month.month - 1 - back, 12)
        drawn = this_month.replace(year=this_month.year + years, month=month + 1).astimezone(dt.UTC)
        name = drawn.astimezone(tz).strftime("%Y-%m")
        satisfied = 0.84 + 0.02 * (SURVEY_SAMPLE_MONTHS - 1 - back)
        for community in sorted({g.routing["community"] for g in census.grids.values()}):
            grids = [g for g in census.grids.values() if g.routing["community"] == community]
            frame = {g.id: sorted(h.id for h in census.in_order() if h.routing["grid"] == g.id) for g in grids}
            seed = rng.randbytes(8).hex()
            size = max(sampling.MIN_PER_GRID * len(frame), round(SURVEY_SAMPLE_SHARE * sum(map(len, frame.values()))))
            sample = sampling.draw(frame, size, seed)
            where = {"street": grids[0].routing["street"], "community": community}
            yield {"_id": f"survey_sample:{community.split(':', 1)[1]}:{name}", "type": "survey_sample", **where,
                   "month": name, "seed": seed, "frame": {g: len(hs) for g, hs in frame.items()},
                   "households": [{"household": h, "grid": g} for g, hs in sample.items() for h in hs],
                   "created_by": grids[0].secretary, "created_at": _iso(drawn)}
            days = min(27.0, (clock.now - drawn).total_seconds() / 86400)
            for grid_id, households in sample.items():
                grid = census.grids[grid_id]
                # This month, each grid's last sampled household is still to be visited (its collectors' journey).
                for household in households[:-1] if back == 0 else households:
                    if days <= 0 or rng.random() >= DOOR_RESPONSE_RATE * min(1.0, days / 20):
                        continue
                    at = drawn + dt.timedelta(days=rng.uniform(0, days))
                    overall = rng.choice((4, 5)) if rng.random() < satisfied else rng.choice((2, 3, 3))
                    key = f"{community.split(':', 1)[1]}:{name}:door-{household.split(':', 1)[1]}"
                    yield {"_id": f"survey_response:{key}", "type": "survey_response", **where, "month": name,
                           "overall": overall, "household": household, "channel": "door",
                           "created_by": rng.choice((grid.worker, *grid.volunteers)), "created_at": _iso(at)}


# ---------------------------------------------------------------- all of it

# ---------------------------------------------------------------- offers of help and matches (issue 17)

# Each grid's two volunteers offer help in their grid; each community's health station a free clinic and escorts
# to the doctor to the whole community. (kind, title, weekly hours: (days, start, end), languages, skills)
VOLUNTEER_OFFERS = (("shopping", "下班后帮忙买菜", ((0, 2, 4), "18:00", "21:00"), ("putonghua", "local_dialect"),
                     ("手机支付",)),
                    ("companionship", "周末陪老人聊天", ((5, 6), "09:00", "12:00"), ("putonghua",), ("下棋",)))
STATION_OFFERS = (("free_clinic", "每周三义诊（量血压、测血糖）", ((2,), "09:00", "11:30")),
                  ("medical_escort", "陪同就医（工作日上午）", ((0, 1, 2, 3, 4), "08:00", "12:00")))


def offers_and_matches(census: Census, rng: random.Random, clock: Clock) -> Iterator[Doc]:
    """Offers of help (server/services/matching.py) and what came of them: in every grid one need matched to its
    first volunteer's offer weeks ago, both sides accepted and the task done; one need just proposed to it, waiting
    for both sides' answers, with its factors as the matcher gives them (server/domain/matching.py)."""
    stations: set[str] = set()
    for grid in census.grids.values():
        place = {k: grid.routing[k] for k in ("street", "community")}
        community = grid.routing["community"]
        if community not in stations:
            stations.add(community)
            station = f"organisation:{community.removeprefix('community:')}-station"
            yield {"_id": station, "type": "organisation", **place, "name": "社区卫生服务站", "kind": "hospital"}
            for kind, title, (days, start, end) in STATION_OFFERS:
                yield {"_id": _id(rng, "offer"), "type": "offer", **place, "provider": station,
                       "provider_name": "社区卫生服务站", "keeper": grid.secretary, "title": title, "help_kind": kind,
                       "languages": ["putonghua"], "capacity": 10, "status": "active",
                       "hours": [{"day": d, "start": start, "end": end} for d in days],
                       "created_by": grid.secretary, "created_at": _iso(clock.daytime(rng, 200))}
        households = [h for h in census.in_order() if h.routing["grid"] == grid.id and h.residents]
        offers = []
        for volunteer, (kind, title, (days, start, end), languages, skills) in zip(grid.volunteers, VOLUNTEER_OFFERS,
                                                                                    strict=True):
            offers.append({"_id": _id(rng, "offer"), "type": "offer", **place, "grid": grid.id,
                           "provider": volunteer, "provider_name": "志愿者 " + volunteer.removeprefix("user:"),
                           "keeper": volunteer, "title": title, "help_kind": kind, "languages": list(languages),
                           "capacity": 3, "hours": [{"day": d, "start": start, "end": end} for d in days],
                           "skills": list(skills), "status": "active", "created_by": volunteer,
                           "created_at": _iso(clock.daytime(rng, 150))})
        yield from offers
        # The volunteer's matches are in the households they look after (any of the grid's, if none).
        theirs = [h for h in households if offers[0]["keeper"] in h.volunteers] or households
        if not theirs:
            continue
        for days_ago, state in ((rng.uniform(20, 40), "accepted"), (rng.uniform(0.2, 2), "proposed")):
            yield from _matched_need(rng, clock, rng.choice(theirs), grid, offers[0], days_ago, state)


def _matched_need(rng: random.Random, clock: Clock, household: Household, grid: Grid, offer: Doc, days_ago: float,
                  state: str) -> Iterator[Doc]:
    """A resident's need for the offer's kind of help and its match: accepted by both with the volunteer's task
    done, or proposed and waiting."""
    person = household.residents[0]
    sent = clock.daytime(rng, days_ago)
    need: Doc = {"_id": _id(rng, "need"), "type": "need", **household.routing, "household": household.id,
                 "resident": person.id, "category": offer["help_kind"], "description": NEED_TEXT[offer["help_kind"]],
                 "status": "open", "created_by": accounts.user_id("jumin-" + person.id.split(":", 1)[1]),
                 "created_at": _iso(sent)}
    proposed = min(sent + dt.timedelta(hours=2), clock.now - dt.timedelta(minutes=3))
    view = matching.need_view(need, household.building)
    (proposal,) = matching.plan([view], [matching.offer_view(offer)], matching.Record()).proposals
    match = {"_id": f"match:{need['_id'][5:]}:{offer['_id'][6:]}", "type": "match", **household.routing,
             "need": need["_id"], "offer": offer["_id"], "resident": person.id, "keeper": offer["keeper"],
             "provider_name": offer["provider_name"], "help_kind": offer["help_kind"], "building": view.building,
             "language": view.language, "hours": matching.as_records(proposal.hours), "score": proposal.score,
             "factors": proposal.factors, "need_answer": "waiting", "provider_answer": "waiting", "status": "proposed",
             "created_by": grid.worker, "created_at": _iso(proposed)}
    if not view.building:
        del match["building"]
    if state == "accepted":
        answered = proposed + dt.timedelta(hours=rng.uniform(1, 20))
        task = {"_id": _id(rng, "task"), "type": "task", **household.routing, "household": household.id,
                "address": household.address, "resident": person.id, "resident_name": person.name,
                "need": need["_id"], "kind": matching.TASK_KIND_OF_NEED.get(need["category"], "visit"),
                "notes": need["description"], "assigned_to": offer["keeper"], "status": "done",
                "volunteer_note": rng.choice(DONE_NOTES), "created_by": grid.worker, "created_at": _iso(answered),
                "updated_at": _iso(answered + dt.timedelta(days=2))}
        match.update(status="accepted", need_answer="accepted", provider_answer="accepted",
                     need_answered_by=grid.worker, provider_answered_by=offer["keeper"], task=task["_id"],
                     updated_at=_iso(answered))
        need.update(status="matched", match=match["_id"], task=task["_id"], handled_by=grid.worker,
                    handled_at=_iso(answered), updated_at=_iso(answered))
        yield task
    yield need
    yield match


# name → the function making that kind of history; each draws from its own stream `<name>-<seed>`.
KINDS: dict[str, Callable[[Census, random.Random, Clock], Iterator[Doc]]] = {
    "requests": service_requests_history,
    "visits": visits_and_needs,
    "alerts": alerts_and_readings,
    "surveys": surveys,
    "access": access_requests,
    "devices": gateways_and_device_health,
    "time_bank": time_bank,
    "tasks": volunteer_tasks,
    "needs": residents_needs,
    "urgent": urgent_now,
    "silent": silent_equipment,
    "votes": matters_and_votes,
    "rewards": rewards_catalogue,
    "pool": resource_pool,
    "matching": offers_and_matches,
    "meetings": meetings_and_hearings,  # after the votes: its hearings name their matters (Census.matters)
    "evaluation": supervision_and_evaluation,
}


def generate(census: Census, seed: int, now: dt.datetime, calendar: WorkCalendar, code_key: bytes) -> Iterator[Doc]:
    """Every history document of the street the census saw, for the year ending at `now` (aware); `code_key`: the
    installation's (keystore.code_key), which the venues' check-in codes are made from."""
    clock = Clock(now.astimezone(dt.UTC), calendar, code_key)
    for name, kind in KINDS.items():
        for doc in kind(census, random.Random(f"{name}-{seed}"), clock):
            if doc["type"] == "matter":
                census.matters.append(doc)  # what later kinds may name (a hearing's agenda)
            yield doc
