"""What the time bank's two ledgers allow (issue 16): pure rules, read by the services, the pages and the
property test alike.

Hours are kept in whole minutes. A transfer moves a positive amount from one account to another; balances are
sums of transfers (a CouchDB view), so the hours of all accounts sum to zero by construction. Hours may go
negative down to `HOURS_FLOOR`, which blocks; points never go negative, except the community's own account,
which mints them. Every refusal names why, as an i18n message key with its parameters.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Any

from server.domain.declaration import DOC_TYPES, LEDGERS

Doc = dict[str, Any]

HOURS_FLOOR = -10 * 60  # minutes: an account may owe ten hours of help, not more
MAX_CLAIM_MINUTES = 8 * 60  # one claim covers at most a working day of help
CLAIM_EXPIRES_AFTER = dt.timedelta(days=14)  # a claim nobody answered lapses and moves nothing
# Documents a claim may be for: a need, a visit, and the volunteers' tasks once declared (issue 14, item 3).
CLAIMABLE_TYPES = tuple(t for t in ("need", "visit", "task") if t in DOC_TYPES)
ACCOUNT_TYPES = ("resident", "user", "organisation", "community")
MINTING_ACCOUNT_TYPE = "community"


def claim_id(task_id: str) -> str:
    """A claim's id derives from what it is for: one task, one claim."""
    return "claim:" + task_id


def transfer_id_of_claim(claim: str) -> str:
    return "transfer:" + claim


def reversal_id(transfer: str) -> str:
    """One reversal per transfer: a second is a conflict on this id."""
    return "transfer:reversal:" + transfer.removeprefix("transfer:")


def account_of(user: Doc) -> str:
    """The account a signed-in person's hours and points are on: their resident record if they are a resident
    with an account, else their user (a volunteer, a grid worker)."""
    return user.get("resident") or user["_id"]


def is_account(value: Any) -> bool:
    return isinstance(value, str) and value.split(":", 1)[0] in ACCOUNT_TYPES and len(value.split(":", 1)) == 2


def doer_of(task: Doc) -> str | None:
    """Who did a task, and so may claim for it: the person it was assigned to, else who recorded it."""
    return task.get("assigned_to") or task.get("created_by")


def claim_refusal(writer: str, claim: Doc, task: Doc | None, lock: Doc | None = None,
                  now: dt.datetime | None = None) -> tuple[str, dict[str, Any]] | None:
    """Why this claim may not be made by `writer` (message key, params); None if it may. `task` is the document
    named by claim["task"] (None if there is none); `lock` the resident's `ledger_lock` (their confirmation codes),
    `opened`, read only for a claim confirmed in person. The sync gateway and the online form both ask this; the caller
    checks the rest of the placement."""
    minutes = claim.get("minutes")
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not 0 < minutes <= MAX_CLAIM_MINUTES:
        return ("tb_minutes_range", {"hours": MAX_CLAIM_MINUTES // 60})
    if claim.get("status") != "claimed":
        return ("tb_claim_made_claimed", {})
    if not isinstance(claim.get("task"), str) or claim.get("_id") != claim_id(claim["task"]):
        return ("tb_claim_id", {})
    if task is None or task.get("type") not in CLAIMABLE_TYPES or task.get("_deleted") or not task.get("resident"):
        return ("tb_claim_no_task", {})  # hours are claimed from someone: a task for a whole household is not
    if any(task.get(k) != claim.get(k) for k in ("street", "community", "grid", "resident")):
        return ("tb_claim_task_elsewhere", {})
    if doer_of(task) != writer:
        return ("tb_claim_not_yours", {})
    return in_person_refusal(claim, lock, now)


def transfer_refusal(ledger: str, from_account: str, to_account: str, amount: Any,
                     from_balance: int) -> tuple[str, dict[str, Any]] | None:
    """Why a transfer of `amount` from an account holding `from_balance` may not be made; None if it may."""
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        return ("tb_amount_positive", {})
    if not (is_account(from_account) and is_account(to_account)) or from_account == to_account:
        return ("tb_accounts", {})
    if ledger == "hours" and from_balance - amount < HOURS_FLOOR:
        return ("tb_over_limit", {"hours": -HOURS_FLOOR // 60, "balance": hours_text(from_balance)})
    if ledger == "points" and not from_account.startswith(MINTING_ACCOUNT_TYPE + ":") and from_balance < amount:
        return ("tb_points_short", {"balance": from_balance})
    return None


def offline_rules() -> dict[str, Any]:
    """What the offline /timebank needs of these rules, as data (/pwa/session.json; pwa/offline/pages.js)."""
    return {"ledgers": list(LEDGERS), "claimable_types": list(CLAIMABLE_TYPES), "floor_hours": -HOURS_FLOOR // 60,
            "max_minutes": MAX_CLAIM_MINUTES, "expires_days": CLAIM_EXPIRES_AFTER.days}


def hours_text(minutes: int) -> str:
    """Minutes as hours for people: 90 -> "1.5", -30 -> "-0.5", 60 -> "1"."""
    return f"{minutes / 60:.2f}".rstrip("0").rstrip(".")


def claim_lapsed(claim: Doc, now: dt.datetime) -> bool:
    return claim.get("status") == "claimed" and dt.datetime.fromisoformat(claim["created_at"]) + \
        CLAIM_EXPIRES_AFTER <= now


# ---------------------------------------------------------------- in person, on the provider's phone (issue 16 item 3)
#
# The resident confirms a claim at the door by typing one of their one-time confirmation codes on the provider's
# phone and ticking that they agree. A code is 6 digits of an HMAC of its number under a secret of the resident's
# that only the server holds: derived from the installation's code key (`code_secret`; the key is stored wrapped
# under the master key, server/security/keystore.py), never stored itself. Which codes are spent is kept on
# `ledger_lock:<resident>` (accounts database, never replicated); the checks read the lock `opened`, with the
# secret beside it in memory. An offline phone cannot make a code, and one it has seen is spent by the
# confirmation that carried it. The resident's own /timebank
# page lists their next `CONFIRM_CODES_AHEAD` unused codes (a printout does for a resident without a phone); any of
# them is good, once, in any order (two claims of one visit sync in either order).

CONFIRM_CODES_AHEAD = 5
CONFIRM_CODE_DIGITS = 6
IN_PERSON_FIELDS = ("in_person_code", "in_person_consent", "in_person_at")


def ledger_lock_id(account: str) -> str:
    """The document every transfer out of `account` updates first: its revision serialises them (the floor
    holds under concurrency), and it keeps a resident's confirmation codes."""
    return "ledger_lock:" + account


def code_secret(code_key: bytes, resident: str) -> str:
    """A resident's codes' secret (hex), derived from the installation's code key: the same after a master-key
    rotation (the key is re-wrapped, not replaced), different for every resident."""
    return hmac.new(code_key, f"linli confirmation secret {resident}".encode(), hashlib.sha256).hexdigest()


def opened(lock: Doc | None, code_key: bytes | None) -> Doc | None:
    """The lock as the code checks read it: with its resident's secret beside it, in memory only (a lock with the
    secret is never stored: the declaration does not allow the field). None stays None; a lock whose resident was
    never shown codes stays as it is."""
    if not lock or "codes_from" not in lock or code_key is None:
        return lock
    return {**lock, "secret": code_secret(code_key, lock["account"])}


def confirmation_code(secret: str, number: int) -> str:
    """A resident's `number`-th one-time confirmation code, from their secret (hex)."""
    mac = hmac.new(bytes.fromhex(secret), f"linli confirmation code {number}".encode(), hashlib.sha256).digest()
    return f"{int.from_bytes(mac[:8], 'big') % 10 ** CONFIRM_CODE_DIGITS:0{CONFIRM_CODE_DIGITS}d}"


def open_code_numbers(lock: Doc | None) -> list[int]:
    """The numbers of a resident's codes that are good now: the next `CONFIRM_CODES_AHEAD` not used yet."""
    if not lock or "codes_from" not in lock:
        return []
    start, used = lock.get("codes_from", 0), set(lock.get("codes_used") or [])
    return [n for n in range(start, start + CONFIRM_CODES_AHEAD + len(used)) if str(n) not in used]


def code_number(lock: Doc | None, code: Any) -> int | None:
    """Which of the resident's good codes `code` is; None if it is none of them (wrong, or spent)."""
    if not isinstance(code, str) or not lock or not lock.get("secret"):
        return None
    typed = code.strip().replace(" ", "").encode()  # as bytes: compare_digest refuses a str that is not ASCII
    return next((n for n in open_code_numbers(lock)
                 if hmac.compare_digest(confirmation_code(lock["secret"], n).encode(), typed)), None)


def spend_code(lock: Doc, number: int) -> Doc:
    """The lock with code `number` spent; the window moves past the codes used from its start."""
    used, start = set(lock.get("codes_used") or []) | {str(number)}, lock.get("codes_from", 0)
    while str(start) in used:
        used.discard(str(start))
        start += 1
    return {**lock, "codes_from": start, "codes_used": sorted(used, key=int)}


# Guessing: a code is 6 digits and five are open, so a guess is right about once in 200,000. Wrong codes typed
# for a resident are counted on their lock (whoever typed them, each claim's once); after CODE_MISSES_PER_DAY in a
# day no code of theirs is taken in person until the day has passed (they confirm on their own page meanwhile,
# and see the wrong tries there), so a scripted client gets five guesses a day at a resident, not thousands.
CODE_MISSES_PER_DAY = 5
CODE_MISS_WINDOW = dt.timedelta(days=1)


def recent_code_misses(lock: Doc | None, now: dt.datetime) -> list[Doc]:
    """The wrong codes typed for the lock's resident within the last day, oldest first."""
    since = (now - CODE_MISS_WINDOW).isoformat()
    return [m for m in (lock or {}).get("code_misses") or [] if m["at"] > since]


def with_code_miss(lock: Doc, claim: str, by: str, code: Any, now: dt.datetime) -> Doc | None:
    """The lock with this claim's wrong code counted (a hash of it, never the code); None if it is counted already
    (a phone sending the refused claim again)."""
    typed = hashlib.sha256(str(code).encode()).hexdigest()[:16]
    recent = recent_code_misses(lock, now)
    if any(m["claim"] == claim and m["code"] == typed for m in recent):
        return None
    miss = {"claim": claim, "by": by, "code": typed, "at": now.isoformat()}
    return {**lock, "code_misses": [*recent, miss][-2 * CODE_MISSES_PER_DAY:]}


def in_person_refusal(claim: Doc, lock: Doc | None, now: dt.datetime | None = None
                      ) -> tuple[str, dict[str, Any]] | None:
    """A claim confirmed in person carries the resident's consent and one of their good codes, and the resident's
    codes are not resting after too many wrong ones (counted when `now` is given: the server's clock)."""
    if not any(claim.get(name) is not None for name in IN_PERSON_FIELDS):
        return None
    if claim.get("in_person_consent") is not True or not claim.get("in_person_at"):
        return ("tb_in_person_consent", {})
    if now is not None and len(recent_code_misses(lock, now)) >= CODE_MISSES_PER_DAY:
        return ("tb_code_tries_used", {"tries": CODE_MISSES_PER_DAY})
    if code_number(lock, claim.get("in_person_code")) is None:
        return ("tb_code_wrong", {})
    return None


# ---------------------------------------------------------------- a ledger lock forked on a cluster (issue 24)
#
# On one CouchDB node two transfers out of one account take its lock one after the other (the second gets a 409
# and reads the balance again). On a cluster both can take it at once on two nodes: two revisions of the lock, and
# both transfers written, together past the floor. The rule (server/services/timebank.py resolve_lock_fork): the
# account's transfers are replayed by time, then id; the first out of it that the ledger would have refused then
# is reversed, and the next, until the balance is within the floor again. The lock's revisions become one.

FLOOR_REVERSAL_REASON = "同时转出越过了余额下限，系统已冲正（transfers made at once passed the floor: reversed）"


def below_floor(ledger: str, account: str, held: int) -> bool:
    """Whether an account holding `held` is past what its ledger allows (the community's own account mints)."""
    if ledger == "hours":
        return held < HOURS_FLOOR
    return held < 0 and not account.startswith(MINTING_ACCOUNT_TYPE + ":")


def first_floor_breaker(account: str, transfers: list[Doc]) -> Doc | None:
    """Of an account's transfers on one ledger (both legs), the first out of it, by time then id, that the ledger
    would have refused had they been made one after another; None if none. A reversed transfer and its reversal
    net to nothing and are passed over."""
    reversed_ = {t["reverses"] for t in transfers if t.get("reverses")}
    held = 0
    for t in sorted(transfers, key=lambda t: (t["created_at"], t["_id"])):
        if t["_id"] in reversed_ or t.get("reverses"):
            continue
        if t["to_account"] == account:
            held += t["amount"]
            continue
        if transfer_refusal(t["ledger"], account, t["to_account"], t["amount"], held):
            return t
        held -= t["amount"]
    return None


def merged_lock(leaves: list[Doc]) -> Doc:
    """A forked lock's revisions made one (CouchDB's winner first): the winner's secret and last transfer, the
    highest sequence, every code of that secret spent on any side spent, every side's wrong codes counted."""
    first = leaves[0]
    merged = {**first, "seq": max(leaf["seq"] for leaf in leaves)}
    if any("codes_from" in leaf for leaf in leaves):
        # Codes come from the account (`code_secret`), so every revision's are the same codes; a lock from before
        # version 2 held a secret of its own, and only revisions holding the winner's share its codes.
        same = [leaf for leaf in leaves if leaf.get("secret") == first.get("secret")]
        start = min(leaf.get("codes_from", 0) for leaf in same)
        spent = {n for leaf in same for n in [*range(start, leaf.get("codes_from", 0)),
                                               *map(int, leaf.get("codes_used") or [])]}
        merged = {**merged, "codes_from": start, "codes_used": []}
        for number in sorted(spent):
            merged = spend_code(merged, number)
    misses = {(m["claim"], m["code"]): m for leaf in leaves for m in leaf.get("code_misses") or []}
    if misses:
        merged["code_misses"] = sorted(misses.values(), key=lambda m: m["at"])[-2 * CODE_MISSES_PER_DAY:]
    return merged
