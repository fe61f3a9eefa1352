"""The synthetic demo community, deterministic from a seed.

The plan's pilot (§2.1): one street, 4 communities, 20 grids, about 300
households a grid, 1 grid worker and 2 volunteers a grid, a secretary a
community, some departments, and wristbands plus water and electricity meters
for elderly people living alone. Everything is made up: phone numbers start
with 100 (no real mobile range) and ID card numbers with area code 99.

Ages are computed against a fixed reference date so the same seed always
yields the same documents.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from . import accounts
from .couch import Couch, bulk_save, get_or_none
from .domain import Role, id_card_check_char, validate

REFERENCE_DATE = dt.date(2025, 1, 1)
STREET_ID = "street:hongshan"
COMMUNITY_NAMES = ("幸福社区", "和谐社区", "阳光社区", "建设社区")
ROAD_NAMES = ("幸福路", "和平路", "阳光大道", "建设街")
DEPARTMENTS = (("civil_affairs", "民政办"), ("health", "卫健办"), ("urban_management", "城管中队"),
               ("housing", "房管所"), ("utilities", "水电服务站"))
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
    "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN_MALE = "伟强磊军勇杰涛明超刚平辉鹏华飞鑫波斌宇浩凯健俊帆帅旭宁龙林国建志文海春"
GIVEN_FEMALE = "芳娜敏静丽艳娟霞秀英华慧巧美淑惠珍玉兰凤洁琳素云莲真环雪荣爱妹梅琴"
CONDITIONS = ("高血压", "糖尿病", "冠心病", "慢阻肺", "关节炎", "脑卒中后遗症", "骨质疏松")

# Household compositions and how often they occur; weights sum to 100.
# Tuned so that ~2.5 people live in a household and ~21% of residents are 60+.
COMPOSITIONS = (
    ("elderly_alone", 9), ("elderly_couple", 13), ("young_single", 13), ("young_couple", 15),
    ("family_one_child", 27), ("family_two_children", 6), ("three_generations", 11), ("elderly_with_adult_child", 6),
)
PILOT_SHAPE = (4, 5)  # communities, grids per community
AVERAGE_HOUSEHOLD = 2.4


@dataclass(frozen=True)
class DemoSize:
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


PILOT_RESIDENTS = round(DemoSize().grids * DemoSize().households_per_grid * AVERAGE_HOUSEHOLD)


def community_id(c: int) -> str:
    return f"community:c{c}"


def grid_id(c: int, g: int) -> str:
    return f"grid:c{c}-g{g:02d}"


class _People:
    """Deterministic synthetic people: names, birth dates, numbers."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._serial = 0

    def name(self, gender: str, surname: str | None = None) -> str:
        pool = GIVEN_MALE if gender == "male" else GIVEN_FEMALE
        given = "".join(self.rng.choice(pool) for _ in range(self.rng.choice((1, 2, 2))))
        return (surname or self.rng.choice(SURNAMES)) + given

    def birth_date(self, low: int, high: int) -> dt.date:
        age = self.rng.randint(low, high)
        return REFERENCE_DATE - dt.timedelta(days=age * 365 + self.rng.randint(0, 364))

    def phone(self) -> str:
        return "100" + "".join(self.rng.choice("0123456789") for _ in range(8))

    def id_card(self, born: dt.date, gender: str) -> str:
        self._serial += 1
        # Sequence digit parity encodes gender, as on real cards.
        seq = f"{self._serial % 50 * 2 % 100:02d}{(self.rng.randrange(0, 10, 2) + (gender == 'male')) % 10}"
        first17 = f"99{self.rng.randint(0, 9999):04d}{born:%Y%m%d}{seq}"
        return first17 + id_card_check_char(first17)


def _members(kind: str, people: _People) -> list[dict[str, Any]]:
    """(gender, age range, relation) of each member of a household of the given kind."""
    rng = people.rng
    g = rng.choice(("male", "female"))
    other = "female" if g == "male" else "male"
    old, mid, young, child = (65, 95), (30, 59), (18, 34), (0, 17)
    any_gender = ("male", "female")
    shapes = {
        "elderly_alone": [(rng.choice(("female", "female", "male")), old, "self")],
        "elderly_couple": [("male", (62, 90), "self"), ("female", (60, 88), "spouse")],
        "young_single": [(g, young, "self")],
        "young_couple": [(g, young, "self"), (other, young, "spouse")],
        "family_one_child": [(g, mid, "self"), (other, mid, "spouse"), (rng.choice(any_gender), child, "child")],
        "family_two_children": [(g, (30, 50), "self"), (other, (30, 50), "spouse"),
                                ("male", child, "child"), ("female", child, "child")],
        "three_generations": [(g, mid, "self"), (other, mid, "spouse"), (rng.choice(any_gender), child, "child"),
                              (rng.choice(any_gender), (60, 85), "parent")],
        "elderly_with_adult_child": [(g, (65, 92), "self"), (rng.choice(any_gender), (35, 60), "child")],
    }
    return [{"gender": gender, "ages": ages, "relation": relation} for gender, ages, relation in shapes[kind]]


def _household_docs(people: _People, routing: dict[str, str], key: str, address: dict[str, str],
                    kind: str) -> Iterator[dict[str, Any]]:
    """One household, its residents and (for elderly living alone) their devices; household first."""
    rng = people.rng
    surname = rng.choice(SURNAMES)
    residents = []
    for index, member in enumerate(_members(kind, people), start=1):
        same_family = member["relation"] in ("self", "child", "grandchild") or rng.random() < 0.1
        born = people.birth_date(*member["ages"])
        age = (REFERENCE_DATE - born).days // 365
        doc: dict[str, Any] = {
            "_id": f"resident:{key}-{index}", "type": "resident", **routing, "household": f"household:{key}",
            "name": people.name(member["gender"], surname if same_family else None),
            "gender": member["gender"], "birth_date": born.isoformat(), "relation_to_head": member["relation"],
            "hukou": "local" if rng.random() < 0.8 else "non_local",
            "living_alone": kind == "elderly_alone",
        }
        if age >= 16:
            doc["phone"] = people.phone()
            doc["id_card"] = people.id_card(born, member["gender"])
        if age >= 60:
            doc["chronic_conditions"] = rng.sample(CONDITIONS, k=rng.choice((0, 1, 1, 2, 3)))
            doc["elderly_care_level"] = rng.choices(("self_reliant", "semi_disabled", "disabled"), (80, 15, 5))[0]
        if kind == "elderly_alone":
            doc["emergency_contact_name"] = people.name(rng.choice(("male", "female")), surname)
            doc["emergency_contact_phone"] = people.phone()
        if rng.random() < 0.06:
            doc["disability"] = rng.choice(("physical", "visual", "hearing", "speech", "intellectual", "mental"))
            doc["disability_grade"] = rng.randint(1, 4)
        residents.append(doc)
    if rng.random() < 0.02:  # about 2% of residents live on the minimum-living allowance
        for doc in residents:
            doc["minimum_living_allowance"] = True
            doc["allowance_monthly_yuan"] = float(rng.choice((680, 750, 820, 900)))
    tags = []
    if kind == "elderly_alone":
        tags.append("elderly_alone")
    if kind == "elderly_couple":
        tags.append("empty_nest")
    if residents[0].get("minimum_living_allowance"):
        tags.append("low_income")
    if any(r.get("disability") for r in residents):
        tags.append("disability")
    yield {"_id": f"household:{key}", "type": "household", **routing, **address, "head": residents[0]["_id"],
           "member_count": len(residents), "housing": rng.choices(("owned", "rented", "public_rental"), (70, 22, 8))[0],
           "tags": tags}
    yield from residents
    if kind == "elderly_alone":
        yield from _devices(people, routing, key, residents[0]["_id"])


def _devices(people: _People, routing: dict[str, str], key: str, resident: str) -> Iterator[dict[str, Any]]:
    installed = (REFERENCE_DATE - dt.timedelta(days=people.rng.randint(30, 700))).isoformat()
    for kind, model in (("wristband", "安康手环 BTHome"), ("water_meter", "智能水表 BTHome"),
                        ("electricity_meter", "智能电表 BTHome")):
        mac = "D4:" + ":".join(f"{people.rng.randrange(256):02X}" for _ in range(5))
        yield {"_id": f"device:{key}-{kind}", "type": "device", **routing, "household": f"household:{key}",
               "resident": resident, "kind": kind, "mac": mac, "model": model, "installed_at": installed}


def generate(seed: int = 2025, size: DemoSize = DemoSize()) -> Iterator[dict[str, Any]]:
    """Every main-database document of the demo, in a fixed order; each passes domain.validate."""
    rng = random.Random(seed)
    people = _People(rng)
    street = {"street": STREET_ID}
    yield {"_id": STREET_ID, "type": "street", **street, "name": "和平街道", "district": "洪山区", "city": "武汉市"}
    for kind, name in DEPARTMENTS:
        yield {"_id": f"department:{kind}", "type": "department", **street, "name": name, "kind": kind}
    kinds, weights = zip(*COMPOSITIONS, strict=True)
    for c in range(1, size.communities + 1):
        road = ROAD_NAMES[(c - 1) % len(ROAD_NAMES)]
        community = {**street, "community": community_id(c)}
        yield {"_id": community_id(c), "type": "community", **community,
               "name": COMMUNITY_NAMES[(c - 1) % len(COMMUNITY_NAMES)] + ("" if c <= 4 else str(c)),
               "office_address": f"{road}1号"}
        for g in range(1, size.grids_per_community + 1):
            routing = {**community, "grid": grid_id(c, g)}
            yield {"_id": grid_id(c, g), "type": "grid", **routing, "name": f"第{g}网格", "number": g,
                   "area": f"{road}{(g - 1) * 20 + 1}号至{g * 20}号"}
            for h in range(size.households_per_grid):
                building, rest = divmod(h, 24)
                unit, floor_room = divmod(rest, 12)
                floor, room = divmod(floor_room, 2)
                address = {"address": f"{road}{(g - 1) * 20 + building % 20 + 1}号{building + 1}栋{unit + 1}单元"
                                      f"{floor + 1}0{room + 1}室",
                           "building": str(building + 1), "unit": str(unit + 1), "room": f"{floor + 1}0{room + 1}"}
                kind = rng.choices(kinds, weights)[0]
                yield from _household_docs(people, routing, f"c{c}-g{g:02d}-{h + 1:04d}", address, kind)


@dataclass(frozen=True)
class DemoLogin:
    username: str
    display_name: str
    role: str
    where: str


@dataclass(frozen=True)
class _Account:
    login: DemoLogin
    roles: list[Role]
    communities: list[str]
    grids: list[str]
    department: str | None = None


def _accounts(seed: int, size: DemoSize) -> list[_Account]:
    # Staff names come from their own generator so they do not shift the residents.
    people = _People(random.Random(f"staff-{seed}"))
    result = [_Account(DemoLogin("admin", people.name("female"), Role.ADMIN.value, "和平街道"), [Role.ADMIN], [], [])]
    for c in range(1, size.communities + 1):
        place = COMMUNITY_NAMES[(c - 1) % len(COMMUNITY_NAMES)]
        result.append(_Account(DemoLogin(f"shuji{c}", people.name("male"), Role.SECRETARY.value, place),
                               [Role.SECRETARY], [community_id(c)], []))
        for g in range(1, size.grids_per_community + 1):
            n = (c - 1) * size.grids_per_community + g
            where = f"{place} 第{g}网格"
            ids = ([community_id(c)], [grid_id(c, g)])
            result.append(_Account(DemoLogin(f"wangge{n:02d}", people.name(people.rng.choice(("male", "female"))),
                                             Role.GRID_WORKER.value, where), [Role.GRID_WORKER], *ids))
            for suffix in "ab":
                result.append(_Account(DemoLogin(f"zhiyuan{n:02d}{suffix}", people.name("female"),
                                                 Role.VOLUNTEER.value, where), [Role.VOLUNTEER], *ids))
    for kind, name in DEPARTMENTS:
        result.append(_Account(DemoLogin(f"bumen_{kind}", people.name("male"), Role.DEPARTMENT_STAFF.value, name),
                               [Role.DEPARTMENT_STAFF], [], [], f"department:{kind}"))
    return result


def demo_logins(seed: int = 2025, size: DemoSize = DemoSize()) -> list[DemoLogin]:
    """The demo accounts, without passwords, in a fixed order."""
    return [a.login for a in _accounts(seed, size)]


def user_docs(password: str, seed: int = 2025, size: DemoSize = DemoSize()) -> list[dict[str, Any]]:
    """Validated user documents for every demo account, all with the given password.

    The password is hashed once and the hash shared: argon2id costs ~50 ms a
    hash, and these accounts share one password anyway.
    """
    docs = []
    password_hash = accounts.hash_password(password)
    for a in _accounts(seed, size):
        docs.append(accounts.make_user(a.login.username, a.login.display_name, a.roles, STREET_ID, password_hash,
                                       communities=a.communities, grids=a.grids, department=a.department))
    return docs


@dataclass(frozen=True)
class LoadReport:
    docs: int
    seconds: float
    loaded: bool


def load(couch: Couch, password: str, seed: int = 2025, size: DemoSize = DemoSize(), progress: bool = False,
         batch_size: int = 1000) -> LoadReport:
    """Write the demo through _bulk_docs unless it is there already (the street document decides)."""
    started = time.perf_counter()
    if get_or_none(couch.main, STREET_ID) is not None:
        return LoadReport(0, time.perf_counter() - started, loaded=False)
    users = user_docs(password, seed, size)
    expected = 1 + len(DEPARTMENTS) + size.communities + size.grids * (1 + size.households_per_grid * 3.5)
    count = _save_all(couch.accounts, users)
    bar = tqdm(total=round(expected), unit="doc", disable=not progress, desc="demo")
    batch: list[dict[str, Any]] = []
    street_doc = None
    for doc in generate(seed, size):
        validate(doc)
        if doc["_id"] == STREET_ID:
            street_doc = doc  # written last: its presence means "fully loaded"
            continue
        batch.append(doc)
        if len(batch) >= batch_size:
            count += _save_all(couch.main, batch)
            bar.update(len(batch))
            batch = []
    count += _save_all(couch.main, [*batch, street_doc])
    bar.update(len(batch) + 1)
    bar.close()
    return LoadReport(count, time.perf_counter() - started, loaded=True)


def _save_all(db: Any, docs: list[dict[str, Any]]) -> int:
    failed = [r for r in bulk_save(db, docs) if r.error]
    if failed:
        first = failed[0]
        raise RuntimeError(f"demo load failed for {len(failed)} documents; first: {first.id}: "
                           f"{first.error} ({first.reason})")
    return len(docs)
