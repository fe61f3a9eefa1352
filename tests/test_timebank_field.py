"""The time bank in the field (issue 16 items 3, 5): a resident confirms on the provider's phone with one of their
one-time codes (the code checked when the claim is stored, spent by the confirmation, never by a phone), and the
hours floor holds when many confirmations against one resident arrive at once (the account's `ledger_lock`).
Through the real services on pouchdb-server; tests/test_timebank_sync.py sends the same through the sync gateway."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pycouchdb
import pytest

from crypto.keyring import master_id
from crypto.keys import KeyMaterialError, new_key
from server.domain import timebank as rules
from server.domain.access import Principal
from server.domain.declaration import Role, ValidationError, validate
from server.security.keystore import CODE_KEY_ID, KeyStore
from server.services import timebank
from server.services.demo import STREET_ID
from server.store.couch import Couch, get_or_none

from .test_timebank import C1, GRID, OTHER_RESIDENT, RESIDENT, VOLUNTEER, hours, need_for

VOLUNTEER_P = Principal(VOLUNTEER, frozenset({Role.VOLUNTEER}), STREET_ID, frozenset({C1}), frozenset({GRID}))
RESIDENT_P = Principal("user:jumin1", frozenset({Role.RESIDENT}), STREET_ID, resident=RESIDENT)


def test_codes_are_good_once_each_in_any_order() -> None:
    lock = {"_id": rules.ledger_lock_id(RESIDENT), "secret": "ab" * 32, "codes_from": 0, "codes_used": []}
    codes = [rules.confirmation_code(lock["secret"], n) for n in rules.open_code_numbers(lock)]
    assert len(codes) == rules.CONFIRM_CODES_AHEAD and all(len(c) == 6 and c.isdigit() for c in codes)
    assert rules.code_number(lock, codes[2]) == 2 and rules.code_number(lock, " " + codes[0]) == 0
    spent = rules.spend_code(lock, 2)
    assert rules.code_number(spent, codes[2]) is None and rules.code_number(spent, codes[0]) == 0
    assert rules.open_code_numbers(spent) == [0, 1, 3, 4, 5]  # always the next five unspent
    spent = rules.spend_code(rules.spend_code(spent, 0), 1)  # the window moves past 0, 1, 2
    assert spent["codes_from"] == 3 and spent["codes_used"] == []
    assert rules.open_code_numbers(spent) == list(range(3, 3 + rules.CONFIRM_CODES_AHEAD))
    other = {**lock, "secret": "cd" * 32}  # another resident's codes are not theirs
    assert all(rules.code_number(other, c) is None for c in codes)
    # A code typed in full-width digits (a Chinese keyboard), or any text that is not ASCII, is simply not a code.
    full_width = codes[3].translate({ord(d): ord(d) + 0xFEE0 for d in "0123456789"})
    assert rules.code_number(spent, full_width) is None and rules.code_number(spent, "验证码") is None
    assert rules.code_number(None, codes[0]) is None and rules.code_number(lock, 123456) is None


def test_confirmed_in_person_the_hours_move_once_and_the_code_is_spent(demo_loaded: Couch, keys: KeyStore) -> None:
    now = dt.datetime.now(dt.UTC)
    codes = timebank.confirmation_codes(demo_loaded, keys, RESIDENT)
    assert timebank.confirmation_codes(demo_loaded, keys, RESIDENT) == codes  # the same until used
    need, other = need_for(demo_loaded, RESIDENT, VOLUNTEER), need_for(demo_loaded, RESIDENT, VOLUNTEER)
    for code, consent, key in (("000000" if "000000" not in codes else "999999", True, "tb_code_wrong"),
                               (codes[0], False, "tb_in_person_consent")):
        with pytest.raises(timebank.LedgerError) as refused:
            timebank.claim(demo_loaded, keys, VOLUNTEER_P, need, 90, "", now, in_person_code=code,
                           in_person_consent=consent)
        assert refused.value.errors[0].key == key
        assert get_or_none(demo_loaded.main, rules.claim_id(need)) is None and hours(demo_loaded, RESIDENT) == 0
    settled = timebank.claim(demo_loaded, keys, VOLUNTEER_P, need, 90, "", now, in_person_code=codes[0],
                             in_person_consent=True)
    assert (settled["status"], settled["consent"], settled["transfer"]) == (
        "confirmed", True, rules.transfer_id_of_claim(settled["_id"]))
    assert "in_person_code" not in demo_loaded.main.get(settled["_id"])  # dropped once spent
    assert hours(demo_loaded, RESIDENT) == -90 and hours(demo_loaded, VOLUNTEER) == 90
    assert timebank.confirmation_codes(demo_loaded, keys, RESIDENT) == codes[1:] + [
        rules.confirmation_code(rules.code_secret(keys.code_key(), RESIDENT), rules.CONFIRM_CODES_AHEAD)]
    with pytest.raises(timebank.LedgerError) as reused:  # the provider saw it: good for nothing else
        timebank.claim(demo_loaded, keys, VOLUNTEER_P, other, 60, "", now, in_person_code=codes[0],
                       in_person_consent=True)
    assert reused.value.errors[0].key == "tb_code_wrong" and hours(demo_loaded, RESIDENT) == -90


def test_one_code_on_two_claims_stored_at_once_confirms_one(demo_loaded: Couch, keys: KeyStore) -> None:
    """Both claims passed the check when stored (the code was good then): the settlement spends it once; the
    other claim waits for the resident's answer, saying why, and moves nothing."""
    now = dt.datetime.now(dt.UTC)
    code = timebank.confirmation_codes(demo_loaded, keys, OTHER_RESIDENT)[0]
    resident = demo_loaded.main.get(OTHER_RESIDENT)
    claims = []
    for _ in range(2):
        need = need_for(demo_loaded, OTHER_RESIDENT, VOLUNTEER)
        claims.append(demo_loaded.main.save({
            "_id": rules.claim_id(need), "type": "claim", "task": need, "resident": OTHER_RESIDENT,
            **{k: resident[k] for k in ("street", "community", "grid", "household")}, "minutes": 60,
            "status": "claimed", "in_person_code": code, "in_person_consent": True, "in_person_at": now.isoformat(),
            "created_by": VOLUNTEER, "created_at": now.isoformat()})["_id"])
    assert sorted(timebank.in_person_claims(demo_loaded)) == sorted(claims)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda cid: timebank.settle_in_person(demo_loaded, keys, [cid], now), claims))
    states = sorted((demo_loaded.main.get(c)["status"], demo_loaded.main.get(c).get("in_person_refused"))
                    for c in claims)
    assert states == [("claimed", "tb_code_used"), ("confirmed", None)]
    assert hours(demo_loaded, OTHER_RESIDENT) == -60
    assert timebank.in_person_claims(demo_loaded) == []  # nothing left for the clock; settling again changes nothing
    timebank.settle_in_person(demo_loaded, keys, claims, now)
    assert hours(demo_loaded, OTHER_RESIDENT) == -60


CONCURRENT = 12


def test_many_confirmations_against_one_resident_at_once_keep_the_floor(demo_loaded: Couch, keys: KeyStore) -> None:
    """Twelve claims of four hours each, confirmed all at the same moment: the floor (-10 h) lets two through,
    never a third, whichever order they reach CouchDB in."""
    now = dt.datetime.now(dt.UTC)
    claims = [timebank.claim(demo_loaded, keys, VOLUNTEER_P, need_for(demo_loaded, RESIDENT, VOLUNTEER), 240, "",
                             now)["_id"] for _ in range(CONCURRENT)]
    start = threading.Barrier(CONCURRENT)

    def confirm(claim_id: str) -> str:
        start.wait()
        try:
            timebank.confirm(demo_loaded, RESIDENT_P, claim_id, now)
        except timebank.LedgerError as refused:
            return refused.errors[0].key
        return "confirmed"

    with ThreadPoolExecutor(CONCURRENT) as pool:
        outcomes = list(pool.map(confirm, claims))
    assert sorted(outcomes) == ["confirmed"] * 2 + ["tb_over_limit"] * (CONCURRENT - 2), outcomes
    assert hours(demo_loaded, RESIDENT) == -480 and hours(demo_loaded, VOLUNTEER) == 480
    assert [demo_loaded.main.get(c)["status"] for c in claims].count("confirmed") == 2


def test_a_lapsing_claim_keeps_no_code(demo_loaded: Couch, keys: KeyStore) -> None:
    """A claim stored with an in-person code that nothing settled (a process stopped in between) does not lapse
    holding it: at expiry the code is spent (the provider's phone saw it) and dropped; nothing moves."""
    now = dt.datetime.now(dt.UTC)
    long_ago = now - rules.CLAIM_EXPIRES_AFTER - dt.timedelta(hours=1)
    code = timebank.confirmation_codes(demo_loaded, keys, OTHER_RESIDENT)[0]
    resident = demo_loaded.main.get(OTHER_RESIDENT)
    claims = []
    for _ in range(2):  # the same code on both
        need = need_for(demo_loaded, OTHER_RESIDENT, VOLUNTEER, days_ago=20)
        claims.append(demo_loaded.main.save({
            "_id": rules.claim_id(need), "type": "claim", "task": need, "resident": OTHER_RESIDENT,
            **{k: resident[k] for k in ("street", "community", "grid", "household")}, "minutes": 60,
            "status": "claimed", "in_person_code": code, "in_person_consent": True,
            "in_person_at": long_ago.isoformat(), "created_by": VOLUNTEER, "created_at": long_ago.isoformat()})["_id"])
    timebank.expire(demo_loaded, keys, now)
    after = [demo_loaded.main.get(c) for c in claims]
    assert [d["status"] for d in after] == ["expired", "expired"]
    assert not any("in_person_code" in d for d in after)
    assert code not in timebank.confirmation_codes(demo_loaded, keys, OTHER_RESIDENT)
    assert hours(demo_loaded, OTHER_RESIDENT) == 0


def test_wrong_codes_are_counted_and_after_five_a_day_the_residents_codes_rest(demo_loaded: Couch,
                                                                               keys: KeyStore) -> None:
    """A scripted client cannot guess: each claim's wrong code counts once against the resident; after
    CODE_MISSES_PER_DAY in a day even a good code is refused until the day has passed."""
    now = dt.datetime.now(dt.UTC)
    codes = timebank.confirmation_codes(demo_loaded, keys, RESIDENT)
    wrong = next(f"{n:06d}" for n in range(1000) if f"{n:06d}" not in codes)
    need = need_for(demo_loaded, RESIDENT, VOLUNTEER)
    for _ in range(2):  # the same claim sent again (a retry, a phone's next sync): one guess
        with pytest.raises(timebank.LedgerError) as refused:
            timebank.claim(demo_loaded, keys, VOLUNTEER_P, need, 60, "", now, in_person_code=wrong,
                           in_person_consent=True)
        assert refused.value.errors[0].key == "tb_code_wrong"
    assert timebank.code_misses(demo_loaded, RESIDENT, now) == 1
    for _ in range(rules.CODE_MISSES_PER_DAY - 1):
        with pytest.raises(timebank.LedgerError) as refused:
            timebank.claim(demo_loaded, keys, VOLUNTEER_P, need_for(demo_loaded, RESIDENT, VOLUNTEER), 60, "", now,
                           in_person_code=wrong, in_person_consent=True)
        assert refused.value.errors[0].key == "tb_code_wrong"
    assert timebank.code_misses(demo_loaded, RESIDENT, now) == rules.CODE_MISSES_PER_DAY
    lock = demo_loaded.accounts.get(rules.ledger_lock_id(RESIDENT))
    assert wrong not in str(lock["code_misses"])  # a hash, never the code typed
    with pytest.raises(timebank.LedgerError) as resting:
        timebank.claim(demo_loaded, keys, VOLUNTEER_P, need, 60, "", now, in_person_code=codes[0],
                       in_person_consent=True)
    assert resting.value.errors[0].key == "tb_code_tries_used" and hours(demo_loaded, RESIDENT) == 0
    tomorrow = now + rules.CODE_MISS_WINDOW + dt.timedelta(minutes=1)
    settled = timebank.claim(demo_loaded, keys, VOLUNTEER_P, need, 60, "", tomorrow, in_person_code=codes[0],
                             in_person_consent=True)
    assert settled["status"] == "confirmed" and hours(demo_loaded, RESIDENT) == -60


def test_the_code_secret_is_stored_only_wrapped_and_a_master_key_rotation_keeps_the_codes(
        demo_loaded: Couch, keys: KeyStore) -> None:
    """No resident's codes can be computed from the accounts database alone: their secret is derived from the
    installation's code key, stored wrapped under the master key; `linli keys rotate-master` re-wraps it, so the
    codes a resident printed stay good, and only the new master key opens it afterwards."""
    now = dt.datetime.now(dt.UTC)
    codes = timebank.confirmation_codes(demo_loaded, keys, RESIDENT)
    stored = json.dumps([row["doc"] for row in demo_loaded.accounts.all(include_docs="true", as_list=True)])
    lock = demo_loaded.accounts.get(rules.ledger_lock_id(RESIDENT))
    assert "secret" not in lock and rules.code_secret(keys.code_key(), RESIDENT) not in stored
    assert keys.code_key().hex() not in stored and base64.b64encode(keys.code_key()).decode() not in stored
    wrapped = demo_loaded.accounts.get(CODE_KEY_ID)
    assert wrapped["master_id"] == master_id(keys.master_keys[0])

    old, new = keys.master_keys[0], new_key()
    KeyStore(demo_loaded, (new, old)).rotate_master()
    assert demo_loaded.accounts.get(CODE_KEY_ID)["master_id"] == master_id(new)
    with pytest.raises(KeyMaterialError, match=f"no configured master key opens {CODE_KEY_ID}"):
        KeyStore(demo_loaded, (old,)).code_key()
    rotated = KeyStore(demo_loaded, (new,))
    assert timebank.confirmation_codes(demo_loaded, rotated, RESIDENT) == codes
    settled = timebank.claim(demo_loaded, rotated, VOLUNTEER_P, need_for(demo_loaded, RESIDENT, VOLUNTEER), 60, "",
                             now, in_person_code=codes[0], in_person_consent=True)
    assert settled["status"] == "confirmed" and hours(demo_loaded, RESIDENT) == -60


def test_a_lock_from_before_keeps_no_secret_once_upgraded(demo_loaded: Couch, keys: KeyStore) -> None:
    """A ledger_lock stored with its secret in the clear (version 1, before the upgrade) is read upgraded without
    it (migrations.py), so the hours move out of that account and what is written back holds no secret; `linli
    migrate` rewrites the others."""
    old = {"_id": rules.ledger_lock_id(RESIDENT), "type": "ledger_lock", "account": RESIDENT, "seq": 0,
           "secret": "ab" * 32, "codes_from": 2, "codes_used": ["4"]}
    with pytest.raises(ValidationError, match="secret: is not a declared field of ledger_lock"):
        validate(old)  # a secret is no field of a lock any more: nothing stores one
    pycouchdb.client.Database.save(demo_loaded.accounts, dict(old))  # as an earlier version stored it
    assert timebank.confirmation_codes(demo_loaded, keys, RESIDENT) == [
        rules.confirmation_code(rules.code_secret(keys.code_key(), RESIDENT), n) for n in (2, 3, 5, 6, 7)]
    now = dt.datetime.now(dt.UTC)
    claim = timebank.claim(demo_loaded, keys, VOLUNTEER_P, need_for(demo_loaded, RESIDENT, VOLUNTEER), 60, "", now)
    timebank.confirm(demo_loaded, RESIDENT_P, claim["_id"], now)
    stored = demo_loaded.accounts.get(rules.ledger_lock_id(RESIDENT))
    assert hours(demo_loaded, RESIDENT) == -60 and "secret" not in stored and stored["schema_version"] == 2
