// node --test pwa/tests/: the shared crypto vectors in Node's WebCrypto.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { runVectors } from "../crypto/vectors.js";

const vectors = JSON.parse(await readFile(new URL("../../crypto/vectors/v1.json", import.meta.url), "utf8"));
const results = await runVectors(vectors);

for (const r of results) {
  test(`${r.group}: ${r.name}`, () => {
    assert.equal(r.problem, null);
  });
}

// Blind indexes are the server's alone (server/security/number_index.py): no phone computes one.
test("every group of vectors ran", () => {
  for (const group of ["envelope", "envelope_invalid", "keywrap", "keywrap_invalid", "device_grant", "sealed",
    "sealed_invalid", "write_key_statements", "vouchers"]) {
    assert.ok(results.some((r) => r.group === group), group);
  }
});
