"""Scale-out (issue 24): two `linli serve` processes on one CouchDB, each running the minute sweep every second,
phones (Node + PouchDB) syncing through each, one process killed with SIGKILL mid-sweep and restarted. Nothing is
filed, escalated or notified twice, nothing a phone sent is lost, the filing log verifies. Then the conflict rules
of ARCHITECTURE.md section 6 that have no test elsewhere, with revisions written as a cluster leaves them."""

from __future__ import annotations

import datetime as dt
import json
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from server.security import filing
from server.services import alerts, timebank
from server.store.config import Settings
from server.store.couch import Couch, bulk_save, docs_of_type, get_or_none
from server.store.embedded_couch import EmbeddedCouch, free_port

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
        time.sleep(3)  # a few more sweeps of both: they must find nothing left to do twice
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

def _as_a_cluster_writes(couch: Couch, docs: list[dict[str, Any]]) -> None:
    _, results = couch.main.resource._request_response(
        "POST", "_bulk_docs", data=json.dumps({"docs": docs, "new_edits": False}).encode(),
        headers={"Content-Type": "application/json"})
    assert not [r for r in results if "error" in r]


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
