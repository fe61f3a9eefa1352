"""Field encryption cost: whole resident records through crypto/envelope.py versus raw AES-GCM,
and decrypting a 10,000-resident replica in headless Chromium (WebCrypto).

    .venv/bin/python bench/field_crypto.py [--records 2000] [--replica 10000]

Prints one JSON line. Ours: `crypto.fields.seal_document` then `open_fields` on each
resident document, as the server does. Reference, same run: `AESGCM.encrypt/decrypt`
on the same field values with the same keys, no envelope (goal: ours at most 2x raw).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crypto import envelope as env  # noqa: E402
from crypto.fields import open_fields, seal_document  # noqa: E402
from crypto.keyring import ResidentKeys  # noqa: E402
from server.domain.declaration import DOC_TYPES, PROTECTED_TIERS  # noqa: E402
from server.services import demo  # noqa: E402
from tests.browser import launch, serve_project  # noqa: E402

RESIDENT = DOC_TYPES["resident"]
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


def ours(records: list[dict], key: bytes) -> float:
    """The server's own path: crypto.fields seals a whole resident document and opens it again."""
    started = time.perf_counter()
    for r in records:
        data_key = env.DataKey(key, 1)  # one per record, as the server unwraps one per resident
        keys = ResidentKeys({"contact": data_key, "core": data_key}, {("contact", 1): data_key, ("core", 1): data_key})
        opened = open_fields(seal_document({**r, "type": "resident"}, keys.current), keys)
        assert len(opened) == len(r) - 1
    return len(records) / (time.perf_counter() - started)


def raw(records: list[dict], key: bytes) -> float:
    started = time.perf_counter()
    for r in records:
        aead = AESGCM(key)
        for name, value in r.items():
            if name != "_id":
                nonce = os.urandom(12)
                aead.decrypt(nonce, aead.encrypt(nonce, json.dumps(value).encode(), None), None)
    return len(records) / (time.perf_counter() - started)


def chromium_replica_seconds(records: list[dict], key: bytes) -> tuple[float, int]:
    from playwright.sync_api import sync_playwright

    data_key = env.DataKey(key, 1)
    sealed = [{name: (data_key.seal(env.FieldContext(r["_id"], name, PROTECTED[name]), v) if name != "_id" else v)
               for name, v in r.items()} for r in records]
    with serve_project() as url, sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            page.goto(url + "/pwa/README.md")
            result = page.evaluate("""async ([docs, keyB64, tiers]) => {
                const env = await import('/pwa/crypto/envelope.js');
                const key = await crypto.subtle.importKey('raw', env.b64urlDecode(keyB64), 'AES-GCM', false,
                                                          ['decrypt']);
                const started = performance.now();
                let fields = 0;
                for (const doc of docs) {
                  for (const [name, value] of Object.entries(doc)) {
                    if (name === '_id') continue;
                    await env.openValue(key, {doc_id: doc._id, field: name, tier: tiers[name]}, value);
                    fields++;
                  }
                }
                return [(performance.now() - started) / 1000, fields];
            }""", [sealed, env.b64url(key), PROTECTED])
        finally:
            browser.close()
    return result[0], result[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--replica", type=int, default=10_000)
    args = parser.parse_args()
    key = os.urandom(32)
    records = protected_records(max(args.records, args.replica))
    sample = records[:args.records]
    ours(sample[:100], key), raw(sample[:100], key)  # warm up
    ours_rate, raw_rate = ours(sample, key), raw(sample, key)
    seconds, fields = chromium_replica_seconds(records[:args.replica], key)
    print(json.dumps({"bench": "field_crypto", "records": len(sample),
                      "fields_per_record": round(sum(len(r) - 1 for r in sample) / len(sample), 2),
                      "records_per_second": round(ours_rate), "reference": "raw AESGCM encrypt+decrypt, same fields",
                      "reference_records_per_second": round(raw_rate), "overhead_ratio": round(raw_rate / ours_rate, 2),
                      "chromium_replica_residents": args.replica, "chromium_replica_fields": fields,
                      "chromium_decrypt_seconds": round(seconds, 2)}))


if __name__ == "__main__":
    main()
