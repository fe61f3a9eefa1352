// node --test pwa/tests/: pwa/sync/replica.js, how the phone's replica talks to the sync gateway: its credentials,
// photos the server has sent as stubs (and whole again where a stub is refused), what left the user's scope purged
// (never deleted), the urgent kinds pushed first, pulled documents not pushed back. The phone is real PouchDB on
// fake-indexeddb (as in sync_phone.mjs); the server's side is a PouchDB database in memory, and the gateway's own
// endpoints (_linli_scope, _linli_purges) are answered by `gateway` below. The gateway itself is tested with a real
// phone in tests/test_sync_*.py.
import "fake-indexeddb/auto";
import { test } from "node:test";
import assert from "node:assert/strict";
import PouchDB from "pouchdb";
import IndexedDBAdapter from "pouchdb-adapter-indexeddb";
import MemoryAdapter from "pouchdb-adapter-memory";
import { pushUrgent, purgeOutOfScope, remoteOptions, syncOnce } from "../sync/replica.js";

PouchDB.plugin(IndexedDBAdapter);
PouchDB.plugin(MemoryAdapter);
globalThis.navigator ??= { userAgent: "Node" }; // read by PouchDB's indexeddb adapter, as in sync_phone.mjs
globalThis.self ??= globalThis;

let databases = 0;
const phone = () => new PouchDB(`phone-${++databases}`, { adapter: "indexeddb" });

// The server's database, and the gateway's endpoints on it: the scope's name, and which of the ids asked about
// left it (`outside`). Every request to them is recorded.
function server({ scope = "scope-1", outside = new Set() } = {}) {
  const db = new PouchDB(`server-${++databases}`, { adapter: "memory" });
  const state = { scope, outside, requests: [], refuse: null };
  db.fetch = async (path, options) => {
    const body = options.body === undefined ? undefined : JSON.parse(options.body);
    state.requests.push({ path, method: options.method, body, contentType: options.headers.get("Content-Type"),
      accept: options.headers.get("Accept") });
    if (state.refuse) {
      return Response.json({ error: "forbidden", reason: state.refuse }, { status: 403 });
    }
    if (path === "_linli_scope") {
      return Response.json({ scope: state.scope });
    }
    assert.equal(path, "_linli_purges");
    return Response.json({ purge: body.ids.filter((id) => state.outside.has(id)) });
  };
  return { db, state };
}

// ---- credentials

test("a cookie session sends its CSRF token, a gateway or script its device token", () => {
  assert.deepEqual(remoteOptions({ csrfToken: "c1" }).headers, { "X-CSRF-Token": "c1" });
  assert.deepEqual(remoteOptions({ csrfToken: "c1", deviceToken: "d1" }).headers, { Authorization: "Bearer d1" });
});

test("requests go through the page's fetch unless one is given; `stubs: false` leaves them as they are", async () => {
  const browserFetch = globalThis.fetch;
  const seen = [];
  globalThis.fetch = async (url) => {
    seen.push(url);
    return new Response("{}");
  };
  try {
    await remoteOptions({ csrfToken: "c" }).fetch("http://phone/sync/main/_changes", { method: "GET" });
  } finally {
    globalThis.fetch = browserFetch;
  }
  assert.deepEqual(seen, ["http://phone/sync/main/_changes"]);
  const given = async () => new Response("{}");
  assert.equal(remoteOptions({ csrfToken: "c", fetch: given, stubs: false }).fetch, given);
  assert.notEqual(remoteOptions({ csrfToken: "c", fetch: given }).fetch, given);
});

// ---- photos the server has go as stubs

const photo = (revpos, data = "aGVsbG8=") => ({ content_type: "image/jpeg", digest: `md5-${revpos}${data}`, revpos,
  data });
const write = (docs, more = {}) => ({ method: "POST", body: JSON.stringify({ docs, new_edits: false, ...more }) });
const BULK = "http://phone/sync/main/_bulk_docs";

// A fetch answering each request with the next of `answers` (a function of the docs sent, or a Response).
function recording(answers) {
  const sent = [];
  const fetch = async (url, options) => {
    sent.push({ url, options });
    const next = answers.shift();
    return typeof next === "function" ? next(JSON.parse(options.body).docs) : next;
  };
  return { sent, fetch: remoteOptions({ csrfToken: "c", fetch }).fetch };
}
const allOk = (docs) => Response.json(docs.map((doc) => ({ id: doc._id, rev: doc._rev, ok: true })), { status: 201 });

test("a photo older than the revision pushed goes as a stub; newer ones and stubs go as they are", async () => {
  const doc = { _id: "visit:v1", _rev: "3-abc", _attachments: { "a.jpg": photo(1), "b.jpg": photo(2, "aGk="),
    "c.jpg": photo(3, "aGVsbA=="), "d.jpg": { stub: true, digest: "md5-d", revpos: 1 },
    "e.jpg": { content_type: "image/jpeg", revpos: 1, data: "YWJj" } } };
  const plain = { _id: "visit:v2", _rev: "2-def", note: "no photo" };
  const { sent, fetch } = recording([allOk]);
  const response = await fetch(BULK, write([doc, plain], { extra: 1 }));
  assert.equal(response.status, 201);
  assert.deepEqual(await response.json(), [{ id: "visit:v1", rev: "3-abc", ok: true },
    { id: "visit:v2", rev: "2-def", ok: true }]);
  assert.equal(sent.length, 1);
  const body = JSON.parse(sent[0].options.body);
  assert.equal(body.new_edits, false);
  assert.equal(body.extra, 1);
  assert.equal(sent[0].options.method, "POST");
  assert.deepEqual(body.docs[1], plain);
  assert.deepEqual(body.docs[0]._attachments, {
    "a.jpg": { stub: true, digest: "md5-1aGVsbG8=", content_type: "image/jpeg", revpos: 1, length: 5 },
    "b.jpg": { stub: true, digest: "md5-2aGk=", content_type: "image/jpeg", revpos: 2, length: 2 },
    "c.jpg": photo(3, "aGVsbA=="), // changed in this revision: sent whole
    "d.jpg": { stub: true, digest: "md5-d", revpos: 1 },
    "e.jpg": { content_type: "image/jpeg", revpos: 1, data: "YWJj" }, // no digest to name it by: whole
  });
  assert.equal(body.docs[0].note, doc.note);
});

test("a stub's length is its photo's bytes, padding or not", async () => {
  for (const [data, length] of [["YWJj", 3], ["YWJjZA==", 4], ["YWJjZGU=", 5], ["YWJjZGVm", 6]]) {
    const { sent, fetch } = recording([allOk]);
    await fetch(BULK, write([{ _id: "x", _rev: "2-a", _attachments: { p: photo(1, data) } }]));
    assert.equal(JSON.parse(sent[0].options.body).docs[0]._attachments.p.length, length, data);
  }
});

test("what is not a replication write with an older photo goes as it is", async () => {
  const older = [{ _id: "visit:v1", _rev: "3-abc", _attachments: { "a.jpg": photo(1) } }];
  const cases = [
    ["GET", BULK, { method: "GET" }],
    ["no method", BULK, { body: write(older).body }],
    ["another path", "http://phone/sync/main/_revs_diff", write(older)],
    ["new_edits true", BULK, write(older, { new_edits: true })],
    ["no docs list", BULK, { method: "POST", body: JSON.stringify({ docs: { 0: older[0] }, new_edits: false }) }],
    ["a body that is no string", BULK, { method: "POST", body: new Blob([write(older).body]) }],
    ["no older photo", BULK, write([{ _id: "v", _rev: "1-a", _attachments: { p: photo(1) } }])],
    ["a relative path", "/sync/main/_local/x", write(older)],
  ];
  for (const [name, url, options] of cases) {
    const answer = new Response("[]");
    const { sent, fetch } = recording([answer]);
    assert.equal(await fetch(url, options), answer, name);
    assert.equal(sent.length, 1, name);
    assert.equal(sent[0].options, options, name);
  }
  const { sent, fetch } = recording([allOk]);
  await fetch("/sync/main/_bulk_docs", write(older)); // a path relative to the page is one too
  assert.equal(JSON.parse(sent[0].options.body).docs[0]._attachments["a.jpg"].stub, true);
  assert.equal(sent[0].url, "/sync/main/_bulk_docs");
});

test("a document whose stub is refused is sent again whole, and PouchDB gets one answer for each", async () => {
  const docs = [1, 2, 3].map((n) => ({ _id: `visit:v${n}`, _rev: "2-a", _attachments: { p: photo(1) } }));
  const plain = { _id: "visit:v4", _rev: "1-a" };
  const refusing = (ids) => (sent) => Response.json(sent.map((doc) => (ids.includes(doc._id)
    ? { id: doc._id, error: "invalid", reason: "stub of a photo the server lacks" } : { id: doc._id, ok: true })),
  { status: 201 });
  const { sent, fetch } = recording([refusing(["visit:v2", "visit:v4"]), allOk]);
  const response = await fetch(BULK, write([...docs, plain]));
  assert.equal(sent.length, 2);
  const again = JSON.parse(sent[1].options.body);
  assert.deepEqual(again, { docs: [docs[1]], new_edits: false }); // whole, only the one refused for its stub
  assert.equal(sent[1].options.method, "POST");
  assert.equal(response.status, 201);
  assert.equal(response.headers.get("Content-Type"), "application/json");
  assert.deepEqual(await response.json(), [{ id: "visit:v1", ok: true }, { id: "visit:v3", ok: true },
    { id: "visit:v4", error: "invalid", reason: "stub of a photo the server lacks" },
    { id: "visit:v2", rev: "2-a", ok: true }]);
});

test("a batch refused whole is answered as refused, without a second try", async () => {
  const docs = [{ _id: "visit:v1", _rev: "2-a", _attachments: { p: photo(1) } }];
  const lapsed = Response.json({ error: "unauthorized" }, { status: 401 });
  const first = recording([lapsed]);
  assert.equal(await first.fetch(BULK, write(docs)), lapsed);
  assert.equal(first.sent.length, 1);
  const refused = (sent) => Response.json(sent.map((doc) => ({ id: doc._id, error: "invalid" })), { status: 201 });
  const down = new Response("gateway gone", { status: 502 });
  const second = recording([refused, down]);
  assert.equal(await second.fetch(BULK, write(docs)), down);
  assert.equal(second.sent.length, 2);
  const ok = recording([refused, (sent) => Response.json(sent.map((doc) => ({ id: doc._id, ok: true })),
    { status: 200 })]);
  assert.equal((await ok.fetch(BULK, write(docs))).status, 201);
});

// ---- purges

test("purging needs the indexeddb adapter: the others cannot purge", async () => {
  const { db } = server();
  const memory = new PouchDB(`memory-${++databases}`, { adapter: "memory" });
  memory.purge = async () => null;
  for (const local of [memory, Object.assign(phone(), { purge: undefined })]) {
    await assert.rejects(purgeOutOfScope(local, db), { message: "local purges need PouchDB's indexeddb adapter" });
  }
});

test("what left the scope is purged from the phone, every leaf of it, never deleted", async () => {
  const local = phone();
  const { db, state } = server({ outside: new Set(["household:h2", "visit:v3"]) });
  await local.bulkDocs([{ _id: "household:h1" }, { _id: "household:h2" }, { _id: "visit:v3" }]);
  // visit:v3 in conflict: two leaves.
  await local.bulkDocs([{ _id: "visit:v3", _rev: "1-zzz", n: 2 }], { new_edits: false });
  const purged = await purgeOutOfScope(local, db, { now: 1000 });
  assert.deepEqual(purged.sort(), ["household:h2", "visit:v3"]);
  assert.deepEqual((await local.allDocs()).rows.map((r) => r.id), ["household:h1"]);
  await assert.rejects(local.get("visit:v3", { open_revs: "all" }), { status: 404 });
  assert.deepEqual(state.requests.map((r) => [r.path, r.method]), [["_linli_scope", "GET"], ["_linli_purges", "POST"]]);
  assert.deepEqual(state.requests[1].body, { ids: ["household:h1", "household:h2", "visit:v3"] });
  assert.equal(state.requests[0].body, undefined);
  for (const r of state.requests) {
    assert.equal(r.contentType, "application/json");
    assert.equal(r.accept, "application/json");
  }
  const seen = await local.get("_local/linli_scope");
  assert.equal(seen.scope, "scope-1");
  assert.equal(seen.checked_at, 1000);
});

test("an unchanged scope is checked again only once a day has passed", async () => {
  const local = phone();
  const { db, state } = server({ outside: new Set(["household:h1"]) });
  await purgeOutOfScope(local, db, { now: 0 }); // nothing held yet: nothing to ask about
  assert.deepEqual(state.requests.map((r) => r.path), ["_linli_scope"]);
  await local.put({ _id: "household:h1" });
  const day = 24 * 3600 * 1000;
  assert.deepEqual(await purgeOutOfScope(local, db, { now: day - 1 }), []);
  assert.deepEqual(state.requests.map((r) => r.path), ["_linli_scope", "_linli_scope"]);
  assert.deepEqual(await purgeOutOfScope(local, db, { now: day }), ["household:h1"]);
  assert.equal((await local.get("_local/linli_scope")).checked_at, day);
  // A scope changed: checked at once.
  await local.put({ _id: "household:h2" });
  state.outside.add("household:h2");
  assert.deepEqual(await purgeOutOfScope(local, db, { now: day + 1 }), []);
  state.scope = "scope-2";
  assert.deepEqual(await purgeOutOfScope(local, db, { now: day + 2 }), ["household:h2"]);
  assert.equal((await local.get("_local/linli_scope")).scope, "scope-2");
});

test("the gateway's refusal says which request and why", async () => {
  const { db, state } = server();
  state.refuse = "session lapsed";
  await assert.rejects(purgeOutOfScope(phone(), db),
    { message: "sync gateway _linli_scope: forbidden: session lapsed" });
});

// ---- the urgent kinds first

test("the phone's own urgent writes go first, at their unsent revision, without photos", async () => {
  const local = phone();
  const { db } = server();
  const sos = await local.put({ _id: "alert:a1", type: "alert", status: "acknowledged" });
  const again = await local.put({ _id: "alert:a1", _rev: sos.rev, type: "alert", status: "resolved" });
  const withPhoto = await local.put({ _id: "alert:a2", type: "alert",
    _attachments: { p: { content_type: "image/jpeg", data: "aGVsbG8=" } } });
  const visit = await local.put({ _id: "visit:v1", type: "visit" });
  await local.put({ _id: "alert:a3", type: "alert" }); // already on the server: not among the unsent
  const unsent = { "alert:a1": sos.rev, "alert:a2": withPhoto.rev, "visit:v1": visit.rev, "alert:gone": "1-x" };
  const writes = [];
  const bulkDocs = db.bulkDocs.bind(db);
  db.bulkDocs = (body, ...rest) => {
    writes.push(body);
    return bulkDocs(body, ...rest);
  };
  await pushUrgent(local, db, unsent, { types: ["alert"] });
  assert.equal(writes.length, 1);
  assert.equal(writes[0].new_edits, false);
  assert.deepEqual(writes[0].docs[0]._revisions.ids.length, 1); // with its history (revs: true)
  assert.deepEqual((await db.allDocs()).rows.map((r) => r.id), ["alert:a1"]);
  const onServer = await db.get("alert:a1", { revs: true });
  assert.equal(onServer._rev, sos.rev); // the revision named unsent, not the phone's latest
  assert.notEqual(onServer._rev, again.rev);
  assert.equal(onServer.status, "acknowledged");
  // Nothing urgent: nothing sent.
  assert.deepEqual(await pushUrgent(local, db, {}, { types: ["alert"] }), []);
  assert.deepEqual(await pushUrgent(local, db, { "visit:v1": visit.rev }, { types: ["alert"] }), []);
  assert.equal(writes.length, 1);
});

// ---- one round of sync

test("a new phone pulls everything and keeps the scope it read before, with no purge check", async () => {
  const local = phone();
  const { db, state } = server({ outside: new Set(["household:h1"]) });
  await db.bulkDocs([{ _id: "household:h1", type: "household" }, { _id: "alert:a1", type: "alert" }]);
  await local.put({ _id: "visit:v9", type: "visit" });
  const before = Date.now();
  const { push, pull, purged } = await syncOnce(local, db);
  assert.deepEqual(purged, []);
  assert.equal(push.docs_written, 1);
  assert.equal(pull.docs_written, 2);
  assert.deepEqual(state.requests.map((r) => r.path), ["_linli_scope"]);
  const seen = await local.get("_local/linli_scope");
  assert.equal(seen.scope, "scope-1");
  assert.ok(seen.checked_at >= before && seen.checked_at <= Date.now());
  // The next round checks the scope, and purges once it changed.
  state.scope = "scope-2";
  const next = await syncOnce(local, db);
  assert.deepEqual(next.purged, ["household:h1"]);
  assert.deepEqual(state.requests.map((r) => r.path), ["_linli_scope", "_linli_scope", "_linli_purges"]);
});

test("the urgent kinds come down first, then the rest", async () => {
  const local = phone();
  const { db } = server();
  await db.bulkDocs([{ _id: "alert:a1", type: "alert" }, { _id: "household:h1", type: "household" }]);
  let atFirst = null;
  await syncOnce(local, db, { first: { types: ["alert"], filter: (doc) => doc.type === "alert" },
    onFirst: async () => { atFirst = (await local.allDocs()).rows.map((r) => r.id); } });
  assert.deepEqual(atFirst, ["alert:a1"]);
  assert.deepEqual((await local.allDocs()).rows.map((r) => r.id), ["alert:a1", "household:h1"]);
});

// The order in which documents reach the phone: the ids each pull wrote, pull by pull (PouchDB's "change" events).
function pullsInto(local) {
  const pulls = [];
  const from = local.replicate.from.bind(local.replicate);
  local.replicate.from = (remote, options) => {
    const written = [];
    pulls.push({ options, written });
    const replication = from(remote, options);
    replication.on("change", (info) => written.push(...info.docs.map((doc) => doc._id)));
    return replication;
  };
  return pulls;
}

const ALERTS = { types: ["alert"], filter: (doc) => doc.type === "alert" };
const LIST = { types: ["household"], filter: (doc) => doc.type === "household" };

test("a new phone's household list comes after the urgent kinds and before the rest; `rest` begins once the urgent "
  + "kinds are in, and the rest waits for it", async () => {
  const local = phone();
  const { db } = server();
  await db.bulkDocs([{ _id: "alert:a1", type: "alert" }, { _id: "household:h1", type: "household" },
                     { _id: "visit:v1", type: "visit" }]);
  const pulls = pullsInto(local);
  let registered = null;
  let heldWhenBegun = null;
  const rest = async () => {
    heldWhenBegun = (await local.allDocs()).rows.map((row) => row.id);
    return new Promise((resolve) => { registered = resolve; });
  };
  const syncing = syncOnce(local, db, { first: ALERTS, list: LIST, rest });
  while (pulls.length < 2 || !(await local.get("household:h1").catch(() => null))) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  await new Promise((resolve) => setTimeout(resolve, 50)); // the rest would have begun by now, were it free to
  assert.deepEqual(heldWhenBegun, ["alert:a1"], "`rest` begun before the urgent kinds were in, or after the list");
  assert.equal(pulls.length, 2, "the rest was pulled before `rest` settled");
  assert.equal(await local.get("visit:v1").catch(() => null), null);
  registered();
  await syncing;
  assert.deepEqual(pulls.map((pull) => pull.written), [["alert:a1"], ["household:h1"], ["visit:v1"]]);
});

// PouchDB's push, to the server: replicate.to calls made (the replicator's own).
function pushesFrom(local) {
  const pushes = [];
  const to = local.replicate.to.bind(local.replicate);
  local.replicate.to = (remote, options) => {
    pushes.push(options);
    return to(remote, options);
  };
  return pushes;
}

test("a new phone with nothing of its own pushes nothing in its first sync; its next one sends what it wrote since",
  async () => {
    const local = phone();
    const { db } = server();
    await db.bulkDocs([{ _id: "alert:a1", type: "alert" }, { _id: "household:h1", type: "household" }]);
    const pushes = pushesFrom(local);
    const asked = askedAbout(db);
    const { push, pull } = await syncOnce(local, db, { first: ALERTS, list: LIST, own: new Set() });
    assert.equal(push, null);
    assert.equal(pushes.length, 0);
    assert.deepEqual(asked, []);
    assert.equal(pull.ok, true);
    const mine = await local.put({ _id: "visit:v1", type: "visit" });
    const next = await syncOnce(local, db, { first: ALERTS, own: new Set(["visit:v1"]) });
    assert.equal(next.push.docs_written, 1);
    assert.deepEqual(asked, ["visit:v1"]); // what the first sync pulled is not asked about
    assert.equal((await db.get("visit:v1"))._rev, mine.rev);
  });

test("a new phone holding writes of its own (its first sync never finished) pushes them before the rest", async () => {
  const local = phone();
  const { db } = server();
  await db.bulkDocs([{ _id: "household:h1", type: "household" }, { _id: "visit:v2", type: "visit" }]);
  const mine = await local.put({ _id: "visit:v1", type: "visit" }); // written offline; no sync has finished
  const pulls = pullsInto(local);
  const pushed = [];
  const bulkDocs = db.bulkDocs.bind(db);
  db.bulkDocs = (...args) => {
    pushed.push(pulls.length);
    return bulkDocs(...args);
  };
  const { push } = await syncOnce(local, db, { list: LIST, own: new Set(["visit:v1"]) });
  assert.equal(push.docs_written, 1);
  assert.deepEqual(pushed, [1], "pushed after the list, before the rest");
  assert.equal((await db.get("visit:v1"))._rev, mine.rev);
  assert.deepEqual(pulls.map((pull) => pull.written), [["household:h1"], ["visit:v2"]]);
});

test("a phone that has synced before pulls no household list of its own: only the urgent kinds, then the rest",
  async () => {
    const local = phone();
    const { db } = server();
    await syncOnce(local, db);
    await db.bulkDocs([{ _id: "alert:a1", type: "alert" }, { _id: "household:h1", type: "household" }]);
    const pulls = pullsInto(local);
    await syncOnce(local, db, { first: ALERTS, list: LIST });
    assert.deepEqual(pulls.map((pull) => pull.written), [["alert:a1"], ["household:h1"]]);
    assert.equal(pulls[1].options.filter, undefined);
  });

test("pulls ask for 500 documents at a time, not PouchDB's 100", async () => {
  const local = phone();
  const { db } = server();
  await db.bulkDocs([{ _id: "household:h1", type: "household" }]);
  const pulls = pullsInto(local);
  const asked = [];
  const changes = db.changes.bind(db);
  db.changes = (options) => {
    asked.push(options.limit);
    return changes(options);
  };
  await syncOnce(local, db, { first: ALERTS, list: LIST });
  assert.deepEqual(pulls.map((pull) => pull.options.batch_size), [500, 500, 500]);
  assert.ok(asked.length && asked.every((limit) => limit === 500), JSON.stringify(asked));
});

// The server's side asked which revisions it lacks (PouchDB's revsDiff, the gateway's _revs_diff): the ids asked about.
function askedAbout(db) {
  const asked = [];
  const revsDiff = db.revsDiff.bind(db);
  db.revsDiff = (diff, ...rest) => {
    asked.push(...Object.keys(diff));
    return revsDiff(diff, ...rest);
  };
  return asked;
}

test("what a pull brought is not asked about on the next push, unless the phone wrote it too", async () => {
  const local = phone();
  const { db } = server();
  await db.bulkDocs([{ _id: "household:h1" }, { _id: "household:h2" }]);
  await syncOnce(local, db, { own: new Set() }); // pulled both
  const mine = await local.put({ _id: "visit:v1" });
  const h2 = await local.get("household:h2");
  await local.put({ ...h2, note: "mine" });
  const asked = askedAbout(db);
  const { push } = await syncOnce(local, db, { own: new Set(["visit:v1", "household:h2"]) });
  assert.deepEqual(asked.sort(), ["household:h2", "visit:v1"]); // household:h1, as pulled, is skipped
  assert.equal(push.docs_written, 2);
  assert.equal((await db.get("visit:v1"))._rev, mine.rev);
  assert.equal((await db.get("household:h2")).note, "mine");
  // The pulls remembered are those since the last push: once pushed past, a pulled document's next
  // revision (written here, not by this phone's pages) goes up.
  const h1 = await local.get("household:h1");
  await local.put({ ...h1, note: "edited" });
  const { push: after } = await syncOnce(local, db, { own: new Set() });
  assert.equal(after.docs_written, 1);
  assert.equal((await db.get("household:h1")).note, "edited");
});

// The phone wrote a document offline; the urgent pull, before the push, brought the server's later revision, which
// wins: the phone's own revision is a losing leaf now, and still goes up (the keeper sees the conflict).
test("a document the phone wrote is pushed even when a pulled revision won over it", async () => {
  const local = phone();
  const { db } = server();
  const r1 = await db.put({ _id: "household:h2", type: "household" });
  await syncOnce(local, db, { own: new Set() });
  const mine = await local.put({ _id: "household:h2", _rev: r1.rev, type: "household", note: "phone" });
  const r2 = await db.put({ _id: "household:h2", _rev: r1.rev, type: "household", note: "server" });
  await db.put({ _id: "household:h2", _rev: r2.rev, type: "household", note: "server again" });
  await syncOnce(local, db, { first: { types: ["household"], filter: (doc) => doc.type === "household" },
    own: new Set(["household:h2"]) });
  assert.equal((await local.get("household:h2")).note, "server again"); // the pulled revision won here
  assert.deepEqual((await db.get("household:h2", { conflicts: true }))._conflicts, [mine.rev]);
});

test("without a list of its own writes, the phone asks about everything it has not pushed", async () => {
  const local = phone();
  const { db } = server();
  await db.put({ _id: "household:h1" });
  await syncOnce(local, db);
  await local.put({ _id: "visit:v1" });
  const asked = askedAbout(db);
  const { push } = await syncOnce(local, db);
  assert.deepEqual(asked.sort(), ["household:h1", "visit:v1"]);
  assert.equal(push.ok, true);
  assert.equal(push.docs_written, 1);
});

test("the urgent kinds can come first with nothing to run once they have", async () => {
  const local = phone();
  const { db } = server();
  await db.bulkDocs([{ _id: "alert:a1", type: "alert" }, { _id: "household:h1", type: "household" }]);
  await syncOnce(local, db, { first: { types: ["alert"], filter: (doc) => doc.type === "alert" } });
  assert.deepEqual((await local.allDocs()).rows.map((r) => r.id), ["alert:a1", "household:h1"]);
});

// The gateway answers at most 10,000 ids per purge check (sync/protocol.py MAX_IDS); the phone asks 5,000 at a time.
test("a phone holding more than 5,000 documents asks about them 5,000 at a time", async () => {
  const local = phone();
  const ids = Array.from({ length: 5001 }, (_, i) => `visit:v${String(i).padStart(4, "0")}`);
  await local.bulkDocs(ids.map((_id) => ({ _id })));
  const { db, state } = server({ outside: new Set([ids[0], ids[5000]]) });
  assert.deepEqual(await purgeOutOfScope(local, db), [ids[0], ids[5000]]);
  assert.deepEqual(state.requests.filter((r) => r.path === "_linli_purges").map((r) => r.body.ids),
    [ids.slice(0, 5000), ids.slice(5000)]);
});
