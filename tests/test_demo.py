"""The demo community: deterministic, valid, the pilot's shape, loaded once."""

from __future__ import annotations

import collections
import datetime as dt

import pytest

from server.domain.declaration import id_card_check_char, validate
from server.security.firewall import Firewall
from server.services import demo
from server.store.couch import Couch, count_by, get_or_none
from tests.street import hashed

PASSWORD = "demo-password-1"


@pytest.fixture(scope="module")
def pilot() -> list[dict]:
    return list(demo.generate(seed=2025))


@pytest.fixture(scope="module")
def residents(pilot: list[dict]) -> list[dict]:
    return [d for d in pilot if d["type"] == "resident"]


def _ages(residents: list[dict]) -> list[int]:
    return [demo.age_on_reference_date(r["birth_date"]) for r in residents]


def test_same_seed_same_documents_other_seed_other_people(pilot: list[dict]) -> None:
    assert list(demo.generate(seed=2025)) == pilot
    other = list(demo.generate(seed=7))
    organisation = ("street", "department", "community", "grid")
    assert [d for d in other if d["type"] in organisation] == [d for d in pilot if d["type"] in organisation]
    names = [d["name"] for d in pilot if d["type"] == "resident"]
    assert [d["name"] for d in other if d["type"] == "resident"][:100] != names[:100]


def test_every_document_is_valid_unique_and_counted(pilot: list[dict]) -> None:
    for doc in pilot:
        validate(doc)
    assert len({d["_id"] for d in pilot}) == len(pilot)
    assert demo.document_count(seed=2025) == len(pilot)


def test_pilot_shape(pilot: list[dict], residents: list[dict]) -> None:
    by_type = collections.Counter(d["type"] for d in pilot)
    assert (by_type["street"], by_type["community"], by_type["grid"], by_type["department"]) == (1, 4, 20, 5)
    per_grid = collections.Counter(d["grid"] for d in pilot if d["type"] == "household")
    assert set(per_grid.values()) == {300}
    assert 2.4 <= len(residents) / by_type["household"] <= 2.6
    assert abs(len(residents) - demo.PILOT_RESIDENTS) / demo.PILOT_RESIDENTS < 0.05
    grids = {d["_id"]: d for d in pilot if d["type"] == "grid"}
    assert all(grids[d["grid"]]["community"] == d["community"] for d in pilot if "grid" in d)


def test_age_mix_is_close_to_urban_china(residents: list[dict]) -> None:
    ages = _ages(residents)
    share = collections.Counter("child" if a < 15 else "working" if a < 60 else "elderly" for a in ages)
    assert 0.12 <= share["child"] / len(ages) <= 0.16
    assert 0.61 <= share["working"] / len(ages) <= 0.69
    assert 0.18 <= share["elderly"] / len(ages) <= 0.24
    assert max(ages) <= 95


def test_vulnerable_groups(pilot: list[dict], residents: list[dict]) -> None:
    n = len(residents)
    assert 0.01 <= sum(r.get("minimum_living_allowance", False) for r in residents) / n <= 0.03
    assert all(r["allowance_monthly_yuan"] > 0 for r in residents if r.get("minimum_living_allowance"))
    assert 0.04 <= sum("disability" in r for r in residents) / n <= 0.08
    assert all(1 <= r["disability_grade"] <= 4 for r in residents if "disability" in r)
    households = [d for d in pilot if d["type"] == "household"]
    alone = [r for r in residents if r["living_alone"]]
    assert 0.06 <= len(alone) / len(households) <= 0.10
    assert all(65 <= a <= 95 for a in _ages(alone))
    assert all(r["elderly_care_level"] in ("self_reliant", "semi_disabled", "disabled") for r in alone)
    elderly = [r for r, a in zip(residents, _ages(residents), strict=True) if a >= 60]
    assert all(r.get("emergency_contact_phone") for r in elderly)
    assert sum(bool(r.get("chronic_conditions")) for r in elderly) / len(elderly) > 0.5


def test_numbers_are_synthetic_valid_and_unique(pilot: list[dict], residents: list[dict]) -> None:
    phones = [r["phone"] for r in residents if "phone" in r]
    assert all(p.startswith("100") for p in phones)  # no real mobile range
    assert len(set(phones)) == len(phones)
    cards = [r["id_card"] for r in residents]
    assert all(c.startswith("99") and id_card_check_char(c[:17]) == c[17] for c in cards)  # no real area code
    assert all(c[6:14] == r["birth_date"].replace("-", "") for c, r in zip(cards, residents, strict=True))
    assert all(int(c[16]) % 2 == (r["gender"] == "male") for c, r in zip(cards, residents, strict=True))
    assert len(set(cards)) == len(cards)
    macs = [d["mac"] for d in pilot if d["type"] == "device"]
    assert len(set(macs)) == len(macs)


def test_elderly_living_alone_have_a_wristband_and_two_meters(pilot: list[dict], residents: list[dict]) -> None:
    alone = {r["_id"]: r for r in residents if r["living_alone"]}
    devices = collections.defaultdict(set)
    for d in pilot:
        if d["type"] == "device":
            devices[d["resident"]].add(d["kind"])
            assert d["_id"] == f"device:{d['resident'].removeprefix('resident:')}-{d['kind']}"
            assert d["household"] == alone[d["resident"]]["household"]
    assert set(devices) == set(alone)
    assert all(kinds == {"wristband", "water_meter", "electricity_meter"} for kinds in devices.values())


def test_households_reference_their_head_and_members(pilot: list[dict], residents: list[dict]) -> None:
    members = collections.defaultdict(list)
    for r in residents:
        members[r["household"]].append(r)
    for h in (d for d in pilot if d["type"] == "household"):
        people = members[h["_id"]]
        assert h["member_count"] == len(people) and h["head"] == people[0]["_id"]
        assert people[0]["relation_to_head"] == "self"
        assert sum(p["relation_to_head"] == "self" for p in people) == 1
        assert all(p["grid"] == h["grid"] for p in people)
        assert ("elderly_alone" in h["tags"]) == people[0]["living_alone"]
        assert ("low_income" in h["tags"]) == bool(people[0].get("minimum_living_allowance"))


def test_staff_accounts(pilot: list[dict]) -> None:
    logins = demo.demo_logins()
    assert logins == demo.demo_logins()
    assert collections.Counter(login.role for login in logins) == {
        "admin": 1, "secretary": 4, "grid_worker": 20, "volunteer": 40, "department_staff": 5, "partner": 4}
    assert [login.username for login in logins][:5] == ["admin", "shuji1", "wangge01", "zhiyuan01a", "zhiyuan01b"]
    assert next(login.where for login in logins if login.username == "wangge01") == "幸福社区 第1网格"
    docs = demo.user_docs(password_hash=hashed(PASSWORD))
    assert [d["username"] for d in docs] == [login.username for login in logins]
    assert len({d["password_hash"] for d in docs}) == 1  # hashed once, on purpose
    ids = {d["_id"]: d for d in pilot}
    for doc in docs:
        validate(doc)
        assert all(ids[g]["community"] in doc["communities"] for g in doc["grids"])
        assert all(c in ids for c in doc["communities"])
        assert doc.get("department") is None or doc["department"] in ids
    workers = [d for d in docs if d["roles"] == ["grid_worker"]]
    assert sorted(g for d in workers for g in d["grids"]) == sorted(k for k in ids if k.startswith("grid:"))
    volunteers = collections.Counter(g for d in docs if d["roles"] == ["volunteer"] for g in d["grids"])
    assert set(volunteers.values()) == {2}


def test_size_scales_households_only() -> None:
    assert demo.DemoSize.for_residents(demo.PILOT_RESIDENTS) == demo.DemoSize()
    assert demo.DemoSize.for_residents(100_000).households_per_grid == 2000
    assert demo.DemoSize.for_residents(1) == demo.DemoSize(households_per_grid=1)
    size = demo.DemoSize.for_residents(5_000)
    residents = sum(1 for d in demo.generate(size=size) if d["type"] == "resident")
    assert 4_500 <= residents <= 5_500


def test_the_smallest_street_gets_its_year_of_history_too() -> None:
    """`linli serve --residents 40` (one household a grid) failed: the history's neighbour disputes drew two homes
    from each grid. A grid of one home has none; everything else of the year is there."""
    now = dt.datetime(2026, 11, 30, 6, 30, tzinfo=dt.UTC)
    smallest = demo.DemoSize.for_residents(40)
    kinds = collections.Counter(d["type"] for d in demo.generate_history(size=smallest, now=now, code_key=bytes(32)))
    assert kinds["service_request"] > 0 and kinds["transfer"] > 0 and kinds["matter"] > 0
    assert kinds["mediation"] == 0


def test_load_writes_everything_once(couch: Couch, firewall: Firewall) -> None:
    size, now = demo.DemoSize(households_per_grid=5), dt.datetime(2026, 11, 30, 6, 30, tzinfo=dt.UTC)
    report = demo.load(couch, firewall, size=size, password_hash=hashed(PASSWORD), now=now)
    users = demo.demo_logins(size=size)
    listed = count_by(couch.main, "linli/by_place")
    counts = {key: n for key, n in listed.items() if key[0].startswith("grid:")}
    assert sum(v for (_, kind), v in counts.items() if kind == "household") == 100
    residents = sum(v for (_, kind), v in counts.items() if kind == "resident")
    assert residents == sum(1 for d in demo.generate(size=size) if d["type"] == "resident")
    # one per resident, listed by community (views.LISTED_AT)
    assert sum(v for (place, kind, *_), v in listed.items() if kind == "data_key"
               and place.startswith("community:")) == residents
    history = sum(1 for _ in demo.generate_history(size=size, now=now, code_key=firewall.keystore.code_key()))
    assert report.loaded and report.docs == demo.document_count(size=size) + len(users) + residents + history
    assert couch.accounts.get("user:wangge01")["grids"] == ["grid:c1-g01"]
    assert couch.main.get(demo.STREET_ID)["name"] == demo.STREET_NAME
    before = (couch.main.config()["doc_count"], couch.accounts.config()["doc_count"])
    again = demo.load(couch, firewall, size=size, password_hash=hashed(PASSWORD))
    assert not again.loaded and again.docs == 0
    assert (couch.main.config()["doc_count"], couch.accounts.config()["doc_count"]) == before


def test_load_names_the_first_refused_document(couch: Couch, firewall: Firewall) -> None:
    size = demo.DemoSize(1, 1, 1)
    couch.accounts.save(demo.user_docs(size=size, password_hash=hashed(PASSWORD))[0])  # "admin" exists already
    with pytest.raises(RuntimeError, match="user:admin: conflict"):
        demo.load(couch, firewall, size=size, password_hash=hashed(PASSWORD))
    assert get_or_none(couch.main, demo.STREET_ID) is None  # so the next start tries again, and says why
    assert get_or_none(couch.main, "household:c1-g01-0001") is None  # accounts go first: nothing else written
