"""The synthetic demo community, deterministic from a seed.

The plan's pilot (§2.1): one street, 4 communities, 20 grids, about 300
households a grid, 1 grid worker and 2 volunteers a grid, a secretary a
community, some departments, and a wristband plus water and electricity meters
for every elderly person living alone (§3.3, §7.4). Everything is made up:
phone numbers start with 100 (no real mobile range) and ID card numbers with
area code 99 (no real province).

Two random streams keep the output stable and cheap to count: the *plan*
stream decides which kind of household lives at each address and who lives in
it; the *people* stream decides names, ages and numbers. Ages are computed
against a fixed reference date, never today.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pycouchdb
from tqdm import tqdm

from server.domain import workdays
from server.domain.access import Principal
from server.domain.declaration import Role, id_card_check_char, validate
from server.security import accounts
from server.security.firewall import Firewall
from server.security.keystore import KeyStore
from server.services import demo_history, rewards, timebank
from server.services.timebank import LedgerError
from server.store import views
from server.store.couch import Couch, bulk_save, docs_of_type, get_or_none, index_now

REFERENCE_DATE = dt.date(2025, 1, 1)
STREET_ID = "street:hongshan"
STREET_NAME = "和平街道"
COMMUNITY_NAMES = ("幸福社区", "和谐社区", "阳光社区", "建设社区")
ROAD_NAMES = ("幸福路", "和谐路", "阳光大道", "建设街")
DEPARTMENTS = (("civil_affairs", "民政办"), ("health", "卫健办"), ("urban_management", "城管中队"),
               ("housing", "房管所"), ("utilities", "水电服务站"))
# The demo service catalogue: (code, name, English name, department, group, questions).
SERVICE_CATALOGUE = (
    ("street_lamp", "路灯损坏", "Broken street lamp", "urban_management", "市容设施",
     [("lamp_number", "string", "灯杆编号（如有）", False, ())]),
    ("road_damage", "道路破损", "Damaged road or pavement", "urban_management", "市容设施", []),
    ("garbage", "垃圾清运", "Rubbish not collected", "urban_management", "环境卫生", []),
    ("noise", "噪音扰民", "Noise nuisance", "urban_management", "环境卫生",
     [("time_of_day", "singlevaluelist", "什么时候", True, ("day", "evening", "night"))]),
    ("water_supply", "停水漏水", "No water or a leak", "utilities", "水电", []),
    ("power_outage", "停电", "Power cut", "utilities", "水电", []),
    ("home_repair", "房屋维修", "Home repair", "housing", "住房",
     [("floor", "number", "楼层", False, ())]),
    ("elderly_care", "居家养老服务", "Home care for the elderly", "civil_affairs", "养老助残",
     [("service", "multivaluelist", "需要的服务", True, ("meals", "cleaning", "bathing", "escort"))]),
    ("allowance_advice", "低保与救助咨询", "Allowance and relief advice", "civil_affairs", "社会救助", []),
    ("home_medical", "上门医疗", "Home medical visit", "health", "医疗卫生", []),
)
DEVICE_MODELS = (("wristband", "安康手环 BTHome"), ("water_meter", "智能水表 BTHome"),
                 ("electricity_meter", "智能电表 BTHome"))
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
    "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN_NAME_CHARS = {
    "male": "伟强磊军勇杰涛明超刚平辉鹏华飞鑫波斌宇浩凯健俊帆帅旭宁龙林国建志文海春晨阳博涵睿",
    "female": "芳娜敏静丽艳娟霞秀英华慧巧美淑惠珍玉兰凤洁琳素云莲真环雪荣爱梅琴欣怡婷雨萱佳",
}
CONDITIONS = ("高血压", "糖尿病", "冠心病", "慢阻肺", "关节炎", "脑卒中后遗症", "骨质疏松")
# What a grid worker approved for health data reads of an elderly resident (health_notes, sealed).
HEALTH_NOTES = ("规律服药，血压控制平稳", "每季度社区医院复查", "近期血糖偏高，已调整用药", "行走需拐杖，注意防跌倒",
                "听力下降，说话需大声", "已签约家庭医生", "去年住院一次，现已康复", "每天散步半小时，身体尚可")
DISABILITIES = ("physical", "visual", "hearing", "speech", "intellectual", "mental", "multiple")
LOCAL_AREA = "990111"  # the ID card area code of residents with a local hukou

# Household kinds per 100 households. Tuned so that a household averages ≈2.5
# people and the age mix is close to urban China's (7th census: 0–14 ≈ 14%,
# 15–59 ≈ 65%, 60+ ≈ 21%); tests/test_demo.py holds the tolerances.
HOUSEHOLD_KINDS = {
    "elderly_alone": 8,
    "elderly_couple": 11,
    "single": 14,
    "couple": 15,
    "parents_and_children": 32,
    "three_generations": 12,
    "elderly_with_adult_child": 8,
}
PILOT_SHAPE = (4, 5)  # communities, grids per community
AVERAGE_HOUSEHOLD = 2.5  # residents per household the kinds above produce (measured)
HOUSEHOLDS_PER_BUILDING = 24  # 6 floors × 2 units × 2 flats


@dataclass(frozen=True)
class DemoSize:
    """How big the demo street is; the default is the plan's pilot."""

    communities: int = 4
    grids_per_community: int = 5
    households_per_grid: int = 300

    @classmethod
    def for_residents(cls, residents: int) -> DemoSize:
        """The pilot's 4 × 5 grids with as many households as make about `residents` people."""
        grids = PILOT_SHAPE[0] * PILOT_SHAPE[1]
        return cls(*PILOT_SHAPE, max(1, round(residents / AVERAGE_HOUSEHOLD / grids)))

    @property
    def grids(self) -> int:
        return self.communities * self.grids_per_community

    @property
    def households(self) -> int:
        return self.grids * self.households_per_grid


PILOT_RESIDENTS = round(DemoSize().households * AVERAGE_HOUSEHOLD)


def community_id(c: int) -> str:
    return f"community:c{c}"


def grid_id(c: int, g: int) -> str:
    return f"grid:c{c}-g{g:02d}"


def volunteer_usernames(grid_number: int) -> tuple[str, str]:
    """The two volunteers of the street's grid_number-th grid (counted from 1 across communities)."""
    return f"zhiyuan{grid_number:02d}a", f"zhiyuan{grid_number:02d}b"


def community_name(c: int) -> str:
    # Beyond the four pilot names, number them so that names stay unique.
    return COMMUNITY_NAMES[(c - 1) % len(COMMUNITY_NAMES)] + ("" if c <= len(COMMUNITY_NAMES) else str(c))


# ---------------------------------------------------------------- the plan

@dataclass(frozen=True)
class _Slot:
    """One address of the plan and who lives there (relations to the head, head first)."""

    c: int  # community number, from 1
    g: int  # grid number within the community, from 1
    h: int  # household number within the grid, from 1
    kind: str
    relations: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"c{self.c}-g{self.g:02d}-{self.h:04d}"

    @property
    def documents(self) -> int:
        """Documents this household yields: itself, its residents, 3 devices if elderly alone."""
        return 1 + len(self.relations) + (len(DEVICE_MODELS) if self.kind == "elderly_alone" else 0)


def _relations(kind: str, rng: random.Random) -> tuple[str, ...]:
    if kind in ("elderly_alone", "single"):
        return ("self",)
    if kind in ("elderly_couple", "couple"):
        return ("self", "spouse")
    if kind == "elderly_with_adult_child":
        return ("self", "child")
    children = ("child",) * rng.choices((1, 2, 3), (70, 27, 3))[0]
    parents = ("self",) if rng.random() < 0.1 else ("self", "spouse")  # some single parents
    if kind == "parents_and_children":
        return (*parents, *children)
    return (*parents, *children, *("parent",) * rng.choice((1, 2)))  # three generations


def _plan(seed: int, size: DemoSize) -> Iterator[_Slot]:
    rng = random.Random(f"plan-{seed}")
    kinds, weights = list(HOUSEHOLD_KINDS), list(HOUSEHOLD_KINDS.values())
    for c in range(1, size.communities + 1):
        for g in range(1, size.grids_per_community + 1):
            for h in range(1, size.households_per_grid + 1):
                kind = rng.choices(kinds, weights)[0]
                yield _Slot(c, g, h, kind, _relations(kind, rng))


def document_count(seed: int = 2025, size: DemoSize = DemoSize()) -> int:
    """How many documents generate(seed, size) yields, without generating the people."""
    # street, departments, catalogue, calendar, communities, grids
    fixed = 1 + len(DEPARTMENTS) + len(SERVICE_CATALOGUE) + 1 + size.communities + size.grids
    return fixed + sum(slot.documents for slot in _plan(seed, size))


# ---------------------------------------------------------------- the people

class _People:
    """Deterministic synthetic people: names, birth dates, unique numbers."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._used: set[str] = set()

    def _unique(self, draw: Callable[[], str]) -> str:
        # Phones, ID cards and MACs identify someone or something: never hand one out twice.
        while (value := draw()) in self._used:
            pass
        self._used.add(value)
        return value

    def surname(self) -> str:
        return self.rng.choice(SURNAMES)

    def name(self, gender: str, surname: str | None = None) -> str:
        chars = GIVEN_NAME_CHARS[gender]
        given = "".join(self.rng.choice(chars) for _ in range(self.rng.choices((1, 2), (3, 7))[0]))
        return (surname or self.surname()) + given

    def birth_date(self, age: int) -> dt.date:
        """A birth date that makes someone exactly `age` on REFERENCE_DATE (1 January: no leap-day edge)."""
        latest = REFERENCE_DATE.replace(year=REFERENCE_DATE.year - age)
        earliest = REFERENCE_DATE.replace(year=REFERENCE_DATE.year - age - 1) + dt.timedelta(days=1)
        return earliest + dt.timedelta(days=self.rng.randint(0, (latest - earliest).days))

    def phone(self) -> str:
        return self._unique(lambda: "100" + "".join(self.rng.choices("0123456789", k=8)))

    def id_card(self, area: str, born: dt.date, gender: str) -> str:
        """18 characters with a valid GB 11643 check character; the 17th digit is odd for men, as on real cards."""
        parity = int(gender == "male")

        def draw() -> str:
            first17 = f"{area}{born:%Y%m%d}{self.rng.randint(0, 99):02d}{self.rng.randrange(parity, 10, 2)}"
            return first17 + id_card_check_char(first17)

        return self._unique(draw)

    def mac(self) -> str:
        # BLE random static addresses have the two top bits set, as the wristbands and meters would use.
        return self._unique(lambda: ":".join(f"{b:02X}" for b in [0xC0 | self.rng.randrange(64),
                                                                     *self.rng.randbytes(5)]))


def age_on_reference_date(birth_date: str) -> int:
    """Age in whole years on REFERENCE_DATE of an ISO birth date."""
    born = dt.date.fromisoformat(birth_date)
    return REFERENCE_DATE.year - born.year - ((REFERENCE_DATE.month, REFERENCE_DATE.day) < (born.month, born.day))


def _ages(slot: _Slot, rng: random.Random) -> list[int]:
    """Ages of the members of a household in slot order, consistent with their relations."""
    if slot.kind == "elderly_alone":
        return [rng.randint(65, 95)]
    head = {
        "elderly_couple": (60, 88), "single": (18, 59), "couple": (22, 45), "parents_and_children": (28, 58),
        "three_generations": (28, 50), "elderly_with_adult_child": (65, 92),
    }[slot.kind]
    head_age = rng.randint(*head)
    ages = []
    for relation in slot.relations:
        if relation == "self":
            ages.append(head_age)
        elif relation == "spouse":
            ages.append(max(20, head_age + rng.randint(-4, 4)))
        elif relation == "child":
            # Born when the head was 22–38; a head too young for that has a small child.
            ages.append(max(0, head_age - rng.randint(22, 38)) if head_age >= 40 else rng.randint(0, head_age - 22))
        else:  # the head's parent in a three-generation household
            ages.append(head_age + rng.randint(22, 34))
    return ages


def _resident(people: _People, slot: _Slot, routing: dict[str, str], index: int, relation: str, age: int,
              gender: str, surname: str, area: str, hukou: str) -> dict[str, Any]:
    """A resident's basic, contact, health and social fields; finance and emergency contacts come later."""
    rng = people.rng
    born = people.birth_date(age)
    doc: dict[str, Any] = {
        "_id": f"resident:{slot.key}-{index}", "type": "resident", **routing, "household": f"household:{slot.key}",
        "name": people.name(gender, surname), "gender": gender, "birth_date": born.isoformat(),
        "relation_to_head": relation, "hukou": hukou,
        # Everyone registered has an ID number from birth, not only card holders aged 16+.
        "id_card": people.id_card(area, born, gender),
        "living_alone": slot.kind == "elderly_alone",
    }
    # Children under 12 and a quarter of the over-80s have no mobile phone of their own (§5.1 manual channels).
    if age >= 12 and not (age >= 80 and rng.random() < 0.25):
        doc["phone"] = people.phone()
    if age >= 60:
        if conditions := rng.sample(CONDITIONS, k=rng.choices((0, 1, 2, 3), (25, 35, 25, 15))[0]):
            doc["chronic_conditions"] = conditions
        frail = (60, 28, 12) if age >= 80 else (85, 12, 3)
        doc["elderly_care_level"] = rng.choices(("self_reliant", "semi_disabled", "disabled"), frail)[0]
    elif age >= 45 and rng.random() < 0.2:
        doc["chronic_conditions"] = [rng.choice(CONDITIONS[:2])]
    if rng.random() < (0.13 if age >= 60 else 0.035):  # disability is far more common in old age
        doc["disability"] = rng.choice(DISABILITIES)
        doc["disability_grade"] = rng.randint(1, 4)
    return doc


def _household_docs(people: _People, slot: _Slot, routing: dict[str, str], address: dict[str, str],
                    volunteers: tuple[str, str]) -> Iterator[dict[str, Any]]:
    """One household, its residents and (for an elderly person living alone) their devices; household first.

    Households that need looking after (elderly, low income, disability) get one of the grid's two
    volunteers, alternating.
    """
    rng = people.rng
    housing = rng.choices(("owned", "rented", "public_rental"), (70, 22, 8))[0]
    # Hukou is per household: renters are far more often registered elsewhere.
    hukou = "non_local" if rng.random() < (0.55 if housing == "rented" else 0.1) else "local"
    area = LOCAL_AREA if hukou == "local" else f"99{rng.randint(1, 9999):04d}"
    head_gender = rng.choice(("male", "female"))
    spouse_gender = "female" if head_gender == "male" else "male"
    head_surname, spouse_surname = people.surname(), people.surname()
    # Children take the father's surname; the head's parents share the head's surname only for the father.
    family_surname = head_surname if head_gender == "male" else spouse_surname
    # With two parents of the head, the father comes first; a lone parent is more often a widow.
    parent_genders = iter(("male", "female") if slot.relations.count("parent") == 2
                          else (rng.choices(("male", "female"), (35, 65))[0],))
    residents = []
    for index, (relation, age) in enumerate(zip(slot.relations, _ages(slot, rng), strict=True), start=1):
        if relation == "self":
            gender, surname = head_gender, head_surname
        elif relation == "spouse":
            gender, surname = spouse_gender, spouse_surname
        elif relation == "child":
            gender, surname = rng.choice(("male", "female")), family_surname
        else:
            gender = next(parent_genders)
            surname = head_surname if gender == "male" else people.surname()
        residents.append(_resident(people, slot, routing, index, relation, age, gender, surname, area, hukou))

    ages = [age_on_reference_date(r["birth_date"]) for r in residents]
    if any(a >= 60 for a in ages):  # the elderly get someone to call when an alert goes unanswered
        younger_adults = [r for r, a in zip(residents, ages, strict=True) if 18 <= a < 60 and "phone" in r]
        if younger_adults:
            contact = younger_adults[0]["name"], younger_adults[0]["phone"]
        else:  # a son or daughter living elsewhere
            contact = people.name(rng.choice(("male", "female")), family_surname), people.phone()
        for resident, age in zip(residents, ages, strict=True):
            if age >= 60:
                resident["emergency_contact_name"], resident["emergency_contact_phone"] = contact

    tags = []
    if slot.kind == "elderly_alone":
        tags.append("elderly_alone")
    if slot.kind == "elderly_couple":
        tags.append("empty_nest")
    if rng.random() < 0.02:  # minimum-living allowance is granted per household, paid per person
        tags.append("low_income")
        for resident in residents:
            resident["minimum_living_allowance"] = True
            resident["allowance_monthly_yuan"] = float(rng.randrange(300, 861, 10))
    if any("disability" in r for r in residents):
        tags.append("disability")
    if any(r["gender"] == "male" and a >= 40 for r, a in zip(residents, ages, strict=True)) and rng.random() < 0.03:
        tags.append("veteran")

    cared_for = {"elderly_alone", "empty_nest", "low_income", "disability"}.intersection(tags)
    yield {"_id": f"household:{slot.key}", "type": "household", **routing, **address,
           "head": residents[0]["_id"], "member_count": len(residents), "housing": housing, "tags": tags,
           "floor_area": _floor_area(slot.key),
           **({"volunteers": [accounts.user_id(volunteers[slot.h % 2])]} if cared_for else {})}
    yield from residents
    if slot.kind == "elderly_alone":
        installed = (REFERENCE_DATE - dt.timedelta(days=rng.randint(30, 700))).isoformat()
        for kind, model in DEVICE_MODELS:
            yield {"_id": f"device:{slot.key}-1-{kind}", "type": "device", **routing,
                   "household": f"household:{slot.key}", "resident": residents[0]["_id"],
                   "kind": kind, "mac": people.mac(), "model": model, "installed_at": installed}


def _floor_area(household_key: str) -> float:
    """A flat's floor area, 50.0 to 139.5 m² in half metres, from its key alone (a draw from a random stream would
    move every name and number drawn after it)."""
    return 50 + int.from_bytes(hashlib.sha256(household_key.encode()).digest()[:4], "big") % 180 / 2


def _address(road: str, g: int, h: int) -> dict[str, str]:
    """Households fill 6-floor buildings of 2 units with 2 flats a floor, numbered 101, 102 … 602."""
    building, rest = divmod(h - 1, HOUSEHOLDS_PER_BUILDING)
    unit, flat = divmod(rest, HOUSEHOLDS_PER_BUILDING // 2)
    floor, door = divmod(flat, 2)
    room = f"{floor + 1}{door + 1:02d}"
    number = (g - 1) * 20 + building % 20 + 1  # each grid covers 20 street numbers
    return {"address": f"{road}{number}号{building + 1}栋{unit + 1}单元{room}室",
            "building": str(building + 1), "unit": str(unit + 1), "room": room}


def catalogue_docs(street: dict[str, str]) -> Iterator[dict[str, Any]]:
    for code, name, name_en, department, group, questions in SERVICE_CATALOGUE:
        attributes = [{"code": q_code, "datatype": datatype, "description": description, "required": required,
                       "order": order, **({"values": list(values)} if values else {})}
                      for order, (q_code, datatype, description, required, values) in enumerate(questions, start=1)]
        yield {"_id": f"service_category:{code}", "type": "service_category", **street, "code": code, "name": name,
               "name_en": name_en, "group": group, "department": f"department:{department}", "keywords": [],
               "attributes": attributes, "respond_days": 1, "close_days": 3, "active": True}


def generate(seed: int = 2025, size: DemoSize = DemoSize()) -> Iterator[dict[str, Any]]:
    """Every main-database document of the demo, in a fixed order; each passes domain.validate.

    Order: street, departments, the service catalogue and working-day calendar, then per community the
    community, and per grid the grid followed by each household, its residents and devices.
    """
    people = _People(random.Random(f"people-{seed}"))
    care = random.Random(f"care-{seed}")  # its own stream: adding health notes moved nobody's name or number
    plans = random.Random(f"care-plan-{seed}")  # and care plans, their own again
    street = {"street": STREET_ID}
    yield {"_id": STREET_ID, "type": "street", **street, "name": STREET_NAME, "district": "洪山区", "city": "武汉市"}
    for kind, name in DEPARTMENTS:
        yield {"_id": f"department:{kind}", "type": "department", **street, "name": name, "kind": kind}
    yield from catalogue_docs(street)
    yield _calendar_doc()
    plan = _plan(seed, size)
    for c in range(1, size.communities + 1):
        road = ROAD_NAMES[(c - 1) % len(ROAD_NAMES)]
        community = {**street, "community": community_id(c)}
        yield {"_id": community_id(c), "type": "community", **community, "name": community_name(c),
               "office_address": f"{road}1号"}
        for g in range(1, size.grids_per_community + 1):
            routing = {**community, "grid": grid_id(c, g)}
            yield {"_id": routing["grid"], "type": "grid", **routing, "name": f"第{g}网格", "number": g,
                   "area": f"{road}{(g - 1) * 20 + 1}号至{g * 20}号",
                   # Grids lie along their community's road, about 400 m apart (Hongshan district, Wuhan).
                   "location": {"lat": round(30.50 + 0.01 * c, 5), "lon": round(114.34 + 0.004 * g, 5)}}
            volunteers = volunteer_usernames((c - 1) * size.grids_per_community + g)
            for slot in itertools.islice(plan, size.households_per_grid):
                for doc in _household_docs(people, slot, routing, _address(road, g, slot.h), volunteers):
                    yield _with_care_plan(_with_health_notes(doc, care), plans)


# An elderly resident's care plan by care level (layered service, plan §3.3): the services (basic) and the health
# details the services depend on (core).
CARE_PLANS = {
    "self_reliant": ("每月上门走访一次，每周电话问候", "每周参加社区老年活动"),
    "semi_disabled": ("每周上门两次，助餐服务（午餐送餐上门）", "每月陪同就医一次，每周家政保洁"),
    "disabled": ("每日上门照料，助浴每周两次", "家庭医生每月上门随访，康复护理转介"),
}
CARE_PLAN_HEALTH = ("按时服用降压药，早晚各一次", "胰岛素每日注射两次，注意低血糖", "行走需助行器，防跌倒",
                    "听力下降，上门时需敲门并电话告知")


def _with_care_plan(doc: dict[str, Any], plans: random.Random) -> dict[str, Any]:
    """An elderly resident's care plan, and their emergency contact as the family to tell of an SOS or a fall."""
    level = doc.get("elderly_care_level") if doc["type"] == "resident" else None
    if level is None:
        return doc
    doc["care_plan"] = "；".join(CARE_PLANS[level][: plans.choice((1, 2))])
    doc["care_plan_health"] = plans.choice(CARE_PLAN_HEALTH)
    if doc.get("emergency_contact_phone"):
        doc["family_contacts"] = [{"name": doc["emergency_contact_name"], "relation": "子女",
                                   "phone": doc["emergency_contact_phone"], "notify": True}]
    return doc


def _with_health_notes(doc: dict[str, Any], care: random.Random) -> dict[str, Any]:
    """An elderly resident's health notes (one or two), so that an approved worker sees more than blanks."""
    if doc["type"] == "resident" and age_on_reference_date(doc["birth_date"]) >= 60:
        doc["health_notes"] = "；".join(care.sample(HEALTH_NOTES, k=care.choice((1, 2))))
    return doc


def generate_history(seed: int = 2025, size: DemoSize = DemoSize(), *, now: dt.datetime, code_key: bytes
                     ) -> Iterator[dict[str, Any]]:
    """The year of history (server/services/demo_history.py) ending at `now`, of the street generate() makes;
    `code_key`: the installation's, which its venues' check-in codes are made from."""
    census = _census(size)
    for doc in generate(seed, size):
        census.observe(doc)
    return demo_history.generate(census, seed, now, _calendar(), code_key)


def _census(size: DemoSize) -> demo_history.Census:
    return demo_history.Census(size.grids_per_community, age_on_reference_date, volunteer_usernames)


def _calendar_doc() -> dict[str, Any]:
    return workdays.calendar_doc(STREET_ID, workdays.CHINA_2026_HOLIDAYS, workdays.CHINA_2026_WORKDAYS)


def _calendar() -> workdays.WorkCalendar:
    return workdays.WorkCalendar.from_doc(_calendar_doc())


# ---------------------------------------------------------------- accounts

@dataclass(frozen=True)
class DemoLogin:
    """A demo account as printed for the person trying the demo (no password)."""

    username: str
    display_name: str
    role: str
    where: str  # human-readable place or department, e.g. "幸福社区 第1网格"


@dataclass(frozen=True)
class _Account:
    login: DemoLogin
    role: Role
    communities: tuple[str, ...] = ()
    grids: tuple[str, ...] = ()
    department: str | None = None
    organisation: str | None = None


def partner_username(community: int) -> str:
    """The demo's partner shop assistant of community `community` (its shop: demo_history.time_bank)."""
    return f"hezuo{community}"


def _accounts(seed: int, size: DemoSize) -> list[_Account]:
    # Staff names come from their own stream so that they do not shift the residents.
    people = _People(random.Random(f"staff-{seed}"))

    def login(username: str, role: Role, where: str) -> DemoLogin:
        return DemoLogin(username, people.name(people.rng.choice(("male", "female"))), role.value, where)

    result = [_Account(login("admin", Role.ADMIN, STREET_NAME), Role.ADMIN)]
    for c in range(1, size.communities + 1):
        place = community_name(c)
        result.append(_Account(login(f"shuji{c}", Role.SECRETARY, place), Role.SECRETARY, (community_id(c),)))
        for g in range(1, size.grids_per_community + 1):
            n = (c - 1) * size.grids_per_community + g
            where = f"{place} 第{g}网格"
            ids = ((community_id(c),), (grid_id(c, g),))
            result.append(_Account(login(f"wangge{n:02d}", Role.GRID_WORKER, where), Role.GRID_WORKER, *ids))
            for username in volunteer_usernames(n):
                result.append(_Account(login(username, Role.VOLUNTEER, where), Role.VOLUNTEER, *ids))
    for kind, name in DEPARTMENTS:
        result.append(_Account(login(f"bumen_{kind}", Role.DEPARTMENT_STAFF, name), Role.DEPARTMENT_STAFF,
                               department=f"department:{kind}"))
    for c in range(1, size.communities + 1):  # after everyone else: their names do not shift the others'
        result.append(_Account(login(partner_username(c), Role.PARTNER, f"{community_name(c)} 合作商户"), Role.PARTNER,
                               organisation=f"organisation:c{c}-shop"))
    return result


def demo_logins(seed: int = 2025, size: DemoSize = DemoSize()) -> list[DemoLogin]:
    """The demo accounts, without passwords, in a fixed order.

    Admin; per community its secretary, then per grid its worker and 2
    volunteers; one staff member per department.
    """
    return [a.login for a in _accounts(seed, size)]


def user_docs(seed: int = 2025, size: DemoSize = DemoSize(), *, password_hash: str) -> list[dict[str, Any]]:
    """Validated user documents for every demo account, all with the password of this hash
    (`accounts.hash_password`): one hash shared, as the accounts share one password (argon2id costs ~50 ms or more
    a hash)."""
    return [accounts.make_user(a.login.username, a.login.display_name, [a.role], STREET_ID, password_hash,
                               communities=list(a.communities), grids=list(a.grids), department=a.department,
                               organisation=a.organisation)
            for a in _accounts(seed, size)]


# ---------------------------------------------------------------- loading

@dataclass(frozen=True)
class LoadReport:
    """What load() did: documents written (main and accounts), wall time, and whether it wrote at all."""

    docs: int
    seconds: float
    loaded: bool


def load(couch: Couch, firewall: Firewall, seed: int = 2025,
         size: DemoSize = DemoSize(), *, password_hash: str, progress: bool = False, batch_size: int = 1000,
         now: dt.datetime | None = None, history: bool = True, indexed: tuple[views.Physical, ...] = ()
         ) -> LoadReport:
    """Write the demo and (unless `history` is False) its year of history up to `now` (default: this moment)
    through _bulk_docs, unless it is there already (the street document decides). The `indexed` views take in each
    batch once it is written, while the next one is sealed: built when the load ends, not in a pass after it.

    The firewall's `seal_for_storage` encrypts each batch's protected
    fields and adds residents' data keys, so no plaintext of a protected field
    ever reaches the database. The progress bar counts generated documents;
    the report counts every document written. Accounts go first, so that a clash with an existing account fails before
    the main database is touched; the street document goes last, so that its
    presence means the whole demo is there. Raises RuntimeError naming the
    first document CouchDB refused.
    """
    started = time.perf_counter()
    if get_or_none(couch.main, STREET_ID) is not None:
        return LoadReport(0, time.perf_counter() - started, loaded=False)
    users = user_docs(seed, size, password_hash=password_hash)
    census = _census(size)
    docs = (census.observe(doc) for doc in generate(seed, size))
    street_doc = next(docs)  # generate() yields the street first; it is held back to mark completion
    validate(street_doc)
    # One writer thread: the next batch is generated while the database writes the previous one. Only one
    # batch is ever handed to the writer, so memory stays flat and nothing (least of all the street marker)
    # is written after a refusal.
    with tqdm(total=document_count(seed, size) + len(users), unit="doc", disable=not progress, desc="demo") as bar, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-load") as writer:
        written = 0
        in_flight: Future[int] = writer.submit(_save_and_index, couch, couch.accounts, users, indexed)
        generated = len(users)

        def write(batches: Iterator[list[dict[str, Any]]]) -> None:
            nonlocal written, in_flight, generated
            for batch in batches:
                sealed = firewall.seal_for_storage(batch)
                written += in_flight.result()  # only now: this batch was made while the previous one was written
                bar.update(generated)
                in_flight, generated = writer.submit(_save_and_index, couch, couch.main, sealed, indexed), len(batch)
            written += in_flight.result()
            bar.update(generated)
            in_flight, generated = writer.submit(int), 0  # written: nothing is in flight

        write(_validated_batches(docs, batch_size))
        # Only now is every resident's data key stored, which the history's protected fields are sealed with.
        past = list(demo_history.generate(census, seed, now or dt.datetime.now(dt.UTC), _calendar(),
                                          firewall.keystore.code_key())) if history else []
        bar.total += len(past)
        write(_validated_batches(iter(past), batch_size))
        write(iter([[street_doc]]))
    return LoadReport(written, time.perf_counter() - started, loaded=True)


def _validated_batches(docs: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    # The generator promises valid documents; checking anyway keeps anything unvalidated out of the database.
    while batch := list(itertools.islice(docs, size)):
        for doc in batch:
            validate(doc)
        yield batch


def _save_and_index(couch: Couch, db: pycouchdb.client.Database, docs: list[dict[str, Any]],
                    indexed: tuple[views.Physical, ...]) -> int:
    written = _save_all(db, docs)
    for physical in indexed:  # every one: sealing the batch wrote the accounts database too (number_index)
        index_now(couch.db(physical.database), physical.name)
    return written


def _save_all(db: pycouchdb.client.Database, docs: list[dict[str, Any]]) -> int:
    failed = [r for r in bulk_save(db, docs) if r.error]
    if failed:
        first = failed[0]
        raise RuntimeError(
            f"demo load failed for {len(failed)} of {len(docs)} documents in {db.name}; first: {first.id}: "
            f"{first.error} ({first.reason}). A conflict means an earlier load was interrupted or the "
            "account exists already: start from empty databases.")
    return len(docs)


# ---------------------------------------------------------------- points, once the history is in

SPENDING_SHARE = 0.4  # of the volunteers holding points, those who bought a voucher at their community's shop
USED_SHARE = 0.5  # of those vouchers, those the shop has honoured already


def points_after_load(couch: Couch, keys: KeyStore, now: dt.datetime, seed: int = 2025) -> int:
    """Mint the year's participation points (each dated at its event), then spend some: volunteers buy vouchers at
    their community's shop, and the shop honours half of them, so that /rewards, the partner's /redeem and the
    statements show something on first start. Vouchers are signed with the installation key, so this runs after
    loading, with the keys (`linli serve`'s first start). How many vouchers were bought."""
    rewards.mint_all(couch, now)
    rng = random.Random(f"spend-{seed}")
    bought = 0
    for community in sorted(docs_of_type(couch.main, "community"), key=lambda c: c["_id"]):
        catalogue = rewards.catalogue(couch, community["_id"])
        partner = Principal(accounts.user_id(partner_username(int(community["_id"].removeprefix("community:c")))),
                            frozenset({Role.PARTNER}), community["street"],
                            organisation=f"organisation:{community['_id'].removeprefix('community:')}-shop")
        for account, held in sorted(timebank.balances(couch, community["_id"], "points").items()):
            affordable = [r for r in catalogue if r["points"] <= held and r["organisation"] == partner.organisation]
            if not account.startswith("user:") or not affordable or rng.random() > SPENDING_SHARE:
                continue
            buyer = Principal(account, frozenset({Role.VOLUNTEER}), community["street"],
                              frozenset({community["_id"]}))
            at = now - dt.timedelta(hours=rng.uniform(1, 72))
            try:
                voucher = rewards.redeem(couch, keys, buyer, rng.choice(affordable)["_id"], at)
            except LedgerError:
                continue  # sold out meanwhile
            bought += 1
            if rng.random() < USED_SHARE:
                rewards.use(couch, keys, partner, voucher["code"], at + dt.timedelta(minutes=rng.randint(5, 60)))
    return bought
