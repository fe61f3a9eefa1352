"""The demo community: deterministic, valid, the pilot's shape, loaded once."""

from __future__ import annotations

import collections
import datetime as dt

import pytest

from server import demo
from server.couch import Couch, count_by
from server.domain import validate


@pytest.fixture(scope="module")
def pilot() -> list[dict]:
    return list(demo.generate(seed=2025))


def test_same_seed_same_documents_other_seed_other_documents(pilot: list[dict]) -> None:
    assert list(demo.generate(seed=2025)) == pilot
    other = list(demo.generate(seed=7))
    places = lambda docs: [d["_id"] for d in docs if d["type"] in ("community", "grid", "household")]  # noqa: E731
    assert places(other) == places(pilot)  # same places …
    assert other != pilot  # … other people


def test_every_document_is_valid_and_unique(pilot: list[dict]) -> None:
    for doc in pilot:
        validate(doc)
    assert len({d["_id"] for d in pilot}) == len(pilot)


def test_pilot_shape(pilot: list[dict]) -> None:
    by_type = collections.Counter(d["type"] for d in pilot)
    assert by_type["street"] == 1 and by_type["community"] == 4 and by_type["grid"] == 20
    assert by_type["department"] >= 3
    per_grid = collections.Counter(d["grid"] for d in pilot if d["type"] == "household")
    assert set(per_grid.values()) == {300}
    assert 2.2 <= by_type["resident"] / by_type["household"] <= 2.8
    assert abs(by_type["resident"] - demo.PILOT_RESIDENTS) / demo.PILOT_RESIDENTS < 0.1


def test_age_mix_and_vulnerable_groups(pilot: list[dict]) -> None:
    residents = [d for d in pilot if d["type"] == "resident"]
    ages = [(demo.REFERENCE_DATE - dt.date.fromisoformat(r["birth_date"])).days // 365 for r in residents]
    share = lambda pred: sum(map(pred, ages)) / len(ages)  # noqa: E731
    assert 0.10 <= share(lambda a: a < 15) <= 0.20
    assert 0.55 <= share(lambda a: 15 <= a < 60) <= 0.70
    assert 0.17 <= share(lambda a: a >= 60) <= 0.27
    assert 0.01 <= sum(bool(r.get("minimum_living_allowance")) for r in residents) / len(residents) <= 0.04
    assert 0.03 <= sum(bool(r.get("disability")) for r in residents) / len(residents) <= 0.09
    alone = [r for r in residents if r["living_alone"]]
    assert alone and all(a >= 65 for r, a in zip(residents, ages, strict=True) if r["living_alone"])
    assert all(r.get("emergency_contact_phone") for r in alone)
    assert all(r["phone"].startswith("100") for r in residents if "phone" in r)  # no real mobile range
    assert all(r["id_card"].startswith("99") for r in residents if "id_card" in r)  # no real area code


def test_elderly_living_alone_have_a_wristband_and_two_meters(pilot: list[dict]) -> None:
    alone = {d["_id"] for d in pilot if d["type"] == "resident" and d["living_alone"]}
    devices = collections.defaultdict(set)
    for d in pilot:
        if d["type"] == "device":
            devices[d["resident"]].add(d["kind"])
    assert set(devices) == alone
    assert all(kinds == {"wristband", "water_meter", "electricity_meter"} for kinds in devices.values())
    macs = [d["mac"] for d in pilot if d["type"] == "device"]
    assert len(set(macs)) == len(macs)


def test_households_reference_their_head_and_members(pilot: list[dict]) -> None:
    residents = collections.defaultdict(list)
    for d in pilot:
        if d["type"] == "resident":
            residents[d["household"]].append(d)
    for h in (d for d in pilot if d["type"] == "household"):
        members = residents[h["_id"]]
        assert h["member_count"] == len(members) and h["head"] == members[0]["_id"]
        assert all(m["grid"] == h["grid"] for m in members)
        assert ("elderly_alone" in h["tags"]) == members[0]["living_alone"]


def test_staff_accounts(pilot: list[dict]) -> None:
    logins = demo.demo_logins()
    roles = collections.Counter(login.role for login in logins)
    assert roles == {"admin": 1, "secretary": 4, "grid_worker": 20, "volunteer": 40, "department_staff": 5}
    docs = demo.user_docs("demo-password-1")
    grids = {d["_id"] for d in pilot if d["type"] == "grid"}
    for doc in docs:
        validate(doc)
        assert set(doc["grids"]) <= grids
    workers = [d for d in docs if d["roles"] == ["grid_worker"]]
    assert sorted(g for d in workers for g in d["grids"]) == sorted(grids)  # one worker per grid


def test_size_flag_scales(pilot: list[dict]) -> None:
    size = demo.DemoSize.for_residents(100_000)
    assert size.grids == 20
    residents = sum(1 for d in demo.generate(size=size) if d["type"] == "resident")
    assert 90_000 <= residents <= 110_000


def test_load_writes_everything_once(couch: Couch) -> None:
    size = demo.DemoSize(households_per_grid=3)
    report = demo.load(couch, "demo-password-1", size=size)
    expected = list(demo.generate(size=size))
    assert report.loaded and report.docs == len(expected) + len(demo.demo_logins(size=size))
    counts = count_by(couch.main, "linli/by_grid")
    assert sum(v for (grid, kind), v in counts.items() if kind == "household") == 60
    assert couch.accounts.get("user:wangge01")["grids"] == ["grid:c1-g01"]
    info = couch.main.config()["doc_count"]
    again = demo.load(couch, "demo-password-1", size=size)
    assert not again.loaded and couch.main.config()["doc_count"] == info
