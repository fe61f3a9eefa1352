"""Deliberation and voting (server/services/deliberation.py) against a real pouchdb-server: the frozen roll, one
ballot per voter by construction (conflicts counted once by precedence, every version kept), bad input refused
with nothing stored, and the published result signed, filed and listing the receipts."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from crypto.envelope import seal_for, unb64url
from server.domain.access import Principal, may_see
from server.domain.declaration import Role, validate
from server.security import accounts, audit_report, filing
from server.security.filing import Signer
from server.security.firewall import Firewall
from server.security.keystore import MATTER_KEY_VERSION, KeyStore
from server.services import deliberation as d
from server.services.demo import STREET_ID
from server.store import queries
from server.store.config import LOCAL_TZ, Settings
from server.store.couch import Couch, iter_view_docs

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
C1, C2 = "community:c1", "community:c2"


def principal(couch: Couch, username: str) -> Principal:
    return Principal.of(couch.accounts.get(accounts.user_id(username)))


def households(couch: Couch, community: str = C1) -> list[dict]:
    return list(iter_view_docs(couch.main, "linli/by_place", [community, "household"]))


def new_matter(rule: str = "households_three_quarters", electorate: str = "household", **kw: object) -> d.NewMatter:
    values: dict = {"community": C1, "title": "加装电梯 " + uuid.uuid4().hex[:6], "body": "",
                    "kind": "household_assembly", "electorate": electorate, "rule": rule, "options": (),
                    "opens_at": NOW - dt.timedelta(hours=1), "closes_at": NOW + dt.timedelta(days=7)}
    return d.NewMatter(**{**values, **kw})


@pytest.fixture
def signer(settings: Settings) -> Signer:
    return Signer.of(settings)


@pytest.fixture
def secretary(demo_loaded: Couch) -> Principal:
    return principal(demo_loaded, "shuji1")


def vote_for(couch: Couch, matter: dict, household: dict, choice: str, channel: str = "own",
             by: Principal | None = None, at: dt.datetime = NOW) -> dict:
    by = by or Principal("user:jumin-x", frozenset({Role.RESIDENT}), STREET_ID, resident=household["head"])
    return d.cast(couch, by, matter, household["_id"], choice, channel, at, household=household["_id"],
                  resident=household["head"])


def test_the_roll_is_frozen_when_the_matter_opens(demo_loaded: Couch, secretary: Principal, signer: Signer,
                                                  keys: KeyStore) -> None:
    couch = demo_loaded
    matter = d.open_matter(couch, keys, secretary, new_matter(), NOW)
    roll = d.roll_of(couch, matter)
    homes = households(couch)
    assert [e["voter"] for e in roll] == sorted(h["_id"] for h in homes)
    assert all(e["area"] == h["floor_area"] for e, h in zip(roll, sorted(homes, key=lambda h: h["_id"]), strict=True))
    assert matter["roll_size"] == len(homes) and matter["roll_hash"] == d.roll_hash(roll)
    # A household added after opening is ignored: not on the roll, its ballot refused, thresholds unmoved.
    late = {**{k: v for k, v in homes[0].items() if k not in ("_id", "_rev")}, "_id": "household:late-1",
            "floor_area": 500.0}
    couch.main.save(late)
    couch.main.save({**homes[1], "floor_area": 999.0})  # an edit after opening moves no area either
    assert d.roll_of(couch, matter) == roll
    with pytest.raises(d.VoteError) as refused:
        vote_for(couch, matter, {**late, "head": None}, "yes")
    assert refused.value.errors[0].key == "vote_not_on_roll"
    for h in homes[:len(homes) * 3 // 4]:
        vote_for(couch, matter, h, "yes")
    result = d.close(couch, keys, signer, secretary, couch.main.get(matter["_id"]), NOW)
    [condition] = result["conditions"]
    assert (condition["numerator"], condition["denominator"], condition["passed"]) == (
        str(len(homes) * 3 // 4), str(len(homes)), True)


def test_two_ballots_for_one_household_are_one_conflict_counted_once_by_precedence(
        demo_loaded: Couch, secretary: Principal, signer: Signer, keys: KeyStore) -> None:
    """Two phones at the door offline and the resident's own vote: one document, three versions, one vote."""
    couch = demo_loaded
    matter = d.open_matter(couch, keys, secretary, new_matter(), NOW)
    home, other = households(couch)[:2]
    worker = principal(couch, "wangge01")
    # Two phones' door ballots arrive as replication writes them (new_edits: false): a CouchDB conflict.
    door = [{"_id": d.ballot_id(matter["_id"], home["_id"]), "_rev": f"1-{n}{'0' * 31}", "type": "ballot",
             "street": STREET_ID, "community": C1, "matter": matter["_id"], "voter": home["_id"],
             "household": home["_id"], "choice": choice, "channel": "door", "assisted_by": worker.user_id,
             "receipt": f"DOOR-{n}000-0000", "created_by": worker.user_id,
             "created_at": (NOW - dt.timedelta(minutes=n)).isoformat()} for n, choice in ((1, "no"), (2, "abstain"))]
    for ballot in door:
        validate(ballot)
    d.bulk_docs_new_edits_false(couch, door)
    [voter] = d.ballots(couch, matter)
    assert voter.conflicted and voter.first["choice"] == "abstain"  # the earlier door ballot, of two doors
    # The resident's own vote after that: not refused (it is their first own vote), kept as a third version,
    # and counted first.
    own = vote_for(couch, matter, home, "yes")
    [voter] = d.ballots(couch, matter)
    assert len(voter.versions) == 3 and voter.first["channel"] == "own" and voter.first["choice"] == "yes"
    assert {v["choice"] for v in voter.versions} == {"yes", "no", "abstain"}  # every version kept
    vote_for(couch, matter, other, "no")
    result = d.close(couch, keys, signer, secretary, couch.main.get(matter["_id"]), NOW)
    assert result["totals"] == {"yes": 1, "no": 1, "abstain": 0} and result["counted"] == 2
    assert result["conflicts"] == 1
    assert own["receipt"] in result["receipts"] and "DOOR-1000-0000" not in result["receipts"]


def test_a_voters_own_second_vote_is_refused_and_nothing_changes(demo_loaded: Couch, secretary: Principal,
                                                                keys: KeyStore) -> None:
    couch = demo_loaded
    matter = d.open_matter(couch, keys, secretary, new_matter(), NOW)
    home = households(couch)[0]
    first = vote_for(couch, matter, home, "yes")
    with pytest.raises(d.VoteError) as refused:
        vote_for(couch, matter, home, "no")
    assert refused.value.errors[0].key == "vote_already_cast" and refused.value.status == 409
    [voter] = d.ballots(couch, matter)
    assert not voter.conflicted and voter.first["_rev"] == first["_rev"]


@pytest.mark.parametrize(("case", "key"), [
    ("before_opening", "vote_not_yet_open"), ("after_closing", "vote_window_over"), ("closed", "vote_matter_closed"),
    ("other_community", "vote_not_on_roll"), ("unknown_option", "vote_unknown_option"),
    ("not_a_committee_member", "vote_not_on_roll")])
def test_bad_ballots_are_refused_naming_why_and_nothing_is_stored(demo_loaded: Couch, secretary: Principal,
                                                                   signer: Signer, keys: KeyStore, case: str,
                                                                   key: str) -> None:
    couch = demo_loaded
    committee = case == "not_a_committee_member"
    matter = d.open_matter(couch, keys, secretary, new_matter(
        **({"rule": "committee_two_thirds", "electorate": "committee"} if committee else {})), NOW)
    home = households(couch, C2 if case == "other_community" else C1)[0]
    at, choice = NOW, "yes"
    if case == "before_opening":
        at = NOW - dt.timedelta(hours=2)
    elif case == "after_closing":
        at = NOW + dt.timedelta(days=8)
    elif case == "closed":
        d.close(couch, keys, signer, secretary, matter, NOW)
        matter = couch.main.get(matter["_id"])
    elif case == "unknown_option":
        choice = "maybe"
    before = couch.main.config()["doc_count"]
    with pytest.raises(d.VoteError) as refused:
        if committee:  # a volunteer is not a committee member
            volunteer = principal(couch, "zhiyuan01a")
            d.cast(couch, volunteer, matter, d.voter_for(volunteer, matter, None), "yes", "own", at)
        else:
            vote_for(couch, matter, home, choice, at=at)
    assert refused.value.errors[0].key == key
    assert couch.main.config()["doc_count"] == before and d.ballots(couch, matter) == []


def test_a_committee_vote_counts_two_thirds_of_the_members(demo_loaded: Couch, secretary: Principal,
                                                          signer: Signer, keys: KeyStore) -> None:
    couch = demo_loaded
    matter = d.open_matter(couch, keys, secretary, new_matter(rule="committee_two_thirds", electorate="committee",
                                                        kind="committee_decision"), NOW)
    members = [e["voter"] for e in d.roll_of(couch, matter)]
    assert set(members) == {"user:shuji1", "user:wangge01", "user:wangge02"}  # secretary and grid workers of c1
    for username in ("shuji1", "wangge01"):
        p = principal(couch, username)
        d.cast(couch, p, matter, d.voter_for(p, matter, None), "yes", "own", NOW)
    result = d.close(couch, keys, signer, secretary, couch.main.get(matter["_id"]), NOW)
    assert result["passed"] and result["conditions"][0]["numerator"] == "2"


def test_opening_refuses_what_cannot_be_voted_on_and_stores_nothing(demo_loaded: Couch, secretary: Principal,
                                                                    keys: KeyStore) -> None:
    couch = demo_loaded
    before = couch.main.config()["doc_count"]
    cases = [("vote_title_required", new_matter(title=" ")),
             ("vote_closes_before_opening", new_matter(closes_at=NOW - dt.timedelta(hours=2))),
             ("vote_closes_in_past", new_matter(opens_at=NOW - dt.timedelta(days=2),
                                                closes_at=NOW - dt.timedelta(days=1))),
             ("vote_options_shape", new_matter(rule="advisory", options=("只有一个",))),
             ("err_not_choice", new_matter(mode="anonymous")),
             ("err_not_choice", new_matter(rule="simple_majority"))]
    for key, m in cases:
        with pytest.raises(d.VoteError) as refused:
            d.open_matter(couch, keys, secretary, m, NOW)
        assert refused.value.errors[0].key == key
    with pytest.raises(d.VoteError) as refused:
        d.open_matter(couch, keys, principal(couch, "shuji2"), new_matter(), NOW)  # another community's secretary
    assert refused.value.status == 403
    assert couch.main.config()["doc_count"] == before


def test_the_published_result_is_signed_filed_and_lists_every_receipt_counted(
        demo_loaded: Couch, firewall: Firewall, secretary: Principal, signer: Signer, keys: KeyStore) -> None:
    couch = demo_loaded
    matter = d.open_matter(couch, keys, secretary, new_matter(rule="civil_code_278_major"), NOW)
    homes = households(couch)
    receipts = [vote_for(couch, matter, h, "yes" if n % 4 else "no")["receipt"] for n, h in enumerate(homes[:12])]
    result = d.close(couch, keys, signer, secretary, couch.main.get(matter["_id"]), NOW)
    assert sorted(receipts) == result["receipts"]
    assert [c["measure"] for c in result["conditions"]] == ["participation"] * 2 + ["approval"] * 2
    assert result["hash"] == d.result_hash(result)
    assert filing.result_signed(signer.key.public_key(), C1, matter["_id"], result["filed_seq"], result["hash"],
                                result["signature"])
    tampered = {**result, "totals": {**result["totals"], "yes": result["totals"]["yes"] + 1}}
    assert not filing.result_signed(signer.key.public_key(), C1, matter["_id"], result["filed_seq"],
                                    d.result_hash(tampered), result["signature"])
    entry = couch.main.get(filing.entry_id(C1, result["filed_seq"]))
    assert (entry["action"], entry["target"], entry["purpose"]) == (
        filing.RESULT_PUBLISHED, matter["_id"], "sha256:" + result["hash"])
    assert filing.verify(couch, signer, C1).ok
    report = audit_report.build(C1, list(filing.iter_entries(couch, C1)), {}, {}, NOW.date() - dt.timedelta(days=1),
                                NOW.date() + dt.timedelta(days=1), LOCAL_TZ)
    assert report.entries == 0 and not report.findings  # a published result opens nobody's data
    assert d.close(couch, keys, signer, secretary, couch.main.get(matter["_id"]), NOW)["_rev"] == result["_rev"]  # once
    csv_text = d.result_csv(result, matter)
    assert all(r in csv_text for r in receipts)


def test_who_sees_matters_rolls_ballots_and_results(demo_loaded: Couch, secretary: Principal, keys: KeyStore) -> None:
    couch = demo_loaded
    matter = d.open_matter(couch, keys, secretary, new_matter(), NOW)
    home = households(couch)[0]
    ballot = vote_for(couch, matter, home, "yes")
    roll = couch.main.get(d.roll_id(matter["_id"]))
    people = {name: principal(couch, name) for name in ("shuji1", "shuji2", "wangge01", "zhiyuan01a", "admin",
                                                         "bumen_health")}
    people["resident"] = Principal("user:r", frozenset({Role.RESIDENT}), STREET_ID, resident=home["head"])
    people["neighbour"] = Principal("user:n", frozenset({Role.RESIDENT}), STREET_ID, resident="resident:other")
    seen = {name: [may_see(p, doc) for doc in (matter, roll, ballot)] for name, p in people.items()}
    assert seen == {"shuji1": [True, True, True], "shuji2": [False, False, False], "admin": [True, True, True],
                    "wangge01": [True, False, False], "zhiyuan01a": [True, False, False],
                    "bumen_health": [False, False, False],
                    "resident": [False, False, True], "neighbour": [False, False, False]}


def test_a_secret_vote_is_sealed_to_the_matter_key_and_opened_only_at_close(
        demo_loaded: Couch, secretary: Principal, signer: Signer, keys: KeyStore) -> None:
    """Choices sealed to the matter's key (as the browser or the phone seals them) reach the server as envelopes
    nobody but the close can open; a tampered one and one copied from another ballot are not counted."""
    couch = demo_loaded
    matter = d.open_matter(couch, keys, secretary, new_matter(mode="secret"), NOW)
    homes = households(couch)[:5]

    def sealed(home: dict, value: str) -> str:
        return seal_for(unb64url(matter["seal_public"]), MATTER_KEY_VERSION,
                        d.choice_context(d.ballot_id(matter["_id"], home["_id"])), value)

    with pytest.raises(d.VoteError) as refused:
        vote_for(couch, matter, homes[0], "yes")  # a plain choice in a secret vote
    assert refused.value.errors[0].key == "vote_must_be_sealed"
    good = [vote_for(couch, matter, h, sealed(h, v)) for h, v in ((homes[0], "yes"), (homes[1], "no"))]
    stored = couch.main.get(good[0]["_id"])
    assert stored["choice"].startswith("enc:") and stored["choice"] == good[0]["choice"]
    # The phone or page that recorded it holds no key to read it back: the key is the accounts database's.
    worker = principal(couch, "wangge01")
    key_doc = couch.accounts.get("matter_key:" + d.key_of(matter["_id"]))
    assert not may_see(worker, key_doc) and not may_see(secretary, key_doc)
    envelope = sealed(homes[2], "yes")
    flipped = envelope[:60] + ("A" if envelope[60] != "A" else "B") + envelope[61:]
    vote_for(couch, matter, homes[2], flipped)  # tampered on the way: its shape still passes
    vote_for(couch, matter, homes[3], good[0]["choice"])  # another household's sealed choice, copied
    vote_for(couch, matter, homes[4], sealed(homes[4], "maybe"))  # sealed, but no option
    result = d.close(couch, keys, signer, secretary, couch.main.get(matter["_id"]), NOW)
    assert result["totals"] == {"yes": 1, "no": 1, "abstain": 0} and result["invalid"] == 3
    assert result["receipts"] == sorted(b["receipt"] for b in good)


def test_a_close_racing_another_counts_the_matter_as_the_other_closed_it(
        demo_loaded: Couch, secretary: Principal, signer: Signer, keys: KeyStore) -> None:
    """The minute clock (or another process) closed the matter a moment before the secretary's click: the click's
    stale copy conflicts, and the close goes on with the stored one instead of failing."""
    couch = demo_loaded
    stale = d.open_matter(couch, keys, secretary, new_matter(), NOW)
    couch.main.save({**stale, "status": "closed", "closed_at": NOW.isoformat()})  # closed elsewhere, not yet counted
    result = d.close(couch, keys, signer, secretary, stale, NOW)
    assert result["matter"] == stale["_id"] and couch.main.get(stale["_id"])["status"] == "closed"
    assert d.close_due(couch, keys, signer, NOW) == 0


def test_a_vote_of_adult_residents_rolls_every_adult_of_the_community_with_their_household(
        demo_loaded: Couch, secretary: Principal, keys: KeyStore) -> None:
    couch = demo_loaded
    matter = d.open_matter(couch, keys, secretary, new_matter(electorate="adult_resident"), NOW)
    residents = list(iter_view_docs(couch.main, "linli/by_place", [C1, "resident"]))
    adults = {r["_id"]: r["household"] for r in residents if queries.age_on(r["birth_date"], NOW.date()) >= 18}
    assert 0 < len(adults) < len(residents)  # the demo's children are left out
    assert {e["voter"]: e["household"] for e in d.roll_of(couch, matter)} == adults


def test_a_malformed_matter_is_skipped_by_the_minute_clock_and_the_due_ones_still_close(
        demo_loaded: Couch, secretary: Principal, signer: Signer, keys: KeyStore) -> None:
    """A matter written past validation (a bug, a restore, a hand edit) without its status or closing time: the
    minute clock's parts skip it instead of failing whole, and a vote past closing is still counted."""
    couch = demo_loaded
    couch.main.save({"_id": "matter:no-status", "type": "matter", "community": C1})
    couch.main.save({"_id": "matter:no-closing-time", "type": "matter", "community": C1, "status": "open"})
    matter = d.open_matter(couch, keys, secretary, new_matter(electorate="committee"), NOW)
    later = NOW + dt.timedelta(days=8)  # past its closing time (a week)
    assert d.freeze_pending(couch, later) == 0
    assert d.close_due(couch, keys, signer, later) >= 1
    assert couch.main.get(d.result_id(matter["_id"]))["matter"] == matter["_id"]
