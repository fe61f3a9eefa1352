"""Scale-out (issue 24): two `linli serve` processes on one CouchDB, each running the minute sweep every second,
phones (Node + PouchDB) syncing through each, one process killed with SIGKILL mid-sweep and restarted. Nothing is
filed, escalated or notified twice, nothing a phone sent is lost, the filing log verifies. Then the conflict rules
of ARCHITECTURE.md section 6 that have no test elsewhere, with revisions written as a cluster leaves them."""

from __future__ import annotations

import datetime as dt
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from crypto import filing_log
from server.domain import points
from server.domain import timebank as ledger_rules
from server.domain.declaration import VERSION_FIELD
from server.domain.figures import COUNTS
from server.security import audit_report, filing
from server.security.firewall import Firewall
from server.services import alerts, deliberation, snapshots, timebank
from server.store.config import Settings
from server.store.couch import Couch, bulk_save, docs_of_type, get_or_none
from server.store.embedded_couch import EmbeddedCouch, free_port
from server.web.app import _minute_parts

from .cluster import as_a_cluster_writes as _as_a_cluster_writes
from .sync_harness import C1, G1, G2, STREET, Phone, Served, login, seed, serve, stop

BATCH = 20  # offline openings reported at once: while both run, while one is down, after its restart
REQUESTS = 6  # overdue service requests, each escalated once


def _report(n: int, now: dt.datetime) -> dict[str, Any]:
    grid = G1 if n % 2 else G2
    key = f"{grid.split(':')[1]}-h{1 + n % 20:03d}"  # the seeded street's 20 households a grid
    return {"_id": f"access_report:scale-{n:03d}", "type": "access_report", "street": STREET, "community": C1,
            "grid": grid, "household": f"household:{key}", "resident": f"resident:{key}-1", "fields": ["phone"],
            "purpose": f"scale-out {n}", "at": (now - dt.timedelta(minutes=n)).isoformat(),
            "phone_key": "phone_key:scale", "created_by": "user:wangge01", "created_at": now.isoformat()}


def _overdue(n: int, now: dt.datetime) -> dict[str, Any]:
    made = now - dt.timedelta(days=10)
    return {"_id": f"service_request:scale-{n}", "type": "service_request", "street": STREET, "community": C1,
            "grid": G1, "category": "street_lamp", "description": "路灯不亮", "status": "received",
            "department": "department:utilities", "created_by": "user:wangge01", "created_at": made.isoformat(),
            "due_respond": (made + dt.timedelta(days=1)).isoformat(),
            "due_close": (made + dt.timedelta(days=3)).isoformat(),
            "history": [{"at": made.isoformat(), "by": "user:wangge01", "action": "created", "status": "received"}]}


def _alert(now: dt.datetime) -> dict[str, Any]:
    return {"_id": "alert:scale-sos", "type": "alert", "street": STREET, "community": C1, "grid": G1,
            "household": "household:c1-g1-h001", "resident": "resident:c1-g1-h001-1", "kind": "sos",
            "status": "raised", "raised_at": (now - dt.timedelta(minutes=40)).isoformat()}


def _visit(by: str, grid: str, n: int) -> dict[str, Any]:
    key = f"{grid.split(':')[1]}-h{n:03d}"
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).astimezone(
        dt.timezone(dt.timedelta(hours=8))).isoformat(timespec="seconds")
    return {"_id": f"visit:{key}-scale-{n}", "type": "visit", "street": STREET, "community": C1, "grid": grid,
            "household": f"household:{key}", "kind": "routine", "visited_at": at, "created_by": by, "created_at": at}


def _until(what: str, check: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.1)


def _sweeps_ended(served: Served) -> tuple[str | None, int]:
    """The end of a process's last minute sweep, and how many failed: one of them changes when a sweep ends."""
    sweeps = httpx2.get(served.url + "healthz", timeout=30).json()["parts"]["sweeps"]
    return sweeps["last"], sweeps["failures"]


def _two_more_sweeps(*servers: Served) -> None:
    """Each process ends two more sweeps (all watched at once): the second began after this call, so it ran whole
    over what is stored."""
    for _ in range(2):
        ended = [_sweeps_ended(served) for served in servers]
        for served, before in zip(servers, ended, strict=True):
            _until(f"a sweep of {served.url} ended", lambda s=served, b=before: _sweeps_ended(s) != b)


def _opened(couch: Couch) -> list[str]:
    return [e["purpose"] for e in filing.iter_entries(couch, C1) if e["action"] == "open_offline"]


def _phone(served: Served, username: str) -> Phone:
    cookie, csrf = login(served.url, username)
    return Phone(served.sync_url, cookie, csrf)


def test_two_processes_sweep_together_and_one_killed_mid_sweep_loses_and_doubles_nothing(
        couch_server: EmbeddedCouch, couch: Couch, settings: Settings, monkeypatch: Any) -> None:
    seed(couch)
    now = dt.datetime.now(dt.UTC)
    bulk_save(couch.main, [_overdue(n, now) for n in range(REQUESTS)] + [_alert(now)])

    def reported(batch: int) -> None:  # what phones' syncs bring in at once: both processes' sweeps find them
        bulk_save(couch.main, [_report(n, now) for n in range(batch * BATCH, (batch + 1) * BATCH)])

    monkeypatch.setenv("LINLI_SWEEP_SECONDS", "1")
    port_a = free_port()
    a, b = serve(couch_server.url, settings, port_a), serve(couch_server.url, settings, free_port())
    phone_a, phone_b = _phone(a, "wangge01"), _phone(b, "wangge02")
    try:
        phone_a.call("put", doc=_visit("user:wangge01", G1, 1))
        phone_b.call("put", doc=_visit("user:wangge02", G2, 1))
        phone_a.call("sync"), phone_b.call("sync")
        reported(0)
        _until("a first report filed", lambda: bool(_opened(couch)), 30)
        a.process.send_signal(signal.SIGKILL)  # mid-sweep: the reports are being filed by both
        a.process.wait(10)
        phone_a.call("put", doc=_visit("user:wangge01", G1, 2))  # written offline while its server is gone
        reported(1)  # while one process is down
        a = serve(couch_server.url, settings, port_a)  # restarted on the same address: the phone's session holds
        reported(2)
        phone_a.call("sync"), phone_b.call("sync")
        _until("every report filed or claimed by the killed process",
               lambda: all("filing_claimed_at" in r for r in docs_of_type(couch.main, "access_report")))
        _until("the requests escalated and the alert's notifications written", lambda: all(
            couch.main.get(f"service_request:scale-{n}")["status"] == "escalated" for n in range(REQUESTS))
               and get_or_none(couch.main, "notification:scale-sos-secretary") is not None)
        _two_more_sweeps(a, b)  # they must find nothing left to do twice
    finally:
        phone_a.close(), phone_b.close()
        stop(a), stop(b)
    # A report the killed process had claimed but not filed: its claim lapses, and any process files it.
    signer = filing.Signer.of(settings)
    filing.file_reports(couch, signer, now + filing.CLAIM_LAPSES + dt.timedelta(minutes=1))
    opened = Counter(_opened(couch))
    assert opened == Counter(f"scale-out {n}" for n in range(3 * BATCH)), opened  # each once
    assert docs_of_type(couch.main, "access_report") == []
    for n in range(REQUESTS):
        history = couch.main.get(f"service_request:scale-{n}")["history"]
        assert [h["note"] for h in history if h["action"] == "overdue"] == ["respond"], history
    for audience in ("family", "secretary"):
        assert "_conflicts" not in couch.main.get(f"notification:scale-sos-{audience}", conflicts="true")
    assert {v["_id"] for v in docs_of_type(couch.main, "visit") if "-scale-" in v["_id"]} == {
        "visit:c1-g1-h001-scale-1", "visit:c1-g2-h001-scale-1", "visit:c1-g1-h002-scale-2"}  # no work lost
    verdict = filing.verify(couch, signer, C1)
    assert verdict.ok, verdict
    for port in (a.env["LINLI_PORT"], b.env["LINLI_PORT"]):
        log = (settings.data_dir / f"serve-{port}.log").read_text()
        assert "Traceback" not in log, log


# ---------------------------------------------------------------- conflict rules (ARCHITECTURE.md section 6)

def test_a_transfer_written_twice_counts_once(couch: Couch) -> None:
    """A points mint (a transfer with its event's id) written by two processes on two nodes: the balance is the
    ledger view's sum, which indexes the winning revision only."""
    at = dt.datetime.now(dt.UTC).isoformat()
    mint = {"_id": "transfer:mint:scale-event", "type": "transfer", "street": STREET, "community": C1,
            "ledger": "points", "from_account": "issuer:" + C1, "to_account": "user:zhiyuan01", "amount": 10,
            "kind": "mint", "created_by": "user:system", "created_at": at}
    _as_a_cluster_writes(couch, [{**mint, "_rev": "1-" + "a" * 32}, {**mint, "_rev": "1-" + "b" * 32}])
    assert "_conflicts" in couch.main.get(mint["_id"], conflicts="true")
    assert timebank.balance(couch, C1, "points", "user:zhiyuan01") == 10


def test_a_notification_written_twice_is_one(couch: Couch) -> None:
    """Two processes notified the family of one alert at once (two revisions of one id): the sweep finds the
    notification and writes none again."""
    now = dt.datetime.now(dt.UTC)
    couch.main.save({**_alert(now), "raised_at": (now - dt.timedelta(minutes=5)).isoformat()})
    family = {"_id": "notification:scale-sos-family", "type": "notification", "street": STREET, "community": C1,
              "grid": G1, "household": "household:c1-g1-h001", "resident": "resident:c1-g1-h001-1",
              "alert": "alert:scale-sos", "audience": "family", "status": "pending", "created_at": now.isoformat()}
    _as_a_cluster_writes(couch, [{**family, "_rev": "1-" + "a" * 32}, {**family, "_rev": "1-" + "b" * 32}])
    assert alerts.sweep(couch, now).family_notified == 0
    assert len(couch.main.get(family["_id"], conflicts="true")["_conflicts"]) == 1  # nothing added


def _minute_part(couch: Couch, firewall: Firewall, name: str) -> Callable[[], object]:
    """One part of what every `linli serve` runs each minute, as server/web/app.py lists it."""
    return dict(_minute_parts(couch, firewall))[name]


def _entry_elsewhere(couch: Couch, seq: int, purpose: str) -> dict[str, Any]:
    """A filing-log entry another process wrote as `seq` on another node; CouchDB's winner (its revision sorts last)."""
    prev = couch.main.get(filing.entry_id(C1, seq - 1))["hash"] if seq > 1 else filing_log.GENESIS
    entry = {"_id": filing.entry_id(C1, seq), "_rev": "1-" + "f" * 32, "type": "audit_entry", "street": STREET,
             "community": C1, "actor": "user:wangge01", "action": "decrypt", "target": "resident:c1-g1-h001-1",
             "fields": ["phone"], "purpose": purpose, "device": "phone-2", "at": dt.datetime.now(dt.UTC).isoformat(),
             "seq": seq, "prev_hash": prev}
    return {**entry, "hash": filing_log.entry_hash(entry)}


def _figures(month: str, requests: int) -> dict[str, Any]:
    counts = {name: 0 for name in COUNTS} | {"requests": requests}
    return {"_id": snapshots.snapshot_id(C1, month, 1), "type": "figures_snapshot", "street": STREET, "community": C1,
            "month": month, "version": 1, "counts": counts, "published_at": dt.datetime.now(dt.UTC).isoformat(),
            "hash": snapshots.content_hash(C1, month, counts)}


def _result(published_at: str) -> dict[str, Any]:
    """A vote's result as deliberation._publish stores it (a matter of two households, both yes)."""
    result = {"_id": "matter_result:scale", "type": "matter_result", "street": STREET, "community": C1,
              "matter": "matter:scale", "totals": {"yes": 2, "no": 0}, "conditions": [], "passed": True,
              "roll_size": 2, "roll_hash": "0" * 64, "counted": 2, "receipts": ["r1", "r2"], "conflicts": 0,
              "invalid": 0, "published_at": published_at}
    return {**result, "hash": deliberation.result_hash(result)}


def _filed(couch: Couch, firewall: Firewall, publication: dict[str, Any]) -> dict[str, Any]:
    """What a process publishing does between claiming (or closing) and storing it: file it and sign it."""
    action, target = (filing.RESULT_PUBLISHED, publication["matter"]) if publication["type"] == "matter_result" \
        else (filing.FIGURES_PUBLISHED, publication["_id"])
    seq, signature = filing.file_published(
        couch, firewall.signer, action=action, street=STREET, community=C1, actor=snapshots.ACTOR, target=target,
        content_hash=publication["hash"], at=dt.datetime.fromisoformat(publication["published_at"]))
    return {**publication, "filed_seq": seq, "signature": signature}


def _publication(kind: str, at: str) -> dict[str, Any]:
    return _figures("2026-10", 7) | {"published_at": at} if kind == "figures_snapshot" else _result(at)


def _signed(firewall: Firewall, publication: dict[str, Any]) -> bool:
    if publication["type"] == "figures_snapshot":
        return snapshots.signed(firewall.signer.key.public_key(), publication)
    return filing.result_signed(firewall.signer.key.public_key(), C1, publication["matter"], publication["filed_seq"],
                                deliberation.result_hash(publication), publication["signature"])


@pytest.mark.parametrize("kind", ["figures_snapshot", "matter_result"])
def test_a_publication_whose_entry_a_fork_refiled_names_it_where_it_is_now(couch: Couch, firewall: Firewall,
                                                                           kind: str) -> None:
    """A month's figures (a vote's result) filed as entry 1 while another node took entry 1 too (and won): the minute
    sweep refiles the publication's entry at the head and the publication follows it (its seq and signature), once
    it is stored: before, the fork waits. The entry it names holds its hash, its signature checks, the log
    verifies."""
    publication = _filed(couch, firewall, _publication(kind, dt.datetime.now(dt.UTC).isoformat()))
    _as_a_cluster_writes(couch, [_entry_elsewhere(couch, 1, "入户走访")])
    repair = _minute_part(couch, firewall, "filing-log forks refiled")
    repair()  # the publication is not stored yet: its process is between filing and storing it
    assert filing.forked_communities(couch) == [C1]
    couch.main.save(publication)
    repair()
    stored = couch.main.get(publication["_id"])
    assert stored["filed_seq"] == 2, stored
    entry = couch.main.get(filing.entry_id(C1, 2))
    assert (entry["purpose"], entry["refiled"]["seq"]) == (f"sha256:{stored['hash']}", 1)
    assert _signed(firewall, stored)
    assert filing.forked_communities(couch) == [] and filing.verify(couch, firewall.signer, C1).ok


@pytest.mark.parametrize("kind", ["figures_snapshot", "matter_result"])
def test_a_publication_published_twice_on_a_cluster_stands_once_the_other_recorded_as_a_duplicate(
        couch: Couch, firewall: Firewall, kind: str) -> None:
    """Two processes claimed one month's version (or closed one vote) on two nodes and both published it (two
    revisions, two entries): the first filed stands, the other is recorded on it as a duplicate (its entry pointed
    at, its signature kept), never a correction; the log verifies; run again, nothing changes."""
    make = (lambda at: _figures("2026-09", 5) | {"published_at": at}) if kind == "figures_snapshot" else _result
    first = _filed(couch, firewall, make(dt.datetime.now(dt.UTC).isoformat()))
    second = _filed(couch, firewall, make(dt.datetime.now(dt.UTC).isoformat()))
    _as_a_cluster_writes(couch, [{**second, "_rev": "2-" + "f" * 32}, {**first, "_rev": "2-" + "0" * 32}])
    assert couch.main.get(first["_id"])["filed_seq"] == second["filed_seq"]  # CouchDB's winner: the later one
    resolve = _minute_part(couch, firewall, "publications filed twice")
    resolve()
    stood = couch.main.get(first["_id"], conflicts="true")
    assert "_conflicts" not in stood and stood["filed_seq"] == first["filed_seq"] == 1
    assert stood["duplicates"] == [{k: second[k] for k in ("filed_seq", "hash", "signature")}]
    assert "corrects" not in stood
    action, target = (filing.FIGURES_PUBLISHED, first["_id"]) if kind == "figures_snapshot" \
        else (filing.RESULT_PUBLISHED, first["matter"])
    assert filing.published_signed(firewall.signer.key.public_key(), action, C1, target, 2, second["hash"],
                                   stood["duplicates"][0]["signature"])
    resolve()
    assert couch.main.get(first["_id"])["_rev"] == stood["_rev"] and filing.verify(couch, firewall.signer, C1).ok


def _transfer(n: int, account: str, to: str, minutes: int, seconds_ago: int) -> dict[str, Any]:
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds_ago)).isoformat()
    return {"_id": f"transfer:claim:claim:scale-{n}", "type": "transfer", "street": STREET, "community": C1,
            "ledger": "hours", "from_account": account, "to_account": to, "amount": minutes, "kind": "confirmation",
            "created_by": to, "created_at": at, "seq": 1}


def _lock_taken_on_two_nodes(couch: Couch, account: str, sides: list[dict[str, Any]]) -> None:
    lock = {"_id": ledger_rules.ledger_lock_id(account), "type": "ledger_lock", "account": account, "seq": 1,
            "codes_from": 0, "codes_used": [], VERSION_FIELD: 2}  # as stored now: no secret (code_secret)
    _as_a_cluster_writes(couch, [{**lock, **side, "_rev": f"1-{n:032d}"} for n, side in enumerate(sides)],
                         accounts=True)


def test_two_transfers_out_of_one_account_at_once_on_a_cluster_the_later_past_the_floor_is_reversed(
        couch: Couch, firewall: Firewall) -> None:
    """Two confirmations out of one resident's hours took the ledger lock at once on two nodes: 6 h and 6 h, past
    the 10-hour floor together. One process stopped before writing its transfer: the sweep writes it (nothing
    confirmed is lost), reverses the later one (by time, then id) with its reason, files the reversal, and makes the
    lock one with both codes spent. The hours still sum to zero. A fork within the floor reverses nothing."""
    resident, other = "resident:c1-g1-h001-1", "resident:c1-g1-h002-1"
    earlier = _transfer(1, resident, "user:zhiyuan01a", 360, 20)
    later = _transfer(2, resident, "user:wangge01", 360, 10)
    couch.main.save(dict(earlier))  # the later one's process stopped after taking the lock
    _lock_taken_on_two_nodes(couch, resident, [{"last": earlier, "codes_used": ["1"]},
                                              {"last": later, "codes_used": ["2"]}])
    small = [_transfer(3, other, "user:zhiyuan01a", 60, 20), _transfer(4, other, "user:wangge01", 60, 10)]
    _lock_taken_on_two_nodes(couch, other, [{"last": small[0]}, {"last": small[1]}])
    resolve = _minute_part(couch, firewall, "ledger locks forked")
    resolve()
    reversal = couch.main.get(ledger_rules.reversal_id(later["_id"]))
    assert (reversal["reverses"], reversal["amount"], reversal["reason"]) == (
        later["_id"], 360, ledger_rules.FLOOR_REVERSAL_REASON)
    assert get_or_none(couch.main, ledger_rules.reversal_id(earlier["_id"])) is None
    assert timebank.balance(couch, C1, "hours", resident) == -360
    assert timebank.balance(couch, C1, "hours", other) == -120  # both written, nothing reversed
    assert sum(timebank.balances(couch, C1, "hours").values()) == 0
    lock = couch.accounts.get(ledger_rules.ledger_lock_id(resident), conflicts="true")
    assert "_conflicts" not in lock and "_conflicts" not in couch.accounts.get(
        ledger_rules.ledger_lock_id(other), conflicts="true")
    assert ledger_rules.open_code_numbers(lock)[:2] == [0, 3]  # the codes either side spent stay spent
    filed = [e for e in filing.iter_entries(couch, C1) if e["action"] == "ledger_reversal"]
    assert [(e["actor"], e["target"]) for e in filed] == [(timebank.SYSTEM, later["_id"])]
    resolve()
    assert len([e for e in filing.iter_entries(couch, C1) if e["action"] == "ledger_reversal"]) == 1


def test_an_offline_report_filed_by_two_processes_is_one_opening_in_the_audit_report(couch: Couch,
                                                                                     firewall: Firewall) -> None:
    """Two processes both claimed one offline report (their claims accepted on two nodes) and both filed it: two
    entries naming one report. The audit report counts one opening and says one was filed again."""
    now = dt.datetime.now(dt.UTC)
    report = _report(1, now)
    for _ in range(2):
        filing.append(couch, firewall.signer, street=STREET, community=C1, actor=report["created_by"],
                      action="open_offline", target=report["resident"], fields=report["fields"],
                      purpose=report["purpose"], device=report["phone_key"], at=dt.datetime.fromisoformat(report["at"]),
                      report=report["_id"])
    built = audit_report.build(C1, list(filing.iter_entries(couch, C1)), {}, {}, now.date() - dt.timedelta(days=1),
                               now.date() + dt.timedelta(days=1), dt.UTC)
    assert (built.entries, built.reports_filed_again) == (1, 1)
    assert built.actors[report["created_by"]].opens == 1
    assert "filed again by a second process" in audit_report.render_text(built)


def _points(n: str, account: str, to: str, amount: int, at: str, kind: str = "redemption") -> dict[str, Any]:
    return {"_id": n, "type": "transfer", "street": STREET, "community": C1, "ledger": "points",
            "from_account": account, "to_account": to, "amount": amount, "kind": kind, "created_by": "user:system",
            "created_at": at}


def _voucher(slot: int, holder: str, transfer: str, at: str) -> dict[str, Any]:
    return {"_id": f"voucher:scale:{slot:05d}", "type": "voucher", "street": STREET, "community": C1,
            "reward": "reward:scale", "organisation": "organisation:scale", "holder": holder, "points": 30,
            "transfer": transfer, "code": "signed", "created_by": holder, "created_at": at}


def test_a_voucher_taken_twice_on_a_cluster_is_paid_by_its_holder_alone(couch: Couch, firewall: Firewall) -> None:
    """Two residents took voucher slot 1 at once on two nodes. Before vouchers named their debits (an account's next
    entry): CouchDB's winner keeps the slot and the other's 30 points are refunded (filed). Now each also wrote the
    slot's one debit (`points.spend_id`), and CouchDB picked that debit's winner apart from the voucher's: the debit
    that stands is the holder's, nobody else is charged. Points still sum to zero; run again, nothing more."""
    at = [(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=s)).isoformat() for s in (30, 20, 10)]
    a, b, org = "resident:c1-g1-h001-1", "resident:c1-g1-h002-1", "organisation:scale"
    for account in (a, b):
        couch.main.save(_points(f"transfer:mint:scale-{account}", C1, account, 100, at[0], kind="mint"))
    paid_a, paid_b = (_points(f"transfer:redemption:{x}:2", x, org, 30, at[1]) for x in (a, b))  # older ids
    bulk_save(couch.main, [paid_a, paid_b])
    _as_a_cluster_writes(couch, [{**_voucher(1, a, paid_a["_id"], at[1]), "_rev": "1-" + "f" * 32},
                                 {**_voucher(1, b, paid_b["_id"], at[1]), "_rev": "1-" + "0" * 32}])
    debit = points.spend_id("voucher:scale:00002")
    _as_a_cluster_writes(couch, [{**_voucher(2, a, debit, at[2]), "_rev": "1-" + "f" * 32},
                                 {**_voucher(2, b, debit, at[2]), "_rev": "1-" + "0" * 32}])
    _as_a_cluster_writes(couch, [{**_points(debit, a, org, 30, at[2]), "_rev": "1-" + "0" * 32},
                                 {**_points(debit, b, org, 30, at[2]), "_rev": "1-" + "f" * 32}])
    assert timebank.balance(couch, C1, "points", b) == 40  # charged by the debit CouchDB picked, for a's voucher
    resolve = _minute_part(couch, firewall, "vouchers taken twice")
    resolve()
    for slot in ("voucher:scale:00001", "voucher:scale:00002"):
        voucher = couch.main.get(slot, conflicts="true")
        assert voucher["holder"] == a and "_conflicts" not in voucher
    stands = couch.main.get(debit, conflicts="true")
    assert stands["from_account"] == a and "_conflicts" not in stands
    assert timebank.balance(couch, C1, "points", b) == 100  # slot 1 refunded, slot 2 never charged
    assert timebank.balance(couch, C1, "points", a) == 40  # both slots
    assert sum(timebank.balances(couch, C1, "points").values()) == 0
    refunds = [e["target"] for e in filing.iter_entries(couch, C1) if e["action"] == "ledger_reversal"]
    assert refunds == [paid_b["_id"]]
    resolve()
    assert [e["target"] for e in filing.iter_entries(couch, C1) if e["action"] == "ledger_reversal"] == refunds
    assert couch.main.get(debit)["from_account"] == a
