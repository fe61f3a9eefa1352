"""Field encryption cost: whole resident records through crypto/envelope.py versus raw AES-GCM,
and a phone opening a 10,000-resident replica in headless Chromium (WebCrypto) the way the PWA does.

    .venv/bin/python bench/field_crypto.py [--records 2000] [--replica 10000] [--rounds 3] [--page-rounds 30]

Prints one JSON line; every figure is a median of `--rounds` rounds interleaved with its reference, after one
warm-up round of each (bench/measure.py), with its spread; ratios are ours / reference (lower is better). The
Python figures are given in wall time and in the measuring thread's CPU time (`cpu_…`): on a machine shared with
other jobs the CPU time is the code's own cost, the wall time also what the scheduler added.
Server: `crypto.fields.seal_document` then `open_fields` on each resident document, as the server does,
against `AESGCM.encrypt/decrypt` on the same field values with the same keys, no envelope, each value made bytes and
parsed back by the same JSON codec (goal: at most 2x); and, for comparison with earlier figures, against the same
AES-GCM leaving the opened bytes unparsed (`bytes_only_…`), which gives no value back.
Grid page (issue 19 item 3): the crypto of opening a page of a grid's first 50 residents whole, every category (what
a secretary may open): each resident's data-key record unwrapped under the community's tier keys (cached by the
server, as here) by `keyring.open_data_keys`, then every protected field opened by `fields.open_fields`;
`--page-rounds` rounds interleaved with the reference, raw `AESGCM.decrypt` of the same fields under the same data
keys (one AESGCM per resident and tier), median and p95 in milliseconds (goal: under 5 ms).
Phone, its renderer slowed 4x as in bench/pwa.py (bench/throttle.py): for every resident, the grant of each tier
its fields are sealed under unwrapped with the phone's private key (ECDH P-256 + HKDF + AES-KW) and the fields
opened, by the PWA's own `openFields` (pwa/offline/keys.js; each round gives the grants a new revision, so nothing
unwrapped in an earlier round is reused), against importing the same data keys raw and opening the same fields
(what this benchmark measured before the grants). Every field must open.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.measure import compare, expect, interleave, load_average, spread  # noqa: E402
from bench.throttle import CPU_SLOWDOWN, RendererThrottle, spin_ms  # noqa: E402
from crypto import envelope as env  # noqa: E402
from crypto.fields import open_fields, protected_fields, seal_document  # noqa: E402
from crypto.keyring import ResidentKeys, TierKeys, new_data_key_record, open_data_keys  # noqa: E402
from crypto.keys import wrap_for_phone  # noqa: E402
from server.domain.declaration import DOC_TYPES, PROTECTED_TIERS  # noqa: E402
from server.security.grants import grant_id  # noqa: E402
from server.services import demo  # noqa: E402
from tests.browser import launch, serve_project  # noqa: E402

RESIDENT = DOC_TYPES["resident"]
PHONE_KEY = "phone_key:bench"
PROTECTED = {name: f.effective_tier.value for name, f in RESIDENT.fields.items() if f.effective_tier in PROTECTED_TIERS}


def protected_records(n: int) -> list[dict]:
    records = []
    for doc in demo.generate():
        if doc["type"] == "resident":
            fields = {k: v for k, v in doc.items() if k in PROTECTED}
            if fields:
                records.append({"_id": doc["_id"], **fields})
            if len(records) == n:
                return records
    return records


def ours(records: list[dict], key: bytes) -> list[float]:
    """The server's own path: crypto.fields seals a whole resident document and opens it again (`clocks`). What
    came out is checked after the clock stops, as the reference checks nothing inside it."""
    docs = [{**r, "type": "resident"} for r in records]
    opened = []
    with clocks() as took:
        for doc in docs:
            data_key = env.DataKey(key, 1)  # one per record, as the server unwraps one per resident
            keys = ResidentKeys({"contact": data_key, "core": data_key},
                                {("contact", 1): data_key, ("core", 1): data_key})
            opened.append(open_fields(seal_document(doc, keys.current), keys))
    for r, fields in zip(records, opened, strict=True):
        expect(f"fields of {r['_id']} opened", len(fields), len(r) - 1)
    return took


def raw(records: list[dict], key: bytes, *, values: bool = True) -> list[float]:
    """The reference: AES-GCM on the same field values, no envelope (`clocks`). With `values` each is turned into
    bytes and back by the same JSON codec ours uses (`crypto.envelope`), so the two differ by the envelope alone;
    without, the opened bytes are left unparsed (this benchmark's reference before 2026-12-02, kept for comparison)."""
    with clocks() as took:
        for r in records:
            aead = AESGCM(key)
            for name, value in r.items():
                if name != "_id":
                    nonce = os.urandom(12)
                    if values:
                        env.decode_plaintext(aead.decrypt(nonce, aead.encrypt(nonce, env.encode_plaintext(value),
                                                                              None), None))
                    else:
                        aead.decrypt(nonce, aead.encrypt(nonce, json.dumps(value).encode(), None), None)
    return took


@contextlib.contextmanager
def clocks() -> Iterator[list[float]]:
    """Yields a pair that, on leaving, holds the (wall, this thread's CPU) seconds the block took."""
    took = [0.0, 0.0]
    wall, cpu = time.perf_counter(), time.thread_time()
    yield took
    took[:] = [time.perf_counter() - wall, time.thread_time() - cpu]


def by_clock(mine: list[list[float]], theirs: list[list[float]], *, scale: float, digits: int) -> dict:
    """{"wall"|"cpu": {"ours", "reference" (spreads, times × scale), "ratio"}} of interleaved rounds; with 20 rounds
    or more each spread has its p95 too."""
    figures = {}
    for clock, index in (("wall", 0), ("cpu", 1)):
        ours_, reference = [t[index] * scale for t in mine], [t[index] * scale for t in theirs]
        figures[clock] = {"ours": with_p95(ours_, digits), "reference": with_p95(reference, digits),
                          "ratio": round(statistics.median(ours_) / statistics.median(reference), 2)}
    return figures


def with_p95(values: list[float], digits: int) -> dict:
    if len(values) < 20:
        return spread(values, digits)
    return {**spread(values, digits), "p95": round(statistics.quantiles(values, n=20, method="inclusive")[18], digits)}


PAGE_RESIDENTS = 50  # a grid page's residents (issue 19 item 3: at most 50)


def grid_page(rounds: int) -> dict:
    """Milliseconds of crypto to open a page of residents whole, ours and the reference, interleaved (median, p95)."""
    residents = list(itertools.islice((d for d in demo.generate() if d["type"] == "resident"), PAGE_RESIDENTS))
    ring = TierKeys.new()  # the community's tier keys, unwrapped once a process (server/security/keystore.py)
    records = [{"_id": f"data_key:{r['_id']}", **new_data_key_record(ring, f"data_key:{r['_id']}")}
               for r in residents]
    page = [(seal_document(r, open_data_keys(ring, record).current), record)
            for r, record in zip(residents, records, strict=True)]
    tiers = protected_fields("resident")
    fields = sum(1 for doc, _ in page for name in tiers if doc.get(name) is not None)
    # The reference: the same values, sealed raw under the same data keys, opened with one AESGCM a resident and tier.
    raw_page = []
    for r, record in zip(residents, records, strict=True):
        keys = {tier: ring.unwrap_raw(tier, record[tier]) for tier in set(tiers.values())}
        sealed = []
        for name, tier in tiers.items():
            if r.get(name) is not None:
                nonce = os.urandom(12)
                sealed.append((tier, nonce, AESGCM(keys[tier]).encrypt(nonce, json.dumps(r[name]).encode(), None)))
        raw_page.append((keys, sealed))

    def ours() -> list[float]:
        with clocks() as took:
            opened = sum(len(open_fields(doc, open_data_keys(ring, record))) for doc, record in page)
        expect("page fields opened", opened, fields)
        return took

    def reference() -> list[float]:
        with clocks() as took:
            opened = 0
            for keys, sealed in raw_page:
                aeads = {tier: AESGCM(key) for tier, key in keys.items()}
                opened += sum(1 for tier, nonce, ciphertext in sealed if aeads[tier].decrypt(nonce, ciphertext, None))
        expect("page fields opened raw", opened, fields)
        return took

    return {"residents": len(page), "fields": fields,
            **by_clock(*interleave(ours, reference, rounds=rounds), scale=1000, digits=3)}


# The phone's side, run once per page: its key made as pwa/offline/keys.js phoneKey makes it (ECDH P-256, the
# private half not extractable), kept in the page; its public half for the grants.
PHONE = """async (id) => {
  const env = await import("/pwa/crypto/envelope.js");
  const pair = await crypto.subtle.generateKey({name: "ECDH", namedCurve: "P-256"}, false, ["deriveBits"]);
  window.phone = {id, privateKey: pair.privateKey};
  window.round = 0;
  return env.b64urlEncode(new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey)));
}"""
# Ours: every resident's fields opened through its grants, as the service worker does (pwa/offline/keys.js).
THROUGH_GRANTS = """async () => {
  const keys = await import("/pwa/offline/keys.js");
  const {residents, grants, tiers} = window.replica;
  const rev = `${++window.round}-bench`;  // a revision not unwrapped before: every grant unwrapped afresh
  const started = performance.now();
  let fields = 0;
  for (const doc of residents) {
    for (const [tier, grant] of Object.entries(grants[doc._id])) {
      const names = Object.keys(doc).filter((name) => tiers[name] === tier);
      const values = await keys.openFields(window.phone, {...grant, _rev: rev}, doc, names, tier);
      fields += Object.values(values).filter((value) => value !== null).length;
    }
  }
  return [(performance.now() - started) / 1000, fields];
}"""
# The reference: the same data keys imported raw, the same fields opened.
RAW_KEYS = """async () => {
  const env = await import("/pwa/crypto/envelope.js");
  const {residents, rawKeys, tiers} = window.replica;
  const started = performance.now();
  let fields = 0;
  for (const doc of residents) {
    for (const [tier, raw] of Object.entries(rawKeys[doc._id])) {
      const key = await crypto.subtle.importKey("raw", env.b64urlDecode(raw), "AES-GCM", false, ["decrypt"]);
      for (const name of Object.keys(doc).filter((field) => tiers[field] === tier)) {
        await env.openValue(key, {doc_id: doc._id, field: name, tier}, doc[name]);
        fields++;
      }
    }
  }
  return [(performance.now() - started) / 1000, fields];
}"""


def replica(records: list[dict], phone_public: bytes) -> dict:
    """The residents sealed under a data key per tier, the phone's grant of each key, and the keys raw."""
    residents, grants, raw_keys = [], {}, {}
    for r in records:
        tiers = {PROTECTED[name] for name in r if name != "_id"}
        keys = {tier: os.urandom(32) for tier in tiers}
        residents.append({name: (env.DataKey(keys[PROTECTED[name]], 1).seal(
            env.FieldContext(r["_id"], name, PROTECTED[name]), v) if name != "_id" else v) for name, v in r.items()})
        grants[r["_id"]] = {tier: {"_id": grant_id(PHONE_KEY, r["_id"], tier), "key_version": 1,
                                   **wrap_for_phone(phone_public, grant_id(PHONE_KEY, r["_id"], tier), key)}
                            for tier, key in keys.items()}
        raw_keys[r["_id"]] = {tier: env.b64url(key) for tier, key in keys.items()}
    return {"residents": residents, "grants": grants, "rawKeys": raw_keys, "tiers": PROTECTED}


def chromium_replica(records: list[dict], rounds: int) -> dict:
    """Seconds to open the replica's fields on the slowed phone, through grants and with raw keys, interleaved."""
    from playwright.sync_api import sync_playwright

    fields = sum(len(r) - 1 for r in records)
    with serve_project() as url, sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            page.goto(url + "/pwa/README.md")
            public = env.unb64url(page.evaluate(PHONE, PHONE_KEY))
            page.evaluate("(data) => { window.replica = data; }", replica(records, public))

            def run(script: str) -> float:
                seconds, opened = page.evaluate(script)
                expect("fields opened in Chromium", opened, fields)
                return seconds

            free_spin = spin_ms(page)
            with RendererThrottle(CPU_SLOWDOWN):
                slowed_spin = spin_ms(page)
                figures = compare(lambda: run(THROUGH_GRANTS), lambda: run(RAW_KEYS), rounds=rounds, digits=2)
        finally:
            browser.close()
    return {**figures, "fields": fields, "measured_slowdown": round(slowed_spin / free_spin, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--replica", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of each figure (medians)")
    parser.add_argument("--page-rounds", type=int, default=30, help="interleaved rounds of the grid page (p95)")
    args = parser.parse_args()
    key = os.urandom(32)
    records = protected_records(max(args.records, args.replica))
    sample = records[:expect("resident records", len(records[:args.records]), args.records)]
    server = by_clock(*interleave(lambda: ours(sample, key), lambda: raw(sample, key), rounds=args.rounds),
                      scale=1, digits=5)
    bytes_only = by_clock(*interleave(lambda: ours(sample, key), lambda: raw(sample, key, values=False),
                                      rounds=args.rounds), scale=1, digits=5)
    page = grid_page(args.page_rounds)
    phone = chromium_replica(records[:expect("replica residents", len(records[:args.replica]), args.replica)],
                             args.rounds)
    print(json.dumps({"bench": "field_crypto", "records": len(sample),
                      "fields_per_record": round(sum(len(r) - 1 for r in sample) / len(sample), 2),
                      "records_per_second": round(len(sample) / server["wall"]["ours"]["median"]),
                      "seconds": server["wall"]["ours"],
                      "reference": "raw AESGCM encrypt+decrypt, same fields, same JSON codec for the values",
                      "reference_records_per_second": round(len(sample) / server["wall"]["reference"]["median"]),
                      "reference_seconds": server["wall"]["reference"], "overhead_ratio": server["wall"]["ratio"],
                      "cpu_seconds": server["cpu"]["ours"], "reference_cpu_seconds": server["cpu"]["reference"],
                      "cpu_overhead_ratio": server["cpu"]["ratio"],
                      "bytes_only_reference": "raw AESGCM encrypt+decrypt, opened bytes not parsed",
                      "bytes_only_cpu_seconds": bytes_only["cpu"]["reference"],
                      "bytes_only_cpu_ratio": bytes_only["cpu"]["ratio"],
                      "bytes_only_wall_ratio": bytes_only["wall"]["ratio"],
                      "page_residents": page["residents"], "page_fields": page["fields"],
                      "page_reference": "raw AESGCM decrypt, same fields, same data keys",
                      "page_crypto_cpu_ms": page["cpu"]["ours"], "page_reference_cpu_ms": page["cpu"]["reference"],
                      "page_cpu_ratio": page["cpu"]["ratio"], "page_crypto_wall_ms": page["wall"]["ours"],
                      "page_reference_wall_ms": page["wall"]["reference"], "page_wall_ratio": page["wall"]["ratio"],
                      "chromium_replica_residents": args.replica, "chromium_replica_fields": phone["fields"],
                      "chromium_cpu_slowdown": CPU_SLOWDOWN, "chromium_measured_slowdown": phone["measured_slowdown"],
                      "chromium_grants_open_seconds": phone["ours"],
                      "chromium_reference": "the same data keys imported raw, the same fields opened",
                      "chromium_raw_keys_open_seconds": phone["reference"], "chromium_ratio": phone["ratio"],
                      "load_average": load_average()}))


if __name__ == "__main__":
    main()
