"""Deliberation and voting (issue 15): a matter opens with its roll frozen, each voter has one ballot, the close
publishes a signed, filed result with every counted receipt.

- **Open** (`open_matter`): the secretary names title, kind, options, who votes, the window, the ballot mode and
  the rule (server/domain/vote_rules.py). The eligible voters are frozen then into `matter_roll:<key>` with a
  hash the matter carries: a household added or edited later moves no threshold. A large community's roll is
  frozen after the answer (`roll_later`, `freeze_roll`): the matter is "preparing" until then, taking nothing.
- **One ballot per voter, by construction**: a ballot's id is `ballot:<matter key>:<voter id>`, so a second
  ballot for the same voter (two phones at the door, a phone and the resident's own vote, a paper ballot entered
  twice) is a CouchDB conflict of that one document, never a second vote. The server keeps every version (a
  second version it records itself goes in as a conflicting revision); the tally counts one per voter by
  `PRECEDENCE` (the voter's own authenticated vote first, then at the door, then paper; the earliest of a
  channel) and the secretary sees the conflicts.
- **Close** (`close`): the ballots are counted against the frozen roll, each condition of the rule with its
  numerator and denominator; the result (totals, conditions, the receipts counted) is hashed, filed in the
  community's filing log and signed with the filing log's key (`filing.file_result`), then stored as
  `matter_result:<key>` and published (public page, CSV, JSON).

Who votes: a committee vote's roll is the community's secretaries and grid workers (the residents' committee's
members hold those accounts); a household vote's, every household of the community (its floor area for area
rules); an adult residents' vote's, every resident aged 18 or more on the opening day.
A secret vote (`mode` "secret") has its own key (`matter_key`, server/security/keystore.py): a choice arrives
sealed to it in the browser (pwa/secret_ballot.js), bound to its ballot's id, and the close opens each.
At the door a grid worker records a household's ballot on the phone, offline: the sync gateway judges it by the
same rule as `cast` (server/domain/ballots.py: the window and its grace period, the roll, the grid, the option, the
resident's consent and their voting card's confirmation, `issue_cards`).
A hearing's paper ballots are reconciled against its attendance before any close (`close_refusal`,
server/services/meetings.py).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import secrets
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from pycouchdb.exceptions import Conflict

from crypto.envelope import SEALED_VERSION, EnvelopeError, FieldContext
from server.domain import access
from server.domain import ballots as ballot_rules
from server.domain.access import Principal
from server.domain.declaration import BALLOT_CHANNELS, BALLOT_MODES, ELECTORATES, MATTER_KINDS, Role, validate
from server.domain.errors import FieldError, UserError
from server.domain.vote_rules import RULES, YES_NO_ABSTAIN, Condition, Outcome, RollEntry, evaluate, shown
from server.security import filing
from server.security.filing import Signer
from server.security.keystore import MATTER_KEY_VERSION, KeyStore
from server.store import queries, sweeps
from server.store.couch import Couch, bulk_save, docs_of_type, get_many, get_or_none, ids_of_type, iter_view_docs

Doc = dict[str, Any]
ADULT_AGE = 18
COMMITTEE_ROLES = (Role.SECRETARY.value, Role.GRID_WORKER.value)
PRECEDENCE = ("own", "door", "paper")  # which of a voter's ballots counts: their own authenticated vote first
assert set(PRECEDENCE) == set(BALLOT_CHANNELS)
CONFLICTS_KEPT = ballot_rules.CONFLICTS_KEPT
assert ballot_rules.SEALED_CHOICE_HEADER == (SEALED_VERSION, MATTER_KEY_VERSION), "a sealed choice's shape"
MAX_OPTIONS = 20
MAX_WINDOW = dt.timedelta(days=90)


class VoteError(UserError):
    """A matter or ballot refused, naming the field and why (an i18n key); nothing was stored."""

    def __init__(self, field: str, key: str, status: int = 400, **params: str | int) -> None:
        super().__init__([FieldError(field, key, params)], status)


def key_of(doc_id: str) -> str:
    return doc_id.split(":", 1)[1]


def roll_id(matter_id: str) -> str:
    return f"matter_roll:{key_of(matter_id)}"


def result_id(matter_id: str) -> str:
    return f"matter_result:{key_of(matter_id)}"


ballot_id = ballot_rules.ballot_id


def is_secretary_of(p: Principal, community: str) -> bool:
    return p.has(Role.ADMIN) or (p.has(Role.SECRETARY) and community in p.communities)


# ---------------------------------------------------------------- the roll

def _as_json_reads_it(value: Any) -> Any:
    """57.0 as 57: CouchDB (JavaScript) hands back whole floats as integers, and a hash must not change with that."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _as_json_reads_it(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_json_reads_it(v) for v in value]
    return value


def _canonical(value: Any) -> bytes:
    return json.dumps(_as_json_reads_it(value), ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def roll_hash(entries: list[Doc]) -> str:
    return hashlib.sha256(_canonical(entries)).hexdigest()


def eligible(couch: Couch, community: str, electorate: str, on: dt.date) -> list[Doc]:
    """Who may vote, as roll entries sorted by voter: {voter, household?, area?} (a household voting for itself has
    no `household`: it is its voter)."""
    if electorate == "committee":
        rows = couch.accounts.query("linli/users_by_community", key=community, include_docs="true", as_list=True)
        entries = [{"voter": r["doc"]["_id"]} for r in rows
                   if r["doc"].get("active") and set(r["doc"].get("roles", [])) & set(COMMITTEE_ROLES)]
    else:
        households = {h["_id"]: h for h in _all_in(couch, community, "household")}

        def entry(voter: str, household: str) -> Doc:
            # A household voting for itself is not named twice: at a street's 100,000 households the roll, one
            # document, stays well under CouchDB 3's default 8 MB document limit (about 5 MB).
            area = float(households[household].get("floor_area", 0))
            return {"voter": voter, "area": area} if voter == household else {"voter": voter, "household": household,
                                                                               "area": area}

        if electorate == "household":
            entries = [entry(h, h) for h in households]
        else:
            entries = [entry(r["_id"], r["household"])
                       for r in _all_in(couch, community, "resident")
                       if r["household"] in households and queries.age_on(r["birth_date"], on) >= ADULT_AGE]
    return sorted(entries, key=lambda e: e["voter"])


def _all_in(couch: Couch, community: str, type_name: str) -> list[Doc]:
    """Every document of a type in the community, in one view request: a roll reads a whole community once (paging
    by `skip`, as iter_view_docs does for listings, costs quadratic time at a street's 100,000 households)."""
    rows = couch.main.query("linli/by_place", startkey=[community, type_name], endkey=[community, type_name, {}],
                            reduce="false", include_docs="true", as_list=True)
    return [row["doc"] for row in rows]


def roll_of(couch: Couch, matter: Doc) -> list[Doc]:
    """The roll the matter opened with: the revision whose hash it carries. Two processes freezing one roll on a
    cluster leave two revisions, and CouchDB's winner may be the one the matter does not name (ARCHITECTURE.md
    section 6)."""
    doc = get_or_none(couch.main, roll_id(matter["_id"]), conflicts="true")
    if doc is None:
        return []
    if matter.get("roll_hash") and doc["hash"] != matter["roll_hash"]:
        others = (couch.main.get(doc["_id"], rev=rev) for rev in doc.get("_conflicts", ()))
        doc = next((other for other in others if other["hash"] == matter["roll_hash"]), doc)
    return doc["entries"]


def _roll_entries(entries: Iterable[Doc]) -> list[RollEntry]:
    return [RollEntry(e["voter"], e.get("household"), Fraction(str(e.get("area", 0)))) for e in entries]


# ---------------------------------------------------------------- opening a matter

@dataclass(frozen=True)
class NewMatter:
    community: str
    title: str
    body: str
    kind: str
    electorate: str
    rule: str
    options: tuple[str, ...]  # ignored (yes/no/abstain) when the rule counts approval
    opens_at: dt.datetime
    closes_at: dt.datetime
    mode: str = "open"


def _refusal(m: NewMatter, now: dt.datetime) -> VoteError | None:
    if not m.title.strip():
        return VoteError("title", "vote_title_required")
    if m.kind not in MATTER_KINDS:
        return VoteError("kind", "err_not_choice", value=m.kind, choices=", ".join(MATTER_KINDS))
    if m.electorate not in ELECTORATES:
        return VoteError("electorate", "err_not_choice", value=m.electorate, choices=", ".join(ELECTORATES))
    if m.rule not in RULES:
        return VoteError("rule", "err_not_choice", value=m.rule, choices=", ".join(RULES))
    if m.mode not in BALLOT_MODES:
        return VoteError("mode", "err_not_choice", value=m.mode, choices=", ".join(BALLOT_MODES))
    options = _options(m)
    if len(options) < 2 or len(set(options)) != len(options) or len(options) > MAX_OPTIONS:
        return VoteError("options", "vote_options_shape", max=MAX_OPTIONS)
    if m.closes_at <= m.opens_at:
        return VoteError("closes_at", "vote_closes_before_opening")
    if m.closes_at <= now:
        return VoteError("closes_at", "vote_closes_in_past")
    if m.closes_at - m.opens_at > MAX_WINDOW:
        return VoteError("closes_at", "vote_window_too_long", days=MAX_WINDOW.days)
    return None


def _options(m: NewMatter) -> list[str]:
    if RULES[m.rule].needs_yes_no:
        return list(YES_NO_ABSTAIN)
    return [o.strip() for o in m.options if o.strip()]


ROLL_IN_BACKGROUND_FROM = 5_000  # households in the community: from there the web freezes a roll in the background


def roll_takes_long(couch: Couch, community: str) -> bool:
    """Whether freezing a roll in this community takes long enough to do it after answering (one count query)."""
    rows = couch.main.query("linli/by_place", key=[community, "household"], reduce="true", as_list=True)
    return bool(rows) and rows[0]["value"] >= ROLL_IN_BACKGROUND_FROM


def open_matter(couch: Couch, keys: KeyStore, p: Principal, m: NewMatter, now: dt.datetime, *,
                roll_later: bool = False) -> Doc:
    """Open a matter and freeze its roll (a secret vote also gets its key); raises VoteError (nothing stored) for
    what cannot be opened. With `roll_later` the matter is stored "preparing" and `freeze_roll` freezes its roll
    (in the background: a street's 100,000 households take minutes), opening it to ballots."""
    community = queries.load_doc(couch, m.community, "community")
    if community is None or not is_secretary_of(p, m.community):
        raise VoteError("community", "vote_not_your_community", 403)
    refused = _refusal(m, now)
    if refused:
        raise refused
    key = uuid.uuid4().hex
    matter = {"_id": f"matter:{key}", "type": "matter", "street": community["street"], "community": m.community,
              "title": m.title.strip(), "body": m.body.strip(), "kind": m.kind, "options": _options(m),
              "electorate": m.electorate, "opens_at": m.opens_at.isoformat(), "closes_at": m.closes_at.isoformat(),
              "mode": m.mode, "rule": m.rule, "conditions": [c.as_record() for c in RULES[m.rule].conditions],
              "status": "preparing", "created_by": p.user_id, "created_at": now.isoformat()}
    if m.mode == "secret":
        matter["seal_public"] = keys.new_matter_key(matter, now)
    validate(matter)
    if roll_later:
        return couch.main.save(matter)
    return freeze_roll(couch, matter, now)


def freeze_roll(couch: Couch, matter: Doc, now: dt.datetime) -> Doc:
    """Freeze a preparing matter's roll and open it: the roll first, so a matter is never open without it. Done
    twice (the background task and the minute clock), it keeps the roll frozen first."""
    if "_rev" in matter:  # stored as preparing: as it stands now
        matter = couch.main.get(matter["_id"])
        if matter["status"] != "preparing":
            return matter
    roll = get_or_none(couch.main, roll_id(matter["_id"]))
    if roll is None:
        entries = eligible(couch, matter["community"], matter["electorate"],
                           dt.datetime.fromisoformat(matter["opens_at"]).astimezone(dt.UTC).date())
        roll = {"_id": roll_id(matter["_id"]), "type": "matter_roll", "street": matter["street"],
                "community": matter["community"], "matter": matter["_id"], "entries": entries,
                "hash": roll_hash(entries), "created_at": now.isoformat()}
        validate(roll)
        try:
            couch.main.save(roll)
        except Conflict:  # frozen meanwhile by another: that roll it is
            roll = couch.main.get(roll["_id"])
    opened = {**matter, "status": "open", "roll_size": len(roll["entries"]), "roll_hash": roll["hash"]}
    validate(opened)
    try:
        return couch.main.save(opened)
    except Conflict:
        return couch.main.get(matter["_id"])


def freeze_pending(couch: Couch, now: dt.datetime) -> int:
    """Freeze every preparing matter's roll (the minute clock: a background freeze a stopped process left)."""
    pending = [m for m in docs_of_type(couch.main, "matter") if m.get("status") == "preparing"]
    return len(sweeps.each("rolls a stopped process left preparing", pending,
                           lambda matter: freeze_roll(couch, matter, now)))


def matters_of(couch: Couch, communities: Iterable[str]) -> list[Doc]:
    """The communities' matters, open ones first, then newest first."""
    found = [m for c in communities for m in iter_view_docs(couch.main, "linli/by_place", [c, "matter"])]
    newest_first = sorted(found, key=lambda m: m["created_at"], reverse=True)
    return sorted(newest_first, key=lambda m: m["status"] == "closed")


# ---------------------------------------------------------------- ballots

def voter_for(p: Principal, matter: Doc, resident: Doc | None) -> str | None:
    """Whose ballot this user casts on the matter: their household's, their own as a resident or as a committee
    member; None if their account cannot vote on it (the roll decides whether they may)."""
    if matter["electorate"] == "committee":
        return p.user_id
    if resident is None or resident.get("community") != matter["community"]:
        return None
    return resident["household"] if matter["electorate"] == "household" else resident["_id"]


def _receipt(ballot: Doc) -> str:
    """A short hash of the ballot and a random salt, shown to the voter and published in the result's list: the
    voter finds their receipt counted, nobody learns a choice from it."""
    return format_receipt(hashlib.sha256(_canonical({k: ballot[k] for k in ("_id", "choice", "channel", "created_at")})
                                         + secrets.token_bytes(16)).hexdigest())


def format_receipt(hex_digest: str) -> str:
    """12 hex digits as a receipt is shown: "3F9A-C21B-07DE" (48 bits: no two alike among a street's ballots)."""
    digits = hex_digest[:12].upper()
    return "-".join(digits[i:i + 4] for i in range(0, 12, 4))


def window_refusal(matter: Doc, now: dt.datetime) -> VoteError | None:
    """Why nobody may vote on the matter now (its own voters, online); None while they may."""
    if matter["status"] == "preparing":
        return VoteError("matter", "vote_roll_preparing", 409)
    if matter["status"] != "open":
        return VoteError("matter", "vote_matter_closed", 409)
    if now < dt.datetime.fromisoformat(matter["opens_at"]):
        return VoteError("matter", "vote_not_yet_open", 409)
    if now > dt.datetime.fromisoformat(matter["closes_at"]):
        return VoteError("matter", "vote_window_over", 409)
    return None


def cast(couch: Couch, p: Principal, matter: Doc, voter: str | None, choice: str, channel: str, now: dt.datetime,
         *, resident: str | None = None, household: str | None = None) -> Doc:
    """Store one voter's ballot and give its receipt; raises VoteError (nothing stored) naming why not.

    Judged by the one ballot rule the sync gateway applies to ballots at the door (server/domain/ballots.py).
    The voter's own vote (`channel` "own") is final: a second one is refused. Any other second ballot for the
    voter (their own vote after one recorded at the door, a door ballot after theirs) is kept as a conflicting
    version of the same document, counted by PRECEDENCE."""
    ballot = {"_id": ballot_id(matter["_id"], voter or ""), "type": "ballot", "street": matter["street"],
              "community": matter["community"], "matter": matter["_id"], "voter": voter,
              **({"household": household} if household else {}), **({"resident": resident} if resident else {}),
              "choice": choice, "channel": channel, **({"assisted_by": p.user_id} if channel != "own" else {}),
              "created_by": p.user_id, "created_at": now.isoformat()}
    entry = next((e for e in roll_of(couch, matter) if e["voter"] == voter), None) if voter else None
    refused = ballot_rules.ballot_refusal(ballot, matter, entry, now, writer=p.user_id)
    if refused:
        error, status = refused
        raise VoteError(error.field, error.key, status, **error.params)
    ballot["receipt"] = _receipt(ballot)
    validate(ballot)
    try:
        return couch.main.save(ballot)
    except Conflict:
        existing = ballot_of(couch, matter, voter)
        if channel == "own" and existing is not None and any(v["channel"] == "own" for v in existing.versions):
            raise VoteError("matter", "vote_already_cast", 409) from None
    # Another version for this voter: a conflicting revision of the same document, as two phones make it.
    ballot["_rev"] = f"1-{hashlib.md5(_canonical(ballot)).hexdigest()}"  # noqa: S324 - a revision id, no secret
    bulk_docs_new_edits_false(couch, [ballot])
    return ballot


def record_at_door(couch: Couch, p: Principal, matter: Doc, household: str, choice: str, code: str, consent: bool,
                   now: dt.datetime) -> Doc:
    """The grid worker records a household's ballot at its door, online: the ballot the phone writes offline
    (pwa/offline/pages.js doorBallot), its confirmation made from the code the resident typed, judged by the rule the
    sync gateway applies (access.write_refusal: its place, then server/domain/ballots.py). Raises VoteError naming
    why not (nothing stored); a second ballot for the household is kept beside the first, as from a second phone."""
    home = queries.load_doc(couch, household, "household")
    ballot: Doc = {"_id": ballot_id(matter["_id"], household), "type": "ballot", "street": matter["street"],
                   "community": matter["community"], "grid": (home or {}).get("grid", ""), "matter": matter["_id"],
                   "voter": household, "household": household, "choice": choice, "channel": "door",
                   "assisted_by": p.user_id, "consent": consent, "receipt": format_receipt(secrets.token_hex(6)),
                   "created_by": p.user_id, "created_at": now.isoformat()}
    ballot["confirmation"] = ballot_rules.confirmation(ballot_rules.card_hash(ballot["_id"], code), ballot)
    if home is None or home.get("community") != matter["community"]:
        raise VoteError("household", "vote_door_not_your_grid", 403)
    if any(b["voter"] == household for b in recorded_by(couch, p, matter)):  # as the phone refuses it offline
        raise VoteError("household", "vote_ballot_kept", 409)
    validate(ballot)
    refs = queries.write_refs(couch, ballot)
    if access.write_refusal(p, None, ballot, refs, now):
        refused = access.ballot_write_refusal(p, None, ballot, refs, now)
        error, status = refused or (FieldError("household", "vote_door_not_your_grid"), 403)
        raise VoteError(error.field, error.key, status, **error.params)
    try:
        return couch.main.save(ballot)
    except Conflict:  # the household has a ballot already: this one a branch beside it, counted by PRECEDENCE
        ballot["_rev"] = f"1-{hashlib.md5(_canonical(ballot)).hexdigest()}"  # noqa: S324 - a revision id
        bulk_docs_new_edits_false(couch, [ballot])
        return ballot


def recorded_by(couch: Couch, p: Principal, matter: Doc) -> list[Doc]:
    """The ballots this user recorded at the door on the matter, newest first (their receipts to hand out)."""
    mine = [v for voter in ballots(couch, matter) for v in voter.versions
            if v["channel"] == "door" and v.get("assisted_by") == p.user_id]
    return sorted(mine, key=lambda b: b["created_at"], reverse=True)


@dataclass(frozen=True)
class Card:
    """A printed voting card: the voter, the household it is given at, its address, the code (shown once)."""

    voter: str
    household: str
    address: str
    code: str


def issue_cards(couch: Couch, p: Principal, matter: Doc, grid: str, now: dt.datetime) -> list[Card]:
    """New voting cards for every voter on the roll living in the grid (server/domain/ballots.py): the server keeps
    each code's hash (voting_card, accounts database), the secretary prints the codes. Printing again voids the
    grid's earlier cards. Raises VoteError for a committee vote (nobody votes at the door there) or a closed one."""
    if not is_secretary_of(p, matter["community"]):
        raise VoteError("matter", "vote_not_your_community", 403)
    if matter["electorate"] == "committee":
        raise VoteError("matter", "vote_not_on_roll", 409)
    refused = window_refusal(matter, min(now, dt.datetime.fromisoformat(matter["closes_at"])))
    if refused:
        raise refused
    homes = {h["_id"]: h for h in _all_in(couch, matter["community"], "household") if h.get("grid") == grid}
    entries = [e for e in roll_of(couch, matter) if (e.get("household") or e["voter"]) in homes]
    cards = [Card(e["voter"], e.get("household") or e["voter"], homes[e.get("household") or e["voter"]]["address"],
                  "".join(secrets.choice(ballot_rules.CODE_ALPHABET) for _ in range(ballot_rules.CODE_LENGTH)))
             for e in entries]
    ids = [ballot_rules.card_id(matter["_id"], c.voter) for c in cards]
    stored = get_many(couch.accounts, ids)
    docs = [{"_id": i, **({"_rev": stored[i]["_rev"]} if i in stored else {}), "type": "voting_card",
             "street": matter["street"], "community": matter["community"], "grid": grid, "matter": matter["_id"],
             "voter": c.voter, "household": c.household,
             "hash": ballot_rules.card_hash(ballot_id(matter["_id"], c.voter), c.code),
             "created_by": p.user_id, "created_at": now.isoformat()} for i, c in zip(ids, cards, strict=True)]
    for doc in docs:
        validate(doc)
    failed = [r for r in bulk_save(couch.accounts, docs) if r.error]
    if failed:
        raise RuntimeError(f"voting cards not stored: {failed[0]}")
    return cards


def bulk_docs_new_edits_false(couch: Couch, docs: list[Doc]) -> None:
    """Write these exact revisions as replication does (`new_edits: false`): a second version of a document
    becomes a conflict CouchDB keeps, not a refusal."""
    response, results = couch.main.resource._request_response(
        "POST", "_bulk_docs", data=json.dumps({"docs": docs, "new_edits": False}).encode(),
        headers={"Content-Type": "application/json"})
    if response.status_code >= 400:
        raise RuntimeError(f"_bulk_docs failed with HTTP {response.status_code}: {results}")


def choice_context(ballot_id: str) -> FieldContext:
    """What a secret ballot's sealed choice is bound to: moved to another ballot, it does not open."""
    return FieldContext(ballot_id, "choice", "basic")


@dataclass(frozen=True)
class Voter:
    """One voter's ballots, every version kept, in PRECEDENCE order: the first is the one counted (in a secret
    vote, the first that opens to an option: `counted`)."""

    voter: str
    versions: tuple[Doc, ...]

    @property
    def first(self) -> Doc:
        return self.versions[0]

    @property
    def conflicted(self) -> bool:
        return len(self.versions) > 1


def _in_precedence(ballot: Doc) -> tuple[int, str]:
    return PRECEDENCE.index(ballot["channel"]), ballot["created_at"]


def _voter(couch: Couch, doc: Doc) -> Voter:
    """The voter of a ballot read with `conflicts=true`, with every version of it."""
    versions = [doc, *(couch.main.get(doc["_id"], rev=rev) for rev in doc.get("_conflicts", []))]
    return Voter(doc["voter"], tuple(sorted(versions, key=_in_precedence)))


def ballots(couch: Couch, matter: Doc) -> list[Voter]:
    """Every voter with a ballot on the matter, with all their ballots' versions."""
    prefix = ballot_id(matter["_id"], "")
    rows = couch.main.all(startkey=prefix, endkey=prefix + "\ufff0", conflicts="true", as_list=True)
    return [_voter(couch, row["doc"]) for row in rows]


def ballot_of(couch: Couch, matter: Doc, voter: str | None) -> Voter | None:
    doc = get_or_none(couch.main, ballot_id(matter["_id"], voter), conflicts="true") if voter else None
    return _voter(couch, doc) if doc else None


# ---------------------------------------------------------------- closing and the result

ChoiceOf = Callable[[Doc], "str | None"]  # a ballot's option; None if it has none (a secret one that does not open)


def choices(keys: KeyStore, matter: Doc) -> ChoiceOf:
    """How the close reads a ballot's choice: as it is, or opened under a secret vote's key."""
    if matter["mode"] != "secret":
        return lambda ballot: ballot["choice"]
    key = keys.matter_key(matter["_id"])

    def opened(ballot: Doc) -> str | None:
        try:
            value = key.open(choice_context(ballot["_id"]), ballot["choice"])
        except EnvelopeError:
            return None
        return value if value in matter["options"] else None

    return opened


def counted(voters: list[Voter], choice_of: ChoiceOf) -> dict[str, Doc]:
    """Per voter, the ballot counted: the first by PRECEDENCE whose choice is an option (versions are sorted)."""
    chosen = {}
    for v in voters:
        valid = next((b for b in v.versions if choice_of(b) is not None), None)
        if valid is not None:
            chosen[v.voter] = valid
    return chosen


def tally(matter: Doc, roll: list[Doc], ballots_counted: dict[str, Doc], choice_of: ChoiceOf) -> Outcome:
    conditions = [Condition.of_record(c) for c in matter.get("conditions", [])]
    return evaluate(conditions, _roll_entries(roll), {v: choice_of(b) or "" for v, b in ballots_counted.items()})


def close(couch: Couch, keys: KeyStore, signer: Signer, p: Principal, matter: Doc, now: dt.datetime) -> Doc:
    """The secretary closes the matter now (before `closes_at` too) and publishes the result, filed and signed;
    returns the result. Closing a closed matter returns its result unchanged."""
    if not is_secretary_of(p, matter["community"]):
        raise VoteError("matter", "vote_not_your_community", 403)
    if now < dt.datetime.fromisoformat(matter["opens_at"]):
        raise VoteError("matter", "vote_not_yet_open", 409)
    if matter["status"] == "preparing":
        raise VoteError("matter", "vote_roll_preparing", 409)
    refused = close_refusal(couch, matter)
    if refused:
        raise refused
    return _publish(couch, keys, signer, matter, p.user_id, now, by_hand=True)


def close_refusal(couch: Couch, matter: Doc) -> VoteError | None:
    """A hearing's paper ballots that do not reconcile with its attendance block an open matter's close, by hand
    and by the clock (server/services/meetings.py, which builds on this module: imported here, not above)."""
    from server.services.meetings import paper_refusal

    return paper_refusal(couch, matter) if matter["status"] == "open" else None


def close_due(couch: Couch, keys: KeyStore, signer: Signer, now: dt.datetime) -> int:
    """Close and publish every open matter past its closing time and grace period (`counted_at`; the minute
    clock, `linli serve` after loading the demo), filed in the name of the secretary who opened it; and finish any
    closed without its result (a process stopped between the two). Returns how many."""
    published = set(ids_of_type(couch.main, "matter_result"))

    def is_due(matter: Doc) -> bool:
        if matter.get("status") == "closed":
            return result_id(matter["_id"]) not in published
        return matter.get("status") == "open" and counted_at(matter) <= now

    # Chosen item by item: a malformed matter (written past validation) is skipped and logged, not the whole part.
    chosen = sweeps.each("votes past closing", docs_of_type(couch.main, "matter"), lambda m: is_due(m) and m)
    due = [m for m in chosen if m and close_refusal(couch, m) is None]  # blocked: the secretary reconciles first
    return len(sweeps.each("votes past closing", due,
                           lambda matter: _publish(couch, keys, signer, matter, matter["created_by"], now,
                                                   by_hand=False)))


def counted_at(matter: Doc) -> dt.datetime:
    """When the minute clock closes and counts the matter: at its closing time, and for a vote that ballots at the
    door count in, once their grace period after it is over (server/domain/ballots.py DOOR_GRACE)."""
    closes = dt.datetime.fromisoformat(matter["closes_at"])
    return closes if matter["electorate"] == "committee" else closes + ballot_rules.DOOR_GRACE


def _publish(couch: Couch, keys: KeyStore, signer: Signer, matter: Doc, actor: str, now: dt.datetime, *,
             by_hand: bool) -> Doc:
    """Close, count and publish: the result filed under `actor` (who closed it by hand, or who opened it)."""
    existing = get_or_none(couch.main, result_id(matter["_id"]))
    if existing is not None:
        return existing
    closed = matter
    if matter["status"] == "open":
        try:
            closed = couch.main.save({**matter, "status": "closed", "closed_at": now.isoformat(),
                                      **({"closed_by": actor} if by_hand else {})})
        except Conflict:  # closed meanwhile (the minute clock, another process): count it as they closed it
            closed = couch.main.get(matter["_id"])
            existing = get_or_none(couch.main, result_id(matter["_id"]))
            if existing is not None or closed["status"] != "closed":
                return existing or _publish(couch, keys, signer, closed, actor, now, by_hand=by_hand)
    roll = roll_of(couch, closed)
    voters = ballots(couch, closed)
    choice_of = choices(keys, closed)
    chosen = counted(voters, choice_of)
    outcome = tally(closed, roll, chosen, choice_of)
    on_roll = {e["voter"] for e in roll}
    result: Doc = {
        "_id": result_id(matter["_id"]), "type": "matter_result", "street": matter["street"],
        "community": matter["community"], "matter": matter["_id"],
        "totals": {o: outcome.totals.get(o, 0) for o in closed["options"]},
        "conditions": [{**r.condition.as_record(), "numerator": shown(r.numerator),
                        "denominator": shown(r.denominator), "passed": r.passed} for r in outcome.conditions],
        "passed": outcome.passed, "roll_size": len(roll), "roll_hash": closed["roll_hash"], "counted": outcome.counted,
        "receipts": sorted(b["receipt"] for voter, b in chosen.items() if voter in on_roll),
        "conflicts": sum(v.conflicted for v in voters), "invalid": len(voters) - len(chosen),
        "published_at": now.isoformat()}
    result["hash"] = result_hash(result)
    result["filed_seq"], result["signature"] = filing.file_result(
        couch, signer, street=matter["street"], community=matter["community"], actor=actor,
        matter=matter["_id"], result_hash=result["hash"], at=now)
    validate(result)
    saved = couch.main.save(result)
    _decided_elsewhere(couch, saved, now)
    return saved


def _decided_elsewhere(couch: Couch, result: Doc, now: dt.datetime) -> None:
    """What a published result decides outside the matter: a service project's withdrawal
    (server/services/projects.py, which builds on this module: imported here, not above)."""
    from server.services.projects import settle_by_result

    settle_by_result(couch, result, now)


SIGNED_FIELDS = ("matter", "totals", "conditions", "passed", "roll_size", "roll_hash", "counted", "receipts",
                 "conflicts", "invalid", "published_at")


def result_hash(result: Doc) -> str:
    """SHA-256 of the canonical JSON of what the result says (SIGNED_FIELDS): what is filed and signed."""
    return hashlib.sha256(_canonical({k: result[k] for k in SIGNED_FIELDS})).hexdigest()


def published(result: Doc, matter: Doc, public_key: str) -> Doc:
    """The result as published (JSON): what anyone checks the totals and their receipt against."""
    return {"matter": matter["_id"], "title": matter["title"], "rule": matter["rule"],
            **{k: result[k] for k in SIGNED_FIELDS}, "hash": result["hash"], "filed_seq": result["filed_seq"],
            "signature": result["signature"], "signed_by": public_key,
            **({"duplicates": result["duplicates"]} if result.get("duplicates") else {})}


def result_csv(result: Doc, matter: Doc) -> str:
    """The result as CSV: one section of totals, one of conditions, one of receipts."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["matter", matter["_id"], matter["title"]])
    w.writerow(["option", "ballots"])
    w.writerows(result["totals"].items())
    w.writerow(["measure", "unit", "base", "at_least", "numerator", "denominator", "passed"])
    w.writerows([c["measure"], c["unit"], c["base"], c["at_least"], c["numerator"], c["denominator"],
                 "yes" if c["passed"] else "no"] for c in result["conditions"])
    w.writerow(["receipt"])
    w.writerows([r] for r in result["receipts"])
    w.writerow(["hash", result["hash"], "filed_seq", result["filed_seq"], "signature", result["signature"]])
    return out.getvalue()

