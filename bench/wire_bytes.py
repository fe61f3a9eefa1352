"""Bytes on the wire for a grid worker (issue 22 items 1 and 5, the bytes only: no slow link emulated yet): the first
sync of a demo grid, an incremental sync after one change, and the browser code, as sent uncompressed, gzip and
brotli by the web app with its sync gateway (server/web/compression.py, assets.py).

    .venv/bin/python bench/wire_bytes.py [--households 300]

Starts its own pouchdb-server in a temporary folder with one demo grid of `--households` households and its year of
history (sealed as the server stores it), signs in its grid worker and asks what PouchDB asks at a first sync:
`_changes?style=all_docs` from 0, then `_bulk_get?revs=true&attachments=true` in batches of 100 (PouchDB's
batch size); then one household changes and the incremental `_changes` and `_bulk_get`. Each request three times, by
`Accept-Encoding`: identity (today before issue 22), gzip, br. And a photo visit's photo: a 12-megapixel photo as a
camera takes it (4000 x 3000, grain like a sensor's, JPEG at 0.92: about 3 MB) against what the phone stores and
sends after pwa/photos.js sized it, in headless Chromium. Prints one JSON line: bytes and ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from starlette.routing import Mount  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from bench.stack import embedded_stack  # noqa: E402
from server.security import accounts  # noqa: E402
from server.security.firewall import Firewall  # noqa: E402
from server.services import demo  # noqa: E402
from server.store.couch import docs_of_type  # noqa: E402
from server.web import assets  # noqa: E402
from server.web.app import create_app  # noqa: E402
from sync.app import create_sync_app  # noqa: E402

PASSWORD = "bench-password"
WORKER = "wangge01"
CODINGS = ("identity", "gzip", "br")
BATCH = 100


def sent(client: TestClient, method: str, path: str, coding: str, headers: dict[str, str] | None = None,
         content: str | None = None) -> int:
    """Bytes of an answer as sent (before the client decodes them)."""
    with client.stream(method, path, headers={"Accept-Encoding": coding, **(headers or {})},
                       content=content) as answer:
        assert answer.status_code == 200, answer.read()
        return sum(len(chunk) for chunk in answer.iter_raw())


def sync_bytes(client: TestClient, token: str, since: str) -> dict[str, object]:
    """One sync's pull (since `since`), bytes by coding; and its last_seq."""
    totals: dict[str, object] = {}
    for coding in CODINGS:
        size = sent(client, "GET", f"/sync/main/_changes?style=all_docs&since={since}", coding)
        changes = client.get(f"/sync/main/_changes?style=all_docs&since={since}").json()
        docs = [{"id": r["id"], "rev": c["rev"]} for r in changes["results"] for c in r["changes"]]
        total = size
        for start in range(0, len(docs), BATCH):
            size = sent(client, "POST", "/sync/main/_bulk_get?revs=true&attachments=true", coding,
                           content=json.dumps({"docs": docs[start:start + BATCH]}),
                           headers={"Content-Type": "application/json", "X-CSRF-Token": token})
            total += size
        totals[coding] = total
    totals["documents"] = len(docs)
    totals["changes_only"] = {c: sent(client, "GET", f"/sync/main/_changes?style=all_docs&since={since}", c)
                              for c in CODINGS}
    totals["last_seq"] = changes["last_seq"]
    return totals


def photo_bytes() -> dict[str, object]:
    from playwright.sync_api import sync_playwright

    from server.domain.field_rules import photo_fit
    from tests.browser import CAMERA_PHOTO, launch, serve_project

    with serve_project() as url, sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page()
        page.goto(url + "/pwa/README.md")
        figures = page.evaluate(f"""async (fit) => {{
          const {{ fitPhoto }} = await import("/pwa/photos.js");
          const photo = await ({CAMERA_PHOTO})();
          const started = performance.now();
          const fitted = await fitPhoto(photo, fit);
          return {{ as_taken: photo.size, sized: fitted.size, sizing_ms: Math.round(performance.now() - started) }};
        }}""", photo_fit())
        browser.close()
    return {**figures, "ratio": round(figures["sized"] / figures["as_taken"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=300)
    args = parser.parse_args()
    with embedded_stack("wire_") as (settings, couch, server):
        firewall = Firewall.open(settings, couch)
        demo.load(couch, firewall, size=demo.DemoSize(1, 1, args.households),
                  password_hash=accounts.hash_password(PASSWORD))
        assets.precompress()
        app = create_app(settings, couch, mounts=[Mount("/sync", create_sync_app(settings, server.url))],
                         clocks=False)
        with TestClient(app, follow_redirects=False) as client:
            token = client.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
            assert client.post("/login", data={"username": WORKER, "password": PASSWORD, "next": "/",
                                               "csrf_token": token}).status_code == 303
            token = client.get("/sync/_session").json()["csrf_token"]
            first = sync_bytes(client, token, "0")
            home = docs_of_type(couch.main, "household")[0]
            couch.main.save({**home, "room": "301"})
            incremental = sync_bytes(client, token, first.pop("last_seq"))
            incremental.pop("last_seq")
            code = {c: sum(sent(client, "GET", url, c) for url in assets.asset_urls().values()) for c in CODINGS}
    ratio = {name: {c: round(figures[c] / figures["identity"], 3) for c in ("gzip", "br")}
             for name, figures in (("first_sync", first), ("incremental", incremental), ("linked_code", code))}
    print(json.dumps({"households": args.households, "first_sync_bytes": first, "incremental_sync_bytes": incremental,
                      "linked_browser_code_bytes": code, "ratio_to_uncompressed": ratio, "photo": photo_bytes()}))


if __name__ == "__main__":
    main()
