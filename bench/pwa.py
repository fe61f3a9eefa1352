"""The grid worker's offline app in headless Chromium, CPU slowed 4x (pages and service worker alike):
first load, a cold replica of 10,000 documents, offline renders, and the JavaScript and CSS shipped.

    .venv/bin/python bench/pwa.py [--households 1000] [--replica 10000] [--runs 5]

Starts its own pouchdb-server and `linli serve` in a temporary folder on a street with one grid of `--households`
households (the demo, sealed as the server stores it) and visits in that grid, so that its grid worker's replica
holds about `--replica` documents (the contact-key grants their phone receives included). Prints one JSON line:
(a) first load of a new phone: the login form submitted → the grid page interactive (DOMContentLoaded), the service
    worker controlling it and the phone's key registered (the server's answer to POST /phone-keys, which issues a
    key grant per resident, back on the phone); also before the key (`first_load_before_key_ms`). Each phone is
    a new grid worker's of the same grid (a user's grants reach all their phones, so each phone of one user would
    hold more), so each holds the same replica;
(b) cold replica: each such phone's login → its first sync finished (the time the service worker stamps), against
    the reference: PouchDB (same adapter) in a page of the same slowed browser replicating the same documents
    straight from pouchdb-server, no gateway, as it comes (its default of 100 documents a batch); and beside it,
    in the same turn, the same with the phone's own batch size (pwa/sync/replica.js PULL_BATCH), to show how much
    of the difference that option makes; and of the phone's time, the part from its first pull's first request to
    the sync done (the replication itself, without login, page, service worker and shell; `_changes` requests pass
    through a Playwright route to be stamped). One warm-up phone and reference replication, then `--runs` of each
    interleaved (bench/measure.py): medians and spread; every replica must hold what the reference holds;
(c) offline renders by the service worker from the last phone's replica, until the page is interactive: the grid
    page (`/grids/<id>`: the first 50 of the households and "load more"; also until its answer ended), the rows
    search-as-you-type asks for (one building's households, fetched and swapped in), the rows of a search by ID card
    number (offline: the number of each resident of the grid the phone holds a contact grant for is opened and
    compared, as no blind index reaches a phone; its first run apart, when every grant is unwrapped), a household
    record with its residents; against the same requests answered online by the server, interleaved (medians of
    `--runs` after a warm-up of each). And the grid page offline first after the first sync, after syncs that
    brought nothing, and after the worker was stopped;
(d) JavaScript and CSS shipped: gzip sizes of what the pages and the service worker load (goal: under 300 KB),
    and of all the service worker keeps for offline use (templates, schema and icons too).
The slowdown is bench/throttle.py's (DevTools' own cannot reach a service worker); `measured_slowdown_*` is a fixed
piece of JavaScript in the page and in the worker against the same in an unslowed page, same run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import httpx2
from playwright.sync_api import Browser, BrowserContext, Page, Route, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.measure import expect, interleave, load_average, ratio, spread  # noqa: E402
from bench.stack import embedded_stack  # noqa: E402
from bench.throttle import CPU_SLOWDOWN, RendererThrottle, spin_ms  # noqa: E402
from server.domain.declaration import Role, validate  # noqa: E402
from server.security import accounts  # noqa: E402
from server.security.accounts import user_id  # noqa: E402
from server.security.firewall import Firewall  # noqa: E402
from server.services import demo  # noqa: E402
from server.store.couch import Couch, bulk_save, docs_of_type  # noqa: E402
from server.store.embedded_couch import free_port  # noqa: E402
from tests.browser import launch  # noqa: E402
from tests.sync_harness import serve, stop, visible_ids  # noqa: E402

PASSWORD = "bench-password"
PULL_BATCH = int(re.search(r"const PULL_BATCH = (\d+);", (ROOT / "pwa/sync/replica.js").read_text()).group(1))
WORKER = "wangge01"  # the grid worker of the demo's first grid
PHONE = {"width": 390, "height": 844}
STEP_TIMEOUT_MS = 600_000
TEMPLATES = ROOT / "server" / "templates"
GZIP_LEVEL = 6  # what a compressing reverse proxy typically sends; `linli serve` itself does not compress
# When the service worker takes over a page: the end of a first load; and when a form was submitted, kept across the
# navigation it starts (every page gets this before its scripts).
PAGE_MARKS = """navigator.serviceWorker?.addEventListener("controllerchange",
  () => { window.linliControlledAt = Date.now(); });
addEventListener("submit", () => sessionStorage.setItem("linliSubmittedAt", Date.now()), true);"""
SYNC_BAR = "document.querySelector('#sync-state')"
SYNCED_OR_FAILED = f"{SYNC_BAR}?.dataset.lastSynced || {SYNC_BAR}?.classList.contains('sync-error')"
# One request of search-as-you-type as htmx makes it, swapped into the list; whether the service worker answered.
SEARCH = """async (url) => {
  const started = performance.now();
  const answer = await fetch(url, {headers: {"HX-Request": "true"}});
  document.querySelector("#households").innerHTML = await answer.text();
  const rows = document.querySelectorAll("#households a.row").length;
  return [performance.now() - started, rows, answer.headers.get("X-Linli-Offline")];
}"""
# The navigation just made: until the answer ended, until the page was interactive (ms).
NAVIGATION = """() => { const n = performance.getEntriesByType("navigation")[0];
  return [n.responseEnd - n.startTime, n.domContentLoadedEventEnd - n.startTime]; }"""
REFERENCE_REPLICATION = """async ([url, options]) => {
  const local = new PouchDB("reference", {adapter: "indexeddb"});
  const started = performance.now();
  const result = await local.replicate.from(url, options);
  return [performance.now() - started, result.docs_written, (await local.info()).doc_count];
}"""


def median(values: list[float]) -> float:
    return round(statistics.median(values))


# ---------------------------------------------------------------- the street

def visits(households: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """`count` routine visits by the grid worker, spread over the households."""
    at = "2026-11-20T09:00:00+08:00"
    docs = []
    for n in range(count):
        h = households[n % len(households)]
        doc = {"_id": f"visit:{h['_id'].split(':')[1]}-{n:05d}", "type": "visit",
               **{k: h[k] for k in ("street", "community", "grid")}, "household": h["_id"], "resident": h["head"],
               "kind": "routine", "visited_at": at, "notes": "上门走访，身体状况良好", "created_by": user_id(WORKER),
               "created_at": at}
        validate(doc)
        docs.append(doc)
    return docs


def load_street(couch: Couch, firewall: Firewall, households: int, replica: int) -> None:
    """The demo's one grid, and visits enough for its worker's replica to hold about `replica` documents once the
    phone has its grants (one contact key per resident)."""
    demo.load(couch, firewall, size=demo.DemoSize(1, 1, households), password_hash=accounts.hash_password(PASSWORD))
    visible = visible_ids(couch, WORKER)
    grants = sum(1 for i in visible if i.startswith("resident:"))
    homes = docs_of_type(couch.main, "household")
    extra = visits(homes, max(0, replica - len(visible) - grants))
    for start in range(0, len(extra), 1000):
        failed = [r for r in bulk_save(couch.main, firewall.seal_for_storage(extra[start:start + 1000])) if r.error]
        assert not failed, failed[:3]


def reference_database(couch: Couch, username: str) -> tuple[str, int]:
    """A database holding exactly what a grid worker's phone replicated (its grants included), for PouchDB to
    replicate straight from pouchdb-server."""
    rows = couch.main.all(keys=sorted(visible_ids(couch, username)), attachments="true", as_list=True)
    reference = couch.server.create(couch.main.name + "_reference")
    # Attachments inline (a photo visit's photo): a stub would name an attachment the new database lacks.
    docs = [{k: v for k, v in row["doc"].items() if k != "_rev"} for row in rows if row.get("doc")]
    for start in range(0, len(docs), 1000):
        assert not [r for r in bulk_save(reference, docs[start:start + 1000]) if r.error]
    return reference.name, len(docs)


# ---------------------------------------------------------------- the phone

def login(page: Page, url: str, username: str) -> int:
    """Open the login page, sign a grid worker in; the page's clock (ms) when the form was submitted (the page's own
    event: the time Playwright takes to click a slowed page is not the phone's)."""
    page.goto(url + "login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url("**/grids/**")
    return int(page.evaluate("sessionStorage.getItem('linliSubmittedAt')"))


def first_load(browser: Browser, url: str,
               username: str) -> tuple[BrowserContext, Page, int, float, float, float]:
    """A new phone signs in and syncs: (its context, page, when the form was sent, ms until the grid page is
    interactive and the service worker controls it, ms until its key is registered too: the server's answer to
    POST /phone-keys, which issues a key grant per resident, has reached the phone; and when (the page's clock) its
    first pull asked for its first changes)."""
    context = browser.new_context(viewport=PHONE)
    context.add_init_script(PAGE_MARKS)
    registered: list[float] = []
    pulls: list[float] = []

    def stamp(route: Route) -> None:
        answer = route.fetch(timeout=STEP_TIMEOUT_MS)
        registered.append(time.time() * 1000)  # the same wall clock as the page's Date.now()
        route.fulfill(response=answer)

    def first_pull(route: Route) -> None:
        pulls.append(time.time() * 1000)
        route.continue_()

    context.route("**/phone-keys", stamp)
    context.route("**/sync/main/_changes*", first_pull)
    page = context.new_page()
    started = login(page, url, username)
    page.wait_for_function("() => window.linliControlledAt", timeout=STEP_TIMEOUT_MS)
    ready = page.evaluate("""() => Math.max(window.linliControlledAt,
        performance.timeOrigin + performance.getEntriesByType("navigation")[0].domContentLoadedEventEnd)""")
    page.wait_for_function(f"() => {SYNCED_OR_FAILED}", timeout=STEP_TIMEOUT_MS, polling=250)
    expect(f"phone keys {username} registered", len(registered), 1)
    return context, page, started, ready - started, max(ready, registered[0]) - started, pulls[0]


def navigate(page: Page, url: str, offline: bool) -> tuple[float, float]:
    """Open `url`; (ms until the answer ended, ms until the page was interactive). Waits for the sync the page
    asks for when it opens, so that the next measurement does not share the worker with it."""
    before = page.evaluate(f"{SYNC_BAR}?.dataset.lastSynced")
    answer = page.goto(url)
    assert answer is not None and answer.ok, url
    assert (answer.headers.get("x-linli-offline") == "1") == offline, (url, offline, answer.headers)
    timing = page.evaluate(NAVIGATION)
    if offline:
        page.wait_for_function(f"() => {SYNC_BAR}.classList.contains('sync-offline')")
    else:
        page.wait_for_function(f"(before) => {SYNC_BAR}.dataset.lastSynced !== before", arg=before,
                               timeout=120_000)
    return timing[0], timing[1]


def search(page: Page, url: str, offline: bool) -> tuple[float, int]:
    ms, rows, answered_by = page.evaluate(SEARCH, url)
    assert (answered_by == "1") == offline, (url, offline)
    return ms, rows


def render(page: Page, pages: dict[str, str], offline: bool) -> dict[str, float]:
    """One visit of the grid page, the search rows, a number search and the household page, online or offline
    (ms each; the grid page also until its answer ended)."""
    page.context.set_offline(offline)
    grid_answer, grid = navigate(page, pages["grid"], offline)
    search_ms, rows = search(page, pages["search"], offline)
    if rows < 2:
        raise RuntimeError(f"the search found {rows} households")
    number_ms, found = search(page, pages["number"], offline)
    expect("households the number search found", found, 1)
    household = navigate(page, pages["household"], offline)[1]
    return {"grid": grid, "grid_answer": grid_answer, "search": search_ms, "number_search": number_ms,
            "household": household, "search_rows": rows}


def stop_worker(context: BrowserContext, page: Page) -> None:
    """Stop the service worker as the browser does when it idles: its caches (documents, templates) go with it."""
    cdp = context.new_cdp_session(page)  # detached at once: a session left open can undo the offline emulation
    cdp.send("ServiceWorker.enable")
    cdp.send("ServiceWorker.stopAllWorkers")
    cdp.detach()


# ---------------------------------------------------------------- what is shipped

def shipped(url: str) -> dict[str, int]:
    """Every script and stylesheet the pages load, and the service worker with all it imports: gzip bytes each."""
    pending = {m for path in TEMPLATES.glob("*.html")
               for m in re.findall(r'(?:src|href)="(/[^"]+\.(?:js|css))"', path.read_text())} | {"/sw.js"}
    sizes: dict[str, int] = {}
    with httpx2.Client(base_url=url) as http:
        while pending:
            path = pending.pop()
            answer = http.get(path)
            answer.raise_for_status()
            sizes[path] = len(gzip.compress(answer.content, compresslevel=GZIP_LEVEL))
            if path.endswith(".js"):
                for imported in re.findall(r'^\s*import\s+(?:[^"\';]*?\s+from\s+)?["\']([^"\']+)["\']',
                                           answer.text, re.MULTILINE):
                    target = urljoin(path, imported)
                    if target not in sizes:
                        pending.add(target)
    return sizes


def shell_bytes(url: str) -> int:
    """Gzip bytes of the rest of what the service worker keeps for offline use: templates, schema, icons."""
    with httpx2.Client(base_url=url) as http:
        shell = http.get("/pwa/shell.json").json()
        paths = [*shell["files"], *(f"/pwa/templates/{name}" for name in shell["templates"]), "/schema.json"]
        return sum(len(gzip.compress(http.get(path).raise_for_status().content, compresslevel=GZIP_LEVEL))
                   for path in paths if not path.endswith((".js", ".css")))


# ---------------------------------------------------------------- the run

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--households", type=int, default=1000, help="households in the grid")
    parser.add_argument("--replica", type=int, default=10_000, help="documents in the grid worker's replica")
    parser.add_argument("--runs", type=int, default=5, help="runs of each cheap measurement (medians)")
    args = parser.parse_args()
    with embedded_stack() as (settings, couch, couch_server):
        firewall = Firewall.open(settings, couch)
        load_street(couch, firewall, args.households, args.replica)
        homes = docs_of_type(couch.main, "household")
        grid = homes[0]["grid"]
        largest = max(homes, key=lambda h: h["member_count"])
        building = homes[0]["address"].split("栋")[0] + "栋"  # one building's households
        residents = [d for d in demo.generate(size=demo.DemoSize(1, 1, args.households)) if d["type"] == "resident"]
        served = serve(couch_server.url, settings, free_port(), patience=STEP_TIMEOUT_MS / 1000)  # a loaded machine
        pages = {"grid": f"{served.url}grids/{grid}", "household": f"{served.url}households/{largest['_id']}",
                 "search": f"{served.url}grids/{grid}?q={quote(building)}",
                 "number": f"{served.url}grids/{grid}?q={residents[-1]['id_card']}"}
        try:
            with sync_playwright() as playwright:
                browser = launch(playwright)
                try:
                    street = {"grid_households": len(homes), "grid_residents": len(residents),
                              "household_residents": largest["member_count"]}
                    result = measure(browser, served.url, couch, couch_server.url, pages, args.runs, street)
                finally:
                    browser.close()
        finally:
            stop(served)
    print(json.dumps(result))


def grid_workers(couch: Couch, count: int) -> list[str]:
    """`count` new grid workers of the demo's grid, one for each phone of (a) and (b): each registers a key and
    receives the same grants (a user's grants reach all their phones; the demo's own worker holds more)."""
    own = couch.accounts.get(user_id(WORKER))
    workers = [accounts.make_user(f"bench{n:02d}", f"网格员{n}", [Role.GRID_WORKER], own["street"],
                                  own["password_hash"], communities=own["communities"], grids=own["grids"])
               for n in range(count)]
    assert not [r for r in bulk_save(couch.accounts, workers) if r.error]
    return [u["username"] for u in workers]


def phone(browser: Browser, url: str, username: str) -> tuple[BrowserContext, Page, dict[str, float]]:
    """(a) and (b) for one new phone: its context and page, and its figures: the first load before and with its
    key registered (ms), the seconds from its login to its first sync finished, and the documents it then holds."""
    context, page, started, before_key, with_key, first_pull = first_load(browser, url, username)
    synced, bar = page.evaluate(f"[{SYNC_BAR}.dataset.lastSynced, {SYNC_BAR}.innerText]")
    if not synced:
        raise RuntimeError(f"the first sync failed: {bar}")
    synced_ms = page.evaluate("(iso) => Date.parse(iso)", synced)
    cold_s, pulling_s = (synced_ms - started) / 1000, (synced_ms - first_pull) / 1000
    replica_docs = context.service_workers[0].evaluate(
        f"async () => (await new PouchDB('linli-{user_id(username)}', {{adapter: 'indexeddb'}}).info()).doc_count")
    return context, page, {"before_key": before_key, "with_key": with_key, "cold_s": cold_s, "pulling_s": pulling_s,
                           "docs": replica_docs}


def direct_replication_seconds(browser: Browser, url: str, database_url: str, docs: int,
                               options: dict[str, Any]) -> float:
    """The reference of (b): PouchDB in a new page replicating straight from pouchdb-server (seconds), with these
    replication options."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(database_url.rsplit("/", 1)[0] + "/")  # the database's origin: no CORS in the way
    page.add_script_tag(url=url + "vendor/pouchdb.min.js")
    page.add_script_tag(url=url + "vendor/pouchdb.indexeddb.min.js")
    ms, written, count = page.evaluate(REFERENCE_REPLICATION, [database_url, options])
    expect("documents the reference replicated", written, docs)
    expect("documents in the reference's replica", count, docs)
    context.close()
    return ms / 1000


def measure(browser: Browser, url: str, couch: Couch, couch_url: str, pages: dict[str, str], runs: int,
            street: dict[str, int]) -> dict[str, Any]:
    context = browser.new_context()
    free_spin = spin_ms(context.new_page())
    context.close()
    users = grid_workers(couch, runs + 1)  # a warm-up phone, then `runs` (the last kept for (c))
    phones: list[dict[str, float]] = []
    kept: list[Any] = []  # the last phone's context and page, for (c)
    reference: dict[str, Any] = {}
    with RendererThrottle(CPU_SLOWDOWN):

        def new_phone() -> float:
            context, page, figures = phone(browser, url, users[len(phones)])
            phones.append(figures)
            if len(phones) < len(users):
                context.close()
            else:
                kept.extend((context, page))
            return figures["cold_s"]

        def direct() -> float:
            """PouchDB as it comes (the reference); then, or first on every other call, PouchDB asking for as many
            documents at a time as the phone's pulls do (kept apart: how much of the difference is that option)."""
            if not reference:  # what a phone's replica holds, once one has synced (its grants included)
                reference["db"], reference["docs"] = reference_database(couch, users[0])
                reference["batched"] = []
            def replicated(options: dict[str, Any]) -> float:
                return direct_replication_seconds(browser, url, couch_url + reference["db"], reference["docs"],
                                                  options)

            batched_first = len(reference["batched"]) % 2 == 1
            if batched_first:
                reference["batched"].append(replicated({"batch_size": PULL_BATCH}))
            seconds = replicated({})
            if not batched_first:
                reference["batched"].append(replicated({"batch_size": PULL_BATCH}))
            return seconds

        cold, cold_reference = interleave(new_phone, direct, rounds=runs)
        for n, figures in enumerate(phones):
            expect(f"documents in phone {n}'s replica", int(figures["docs"]), reference["docs"])
        measured = phones[1:]  # the first was the warm-up
        context, page = kept
        worker_spin, page_spin = spin_ms(context.service_workers[0]), spin_ms(page)
        # (c): offline first, its first number search (every grant unwrapped), then offline and online interleaved,
        # offline again, then with the worker stopped.
        context.set_offline(True)
        first_grid = navigate(page, pages["grid"], offline=True)[1]
        number_search_first, _ = search(page, pages["number"], offline=True)
        offline_runs, online_runs = interleave(lambda: render(page, pages, offline=True),
                                               lambda: render(page, pages, offline=False), rounds=runs)
        offline = {name: median([r[name] for r in offline_runs]) for name in offline_runs[0]}
        online = {name: median([r[name] for r in online_runs]) for name in online_runs[0]}
        context.set_offline(True)
        resynced_grid = navigate(page, pages["grid"], offline=True)[1]
        stop_worker(context, page)
        restarted_grid = navigate(page, pages["grid"], offline=True)[1]
        context.close()
    sizes = shipped(url)
    return {
        "bench": "pwa",
        **street,
        "cpu_slowdown": CPU_SLOWDOWN,
        "measured_slowdown_page": round(page_spin / free_spin, 1),
        "measured_slowdown_worker": round(worker_spin / free_spin, 1),
        "phones": len(measured),
        "first_load_ms": spread([f["with_key"] for f in measured], 0),
        "first_load_before_key_ms": spread([f["before_key"] for f in measured], 0),
        "replica_docs": reference["docs"],
        "cold_replica_seconds": spread(cold, 2),
        "reference_direct_seconds": spread(cold_reference, 2),
        "cold_replica_ratio": ratio(cold, cold_reference),
        # Of the cold replica, from the first pull's first request to the sync done: the replication itself, without
        # the login, the page, the service worker's start and the shell before it.
        "first_pull_to_synced_seconds": spread([f["pulling_s"] for f in measured], 2),
        "first_pull_to_synced_ratio": ratio([f["pulling_s"] for f in measured], cold_reference),
        "reference_batched_seconds": spread(reference["batched"][1:], 2),  # the first: the warm-up's
        "reference_batch_size": PULL_BATCH,
        "cold_replica_ratio_to_batched": ratio(cold, reference["batched"][1:]),
        "offline_grid_ms": offline["grid"],
        "online_grid_ms": online["grid"],
        "grid_ratio": round(offline["grid"] / online["grid"], 2),
        "offline_grid_answer_ms": offline["grid_answer"],
        "online_grid_answer_ms": online["grid_answer"],
        "offline_grid_first_ms": round(first_grid),
        "offline_grid_after_resync_ms": round(resynced_grid),
        "offline_grid_worker_restart_ms": round(restarted_grid),
        "search_rows": offline["search_rows"],
        "offline_search_ms": offline["search"],
        "online_search_ms": online["search"],
        "search_ratio": round(offline["search"] / online["search"], 2),
        "offline_number_search_first_ms": round(number_search_first),  # the worker's first: keys unwrapped
        "offline_number_search_ms": offline["number_search"],
        "online_number_search_ms": online["number_search"],
        "offline_household_ms": offline["household"],
        "online_household_ms": online["household"],
        "household_ratio": round(offline["household"] / online["household"], 2),
        "shipped_js_css_kb_gzip": round(sum(sizes.values()) / 1024, 1),
        "shipped_goal_kb": 300,
        "offline_shell_kb_gzip": round((sum(sizes.values()) + shell_bytes(url)) / 1024, 1),
        "load_average": load_average(),
        "shipped_kb_gzip_by_file": {path: round(size / 1024, 1) for path, size in sorted(sizes.items())},
    }


if __name__ == "__main__":
    main()
