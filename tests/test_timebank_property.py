"""Property test of the time bank's ledgers (issue 16), through the real services and the real `ledger` view on
pouchdb-server: for random sequences of claims (good and bad amounts, one task claimed twice), confirmations
(by the resident, by the claimant themselves), disputes, the clock running past expiry, the secretary's
reversals (of reversals too), points minted and spent, and vouchers: redeemed, left unpaid by a process that
stopped between the voucher and its debit (then paid or withdrawn by the sweep), voided by reversing their debit;
after every step:

- the hours of all accounts sum to zero, and so do the points (the community's mints negative);
- every account's hours and points are what a plain model of the same acts says (no confirmed hour lost or
  counted twice), hours never below the floor, points never below zero but the community's;
- every claim's state is the model's, and each confirmed claim has exactly one transfer.

Each example works on fresh needs of two fresh residents of the small demo street's first grid, claimed by its
two volunteers (one database for all examples: the volunteers' balances carry over from one to the next).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from server.domain import points as points_rules
from server.domain import timebank as rules
from server.domain.access import Principal
from server.domain.declaration import Role
from server.security.firewall import Firewall
from server.security.keystore import KeyStore
from server.services import rewards, timebank
from server.services.demo import STREET_ID
from server.store.couch import Couch, bulk_save, get_or_none, iter_view_docs

from .test_timebank import C1, GRID, VOLUNTEER, WORKER, need_for

VOLUNTEERS = (VOLUNTEER, "user:zhiyuan01b")
SHOP = "organisation:demo-shop"
SECRETARY = Principal("user:shuji1", frozenset({Role.SECRETARY}), STREET_ID, frozenset({C1}))
Doc = dict[str, Any]


def volunteer(user_id: str) -> Principal:
    return Principal(user_id, frozenset({Role.VOLUNTEER}), STREET_ID, frozenset({C1}), frozenset({GRID}))


def resident_principal(resident: str) -> Principal:
    return Principal(f"user:jumin-{resident[9:]}", frozenset({Role.RESIDENT}), STREET_ID, resident=resident)


@dataclass
class Model:
    """What the ledgers must hold, kept by plain arithmetic beside the real acts."""

    hours: dict[str, int]
    points: dict[str, int]
    claims: dict[str, Doc] = field(default_factory=dict)  # claim id -> {status, minutes, resident, by}
    transfers: list[Doc] = field(default_factory=list)  # this example's, as recorded
    reversed: set[str] = field(default_factory=set)

    def move(self, ledger: str, source: str, target: str, amount: int) -> None:
        book = self.hours if ledger == "hours" else self.points
        book[source] = book.get(source, 0) - amount
        book[target] = book.get(target, 0) + amount

    def allows(self, ledger: str, source: str, amount: int) -> bool:
        held = (self.hours if ledger == "hours" else self.points).get(source, 0)
        if ledger == "hours":
            return held - amount >= rules.HOURS_FLOOR
        return source.startswith("community:") or held >= amount


# One round: a volunteer claims for a new task of a resident (amounts good and bad); days may pass (the expiry
# sweep runs); one claim of the last few is answered (confirmed by the resident, by its own claimant, disputed, left,
# or claimed again); maybe a transfer of the example is reversed; maybe points are minted or spent; maybe a volunteer
# redeems a voucher (whole, or left unpaid by a stop and finished by the sweep) or one of the example's is voided.
ROUND = st.tuples(
    st.integers(0, 1), st.integers(0, 1), st.sampled_from([240, 480, 90, 480, 30, 0, -30, 481]),
    st.sampled_from([0, 0, 0, 1, 7, 15]),
    st.integers(0, 3), st.sampled_from(["confirm", "confirm", "confirm", "own", "dispute", "leave", "twice"]),
    st.one_of(st.none(), st.integers(0, 9)),
    st.one_of(st.none(), st.tuples(st.sampled_from(["mint", "spend"]), st.integers(0, 1), st.integers(1, 30))),
    st.one_of(st.none(), st.tuples(st.sampled_from(["redeem", "stopped", "void"]), st.integers(0, 1),
                                   st.integers(0, 9))),
)
PRICE = 20


def fresh_residents(couch: Couch, n: int) -> list[str]:
    """n new residents of the grid's first household, so that each example's hours start at zero (and a failing
    example replays alike)."""
    household = next(iter_view_docs(couch.main, "linli/by_place", [GRID, "household"]))
    residents = [{"_id": f"resident:tb-{uuid.uuid4().hex[:10]}", "type": "resident",
                  **{k: household[k] for k in ("street", "community", "grid")}, "household": household["_id"],
                  "name": "居民", "gender": "female", "birth_date": "1950-01-01"} for _ in range(n)]
    assert not [r for r in bulk_save(couch.main, residents) if r.error]
    return [r["_id"] for r in residents]


def shop_reward(couch: Couch) -> Doc:
    """The shop's reward every example redeems (made once: the database is the examples' own)."""
    if get_or_none(couch.main, SHOP) is None:
        couch.main.save({"_id": SHOP, "type": "organisation", "street": STREET_ID, "community": C1, "name": "小店",
                         "kind": "firm"})
    found = [r for r in iter_view_docs(couch.main, "linli/by_place", [C1, "reward"]) if r["organisation"] == SHOP]
    return found[0] if found else rewards.offer(couch, SECRETARY, SHOP, "理发", "service", PRICE, 10_000,
                                                dt.datetime.now(dt.UTC))


def _refused(act: Any, *args: Any) -> bool:
    """True if the act, called with args, is refused (LedgerError)."""
    try:
        act(*args)
    except timebank.LedgerError:
        return True
    return False


@dataclass
class Run:
    """One example: the real acts, each checked against the model's expectation."""

    couch: Couch
    signer: Any
    keys: KeyStore
    model: Model
    clock: dt.datetime
    tasks: list[tuple[str, str, str]] = field(default_factory=list)  # (task, volunteer, resident) claimed

    def claim(self, by: str, resident: str, minutes: int) -> None:
        task = need_for(self.couch, resident, by)
        ok = not _refused(timebank.claim, self.couch, self.keys, volunteer(by), task, minutes, "", self.clock)
        assert ok == (0 < minutes <= rules.MAX_CLAIM_MINUTES)
        if ok:
            self.tasks.append((task, by, resident))
            self.model.claims[rules.claim_id(task)] = {"status": "claimed", "minutes": minutes, "at": self.clock}

    def days_pass(self, days: int) -> None:
        self.clock += dt.timedelta(days=days)
        timebank.expire(self.couch, self.keys, self.clock)
        for claim in self.model.claims.values():
            if self._lapsed(claim):
                claim["status"] = "expired"

    def _lapsed(self, claim: Doc) -> bool:
        return claim["status"] == "claimed" and self.clock >= claim["at"] + rules.CLAIM_EXPIRES_AFTER

    def answer(self, which: int, how: str) -> None:
        if not self.tasks:
            return
        task, by, resident = self.tasks[-1 - which % len(self.tasks)]
        cid = rules.claim_id(task)
        claim = self.model.claims[cid]
        if how == "twice":  # the same task claimed again (a second phone, a retry)
            assert _refused(timebank.claim, self.couch, self.keys, volunteer(by), task, 60, "", self.clock)
            return
        if how == "leave":
            return
        waiting, lapsed = claim["status"] == "claimed", self._lapsed(claim)
        if how == "own":
            assert _refused(timebank.confirm, self.couch, volunteer(by), cid, self.clock)
            return
        if how == "dispute":
            ok = not _refused(timebank.dispute, self.couch, resident_principal(resident), cid, "不是这样", self.clock)
            assert ok == (waiting and not lapsed)
        else:
            ok = not _refused(timebank.confirm, self.couch, resident_principal(resident), cid, self.clock)
            allowed = self.model.allows("hours", resident, claim["minutes"])
            event("confirm " + ("done" if ok else "refused at the floor" if waiting and not lapsed else "refused"))
            assert ok == (waiting and not lapsed and allowed), (claim, lapsed, allowed)
            if ok:
                self._moved(rules.transfer_id_of_claim(cid), "hours", resident, by, claim["minutes"], "confirmation")
        if ok:
            claim["status"] = "confirmed" if how == "confirm" else "disputed"
        elif lapsed:
            claim["status"] = "expired"  # an answer to a lapsed claim marks it lapsed

    def reverse(self, which: int) -> None:
        if not self.model.transfers:
            return
        original = self.model.transfers[which % len(self.model.transfers)]
        ok = not _refused(rewards.reverse, self.couch, self.signer, SECRETARY, original["_id"], "更正", self.clock)
        assert ok == (original["kind"] != "reversal" and original["_id"] not in self.model.reversed
                      and self.model.allows(original["ledger"], original["to"], original["amount"])), original
        event("reverse " + ("done" if ok else "refused"))
        if ok:
            self.model.reversed.add(original["_id"])
            self._moved(rules.reversal_id(original["_id"]), original["ledger"], original["to"], original["from"],
                        original["amount"], "reversal")

    def points(self, kind: str, account: str, points: int) -> None:
        key = f"{account}-{self.clock.isoformat()}-{len(self.model.transfers)}"
        community = self.couch.main.get(C1)
        if kind == "mint":
            timebank.mint(self.couch, community, account, points, "参与", key, WORKER, self.clock)
            self._moved(f"transfer:mint:{key}", "points", C1, account, points, "mint")
            return
        ok = not _refused(timebank.spend, self.couch, community, account, SHOP, points, "兑换", key, account,
                          self.clock)
        assert ok == self.model.allows("points", account, points)
        if ok:
            self._moved(f"transfer:redemption:{key}", "points", account, SHOP, points, "redemption")

    def voucher(self, how: str, account: str, which: int) -> None:
        offered = shop_reward(self.couch)
        if how == "void":
            debits = [t for t in self.model.transfers if t["_id"].startswith("transfer:redemption:")
                      and t["_id"] not in self.model.reversed]
            if debits:
                self.reverse_debit(debits[which % len(debits)])
            return
        if how == "redeem":
            try:
                paid = rewards.redeem(self.couch, self.keys, volunteer(account), offered["_id"], self.clock)
            except timebank.LedgerError:
                paid = None
            assert (paid is not None) == self.model.allows("points", account, PRICE)
            if paid:
                self._moved(paid["transfer"], "points", account, SHOP, PRICE, "redemption")
            return
        taken = rewards._taken(self.couch, offered["_id"])  # "stopped": the voucher written, the debit not
        slot = next(n for n in range(1, offered["stock"] + 1)
                    if points_rules.voucher_id(offered["_id"], n) not in taken)
        voucher_id = points_rules.voucher_id(offered["_id"], slot)
        self.couch.main.save(rewards._voucher(self.keys, offered, voucher_id, account,
                                              points_rules.spend_id(voucher_id), account, self.clock))
        self.clock += points_rules.PAY_WITHIN
        allowed = self.model.allows("points", account, PRICE)
        assert rewards.repair_vouchers(self.couch, self.clock) == 1
        event("voucher left unpaid: " + ("paid by the sweep" if allowed else "withdrawn"))
        assert (get_or_none(self.couch.main, voucher_id) is not None) == allowed
        if allowed:
            self._moved(points_rules.spend_id(voucher_id), "points", account, SHOP, PRICE, "redemption")

    def reverse_debit(self, original: Doc) -> None:
        ok = not _refused(rewards.reverse, self.couch, self.signer, SECRETARY, original["_id"], "作废", self.clock)
        assert ok == self.model.allows("points", SHOP, original["amount"])
        if ok:
            self.model.reversed.add(original["_id"])
            self._moved(rules.reversal_id(original["_id"]), "points", SHOP, original["from"], original["amount"],
                        "reversal")
            voucher = original["_id"].replace("transfer:redemption:", "voucher:", 1)
            if get_or_none(self.couch.main, voucher) is not None:  # not a bare spend: its voucher is void
                assert self.couch.main.get(points_rules.redemption_id(voucher))["voided"] == "作废"

    def _moved(self, transfer_id: str, ledger: str, source: str, target: str, amount: int, kind: str) -> None:
        self.model.move(ledger, source, target, amount)
        self.model.transfers.append({"_id": transfer_id, "ledger": ledger, "from": source, "to": target,
                                     "amount": amount, "kind": kind})


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(rounds=st.lists(ROUND, min_size=3, max_size=8))
def test_the_ledgers_hold_whatever_happens(demo_loaded: Couch, firewall: Firewall,
                                           rounds: list[tuple[Any, ...]]) -> None:
    couch = demo_loaded
    residents = fresh_residents(couch, 2)
    model = Model(dict(timebank.balances(couch, C1, "hours")), dict(timebank.balances(couch, C1, "points")))
    run = Run(couch, firewall.signer, firewall.keystore, model, dt.datetime.now(dt.UTC))
    for by, resident, minutes, days, which, how, reverse, points, voucher in rounds:
        run.claim(VOLUNTEERS[by], residents[resident], minutes)
        run.days_pass(days)
        run.answer(which, how)
        if reverse is not None:
            run.reverse(reverse)
        if points is not None:
            run.points(points[0], VOLUNTEERS[points[1]], points[2])
        if voucher is not None:
            run.voucher(voucher[0], VOLUNTEERS[voucher[1]], voucher[2])
        _check(couch, model)


def _check(couch: Couch, model: Model) -> None:
    hours = timebank.balances(couch, C1, "hours")
    points = timebank.balances(couch, C1, "points")
    assert sum(hours.values()) == 0 and sum(points.values()) == 0
    assert {a: v for a, v in hours.items() if v} == {a: v for a, v in model.hours.items() if v}
    assert {a: v for a, v in points.items() if v} == {a: v for a, v in model.points.items() if v}
    assert all(v >= rules.HOURS_FLOOR for v in hours.values())
    assert all(v >= 0 for a, v in points.items() if not a.startswith("community:"))
    for cid, claim in model.claims.items():
        stored = couch.main.get(cid)
        assert stored["status"] == claim["status"], cid
        transfer = get_or_none(couch.main, rules.transfer_id_of_claim(cid))
        assert (transfer is not None) == (claim["status"] == "confirmed"), cid
        assert transfer is None or transfer["amount"] == claim["minutes"]
