// The encrypted-field envelope in WebCrypto: the same wire format as
// crypto/envelope.py (see its docstring for the layout and its versions). Runs in a page, a
// service worker and Node 20 (globalThis.crypto). Test vectors:
// crypto/vectors/v1.json.

const subtle = globalThis.crypto.subtle;
const PREFIX = "enc:";
const VERSION = 3; // what a data key seals: standard base64 with padding
const URLSAFE_VERSION = 1; // a data key's envelope before version 3, in base64url: opened, never written
const SEALED_VERSION = 2; // write-without-read: sealed to a resident's public write key, in base64url
// A version-3 envelope's base64 starts "A" and a character holding 0x03's last two bits (envelope.py).
const STANDARD_START = /^A[w-z0-9+/]/;
const HEADER_BYTES = 5;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const EPHEMERAL_BYTES = 65; // an uncompressed P-256 point
const DATA_KEY_BYTES = HEADER_BYTES + NONCE_BYTES + TAG_BYTES;
const MIN_BYTES = { [URLSAFE_VERSION]: DATA_KEY_BYTES,
  [SEALED_VERSION]: HEADER_BYTES + EPHEMERAL_BYTES + NONCE_BYTES + TAG_BYTES, [VERSION]: DATA_KEY_BYTES };
const SEALED_INFO = "linli:sealed:v2\u0000";
const ECDH_P256 = { name: "ECDH", namedCurve: "P-256" };
const AAD_LABEL = "linli:field:v1\u0000";
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
  return b64Encode(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function b64Decode(text) {
  // Strict, as Python's a2b_base64(strict_mode=True): padded to a multiple of four, no other character.
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) {
    throw new EnvelopeError("format", "not padded standard base64");
  }
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

function b64Encode(bytes) {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
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

function header(keyVersion, version = VERSION) {
  const h = new Uint8Array(HEADER_BYTES);
  h[0] = version;
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
  const body = envelope.slice(PREFIX.length);
  const raw = STANDARD_START.test(body) ? b64Decode(body) : b64urlDecode(body);
  if (raw.length < DATA_KEY_BYTES) {
    throw new EnvelopeError("truncated",
      `encrypted field is truncated (${raw.length} bytes, at least ${DATA_KEY_BYTES} needed)`);
  }
  const version = raw[0];
  if (!(version in MIN_BYTES)) {
    throw new EnvelopeError("version",
      `unsupported envelope version ${version} (this code reads versions ${Object.keys(MIN_BYTES).join(", ")})`);
  }
  if (raw.length < MIN_BYTES[version]) {
    throw new EnvelopeError("truncated",
      `encrypted field is truncated (${raw.length} bytes, at least ${MIN_BYTES[version]} needed for version ${version})`);
  }
  const ephemeralEnd = HEADER_BYTES + (version === SEALED_VERSION ? EPHEMERAL_BYTES : 0);
  return {
    version,
    keyVersion: new DataView(raw.buffer, raw.byteOffset).getUint32(1),
    header: raw.subarray(0, HEADER_BYTES),
    ephemeral: raw.subarray(HEADER_BYTES, ephemeralEnd),
    nonce: raw.subarray(ephemeralEnd, ephemeralEnd + NONCE_BYTES),
    sealed: raw.subarray(ephemeralEnd + NONCE_BYTES),
  };
}

export async function sealBytes(key, keyVersion, context, plaintext, nonce = null) {
  // nonce is for test vectors only; leave it null.
  const iv = nonce ?? globalThis.crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
  const h = header(keyVersion);
  const sealed = await subtle.encrypt({ name: "AES-GCM", iv, additionalData: aad(context, h) },
    await aesGcmKey(key), plaintext);
  return PREFIX + b64Encode(concat(h, iv, new Uint8Array(sealed)));
}

export async function seal(key, keyVersion, context, value) {
  return sealBytes(key, keyVersion, context, utf8.encode(JSON.stringify(value)));
}

async function decrypt(key, context, p) {
  try {
    const plain = await subtle.decrypt({ name: "AES-GCM", iv: p.nonce, additionalData: aad(context, p.header) },
      key, p.sealed);
    return new Uint8Array(plain);
  } catch (error) {
    if (error.name !== "OperationError") throw error;
    throw new EnvelopeError("authentication", `encrypted field "${context.field}" of "${context.doc_id}" does not open: ` +
      "wrong key, or the ciphertext was altered or moved from another field or document");
  }
}

export async function openBytes(key, context, envelope) {
  const p = parse(envelope);
  if (p.version === SEALED_VERSION) {
    throw new EnvelopeError("version", `encrypted field "${context.field}" is sealed for a write key, not a data key`);
  }
  return decrypt(await aesGcmKey(key), context, p);
}

// ---- version 2: write without read (crypto/envelope.py explains the layout and the why)

async function sealedKey(privateKey, publicKey, ephemeralRaw, usage) {
  const shared = await subtle.deriveBits({ name: "ECDH", public: publicKey }, privateKey, 256);
  const hkdf = await subtle.importKey("raw", shared, "HKDF", false, ["deriveKey"]);
  return subtle.deriveKey({ name: "HKDF", hash: "SHA-256", salt: ephemeralRaw, info: utf8.encode(SEALED_INFO) },
    hkdf, { name: "AES-GCM", length: 256 }, false, [usage]);
}

async function importPoint(raw, what) {
  try {
    return await subtle.importKey("raw", raw, ECDH_P256, true, []);
  } catch (error) {
    throw new EnvelopeError("format", `${what} is not a P-256 public key`);
  }
}

export async function sealFor(recipientPublicRaw, keyVersion, context, value,
  { ephemeralPrivateJwk = null, nonce = null } = {}) {
  // Seal a value that only the holder of the write key's private half can open; the phone keeps no way to read it.
  // ephemeralPrivateJwk and nonce are for test vectors only.
  const recipient = await importPoint(recipientPublicRaw, "write key");
  let ephemeral, ephemeralRaw;
  if (ephemeralPrivateJwk) {
    ephemeral = await subtle.importKey("jwk", ephemeralPrivateJwk, ECDH_P256, false, ["deriveBits"]);
    ephemeralRaw = concat(Uint8Array.of(4), b64urlDecode(ephemeralPrivateJwk.x), b64urlDecode(ephemeralPrivateJwk.y));
  } else {
    const pair = await subtle.generateKey(ECDH_P256, false, ["deriveBits"]);
    ephemeral = pair.privateKey;
    ephemeralRaw = new Uint8Array(await subtle.exportKey("raw", pair.publicKey));
  }
  const iv = nonce ?? globalThis.crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
  const h = header(keyVersion, SEALED_VERSION);
  const key = await sealedKey(ephemeral, recipient, ephemeralRaw, "encrypt");
  const sealed = await subtle.encrypt({ name: "AES-GCM", iv, additionalData: aad(context, h) }, key,
    utf8.encode(JSON.stringify(value)));
  return PREFIX + b64urlEncode(concat(h, ephemeralRaw, iv, new Uint8Array(sealed)));
}

// Whether the installation key vouches for a resident's write key (crypto/key_statements.py): ECDSA P-256 over
// "linli:write-key:v1\0" resident \0 version \0 the base64url public key, the signature as r || s.
const STATEMENT_LABEL = "linli:write-key:v1\u0000";

export async function verifyWriteKey(installationPublicRaw, resident, version, writePublic, signature) {
  if (!signature) {
    return false;
  }
  let installation, raw;
  try {
    installation = await subtle.importKey("raw", installationPublicRaw, { name: "ECDSA", namedCurve: "P-256" },
      false, ["verify"]);
    raw = b64urlDecode(signature);
  } catch {
    return false;
  }
  const statement = utf8.encode(`${STATEMENT_LABEL}${resident}\u0000${version}\u0000${writePublic}`);
  return subtle.verify({ name: "ECDSA", hash: "SHA-256" }, installation, raw, statement);
}

// A voucher's code (crypto/vouchers.py): "LV1." base64url(payload) "." base64url(r || s), ECDSA P-256 by the
// installation key over "linli:voucher:v1\0" payload. Its payload if the installation signed it, else null.
const VOUCHER_PREFIX = "LV1.";
const VOUCHER_LABEL = utf8.encode("linli:voucher:v1\u0000");
const VOUCHER_FIELDS = ["id", "issued_at", "organisation", "points", "reward"];
const MAX_VOUCHER_CHARS = 600;

export async function openVoucher(installationPublicRaw, code) {
  try {
    if (!code.startsWith(VOUCHER_PREFIX) || code.length > MAX_VOUCHER_CHARS) {
      return null;
    }
    const parts = code.slice(VOUCHER_PREFIX.length).split(".");
    if (parts.length !== 2) {
      return null;
    }
    const [body, signature] = parts.map(b64urlDecode);
    const key = await subtle.importKey("raw", installationPublicRaw, { name: "ECDSA", namedCurve: "P-256" }, false,
      ["verify"]);
    const signed = new Uint8Array(VOUCHER_LABEL.length + body.length);
    signed.set(VOUCHER_LABEL);
    signed.set(body, VOUCHER_LABEL.length);
    if (signature.length !== 64 || !(await subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, signature, signed))) {
      return null;
    }
    const payload = JSON.parse(new TextDecoder().decode(body));
    const fields = payload && typeof payload === "object" ? Object.keys(payload).sort() : [];
    return fields.join() === VOUCHER_FIELDS.join() ? payload : null;
  } catch {
    return null; // not base64url, not JSON: not a voucher
  }
}

export async function openSealed(writePrivateKey, context, envelope) {
  // For whoever holds a resident's write key (an ECDH CryptoKey with deriveBits).
  const p = parse(envelope);
  if (p.version !== SEALED_VERSION) {
    throw new EnvelopeError("version", `encrypted field "${context.field}" is not sealed for a write key`);
  }
  const ephemeral = await importPoint(p.ephemeral, "the sealed field's ephemeral key");
  const key = await sealedKey(writePrivateKey, ephemeral, p.ephemeral, "decrypt");
  return JSON.parse(new TextDecoder().decode(await decrypt(key, context, p)));
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

export async function unwrapGrant(devicePrivateKey, grantId, grant,
  { extractable = false, version = null } = {}) {
  // The phone's side of keys.wrap_for_phone: ECDH P-256, HKDF-SHA256, AES-KW. `version`: one of the grant's
  // older keys (kept by a rotation, crypto/keyring.py) instead of its current one.
  const wrapped = version === null || version === grant.key_version
    ? grant.wrapped_key : (grant.older_keys || {})[String(version)];
  if (wrapped === undefined) {
    throw new EnvelopeError("authentication", `the grant holds no key version ${version}`);
  }
  const ephemeral = await subtle.importKey("raw", b64urlDecode(grant.ephemeral_public),
    { name: "ECDH", namedCurve: "P-256" }, false, []);
  const shared = await subtle.deriveBits({ name: "ECDH", public: ephemeral }, devicePrivateKey, 256);
  const hkdf = await subtle.importKey("raw", shared, "HKDF", false, ["deriveBits"]);
  const kek = await subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0),
    info: utf8.encode(GRANT_INFO + grantId) }, hkdf, 256);
  return unwrapDataKey(new Uint8Array(kek), wrapped, { extractable });
}

export function normalise(value) {
  return value.replace(/[ \-\t]/g, "").toUpperCase();
}
