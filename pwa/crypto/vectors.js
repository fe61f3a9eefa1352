// Runs crypto/vectors/v1.json against envelope.js. Used by the Node test
// (pwa/tests/crypto.test.mjs) and by the Chromium test (tests/test_crypto.py),
// so both environments run exactly the same checks.
import * as env from "./envelope.js";

const bytes = env.b64urlDecode;

function same(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

export async function runVectors(v) {
  const results = [];
  const check = async (group, name, fn) => {
    try {
      const problem = await fn();
      results.push({ group, name, ok: !problem, problem: problem || null });
    } catch (error) {
      results.push({ group, name, ok: false, problem: `${error.name}: ${error.message}` });
    }
  };
  const ctx = (c) => ({ doc_id: c.doc_id, field: c.field, tier: c.tier });
  const utf8 = new TextEncoder();

  for (const c of v.envelope) {
    await check("envelope", c.name, async () => {
      const sealed = await env.sealBytes(bytes(c.key), c.key_version, ctx(c), utf8.encode(c.plaintext_json), bytes(c.nonce));
      if (sealed !== c.envelope) return `sealed to ${sealed}`;
      const value = await env.openValue(bytes(c.key), ctx(c), c.envelope);
      if (JSON.stringify(value) !== JSON.stringify(JSON.parse(c.plaintext_json))) return "opened to another value";
      if (env.parse(c.envelope).keyVersion !== c.key_version) return "wrong key version read";
      return null;
    });
  }
  for (const c of v.envelope_v1) {
    await check("envelope_v1", c.name, async () => {
      const value = await env.openValue(bytes(c.key), ctx(c), c.envelope);
      if (JSON.stringify(value) !== JSON.stringify(JSON.parse(c.plaintext_json))) return "opened to another value";
      if (env.parse(c.envelope).keyVersion !== c.key_version) return "wrong key version read";
      const sealed = await env.sealBytes(bytes(c.key), c.key_version, ctx(c), utf8.encode(c.plaintext_json), bytes(c.nonce));
      return sealed === c.envelope ? "sealed as version 1: only version 3 is written" : null;
    });
  }
  for (const c of v.envelope_invalid) {
    await check("envelope_invalid", c.name, async () => {
      try {
        await env.openValue(bytes(c.key), ctx(c), c.envelope);
        return "opened, but must not";
      } catch (error) {
        if (!(error instanceof env.EnvelopeError)) throw error;
        return error.reason === c.reason ? null : `rejected for ${error.reason}, expected ${c.reason}`;
      }
    });
  }
  for (const c of v.keywrap) {
    await check("keywrap", c.name, async () => {
      const key = await env.unwrapDataKey(bytes(c.kek), c.wrapped, { extractable: true });
      const raw = new Uint8Array(await globalThis.crypto.subtle.exportKey("raw", key));
      if (!same(raw, bytes(c.key))) return "unwrapped to another key";
      if ((await env.unwrapDataKey(bytes(c.kek), c.wrapped)).extractable) return "app keys must be non-extractable";
      const wrapped = await env.wrapDataKey(bytes(c.kek), bytes(c.key));
      return wrapped === c.wrapped ? null : `wrapped to ${wrapped}`;
    });
  }
  for (const c of v.keywrap_invalid) {
    await check("keywrap_invalid", c.name, async () => {
      try {
        await env.unwrapDataKey(bytes(c.kek), c.wrapped);
        return "unwrapped, but must not";
      } catch (error) {
        if (!(error instanceof env.EnvelopeError)) throw error;
        return error.reason === c.reason ? null : `rejected for ${error.reason}, expected ${c.reason}`;
      }
    });
  }
  for (const c of v.device_grant) {
    await check("device_grant", c.name, async () => {
      const device = await globalThis.crypto.subtle.importKey("jwk", { ...c.device_private_jwk, ext: false },
        { name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]);
      const key = await env.unwrapGrant(device, c.grant_id, c, { extractable: true });
      const raw = new Uint8Array(await globalThis.crypto.subtle.exportKey("raw", key));
      if (!same(raw, bytes(c.key))) return "unwrapped to another key";
      const locked = await env.unwrapGrant(device, c.grant_id, c);
      if (locked.extractable) return "app keys must be non-extractable";
      const current = await env.unwrapGrant(device, c.grant_id, c, { extractable: true, version: c.key_version });
      if (!same(new Uint8Array(await globalThis.crypto.subtle.exportKey("raw", current)), bytes(c.key))) {
        return "its own version named unwrapped to another key";
      }
      try {
        await env.unwrapGrant(device, c.grant_id, c, { version: 99 });
        return "a version the grant does not hold unwrapped";
      } catch (error) {
        if (!(error instanceof env.EnvelopeError) || error.reason !== "authentication") throw error;
      }
      if (c.older_key) {  // a version a rotation replaced, for what it sealed
        const older = await env.unwrapGrant(device, c.grant_id, c, { extractable: true, version: 1 });
        const olderRaw = new Uint8Array(await globalThis.crypto.subtle.exportKey("raw", older));
        if (!same(olderRaw, bytes(c.older_key))) return "the older version unwrapped to another key";
      }
      try {
        await env.unwrapGrant(device, c.grant_id + "x", c);
        return "a grant opened under another grant id";
      } catch (error) {
        return error instanceof env.EnvelopeError ? null : `${error.name}: ${error.message}`;
      }
    });
  }
  const writeKey = (jwk) => globalThis.crypto.subtle.importKey("jwk", jwk, { name: "ECDH", namedCurve: "P-256" },
    false, ["deriveBits"]);
  for (const c of v.sealed) {
    await check("sealed", c.name, async () => {
      const value = JSON.parse(c.plaintext_json);
      const sealed = await env.sealFor(bytes(c.recipient_public), c.key_version, ctx(c), value,
        { ephemeralPrivateJwk: c.ephemeral_private_jwk, nonce: bytes(c.nonce) });
      if (sealed !== c.envelope) return `sealed to ${sealed}`;
      const opened = await env.openSealed(await writeKey(c.recipient_private_jwk), ctx(c), c.envelope);
      if (JSON.stringify(opened) !== JSON.stringify(value)) return "opened to another value";
      const fresh = await env.sealFor(bytes(c.recipient_public), c.key_version, ctx(c), value);
      if (fresh === sealed) return "a fresh seal must differ (random ephemeral key and nonce)";
      return null;
    });
  }
  for (const c of v.write_key_statements) {
    await check("write_key_statements", c.name, async () => {
      const vouched = await env.verifyWriteKey(bytes(c.installation_public), c.resident, c.key_version,
        c.write_public, c.signature);
      return vouched === c.valid ? null : `verified as ${vouched}, expected ${c.valid}`;
    });
  }
  for (const c of v.sealed_invalid) {
    await check("sealed_invalid", c.name, async () => {
      try {
        await env.openSealed(await writeKey(c.recipient_private_jwk), ctx(c), c.envelope);
        return "opened, but must not";
      } catch (error) {
        if (!(error instanceof env.EnvelopeError)) throw error;
        return error.reason === c.reason ? null : `rejected for ${error.reason}, expected ${c.reason}`;
      }
    });
  }
  // A voucher's payload, or null for a code that is not one; compared whatever the order of its fields.
  const sorted = (payload) => JSON.stringify(payload && Object.fromEntries(Object.entries(payload).sort()));
  for (const c of v.vouchers) {
    await check("vouchers", c.name, async () => {
      const opened = await env.openVoucher(bytes(c.installation_public), c.code);
      return sorted(opened) === sorted(c.payload) ? null : `opened as ${JSON.stringify(opened)}`;
    });
  }
  return results;
}
