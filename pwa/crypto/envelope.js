// The encrypted-field envelope v1 in WebCrypto: the same wire format as
// crypto/envelope.py (see its docstring for the layout). Runs in a page, a
// service worker and Node 20 (globalThis.crypto). Test vectors:
// crypto/vectors/v1.json.

const subtle = globalThis.crypto.subtle;
const PREFIX = "enc:";
const VERSION = 1;
const HEADER_BYTES = 5;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const MIN_BYTES = HEADER_BYTES + NONCE_BYTES + TAG_BYTES;
const AAD_LABEL = "linli:field:v1\u0000";
const BIDX_LABEL = "linli:bidx:v1\u0000";
const GRANT_INFO = "linli:grant:v1\u0000";
const utf8 = new TextEncoder();

export class EnvelopeError extends Error {
  // reason: "format" | "truncated" | "version" | "authentication", as in Python.
  constructor(reason, message) {
    super(message);
    this.name = "EnvelopeError";
    this.reason = reason;
  }
}

export function b64urlDecode(text) {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) {
    throw new EnvelopeError("format", "not unpadded base64url");
  }
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

export function b64urlEncode(bytes) {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

function lengthPrefixed(text) {
  const raw = utf8.encode(text);
  if (raw.length > 0xffff) throw new EnvelopeError("format", "context string longer than 65535 bytes");
  return concat(Uint8Array.of(raw.length >> 8, raw.length & 0xff), raw);
}

function header(keyVersion) {
  const h = new Uint8Array(HEADER_BYTES);
  h[0] = VERSION;
  new DataView(h.buffer).setUint32(1, keyVersion);
  return h;
}

function aad(context, headerBytes) {
  return concat(utf8.encode(AAD_LABEL), headerBytes, lengthPrefixed(context.doc_id),
    lengthPrefixed(context.field), lengthPrefixed(context.tier));
}

async function aesGcmKey(key) {
  // A CryptoKey (non-extractable, from unwrapping) or raw bytes (tests).
  return key instanceof CryptoKey ? key : subtle.importKey("raw", key, "AES-GCM", false, ["encrypt", "decrypt"]);
}

export function parse(envelope) {
  if (typeof envelope !== "string" || !envelope.startsWith(PREFIX)) {
    throw new EnvelopeError("format", `not an encrypted field: must be a string starting with "${PREFIX}"`);
  }
  const raw = b64urlDecode(envelope.slice(PREFIX.length));
  if (raw.length < MIN_BYTES) {
    throw new EnvelopeError("truncated", `encrypted field is truncated (${raw.length} bytes, at least ${MIN_BYTES} needed)`);
  }
  if (raw[0] !== VERSION) {
    throw new EnvelopeError("version", `unsupported envelope version ${raw[0]} (this code reads version ${VERSION})`);
  }
  return {
    keyVersion: new DataView(raw.buffer, raw.byteOffset).getUint32(1),
    header: raw.subarray(0, HEADER_BYTES),
    nonce: raw.subarray(HEADER_BYTES, HEADER_BYTES + NONCE_BYTES),
    sealed: raw.subarray(HEADER_BYTES + NONCE_BYTES),
  };
}

export async function sealBytes(key, keyVersion, context, plaintext, nonce = null) {
  // nonce is for test vectors only; leave it null.
  const iv = nonce ?? globalThis.crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
  const h = header(keyVersion);
  const sealed = await subtle.encrypt({ name: "AES-GCM", iv, additionalData: aad(context, h) },
    await aesGcmKey(key), plaintext);
  return PREFIX + b64urlEncode(concat(h, iv, new Uint8Array(sealed)));
}

export async function seal(key, keyVersion, context, value) {
  return sealBytes(key, keyVersion, context, utf8.encode(JSON.stringify(value)));
}

export async function openBytes(key, context, envelope) {
  const p = parse(envelope);
  try {
    const plain = await subtle.decrypt({ name: "AES-GCM", iv: p.nonce, additionalData: aad(context, p.header) },
      await aesGcmKey(key), p.sealed);
    return new Uint8Array(plain);
  } catch (error) {
    if (error.name !== "OperationError") throw error;
    throw new EnvelopeError("authentication", `encrypted field "${context.field}" of "${context.doc_id}" does not open: ` +
      "wrong key, or the ciphertext was altered or moved from another field or document");
  }
}

export async function openValue(key, context, envelope) {
  return JSON.parse(new TextDecoder().decode(await openBytes(key, context, envelope)));
}

export async function unwrapDataKey(kekBytes, wrapped, { extractable = false } = {}) {
  // AES-KW (RFC 3394). Keys stay non-extractable in the app; tests ask for extractable ones to compare bytes.
  const kek = await subtle.importKey("raw", kekBytes, "AES-KW", false, ["unwrapKey"]);
  try {
    return await subtle.unwrapKey("raw", b64urlDecode(wrapped), kek, "AES-KW", "AES-GCM", extractable,
      ["encrypt", "decrypt"]);
  } catch (error) {
    if (error instanceof EnvelopeError) throw error;
    throw new EnvelopeError("authentication", "wrapped key does not unwrap: wrong wrapping key or altered");
  }
}

export async function wrapDataKey(kekBytes, keyBytes) {
  const kek = await subtle.importKey("raw", kekBytes, "AES-KW", false, ["wrapKey"]);
  const key = await subtle.importKey("raw", keyBytes, "AES-GCM", true, ["encrypt"]);
  return b64urlEncode(new Uint8Array(await subtle.wrapKey("raw", key, kek, "AES-KW")));
}

export async function unwrapGrant(devicePrivateKey, grantId, grant, { extractable = false } = {}) {
  // The phone's side of keys.wrap_for_device: ECDH P-256, HKDF-SHA256, AES-KW.
  const ephemeral = await subtle.importKey("raw", b64urlDecode(grant.ephemeral_public),
    { name: "ECDH", namedCurve: "P-256" }, false, []);
  const shared = await subtle.deriveBits({ name: "ECDH", public: ephemeral }, devicePrivateKey, 256);
  const hkdf = await subtle.importKey("raw", shared, "HKDF", false, ["deriveBits"]);
  const kek = await subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0),
    info: utf8.encode(GRANT_INFO + grantId) }, hkdf, 256);
  return unwrapDataKey(new Uint8Array(kek), grant.wrapped_key, { extractable });
}

export function normalise(value) {
  return value.replace(/[ \-\t]/g, "").toUpperCase();
}

export async function blindIndex(keyBytes, field, value) {
  const key = await subtle.importKey("raw", keyBytes, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = new Uint8Array(await subtle.sign("HMAC", key,
    utf8.encode(BIDX_LABEL + field + "\u0000" + normalise(value))));
  return Array.from(mac.subarray(0, 4), (b) => b.toString(16).padStart(2, "0")).join("");
}
