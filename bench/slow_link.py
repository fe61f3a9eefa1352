"""A grid worker's phone on a weak signal (issue 22 item 5): bytes and time of a first sync, of a sync after one
change, and of sending a visit with a camera photo, on an emulated 400 kbit/s link with 400 ms round trips; and of a
field-only edit of that visit pushed again (item 4), with the photo sent as a stub and, its reference, whole.

    .venv/bin/python bench/slow_link.py [--households 300] [--runs 3]

Starts its own pouchdb-server and `linli serve` on a street with one grid of `--households` households (the demo,
sealed as stored), and puts tests/slow_link.py's throttling proxy in front of it: the whole browser, service worker
included, goes through it. Ours: the app as shipped (compressed answers, photos sized on the phone). Reference, same
run, interleaved (ours, reference, ours, ...): the same steps with the proxy asking for uncompressed answers
(`Accept-Encoding: identity`) and the photo sent as taken (the form's file left as chosen). Each phone is a fresh
browser context (its service worker and shell downloaded on the slow link too). The field-only edit is measured on
our phone's visit (the photo sized), pushed by PouchDB from the page through pwa/sync/replica.js's remote with stubs
and without, in turn (which goes first alternates by run). Prints one JSON line: medians and spreads of each, and
ratios ours ÷ reference (lower is better, bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Browser, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stack import embedded_stack  # noqa: E402
from server.security import accounts  # noqa: E402
from server.security.firewall import Firewall  # noqa: E402
from server.services import demo  # noqa: E402
from server.store.couch import build_views, docs_of_type  # noqa: E402
from server.store.embedded_couch import free_port  # noqa: E402
from tests.browser import CHOOSE_CAMERA_PHOTO, PHONE, launch  # noqa: E402
from tests.slow_link import SlowLink  # noqa: E402
from tests.sync_harness import serve, stop  # noqa: E402

PASSWORD = "bench-password"
WORKER = "wangge01"
RATE, ONE_WAY_DELAY = 400_000 / 8, 0.2
NOTES = "慢网走访"
SYNCED = "document.querySelector('#sync-state')?.dataset.lastSynced"
NOTHING_WAITS = ("() => document.querySelector('#sync-state')?.dataset.pending === '0' && "
                 "document.querySelector('#sync-state')?.dataset.syncing === 'no'")
# A replica of one document in the page (PouchDB and replica.js as the service worker loads them, from its shell),
# then that document edited (a field only) and pushed through the gateway, with stubs or not (measured apart).
EDIT_REPLICA = """async ({ id, n }) => {
  const { remoteOptions } = await import("/pwa/sync/replica.js");
  const { csrf_token: csrfToken } = await (await fetch("/pwa/session.json")).json();
  const local = new PouchDB(`bench-edit-${n}`, { adapter: "indexeddb" });
  const remote = new PouchDB(`${location.origin}/sync/main`, remoteOptions({ csrfToken }));
  await local.bulkDocs([await remote.get(id, { revs: true, attachments: true })], { new_edits: false });
  const doc = await local.get(id);
  await local.put({ ...doc, notes: `${doc.notes} ${n}` });
  window.benchEdit = { local, csrfToken };
}"""
PUSH_EDIT = """async ({ id, stubs }) => {
  const { remoteOptions } = await import("/pwa/sync/replica.js");
  const { local, csrfToken } = window.benchEdit;
  const remote = new PouchDB(`${location.origin}/sync/main`, remoteOptions({ csrfToken, stubs }));
  const pushed = await local.replicate.to(remote, { doc_ids: [id] });
  if (pushed.docs_written !== 1 || pushed.doc_write_failures) throw new Error(JSON.stringify(pushed));
}"""


def one_phone(browser: Browser, link: SlowLink, couch: object, household: str, shipped: bool,
              edits: list[dict[str, float]], run: int) -> dict[str, float]:
    """A new phone's first sync, a sync after one change on the server, and a visit with a photo sent; on our
    phone, that visit's field-only edits (pushed with stubs and whole) added to `edits`."""
    link.identity = not shipped
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    figures: dict[str, float] = {}

    def measured(name: str, step: object) -> None:
        before, started = dict(link.sent), time.monotonic()
        step()
        figures[f"{name}_seconds"] = round(time.monotonic() - started, 2)
        figures[f"{name}_bytes"] = sum(link.sent.values()) - sum(before.values())

    page.goto(link.url + "login")
    page.fill("#username", WORKER)
    page.fill("#password", PASSWORD)

    def first_sync() -> None:
        page.click("form[action='/login'] button[type=submit]")
        page.wait_for_function(f"() => {SYNCED}", timeout=900_000)
        page.wait_for_function(NOTHING_WAITS, timeout=900_000)

    measured("first_sync", first_sync)
    home = couch.main.get(household)
    couch.main.save({**home, "room": str(int(time.time() * 1000) % 1000)})

    def incremental() -> None:
        before = page.get_attribute("#sync-state", "data-last-synced")
        page.click("#sync-state button")
        page.wait_for_function(f"(before) => {SYNCED} !== before", arg=before, timeout=300_000)
        page.wait_for_function(NOTHING_WAITS, timeout=300_000)

    measured("incremental_sync", incremental)
    context.set_offline(True)
    page.goto(link.url + f"households/{household}/visits/new")
    page.fill("textarea[name=notes]", NOTES)
    figures["photo_as_taken_bytes"] = page.evaluate(CHOOSE_CAMERA_PHOTO, {"seed": 1, "fitted": shipped})
    if shipped:
        page.wait_for_selector("input[name=photo][data-photos=fitted]")
    page.click("main form.stack button[type=submit]")
    page.wait_for_url("**/households/*")

    def photo_visit() -> None:  # until the server has it (struck off "待上传")
        context.set_offline(False)  # the page asks for a sync when the network returns
        page.wait_for_function("() => document.querySelector('#sync-state')?.dataset.pending === '0'",
                               timeout=600_000)

    measured("photo_visit", photo_visit)
    if shipped:
        visit = next(r["id"] for r in couch.main.all(startkey="visit:", endkey="visit:\ufff0", include_docs=True,
                                                     as_list=True) if r["doc"].get("notes") == NOTES)
        edit: dict[str, float] = {}
        page.wait_for_function(NOTHING_WAITS, timeout=300_000)  # the sync that sent the visit is over
        page.add_script_tag(url="/vendor/pouchdb.min.js")
        page.add_script_tag(url="/vendor/pouchdb.indexeddb.min.js")
        for n, stubs in enumerate((True, False) if run % 2 == 0 else (False, True)):
            page.evaluate(EDIT_REPLICA, {"id": visit, "n": n})  # a replica of its own each time
            before, started = dict(link.sent), time.monotonic()
            page.evaluate(PUSH_EDIT, {"id": visit, "stubs": stubs})
            side = "stubs" if stubs else "whole"
            edit[f"{side}_seconds"] = round(time.monotonic() - started, 2)
            edit[f"{side}_bytes"] = sum(link.sent.values()) - sum(before.values())
        edits.append(edit)
        print("field edit", edit, file=sys.stderr, flush=True)
    # Signed out (its key and grants withdrawn), so that the next phone pulls no more than this one did.
    page.click("form[action='/logout'] button")
    page.wait_for_url("**/login", timeout=300_000)
    context.close()
    # ...and its visit deleted: the next phone's first sync would pull its photo (3 MB as taken for the reference).
    for row in couch.main.all(startkey="visit:", endkey="visit:\ufff0", include_docs=True, as_list=True):
        if (row["doc"].get("notes") or "").startswith(NOTES):  # edited above or not
            couch.main.delete(row["doc"])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"ours": [], "reference": []}
    edits: list[dict[str, float]] = []
    with embedded_stack("slow_") as (settings, couch, server):
        firewall = Firewall.open(settings, couch)
        demo.load(couch, firewall, size=demo.DemoSize(1, 1, args.households),
                  password_hash=accounts.hash_password(PASSWORD))
        build_views(couch)
        documents = couch.main.config()["doc_count"]
        household = docs_of_type(couch.main, "household")[0]["_id"]
        served = serve(server.url, settings, free_port())
        try:
            with SlowLink(urlsplit(served.url).port or 80, RATE, ONE_WAY_DELAY).running() as link, \
                    sync_playwright() as p:
                browser = launch(p)
                for run in range(args.runs):
                    for side, shipped in (("ours", True), ("reference", False)):
                        runs[side].append(one_phone(browser, link, couch, household, shipped, edits, run))
                        print(side, runs[side][-1], file=sys.stderr, flush=True)
                browser.close()
        finally:
            stop(served)
    medians = {side: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for side, rs in runs.items()}
    spreads = {side: {k: [min(r[k] for r in rs), max(r[k] for r in rs)] for k in rs[0]} for side, rs in runs.items()}
    ratios = {k: round(medians["ours"][k] / medians["reference"][k], 3) for k in medians["ours"]
              if not k.startswith("photo_as_taken") and medians["reference"][k]}
    edit = {k: statistics.median(e[k] for e in edits) for k in edits[0]}
    field_edit = {"ours_stubs": {k.removeprefix("stubs_"): v for k, v in edit.items() if k.startswith("stubs_")},
                  "reference_whole": {k.removeprefix("whole_"): v for k, v in edit.items() if k.startswith("whole_")},
                  "spread": {k: [min(e[k] for e in edits), max(e[k] for e in edits)] for k in edits[0]},
                  "ratio_bytes": round(edit["stubs_bytes"] / edit["whole_bytes"], 3),
                  "ratio_seconds": round(edit["stubs_seconds"] / edit["whole_seconds"], 3)}
    print(json.dumps({"bench": "slow_link", "households": args.households, "main_documents": documents,
                      "link": {"kbit_per_s": RATE * 8 / 1000, "round_trip_ms": ONE_WAY_DELAY * 2000},
                      "runs": args.runs, "ours": medians["ours"], "reference": medians["reference"],
                      "spread": spreads, "ratio_ours_to_reference": ratios,
                      "reference_is": "the same steps uncompressed, the photo sent as taken",
                      "field_edit_of_a_photo_visit": field_edit,
                      "load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
