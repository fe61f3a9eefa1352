"""Points for participation and the rewards they buy (issue 16 item 4): the minting job, the catalogue, vouchers,
their use at the partner, statements. The rules are server/domain/points.py; the ledger is the time bank's
(server/services/timebank.py: balances from the `ledger` view, transfers never edited).

Minting reads participation from documents that exist anyway and writes one transfer per event under an id made
from the event (`points.mint_id`): the job may run any number of times, in any number of processes.

Redeeming checks the balance, takes a free slot of the reward's stock (the voucher, signed by the installation key:
crypto/vouchers.py), then debits the account under an id made from the voucher (`points.spend_id`); a debit refused
takes the voucher back. Not all-or-nothing (CouchDB writes one document at a time): a process that stops between the
two leaves a voucher unpaid, never listed nor honoured (`_paid`), which `repair_vouchers` finishes after
`points.PAY_WITHIN`: paid under the same id (a late first process meets it as a conflict: one debit), or withdrawn if
the points are gone, its unit free again. Rolling forward rather than back, because the voucher records what the
holder asked for. A redemption's debit reversed by the secretary voids its voucher (`void`): a redemption document
saying so, which the partner's phone refuses once synced, and shows.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from pycouchdb.exceptions import Conflict

from crypto import vouchers
from server.domain import points as rules
from server.domain.access import Principal, deletion, may_see
from server.domain.declaration import LEDGERS, Role, validate
from server.domain.meetings import PARTICIPATION, participation_id
from server.domain.timebank import account_of, hours_text, reversal_id, transfer_refusal
from server.security.filing import Signer
from server.security.keystore import KeyStore
from server.services import meetings, qr_drawing, timebank
from server.services.timebank import LedgerError
from server.store import queries, sweeps
from server.store.config import local_time
from server.store.couch import Couch, bulk_save, docs_of_type, get_many, get_or_none, iter_view_docs

Doc = dict[str, Any]
MINT_BATCH = 500


# ---------------------------------------------------------------- minting

def event_of(doc: Doc) -> rules.Event | None:
    """The participation one document records, if any: confirmed help (for the helper), a survey answer, and
    what server/services/meetings.py `participation_of` reads: a vote, an attendance, an opinion not hidden."""
    if doc.get("type") == "transfer" and doc.get("kind") == "confirmation" and doc.get("ledger") == "hours":
        return rules.Event(participation_id("hours_confirmed", doc["_id"], doc["to_account"]), "hours_confirmed",
                           doc["to_account"], doc["_id"], doc["created_at"])
    if doc.get("type") == "survey_response":
        return rules.Event(participation_id("survey_answered", doc["_id"], doc["created_by"]), "survey_answered",
                           doc["created_by"], doc["_id"], doc["created_at"])
    p = meetings.participation_of(doc)
    return rules.Event(p.id, p.kind, p.person, p.source, p.at) if p else None


SOURCE_TYPES = ("transfer", "survey_response", *PARTICIPATION.values())  # the documents event_of reads


def participation(couch: Couch, community: str) -> Iterator[rules.Event]:
    """Every participation in the community (event_of each source document)."""
    for type_name in SOURCE_TYPES:
        for doc in iter_view_docs(couch.main, "linli/by_place", [community, type_name]):
            event = event_of(doc)
            if event:
                yield event


def _batches(events: Iterable[rules.Event]) -> Iterator[list[rules.Event]]:
    batch: list[rules.Event] = []
    for event in events:
        batch.append(event)
        if len(batch) == MINT_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def mint_due(couch: Couch, community: Doc, now: dt.datetime, events: Iterable[rules.Event] | None = None) -> int:
    """Mint the points every participation in the community earned and has not been minted yet; how many were.
    Idempotent: an event already minted (by this run, an earlier one, another process) is skipped or conflicts.
    A mint is dated at its event (never after `now`), so statements show points in the month they were earned."""
    minted = 0
    events = participation(couch, community["_id"]) if events is None else events
    for batch in _batches(e for e in events if e.kind in rules.POINTS_RULES):
        done = {row["id"] for row in couch.main.all(keys=[rules.mint_id(e.id) for e in batch], as_list=True)
                if "error" not in row and not row.get("value", {}).get("deleted")}
        todo = [e for e in batch if rules.mint_id(e.id) not in done]
        amounts = _amounts(couch, todo)
        users = get_many(couch.accounts, {e.person for e in todo if e.person.startswith("user:")})
        docs = []
        for event in todo:
            account = account_of(users[event.person]) if event.person in users else event.person
            points = amounts.get(event.source, rules.points_for(event.kind))
            if transfer_refusal("points", community["_id"], account, points, 0):
                continue  # nothing to mint (under a point of help), or not an account (a deleted user)
            doc = {"_id": rules.mint_id(event.id), "type": "transfer", "street": community["street"],
                   "community": community["_id"], "ledger": "points", "from_account": community["_id"],
                   "to_account": account, "amount": points, "kind": "mint", "reason": event.kind,
                   "created_by": "user:system", "created_at": min(event.at, now.isoformat())}
            validate(doc)
            docs.append(doc)
        minted += sum(1 for r in bulk_save(couch.main, docs) if r.error is None) if docs else 0
    return minted


def _amounts(couch: Couch, events: list[rules.Event]) -> dict[str, int]:
    """Points of confirmed help, by the minutes of its transfer."""
    hours = [e.source for e in events if e.kind == "hours_confirmed"]
    return {i: rules.points_for("hours_confirmed", t["amount"]) for i, t in get_many(couch.main, hours).items()}


MINT_CHECKPOINT = "_local/linli-points-minted"  # main database: never replicated
CHANGES_BATCH = 2000


def mint_all(couch: Couch, now: dt.datetime) -> int:
    """The job (the minute clock, one sweep in app.MINT_EVERY, and `linli serve`'s first start): the points every
    participation stored since the last run earned, read from the main database's changes since its checkpoint,
    so a run reads what is new, not every source again; the first run reads every change. The checkpoint moves on
    after each batch whose every community was minted: a community that failed is read again next run (minting is
    idempotent)."""
    checkpoint = get_or_none(couch.main, MINT_CHECKPOINT) or {"_id": MINT_CHECKPOINT, "seq": 0}
    communities = {c["_id"]: c for c in docs_of_type(couch.main, "community")}
    minted = 0
    while True:
        last_seq, changes = couch.main.changes_list(since=checkpoint["seq"], include_docs="true",
                                                    limit=CHANGES_BATCH)
        events: dict[str, list[rules.Event]] = {}
        for change in changes:
            doc = change.get("doc") or {}
            event = event_of(doc) if doc.get("community") in communities and not doc.get("_deleted") else None
            if event:
                events.setdefault(doc["community"], []).append(event)
        done = sweeps.each("participation points", sorted(events),
                           lambda community, found=events: mint_due(couch, communities[community], now,
                                                                    found[community]))
        minted += sum(done)
        if len(done) < len(events) or not changes:
            return minted  # a community failed: from this checkpoint again next run
        # Another run may have moved the checkpoint meanwhile (the first start's beside a sweep's): it read the same
        # changes, minting is idempotent, and the next run goes on from the checkpoint it wrote.
        try:
            checkpoint = couch.main.save({**checkpoint, "seq": last_seq})
        except Conflict:
            return minted
        if len(changes) < CHANGES_BATCH:
            return minted


# ---------------------------------------------------------------- the catalogue

def catalogue(couch: Couch, community: str) -> list[Doc]:
    """The community's rewards on offer, each with `left`: units not yet bought."""
    rewards = [r for r in iter_view_docs(couch.main, "linli/by_place", [community, "reward"]) if r["active"]]
    return [{**r, "left": r["stock"] - len(_taken(couch, r["_id"]))}
            for r in sorted(rewards, key=lambda r: r["points"])]


def offer(couch: Couch, p: Principal, organisation_id: str, name: str, kind: str, points: Any, stock: Any,
          now: dt.datetime) -> Doc:
    """The secretary (for an organisation of her community) or the organisation's partner staff offers a reward."""
    organisation = _offering(couch, p, organisation_id)
    refused = rules.reward_refusal(name, kind, points, stock)
    if refused:
        raise LedgerError(refused[1], refused[2], field=refused[0])
    doc = {"_id": f"reward:{uuid.uuid4().hex[:12]}", "type": "reward", "street": organisation["street"],
           "community": organisation["community"], "organisation": organisation_id, "name": name.strip()[:100],
           "kind": kind, "points": points, "stock": stock, "active": True, "created_by": p.user_id,
           "created_at": now.isoformat()}
    validate(doc)
    return couch.main.save(doc)


def _offering(couch: Couch, p: Principal, organisation_id: str) -> Doc:
    """The organisation if `p` may offer its rewards: its own partner staff, or the secretary of its community."""
    organisation = queries.load_doc(couch, organisation_id, "organisation")
    if organisation is None or not may_see(p, organisation):
        raise LedgerError("not_found", field="organisation", status=404)
    secretary = p.has(Role.SECRETARY) and organisation["community"] in p.communities
    if not (p.organisation == organisation_id or secretary):
        raise LedgerError("forbidden", status=403)
    return organisation


def offerers_organisations(couch: Couch, p: Principal) -> list[Doc]:
    """The organisations whose rewards `p` may offer: a partner's own; every organisation of a secretary's
    communities."""
    if p.organisation:
        own = queries.load_doc(couch, p.organisation, "organisation")
        return [own] if own else []
    if not p.has(Role.SECRETARY):
        return []
    found = [o for c in p.communities for o in iter_view_docs(couch.main, "linli/by_place", [c, "organisation"])]
    return sorted(found, key=lambda o: (o["community"], o["name"]))


def offered_by(couch: Couch, organisations: list[Doc]) -> list[Doc]:
    """The rewards these organisations offer (withdrawn ones too), each with `taken`: units bought."""
    wanted = {o["_id"] for o in organisations}
    found = [r for c in sorted({o["community"] for o in organisations})
             for r in iter_view_docs(couch.main, "linli/by_place", [c, "reward"]) if r["organisation"] in wanted]
    return [{**r, "taken": len(_taken(couch, r["_id"]))} for r in sorted(found, key=lambda r: r["created_at"])]


def set_stock(couch: Couch, p: Principal, reward_id: str, stock: Any, now: dt.datetime) -> Doc:
    """The offerer changes how many units a reward has: never below the units already bought, counted again after
    the change is stored. A redemption racing it either reads the new stock after taking its slot and gives the
    slot back (redeem), or took its slot before the change was stored, and so is in that second count: then the
    stock is raised to cover it. Either way no voucher is above the stock."""
    reward = queries.load_doc(couch, reward_id, "reward") if reward_id else None
    if reward is None or not may_see(p, reward):
        raise LedgerError("pt_no_reward", field="reward", status=404)
    _offering(couch, p, reward["organisation"])
    refused = rules.stock_refusal(stock, len(_taken(couch, reward_id)))
    if refused:
        raise LedgerError(*refused, field="stock")
    doc = {**reward, "stock": stock, "updated_at": now.isoformat()}
    validate(doc)
    try:
        saved = couch.main.save(doc)
    except Conflict:  # changed meanwhile (another tab, the other offerer): said, not overwritten
        raise LedgerError("pt_changed_meanwhile", field="stock", status=409) from None
    bought = len(_taken(couch, reward_id))
    if bought > stock:  # bought meanwhile: the stock covers it (the page shows the stock as stored)
        try:
            saved = couch.main.save({**saved, "stock": bought})
        except Conflict:  # changed again meanwhile: whoever changed it counted after storing, as here
            raise LedgerError("pt_changed_meanwhile", field="stock", status=409) from None
    return saved


def _taken(couch: Couch, reward_id: str) -> list[str]:
    """Ids of the reward's vouchers (its slots taken), in slot order."""
    prefix = rules.voucher_id(reward_id, 0)[:-5]
    return [row["id"] for row in couch.main.all(startkey=prefix, endkey=prefix + "\ufff0", as_list=True)]


# ---------------------------------------------------------------- vouchers

def redeem(couch: Couch, keys: KeyStore, p: Principal, reward_id: str, now: dt.datetime) -> Doc:
    """The signed-in person spends points on one unit of a reward: a voucher, paid for, signed."""
    reward = queries.load_doc(couch, reward_id, "reward") if reward_id else None
    if reward is None or not may_see(p, reward):
        raise LedgerError("pt_no_reward", field="reward", status=404)
    account = account_of({"_id": p.user_id, "resident": p.resident})
    community = reward["community"]
    held, taken = timebank.balance(couch, community, "points", account), _taken(couch, reward_id)
    refused = rules.redeem_refusal(reward, account, held, len(taken))
    if refused:
        raise LedgerError(*refused, field="reward", status=409 if refused[0] == "pt_out_of_stock" else 400)
    for slot in (s for s in range(1, reward["stock"] + 1) if rules.voucher_id(reward_id, s) not in taken):
        voucher_id = rules.voucher_id(reward_id, slot)
        voucher = _voucher(keys, reward, voucher_id, account, rules.spend_id(voucher_id), p.user_id, now)
        try:
            voucher = couch.main.save(voucher)
        except Conflict:
            continue  # another redemption took this unit a moment ago: the next one
        break
    else:
        raise LedgerError("pt_out_of_stock", field="reward", status=409)
    if len(_taken(couch, reward_id)) > couch.main.get(reward_id)["stock"]:  # lowered meanwhile (see set_stock)
        couch.main.delete(voucher)
        raise LedgerError("pt_out_of_stock", field="reward", status=409)
    try:
        _pay(couch, voucher, reward["name"], now)
    except LedgerError as refused_debit:  # short meanwhile, or the account's lock too busy
        couch.main.delete(voucher)
        if refused_debit.errors[0].key == "tb_busy":
            raise LedgerError("pt_busy", field="reward", status=409) from None
        raise LedgerError("pt_points_short", {"balance": timebank.balance(couch, community, "points", account),
                                              "points": reward["points"]}, field="reward") from None
    return voucher


def _pay(couch: Couch, voucher: Doc, reason: str, now: dt.datetime) -> None:
    """The voucher's debit, under the id it names. Refused, but written after all (by the sweep finishing it, or
    by its redemption back from a stall; the balance then counts it, and the id conflicts): paid, once."""
    try:
        timebank.spend(couch, voucher, voucher["holder"], voucher["organisation"], voucher["points"], reason,
                       voucher["transfer"].removeprefix("transfer:redemption:"), voucher["created_by"], now)
    except LedgerError:
        if get_or_none(couch.main, voucher["transfer"]) is None:
            raise


def _voucher(keys: KeyStore, reward: Doc, voucher_id: str, holder: str, transfer: str, by: str,
             now: dt.datetime) -> Doc:
    payload = {"id": voucher_id, "organisation": reward["organisation"], "reward": reward["_id"],
               "points": reward["points"], "issued_at": now.isoformat(timespec="seconds")}
    code = vouchers.sign(keys.installation_key(), payload)
    doc = {"_id": voucher_id, "type": "voucher", "street": reward["street"], "community": reward["community"],
           "reward": reward["_id"], "organisation": reward["organisation"], "holder": holder,
           "points": reward["points"], "transfer": transfer, "code": code, **qr_drawing.draw(code),
           "created_by": by, "created_at": now.isoformat()}
    validate(doc)
    return doc


def _paid(couch: Couch, found: list[Doc]) -> list[Doc]:
    """Vouchers whose debit is recorded (a voucher written just before a crash, unpaid, is nobody's until
    repair_vouchers pays it)."""
    paid = get_many(couch.main, [v["transfer"] for v in found])
    return [v for v in found if v["transfer"] in paid]


def void(couch: Couch, voucher: Doc, by: str, reason: str, now: dt.datetime) -> Doc:
    """Void a voucher whose debit was reversed: its redemption, saying so (`voided`), so that no partner honours
    it, online or, once synced, on their phone; one that was used already stays used. The redemption stored."""
    doc = {"_id": rules.redemption_id(voucher["_id"]), "type": "redemption", "street": voucher["street"],
           "community": voucher["community"], "voucher": voucher["_id"], "reward": voucher["reward"],
           "organisation": voucher["organisation"], "holder": voucher["holder"], "voided": reason[:500] or "-",
           "created_by": by, "created_at": now.isoformat()}
    validate(doc)
    try:
        return couch.main.save(doc)
    except Conflict:
        return couch.main.get(doc["_id"])


def reverse(couch: Couch, signer: Signer, p: Principal, transfer_id: str, reason: str, now: dt.datetime,
            device: str = "") -> Doc:
    """The secretary's reversal (timebank.reverse); a redemption's voids the voucher it paid for."""
    reversal = timebank.reverse(couch, signer, p, transfer_id, reason, now, device)
    original = couch.main.get(transfer_id)
    if original["kind"] == "redemption":
        for voucher in _vouchers_paid_by(couch, original):
            void(couch, voucher, p.user_id, reason.strip(), now)
    return reversal


def _vouchers_paid_by(couch: Couch, debit: Doc) -> list[Doc]:
    return [v for v in iter_view_docs(couch.main, "linli/by_place", [debit["community"], "voucher"])
            if v["transfer"] == debit["_id"]]


def repair_vouchers(couch: Couch, now: dt.datetime) -> int:
    """Vouchers left half done, finished (the minute clock, with the points job): one unpaid after PAY_WITHIN (its
    process stopped between the voucher and its debit) is paid now, or withdrawn (deleted, its unit free again) if
    the holder's points no longer cover it; one whose debit was reversed and that has no redemption yet (the
    process stopped after the reversal) is voided. How many were finished."""
    cutoff = (now - rules.PAY_WITHIN).isoformat()
    found = [v for c in docs_of_type(couch.main, "community")
             for v in iter_view_docs(couch.main, "linli/by_place", [c["_id"], "voucher"])]
    debits = get_many(couch.main, [v["transfer"] for v in found])
    reversals = get_many(couch.main, [reversal_id(v["transfer"]) for v in found if v["transfer"] in debits])
    redemptions = get_many(couch.main, [rules.redemption_id(v["_id"]) for v in found])

    def repair(voucher: Doc) -> int:
        if voucher["transfer"] not in debits:
            if voucher["created_at"] > cutoff:
                return 0  # its redemption may still be under way
            try:
                _pay(couch, voucher, couch.main.get(voucher["reward"])["name"], now)
            except LedgerError:
                couch.main.delete(voucher)
            return 1
        reversal = reversals.get(reversal_id(voucher["transfer"]))
        if reversal and rules.redemption_id(voucher["_id"]) not in redemptions:
            void(couch, voucher, reversal["created_by"], reversal.get("reason", ""), now)
            return 1
        return 0
    return sum(sweeps.each("vouchers left half done", found, repair))


def vouchers_of(couch: Couch, community: str, holder: str) -> list[Doc]:
    """A holder's vouchers, newest first, each with `used`: its redemption, if it was used."""
    found = _paid(couch, [v for v in iter_view_docs(couch.main, "linli/by_place", [community, "voucher"])
                          if v["holder"] == holder])
    used = get_many(couch.main, [rules.redemption_id(v["_id"]) for v in found])
    return sorted(({**v, "used": used.get(rules.redemption_id(v["_id"]))} for v in found),
                  key=lambda v: v["created_at"], reverse=True)


# ---------------------------------------------------------------- use at the partner

def check(couch: Couch, keys: KeyStore, p: Principal, code: str) -> Doc:
    """The voucher a code names, if the installation signed it, it was paid for and it is this partner's to honour;
    LedgerError naming why not. Stores nothing."""
    if not (p.has(Role.PARTNER) and p.organisation):
        raise LedgerError("forbidden", status=403)
    try:
        payload = vouchers.open_code(keys.installation_key().public_key(), code.strip())
    except vouchers.ForgedVoucher:
        raise LedgerError("pt_forged", field="code") from None
    if payload["organisation"] != p.organisation:
        raise LedgerError("pt_other_partner", field="code", status=403)
    voucher = get_or_none(couch.main, str(payload["id"]))
    if voucher is None or voucher.get("code") != code.strip() or not _paid(couch, [voucher]):
        raise LedgerError("pt_forged", field="code")
    if get_or_none(couch.main, reversal_id(voucher["transfer"])) is not None:  # voided, perhaps not written yet
        raise LedgerError("pt_voided", field="code", status=409)
    return voucher


def use(couch: Couch, keys: KeyStore, p: Principal, code: str, now: dt.datetime) -> Doc:
    """The partner honours a voucher: its redemption, once. A second use is refused naming when it was used."""
    voucher = check(couch, keys, p, code)
    doc = {"_id": rules.redemption_id(voucher["_id"]), "type": "redemption", "street": voucher["street"],
           "community": voucher["community"], "voucher": voucher["_id"], "reward": voucher["reward"],
           "organisation": voucher["organisation"], "holder": voucher["holder"], "created_by": p.user_id,
           "created_at": now.isoformat()}
    validate(doc)
    try:
        return couch.main.save(doc)
    except Conflict:
        key, params = rules.second_use_refusal(couch.main.get(doc["_id"]))
        shown = {name: local_time(at) for name, at in params.items()}  # "at": when it was used, as people read it
        raise LedgerError(key, shown, field="code", status=409) from None


def used_twice(couch: Couch, community: str) -> list[Doc]:
    """Redemptions recorded twice (two phones offline, each honouring the voucher): the first one stands, the
    other is refused; each with `others`, the refused versions, for the partner and the secretary to follow up.
    Read with the community's redemptions (`_all_docs` gives each one's conflicts), not the `conflicts` view, whose
    index a first start would wait for."""
    ids = [row["id"] for row in couch.main.query("linli/by_place", as_list=True, startkey=[community, "redemption"],
                                                  endkey=[community, "redemption", {}], reduce="false")]
    rows = couch.main.all(keys=ids, include_docs="true", conflicts="true", as_list=True) if ids else []
    found = []
    for doc in (row["doc"] for row in rows if row.get("doc") and row["doc"].get("_conflicts")):
        others = [couch.main.get(doc["_id"], rev=rev) for rev in doc["_conflicts"]]
        found.append({**doc, "others": others})
    return sorted(found, key=lambda d: d["created_at"], reverse=True)


REDEMPTIONS_SHOWN = 50  # the newest redemptions a partner's page lists


def redemptions_of(couch: Couch, organisation: Doc, limit: int = REDEMPTIONS_SHOWN) -> list[Doc]:
    """The organisation's redemptions, newest first."""
    found = [r for r in iter_view_docs(couch.main, "linli/by_place", [organisation["community"], "redemption"])
             if r["organisation"] == organisation["_id"]]
    return sorted(found, key=lambda r: r["created_at"], reverse=True)[:limit]


# ---------------------------------------------------------------- statements

def statement(couch: Couch, community: str, account: str, period: str) -> dict[str, Any]:
    """One account's statement for a month ("2026-03") or a year ("2026"), both ledgers: opening balance, what
    came in and went out, closing balance, the entries. LedgerError for a period that is neither."""
    bounds = rules.period_bounds(period)
    if bounds is None:
        raise LedgerError("pt_period", field="period")
    start, end = bounds
    ledgers = {}
    for ledger in LEDGERS:
        key = [community, ledger, account]
        before = couch.main.query("linli/ledger", as_list=True, startkey=key, endkey=[*key, start], reduce="true")
        rows = couch.main.query("linli/ledger", as_list=True, startkey=[*key, start], endkey=[*key, end],
                                inclusive_end="false", reduce="false", include_docs="true")
        opening = before[0]["value"] if before else 0
        gained = sum(r["value"] for r in rows if r["value"] > 0)
        spent = -sum(r["value"] for r in rows if r["value"] < 0)
        ledgers[ledger] = {"opening": opening, "in": gained, "out": spent, "closing": opening + gained - spent,
                           "entries": [{**r["doc"], "signed": r["value"]} for r in rows]}
    return {"account": account, "period": period, "ledgers": ledgers}


def community_statements(couch: Couch, community: str, period: str) -> dict[str, Any]:
    """Every account's statement lines for the period (no entries) and the community's totals, from one pass over
    its transfers."""
    bounds = rules.period_bounds(period)
    if bounds is None:
        raise LedgerError("pt_period", field="period")
    start, end = bounds
    lines: dict[str, dict[str, dict[str, int]]] = {}
    totals = {"minted": 0, "redeemed": 0, "hours_confirmed": 0, "transfers": 0}
    for t in iter_view_docs(couch.main, "linli/by_place", [community, "transfer"]):
        if t["created_at"] >= end:
            continue
        within = t["created_at"] >= start
        for account, signed in ((t["from_account"], -t["amount"]), (t["to_account"], t["amount"])):
            line = lines.setdefault(account, {ledger: {"opening": 0, "in": 0, "out": 0} for ledger in LEDGERS})
            cell = line[t["ledger"]]
            cell["in" if signed > 0 else "out"] += abs(signed) if within else 0
            cell["opening"] += 0 if within else signed
        if within:
            totals["transfers"] += 1
            totals["minted"] += t["amount"] if t["kind"] == "mint" else 0
            totals["redeemed"] += t["amount"] if t["kind"] == "redemption" else 0
            totals["hours_confirmed"] += t["amount"] if t["kind"] == "confirmation" else 0
    for line in lines.values():
        for cell in line.values():
            cell["closing"] = cell["opening"] + cell["in"] - cell["out"]
    return {"community": community, "period": period, "lines": dict(sorted(lines.items())), "totals": totals}


def statements_csv(statements: dict[str, Any], names: dict[str, str], kinds: dict[str, str]) -> str:
    """The community's statements as CSV: Chinese headers, each account by its name and kind (never its id), hours
    in hours."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(rules.STATEMENT_CSV_HEADER)
    for account, line in statements["lines"].items():
        h, pts = line["hours"], line["points"]
        writer.writerow([names.get(account, ""), kinds.get(account.split(":", 1)[0], ""),
                         statements["period"], hours_text(h["opening"]), hours_text(h["in"]), hours_text(h["out"]),
                         hours_text(h["closing"]), pts["opening"], pts["in"], pts["out"], pts["closing"]])
    return out.getvalue()


# ---------------------------------------------------------------- redemptions a cluster accepted twice (issue 24)

def resolve_voucher_conflicts(couch: Couch, signer: Signer, now: dt.datetime) -> int:
    """Vouchers taken twice and debits shared by two vouchers (the minute sweep); returns how many were resolved."""
    ids = [row["id"] for row in couch.main.query("linli/conflicts", as_list=True)]
    return sum(sweeps.each("vouchers taken twice", [i for i in ids if i.startswith("voucher:")],
                           lambda voucher: _slot_taken_twice(couch, signer, voucher, now))) + \
        sum(sweeps.each("voucher debits taken twice", [i for i in ids if i.startswith("transfer:redemption:")],
                        lambda transfer: _debit_taken_twice(couch, transfer)))


def _leaves(couch: Couch, doc_id: str) -> list[Doc]:
    """Every revision of a conflicted document, CouchDB's winner first."""
    winner = couch.main.get(doc_id, conflicts="true")
    return [{k: v for k, v in winner.items() if k != "_conflicts"},
            *(couch.main.get(doc_id, rev=rev) for rev in winner.get("_conflicts", []))]


def _slot_taken_twice(couch: Couch, signer: Signer, voucher_id: str, now: dt.datetime) -> bool:
    """Two redemptions took one slot on two nodes: CouchDB's winner (the same on every node) keeps the voucher;
    each other revision's debit is refunded (reversed by the server, filed, in the holder's statement), then the
    revision deleted. Refunds first: a process stopping in between leaves the conflict for the next sweep."""
    leaves = _leaves(couch, voucher_id)
    for lost in leaves[1:]:
        paid = get_or_none(couch.main, lost["transfer"])
        if paid is not None and lost["transfer"] != leaves[0]["transfer"]:
            timebank.server_reversal(couch, signer, paid, rules.VOUCHER_TAKEN_TWICE_REASON, now)
    bulk_save(couch.main, [deletion(lost) for lost in leaves[1:]])
    return len(leaves) > 1


def _debit_taken_twice(couch: Couch, transfer_id: str) -> bool:
    """Two redemptions took one voucher slot on two nodes and each wrote its debit (`spend_id` is made from the
    voucher), leaving one debit in conflict: CouchDB picks its winner apart from the voucher's. The debit that stands
    is the voucher holder's (the slot's rule above: the holder pays, nobody else), written over the winner if it lost;
    the other revisions deleted (the ledger counts winners only, so nobody else is charged). Waits while the voucher
    itself is still in conflict."""
    leaves = _leaves(couch, transfer_id)
    if len(leaves) < 2 or leaves[0].get("kind") != "redemption":
        return False
    voucher = get_or_none(couch.main, "voucher:" + transfer_id.removeprefix(rules.spend_id("")))
    if voucher is None or len(_leaves(couch, voucher["_id"])) > 1:
        return False
    kept = next((t for t in leaves if t["from_account"] == voucher["holder"]), leaves[0])
    if kept is not leaves[0]:
        couch.main.save({**kept, "_rev": leaves[0]["_rev"]})
    bulk_save(couch.main, [deletion(lost) for lost in leaves[1:]])
    return True
