"""A claim made offline reaches the server through the real sync gateway (`linli serve`), and one task claimed
from two phones (or retried) is one claim, credited once (issue 16)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from server.domain import timebank as rules
from server.domain.access import Principal
from server.domain.declaration import Role
from server.security.keystore import KeyStore
from server.services import timebank
from server.services.demo import STREET_ID
from server.store.config import Settings
from server.store.couch import Couch
from server.store.embedded_couch import EmbeddedCouch, free_port

from .sync_harness import login, serve, stop
from .test_timebank import C1, RESIDENT, VOLUNTEER, need_for

Doc = dict[str, Any]


@pytest.fixture(name="gateway_url")
def gateway_url_fixture(couch_server: EmbeddedCouch, demo_loaded: Couch, settings: Settings) -> Iterator[str]:
    served = serve(couch_server.url, settings, free_port())
    yield served.url
    stop(served)


def push(url: str, phone: tuple[str, str], docs: list[Doc], new_edits: bool = True) -> list[Doc]:
    cookie, csrf = phone
    answer = httpx2.post(url + "sync/main/_bulk_docs", json={"docs": docs, "new_edits": new_edits}, timeout=30,
                         headers={"Cookie": cookie, "X-CSRF-Token": csrf})
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_one_task_claimed_from_two_phones_is_credited_once(gateway_url: str, demo_loaded: Couch) -> None:
    need = need_for(demo_loaded, RESIDENT, VOLUNTEER)
    at = dt.datetime.now(dt.UTC).isoformat()
    resident = demo_loaded.main.get(RESIDENT)
    claim = {"_id": rules.claim_id(need), "type": "claim", "task": need, "resident": RESIDENT,
             **{k: resident[k] for k in ("street", "community", "grid", "household")}, "minutes": 120,
             "status": "claimed", "created_by": VOLUNTEER, "created_at": at}
    first, second = login(gateway_url, "zhiyuan01a", "demo-password"), login(gateway_url, "zhiyuan01a",
                                                                            "demo-password")
    [stored] = push(gateway_url, first, [claim])
    assert stored.get("rev", "").startswith("1-"), stored
    # The second phone made the same claim offline, with another amount: sent as a new document, and as
    # replication sends it (new_edits=false, a revision of its own), it meets the first: a claim is never changed
    # once made, so both are refused and no conflicting branch is left for anyone to pick.
    [again] = push(gateway_url, second, [{**claim, "minutes": 240}])
    assert again.get("error") == "forbidden" and "not changed once made" in again["reason"], again
    replicated = {**claim, "minutes": 240, "_rev": "1-" + "b" * 32,
                  "_revisions": {"start": 1, "ids": ["b" * 32]}}
    [refused] = push(gateway_url, second, [replicated], new_edits=False)
    assert refused.get("error") == "forbidden" and "not changed once made" in refused["reason"], refused
    # The first phone retrying the very revision it sent is no new claim either.
    [retry] = push(gateway_url, first, [{**claim, "_rev": stored["rev"],
                                         "_revisions": {"start": 1, "ids": [stored["rev"][2:]]}}], new_edits=False)
    assert "error" not in retry or retry["error"] == "forbidden", retry
    assert demo_loaded.main.get(claim["_id"])["minutes"] == 120
    assert "_conflicts" not in demo_loaded.main.get(claim["_id"], conflicts="true")

    resident_p = Principal("user:jumin1", frozenset({Role.RESIDENT}), STREET_ID, resident=RESIDENT)
    timebank.confirm(demo_loaded, resident_p, claim["_id"], dt.datetime.now(dt.UTC))
    with pytest.raises(timebank.LedgerError, match="answered already"):  # once
        timebank.confirm(demo_loaded, resident_p, claim["_id"], dt.datetime.now(dt.UTC))
    assert timebank.balance(demo_loaded, C1, "hours", VOLUNTEER) == 120
    assert timebank.balance(demo_loaded, C1, "hours", RESIDENT) == -120


def test_a_phone_cannot_write_a_transfer_or_answer_a_claim(gateway_url: str, demo_loaded: Couch) -> None:
    """Transfers are the server's; a claim's answer is the server's record of the resident's."""
    need = need_for(demo_loaded, RESIDENT, VOLUNTEER)
    resident = demo_loaded.main.get(RESIDENT)
    at = dt.datetime.now(dt.UTC).isoformat()
    phone = login(gateway_url, "zhiyuan01a", "demo-password")
    forged = {"_id": "transfer:forged", "type": "transfer", "street": STREET_ID, "community": C1, "ledger": "hours",
              "from_account": RESIDENT, "to_account": VOLUNTEER, "amount": 600, "kind": "confirmation",
              "created_by": VOLUNTEER, "created_at": at}
    answered = {"_id": rules.claim_id(need), "type": "claim", "task": need, "resident": RESIDENT,
                **{k: resident[k] for k in ("street", "community", "grid", "household")}, "minutes": 60,
                "status": "confirmed", "decided_by": VOLUNTEER, "created_by": VOLUNTEER, "created_at": at}
    answers = push(gateway_url, phone, [forged, answered])
    assert [a.get("error") for a in answers] == ["forbidden", "forbidden"], answers
    assert timebank.balance(demo_loaded, C1, "hours", VOLUNTEER) == 0


def test_a_claim_confirmed_in_person_is_checked_at_sync_and_moves_once(gateway_url: str, demo_loaded: Couch,
                                                                       keys: KeyStore) -> None:
    """The resident typed their code on the volunteer's phone offline: a wrong code is refused when the claim
    arrives, with the reason the phone shows and nothing stored; a good one moves the hours before the phone is
    answered, and is spent: the same code on the next claim is refused."""
    codes = timebank.confirmation_codes(demo_loaded, keys, RESIDENT)
    resident = demo_loaded.main.get(RESIDENT)
    at = dt.datetime.now(dt.UTC).isoformat()

    def claimed(code: str) -> Doc:
        need = need_for(demo_loaded, RESIDENT, VOLUNTEER)
        return {"_id": rules.claim_id(need), "type": "claim", "task": need, "resident": RESIDENT,
                **{k: resident[k] for k in ("street", "community", "grid", "household")}, "minutes": 150,
                "status": "claimed", "in_person_code": code, "in_person_consent": True, "in_person_at": at,
                "created_by": VOLUNTEER, "created_at": at}

    phone = login(gateway_url, "zhiyuan01a", "demo-password")
    wrong = claimed(next(c for c in ("000000", "111111") if c not in codes))
    [refused] = push(gateway_url, phone, [wrong])
    assert refused.get("error") == "forbidden", refused
    assert refused["errors"] == [{"field": "in_person_code", "key": "tb_code_wrong", "params": {}}]
    assert "000000" not in refused["reason"] and "111111" not in refused["reason"]  # the code is not echoed
    assert demo_loaded.main.all(keys=[wrong["_id"]], as_list=True)[0].get("error") == "not_found"

    good = claimed(codes[1])  # any of the resident's good codes, in any order
    [stored] = push(gateway_url, phone, [good])
    assert stored.get("ok"), stored
    settled = demo_loaded.main.get(good["_id"])  # settled before the phone was answered
    assert (settled["status"], settled["consent"], "in_person_code" in settled) == ("confirmed", True, False)
    assert timebank.balance(demo_loaded, C1, "hours", VOLUNTEER) == 150
    assert timebank.balance(demo_loaded, C1, "hours", RESIDENT) == -150

    again = claimed(codes[1])
    [spent] = push(gateway_url, phone, [again])
    assert spent.get("error") == "forbidden" and spent["errors"][0]["key"] == "tb_code_wrong", spent
    no_consent = {**claimed(codes[0]), "in_person_consent": False}
    [unconsented] = push(gateway_url, phone, [no_consent])
    assert unconsented["errors"][0]["key"] == "tb_in_person_consent", unconsented
    assert timebank.balance(demo_loaded, C1, "hours", RESIDENT) == -150

    # Wrong codes are counted against the resident at the gateway too (each claim's once: the phone sends a refused
    # claim again); after CODE_MISSES_PER_DAY a good code is refused as well, saying why.
    now = dt.datetime.now(dt.UTC)
    assert timebank.code_misses(demo_loaded, RESIDENT, now) == 2  # `wrong` and `again`
    push(gateway_url, phone, [wrong])
    assert timebank.code_misses(demo_loaded, RESIDENT, now) == 2
    push(gateway_url, phone, [claimed(wrong["in_person_code"]) for _ in range(rules.CODE_MISSES_PER_DAY - 2)])
    assert timebank.code_misses(demo_loaded, RESIDENT, now) == rules.CODE_MISSES_PER_DAY
    [resting] = push(gateway_url, phone, [claimed(codes[2])])
    assert resting["errors"][0]["key"] == "tb_code_tries_used", resting
    assert timebank.balance(demo_loaded, C1, "hours", RESIDENT) == -150
