"""The time bank's acts (issue 16): claims of hours, their confirmation or dispute, expiry, the secretary's
reversals, minted points; balances and histories from the `ledger` view.

Only a confirmation moves hours. It writes the transfer first, under an id derived from the claim
(`transfer:claim:<task>`), then marks the claim: a second confirmation, a retry or a second process meets the
first transfer as a conflict, never a second credit, and a claim left "claimed" after a crash between the two
writes is finished by the next confirmation or the expiry sweep, which look for that transfer first.
Transfers are never edited: a correction is a reversing transfer (`reverse`), by the secretary, filed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

from pycouchdb.exceptions import Conflict

from server.domain import migrations
from server.domain import timebank as rules
from server.domain.access import Principal, deletion, may_see, write_refusal
from server.domain.declaration import Role, validate
from server.domain.errors import FieldError, UserError
from server.security import filing
from server.security.filing import Signer
from server.security.keystore import KeyStore
from server.store import queries, sweeps
from server.store.couch import Couch, bulk_save, get_many, get_or_none, iter_view_docs

Doc = dict[str, Any]


class LedgerError(UserError):
    """A time-bank act refused, naming why (a message key of server/domain/timebank_messages.py)."""

    def __init__(self, key: str, params: dict[str, Any] | None = None, field: str = "(form)",
                 status: int = 400) -> None:
        super().__init__([FieldError(field, key, params or {})], status)


# ---------------------------------------------------------------- balances and histories (the `ledger` view)

def balance(couch: Couch, community: str, ledger: str, account: str) -> int:
    """An account's balance: the sum of its legs (minutes on the hours ledger)."""
    rows = couch.main.query("linli/ledger", as_list=True, startkey=[community, ledger, account],
                            endkey=[community, ledger, account, {}], reduce="true")
    return rows[0]["value"] if rows else 0


def balances(couch: Couch, community: str, ledger: str) -> dict[str, int]:
    """Every account's balance on one ledger of a community."""
    rows = couch.main.query("linli/ledger", as_list=True, startkey=[community, ledger],
                            endkey=[community, ledger, {}], group_level=3)
    return {row["key"][2]: row["value"] for row in rows}


def history(couch: Couch, community: str, account: str) -> list[Doc]:
    """An account's transfers on both ledgers, newest first, each with `signed`: what it did to this account."""
    entries = []
    for ledger in ("hours", "points"):
        rows = couch.main.query("linli/ledger", as_list=True, startkey=[community, ledger, account],
                                endkey=[community, ledger, account, {}], reduce="false", include_docs="true")
        entries += [{**row["doc"], "signed": row["value"]} for row in rows]
    return sorted(entries, key=lambda t: t["created_at"], reverse=True)


def transfers_of(couch: Couch, community: str, limit: int | None = None) -> list[Doc]:
    """A community's transfers, newest first (the secretary's ledger): the newest `limit`, or all."""
    transfers = sorted(iter_view_docs(couch.main, "linli/by_place", [community, "transfer"]),
                       key=lambda t: t["created_at"], reverse=True)
    return transfers[:limit] if limit is not None else transfers


# ---------------------------------------------------------------- claims

def claims_of(couch: Couch, party: str, status: str | None = None) -> list[Doc]:
    """Claims by who made them (a user) or whom they are from (a resident), newest first."""
    start, end = [party, status] if status else [party], [party, status, {}] if status else [party, {}]
    rows = couch.main.query("linli/claims", as_list=True, startkey=start, endkey=end, reduce="false",
                            include_docs="true")
    return sorted((row["doc"] for row in rows), key=lambda c: c["created_at"], reverse=True)


def claimable_tasks(couch: Couch, user: Doc, now: dt.datetime) -> list[Doc]:
    """Tasks of the last `CLAIM_EXPIRES_AFTER` that this user did and has not claimed yet, newest first."""
    since = (now - rules.CLAIM_EXPIRES_AFTER).isoformat()
    tasks = [doc for grid in user.get("grids", []) for kind in rules.CLAIMABLE_TYPES
             for doc in iter_view_docs(couch.main, "linli/by_place", [grid, kind])
             if rules.doer_of(doc) == user["_id"] and doc.get("resident") and doc.get("created_at", "") >= since]
    claimed = {row["id"] for row in couch.main.all(keys=[rules.claim_id(t["_id"]) for t in tasks], as_list=True)
               if "error" not in row} if tasks else set()
    return sorted((t for t in tasks if rules.claim_id(t["_id"]) not in claimed), key=lambda t: t["created_at"],
                  reverse=True)


def claim(couch: Couch, keys: KeyStore, p: Principal, task_id: str, minutes: Any, note: str, now: dt.datetime,
          in_person_code: str = "", in_person_consent: bool = False) -> Doc:
    """The provider claims `minutes` for a task they did; the resident it was for confirms or disputes, or has
    confirmed already in person, on the provider's phone, with one of their codes (then the hours move now)."""
    task = get_or_none(couch.main, task_id) if task_id else None
    if task is None or not may_see(p, task):
        raise LedgerError("tb_claim_no_task", field="task", status=404)
    in_person = {"in_person_code": in_person_code.strip(), "in_person_consent": in_person_consent,
                 "in_person_at": now.isoformat()} if in_person_code.strip() or in_person_consent else {}
    doc = {"_id": rules.claim_id(task_id), "type": "claim",
           **{k: task.get(k) for k in ("street", "community", "grid", "household", "resident")},
           "task": task_id, "minutes": minutes, "note": note.strip()[:500] or None, "status": "claimed",
           **in_person, "created_by": p.user_id, "created_at": now.isoformat()}
    doc = {k: v for k, v in doc.items() if v is not None}
    lock = _opened_lock(couch, keys, doc["resident"]) if in_person and doc.get("resident") else None
    refused = rules.claim_refusal(p.user_id, doc, task, lock, now)
    if refused:
        key = refused[0]
        if key == "tb_code_wrong":
            count_code_misses(couch, p.user_id, [doc], now)
        raise LedgerError(*refused, field=CLAIM_FIELDS.get(key, "task"),
                          status=403 if key == "tb_claim_not_yours" else 400)
    if get_or_none(couch.main, doc["_id"]) is not None:
        raise LedgerError("tb_claim_exists", field="task", status=409)
    refs = {**queries.write_refs(couch, doc), **({lock["_id"]: lock} if lock else {})}  # the codes as checked
    if write_refusal(p, None, doc, refs, now):
        raise LedgerError("tb_claim_not_yours", field="task", status=403)
    validate(doc)
    try:
        saved = couch.main.save(doc)
    except Conflict:  # the other phone, or a retry, got there first: one task, one claim
        raise LedgerError("tb_claim_exists", field="task", status=409) from None
    return settle_in_person(couch, keys, [saved["_id"]], now)[0] if in_person else saved


def _lock(couch: Couch, account: str) -> Doc | None:
    """The account's `ledger_lock` as stored, upgraded to the current declaration (one from before version 2 still
    holds the secret kept in the clear: dropped, so that what is written back validates)."""
    lock = get_or_none(couch.accounts, rules.ledger_lock_id(account))
    return migrations.upgrade(lock) if lock else None


def count_code_misses(couch: Couch, writer: str, claims: list[Doc], now: dt.datetime) -> None:
    """Claims refused for a wrong in-person code, counted on their resident's lock (each claim's code once): after
    rules.CODE_MISSES_PER_DAY in a day the resident's codes rest (rules.in_person_refusal)."""
    for claim in claims:
        resident = claim.get("resident")
        if not isinstance(resident, str) or not isinstance(claim.get("_id"), str):
            continue
        for _ in range(5):  # the lock is busy (a transfer, another miss): read it again
            lock = _lock(couch, resident)
            counted = rules.with_code_miss(lock, claim["_id"], writer, claim.get("in_person_code"), now) if lock \
                else None
            if counted is None:
                break  # no codes ever shown (nothing to guess), or counted already
            try:
                validate(counted)
                couch.accounts.save(counted)
                break
            except Conflict:
                continue


def code_misses(couch: Couch, resident: str, now: dt.datetime) -> int:
    """How many wrong codes were typed for the resident in the last day (shown on their page)."""
    return len(rules.recent_code_misses(_lock(couch, resident), now))


# The form input each refusal belongs to (also the offline claim's: /pwa/session.json "timebank").
CLAIM_FIELDS = {"tb_minutes_range": "minutes", "tb_code_wrong": "in_person_code",
                "tb_code_tries_used": "in_person_code", "tb_in_person_consent": "in_person_consent"}


def _opened_lock(couch: Couch, keys: KeyStore, resident: str) -> Doc | None:
    """The resident's lock as the code checks read it (rules.opened: their secret beside it, never stored)."""
    return rules.opened(_lock(couch, resident), keys.code_key())


def settle_in_person(couch: Couch, keys: KeyStore, claim_ids: list[str], now: dt.datetime) -> list[Doc]:
    """Claims confirmed in person (a resident's code on the provider's phone, checked when the claim was stored):
    the hours move now and the code is spent, in one compare-and-set of the resident's `ledger_lock`; the claim
    is marked confirmed with the resident's consent, its code dropped. One that cannot be (the code spent by
    another claim meanwhile, the floor, lapsed) waits for the resident's answer, saying why. Idempotent: the sync
    gateway's hook runs it for what it stored, the minute clock for anything left."""
    settled = []
    for doc in get_many(couch.main, set(claim_ids)).values():
        if doc.get("type") != "claim" or doc["status"] != "claimed" or not doc.get("in_person_code"):
            settled.append(doc)
            continue
        try:
            transfer_id = _move_claimed_hours(couch, doc, doc["created_by"], now, (doc["in_person_code"], keys))
        except LedgerError as refused:
            # The provider has seen the code: spent all the same, so that it confirms nothing else.
            _spend_code(couch, keys, doc["resident"], doc["in_person_code"])
            now_stored = get_or_none(couch.main, doc["_id"]) or doc  # marked lapsed, perhaps
            why = refused.errors[0].key
            settled.append(_save_claim(couch, {**_without_code(now_stored), "in_person_refused": IN_PERSON_REFUSED.get(
                why, why)}))
            continue
        try:
            settled.append(_decide(couch, _without_code(doc), "confirmed", None, now, consent=True,
                                   transfer=transfer_id))
        except LedgerError:  # marked by another process settling it at the same time
            settled.append(get_or_none(couch.main, doc["_id"]) or doc)
    return settled


# A refusal kept on a claim is shown later without the numbers of the moment: the floor's says so in words.
IN_PERSON_REFUSED = {"tb_over_limit": "tb_in_person_over_limit"}


def _without_code(doc: Doc) -> Doc:
    return {k: v for k, v in doc.items() if k != "in_person_code"}


def _spend_code(couch: Couch, keys: KeyStore, resident: str, code: str) -> None:
    """Spend a resident's code without moving anything (a confirmation refused after it was typed)."""
    for _ in range(LOCK_TRIES):
        lock = _lock(couch, resident)
        number = rules.code_number(rules.opened(lock, keys.code_key()), code)
        if lock is None or number is None:
            return
        spent = rules.spend_code(lock, number)
        validate(spent)
        try:
            couch.accounts.save(spent)
            return
        except Conflict:
            continue


def _save_claim(couch: Couch, doc: Doc) -> Doc:
    validate(doc)
    try:
        return couch.main.save(doc)
    except Conflict:
        return get_or_none(couch.main, doc["_id"]) or doc  # settled by another process meanwhile


def confirmed_in_person(stored: list[Doc]) -> list[str]:
    """The claims among documents a phone just stored that a resident confirmed in person (to settle now)."""
    return [doc["_id"] for doc in stored if doc.get("type") == "claim" and doc.get("in_person_code")]


def in_person_claims(couch: Couch) -> list[str]:
    """Claims confirmed in person and not settled yet (the minute clock settles them)."""
    rows = couch.main.query("linli/claims", as_list=True, startkey=["", "claimed"], endkey=["", "claimed", {}],
                            reduce="false", include_docs="true")
    return [row["id"] for row in rows if row["doc"].get("in_person_code")]


def confirmation_codes(couch: Couch, keys: KeyStore, resident: str) -> list[str]:
    """A resident's good one-time codes, to type on a provider's phone; their window of codes opened on first
    asking (the secret itself is derived from the installation's code key, never stored)."""
    lock_id = rules.ledger_lock_id(resident)
    lock = _lock(couch, resident) or {"_id": lock_id, "type": "ledger_lock", "account": resident,
                                                    "seq": 0}
    if "codes_from" not in lock:
        lock = {**lock, "codes_from": 0, "codes_used": []}
        validate(lock)
        try:
            couch.accounts.save(lock)
        except Conflict:  # made meanwhile (another page, a transfer taking the lock): read it
            return confirmation_codes(couch, keys, resident)
    secret = rules.code_secret(keys.code_key(), resident)
    return [rules.confirmation_code(secret, n) for n in rules.open_code_numbers(lock)]


def _load_claim(couch: Couch, p: Principal, claim_id: str) -> Doc:
    doc = queries.load_doc(couch, claim_id, "claim")
    if doc is None or not may_see(p, doc):
        raise LedgerError("not_found", status=404)
    return doc


def _may_answer(p: Principal, doc: Doc, consent: bool) -> None:
    """Who was helped answers a claim; or a grid worker of that grid, on their behalf, with their consent. Never
    who made it."""
    if doc["created_by"] == p.user_id:
        raise LedgerError("tb_own_claim", status=403)
    if p.resident == doc["resident"]:
        return
    if not (p.has(Role.GRID_WORKER) and doc["grid"] in p.grids):
        raise LedgerError("forbidden", status=403)
    if not consent:
        raise LedgerError("tb_consent_required", field="consent")


def confirm(couch: Couch, p: Principal, claim_id: str, now: dt.datetime, consent: bool = False) -> Doc:
    """The resident (or a grid worker with their consent) confirms: the hours move, once."""
    doc = _load_claim(couch, p, claim_id)
    _may_answer(p, doc, consent)
    transfer_id = _move_claimed_hours(couch, doc, p.user_id, now)
    return _decide(couch, doc, "confirmed", p, now, consent=consent if p.resident != doc["resident"] else None,
                   transfer=transfer_id)


InPerson = tuple[str, KeyStore]  # a code typed in person, and the keys its resident's secret is derived with


def _move_claimed_hours(couch: Couch, doc: Doc, by: str, now: dt.datetime, code: InPerson | None = None) -> str:
    """The confirmation's transfer, written once; its id. A transfer of this claim found already (written by a
    confirmation that stopped before marking the claim, or racing this one) is that confirmation's: it counts."""
    transfer_id = rules.transfer_id_of_claim(doc["_id"])
    if get_or_none(couch.main, transfer_id) is None:
        _still_open(couch, doc, now)
        try:
            _record(couch, _transfer_doc(transfer_id, doc, "hours", doc["resident"], doc["created_by"],
                                         doc["minutes"], "confirmation", by, now, claim=doc["_id"]), code)
        except LedgerError:
            if get_or_none(couch.main, transfer_id) is None:
                raise  # else written after all: by a racing confirmation, or as the transfer a stopped one left
    elif doc["status"] != "claimed":
        raise LedgerError("tb_claim_answered", status=409)
    return transfer_id


def dispute(couch: Couch, p: Principal, claim_id: str, note: str, now: dt.datetime, consent: bool = False) -> Doc:
    """The resident says the claim is wrong, and why: nothing moves; the secretary sees it on the ledger page."""
    doc = _load_claim(couch, p, claim_id)
    _may_answer(p, doc, consent)
    note = note.strip()
    if not note:
        raise LedgerError("tb_dispute_note", field="note")
    if get_or_none(couch.main, rules.transfer_id_of_claim(doc["_id"])):
        raise LedgerError("tb_claim_answered", status=409)
    _still_open(couch, doc, now)
    return _decide(couch, doc, "disputed", p, now, consent=consent if p.resident != doc["resident"] else None,
                   dispute_note=note[:500])


def _still_open(couch: Couch, doc: Doc, now: dt.datetime) -> None:
    """Refuse an answer to a claim answered already, or lapsed (marking it so, as the sweep would)."""
    if doc["status"] != "claimed":
        raise LedgerError("tb_claim_answered", status=409)
    if rules.claim_lapsed(doc, now):
        _decide(couch, doc, "expired", None, now)
        raise LedgerError("tb_claim_expired", {"days": rules.CLAIM_EXPIRES_AFTER.days}, status=409)


def _decide(couch: Couch, doc: Doc, status: str, p: Principal | None, now: dt.datetime, **fields: Any) -> Doc:
    decided = {**doc, "status": status, "decided_at": now.isoformat(),
               **({"decided_by": p.user_id} if p else {}), **{k: v for k, v in fields.items() if v is not None}}
    validate(decided)
    try:
        return couch.main.save(decided)
    except Conflict:
        raise LedgerError("tb_claim_answered", status=409) from None


def expire(couch: Couch, keys: KeyStore, now: dt.datetime) -> int:
    """Claims unanswered for `CLAIM_EXPIRES_AFTER` lapse (a confirmed one whose claim was not yet marked is
    marked confirmed instead). One still carrying a resident's in-person code (never settled: a process stopped in
    between) is settled first, which, the claim having lapsed, spends the code (the provider's phone has seen it)
    and drops it from the claim: no lapsed claim holds a code that could confirm anything. Idempotent: the minute
    sweep runs it."""
    cutoff = (now - rules.CLAIM_EXPIRES_AFTER).isoformat()
    rows = couch.main.query("linli/claims", as_list=True, startkey=["", "claimed"], endkey=["", "claimed", cutoff],
                            reduce="false", include_docs="true")

    def lapse(doc: Doc) -> bool:
        if doc.get("in_person_code"):
            doc = settle_in_person(couch, keys, [doc["_id"]], now)[0]
        transfer_id = rules.transfer_id_of_claim(doc["_id"])
        finished = get_or_none(couch.main, transfer_id)
        try:
            _decide(couch, doc, "confirmed" if finished else "expired", None, now,
                    transfer=transfer_id if finished else None)
        except LedgerError:
            return False  # answered meanwhile
        return True
    return sum(sweeps.each("time-bank claims nobody answered", [row["doc"] for row in rows], lapse))


# ---------------------------------------------------------------- transfers

def _transfer_doc(transfer_id: str, place: Doc, ledger: str, from_account: str, to_account: str, amount: Any,
                  kind: str, by: str, now: dt.datetime, **extra: str) -> Doc:
    return {"_id": transfer_id, "type": "transfer", "street": place["street"], "community": place["community"],
            "ledger": ledger, "from_account": from_account, "to_account": to_account, "amount": amount,
            "kind": kind, "created_by": by, "created_at": now.isoformat(), **extra}


LOCK_TRIES = 200  # each round of contention lets one writer through: enough for that many at once


def _record(couch: Couch, transfer: Doc, code: InPerson | None = None) -> Doc:
    """Write a new transfer if the ledger allows it. Never an edit: an existing id is a conflict.

    Two transfers out of one account at once could each read a balance without the other and together pass the
    floor. So each first takes the account's `ledger_lock` (a compare-and-set on its CouchDB revision) holding the
    transfer it is about to write, having written the transfer the previous holder left there (if it stopped
    before writing it) and read the balance after it; a writer that loses the race reads again. `code`: a
    resident's confirmation code typed in person (with the keys that open their lock), spent in the same
    compare-and-set."""
    if transfer["ledger"] == "points" and transfer["from_account"].startswith(rules.MINTING_ACCOUNT_TYPE + ":"):
        _check(couch, transfer)
        return _write_transfer(couch, transfer)  # the community mints: no floor to hold
    lock_id = rules.ledger_lock_id(transfer["from_account"])
    for _ in range(LOCK_TRIES):
        lock = _lock(couch, transfer["from_account"]) or {"_id": lock_id, "type": "ledger_lock",
                                                        "account": transfer["from_account"], "seq": 0}
        if lock.get("last"):
            _write_left_transfer(couch, lock["last"])
        _check(couch, transfer)
        transfer = {**transfer, "seq": lock["seq"] + 1}
        taken = {**lock, "seq": transfer["seq"], "last": transfer}
        if code is not None:
            number = rules.code_number(rules.opened(lock, code[1].code_key()), code[0])
            if number is None:
                raise LedgerError("tb_code_used", field="in_person_code", status=409)
            taken = rules.spend_code(taken, number)
        validate(taken)
        try:
            couch.accounts.save(taken)
        except Conflict:
            continue  # another transfer out of this account got there first: read its balance again
        return _write_transfer(couch, transfer)
    raise LedgerError("tb_busy", status=409)


def _check(couch: Couch, transfer: Doc) -> None:
    """Refuse a transfer the ledger does not allow, against the paying account's balance now."""
    held = balance(couch, transfer["community"], transfer["ledger"], transfer["from_account"])
    refused = rules.transfer_refusal(transfer["ledger"], transfer["from_account"], transfer["to_account"],
                                     transfer["amount"], held)
    if refused:
        raise LedgerError(*refused)
    validate(transfer)


def _write_transfer(couch: Couch, transfer: Doc) -> Doc:
    try:
        return couch.main.save(dict(transfer))
    except Conflict:
        stored = get_or_none(couch.main, transfer["_id"])
        if "seq" in transfer and stored is not None and {k: v for k, v in stored.items() if k != "_rev"} == transfer:
            return stored  # the next holder of the lock wrote ours for us (the same lock sequence: this very one)
        raise LedgerError("tb_transfer_exists", status=409) from None


def _write_left_transfer(couch: Couch, left: Doc) -> None:
    """The transfer a previous holder of the lock took it for, written if it was not (it stopped in between)."""
    with contextlib.suppress(Conflict):  # written, by its holder or by another: as it should be
        couch.main.save(dict(left))


def reverse(couch: Couch, signer: Signer, p: Principal, transfer_id: str, reason: str, now: dt.datetime,
            device: str = "") -> Doc:
    """The secretary's correction: a transfer undone by its mirror image, with a reason, filed in the log."""
    original = queries.load_doc(couch, transfer_id, "transfer")
    if original is None or not (p.has(Role.SECRETARY) and original["community"] in p.communities):
        raise LedgerError("not_found", status=404)
    reason = reason.strip()
    if not reason:
        raise LedgerError("tb_reason_required", field="reason")
    if original["kind"] == "reversal":
        raise LedgerError("tb_reverse_reversal")
    if get_or_none(couch.main, rules.reversal_id(transfer_id)) is not None:
        raise LedgerError("tb_already_reversed", status=409)
    reversal = _transfer_doc(rules.reversal_id(transfer_id), original, original["ledger"], original["to_account"],
                             original["from_account"], original["amount"], "reversal", p.user_id, now,
                             reverses=transfer_id, reason=reason[:500])
    saved = _record(couch, reversal)
    filing.append(couch, signer, street=original["street"], community=original["community"], actor=p.user_id,
                  action="ledger_reversal", target=transfer_id, fields=[], purpose=reason[:500], device=device, at=now)
    return saved


def mint(couch: Couch, place: Doc, to_account: str, points: Any, reason: str, key: str, by: str,
         now: dt.datetime) -> Doc:
    """The community mints participation points for an account, once per `key` (what they are for). The rules
    that mint (surveys, volunteer hours, votes) are the next step of issue 16; the demo's history uses this."""
    return _record(couch, _transfer_doc(f"transfer:mint:{key}", place, "points", place["community"], to_account,
                                        points, "mint", by, now, reason=reason))


def spend(couch: Couch, place: Doc, from_account: str, to_account: str, points: Any, reason: str, key: str,
          by: str, now: dt.datetime) -> Doc:
    """Points spent with an organisation, once per `key`: the ledger's half of a redemption (the catalogue and the
    vouchers partners check offline are the next step of issue 16). Never below zero."""
    return _record(couch, _transfer_doc(f"transfer:redemption:{key}", place, "points", from_account, to_account,
                                        points, "redemption", by, now, reason=reason))


# ---------------------------------------------------------------- a ledger lock forked on a cluster (issue 24)

SYSTEM = "user:system"  # who the server's own corrections are by (filed under it)


def resolve_lock_forks(couch: Couch, signer: Signer, now: dt.datetime) -> int:
    """Every forked ledger lock made one (the minute sweep); returns the transfers reversed."""
    rows = couch.accounts.query("linli/conflicts", as_list=True, key="ledger_lock")
    return sum(sweeps.each("ledger locks forked", [row["id"] for row in rows],
                           lambda lock_id: resolve_lock_fork(couch, signer, lock_id, now)))


def resolve_lock_fork(couch: Couch, signer: Signer, lock_id: str, now: dt.datetime) -> int:
    """Two transfers out of one account took its lock at once on two CouchDB nodes (two revisions of the lock):
    each revision's transfer is written (a process may have stopped before writing its own); if the account is now
    past its floor, the rule of domain/timebank.py `first_floor_breaker` picks the transfer to reverse, again until
    it is within; then the revisions are merged into one (`merged_lock`: no code spent on either side comes back).
    Reversals come before the merge, so a process stopping in between leaves the fork for the next sweep, and each
    is written once, by its id (`rules.reversal_id`). Returns the transfers reversed."""
    winner = couch.accounts.get(lock_id, conflicts="true")
    leaves = [{k: v for k, v in winner.items() if k != "_conflicts"},
              *(couch.accounts.get(lock_id, rev=rev) for rev in winner.get("_conflicts", []))]
    if len(leaves) < 2:
        return 0
    for leaf in leaves:
        if leaf.get("last"):
            _write_left_transfer(couch, leaf["last"])
    account = winner["account"]
    paid_from = sorted({(leaf["last"]["community"], leaf["last"]["ledger"]) for leaf in leaves if leaf.get("last")})
    reversed_ = sum(_back_within_floor(couch, signer, community, ledger, account, now)
                    for community, ledger in paid_from)
    merged = migrations.upgrade(rules.merged_lock(leaves))  # a lock from before version 2 held its secret
    validate(merged)
    couch.accounts.save(merged)  # on the winner's revision
    bulk_save(couch.accounts, [deletion(leaf) for leaf in leaves[1:]])
    return reversed_


def _back_within_floor(couch: Couch, signer: Signer, community: str, ledger: str, account: str,
                       now: dt.datetime) -> int:
    reversed_ = 0
    while rules.below_floor(ledger, account, balance(couch, community, ledger, account)):
        legs = [t for t in history(couch, community, account) if t["ledger"] == ledger]
        breaker = rules.first_floor_breaker(account, legs)
        if breaker is None or not server_reversal(couch, signer, breaker, rules.FLOOR_REVERSAL_REASON, now):
            break  # nothing the rule reverses (or reversed already, by another process a moment ago)
        reversed_ += 1
    return reversed_


def server_reversal(couch: Couch, signer: Signer, transfer: Doc, reason: str, now: dt.datetime) -> bool:
    """The server's own reversal of a transfer a cluster let through (past the floor; a voucher not had), with its
    reason, filed like the secretary's; False if it is reversed already. Written whatever the receiving side holds
    now: what it received was never the paying side's to give."""
    reversal = _transfer_doc(rules.reversal_id(transfer["_id"]), transfer, transfer["ledger"],
                             transfer["to_account"], transfer["from_account"], transfer["amount"], "reversal", SYSTEM,
                             now, reverses=transfer["_id"], reason=reason)
    validate(reversal)
    try:
        couch.main.save(reversal)
    except Conflict:
        return False
    filing.append(couch, signer, street=transfer["street"], community=transfer["community"], actor=SYSTEM,
                  action="ledger_reversal", target=transfer["_id"], fields=[], purpose=reason, device="server", at=now)
    return True
