// This phone's key and the residents' keys granted to it (server/security/grants.py): what lets the service
// worker open protected fields with no network. The phone's private key is a non-extractable WebCrypto
// key kept in IndexedDB; it never leaves the browser. The server only ever sees its public half.

import {
  b64urlDecode, b64urlEncode, normalise, openValue, openVoucher, parse, sealFor, unwrapGrant, verifyWriteKey,
} from "../crypto/envelope.js";

const STORE = "keys";
const PINNED = "installation_key"; // beside the phone keys, which are stored by user id ("user:…")

function keyStore() {
  return new Promise((resolve, reject) => {
    // "linli-device" predates the name phone key. Renamed, the old database would stay behind on installed
    // phones holding a private key nothing reads or deletes any more; so the name stays.
    const open = indexedDB.open("linli-device", 1);
    open.onupgradeneeded = () => open.result.createObjectStore(STORE);
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error);
  });
}

async function idb(mode, action) {
  const db = await keyStore();
  try {
    return await new Promise((resolve, reject) => {
      const request = action(db.transaction(STORE, mode).objectStore(STORE));
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  } finally {
    db.close();
  }
}

// The phone's key for `userId`: {id, privateKey} (id: its phone_key document), registering a new one with the
// server if needed (POST /phone-keys, which also issues the grants this user is entitled to). Needs the network
// the first time only.
export async function phoneKey(userId, csrfToken) {
  const stored = await storedPhoneKey(userId);
  if (stored) {
    return stored;
  }
  const pair = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]);
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  const response = await fetch("/phone-keys", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken, Accept: "application/json" },
    body: JSON.stringify({ public_key: b64urlEncode(raw), label: "phone (offline app)" }),
  });
  const answer = await response.json();
  if (!response.ok) {
    // The reason in English for logs; its message key and params say it in the person's language (the sync bar).
    throw Object.assign(new Error(`registering this phone's key: ${answer.reason || response.status}`),
      { key: answer.key, params: answer.params });
  }
  const key = { id: answer.phone_key, privateKey: pair.privateKey };
  await idb("readwrite", (s) => s.put(key, userId));
  return key;
}

// A record stored before phone keys were called so ({device, privateKey}) has no id and names a key the server
// no longer has: it counts as none, and phoneKey registers a new key over it.
export async function storedPhoneKey(userId) {
  const stored = await idb("readonly", (s) => s.get(userId));
  return stored?.id ? stored : null;
}

// Give up this phone's key: revoked on the server if it can be reached (its grants go with it), then dropped here.
export async function forgetPhoneKey(userId, csrfToken) {
  const stored = await storedPhoneKey(userId);
  if (stored) {
    await fetch(`/phone-keys/${stored.id.split(":")[1]}`, {
      method: "DELETE", credentials: "same-origin", headers: { "X-CSRF-Token": csrfToken },
    }).catch(() => null); // offline: the server keeps it until the account's phones are tidied
  }
  await idb("readwrite", (s) => s.delete(userId));
}

// server/security/grants.py grant_id
export function grantId(phoneKeyId, resident, tier) {
  return `key_grant:${phoneKeyId.split(":")[1]}:${resident.split(":")[1]}:${tier}`;
}

export function grantIsUsable(grant, now = new Date()) {
  return !!grant && !grant._deleted && (!grant.expires_at || new Date(grant.expires_at) > now);
}

// Data keys unwrapped from grants, by phone key, grant revision and key version. Unwrapping (ECDH, HKDF, AES-KW)
// is most of what opening a field costs, and a number search offline opens a field of every resident the phone
// holds a grant for (pages.js findByNumber). Non-extractable keys in this worker's memory only; a grant's new
// revision (re-key, rotation) is unwrapped afresh, and callers check a grant is usable (not deleted, not expired).
const unwrapped = new Map();

function dataKeyOf(key, grant, version) {
  const id = `${key.id} ${grant._id} ${grant._rev} ${version}`;
  if (!unwrapped.has(id)) {
    unwrapped.set(id, unwrapGrant(key.privateKey, grant._id, grant, { version }).catch((error) => {
      unwrapped.delete(id);
      throw error;
    }));
  }
  return unwrapped.get(id);
}

// Open `fields` of a resident's document with the grant for `tier`; a field not stored opens as null. Each value
// opens with the key version it names: the grant's current one, or an older one a rotation kept.
export async function openFields(key, grant, resident, fields, tier) {
  const values = {};
  for (const field of fields) {
    const sealed = resident[field];
    if (sealed === undefined || sealed === null) {
      values[field] = null;
      continue;
    }
    const dataKey = await dataKeyOf(key, grant, parse(sealed).keyVersion);
    values[field] = await openValue(dataKey, { doc_id: resident._id, field, tier }, sealed);
  }
  return values;
}

// Which searchable field a typed number is (server/security/firewall.py number_field), or null.
export function numberField(text) {
  const compact = normalise(text);
  return /^\d{17}[\dX]$/.test(compact) ? "id_card" : /^1\d{10}$/.test(compact) ? "phone" : null;
}

// The installation key, pinned at this phone's first sync from /pwa/session.json (server/security/keystore.py):
// what vouches for residents' write keys (crypto/key_statements.py). It never changes, not even with the master
// key, so a session naming another one is not this installation's server: refused, and the phone seals nothing.
export async function pinInstallationKey(offered) {
  const pinned = await idb("readonly", (s) => s.get(PINNED));
  if (pinned && pinned !== offered) {
    throw new Error("the server's installation key is not the one this phone pinned: ask the administrator");
  }
  if (!pinned && offered) {
    await idb("readwrite", (s) => s.put(offered, PINNED));
  }
  return pinned || offered;
}

// server/security/keystore.py data_key_id
function dataKeyId(resident) {
  return `data_key:${resident.split(":")[1]}`;
}

export class UnvouchedKey extends Error {
  constructor(message) {
    super(message);
    this.name = "UnvouchedKey";
  }
}

// Seal a core value (a blood pressure, an allowance note) for a resident with their write key from the replica's
// data_key document, only if the pinned installation key vouches for that key: a key slipped into the replica
// by anyone else gets nothing (UnvouchedKey).
export async function sealForResident(db, resident, context, value) {
  const pinned = await idb("readonly", (s) => s.get(PINNED));
  const record = await db.get(dataKeyId(resident)).catch(() => null);
  const version = record?.core?.version;
  if (!pinned || !record
      || !(await verifyWriteKey(b64urlDecode(pinned), resident, version, record.write_public, record.write_signature))) {
    throw new UnvouchedKey(`the write key of ${resident} is not one the installation vouches for`);
  }
  return sealFor(b64urlDecode(record.write_public), version, context, value);
}

// A voucher's payload if the installation this phone pinned signed its code (crypto/vouchers.py), else null: the
// partner's phone checks a voucher with no network (pages.js redeemPage).
export async function verifiedVoucher(code) {
  const pinned = await idb("readonly", (s) => s.get(PINNED));
  return pinned ? openVoucher(b64urlDecode(pinned), code) : null;
}
