"""What a ballot must be to be stored (`server/domain/ballots.py`), rule by rule: the voter's own vote, and the
grid worker's ballot at the door with the resident's voting-card confirmation. The whole paths (pages, the phone
offline, the sync gateway, the close) are `test_deliberation.py`'s and `test_door_ballot.py`'s; these run once per
mutant."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest

from server.domain import ballots as b

OPENS = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.UTC)
CLOSES = OPENS + dt.timedelta(days=7)
DURING = OPENS + dt.timedelta(days=1)
MATTER = {"_id": "matter:m1", "type": "matter", "community": "community:c1", "status": "open", "mode": "open",
          "options": ["yes", "no", "abstain"], "opens_at": OPENS.isoformat(), "closes_at": CLOSES.isoformat()}
VOTER = "household:h1"
ENTRY = {"voter": VOTER, "household": VOTER}
HOUSEHOLD = {"_id": VOTER, "type": "household", "grid": "grid:g1"}
CODE = "K7MQ2XRT9A"
CARD = {"_id": b.card_id("matter:m1", VOTER), "hash": b.card_hash(b.ballot_id("matter:m1", VOTER), CODE)}


def own(**changes: Any) -> dict[str, Any]:
    ballot = {"_id": b.ballot_id("matter:m1", VOTER), "type": "ballot", "matter": "matter:m1", "voter": VOTER,
              "community": "community:c1", "choice": "yes", "channel": "online", "created_at": DURING.isoformat()}
    return {**ballot, **changes}


def door(**changes: Any) -> dict[str, Any]:
    ballot = own(channel="door", household=VOTER, grid="grid:g1", assisted_by="user:w1", created_by="user:w1",
                 consent=True, receipt="1A2B-3C4D-5E6F")
    ballot = {**ballot, **{k: v for k, v in changes.items() if k != "confirmation"}}
    ballot["confirmation"] = changes.get("confirmation", b.confirmation(CARD["hash"], ballot))
    return ballot


def refusal(ballot: dict[str, Any], matter: dict[str, Any] | None = MATTER, entry: dict[str, Any] | None = ENTRY,
            now: dt.datetime = DURING, **door_args: Any) -> tuple[str, str, dict[str, Any], int] | None:
    args = {"writer": "user:w1", "writer_grids": ("grid:g1",), "household": HOUSEHOLD, "card": CARD} | door_args
    found = b.ballot_refusal(ballot, matter, entry, now, **args)
    return None if found is None else (found[0].field, found[0].key, found[0].params, found[1])


def sealed(header: tuple[int, int] = (2, 1), size: int = b.SEALED_MIN_BYTES + 1) -> str:
    raw = bytes([header[0]]) + header[1].to_bytes(4, "big") + bytes(size - 5)
    return "enc:" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_ids_and_codes_are_made_from_the_matter_and_the_voter() -> None:
    assert b.ballot_id("matter:m1", "household:h1") == "ballot:m1:household:h1"
    assert b.ballot_id("matter:2026:fund", "household:h1") == "ballot:2026:fund:household:h1"  # only the type goes
    assert b.card_id("matter:2026:fund", "household:h1") == "voting_card:2026:fund:household:h1"
    assert b.card_id("matter:m1", "household:h1") == "voting_card:m1:household:h1"
    assert b.normal_code(" k7mq 2-xrt9a ") == CODE
    assert b.card_hash("ballot:m1:household:h1", "k7mq-2xrt 9a") == b.card_hash("ballot:m1:household:h1", CODE)
    assert b.card_hash("ballot:m1:household:h1", CODE) != b.card_hash("ballot:m1:household:h2", CODE)
    # The hash and the confirmation are pinned: printed cards and the phone's door_ballot.js must keep matching.
    assert b.card_hash("ballot:m1:household:h1", CODE) == (
        "a1afc5068839a8454daeceb5b2c0794f2a2820d79e7052d59af605bfdff04f61")


def test_a_confirmation_binds_the_ballots_id_choice_channel_helper_and_time() -> None:
    ballot = door()
    assert b.confirmation_message(ballot) == (
        b'{"_id":"ballot:m1:household:h1","assisted_by":"user:w1","channel":"door","choice":"yes",'
        b'"created_at":"2026-05-02T08:00:00+00:00"}')
    assert b.confirmation_message({**ballot, "note": "其他"}) == b.confirmation_message(ballot)
    assert b.confirmation_message({**ballot, "assisted_by": "用户"}).decode().count("用户") == 1  # UTF-8, not escaped
    for field, value in (("choice", "no"), ("_id", "ballot:m1:household:h2"), ("channel", "paper"),
                         ("assisted_by", "user:w2"), ("created_at", OPENS.isoformat())):
        assert b.confirmation(CARD["hash"], {**ballot, field: value}) != ballot["confirmation"]


def test_a_sealed_choice_is_an_envelope_to_the_matters_key() -> None:
    assert b.looks_sealed(sealed())
    assert not b.looks_sealed(sealed(size=b.SEALED_MIN_BYTES))  # too short to hold a point, a nonce and a tag
    assert not b.looks_sealed(sealed(header=(1, 1)))
    assert not b.looks_sealed(sealed(header=(2, 2)))
    assert not b.looks_sealed("yes") and not b.looks_sealed(None) and not b.looks_sealed("enc:***")
    assert not b.looks_sealed(sealed()[4:])
    assert b.looks_sealed(sealed(size=b.SEALED_MIN_BYTES + 2))  # base64 without its two padding characters
    assert not b.looks_sealed("enc:A")  # not base64 at all
    assert not b.looks_sealed(sealed(header=(2, 2**24 + 1)))  # the key version is all four bytes


def test_the_voters_own_ballot_and_a_ballot_at_the_door_are_stored() -> None:
    assert refusal(own()) is None
    assert refusal(own(choice="abstain"), now=CLOSES) is None  # the closing instant is still open
    assert refusal(own(created_at=OPENS.isoformat()), now=OPENS) is None
    assert refusal(door()) is None
    assert refusal(door(created_at=CLOSES.isoformat()), now=CLOSES + b.DOOR_GRACE) is None  # grace, to the end
    assert refusal(own(choice=sealed()), matter=MATTER | {"mode": "secret"}) is None


def key(error: tuple[str, str, dict[str, Any], int] | None) -> tuple[str, str, int] | None:
    return None if error is None else (error[0], error[1], error[3])


@pytest.mark.parametrize(("ballot", "matter", "entry", "now", "expected"), [
    (own(), None, ENTRY, DURING, ("matter", "vote_not_on_roll", 403)),
    (own(), MATTER | {"type": "need"}, ENTRY, DURING, ("matter", "vote_not_on_roll", 403)),
    (own(), MATTER | {"community": "community:c2"}, ENTRY, DURING, ("matter", "vote_not_on_roll", 403)),
    (own(), MATTER | {"status": "preparing"}, ENTRY, DURING, ("matter", "vote_roll_preparing", 409)),
    (own(), MATTER | {"status": "closed"}, ENTRY, DURING, ("matter", "vote_matter_closed", 409)),
    (own(created_at="yesterday"), MATTER, ENTRY, DURING, ("matter", "vote_not_yet_open", 409)),
    (own(created_at="2026-05-02T08:00:00"), MATTER, ENTRY, DURING, ("matter", "vote_not_yet_open", 409)),  # no zone
    (own(created_at=(OPENS - dt.timedelta(seconds=1)).isoformat()), MATTER, ENTRY, DURING,
     ("matter", "vote_not_yet_open", 409)),
    (own(), MATTER, ENTRY, OPENS - dt.timedelta(seconds=1), ("matter", "vote_not_yet_open", 409)),
    (own(), MATTER, ENTRY, CLOSES + dt.timedelta(seconds=1), ("matter", "vote_window_over", 409)),
    (door(created_at=(CLOSES + dt.timedelta(seconds=1)).isoformat()), MATTER, ENTRY, CLOSES,
     ("matter", "vote_window_over", 409)),
    (door(), MATTER, ENTRY, CLOSES + b.DOOR_GRACE + dt.timedelta(seconds=1), ("matter", "vote_grace_over", 409)),
    (own(), MATTER, None, DURING, ("matter", "vote_not_on_roll", 403)),
    (own(), MATTER, {"voter": "household:h2"}, DURING, ("matter", "vote_not_on_roll", 403)),
    (door(), MATTER, None, DURING, ("matter", "vote_door_no_card", 403)),
    (own(_id="ballot:m1:household:h2"), MATTER, ENTRY, DURING, ("voter", "vote_ballot_id", 400)),
    (own(choice="maybe"), MATTER, ENTRY, DURING, ("choice", "vote_unknown_option", 400)),
    (own(), MATTER | {"mode": "secret"}, ENTRY, DURING, ("choice", "vote_must_be_sealed", 400)),
    (door(receipt="1a2b-3c4d-5e6f"), MATTER, ENTRY, DURING, ("receipt", "vote_receipt_shape", 400)),
    (door(receipt="1A2B-3C4D-5E6F0"), MATTER, ENTRY, DURING, ("receipt", "vote_receipt_shape", 400)),
    (door(receipt="X1A2B-3C4D-5E6F"), MATTER, ENTRY, DURING, ("receipt", "vote_receipt_shape", 400)),
])
def test_a_ballot_is_refused_with_its_reason_and_status(ballot: dict[str, Any], matter: dict[str, Any] | None,
                                                        entry: dict[str, Any] | None, now: dt.datetime,
                                                        expected: tuple[str, str, int]) -> None:
    assert key(refusal(ballot, matter, entry, now)) == expected


def test_the_grace_refusal_says_how_many_hours_and_an_unknown_option_names_it() -> None:
    late = refusal(door(), now=CLOSES + b.DOOR_GRACE + dt.timedelta(minutes=1))
    assert late[2] == {"hours": 6} and type(late[2]["hours"]) is int
    assert refusal(own(choice=3))[2] == {"value": "3"}


@pytest.mark.parametrize(("ballot", "args", "expected"), [
    (door(), {"household": None}, ("household", "vote_door_not_your_grid", 403)),
    (door(), {"household": HOUSEHOLD | {"_id": "household:h2"}}, ("household", "vote_door_not_your_grid", 403)),
    (door(household="household:h2"), {}, ("household", "vote_door_not_your_grid", 403)),
    (door(), {"writer_grids": ("grid:g2",)}, ("household", "vote_door_not_your_grid", 403)),
    (door(grid="grid:g2"), {}, ("household", "vote_door_not_your_grid", 403)),
    (door(assisted_by="user:w2"), {}, ("assisted_by", "vote_door_assisted_by", 400)),
    (door(created_by="user:w2"), {}, ("assisted_by", "vote_door_assisted_by", 400)),
    (door(consent="yes"), {}, ("consent", "vote_door_consent", 400)),
    (door(), {"card": None}, ("confirmation", "vote_door_no_card", 400)),
    (door(), {"card": {"_id": CARD["_id"], "hash": ""}}, ("confirmation", "vote_door_no_card", 400)),
    (door(confirmation="0" * 64), {}, ("confirmation", "vote_door_code_wrong", 400)),
    (door(confirmation=b.confirmation(b.card_hash(b.ballot_id("matter:m1", VOTER), "WRONGCODE2"), door())), {},
     ("confirmation", "vote_door_code_wrong", 400)),
])
def test_a_ballot_at_the_door_is_refused_with_its_reason(ballot: dict[str, Any], args: dict[str, Any],
                                                         expected: tuple[str, str, int]) -> None:
    assert key(refusal(ballot, **args)) == expected


def test_an_adult_residents_ballot_at_the_door_is_for_their_households_door() -> None:
    voter = "resident:r1"
    ballot = door(_id=b.ballot_id("matter:m1", voter), voter=voter)
    card = {"hash": b.card_hash(ballot["_id"], CODE)}
    ballot["confirmation"] = b.confirmation(card["hash"], ballot)
    assert refusal(ballot, entry={"voter": voter, "household": VOTER}, card=card) is None
    assert key(refusal({**ballot, "household": voter}, entry={"voter": voter, "household": VOTER}, card=card)) == (
        "household", "vote_door_not_your_grid", 403)


def test_a_matter_without_options_takes_no_open_ballot() -> None:
    assert key(refusal(own(), matter={k: v for k, v in MATTER.items() if k != "options"})) == (
        "choice", "vote_unknown_option", 400)


def test_a_voter_without_a_household_votes_at_the_door_for_their_own_entry() -> None:
    # A committee member or an adult on a residents' roll whose entry names no household: the entry's voter is it.
    assert refusal(door(), entry={"voter": VOTER}) is None
