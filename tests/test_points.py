"""Points and rewards (issue 16 item 4) against the real pouchdb-server: minting once per participation however
often the job runs, redeeming into a signed single-use voucher, stock and points never below zero under
concurrent redemptions, a forged or reused voucher refused with nothing stored changed, statements."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from crypto import vouchers
from crypto.envelope import b64url, unb64url
from server.domain import points as rules
from server.domain.access import Principal
from server.domain.declaration import Role
from server.domain.meetings import participation_id
from server.security import accounts
from server.security.firewall import Firewall
from server.services import rewards, timebank
from server.services.demo import STREET_ID
from server.services.timebank import LedgerError
from server.store.couch import Couch, get_or_none
from tests.street import hashed

C1 = "community:c1"
VOLUNTEER, OTHER_VOLUNTEER, RESIDENT = "user:zhiyuan01a", "user:zhiyuan01b", "resident:c1-g01-0002-1"
SHOP = "organisation:c1-test-shop"
NOW = dt.datetime(2026, 3, 15, 10, 0, tzinfo=dt.UTC)
Doc = dict[str, Any]


def principal(user_id: str, **extra: Any) -> Principal:
    roles = extra.pop("roles", [Role.VOLUNTEER])
    return Principal(user_id, frozenset(roles), STREET_ID, frozenset({C1}), **extra)


VOL = principal(VOLUNTEER)
PARTNER = principal("user:hezuo-test", roles=[Role.PARTNER], organisation=SHOP)
SECRETARY = principal("user:shuji1", roles=[Role.SECRETARY])


def stored(couch: Couch) -> dict[str, str]:
    return {row["id"]: row["value"]["rev"] for row in couch.main.all(include_docs="false", as_list=True)}


def points(couch: Couch, account: str) -> int:
    return timebank.balance(couch, C1, "points", account)


@pytest.fixture
def shop(demo_loaded: Couch) -> Couch:
    demo_loaded.main.save({"_id": SHOP, "type": "organisation", "street": STREET_ID, "community": C1,
                           "name": "测试超市", "kind": "firm"})
    return demo_loaded


def give(couch: Couch, account: str, amount: int) -> None:
    timebank.mint(couch, {"street": STREET_ID, "community": C1}, account, amount, "test", uuid.uuid4().hex,
                  "user:shuji1", NOW)


def reward(couch: Couch, price: int = 30, stock: int = 5) -> Doc:
    return rewards.offer(couch, SECRETARY, SHOP, "理发一次", "service", price, stock, NOW)


def confirmation(couch: Couch, to: str, minutes: int, at: dt.datetime = NOW) -> str:
    doc = {"_id": f"transfer:claim:claim:need:{uuid.uuid4().hex[:8]}", "type": "transfer", "street": STREET_ID,
           "community": C1, "ledger": "hours", "from_account": RESIDENT, "to_account": to, "amount": minutes,
           "kind": "confirmation", "created_by": "user:jumin1", "created_at": at.isoformat()}
    couch.main.save(doc)
    return doc["_id"]


# ---------------------------------------------------------------- minting

def test_minting_is_once_per_participation_however_often_it_runs(demo_loaded: Couch) -> None:
    community = demo_loaded.main.get(C1)
    helped = confirmation(demo_loaded, VOLUNTEER, 90)
    demo_loaded.main.save({"_id": f"survey_response:c1:2026-03:{uuid.uuid4().hex[:6]}", "type": "survey_response",
                           "street": STREET_ID, "community": C1, "month": "2026-03", "overall": 4,
                           "created_by": VOLUNTEER, "created_at": NOW.isoformat()})
    assert rewards.mint_due(demo_loaded, community, NOW) == 2
    assert points(demo_loaded, VOLUNTEER) == 15 + 2  # 1.5 h at 10 an hour, one survey
    minted = demo_loaded.main.get(rules.mint_id(participation_id("hours_confirmed", helped, VOLUNTEER)))
    assert minted["created_at"] == NOW.isoformat() and minted["from_account"] == C1
    before = stored(demo_loaded)
    with ThreadPoolExecutor(4) as pool:  # four processes running the job at once: nothing more
        assert sum(pool.map(lambda _: rewards.mint_due(demo_loaded, community, NOW), range(4))) == 0
    assert rewards.mint_all(demo_loaded, NOW) == 0
    assert stored(demo_loaded) == before and points(demo_loaded, VOLUNTEER) == 17


def test_the_minting_job_reads_only_what_changed_since_its_checkpoint(demo_loaded: Couch) -> None:
    """The job keeps a checkpoint (the main database's changes, `_local`): a run reads what was stored since the
    last one, not every source again. Shown by a mint taken away behind its back: a run that re-read every source
    would mint it again; the job does not, while the secretary's full pass (mint_due) does."""
    first = confirmation(demo_loaded, VOLUNTEER, 60)
    assert rewards.mint_all(demo_loaded, NOW) >= 1
    checkpoint = demo_loaded.main.get(rewards.MINT_CHECKPOINT)["seq"]
    minted = demo_loaded.main.get(rules.mint_id(participation_id("hours_confirmed", first, VOLUNTEER)))
    demo_loaded.main.delete(minted)
    later = confirmation(demo_loaded, OTHER_VOLUNTEER, 120)
    assert rewards.mint_all(demo_loaded, NOW) == 1  # the new confirmation only
    assert demo_loaded.main.get(rewards.MINT_CHECKPOINT)["seq"] != checkpoint
    assert points(demo_loaded, OTHER_VOLUNTEER) == 20 and points(demo_loaded, VOLUNTEER) == 0
    assert get_or_none(demo_loaded.main, rules.mint_id(participation_id("hours_confirmed", later,
                                                                        OTHER_VOLUNTEER))) is not None
    assert rewards.mint_all(demo_loaded, NOW) == 0
    assert rewards.mint_due(demo_loaded, demo_loaded.main.get(C1), NOW) == 1  # the full pass finds the one taken
    assert points(demo_loaded, VOLUNTEER) == 10


def test_a_run_of_the_minting_job_whose_checkpoint_another_moved_stops_cleanly(demo_loaded: Couch,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs at once (the first start's beside a minute sweep's; its Conflict on the checkpoint once failed the
    sweep with a traceback): the other run reads the same changes, mints and moves the checkpoint while this one
    works; this one then stops without an error, each participation is minted once, and the next run goes on
    from the checkpoint the other wrote."""
    confirmation(demo_loaded, VOLUNTEER, 60)
    mint_due, other_run = rewards.mint_due, []

    def beside_another_run(*args: Any) -> int:
        if not other_run:  # once, between this run's read of the changes and its checkpoint's write
            other_run.append("running")
            other_run.append(rewards.mint_all(demo_loaded, NOW))
        return mint_due(*args)

    monkeypatch.setattr(rewards, "mint_due", beside_another_run)
    assert rewards.mint_all(demo_loaded, NOW) == 0  # all it read was minted by the other run meanwhile
    assert other_run[1] >= 1 and points(demo_loaded, VOLUNTEER) == 10
    assert rewards.mint_all(demo_loaded, NOW) == 0 and points(demo_loaded, VOLUNTEER) == 10


def test_minting_takes_foreign_events_and_maps_users_to_their_account(demo_loaded: Couch) -> None:
    """The hearings' participation (server/services/meetings.py) comes as events of the same shape; a person
    who is a user with a resident record earns on that record, as their time bank account."""
    demo_loaded.accounts.save(accounts.make_user("jumin-pts", "居民乙", [Role.RESIDENT], STREET_ID,
                                                 hashed("x" * 12), resident=RESIDENT))
    events = [rules.Event(participation_id("attended", "attendance:m1:" + RESIDENT, RESIDENT), "attended", RESIDENT,
                          "attendance:m1:" + RESIDENT, NOW.isoformat()),
              rules.Event(participation_id("opinion", "opinion:x", "user:jumin-pts"), "opinion", "user:jumin-pts",
                          "opinion:x", NOW.isoformat()),
              rules.Event("participation:unknown:x:y", "unknown", RESIDENT, "x", NOW.isoformat())]
    community = demo_loaded.main.get(C1)
    assert rewards.mint_due(demo_loaded, community, NOW, events) == 2
    assert points(demo_loaded, RESIDENT) == rules.POINTS_RULES["attended"] + rules.POINTS_RULES["opinion"]
    assert rewards.mint_due(demo_loaded, community, NOW, events) == 0


# ---------------------------------------------------------------- redeeming

def test_redeeming_moves_points_once_and_gives_a_signed_voucher(shop: Couch, firewall: Firewall) -> None:
    offered = reward(shop)
    give(shop, VOLUNTEER, 100)
    voucher = rewards.redeem(shop, firewall.keystore, VOL, offered["_id"], NOW)
    assert voucher["_id"] == rules.voucher_id(offered["_id"], 1) and voucher["holder"] == VOLUNTEER
    assert points(shop, VOLUNTEER) == 70 and points(shop, SHOP) == 30
    payload = vouchers.open_code(firewall.keystore.installation_key().public_key(), voucher["code"])
    assert payload == {"id": voucher["_id"], "organisation": SHOP, "reward": offered["_id"], "points": 30,
                       "issued_at": NOW.isoformat(timespec="seconds")}
    assert [v["_id"] for v in rewards.vouchers_of(shop, C1, VOLUNTEER)] == [voucher["_id"]]
    assert rewards.catalogue(shop, C1)[0]["left"] == 4
    used = rewards.use(shop, firewall.keystore, PARTNER, voucher["code"], NOW)
    assert used["_id"] == rules.redemption_id(voucher["_id"])
    before = stored(shop)
    with pytest.raises(LedgerError) as again:
        rewards.use(shop, firewall.keystore, PARTNER, voucher["code"], NOW)
    assert again.value.status == 409 and again.value.errors[0].key == "pt_used"
    assert again.value.errors[0].params == {"at": "2026-03-15 18:00"}  # when it was used, in the pages' time zone
    assert stored(shop) == before and rewards.vouchers_of(shop, C1, VOLUNTEER)[0]["used"]["_id"] == used["_id"]


def _forged(code: str, **change: Any) -> str:
    body, signature = code.removeprefix(vouchers.PREFIX).split(".")
    payload = {**json.loads(unb64url(body)), **change}
    return f"{vouchers.PREFIX}{b64url(json.dumps(payload).encode())}.{signature}"


def test_bad_redemptions_name_why_and_change_nothing(shop: Couch, firewall: Firewall) -> None:
    offered, last_one = reward(shop), reward(shop, price=10, stock=1)
    give(shop, VOLUNTEER, 20)
    keys = firewall.keystore
    assert rewards.redeem(shop, keys, VOL, last_one["_id"], NOW)
    voucher = rewards.vouchers_of(shop, C1, VOLUNTEER)[0]
    other_shop = principal("user:hezuo-other", roles=[Role.PARTNER], organisation="organisation:c1-other")
    before = stored(shop)
    cases = [(lambda: rewards.redeem(shop, keys, VOL, offered["_id"], NOW), "pt_points_short", 400),
             (lambda: rewards.redeem(shop, keys, VOL, last_one["_id"], NOW), "pt_out_of_stock", 409),
             (lambda: rewards.redeem(shop, keys, VOL, "reward:nowhere", NOW), "pt_no_reward", 404),
             (lambda: rewards.redeem(shop, keys, VOL, "", NOW), "pt_no_reward", 404),
             (lambda: rewards.use(shop, keys, PARTNER, _forged(voucher["code"], points=1), NOW), "pt_forged", 400),
             (lambda: rewards.use(shop, keys, PARTNER, voucher["code"][:-3] + "AAA", NOW), "pt_forged", 400),
             (lambda: rewards.use(shop, keys, PARTNER, "LV1.x.y", NOW), "pt_forged", 400),
             (lambda: rewards.use(shop, keys, PARTNER, "", NOW), "pt_forged", 400),
             (lambda: rewards.use(shop, keys, PARTNER, "x" * 5000, NOW), "pt_forged", 400),
             (lambda: rewards.use(shop, keys, other_shop, voucher["code"], NOW), "pt_other_partner", 403),
             (lambda: rewards.use(shop, keys, VOL, voucher["code"], NOW), "forbidden", 403),
             (lambda: rewards.offer(shop, SECRETARY, SHOP, "x", "service", 0, 5, NOW), "pt_whole_number", 400),
             (lambda: rewards.offer(shop, SECRETARY, SHOP, "x", "service", -5, 5, NOW), "pt_whole_number", 400),
             (lambda: rewards.offer(shop, SECRETARY, SHOP, "x", "service", 5, "5", NOW), "pt_whole_number", 400),
             (lambda: rewards.offer(shop, SECRETARY, SHOP, " ", "service", 5, 5, NOW), "pt_reward_name", 400),
             (lambda: rewards.offer(shop, SECRETARY, SHOP, "x", "cash", 5, 5, NOW), "pt_reward_kind", 400),
             (lambda: rewards.offer(shop, VOL, SHOP, "x", "service", 5, 5, NOW), "forbidden", 403)]
    for act, key, status in cases:
        with pytest.raises(LedgerError) as refused:
            act()
        assert (refused.value.errors[0].key, refused.value.status) == (key, status)
    assert stored(shop) == before and points(shop, VOLUNTEER) == 10


def test_stock_and_points_never_go_below_zero_under_concurrent_redemptions(shop: Couch, firewall: Firewall) -> None:
    scarce = reward(shop, price=10, stock=3)
    people = [principal(f"user:zhiyuan-pts{n}") for n in range(6)]
    for p in people:
        give(shop, p.user_id, 10)
    rich = principal("user:zhiyuan-rich")
    give(shop, rich.user_id, 10)  # one voucher's worth, asked for six times at once

    def attempt(p: Principal, reward_id: str = scarce["_id"]) -> str:
        try:
            rewards.redeem(shop, firewall.keystore, p, reward_id, NOW)
        except LedgerError as refused:
            return refused.errors[0].key
        return "ok"

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(attempt, people))
    assert outcomes.count("ok") == 3 and set(outcomes) <= {"ok", "pt_out_of_stock"}
    assert len(rewards._taken(shop, scarce["_id"])) == 3 and rewards.catalogue(shop, C1)[0]["left"] == 0
    plenty = reward(shop, price=10, stock=50)
    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(lambda _: attempt(rich, plenty["_id"]), range(6)))
    assert outcomes.count("ok") == 1 and set(outcomes) <= {"ok", "pt_busy", "pt_points_short"}, outcomes
    assert points(shop, rich.user_id) == 0
    assert len(rewards.vouchers_of(shop, C1, rich.user_id)) == 1 and len(rewards._taken(shop, plenty["_id"])) == 1
    assert all(v >= 0 for a, v in timebank.balances(shop, C1, "points").items() if a != C1)


# ---------------------------------------------------------------- statements

def test_statements_by_month_and_year_with_community_totals_and_csv(shop: Couch, firewall: Firewall) -> None:
    community = shop.main.get(C1)
    confirmation(shop, VOLUNTEER, 120, dt.datetime(2026, 1, 20, tzinfo=dt.UTC))
    confirmation(shop, VOLUNTEER, 60, dt.datetime(2026, 3, 2, tzinfo=dt.UTC))
    rewards.mint_due(shop, community, NOW)  # minted at each event's time: 20 in January, 10 in March
    rewards.redeem(shop, firewall.keystore, VOL, reward(shop, price=25)["_id"], NOW)
    march = rewards.statement(shop, C1, VOLUNTEER, "2026-03")
    assert {k: march["ledgers"]["points"][k] for k in ("opening", "in", "out", "closing")} == \
        {"opening": 20, "in": 10, "out": 25, "closing": 5}
    assert {k: march["ledgers"]["hours"][k] for k in ("opening", "in", "out", "closing")} == \
        {"opening": 120, "in": 60, "out": 0, "closing": 180}
    assert len(march["ledgers"]["points"]["entries"]) == 2
    year = rewards.statement(shop, C1, VOLUNTEER, "2026")["ledgers"]["points"]
    assert (year["opening"], year["in"], year["out"], year["closing"]) == (0, 30, 25, 5)
    assert rewards.statement(shop, C1, VOLUNTEER, "2026-02")["ledgers"]["points"]["in"] == 0
    totals = rewards.community_statements(shop, C1, "2026-03")
    assert totals["totals"] == {"minted": 10, "redeemed": 25, "hours_confirmed": 60, "transfers": 3}
    assert totals["lines"][VOLUNTEER]["points"] == {"opening": 20, "in": 10, "out": 25, "closing": 5}
    text = rewards.statements_csv(totals, {VOLUNTEER: "志愿者甲", SHOP: "测试超市"},
                                  {"user": "志愿者", "organisation": "合作单位"})
    lines = text.splitlines()
    assert lines[0].split(",") == list(rules.STATEMENT_CSV_HEADER)
    assert "志愿者甲,志愿者,2026-03,2,1,0,3,20,10,25,5" in lines and VOLUNTEER not in text
    for bad in ("2026-13", "26", "2026-3", "x", "", "2026-03-01", "2026-00"):
        with pytest.raises(LedgerError, match="^period: "):
            rewards.statement(shop, C1, VOLUNTEER, bad)


def test_a_second_use_recorded_offline_is_kept_and_shown(shop: Couch, firewall: Firewall) -> None:
    """Two phones honour one voucher offline: the second redemption reaches CouchDB as another first revision of the
    same id (what the sync gateway stores for a phone's branch, `new_edits=false`): a conflict, listed with the
    refused version, never a second credit of anything."""
    give(shop, VOLUNTEER, 30)
    voucher = rewards.redeem(shop, firewall.keystore, VOL, reward(shop)["_id"], NOW)
    first = rewards.use(shop, firewall.keystore, PARTNER, voucher["code"], NOW)
    assert rewards.used_twice(shop, C1) == []
    second = {k: v for k, v in first.items() if k != "_rev"} | {
        "created_by": "user:hezuo-test2", "created_at": (NOW + dt.timedelta(minutes=5)).isoformat(),
        "_rev": "1-" + "f" * 32}
    assert not [r for r in shop.main.resource._request_response(
        "POST", "_bulk_docs", data=json.dumps({"docs": [second], "new_edits": False}).encode(),
        headers={"Content-Type": "application/json"})[1] if "error" in r]
    twice = rewards.used_twice(shop, C1)
    assert [d["_id"] for d in twice] == [first["_id"]] and len(twice[0]["others"]) == 1
    assert {twice[0]["created_by"], twice[0]["others"][0]["created_by"]} == {PARTNER.user_id, "user:hezuo-test2"}
    assert points(shop, VOLUNTEER) == 0 and points(shop, SHOP) == 30  # nothing moved twice


# ---------------------------------------------------------------- redemptions left half done, voided, racing the stock

def _left_unpaid(couch: Couch, keys: Any, offered: Doc, slot: int, holder: str, at: dt.datetime) -> Doc:
    """What a redemption leaves when its process stops between its two writes: the voucher, no debit."""
    voucher_id = rules.voucher_id(offered["_id"], slot)
    return couch.main.save(rewards._voucher(keys, offered, voucher_id, holder, rules.spend_id(voucher_id), holder,
                                            at))


def test_a_voucher_left_unpaid_by_a_crash_is_paid_or_withdrawn_by_the_sweep(shop: Couch, firewall: Firewall) -> None:
    """Rolled forward, not back: the sweep pays an unpaid voucher under the debit id made from it (a late first
    process meets that debit as its own: one debit), or withdraws it when the points are gone (its unit free again);
    never before PAY_WITHIN, while its redemption may still be under way. The hours and points sums hold."""
    keys, offered = firewall.keystore, reward(shop, price=30, stock=2)
    give(shop, VOLUNTEER, 40)
    paid_later = _left_unpaid(shop, keys, offered, 1, VOLUNTEER, NOW)
    withdrawn = _left_unpaid(shop, keys, offered, 2, OTHER_VOLUNTEER, NOW)  # holds no points
    assert rewards.vouchers_of(shop, C1, VOLUNTEER) == [] and rewards.catalogue(shop, C1)[0]["left"] == 0
    assert rewards.repair_vouchers(shop, NOW + rules.PAY_WITHIN - dt.timedelta(seconds=1)) == 0
    assert rewards.repair_vouchers(shop, NOW + rules.PAY_WITHIN) == 2
    assert [v["_id"] for v in rewards.vouchers_of(shop, C1, VOLUNTEER)] == [paid_later["_id"]]
    assert points(shop, VOLUNTEER) == 10 and points(shop, SHOP) == 30
    assert get_or_none(shop.main, withdrawn["_id"]) is None and rewards.catalogue(shop, C1)[0]["left"] == 1
    rewards._pay(shop, paid_later, offered["name"], NOW)  # the first process, back from its stall
    assert points(shop, VOLUNTEER) == 10 and rewards.repair_vouchers(shop, NOW + rules.PAY_WITHIN) == 0
    assert sum(timebank.balances(shop, C1, "points").values()) == 0  # the community's mints included


def test_reversing_a_redemption_voids_its_voucher(shop: Couch, firewall: Firewall) -> None:
    """The secretary reverses a redemption's debit: the points go back and the voucher is void, said by its
    redemption (`voided`), so no partner honours it, online or on a phone once synced (pages.js refuses it the
    same way); a reversal whose void a stopped process did not write is voided by the sweep."""
    keys, offered = firewall.keystore, reward(shop, price=30, stock=5)
    give(shop, VOLUNTEER, 60)
    voucher, other = (rewards.redeem(shop, keys, VOL, offered["_id"], NOW) for _ in range(2))
    rewards.reverse(shop, firewall.signer, SECRETARY, voucher["transfer"], "商家停业", NOW)
    assert points(shop, VOLUNTEER) == 30
    shown = {v["_id"]: v["used"] for v in rewards.vouchers_of(shop, C1, VOLUNTEER)}
    assert shown[voucher["_id"]]["voided"] == "商家停业" and shown[other["_id"]] is None
    before = stored(shop)
    with pytest.raises(LedgerError) as refused:
        rewards.use(shop, keys, PARTNER, voucher["code"], NOW)
    assert (refused.value.errors[0].key, refused.value.status) == ("pt_voided", 409) and stored(shop) == before
    timebank.reverse(shop, firewall.signer, SECRETARY, other["transfer"], "重复兑换", NOW)  # stopped before the void
    with pytest.raises(LedgerError, match="voided"):
        rewards.use(shop, keys, PARTNER, other["code"], NOW)  # refused all the same
    assert rewards.repair_vouchers(shop, NOW) == 1
    assert shop.main.get(rules.redemption_id(other["_id"]))["voided"] == "重复兑换"
    assert points(shop, VOLUNTEER) == 60 and rewards.repair_vouchers(shop, NOW) == 0


def _race_stock(shop: Couch, keys: Any, reward_id: str, buyers: list[Principal]) -> None:
    """The buyers redeem the reward while its offerer lowers its stock to one, all at the same moment."""
    start = threading.Barrier(len(buyers) + 1)

    def buy(p: Principal) -> None:
        start.wait()
        with contextlib.suppress(LedgerError):
            rewards.redeem(shop, keys, p, reward_id, NOW)

    def lower() -> None:
        start.wait()
        with contextlib.suppress(LedgerError):
            rewards.set_stock(shop, SECRETARY, reward_id, 1, NOW)

    with ThreadPoolExecutor(len(buyers) + 1) as pool:
        for done in [pool.submit(buy, p) for p in buyers] + [pool.submit(lower)]:
            done.result()


def test_a_redemption_racing_a_stock_change_never_ends_one_over(shop: Couch, firewall: Firewall) -> None:
    """The offerer lowers the stock to what is bought while people redeem the last units: whichever way each race
    falls (the redemption reads the new stock and gives its unit back, or the change counts it and covers it),
    the units bought never exceed the stock stored."""
    people = [principal(f"user:zhiyuan-race{n}") for n in range(3)]
    for p in people:
        give(shop, p.user_id, 100)
    for round_ in range(3):  # without the two re-counts the first round ends over
        offered = reward(shop, price=10, stock=4)
        rewards.redeem(shop, firewall.keystore, people[0], offered["_id"], NOW)
        _race_stock(shop, firewall.keystore, offered["_id"], people[1:])
        stock = shop.main.get(offered["_id"])["stock"]
        assert len(rewards._taken(shop, offered["_id"])) <= stock, round_
