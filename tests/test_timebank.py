"""The time bank's pages and acts (issue 16) on the small demo street, through the web app and the real
pouchdb-server: a volunteer claims hours for a need they did, the resident confirms on their own page, the
balances move once; every bad input is refused naming why, with nothing stored changed; the secretary's
ledger, its CSV and a filed reversal; a grid worker confirming with consent; expiry."""

from __future__ import annotations

import datetime as dt
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from starlette.testclient import TestClient

from server.domain import timebank as rules
from server.domain.access import Principal
from server.domain.declaration import Role
from server.domain.i18n import translator
from server.security import filing
from server.security.keystore import KeyStore
from server.services import timebank
from server.services.demo import STREET_ID
from server.store.couch import Couch

from . import street
from .street import csrf_of

PASSWORD = "demo-password"
ZH = translator("zh")
C1, GRID = "community:c1", "grid:c1-g01"
RESIDENT, OTHER_RESIDENT = "resident:c1-g01-0002-1", "resident:c1-g01-0003-1"
VOLUNTEER, OTHER_VOLUNTEER, WORKER = "user:zhiyuan01a", "user:zhiyuan01b", "user:wangge01"
Doc = dict[str, Any]


def as_user(client: TestClient, username: str) -> None:
    street.as_user(client, username, PASSWORD)


def post(client: TestClient, path: str, **data: str) -> Any:
    return client.post(path, data={**data, "csrf_token": csrf_of(client, "/timebank")})


def need_for(couch: Couch, resident_id: str, assigned_to: str, days_ago: float = 1) -> str:
    """A need of this resident that a grid worker assigned to a volunteer (as the need pages store it)."""
    resident = couch.main.get(resident_id)
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)).isoformat()
    need = {"_id": f"need:{uuid.uuid4().hex[:12]}", "type": "need",
            **{k: resident[k] for k in ("street", "community", "grid", "household")}, "resident": resident_id,
            "category": "shopping", "description": f"买菜 {uuid.uuid4().hex[:6]}", "status": "done",
            "assigned_to": assigned_to, "created_by": WORKER, "created_at": at}
    couch.main.save(need)
    return need["_id"]


def stored(couch: Couch) -> dict[str, str]:
    """Every document's id and revision: what "nothing stored changed" compares."""
    return {row["id"]: row["value"]["rev"] for row in couch.main.all(include_docs="false", as_list=True)}


def hours(couch: Couch, account: str) -> int:
    return timebank.balance(couch, C1, "hours", account)


def test_volunteer_claims_resident_confirms_and_the_hours_move_once(web: TestClient, demo_loaded: Couch) -> None:
    need = need_for(demo_loaded, RESIDENT, VOLUNTEER)
    as_user(web, "zhiyuan01a")
    page = web.get("/timebank")
    assert page.status_code == 200 and f'data-task="{need}"' in page.text
    claimed = post(web, "/claims", task=need, hours="1.5", note="陪同买菜")
    assert claimed.status_code == 303 and claimed.headers["location"] == "/timebank?done=claimed"
    page = web.get("/timebank?done=claimed")
    assert ZH("tb_done_claimed") in page.text and f'data-made="claim:{need}"' in page.text
    assert f'data-task="{need}"' not in page.text  # claimed: no longer offered
    again = post(web, "/claims", task=need, hours="1.5")
    assert again.status_code == 409 and ZH("tb_claim_exists") in again.text

    as_user(web, "jumin1")
    page = web.get("/timebank")
    assert f'data-claim="claim:{need}"' in page.text and "1.5" in page.text
    confirmed = post(web, f"/claims/claim:{need}/confirm")
    assert confirmed.status_code == 303, confirmed.text
    assert hours(demo_loaded, VOLUNTEER) == 90 and hours(demo_loaded, RESIDENT) == -90
    assert sum(timebank.balances(demo_loaded, C1, "hours").values()) == 0
    page = web.get("/timebank")
    assert ZH("tb_balance_hours", hours="-1.5") in page.text and f'data-transfer="transfer:claim:{need}"' in page.text
    before = stored(demo_loaded)
    twice = post(web, f"/claims/claim:{need}/confirm")
    assert twice.status_code == 409 and ZH("tb_claim_answered") in twice.text
    assert stored(demo_loaded) == before and hours(demo_loaded, VOLUNTEER) == 90

    as_user(web, "zhiyuan01a")
    assert ZH("tb_balance_hours", hours="1.5") in web.get("/timebank").text


@pytest.mark.parametrize(("typed", "key"), [("0", "tb_minutes_range"), ("-1", "tb_minutes_range"),
                                            ("9", "tb_minutes_range"), ("abc", "tb_minutes_range"),
                                            ("nan", "tb_minutes_range"), ("1e400", "tb_minutes_range"),
                                            ("", "tb_minutes_range")])
def test_bad_hours_are_refused_naming_why(web: TestClient, demo_loaded: Couch, typed: str, key: str) -> None:
    need = need_for(demo_loaded, RESIDENT, VOLUNTEER)
    as_user(web, "zhiyuan01a")
    before = stored(demo_loaded)
    answer = post(web, "/claims", task=need, hours=typed)
    assert answer.status_code == 400 and ZH(key, hours=8) in answer.text
    assert stored(demo_loaded) == before


def test_refusals_name_why_and_change_nothing(web: TestClient, demo_loaded: Couch) -> None:
    theirs = need_for(demo_loaded, RESIDENT, OTHER_VOLUNTEER)
    mine = need_for(demo_loaded, RESIDENT, VOLUNTEER)
    as_user(web, "zhiyuan01a")
    before = stored(demo_loaded)
    missing = post(web, "/claims", task="need:nowhere", hours="1")
    assert missing.status_code == 404 and ZH("not_found") in missing.text
    for task in (theirs, "", "x" * 3000):  # another volunteer's need is not theirs to see: as a missing one
        answer = post(web, "/claims", task=task, hours="1")
        assert (answer.status_code, answer.text) == (404, missing.text), task
    as_user(web, "wangge01")  # the grid worker sees the volunteer's need, and may not claim it
    answer = post(web, "/claims", task=mine, hours="1")
    assert answer.status_code == 403 and ZH("tb_claim_not_yours") in answer.text
    assert stored(demo_loaded) == before
    household = demo_loaded.main.get(RESIDENT)["household"]
    whole = {"_id": f"visit:{uuid.uuid4().hex[:12]}", "type": "visit", "household": household, "kind": "routine",
             **{k: demo_loaded.main.get(household)[k] for k in ("street", "community", "grid")},
             "visited_at": dt.datetime.now(dt.UTC).isoformat(), "created_by": WORKER,
             "created_at": dt.datetime.now(dt.UTC).isoformat()}
    demo_loaded.main.save(whole)  # a visit to the whole household: nobody to claim the hours from
    before = stored(demo_loaded)
    answer = post(web, "/claims", task=whole["_id"], hours="1")
    assert answer.status_code == 400 and ZH("tb_claim_no_task") in answer.text
    assert stored(demo_loaded) == before
    as_user(web, "zhiyuan01a")
    assert post(web, "/claims", task=mine, hours="2").status_code == 303
    before = stored(demo_loaded)
    own = post(web, f"/claims/claim:{mine}/confirm")  # a volunteer confirming their own claim
    assert own.status_code == 403 and ZH("tb_own_claim") in own.text
    for path in ("/claims/claim:need:nowhere/confirm", "/claims/%00/confirm", f"/claims/claim:{mine}/nonsense"):
        assert post(web, path).status_code == 404, path
    as_user(web, "jumin1")
    no_reason = post(web, f"/claims/claim:{mine}/dispute", note="  ")
    assert no_reason.status_code == 400 and ZH("tb_dispute_note") in no_reason.text
    assert stored(demo_loaded) == before


def test_the_limit_blocks_a_confirmation(web: TestClient, demo_loaded: Couch) -> None:
    """Ten hours owed is the floor: the claim that would go past it is refused and stays claimed."""
    needs = [need_for(demo_loaded, RESIDENT, VOLUNTEER) for _ in range(3)]
    as_user(web, "zhiyuan01a")
    for need in needs:
        assert post(web, "/claims", task=need, hours="4").status_code == 303
    as_user(web, "jumin1")
    for need in needs[:2]:
        assert post(web, f"/claims/claim:{need}/confirm").status_code == 303
    before = stored(demo_loaded)
    over = post(web, f"/claims/claim:{needs[2]}/confirm")
    assert over.status_code == 400 and ZH("tb_over_limit", hours=10, balance="-8") in over.text
    assert stored(demo_loaded) == before and hours(demo_loaded, RESIDENT) == -480


def test_a_grid_worker_confirms_for_a_resident_only_with_consent(web: TestClient, demo_loaded: Couch) -> None:
    need = need_for(demo_loaded, OTHER_RESIDENT, VOLUNTEER)
    as_user(web, "zhiyuan01a")
    assert post(web, "/claims", task=need, hours="1").status_code == 303
    as_user(web, "wangge01")
    page = web.get("/timebank")
    assert f'data-claim="claim:{need}"' in page.text and ZH("tb_consent") in page.text
    before = stored(demo_loaded)
    unconsented = post(web, f"/claims/claim:{need}/confirm")
    assert unconsented.status_code == 400 and ZH("tb_consent_required") in unconsented.text
    assert stored(demo_loaded) == before
    assert post(web, f"/claims/claim:{need}/confirm", consent="yes").status_code == 303
    claim = demo_loaded.main.get(f"claim:{need}")
    assert (claim["status"], claim["decided_by"], claim["consent"]) == ("confirmed", WORKER, True)
    as_user(web, "wangge02")  # another grid's worker: the claim is not theirs to see
    assert post(web, f"/claims/claim:{need}/confirm", consent="yes").status_code == 404


def test_unanswered_claims_lapse_and_move_nothing(web: TestClient, demo_loaded: Couch, keys: KeyStore) -> None:
    need = need_for(demo_loaded, RESIDENT, VOLUNTEER)
    as_user(web, "zhiyuan01a")
    assert post(web, "/claims", task=need, hours="1").status_code == 303
    later = dt.datetime.now(dt.UTC) + rules.CLAIM_EXPIRES_AFTER + dt.timedelta(minutes=1)
    assert timebank.expire(demo_loaded, keys, later - dt.timedelta(days=1)) == 0  # not yet
    assert timebank.expire(demo_loaded, keys, later) == 1
    assert demo_loaded.main.get(f"claim:{need}")["status"] == "expired"
    as_user(web, "jumin1")
    lapsed = post(web, f"/claims/claim:{need}/confirm")
    assert lapsed.status_code == 409 and hours(demo_loaded, RESIDENT) == 0


def test_the_secretary_reverses_with_a_reason_once_and_it_is_filed(web: TestClient, demo_loaded: Couch) -> None:
    need = need_for(demo_loaded, RESIDENT, VOLUNTEER)
    as_user(web, "zhiyuan01a")
    post(web, "/claims", task=need, hours="2")
    as_user(web, "jumin1")
    post(web, f"/claims/claim:{need}/confirm")
    transfer = f"transfer:claim:{need}"
    as_user(web, "shuji1")
    page = web.get("/ledger")
    assert page.status_code == 200 and f'data-transfer="{transfer}"' in page.text
    assert ZH("ledger_total", hours="0") in page.text
    before = stored(demo_loaded)
    no_reason = post(web, "/ledger/reverse", transfer=transfer, reason=" ")
    assert no_reason.status_code == 400 and ZH("tb_reason_required") in no_reason.text
    assert stored(demo_loaded) == before
    assert post(web, "/ledger/reverse", transfer=transfer, reason="重复记录").status_code == 303
    assert hours(demo_loaded, VOLUNTEER) == 0 and hours(demo_loaded, RESIDENT) == 0
    entries = [e for e in filing.iter_entries(demo_loaded, C1) if e["action"] == "ledger_reversal"]
    assert [(e["target"], e["purpose"], e["actor"]) for e in entries] == [(transfer, "重复记录", "user:shuji1")]
    before = stored(demo_loaded)
    again = post(web, "/ledger/reverse", transfer=transfer, reason="再冲一次")
    assert again.status_code == 409 and ZH("tb_already_reversed") in again.text
    of_reversal = post(web, "/ledger/reverse", transfer=rules.reversal_id(transfer), reason="冲正的冲正")
    assert of_reversal.status_code == 400 and ZH("tb_reverse_reversal") in of_reversal.text
    assert post(web, "/ledger/reverse", transfer="transfer:nowhere", reason="x").status_code == 404
    assert stored(demo_loaded) == before
    csv_text = web.get("/ledger.csv").text
    assert csv_text.splitlines()[0].startswith("id,created_at,ledger,kind")
    assert f"{transfer},".replace(",", "") in csv_text and "重复记录" in csv_text and ",2,hours," in csv_text
    as_user(web, "shuji2")  # the other community's secretary
    assert post(web, "/ledger/reverse", transfer=rules.reversal_id(transfer), reason="x").status_code == 404
    as_user(web, "zhiyuan01a")
    assert web.get("/ledger").status_code == 403


def test_points_never_go_negative(demo_loaded: Couch) -> None:
    """The community mints; a points transfer from an account holding too few is refused."""
    community = demo_loaded.main.get(C1)
    now = dt.datetime.now(dt.UTC)
    timebank.mint(demo_loaded, community, VOLUNTEER, 5, "问卷", "test-survey-1", WORKER, now)
    assert timebank.balance(demo_loaded, C1, "points", VOLUNTEER) == 5
    with pytest.raises(timebank.LedgerError, match="Not enough points"):
        timebank.spend(demo_loaded, community, VOLUNTEER, "organisation:shop", 6, "兑换", "spend-1", VOLUNTEER, now)
    with pytest.raises(timebank.LedgerError, match="recorded already"):
        timebank.mint(demo_loaded, community, VOLUNTEER, 5, "问卷", "test-survey-1", WORKER, now)
    for amount in (0, -3, 1.5, True):
        with pytest.raises(timebank.LedgerError, match="whole number above zero"):
            timebank.mint(demo_loaded, community, VOLUNTEER, amount, "x", f"bad-{amount}", WORKER, now)
    assert timebank.balance(demo_loaded, C1, "points", VOLUNTEER) == 5


def test_confirmations_at_once_credit_once(demo_loaded: Couch, keys: KeyStore) -> None:
    """Four confirmations of one claim at the same moment (two devices, retries): one transfer, counted once."""
    need = need_for(demo_loaded, RESIDENT, VOLUNTEER)
    now = dt.datetime.now(dt.UTC)
    volunteer = Principal(VOLUNTEER, frozenset({Role.VOLUNTEER}), STREET_ID, frozenset({C1}), frozenset({GRID}))
    resident = Principal("user:jumin1", frozenset({Role.RESIDENT}), STREET_ID, resident=RESIDENT)
    timebank.claim(demo_loaded, keys, volunteer, need, 120, "", now)

    def confirm(_: int) -> bool:
        try:
            timebank.confirm(demo_loaded, resident, rules.claim_id(need), now)
        except timebank.LedgerError:
            return False
        return True

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(confirm, range(4)))
    assert sum(outcomes) >= 1 and hours(demo_loaded, VOLUNTEER) == 120 and hours(demo_loaded, RESIDENT) == -120
    assert demo_loaded.main.get(rules.claim_id(need))["status"] == "confirmed"
