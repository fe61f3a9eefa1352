"""The last two rows of ARCHITECTURE.md section 6, each with the cluster's result written directly (tests/cluster.py:
two revisions of one new id, as two CouchDB nodes each accepting it leave them) and run through the code that reads
and makes them.

Content-named documents (a match, a check-in, a silence alert, a key grant): two processes made the same thing at
once; whichever revision wins is it, the sweeps find the id and make nothing again, views and pages show one.

Samples, answers, rolls and cards: CouchDB's winner stands (one answer per person and month), the roll used is the
one whose hash the matter carries, a card printed from the losing revision is refused at the door and printing
again voids both."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from starlette.testclient import TestClient

from server.domain import ballots as ballot_rules
from server.domain.access import Principal
from server.security import grants
from server.security.firewall import Firewall
from server.security.keystore import KeyStore
from server.services import alerts, deliberation, pool, pool_months, survey
from server.store.config import LOCAL_TZ
from server.store.couch import Couch, docs_of_type, get_or_none

from .browser import DEMO_RESIDENT
from .cluster import LOSES, WINS, made_on_another_node
from .street import as_user, login, logout, post_form
from .test_ble_alerts import BAND, DEVICES, GATEWAY, METER, T0, heard, heartbeat
from .test_deliberation import households, new_matter, principal
from .test_grants import phone
from .test_matching import docs_of, offer, run_matcher, street  # noqa: F401 - street is a fixture
from .test_pool import VOLUNTEER, at, hall_fixture, user  # noqa: F401 - hall_fixture is a fixture

Doc = dict[str, Any]
C1, G1 = "community:c1", "grid:c1-g01"


# ---------------------------------------------------------------- made under an id of their content

def test_a_match_proposed_twice_on_a_cluster_is_one_proposal_answered_once(street: Couch,  # noqa: F811
                                                                           client: TestClient) -> None:
    """Two runs of the matcher proposed one pair at once: re-running proposes nothing, the volunteer's page lists
    it once, both sides accept it and the need gets one task."""
    login(client, "volunteer1")
    assert offer(client).status_code == 303
    logout(client)
    run_matcher(client)
    [match] = docs_of(street, "match")
    made_on_another_node(street, match, LOSES)
    assert "新推荐 0 项" in run_matcher(client)
    assert [m["_id"] for m in docs_of(street, "match")] == [match["_id"]]
    assert len(street.main.get(match["_id"], conflicts="true")["_conflicts"]) == 1  # nothing written beside it
    accept = f"/matches/{match['_id'][6:]}/accept"
    for username in ("volunteer1", "jumin1"):
        login(client, username)
        page = client.get("/matches")
        assert page.status_code == 200 and page.text.count(accept) == 1
        assert post_form(client, accept, {}).status_code == 303
        logout(client)
    need = street.main.get("need:n1")
    assert (need["status"], need["match"]) == ("matched", match["_id"])
    assert [t["_id"] for t in docs_of(street, "task") if t.get("need") == "need:n1"] == [need["task"]]


def test_a_check_in_made_twice_on_a_cluster_is_one_use_and_no_no_show(demo_loaded: Couch, keys: KeyStore,
                                                                       hall: Doc) -> None:
    """One check-in (the booker's scan, sent twice) stored on two nodes: the booking is used once, never released
    as a no-show, and checking in again is refused as done."""
    volunteer = user(VOLUNTEER, "volunteer")
    [booked] = pool.book(demo_loaded, volunteer, hall["_id"], at(1, 9), 1, 3, "", at(1, 7))
    todays_code = pool.venue_code(keys, hall["_id"], at(1, 9))  # the keeper's page shows it
    checked = pool.check_in(demo_loaded, volunteer, booked["_id"], "scan", todays_code, at(1, 9).replace(minute=5))
    made_on_another_node(demo_loaded, checked, WINS)
    assert pool.sweep_no_shows(demo_loaded, at(1, 10)) == 0
    assert demo_loaded.main.get(booked["_id"])["status"] == "confirmed"
    assert pool_months.slot_uses(demo_loaded, hall, ["2026-12"]) == {"2026120109": "used"}
    assert pool.checkable(demo_loaded, volunteer, hall, at(1, 9).replace(minute=10)) == []
    with pytest.raises(pool.PoolError) as refused:
        pool.check_in(demo_loaded, volunteer, booked["_id"], "scan", todays_code, at(1, 9).replace(minute=10))
    assert refused.value.errors[0].key == "pool_checkin_done"
    assert len(demo_loaded.main.get(checked["_id"], conflicts="true")["_conflicts"]) == 1


def test_a_silence_alert_raised_twice_on_a_cluster_is_one_alert_escalated_and_resolved_once(couch: Couch) -> None:
    """Two processes' sweeps raised one gateway's silence at once: later sweeps raise nothing again, the open
    alerts hold it once, one notification goes to the secretary, and it is resolved when the gateway is heard."""
    for doc in (GATEWAY, *DEVICES):
        couch.main.save(doc)
    heartbeat(couch, T0)
    heard(couch, BAND, T0)
    heard(couch, METER, T0)
    assert alerts.sweep(couch, T0 + dt.timedelta(minutes=20)).silent_raised == 1
    alert_id = f"alert:silent-gateway-gw1-{int(T0.timestamp())}"
    made_on_another_node(couch, couch.main.get(alert_id), LOSES)
    again = alerts.sweep(couch, T0 + dt.timedelta(minutes=25))
    assert (again.silent_raised, again.open_alerts) == (0, 1)
    later = alerts.sweep(couch, T0 + dt.timedelta(hours=4))
    assert (later.silent_raised, later.open_alerts, later.escalated) == (0, 1, 1)
    notified = [n["_id"] for n in docs_of_type(couch.main, "notification")]
    assert notified == [f"notification:{alert_id[6:]}-secretary"]
    heartbeat(couch, T0 + dt.timedelta(hours=4, minutes=5))
    heard(couch, BAND, T0 + dt.timedelta(hours=4, minutes=5))
    heard(couch, METER, T0 + dt.timedelta(hours=4, minutes=5))
    resolved = alerts.sweep(couch, T0 + dt.timedelta(hours=4, minutes=6))
    assert (resolved.silent_raised, resolved.silent_resolved, resolved.open_alerts) == (0, 1, 0)
    assert couch.main.get(alert_id)["status"] == "resolved"


def test_a_key_grant_issued_twice_on_a_cluster_is_issued_once_and_withdrawn_whole(demo_loaded: Couch,
                                                                                   firewall: Firewall) -> None:
    """Two processes synced one worker's grants at once: syncing again issues nothing; the phone revoked, the grant
    is gone on every revision (deleting only the winner would make the other revision the grant again)."""
    user = demo_loaded.accounts.get("user:wangge01")
    now = dt.datetime.now(dt.UTC)
    _, public = phone()
    phone_key = grants.register_phone(demo_loaded, user, public, "wangge01 phone", now)
    issued, _ = grants.sync_user(firewall, user, now)
    held = grants.grants_of(demo_loaded, user["_id"])
    made_on_another_node(demo_loaded, held[0], WINS)
    assert grants.sync_user(firewall, user, now) == (0, 0)
    assert len(grants.grants_of(demo_loaded, user["_id"])) == len(held) == issued
    assert grants.unregister_phone(firewall, user, phone_key["_id"], now)
    assert get_or_none(demo_loaded.main, held[0]["_id"]) is None
    assert grants.grants_of(demo_loaded, user["_id"]) == []


# ---------------------------------------------------------------- samples, answers, rolls and cards: the winner stands

def test_one_answer_per_person_and_month_counts_the_winner(demo_loaded: Couch) -> None:
    """A resident's answer written on two nodes with two scores (two phones, or a retry): the month counts one
    answer, the winner's, and answering again is refused."""
    resident = demo_loaded.main.get(DEMO_RESIDENT)
    p = Principal("user:jumin1", frozenset({"resident"}), resident["street"], resident=DEMO_RESIDENT)
    now = dt.datetime.now(dt.UTC)
    given = survey.answer(demo_loaded, p, resident, 2, "", now, LOCAL_TZ)
    made_on_another_node(demo_loaded, given, WINS, overall=5)
    [result] = survey.results(demo_loaded)
    assert (result.answers, result.mean) == (1, 5)
    with pytest.raises(survey.SurveyError) as refused:
        survey.answer(demo_loaded, p, resident, 1, "", now, LOCAL_TZ)
    assert refused.value.errors[0].key == "err_survey_answered"
    assert [(r.answers, r.mean) for r in survey.results(demo_loaded)] == [(1, 5)]


def test_a_sample_drawn_twice_on_a_cluster_is_the_winners_at_the_door_and_in_the_results(demo_loaded: Couch,
                                                                                         web: TestClient) -> None:
    """Two secretaries drew the month's sample at once: the winning draw is the one the grid worker's door list
    shows, the one a door answer must be in, and the one the response rate is of."""
    now = dt.datetime.now(dt.UTC)
    community = demo_loaded.main.get(C1)
    drawn = survey.draw_sample(demo_loaded, principal(demo_loaded, "shuji1"), community, 4, now, LOCAL_TZ, seed="a")
    first = {e["household"] for e in drawn["households"] if e["grid"] == G1}
    others = sorted(h["_id"] for h in households(demo_loaded) if h["grid"] == G1 and h["_id"] not in first)
    other_draw = [e for e in drawn["households"] if e["grid"] != G1] + [{"household": h, "grid": G1}
                                                                        for h in others[:len(first)]]
    made_on_another_node(demo_loaded, drawn, WINS, seed="b", households=other_draw)
    worker = principal(demo_loaded, "wangge01")
    assert {r["household"]["_id"] for r in survey.door_list(demo_loaded, worker, now, LOCAL_TZ)} == set(
        others[:len(first)])
    with pytest.raises(survey.SurveyError) as refused:
        survey.answer_at_door(demo_loaded, worker, demo_loaded.main.get(min(first)), 4, True, now, LOCAL_TZ)
    assert refused.value.errors[0].key == "err_survey_not_sampled"
    survey.answer_at_door(demo_loaded, worker, demo_loaded.main.get(others[0]), 4, True, now, LOCAL_TZ)
    as_user(web, "wangge01", "demo-password")
    page = web.get("/survey/door")
    assert page.status_code == 200
    assert [demo_loaded.main.get(h)["address"] in page.text for h in sorted(first) + others[:len(first)]] == [
        False] * len(first) + [True] * len(first)
    [result] = survey.results(demo_loaded)
    assert (result.sample_size, result.sample_answers) == (len(other_draw), 1)


def _roll_frozen_elsewhere_without(couch: Couch, matter: Doc, left_out: str) -> None:
    """Another process froze the matter's roll a moment before `left_out` was added, on another node, and won."""
    roll = couch.main.get(deliberation.roll_id(matter["_id"]))
    entries = [e for e in roll["entries"] if (e.get("household") or e["voter"]) != left_out]
    made_on_another_node(couch, roll, WINS, entries=entries, hash=deliberation.roll_hash(entries))


def test_the_roll_used_is_the_one_whose_hash_the_matter_carries(demo_loaded: Couch, firewall: Firewall,
                                                               web: TestClient) -> None:
    """The roll frozen twice on a cluster with a household apart, the other process's winning: cards are printed
    for, and the count is made over, the roll whose hash the matter carries; the result names that roll."""
    secretary = principal(demo_loaded, "shuji1")
    now = dt.datetime.now(dt.UTC)
    matter = deliberation.open_matter(demo_loaded, firewall.keystore, secretary, new_matter(), now)
    home = next(h for h in households(demo_loaded) if h["grid"] == G1)
    _roll_frozen_elsewhere_without(demo_loaded, matter, home["_id"])
    entries = deliberation.roll_of(demo_loaded, matter)
    assert deliberation.roll_hash(entries) == matter["roll_hash"] and len(entries) == matter["roll_size"]
    codes = {c.voter: c.code for c in deliberation.issue_cards(demo_loaded, secretary, matter, G1, now)}
    deliberation.record_at_door(demo_loaded, principal(demo_loaded, "wangge01"), matter, home["_id"], "yes",
                                codes[home["_id"]], True, now)
    result = deliberation.close(demo_loaded, firewall.keystore, firewall.signer, secretary,
                                demo_loaded.main.get(matter["_id"]), now)
    assert (result["roll_size"], result["roll_hash"], result["counted"]) == (matter["roll_size"],
                                                                            matter["roll_hash"], 1)
    as_user(web, "shuji1", "demo-password")
    key = deliberation.key_of(matter["_id"])
    roll, shown = web.get(f"/matters/{key}/roll"), web.get(f"/matters/{key}/result")
    assert (roll.status_code, shown.status_code) == (200, 200) and home["address"] in roll.text


def _door(couch: Couch, matter: Doc, household: str, code: str) -> str | None:
    """The grid worker records the household's ballot at its door with this code: None if taken, else why not."""
    try:
        deliberation.record_at_door(couch, principal(couch, "wangge01"), matter, household, "yes", code, True,
                                    dt.datetime.now(dt.UTC))
    except deliberation.VoteError as refused:
        return refused.errors[0].key
    return None


def test_a_card_printed_from_the_losing_revision_is_refused_at_the_door_and_printing_again_voids_both(
        demo_loaded: Couch, firewall: Firewall) -> None:
    """Two secretaries printed a grid's cards at once on two nodes: the card of the winning revision votes, the
    other's is refused like a voided card; printed again, neither old card votes and the new one does."""
    secretary = principal(demo_loaded, "shuji1")
    matter = deliberation.open_matter(demo_loaded, firewall.keystore, secretary, new_matter(), dt.datetime.now(dt.UTC))
    first, second = [h["_id"] for h in households(demo_loaded) if h["grid"] == G1][:2]
    printed = {c.voter: c.code for c in deliberation.issue_cards(demo_loaded, secretary, matter, G1,
                                                                 dt.datetime.now(dt.UTC))}
    losing = {first: "ZZZZZZZZZZ", second: "YYYYYYYYYY"}  # the codes the other secretary printed
    for household in (first, second):
        card = demo_loaded.accounts.get(ballot_rules.card_id(matter["_id"], household))
        hash_ = ballot_rules.card_hash(deliberation.ballot_id(matter["_id"], household), losing[household])
        made_on_another_node(demo_loaded, card, LOSES, accounts=True, hash=hash_)
    assert _door(demo_loaded, matter, first, losing[first]) == "vote_door_code_wrong"
    assert _door(demo_loaded, matter, first, printed[first]) is None
    again = {c.voter: c.code for c in deliberation.issue_cards(demo_loaded, secretary, matter, G1,
                                                               dt.datetime.now(dt.UTC))}
    assert _door(demo_loaded, matter, second, printed[second]) == "vote_door_code_wrong"
    assert _door(demo_loaded, matter, second, losing[second]) == "vote_door_code_wrong"
    assert _door(demo_loaded, matter, second, again[second]) is None
    assert [v.first["voter"] for v in deliberation.ballots(demo_loaded, matter)] == sorted((first, second))
