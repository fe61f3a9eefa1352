"""The time bank's rules on their own (`server/domain/timebank.py`): claims, transfers and the floor, in-person
confirmation codes and their guessing limit, a lock forked on a cluster. The acts through the real services and
pouchdb-server are `test_timebank*.py`'s and `test_scale_out.py`'s; these state each rule by name, fast enough to
run once per mutant."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from server.domain import timebank as tb

NOW = dt.datetime(2026, 6, 1, 10, 0, tzinfo=dt.UTC)
KEY = bytes(range(32))
NEED = {"_id": "need:n1", "type": "need", "street": "street:s", "community": "community:c1", "grid": "grid:c1-g1",
        "resident": "resident:r1", "assigned_to": "user:v1", "created_by": "user:w1"}


def claim(**changes: Any) -> dict[str, Any]:
    base = {"_id": "claim:need:n1", "type": "claim", "task": "need:n1", "minutes": 90, "status": "claimed",
            "street": "street:s", "community": "community:c1", "grid": "grid:c1-g1", "resident": "resident:r1"}
    return {**base, **changes}


def lock(**changes: Any) -> dict[str, Any]:
    base = {"_id": "ledger_lock:resident:r1", "type": "ledger_lock", "account": "resident:r1", "seq": 3,
            "codes_from": 0, "codes_used": []}
    return {**base, **changes}


def codes(opened_lock: dict[str, Any]) -> list[str]:
    return [tb.confirmation_code(opened_lock["secret"], n) for n in tb.open_code_numbers(opened_lock)]


def test_ids_derive_from_what_they_are_about() -> None:
    assert tb.claim_id("need:n1") == "claim:need:n1"
    assert tb.transfer_id_of_claim("claim:need:n1") == "transfer:claim:need:n1"
    assert tb.reversal_id("transfer:claim:need:n1") == "transfer:reversal:claim:need:n1"
    assert tb.ledger_lock_id("resident:r1") == "ledger_lock:resident:r1"


def test_a_persons_account_is_their_resident_record_else_their_user() -> None:
    assert tb.account_of({"_id": "user:r1", "resident": "resident:r1"}) == "resident:r1"
    assert tb.account_of({"_id": "user:v1"}) == "user:v1"
    assert [tb.is_account(v) for v in ("resident:r1", "user:v1", "organisation:o1", "community:c1")] == [True] * 4
    assert [tb.is_account(v) for v in ("household:h1", "resident", "", None, 3)] == [False] * 5
    assert tb.is_account("user:wang:ge")  # an id may hold colons after its type
    assert tb.doer_of(NEED) == "user:v1"
    assert tb.doer_of({k: v for k, v in NEED.items() if k != "assigned_to"}) == "user:w1"


def test_a_claim_by_whoever_did_the_task_for_its_resident_is_accepted() -> None:
    assert tb.claim_refusal("user:v1", claim(), NEED) is None
    assert tb.claim_refusal("user:v1", claim(minutes=tb.MAX_CLAIM_MINUTES), NEED) is None
    assert tb.claim_refusal("user:v1", claim(minutes=1), NEED) is None
    # Hours in messages are whole hours ("8 小时", never "8.0").
    assert type(tb.claim_refusal("user:v1", claim(minutes=0), NEED)[1]["hours"]) is int


@pytest.mark.parametrize(("changed", "task", "writer", "refusal"), [
    ({"minutes": 0}, NEED, "user:v1", ("tb_minutes_range", {"hours": 8})),
    ({"minutes": tb.MAX_CLAIM_MINUTES + 1}, NEED, "user:v1", ("tb_minutes_range", {"hours": 8})),
    ({"minutes": 1.5}, NEED, "user:v1", ("tb_minutes_range", {"hours": 8})),
    ({"minutes": True}, NEED, "user:v1", ("tb_minutes_range", {"hours": 8})),
    ({"status": "confirmed"}, NEED, "user:v1", ("tb_claim_made_claimed", {})),
    ({"task": None}, NEED, "user:v1", ("tb_claim_id", {})),
    ({"_id": "claim:need:n2"}, NEED, "user:v1", ("tb_claim_id", {})),
    ({}, None, "user:v1", ("tb_claim_no_task", {})),
    ({}, NEED | {"type": "household"}, "user:v1", ("tb_claim_no_task", {})),
    ({}, NEED | {"_deleted": True}, "user:v1", ("tb_claim_no_task", {})),
    ({}, NEED | {"resident": None}, "user:v1", ("tb_claim_no_task", {})),
    ({"street": "street:t"}, NEED, "user:v1", ("tb_claim_task_elsewhere", {})),
    ({"community": "community:c2"}, NEED, "user:v1", ("tb_claim_task_elsewhere", {})),
    ({"grid": "grid:c1-g2"}, NEED, "user:v1", ("tb_claim_task_elsewhere", {})),
    ({"resident": "resident:r2"}, NEED, "user:v1", ("tb_claim_task_elsewhere", {})),
    ({}, NEED, "user:w1", ("tb_claim_not_yours", {})),
])
def test_a_claim_is_refused_with_its_reason(changed: dict[str, Any], task: dict[str, Any] | None, writer: str,
                                            refusal: tuple[str, dict[str, Any]]) -> None:
    assert tb.claim_refusal(writer, claim(**changed), task) == refusal


def test_transfers_move_whole_positive_amounts_between_two_accounts_within_the_floor() -> None:
    assert tb.transfer_refusal("hours", "resident:r1", "user:v1", 60, tb.HOURS_FLOOR + 60) is None
    assert tb.transfer_refusal("hours", "resident:r1", "user:v1", 1, 0) is None  # a minute is an amount
    assert type(tb.transfer_refusal("hours", "resident:r1", "user:v1", 61, tb.HOURS_FLOOR + 60)[1]["hours"]) is int
    assert tb.transfer_refusal("hours", "resident:r1", "user:v1", 61, tb.HOURS_FLOOR + 60) == (
        "tb_over_limit", {"hours": 10, "balance": "-9"})
    assert tb.transfer_refusal("points", "resident:r1", "organisation:o1", 30, 30) is None
    assert tb.transfer_refusal("points", "resident:r1", "organisation:o1", 31, 30) == (
        "tb_points_short", {"balance": 30})
    assert tb.transfer_refusal("points", "community:c1", "resident:r1", 500, 0) is None  # the community mints
    for amount in (0, -5, 1.5, True, "60"):
        assert tb.transfer_refusal("hours", "resident:r1", "user:v1", amount, 0) == ("tb_amount_positive", {})
    for source, target in (("resident:r1", "resident:r1"), ("household:h1", "user:v1"), ("user:v1", "grid:g1")):
        assert tb.transfer_refusal("hours", source, target, 60, 0) == ("tb_accounts", {})


def test_the_floor_and_points_below_zero_as_the_fork_repair_reads_them() -> None:
    assert not tb.below_floor("hours", "resident:r1", tb.HOURS_FLOOR)
    assert tb.below_floor("hours", "resident:r1", tb.HOURS_FLOOR - 1)
    assert tb.below_floor("hours", "community:c1", tb.HOURS_FLOOR - 1)  # the floor is everyone's in hours
    assert not tb.below_floor("points", "resident:r1", 0)
    assert tb.below_floor("points", "resident:r1", -1)
    assert not tb.below_floor("points", "community:c1", -1000)


def test_the_offline_app_gets_the_rules_as_data() -> None:
    assert tb.offline_rules() == {"ledgers": ["hours", "points"], "claimable_types": list(tb.CLAIMABLE_TYPES),
                                  "floor_hours": 10, "max_minutes": 480, "expires_days": 14}
    assert set(tb.CLAIMABLE_TYPES) >= {"need", "visit"} and type(tb.offline_rules()["floor_hours"]) is int


@pytest.mark.parametrize(("minutes", "text"), [(90, "1.5"), (-30, "-0.5"), (60, "1"), (0, "0"), (100, "1.67")])
def test_hours_are_shown_to_people_as_hours(minutes: int, text: str) -> None:
    assert tb.hours_text(minutes) == text


def test_an_unanswered_claim_lapses_after_fourteen_days_exactly() -> None:
    made = claim(created_at=(NOW - tb.CLAIM_EXPIRES_AFTER).isoformat())
    assert tb.claim_lapsed(made, NOW)
    assert not tb.claim_lapsed(made, NOW - dt.timedelta(seconds=1))
    assert not tb.claim_lapsed({**made, "status": "confirmed"}, NOW + dt.timedelta(days=30))


def test_a_residents_codes_come_from_the_installation_key_differ_per_resident_and_are_six_digits() -> None:
    mine, theirs = tb.code_secret(KEY, "resident:r1"), tb.code_secret(KEY, "resident:r2")
    assert mine == tb.code_secret(KEY, "resident:r1") and mine != theirs and len(bytes.fromhex(mine)) == 32
    assert mine != tb.code_secret(bytes(32), "resident:r1")
    first = [tb.confirmation_code(mine, n) for n in range(5)]
    assert all(len(c) == 6 and c.isdigit() for c in first) and len(set(first)) == 5
    assert first != [tb.confirmation_code(theirs, n) for n in range(5)]
    # Fixed vectors, so that the derivation cannot drift unnoticed (codes printed for residents must keep working).
    assert [tb.confirmation_code("00" * 32, n) for n in range(3)] == ["798964", "406414", "142818"]


def test_opening_a_lock_puts_the_secret_beside_it_only_when_it_has_codes() -> None:
    opened = tb.opened(lock(), KEY)
    assert opened["secret"] == tb.code_secret(KEY, "resident:r1") and "secret" not in lock()
    bare = {k: v for k, v in lock().items() if k != "codes_from"}
    assert tb.opened(bare, KEY) is bare
    assert tb.opened(None, KEY) is None
    assert tb.opened(lock(), None) == lock()


def test_five_codes_are_good_at_once_any_of_them_once_in_any_order() -> None:
    opened = tb.opened(lock(), KEY)
    assert tb.open_code_numbers(opened) == [0, 1, 2, 3, 4]
    good = codes(opened)
    assert tb.code_number(opened, good[3]) == 3
    assert tb.code_number(opened, f" {good[2][:3]} {good[2][3:]} ") == 2  # spaces typed between digits are fine
    spent = tb.spend_code(opened, 3)
    assert (spent["codes_from"], spent["codes_used"]) == (0, ["3"])
    assert tb.open_code_numbers(spent) == [0, 1, 2, 4, 5]
    assert tb.code_number(spent, good[3]) is None  # used once
    window = tb.spend_code(tb.spend_code(spent, 0), 1)
    assert (window["codes_from"], window["codes_used"]) == (2, ["3"])  # the window moves past its used start
    assert tb.spend_code(window, 2)["codes_from"] == 4 and tb.spend_code(window, 2)["codes_used"] == []
    assert tb.code_number(opened, 123456) is None and tb.code_number(lock(), good[0]) is None  # no secret, no code
    assert tb.code_number(None, good[0]) is None and tb.open_code_numbers(None) == []
    assert tb.open_code_numbers({k: v for k, v in lock().items() if k != "codes_from"}) == []
    assert tb.open_code_numbers(lock(codes_from=7, codes_used=["9", "10"])) == [7, 8, 11, 12, 13]
    assert tb.spend_code(lock(codes_from=7, codes_used=["10"]), 9)["codes_used"] == ["9", "10"]  # by number
    never_shown = {k: v for k, v in lock().items() if k not in ("codes_from", "codes_used")}
    assert tb.spend_code(never_shown, 0) | {"codes_from": 1} == tb.spend_code(never_shown, 0) | {"codes_used": []}
    assert (tb.spend_code(never_shown, 0)["codes_from"], tb.spend_code(never_shown, 2)["codes_used"]) == (1, ["2"])


def test_a_claim_confirmed_in_person_needs_consent_a_time_and_a_good_code() -> None:
    opened = tb.opened(lock(), KEY)
    good = codes(opened)[0]
    in_person = {"in_person_code": good, "in_person_consent": True, "in_person_at": NOW.isoformat()}
    assert tb.in_person_refusal(claim(), opened) is None  # not in person: nothing to check here
    assert tb.in_person_refusal(claim(**in_person), opened, NOW) is None
    assert tb.claim_refusal("user:v1", claim(**in_person), NEED, opened, NOW) is None
    assert tb.in_person_refusal(claim(**{**in_person, "in_person_consent": "yes"}), opened) == (
        "tb_in_person_consent", {})
    assert tb.in_person_refusal(claim(**{**in_person, "in_person_at": ""}), opened) == ("tb_in_person_consent", {})
    assert tb.in_person_refusal(claim(in_person_code="000000"), opened) == ("tb_in_person_consent", {})
    wrong = "000000" if good != "000000" else "111111"
    assert tb.in_person_refusal(claim(**{**in_person, "in_person_code": wrong}), opened) == ("tb_code_wrong", {})
    assert tb.claim_refusal("user:v1", claim(**{**in_person, "in_person_code": wrong}), NEED, opened, NOW) == (
        "tb_code_wrong", {})


def test_after_five_wrong_codes_in_a_day_no_code_is_taken_until_the_day_has_passed() -> None:
    opened = tb.opened(lock(), KEY)
    in_person = {"in_person_code": codes(opened)[0], "in_person_consent": True, "in_person_at": NOW.isoformat()}
    tried = opened
    for n in range(tb.CODE_MISSES_PER_DAY):
        tried = tb.with_code_miss(tried, f"claim:need:n{n}", "user:v1", "99999" + str(n), NOW - dt.timedelta(hours=n))
    assert [m["claim"] for m in tb.recent_code_misses(tried, NOW)] == [f"claim:need:n{n}" for n in range(5)]
    assert all(m["code"] != "999990" and len(m["code"]) == 16 for m in tried["code_misses"])  # a hash, never the code
    assert tb.in_person_refusal(claim(**in_person), tried, NOW) == ("tb_code_tries_used", {"tries": 5})
    assert tb.in_person_refusal(claim(**in_person), tried) is None  # counted only by the server's clock
    assert tb.claim_refusal("user:v1", claim(**in_person), NEED, tried, NOW) == ("tb_code_tries_used", {"tries": 5})
    # The oldest miss was four hours ago: a day after it, one try is free again.
    later = NOW - dt.timedelta(hours=4) + tb.CODE_MISS_WINDOW
    assert len(tb.recent_code_misses(tried, later)) == 4
    assert tb.in_person_refusal(claim(**in_person), tried, later) is None
    assert len(tb.recent_code_misses(tried, NOW - dt.timedelta(hours=4) + tb.CODE_MISS_WINDOW
                                     - dt.timedelta(seconds=1))) == 5


def test_a_wrong_code_sent_again_counts_once_and_the_list_keeps_two_days_worth() -> None:
    once = tb.with_code_miss(lock(), "claim:need:n1", "user:v1", "123456", NOW)
    assert tb.with_code_miss(once, "claim:need:n1", "user:v2", "123456", NOW) is None
    assert tb.with_code_miss(once, "claim:need:n1", "user:v1", "654321", NOW) is not None
    assert tb.with_code_miss(once, "claim:need:n2", "user:v1", "123456", NOW) is not None
    assert once["code_misses"][0]["by"] == "user:v1" and once["code_misses"][0]["at"] == NOW.isoformat()
    many = lock()
    for n in range(3 * tb.CODE_MISSES_PER_DAY):
        many = tb.with_code_miss(many, f"claim:{n}", "user:v1", "0", NOW + dt.timedelta(seconds=n))
    assert [m["claim"] for m in many["code_misses"]] == [f"claim:{n}" for n in range(5, 15)]
    old = tb.with_code_miss(lock(), "claim:old", "user:v1", "0", NOW - dt.timedelta(days=2))
    assert [m["claim"] for m in tb.with_code_miss(old, "claim:new", "user:v1", "0", NOW)["code_misses"]] == [
        "claim:new"]


def transfer(n: int, account: str, other: str, amount: int, out: bool, at: int, **more: Any) -> dict[str, Any]:
    source, target = (account, other) if out else (other, account)
    return {"_id": f"transfer:t{n}", "ledger": "hours", "from_account": source, "to_account": target,
            "amount": amount, "created_at": f"2026-06-01T10:{at:02d}:00+00:00", **more}


def test_the_first_transfer_past_the_floor_by_time_then_id_is_the_one_to_reverse() -> None:
    me, you = "resident:r1", "user:v1"
    earned = transfer(1, me, you, 120, out=False, at=1)
    first, second = transfer(2, me, you, 360, out=True, at=5), transfer(3, me, you, 360, out=True, at=6)
    assert tb.first_floor_breaker(me, [second, earned, first]) is None  # -600: at the floor, allowed
    third = transfer(4, me, you, 60, out=True, at=7)
    assert tb.first_floor_breaker(me, [third, second, earned, first]) is third
    same_time = transfer(0, me, you, 60, out=True, at=7)
    assert tb.first_floor_breaker(me, [third, same_time, second, earned, first]) is same_time  # then by id
    # A transfer already reversed, and its reversal, net to nothing.
    reversal = transfer(5, me, you, 360, out=False, at=8, reverses="transfer:t3")
    assert tb.first_floor_breaker(me, [third, second, earned, first, reversal]) is None
    assert tb.first_floor_breaker(me, [transfer(6, me, you, 601, out=True, at=1)])["_id"] == "transfer:t6"
    # Passing over a reversed transfer goes on to the next; incomes add up.
    late = transfer(7, me, you, 361, out=True, at=9)
    assert tb.first_floor_breaker(me, [late, reversal, second, earned, first]) is late
    twice = [transfer(8, me, you, 60, out=False, at=1), transfer(9, me, you, 60, out=False, at=2),
             transfer(10, me, you, 720, out=True, at=3)]
    assert tb.first_floor_breaker(me, twice) is None
    # A reversal out of the account (of hours it had received) is passed over with what it reverses.
    gift = transfer(11, me, you, 600, out=False, at=1)
    taken_back = transfer(12, me, you, 600, out=True, at=2, reverses="transfer:t11")
    assert tb.first_floor_breaker(me, [gift, taken_back, transfer(13, me, you, 600, out=True, at=3)]) is None


def test_a_forked_locks_revisions_become_one_no_spent_code_returns_and_every_wrong_try_counts() -> None:
    miss_a = {"claim": "claim:a", "code": "x", "by": "user:v1", "at": "2026-06-01T09:00:00+00:00"}
    miss_b = {"claim": "claim:b", "code": "y", "by": "user:v2", "at": "2026-06-01T08:00:00+00:00"}
    winner = lock(seq=4, codes_from=2, codes_used=["4"], code_misses=[miss_a], last={"_id": "transfer:x"})
    loser = lock(seq=5, codes_from=0, codes_used=["1", "3"], code_misses=[miss_a, miss_b])
    merged = tb.merged_lock([winner, loser])
    assert merged["seq"] == 5 and merged["last"] == {"_id": "transfer:x"}
    # 0 and 1 spent on the winner's side (its window moved past them) and 4; 1 and 3 on the loser's.
    assert tb.open_code_numbers(merged) == [2, 5, 6, 7, 8]
    assert merged["code_misses"] == [miss_b, miss_a]
    # A lock from before version 2 held a secret of its own: another secret's codes are other codes.
    old_winner, old_loser = lock(secret="aa" * 32, codes_from=0, codes_used=["2"]), lock(
        secret="bb" * 32, codes_from=0, codes_used=["1"])
    assert tb.open_code_numbers(tb.merged_lock([old_winner, old_loser])) == [0, 1, 3, 4, 5]
    assert "code_misses" not in tb.merged_lock([lock(), lock(seq=9)])
    twelve = [{"claim": f"claim:{n}", "code": "z", "by": "user:v1", "at": f"2026-06-01T09:{n:02d}:00+00:00"}
              for n in range(12)]
    kept = tb.merged_lock([lock(code_misses=twelve[:6]), lock(code_misses=twelve[6:])])["code_misses"]
    assert kept == twelve[2:]  # two days' worth, the newest
    unshown = {k: v for k, v in lock().items() if k not in ("codes_from", "codes_used")}
    assert tb.open_code_numbers(tb.merged_lock([unshown, lock(codes_used=["2"])])) == [0, 1, 3, 4, 5]
    bare = {k: v for k, v in lock().items() if k not in ("codes_from", "codes_used")}
    assert tb.merged_lock([bare, lock(seq=1)]) == {**bare, "codes_from": 0, "codes_used": []}
