// node --test pwa/tests/: pwa/offline/keys.js, what lets a phone open and seal protected fields with no network:
// its phone key (registered once, forgotten on the server too), the grants it opens residents' fields with, the
// installation key it pins and trusts for write keys and vouchers. Over the shared vectors: tests/vectors/
// phone_keys.json (number fields, grant ids; Python runs them in tests/test_phone_key_vectors.py) and crypto/vectors/
// v1.json (grants, write-key statements, vouchers). IndexedDB is fake-indexeddb, as in the other Node phones.
import "fake-indexeddb/auto";
import { afterEach, test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import * as env from "../crypto/envelope.js";
import * as keys from "../offline/keys.js";

const shared = JSON.parse(await readFile(new URL("../../tests/vectors/phone_keys.json", import.meta.url), "utf8"));
const crypto1 = JSON.parse(await readFile(new URL("../../crypto/vectors/v1.json", import.meta.url), "utf8"));
const [grantVector, rotatedVector] = crypto1.device_grant;
const vouched = crypto1.write_key_statements.find((c) => c.valid);
const voucher = crypto1.vouchers.find((c) => c.payload);

const browserFetch = globalThis.fetch;
afterEach(async () => {
  globalThis.fetch = browserFetch;
  await new Promise((resolve, reject) => {
    const request = indexedDB.deleteDatabase("linli-device"); // each test starts as a new phone
    request.onsuccess = resolve;
    request.onerror = () => reject(request.error);
  });
});

// The server's side of POST /phone-keys and DELETE /phone-keys/{key} (server/web/app.py), recording each request.
function server(answers) {
  const requests = [];
  globalThis.fetch = async (url, options) => {
    requests.push({ url, ...options });
    const [status, body] = answers.shift();
    if (status === null) {
      throw new TypeError("Failed to fetch"); // no network
    }
    return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
  };
  return requests;
}

// The key store as installed phones hold it: the database, store and names keys.js reads must stay these (renamed,
// an installed phone would lose its pinned installation key and its phone key).
function rawStore(action) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open("linli-device", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("keys");
    open.onsuccess = () => {
      const request = action(open.result.transaction("keys", "readwrite").objectStore("keys"));
      request.onsuccess = () => { open.result.close(); resolve(request.result); };
      request.onerror = () => reject(request.error);
    };
    open.onerror = () => reject(open.error);
  });
}

const refusal = async (attempt) => {
  try {
    await attempt();
  } catch (error) {
    return error;
  }
  assert.fail("went through, but must be refused");
};

test("a typed number is the field the server says it is (shared vectors)", () => {
  for (const { text, field } of shared.number_field) {
    assert.equal(keys.numberField(text), field, text);
  }
});

test("a grant's id is the server's (shared vectors)", () => {
  for (const c of shared.grant_id) {
    assert.equal(keys.grantId(c.phone_key, c.resident, c.tier), c.id);
  }
});

test("a grant is usable unless missing, deleted or expired", () => {
  const now = new Date("2026-03-01T08:00:00+08:00");
  const grant = { _id: "key_grant:k:r:core" };
  assert.equal(keys.grantIsUsable(grant, now), true);
  assert.equal(keys.grantIsUsable({ ...grant, expires_at: "2026-03-01T08:00:01+08:00" }, now), true);
  assert.equal(keys.grantIsUsable({ ...grant, expires_at: "2026-03-01T08:00:00+08:00" }, now), false);
  assert.equal(keys.grantIsUsable({ ...grant, expires_at: "2026-03-01T00:00:00+00:00" }, now), false);
  assert.equal(keys.grantIsUsable({ ...grant, _deleted: true }, now), false);
  assert.equal(keys.grantIsUsable(null, now), false);
  assert.equal(keys.grantIsUsable(undefined, now), false);
  // Without `now`, the time of the call.
  const hour = 3600 * 1000;
  assert.equal(keys.grantIsUsable({ ...grant, expires_at: new Date(Date.now() + hour).toISOString() }), true);
  assert.equal(keys.grantIsUsable({ ...grant, expires_at: new Date(Date.now() - hour).toISOString() }), false);
});

test("a phone registers its key once, sending only the public half", async () => {
  const requests = server([[201, { phone_key: "phone_key:k1", grants: 2 }]]);
  const key = await keys.phoneKey("user:u1", "csrf-1");
  assert.equal(key.id, "phone_key:k1");
  assert.equal(key.privateKey.type, "private");
  assert.equal(key.privateKey.extractable, false);
  assert.equal(requests.length, 1);
  const [sent] = requests;
  assert.equal(sent.url, "/phone-keys");
  assert.equal(sent.method, "POST");
  assert.equal(sent.credentials, "same-origin");
  assert.deepEqual(sent.headers, { "Content-Type": "application/json", "X-CSRF-Token": "csrf-1",
    Accept: "application/json" });
  const body = JSON.parse(sent.body);
  assert.deepEqual(Object.keys(body).sort(), ["label", "public_key"]);
  assert.equal(body.label, "phone (offline app)");
  const publicKey = await crypto.subtle.importKey("raw", env.b64urlDecode(body.public_key),
    { name: "ECDH", namedCurve: "P-256" }, true, []);
  assert.equal(publicKey.type, "public");

  // Kept: the next call, and a worker started later, find it with no network.
  const again = await keys.phoneKey("user:u1", "csrf-1");
  assert.equal(again.id, "phone_key:k1");
  assert.equal(requests.length, 1);
  assert.equal((await keys.storedPhoneKey("user:u1")).id, "phone_key:k1");
  assert.equal(await keys.storedPhoneKey("user:u2"), null);
});

test("a refused registration says why and stores nothing", async () => {
  server([[403, { error: "forbidden", reason: "this account may hold no phone key" }], [400, {}]]);
  const error = await refusal(() => keys.phoneKey("user:u1", "csrf-1"));
  assert.equal(error.message, "registering this phone's key: this account may hold no phone key");
  assert.equal(await keys.storedPhoneKey("user:u1"), null);
  assert.equal((await refusal(() => keys.phoneKey("user:u1", "csrf-1"))).message,
    "registering this phone's key: 400");
});

test("a refusal's message key and params come with the error, for the sync bar to say it in the person's language",
  async () => {
    server([[400, { error: "bad_request", reason: "at most 5 phones per account; remove one first",
      key: "err_phone_keys_full", params: { max: 5 } }]]);
    const error = await refusal(() => keys.phoneKey("user:u1", "csrf-1"));
    assert.deepEqual([error.key, error.params], ["err_phone_keys_full", { max: 5 }]);
    assert.equal(error.message, "registering this phone's key: at most 5 phones per account; remove one first");
  });

test("a key stored before phone keys had ids counts as none and is registered over", async () => {
  await rawStore((s) => s.put({ device: "device:old", privateKey: null }, "user:u1"));
  assert.equal(await keys.storedPhoneKey("user:u1"), null);
  const requests = server([[201, { phone_key: "phone_key:k2" }]]);
  assert.equal((await keys.phoneKey("user:u1", "t")).id, "phone_key:k2");
  assert.equal(requests.length, 1);
});

test("forgetting a phone key revokes it on the server, and drops it here even offline", async () => {
  server([[201, { phone_key: "phone_key:k1" }], [201, { phone_key: "phone_key:k2" }]]);
  await keys.phoneKey("user:u1", "t");
  await keys.phoneKey("user:u2", "t");
  const requests = server([[204, null], [null, null]]);
  await keys.forgetPhoneKey("user:u1", "csrf-2");
  assert.deepEqual(requests[0], { url: "/phone-keys/k1", method: "DELETE", credentials: "same-origin",
    headers: { "X-CSRF-Token": "csrf-2" } });
  assert.equal(await keys.storedPhoneKey("user:u1"), null);
  assert.equal((await keys.storedPhoneKey("user:u2")).id, "phone_key:k2");
  await keys.forgetPhoneKey("user:u2", "csrf-2"); // no network
  assert.equal(await keys.storedPhoneKey("user:u2"), null);
  assert.equal(requests.length, 2);
  await keys.forgetPhoneKey("user:u3", "csrf-2"); // none held: nothing to revoke
  assert.equal(requests.length, 2);
});

// A phone key holding the vectors' device key, and a grant document for the vector.
const phoneKeyOf = async (vector, id = "phone_key:k1") => ({ id, privateKey: await crypto.subtle.importKey("jwk",
  { ...vector.device_private_jwk, ext: false }, { name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]) });
const grantOf = (vector, rev = "1-a") => ({ key_version: 1, ...vector, _id: vector.grant_id, _rev: rev });
const residentId = "resident:c1-g01-0001-1";
const sealedWith = (keyB64, version, field, value) =>
  env.seal(env.b64urlDecode(keyB64), version, { doc_id: residentId, field, tier: "core" }, value);

test("a grant opens a resident's fields with the key version each names; a field not stored opens as null",
  async () => {
    const key = await phoneKeyOf(rotatedVector);
    const resident = { _id: residentId, blood_pressure: await sealedWith(rotatedVector.key, 2, "blood_pressure", "150/95"),
      allowance: await sealedWith(rotatedVector.older_key, 1, "allowance", { note: "低保" }), photo: null };
    assert.deepEqual(await keys.openFields(key, grantOf(rotatedVector), resident,
      ["blood_pressure", "allowance", "photo", "phone"], "core"),
    { blood_pressure: "150/95", allowance: { note: "低保" }, photo: null, phone: null });
  });

test("an unwrapped key serves only its phone key and its grant's revision", async () => {
  const key = await phoneKeyOf(grantVector);
  const grant = grantOf(grantVector);
  const resident = { _id: residentId, pulse: await sealedWith(grantVector.key, 1, "pulse", 72) };
  assert.deepEqual(await keys.openFields(key, grant, resident, ["pulse"], "core"), { pulse: 72 });
  // Another phone key (another private key) with the same grant opens nothing.
  const other = { ...await phoneKeyOf(grantVector, "phone_key:k2"),
    privateKey: (await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]))
      .privateKey };
  assert.ok(await refusal(() => keys.openFields(other, grant, resident, ["pulse"], "core")));
  // The grant's next revision (re-keyed, here to a key this phone cannot unwrap) is unwrapped afresh.
  const rekeyed = { ...grant, _rev: "2-b", wrapped_key: rotatedVector.wrapped_key };
  assert.ok(await refusal(() => keys.openFields(key, rekeyed, resident, ["pulse"], "core")));
});

// A number search offline opens a field of every resident the phone holds a grant for (pages.js findByNumber):
// the unwrap (ECDH, HKDF: two deriveBits) is done once per grant revision, not once per field or search.
test("a grant's key is unwrapped once for every field and search it opens", async () => {
  const key = await phoneKeyOf(grantVector);
  const grant = grantOf(grantVector, "4-d");
  const resident = { _id: residentId, pulse: await sealedWith(grantVector.key, 1, "pulse", 72),
    weight: await sealedWith(grantVector.key, 1, "weight", 60) };
  const deriveBits = crypto.subtle.deriveBits;
  let derived = 0;
  crypto.subtle.deriveBits = function counted(...args) {
    derived += 1;
    return deriveBits.apply(this, args);
  };
  try {
    assert.deepEqual(await keys.openFields(key, grant, resident, ["pulse", "weight"], "core"), { pulse: 72, weight: 60 });
    assert.deepEqual(await keys.openFields(key, grant, resident, ["pulse"], "core"), { pulse: 72 });
  } finally {
    delete crypto.subtle.deriveBits;
  }
  assert.equal(crypto.subtle.deriveBits, deriveBits);
  assert.equal(derived, 2);
});

test("a grant that failed to unwrap is tried again next time", async () => {
  const key = await phoneKeyOf(grantVector);
  const resident = { _id: residentId, pulse: await sealedWith(grantVector.key, 1, "pulse", 72) };
  const broken = { ...grantOf(grantVector, "3-c"), wrapped_key: rotatedVector.wrapped_key };
  assert.ok(await refusal(() => keys.openFields(key, broken, resident, ["pulse"], "core")));
  assert.deepEqual(await keys.openFields(key, grantOf(grantVector, "3-c"), resident, ["pulse"], "core"), { pulse: 72 });
});

test("the installation key is pinned at the first sync, and another one is refused", async () => {
  assert.equal(await keys.pinInstallationKey(undefined), undefined); // a session without one pins nothing
  assert.deepEqual(await rawStore((s) => s.getAllKeys()), []);
  assert.equal(await keys.pinInstallationKey("KEY-A"), "KEY-A");
  assert.equal(await rawStore((s) => s.get("installation_key")), "KEY-A");
  assert.equal(await keys.pinInstallationKey("KEY-A"), "KEY-A");
  for (const other of ["KEY-B", undefined]) { // a session naming another key, or none once one is pinned
    const error = await refusal(() => keys.pinInstallationKey(other));
    assert.equal(error.message,
      "the server's installation key is not the one this phone pinned: ask the administrator");
  }
  assert.equal(await keys.pinInstallationKey("KEY-A"), "KEY-A");
});

// The replica's data_key documents, as db.get gives them (a missing one is refused, as PouchDB refuses it).
const replica = (docs) => ({ get: async (id) => {
  if (!(id in docs)) {
    throw Object.assign(new Error("missing"), { status: 404 });
  }
  return docs[id];
} });
const dataKeyDoc = (c, changes = {}) => ({ [`data_key:${c.resident.split(":")[1]}`]: {
  core: { version: c.key_version }, write_public: c.write_public, write_signature: c.signature, ...changes } });

test("a core value is sealed for a resident's write key only if the pinned installation vouches for it", async () => {
  const context = { doc_id: "health_record:h1", field: "blood_pressure", tier: "core" };
  const db = replica(dataKeyDoc(vouched));
  // Nothing pinned yet: nothing sealed.
  assert.ok(await refusal(() => keys.sealForResident(db, vouched.resident, context, "150/95"))
    instanceof keys.UnvouchedKey);
  await keys.pinInstallationKey(vouched.installation_public);
  const sealed = await keys.sealForResident(db, vouched.resident, context, "150/95");
  const parsed = env.parse(sealed);
  assert.equal(parsed.version, 2); // sealed for a write key
  assert.equal(parsed.keyVersion, vouched.key_version);
  // A record without its core key's version names no key the installation vouched for.
  const { core, ...coreless } = dataKeyDoc(vouched)[`data_key:${vouched.resident.split(":")[1]}`];
  assert.equal(core.version, vouched.key_version);
  const noCore = replica({ [`data_key:${vouched.resident.split(":")[1]}`]: coreless });
  assert.ok(await refusal(() => keys.sealForResident(noCore, vouched.resident, context, "x")) instanceof keys.UnvouchedKey);
  // Another resident's statement, a key with no record, an attacker's key, another version: refused.
  const refused = [
    [replica(dataKeyDoc(vouched)), "resident:c1-g01-0003-1"],
    [replica({}), vouched.resident],
    ...crypto1.write_key_statements.filter((c) => !c.valid && c.installation_public === vouched.installation_public
      && c.resident === vouched.resident).map((c) => [replica(dataKeyDoc(c)), c.resident]),
  ];
  assert.ok(refused.length >= 4);
  for (const [store, resident] of refused) {
    const error = await refusal(() => keys.sealForResident(store, resident, context, "150/95"));
    assert.ok(error instanceof keys.UnvouchedKey, String(error));
    assert.equal(error.name, "UnvouchedKey");
    assert.equal(error.message, `the write key of ${resident} is not one the installation vouches for`);
  }
});

test("a voucher is checked against the pinned installation key", async () => {
  assert.equal(await keys.verifiedVoucher(voucher.code), null); // nothing pinned: nothing vouched for
  await keys.pinInstallationKey(voucher.installation_public);
  for (const c of crypto1.vouchers.filter((v) => v.installation_public === voucher.installation_public)) {
    const payload = await keys.verifiedVoucher(c.code);
    assert.deepEqual(payload && Object.fromEntries(Object.entries(payload).sort()),
      c.payload && Object.fromEntries(Object.entries(c.payload).sort()), c.name);
  }
});

// The key store failing (an old database of a later version, a transaction aborted: storage full, the browser
// clearing site data) is an error the caller shows, never a promise that waits forever.
test("a key database that cannot be opened is an error, not a wait", { timeout: 10000 }, async () => {
  await new Promise((resolve, reject) => {
    const open = indexedDB.open("linli-device", 2);
    open.onsuccess = () => { open.result.close(); resolve(); };
    open.onerror = () => reject(open.error);
  });
  assert.equal((await refusal(() => keys.storedPhoneKey("user:u1"))).name, "VersionError");
});

test("a key store request that fails is an error, not a wait", { timeout: 10000 }, async () => {
  const store = IDBObjectStore.prototype;
  const get = store.get;
  store.get = function aborted(...args) {
    const request = get.apply(this, args);
    this.transaction.abort();
    return request;
  };
  try {
    assert.equal((await refusal(() => keys.storedPhoneKey("user:u1"))).name, "AbortError");
  } finally {
    store.get = get;
  }
});
