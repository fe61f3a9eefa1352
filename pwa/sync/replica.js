// The phone's replica and the sync gateway (sync/README.md): how PouchDB is
// pointed at /sync/main, and how documents that left the user's scope are
// purged locally (never deleted: a deletion would replicate up and delete the
// document for everyone). Runs in a page, a service worker and Node 20.

const SCOPE_DOC = "_local/linli_scope";
const FULL_CHECK_MS = 24 * 3600 * 1000; // catches scope changes made outside the gateway
const IDS_PER_CHECK = 5000;

// The remote database. Cookie sessions send the page's CSRF token (the body's
// hx-headers carry it); gateways and scripts send their device token instead.
// `stubs: false` pushes every photo whole with every revision, as PouchDB does (a benchmark's reference).
export function remoteOptions({ csrfToken, deviceToken, fetch = (...args) => globalThis.fetch(...args),
                                stubs = true } = {}) {
  const headers = deviceToken ? { Authorization: `Bearer ${deviceToken}` } : { "X-CSRF-Token": csrfToken };
  return { headers, fetch: stubs ? sendingStubs(fetch) : fetch };
}

// ---- photos the server has are not sent again (issue 22 item 4)
//
// PouchDB's push sends every attachment of a document whole with each new revision: a field changed on a visit
// re-sends its photo. This fetch rewrites the push's writes (`_bulk_docs` with new_edits: false): an attachment
// older than the revision sent (its revpos is lower: unchanged since a revision pushed before) goes as a stub. The
// gateway takes a stub only when the server's current revision holds that attachment (sync/writes.py). A document
// refused with stubs (the server's revision lost the photo, a conflict, a document made and edited before any
// push) is sent again whole, in a second request, and PouchDB gets that answer for it: a stub's refusal never
// reaches the replicator, which would count it a write failure and not try again.
function sendingStubs(fetch) {
  return async (url, options = {}) => {
    const write = replicationWrite(url, options);
    const stubbed = write ? write.docs.map(withStubs) : [];
    const ids = new Set(stubbed.filter((doc, i) => doc !== write.docs[i]).map((doc) => doc._id));
    if (!ids.size) {
      return fetch(url, options);
    }
    const first = await fetch(url, { ...options, body: JSON.stringify({ ...write, docs: stubbed }) });
    if (!first.ok) { // the whole batch refused (a lapsed session…): not for its stubs
      return first;
    }
    const answers = await first.json();
    const again = new Set(answers.filter((answer) => answer.error && ids.has(answer.id)).map((answer) => answer.id));
    if (!again.size) {
      return jsonResponse(answers, first.status);
    }
    const whole = write.docs.filter((doc) => again.has(doc._id));
    const second = await fetch(url, { ...options, body: JSON.stringify({ ...write, docs: whole }) });
    if (!second.ok) {
      return second;
    }
    return jsonResponse([...answers.filter((answer) => !again.has(answer.id)), ...await second.json()], 201);
  };
}

// The body of a replication write, or null for any other request.
function replicationWrite(url, options) {
  if (options.method !== "POST" || typeof options.body !== "string"
      || !new URL(url, "http://phone/").pathname.endsWith("/_bulk_docs")) {
    return null;
  }
  const body = JSON.parse(options.body);
  return body.new_edits === false && Array.isArray(body.docs) ? body : null;
}

// The document with a stub for each attachment older than its revision; the same object if there is none.
function withStubs(doc) {
  const generation = parseInt(doc._rev, 10);
  const attachments = Object.entries(doc._attachments || {});
  const older = ([, att]) => typeof att.data === "string" && att.digest && att.revpos < generation;
  if (!attachments.some(older)) {
    return doc;
  }
  return { ...doc, _attachments: Object.fromEntries(attachments.map(([name, att]) => [name, !older([name, att]) ? att
    : { stub: true, digest: att.digest, content_type: att.content_type, revpos: att.revpos,
        length: base64Length(att.data) }])) };
}

function base64Length(data) {
  return Math.floor(data.length * 3 / 4) - (data.endsWith("==") ? 2 : data.endsWith("=") ? 1 : 0);
}

function jsonResponse(answers, status) {
  return new Response(JSON.stringify(answers), { status, headers: { "Content-Type": "application/json" } });
}

async function gatewayJSON(remote, path, body) {
  // remote.fetch adds the remote's own headers (CSRF or device token) and cookies.
  const response = await remote.fetch(path, {
    method: body ? "POST" : "GET",
    headers: new Headers({ "Content-Type": "application/json", Accept: "application/json" }),
    body: body ? JSON.stringify(body) : undefined,
  });
  const answer = await response.json();
  if (!response.ok) {
    throw new Error(`sync gateway ${path}: ${answer.error}: ${answer.reason}`);
  }
  return answer;
}

async function leafRevs(local, id) {
  const leaves = await local.get(id, { open_revs: "all" });
  return leaves.filter((leaf) => leaf.ok).map((leaf) => leaf.ok._rev);
}

// Purge local documents the gateway says this user may no longer see. Cheap when
// nothing changed: one GET of the scope. Returns the ids purged.
// `local` must support purge (PouchDB's "indexeddb" adapter).
export async function purgeOutOfScope(local, remote, { now = Date.now() } = {}) {
  if (typeof local.purge !== "function" || local.adapter !== "indexeddb") {
    throw new Error("local purges need PouchDB's indexeddb adapter");
  }
  const { scope } = await gatewayJSON(remote, "_linli_scope");
  const seen = await local.get(SCOPE_DOC).catch(() => ({ _id: SCOPE_DOC }));
  if (seen.scope === scope && now - (seen.checked_at || 0) < FULL_CHECK_MS) {
    return [];
  }
  const ids = (await local.allDocs()).rows.map((row) => row.id);
  const purged = [];
  for (let i = 0; i < ids.length; i += IDS_PER_CHECK) {
    const { purge } = await gatewayJSON(remote, "_linli_purges", { ids: ids.slice(i, i + IDS_PER_CHECK) });
    for (const id of purge) {
      for (const rev of await leafRevs(local, id)) {
        await local.purge(id, rev);
      }
      purged.push(id);
    }
  }
  await local.put({ ...seen, scope, checked_at: now });
  return purged;
}

// The phone's own urgent changes (the declaration's sync_first types, without photos), sent in one request before
// anything else is asked of the server (issue 22): on a weak signal an SOS acknowledgement reaches the server in a
// couple of round trips, not behind the session, the shell and a visit's photos. `unsent`: {id: rev} of the phone's
// own writes not yet on the server. What the gateway refuses here is refused again, and shown, by the full push.
export async function pushUrgent(local, remote, unsent, first) {
  const types = new Set(first.types);
  const ids = Object.keys(unsent);
  const rows = ids.length ? (await local.allDocs({ keys: ids, include_docs: true })).rows : [];
  const urgent = rows.filter((row) => row.doc && types.has(row.doc.type) && !row.doc._attachments);
  if (!urgent.length) {
    return [];
  }
  const docs = await Promise.all(urgent.map((row) => local.get(row.id, { rev: unsent[row.id], revs: true })));
  return remote.bulkDocs({ docs, new_edits: false });
}

// What the pulls since the last push brought, at the revision they brought, per replica: the server has those, so
// the push skips them rather than ask about each (on a weak signal a first sync's 3,000 documents cost 30 rounds
// of _revs_diff otherwise). A document that is also one of the phone's own unsent writes (`own`) is always pushed:
// its own leaf may be the one that lost to the pulled revision. Kept in memory: a restarted worker checks all.
const pulledSincePush = new Map();

function pulledInto(local) {
  if (!pulledSincePush.has(local.name)) {
    pulledSincePush.set(local.name, new Map());
  }
  return pulledSincePush.get(local.name);
}

// Documents a pull asks for at a time. PouchDB's default, 100, makes a first sync of 4,000 documents 40 rounds of
// changes, _bulk_get and an IndexedDB write each; 500 made a slowed phone's first sync a quarter faster
// (bench/pwa.py), and the gateway reads CouchDB's feed in chunks of 2,000 anyway (sync/changes.py).
const PULL_BATCH = 500;

async function pullFrom(local, remote, options = {}) {
  const pulled = pulledInto(local);
  const replication = local.replicate.from(remote, { batch_size: PULL_BATCH, ...options });
  replication.on("change", (info) => info.docs.forEach((doc) => pulled.set(doc._id, doc._rev)));
  return replication;
}

async function pushTo(local, remote, own) {
  if (!own) {
    return local.replicate.to(remote);
  }
  const pulled = pulledInto(local);
  const result = await local.replicate.to(remote, {
    filter: (doc) => own.has(doc._id) || pulled.get(doc._id) !== doc._rev });
  pulled.clear();
  return result;
}

// One round of sync as the app runs it: push, pull, then purge what left the scope. A phone's first round
// needs no purge check (everything it holds has just been pulled): it keeps the scope read before the pull, so
// a change of scope during the pull still makes the next round check.
// `first` (the declaration's sync_first, /schema.json): the urgent kinds come down before the rest (the gateway's
// filter); `onFirst` runs once they have. On a new phone `list` (sync_list) comes next: the household list, so that
// its grid and household pages answer offline long before a first sync of minutes ends. `rest`: a function called
// once the urgent kinds are in, whose promise the pull of the rest waits for (a new phone's key registration: the
// grants it issues come down with the rest, not in a pull of their own; begun after the urgent kinds, so that the
// server's work of issuing them does not slow those). `own`: the ids of the phone's own unsent writes (see pushTo).
// A new phone with none (`own` empty) pushes nothing: it holds only what it has just pulled, and going over that
// for nothing cost a slowed phone a second of its first sync; its next round's push goes over it, skipping what the
// pulls brought. `push` is then null.
export async function syncOnce(local, remote, { first = null, onFirst = null, list = null, rest = null,
                                                own = null } = {}) {
  const isNew = (await local.get(SCOPE_DOC).catch(() => null)) === null;
  const scopeBefore = isNew ? (await gatewayJSON(remote, "_linli_scope")).scope : null;
  if (first) {
    await pullFrom(local, remote, { filter: first.filter });
    await onFirst?.();
  }
  const resting = rest?.();
  resting?.catch(() => null); // awaited below; a failure of the pulls before that must not leave it unhandled
  if (isNew && list) {
    await pullFrom(local, remote, { filter: list.filter });
  }
  const push = isNew && own?.size === 0 ? null : await pushTo(local, remote, own);
  await resting;
  const pull = await pullFrom(local, remote);
  if (isNew) {
    await local.put({ _id: SCOPE_DOC, scope: scopeBefore, checked_at: Date.now() });
    return { push, pull, purged: [] };
  }
  const purged = await purgeOutOfScope(local, remote);
  return { push, pull, purged };
}
