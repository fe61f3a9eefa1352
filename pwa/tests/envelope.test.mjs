// node --test pwa/tests/: crypto/envelope.js's rules beyond the shared vectors (crypto/vectors/v1.json, run by
// crypto.test.mjs): limits, what parse() accepts, and refusals that say what is wrong, as crypto/envelope.py does.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as env from "../crypto/envelope.js";

const key = new Uint8Array(32).fill(7);
const context = { doc_id: "resident:r1", field: "phone", tier: "contact" };

// A data key's envelope (version 3) is standard base64 (crypto/envelope.py); Node's Buffer reads and writes it.
const bytesOf = (sealed) => new Uint8Array(Buffer.from(sealed.slice(4), "base64"));
const standard = (bytes) => `enc:${Buffer.from(bytes).toString("base64")}`;

const refusal = async (attempt) => {
  try {
    await attempt();
  } catch (error) {
    return error;
  }
  assert.fail("accepted, but must be refused");
};

test("a sealed value opens to itself", async () => {
  const sealed = await env.seal(key, 3, context, { notes: "高血压" });
  assert.deepEqual(await env.openValue(key, context, sealed), { notes: "高血压" });
  assert.equal(env.parse(sealed).keyVersion, 3);
});

test("a context string is at most 65,535 bytes (its length is two bytes of the AAD)", async () => {
  const longest = { ...context, doc_id: "x".repeat(0xffff) };
  assert.deepEqual(await env.openValue(key, longest, await env.seal(key, 1, longest, 1)), 1);
  const error = await refusal(() => env.seal(key, 1, { ...context, doc_id: "x".repeat(0x10000) }, 1));
  assert.equal(error.reason, "format");
});

test("parse refuses what is not a string, and a version it does not read", async () => {
  assert.equal((await refusal(() => env.parse(42))).reason, "format");
  const raw = bytesOf(await env.seal(key, 1, context, "x"));
  assert.equal(raw[0], 3);
  raw[0] = 4;
  const error = await refusal(() => env.parse(`enc:${env.b64urlEncode(raw)}`));
  assert.equal(error.reason, "version");
  assert.match(error.message, /version 4 \(this code reads versions 1, 2, 3\)/);
});

test("a key that cannot decrypt is the caller's mistake, not a forged field", async () => {
  const hmac = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const error = await refusal(async () => env.openBytes(hmac, context, await env.seal(key, 1, context, "x")));
  assert.ok(!(error instanceof env.EnvelopeError), error);
});

// As crypto/envelope.py's (tests/test_crypto.py test_each_refusal_names_its_reason_and_what_is_wrong): an
// EnvelopeError, its reason, and a message naming the field, the document or what is wrong with the bytes.
test("each refusal names its reason and what is wrong", async () => {
  const sealed = await env.seal(key, 1, context, "x");
  const raw = bytesOf(sealed);
  const writeKey = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]);
  const writePublic = new Uint8Array(await crypto.subtle.exportKey("raw", writeKey.publicKey));
  const forWriteKey = await env.sealFor(writePublic, 1, context, "x");
  const cases = [
    [() => env.openValue(new Uint8Array(32), context, sealed), "authentication", /"phone" of "resident:r1" does not open: wrong key, or the ciphertext was altered/],
    [() => env.openValue(key, context, forWriteKey), "version", /"phone" is sealed for a write key/],
    [() => env.openSealed(writeKey.privateKey, context, sealed), "version", /"phone" is not sealed for a write key/],
    [() => env.openValue(key, context, "x"), "format", /starting with "enc:"/],
    [() => env.openValue(key, context, "enc:a+b"), "format", /base64url/],
    [() => env.openValue(key, context, sealed.slice(0, -1)), "format", /padded standard base64/],
    [() => env.openValue(key, context, standard(raw.slice(0, 20))), "truncated", /20 bytes, at least 33/],
    [() => env.openSealed(writeKey.privateKey, context, `enc:${env.b64urlEncode(env.b64urlDecode(forWriteKey.slice(4))
      .slice(0, 90))}`), "truncated", /90 bytes, at least 98 needed for version 2/],
    [() => env.openSealed(writeKey.privateKey, context, `enc:${env.b64urlEncode(Uint8Array.of(2, 0, 0, 0, 1,
      ...new Uint8Array(93)))}`), "format", /the sealed field's ephemeral key is not a P-256 public key/],
    [() => env.sealFor(new Uint8Array(65), 1, context, "x"), "format", /write key is not a P-256 public key/],
    [() => env.seal(key, 1, { ...context, field: "x".repeat(0x10000) }, 1), "format", /longer than 65535 bytes/],
    [() => env.unwrapDataKey(key, env.b64urlEncode(new Uint8Array(40))), "authentication", /does not unwrap/],
  ];
  for (const [attempt, reason, message] of cases) {
    const error = await refusal(attempt);
    assert.ok(error instanceof env.EnvelopeError && error.name === "EnvelopeError", String(error));
    assert.equal(error.reason, reason, String(error));
    assert.match(error.message, message);
  }
});

test("a grant holding no key of the version asked for says so", async () => {
  const grant = { key_version: 2, wrapped_key: "AAAA", older_keys: {} };
  const error = await refusal(() => env.unwrapGrant(null, "grant:g1", grant, { version: 1 }));
  assert.equal(error.reason, "authentication");
  assert.match(error.message, /no key version 1/);
});

// keys.js compares a typed number with the residents' numbers this way (crypto/README.md "Blind index leakage").
test("a phone or ID card number is compared without spaces, dashes or tabs, in capitals", () => {
  assert.equal(env.normalise(" 100-1234\t5678 "), "10012345678");
  assert.equal(env.normalise("99010119500304001x"), "99010119500304001X");
});
