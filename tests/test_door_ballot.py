"""The grid worker's ballot at the door (issue 15 items 4-7, 10), written as the phone's replica writes it and sent
through the real sync gateway (`linli serve`) to a real pouchdb-server: accepted with the resident's voting-card
confirmation and consent, refused with the reason the phone shows (and nothing stored) otherwise; two phones for
one household are one vote, the resident's own vote counts first; a secret choice is sealed to the matter's key."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from crypto.envelope import seal_for, unb64url
from server.domain import ballots as rules
from server.security.filing import Signer
from server.security.keystore import MATTER_KEY_VERSION, KeyStore
from server.services import deliberation as d
from server.services.demo import STREET_ID
from server.store.config import PROJECT_ROOT, Settings
from server.store.couch import Couch
from server.store.embedded_couch import EmbeddedCouch, free_port

from .street import logout, post_form
from .sync_harness import login as sync_login
from .sync_harness import serve, stop
from .test_deliberation import households, new_matter, principal, vote_for
from .test_matter_pages import login, open_matter, site  # noqa: F401 - site is a fixture

Doc = dict[str, Any]
C1 = "community:c1"
G1, G2 = "grid:c1-g01", "grid:c1-g02"
WORKER = "user:wangge01"


@pytest.fixture(name="gateway_url")
def gateway_url_fixture(couch_server: EmbeddedCouch, demo_loaded: Couch, settings: Settings) -> Iterator[str]:
    served = serve(couch_server.url, settings, free_port())
    yield served.url
    stop(served)


def push(url: str, phone: tuple[str, str], docs: list[Doc]) -> list[Doc]:
    """As PouchDB's replication pushes: new_edits=false, each document a revision of its own."""
    cookie, csrf = phone
    answer = httpx2.post(url + "sync/main/_bulk_docs", json={"docs": docs, "new_edits": False}, timeout=30,
                         headers={"Cookie": cookie, "X-CSRF-Token": csrf})
    assert answer.status_code == 201, answer.text
    return answer.json()


def door_ballot(matter: Doc, home: Doc, choice: str, code: str | None, *, by: str = WORKER,
                at: dt.datetime | None = None, **changes: Any) -> Doc:
    """A ballot as the phone writes it at the door (pwa/offline/door_ballot.js): the confirmation computed from
    the code the resident typed, then `changes` (a forgery) applied after it."""
    ballot = {"_id": d.ballot_id(matter["_id"], home["_id"]), "type": "ballot", "street": STREET_ID,
              "community": home["community"], "grid": home["grid"], "matter": matter["_id"], "voter": home["_id"],
              "household": home["_id"], "choice": choice, "channel": "door", "assisted_by": by, "consent": True,
              "receipt": d.format_receipt(secrets.token_hex(6)), "created_by": by,
              "created_at": (at or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).isoformat()}
    if code is not None:
        ballot["confirmation"] = rules.confirmation(rules.card_hash(ballot["_id"], code), ballot)
    rev = secrets.token_hex(16)
    return {**ballot, **changes, "_rev": f"1-{rev}", "_revisions": {"start": 1, "ids": [rev]}}


def cards_of(couch: Couch, matter: Doc, grid: str = G1) -> dict[str, str]:
    """Voting cards printed for a grid: household -> code."""
    return {c.voter: c.code for c in d.issue_cards(couch, principal(couch, "shuji1"), matter, grid,
                                                    dt.datetime.now(dt.UTC))}


def test_a_door_ballot_synced_from_the_phone_is_counted_and_its_receipt_published(
        gateway_url: str, demo_loaded: Couch, keys: KeyStore, settings: Settings) -> None:
    couch = demo_loaded
    secretary = principal(couch, "shuji1")
    matter = d.open_matter(couch, keys, secretary, new_matter(), dt.datetime.now(dt.UTC))
    codes = cards_of(couch, matter)
    home = next(h for h in households(couch) if h["grid"] == G1)
    # The code as the resident reads it from the card: spaces, a dash, lower case.
    typed = codes[home["_id"]].lower()[:5] + " - " + codes[home["_id"]][5:]
    ballot = door_ballot(matter, home, "yes", typed)
    assert push(gateway_url, sync_login(gateway_url, "wangge01", "demo-password"), [ballot]) == []
    [voter] = d.ballots(couch, matter)
    assert voter.first["channel"] == "door" and voter.first["assisted_by"] == WORKER and not voter.conflicted
    assert "code" not in str(voter.first) and codes[home["_id"]] not in str(voter.first)  # the code is not stored
    result = d.close(couch, keys, Signer.of(settings), secretary, couch.main.get(matter["_id"]),
                     dt.datetime.now(dt.UTC))
    assert result["totals"]["yes"] == 1 and ballot["receipt"] in result["receipts"]


def test_bad_door_ballots_are_refused_each_with_its_reason_and_nothing_is_stored(
        gateway_url: str, demo_loaded: Couch, keys: KeyStore, settings: Settings) -> None:
    """One phone's batch of bad ballots (as after a day offline): each refused with the reason the phone shows."""
    couch = demo_loaded
    secretary = principal(couch, "shuji1")
    now = dt.datetime.now(dt.UTC)

    def opened(**window: dt.datetime) -> tuple[Doc, dict[str, str]]:
        window = {"opens_at": now - dt.timedelta(days=2), "closes_at": now + dt.timedelta(days=1), **window}
        matter = d.open_matter(couch, keys, secretary, new_matter(**window), window["opens_at"])
        return matter, cards_of(couch, matter) | cards_of(couch, matter, G2)  # grid 2's: not this worker's

    (matter, codes), (ended, ended_codes), (closed, closed_codes) = (
        opened(), opened(closes_at=now - dt.timedelta(hours=1)), opened())
    d.close(couch, keys, Signer.of(settings), secretary, closed, now)
    home, uncarded = [h for h in households(couch) if h["grid"] == G1][:2]
    other_grid = next(h for h in households(couch) if h["grid"] == G2)
    at = now - dt.timedelta(hours=2)
    code = cards_of(couch, matter)[home["_id"]]  # printed again: the grid's earlier codes are void
    couch.accounts.delete(couch.accounts.get(rules.card_id(matter["_id"], uncarded["_id"])))
    no_card = door_ballot(matter, uncarded, "yes", codes[uncarded["_id"]], at=at)
    cases: list[tuple[str, Doc, str | None]] = [
        ("no card", no_card, "vote_door_no_card"),
        ("a void card", door_ballot(matter, home, "yes", codes[home["_id"]], at=at), "vote_door_code_wrong"),
        ("a wrong code", door_ballot(matter, home, "yes", code[:-1] + ("2" if code[-1] != "2" else "3"), at=at),
         "vote_door_code_wrong"),
        ("no consent", door_ballot(matter, home, "yes", code, consent=False, at=at), "vote_door_consent"),
        ("assisted by someone else", door_ballot(matter, home, "yes", code, assisted_by="user:wangge02", at=at),
         "vote_door_assisted_by"),
        ("another grid", door_ballot(matter, other_grid, "yes", codes[other_grid["_id"]], at=at),
         "vote_door_not_your_grid"),
        ("an unknown option", door_ballot(matter, home, "maybe", code, at=at), "vote_unknown_option"),
        ("recorded before opening", door_ballot(matter, home, "yes", code, at=now - dt.timedelta(days=3)),
         "vote_not_yet_open"),
        ("recorded after closing", door_ballot(ended, home, "yes", ended_codes[home["_id"]],
                                                at=now - dt.timedelta(minutes=30)),
         "vote_window_over"),
        ("a closed vote", door_ballot(closed, home, "yes", closed_codes[home["_id"]], at=at), "vote_matter_closed"),
        # A confirmation the resident gave for one choice, put on another.
        ("a copied confirmation", {**door_ballot(matter, home, "yes", code, at=at), "choice": "no"},
         "vote_door_code_wrong"),
        # Placed where the writer may not write: refused before the ballot rule is asked.
        ("another community", door_ballot(matter, households(couch, "community:c2")[0], "yes", code, at=at), None),
        ("created by someone else", door_ballot(matter, home, "yes", code, by="user:wangge02", at=at), None),
    ]
    before = couch.main.config()["doc_count"]
    answers = push(gateway_url, sync_login(gateway_url, "wangge01", "demo-password"), [doc for _, doc, _ in cases])
    assert len(answers) == len(cases), [(a["id"], a["errors"][0]["key"]) for a in answers]
    for (case, _, key), answer in zip(cases, answers, strict=True):
        assert answer["error"] == "forbidden", (case, answer)
        # The ballot rule's own reason, as the phone shows it (the sync bar's refused list); else the generic one.
        assert [e["key"] for e in answer["errors"]] == [key or "err_sync_refused"], (case, answer)
    assert couch.main.config()["doc_count"] == before
    assert d.ballots(couch, matter) == d.ballots(couch, ended) == d.ballots(couch, closed) == []


def test_a_door_ballot_past_the_grace_period_is_refused() -> None:
    """Recorded before the close, sent later than DOOR_GRACE after it (the minute clock has not yet published it:
    once it has, the vote is closed), and accepted just within it."""
    closes = dt.datetime(2026, 3, 1, 18, tzinfo=dt.UTC)
    matter = {"_id": "matter:m", "type": "matter", "community": C1, "status": "open", "mode": "open",
              "options": ["yes", "no"], "opens_at": (closes - dt.timedelta(days=2)).isoformat(),
              "closes_at": closes.isoformat()}
    home = {"_id": "household:h", "type": "household", "grid": G1}
    card = {"voter": home["_id"], "household": home["_id"], "hash": rules.card_hash("ballot:m:household:h", "K")}
    ballot = {"_id": "ballot:m:household:h", "community": C1, "grid": G1, "matter": "matter:m", "voter": home["_id"],
              "household": home["_id"], "choice": "yes", "channel": "door", "assisted_by": WORKER, "consent": True,
              "receipt": "0123-4567-89AB", "created_by": WORKER,
              "created_at": (closes - dt.timedelta(hours=1)).isoformat()}
    ballot["confirmation"] = rules.confirmation(card["hash"], ballot)

    def judged(now: dt.datetime) -> str | None:
        refused = rules.ballot_refusal(ballot, matter, card, now, writer=WORKER, writer_grids={G1}, household=home,
                                       card=card)
        return refused[0].key if refused else None

    assert judged(closes + rules.DOOR_GRACE) is None
    assert judged(closes + rules.DOOR_GRACE + dt.timedelta(seconds=1)) == "vote_grace_over"


def test_two_phones_for_one_household_are_one_vote_and_the_residents_own_vote_counts_first(
        gateway_url: str, demo_loaded: Couch, keys: KeyStore, settings: Settings) -> None:
    couch = demo_loaded
    secretary = principal(couch, "shuji1")
    matter = d.open_matter(couch, keys, secretary, new_matter(), dt.datetime.now(dt.UTC))
    codes = cards_of(couch, matter)
    home, own_home = [h for h in households(couch) if h["grid"] == G1][:2]
    first, second = (sync_login(gateway_url, "wangge01", "demo-password") for _ in range(2))
    # Two phones, both offline at the same door (the household's card code typed into each), sync later.
    a = door_ballot(matter, home, "no", codes[home["_id"]], at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20))
    b = door_ballot(matter, home, "abstain", codes[home["_id"]])
    assert push(gateway_url, first, [a]) == [] and push(gateway_url, second, [b]) == []
    [voter] = d.ballots(couch, matter)
    assert voter.conflicted and [v["choice"] for v in voter.versions] == ["no", "abstain"]  # the earlier counts
    # A phone editing a recorded ballot is refused: the versions stay as they are.
    winner = couch.main.get(a["_id"])
    [edited] = push(gateway_url, first, [{**winner, "_rev": "2-" + "c" * 32, "choice": "yes",
                                          "_revisions": {"start": 2, "ids": ["c" * 32, winner["_rev"][2:]]}}])
    assert [e["key"] for e in edited["errors"]] == ["vote_ballot_kept"], edited
    # The resident of another household voted online; then a phone recorded that household at the door too.
    own = vote_for(couch, matter, own_home, "yes", at=dt.datetime.now(dt.UTC))
    assert push(gateway_url, first, [door_ballot(matter, own_home, "no", codes[own_home["_id"]])]) == []
    by_voter = {v.voter: v for v in d.ballots(couch, matter)}
    assert [v["channel"] for v in by_voter[own_home["_id"]].versions] == ["own", "door"]
    result = d.close(couch, keys, Signer.of(settings), secretary, couch.main.get(matter["_id"]),
                     dt.datetime.now(dt.UTC))
    assert result["totals"] == {"yes": 1, "no": 1, "abstain": 0} and result["conflicts"] == 2
    assert own["receipt"] in result["receipts"] and a["receipt"] in result["receipts"]
    assert b["receipt"] not in result["receipts"]


def test_a_secret_door_ballot_is_sealed_to_the_matter_key_and_unreadable_by_the_phone(
        gateway_url: str, demo_loaded: Couch, keys: KeyStore, settings: Settings) -> None:
    couch = demo_loaded
    secretary = principal(couch, "shuji1")
    matter = d.open_matter(couch, keys, secretary, new_matter(mode="secret"), dt.datetime.now(dt.UTC))
    codes = cards_of(couch, matter)
    home = next(h for h in households(couch) if h["grid"] == G1)
    bid = d.ballot_id(matter["_id"], home["_id"])
    sealed = seal_for(unb64url(matter["seal_public"]), MATTER_KEY_VERSION, d.choice_context(bid), "no")
    phone = sync_login(gateway_url, "wangge01", "demo-password")
    [plain] = push(gateway_url, phone, [door_ballot(matter, home, "no", codes[home["_id"]])])
    assert [e["key"] for e in plain["errors"]] == ["vote_must_be_sealed"]
    assert push(gateway_url, phone, [door_ballot(matter, home, sealed, codes[home["_id"]])]) == []
    # What the phone gets back of it: the envelope, sealed to a key whose private half only the server holds
    # (matter_key, accounts database); the phone had the public half alone (the matter's seal_public).
    cookie, _ = phone
    mine = httpx2.get(gateway_url + f"sync/main/{bid}", headers={"Cookie": cookie}, timeout=30).json()
    assert mine["choice"] == sealed and sealed.startswith("enc:")  # an envelope (its base64 may hold "no" by chance)
    result = d.close(couch, keys, Signer.of(settings), secretary, couch.main.get(matter["_id"]),
                     dt.datetime.now(dt.UTC))
    assert result["totals"]["no"] == 1 and result["invalid"] == 0


def test_the_minute_clock_waits_for_the_grace_period_before_counting(demo_loaded: Couch, keys: KeyStore,
                                                                     settings: Settings) -> None:
    couch = demo_loaded
    now = dt.datetime.now(dt.UTC)
    matter = d.open_matter(couch, keys, principal(couch, "shuji1"), new_matter(
        opens_at=now - dt.timedelta(days=1), closes_at=now + dt.timedelta(minutes=1)), now - dt.timedelta(days=1))
    signer = Signer.of(settings)
    later = now + dt.timedelta(minutes=2)
    d.close_due(couch, keys, signer, later)
    assert couch.main.get(matter["_id"])["status"] == "open"  # closed to own votes, still open to door ballots
    with pytest.raises(d.VoteError) as refused:
        vote_for(couch, matter, households(couch)[0], "yes", at=later)
    assert refused.value.errors[0].key == "vote_window_over"
    d.close_due(couch, keys, signer, later + rules.DOOR_GRACE)
    assert couch.main.get(matter["_id"])["status"] == "closed"


def test_the_phone_and_the_server_compute_one_confirmation() -> None:
    """The vector pwa/tests/door_ballot.test.mjs checks the phone's code against (ballots.confirmation)."""
    ballot = {"_id": "ballot:m1:household:h1", "choice": "yes", "channel": "door", "assisted_by": "user:w",
              "created_at": "2026-01-01T10:00:00+08:00"}
    card = rules.card_hash(ballot["_id"], "abcde-23456")
    assert card == rules.card_hash(ballot["_id"], "ABCDE23456")
    assert rules.confirmation(card, ballot) == VECTOR
    phone = subprocess.run(["node", "--test", "pwa/tests/door_ballot.test.mjs"], cwd=PROJECT_ROOT,
                           capture_output=True, text=True, timeout=60)
    assert phone.returncode == 0 and VECTOR in (PROJECT_ROOT / "pwa/tests/door_ballot.test.mjs").read_text(), (
        phone.stdout + phone.stderr)


VECTOR = "f79d1846522ce42ef91af02b7f3e0c178ceeab08d5875e6400052a13429ab68d"


def test_the_secretary_prints_a_grids_voting_cards_from_the_roll_page(site: TestClient,  # noqa: F811
                                                                      demo_loaded: Couch) -> None:
    """One card per voter of the grid, its code shown once and kept only as a hash; another grid or another
    community's grid is not printed, a grid worker prints none."""
    couch = demo_loaded
    login(site, "shuji1")
    key = open_matter(site, "入户表决 " + secrets.token_hex(3))
    roll = site.get(f"/matters/{key}/roll")
    assert roll.status_code == 200 and f'action="/matters/{key}/cards"' in roll.text
    page = post_form(site, f"/matters/{key}/cards", {"grid": G2})
    assert page.status_code == 200, page.text
    codes = re.findall(r'card-code">([2-9A-HJ-NP-Z]{5}-[2-9A-HJ-NP-Z]{5})<', page.text)
    homes = [h for h in households(couch) if h["grid"] == G2]
    assert len(codes) == len(homes) == len(set(codes)) > 0
    stored = couch.accounts.get(rules.card_id(f"matter:{key}", homes[0]["_id"]))
    assert stored["hash"] not in page.text and all(c.replace("-", "") not in str(stored) for c in codes)
    assert any(rules.card_hash(rules.ballot_id(f"matter:{key}", homes[0]["_id"]), c) == stored["hash"]
               for c in codes)
    assert post_form(site, f"/matters/{key}/cards", {"grid": "grid:c2-g01"}).status_code == 404
    logout(site)
    login(site, "wangge02")
    assert post_form(site, f"/matters/{key}/cards", {"grid": G2}).status_code == 403
