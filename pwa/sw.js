// The offline app's service worker (a module worker, served at /sw.js so its scope is the whole site).
//
// - Pages: the server answers while it can be reached; when it cannot, the routes of offline/pages.js are
//   answered here from the local PouchDB replica, rendering the server's own template files with Nunjucks
//   (render.js). Writes made offline go into the replica.
// - Sync: push, pull and purge through the sync gateway (sync/replica.js), when a page asks (on load, when the
//   network returns, every minute) and after every offline write. Pages show its state (app.js).
// - Shell: templates, stylesheet and browser code kept in the Cache API, refreshed when /pwa/shell.json's
//   version changes.

import "/vendor/pouchdb.min.js";
import "/vendor/pouchdb.indexeddb.min.js";
import "/vendor/nunjucks.min.js";
import { pageContext, sessionContext, templateEnvironment, translator } from "/pwa/render.js";
import { pushUrgent, remoteOptions, syncOnce } from "/pwa/sync/replica.js";
import { forgetPhoneKey, phoneKey, pinInstallationKey, storedPhoneKey } from "/pwa/offline/keys.js";
import { answer, route } from "/pwa/offline/pages.js";
import { sniffedType } from "/pwa/offline/rules.js";

const { PouchDB, nunjucks } = self;
const CACHE = "linli-shell";
const SESSION_URL = "/pwa/session.json";
const SHELL_URL = "/pwa/shell.json";
const SCHEMA_URL = "/schema.json";
const VENDOR = ["/vendor/pouchdb.min.js", "/vendor/pouchdb.indexeddb.min.js", "/vendor/nunjucks.min.js"];
const SYNC_STATE = "_local/linli_sync";

// ---- the shell

async function cacheShell() {
  const shell = await (await fetch(SHELL_URL, { cache: "no-store" })).json();
  const cache = await caches.open(CACHE);
  const urls = [...shell.files, ...VENDOR, SCHEMA_URL, ...shell.templates.map((name) => `/pwa/templates/${name}`)];
  await cache.addAll(urls.map((url) => new Request(url, { cache: "no-store" })));
  await cache.put(SHELL_URL, new Response(JSON.stringify(shell), { headers: { "Content-Type": "application/json" } }));
  environment = null; // templates may have changed
  schema = null;
  shellKept = true;
  return shell;
}

// Whether the shell is kept. A new phone's first worker runs without it for a moment: it takes over at once and
// its first sync caches the shell once the urgent kinds are in (runSync); meanwhile nothing is rendered offline.
let shellKept = false;
async function hasShell() {
  shellKept ||= (await cachedJSON(SHELL_URL)) !== null;
  return shellKept;
}

// The domain declaration, as kept with the shell (cacheShell forgets it when the shell changes).
let schema = null;
async function schemaJSON() {
  schema ||= await cachedJSON(SCHEMA_URL);
  return schema;
}

// The declaration for a sync: as kept, or the server's while a new phone's shell is not kept yet.
async function syncSchema() {
  const kept = await schemaJSON();
  if (kept) {
    return kept;
  }
  const response = await fetch(SCHEMA_URL);
  if (!response.ok) {
    throw new Error(`${SCHEMA_URL}: ${response.status}`);
  }
  return response.json();
}

async function cachedJSON(url) {
  const response = await (await caches.open(CACHE)).match(url);
  return response ? response.json() : null;
}

async function refreshShell() {
  const [kept, current] = [await cachedJSON(SHELL_URL), await (await fetch(SHELL_URL, { cache: "no-store" })).json()];
  if (!kept || kept.version !== current.version) {
    await cacheShell();
  }
}

// A worker that replaces another caches the new shell before it takes over, so that no page is rendered with the
// code of one version and the templates of another. A new phone's first worker does not wait for it: on a slow
// phone caching the shell takes seconds that its first sync need not wait for (runSync caches it meanwhile).
self.addEventListener("install", (event) => event.waitUntil(
  hasShell().then((kept) => kept && cacheShell()).then(() => self.skipWaiting())));
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

// ---- who is signed in, and their replica

// Read from the Cache API once per worker start, then kept in memory (every offline answer needs it).
let keptSession = undefined;
async function storedSession() {
  if (keptSession === undefined) {
    keptSession = await cachedJSON(SESSION_URL);
  }
  return keptSession;
}

// The signed-in user from the server, kept for offline pages; null when nobody is signed in. A server that cannot
// answer yet (5xx: restarting, or an index still being built) or a request that hangs (a weak signal) is not a
// signed-out user: it throws, and the sync tries again soon (retrySoon) instead of waiting for the next minute.
const SESSION_WAIT_MS = 60 * 1000;
async function refreshSession() {
  const response = await fetch(SESSION_URL, { headers: { Accept: "application/json" }, redirect: "manual",
                                              signal: AbortSignal.timeout(SESSION_WAIT_MS) });
  if (response.status >= 500) {
    throw new Error(`${SESSION_URL}: ${response.status}`);
  }
  const json = response.ok && (response.headers.get("Content-Type") || "").includes("json");
  if (!json) {
    return null;
  }
  const session = await response.json();
  session.messages = await messagesAt(session.messages_url);
  const kept = await storedSession();
  if (kept && kept.user._id !== session.user._id) {
    await forget(kept); // another user signed in on this phone: the previous one's replica goes
  }
  await keepSession(session);
  if (kept?.lang !== session.lang || kept?.time_zone !== session.time_zone) {
    environment = null; // compiled templates are kept otherwise (compiling them again costs a page's time)
  }
  return session;
}

// The language's messages (~80 KB) by the versioned name session.json gives them, kept with the shell: fetched again
// only when they change, and compressed (session.json is not: it carries the CSRF token, server/web/compression.py).
async function messagesAt(url) {
  const cache = await caches.open(CACHE);
  const kept = await cache.match(url);
  if (kept) {
    return kept.json();
  }
  const response = await fetch(url);
  if (!response.ok) {
    throw new Error(`${url}: ${response.status}`);
  }
  for (const old of await cache.keys()) { // another language's, or an earlier version's
    if (new URL(old.url).pathname.startsWith("/pwa/messages/")) {
      await cache.delete(old);
    }
  }
  await cache.put(url, response.clone());
  return response.json();
}

async function keepSession(kept) {
  keptSession = kept;
  await (await caches.open(CACHE)).put(SESSION_URL, new Response(JSON.stringify(kept),
    { headers: { "Content-Type": "application/json" } }));
}

const replicas = new Map();
function replica(session) {
  const name = `linli-${session.user._id}`;
  if (!replicas.has(name)) {
    replicas.set(name, new PouchDB(name, { adapter: "indexeddb" }));
  }
  return replicas.get(name);
}

// Signing out (or another user signing in) removes the user's replica and key from the phone, unless it holds
// changes not yet uploaded or refused by the server: those are never dropped, and wait for that user's next
// sign-in (a refused one for a person to see and correct).
async function forget(session) {
  keptSession = null;
  await (await caches.open(CACHE)).delete(SESSION_URL);
  const db = replica(session);
  const { refused = [] } = await db.get(SYNC_STATE).catch(() => ({}));
  // Also anything changed since the last completed sync: a replica from before the phone noted its own writes.
  if (refused.length || (await unsentChanges(db)).length || await changedSinceSync(db)) {
    return;
  }
  await db.destroy();
  replicas.delete(`linli-${session.user._id}`);
  await forgetPhoneKey(session.user._id, session.csrf_token);
}

// ---- rendering

let environment = null;
async function templates(session) {
  if (!environment) {
    const shell = await cachedJSON(SHELL_URL);
    const cache = await caches.open(CACHE);
    const sources = new Map();
    for (const name of shell.templates) {
      sources.set(name, await (await cache.match(`/pwa/templates/${name}`)).text());
    }
    const Loader = nunjucks.Loader.extend({
      getSource: (name) => {
        if (!sources.has(name)) {
          throw new Error(`template ${name} is not kept for offline use`);
        }
        return { src: sources.get(name), path: name, noCache: false };
      },
    });
    environment = templateEnvironment(nunjucks, new Loader(), { timeZone: session.time_zone });
  }
  return environment;
}

// The headers the server's pages and photos carry (CSP, no framing, nosniff: server/domain/http_headers.py), kept
// with the shell; the policy holds offline as online.
async function shellHeaders(kind) {
  return (await cachedJSON(SHELL_URL))?.headers[kind] ?? {};
}

async function renderPage(session, template, context, status = 200) {
  const env = await templates(session);
  const html = env.render(template, pageContext(sessionContext(session), session.messages, context));
  return new Response(html, { status, headers: { ...await shellHeaders("page"),
                                                 "Content-Type": "text/html; charset=utf-8", "X-Linli-Offline": "1" } });
}

// A stored photo, as the server serves it: the type its bytes show, inert if opened; anything else a download.
async function photoResponse(session, blob) {
  const kind = sniffedType(new Uint8Array(await blob.arrayBuffer()), session.photo_rule.signatures);
  const type = kind ? { "Content-Type": kind } : { "Content-Type": "application/octet-stream",
                                                   "Content-Disposition": "attachment" };
  return new Response(blob, { headers: { ...await shellHeaders("attachment"), ...type } });
}

// ---- answering requests

function sameToken(session, request, form) {
  const token = request.headers.get("X-CSRF-Token") || (form && form.get("csrf_token"));
  return token === session.csrf_token;
}

async function answerOffline(request, match) {
  const session = await storedSession();
  if (!session || !(await hasShell())) { // never signed in on this phone while online, or no shell yet
    return offlineOnly();
  }
  const url = new URL(request.url);
  const htmx = request.headers.get("HX-Request") === "true";
  const form = request.method === "POST" ? await request.formData() : null;
  const csrfToken = request.headers.get("X-CSRF-Token") || form?.get("csrf_token");
  const result = await answer(match, { db: ownWrites(replica(session)), session, schema: await schemaJSON(), url,
                                       method: request.method, form, htmx, csrfToken });
  if (form && result.status < 400) {
    changed(); // a write: tell the pages, and sync if the network is back
  }
  if (result.blob) {
    return photoResponse(session, result.blob);
  }
  if (result.redirect) {
    return htmx ? new Response("", { headers: { "HX-Redirect": result.redirect } })
      : Response.redirect(new URL(result.redirect, url).href, 303);
  }
  return renderPage(session, result.template, result.context, result.status);
}

// A page that needs the server (approvals, the access request form…): say so, in the app's own page.
async function offlineOnly() {
  const session = await storedSession();
  if (session && await hasShell()) {
    return renderPage(session, "error.html", { message: "offline_unavailable", errors: {} }, 503);
  }
  const signedOut = await pendingSignOut();
  return signedOut ? signedOutPage(signedOut)
    : new Response("离线 · Offline", { status: 503, headers: { ...await shellHeaders("page"),
                                                            "Content-Type": "text/plain; charset=utf-8" } });
}

// ---- signing out
//
// Offline, "退出" signs out on the phone at once: on a shared phone the next person must not find the previous
// one's pages. The replica and the phone's key go as online (changes not yet uploaded stay, for that user's next
// sign-in); what needs the server (ending the session, revoking the phone's key) is kept here and done by the
// first request that reaches the server, before anything else is asked of it.
const SIGN_OUT_URL = "/pwa/sign-out.json";

async function signOut(request) {
  await syncNow().catch(() => null);
  const session = await storedSession();
  const key = session && await storedPhoneKey(session.user._id);
  const pending = session ? (await unsentChanges(replica(session))).length : 0;
  if (session) {
    await forget(session);
  }
  try {
    await completeSignOut();
    return await fetch(request);
  } catch { // offline: signed out here; the server's half waits for the network
    if (!session) {
      return offlineOnly();
    }
    const keyGone = key && !(await storedPhoneKey(session.user._id));
    const signedOut = { csrf_token: session.csrf_token, phone_key: keyGone ? key.id : null, pending,
                        lang: session.lang, messages: session.messages, time_zone: session.time_zone,
                        display: session.display, assets: session.assets };
    await (await caches.open(CACHE)).put(SIGN_OUT_URL, new Response(JSON.stringify(signedOut),
      { headers: { "Content-Type": "application/json" } }));
    return signedOutPage(signedOut);
  }
}

async function pendingSignOut() {
  return cachedJSON(SIGN_OUT_URL);
}

// The page after signing out offline, in the signed-out user's language, with nobody signed in.
function signedOutPage(signedOut) {
  return renderPage({ ...signedOut, user: null }, "signed_out.html", { pending: signedOut.pending });
}

// The server's half of a sign-out made offline; throws while the server cannot be reached.
async function completeSignOut() {
  const signedOut = await pendingSignOut();
  if (!signedOut) {
    return;
  }
  const headers = { "X-CSRF-Token": signedOut.csrf_token };
  if (signedOut.phone_key) {
    await fetch(`/phone-keys/${signedOut.phone_key.split(":")[1]}`, { method: "DELETE", headers });
  }
  await fetch("/logout", { method: "POST", headers, redirect: "manual" });
  await (await caches.open(CACHE)).delete(SIGN_OUT_URL);
}

async function networkFirst(request, offline) {
  const copy = request.method === "GET" ? request : request.clone(); // a body is read once
  try {
    await completeSignOut();
    const response = await fetch(request);
    if (request.method !== "GET" && response.status < 400) {
      scheduleSync(); // the server wrote something: bring it into the replica
    }
    return response;
  } catch { // no network, or the server is down
    return offline(copy);
  }
}

// POST /display offline (server/web/display.py): the same choice, kept in the same cookie, on every page from now.
async function toggleDisplay(request) {
  const session = await storedSession();
  const form = await request.formData();
  const option = String(form.get("toggle") || "");
  if (!session || !sameToken(session, request, form) || !session.display_options.includes(option)) {
    return offlineOnly();
  }
  const on = new Set(session.display.split(" ").filter(Boolean));
  on.has(option) ? on.delete(option) : on.add(option);
  const chosen = session.display_options.filter((o) => on.has(o));
  await keepSession({ ...session, display: chosen.join(" ") });
  if (chosen.length) {
    await self.cookieStore?.set({ name: "display", value: chosen.join("."), sameSite: "lax",
                                  expires: Date.now() + 365 * 86400 * 1000 });
  } else {
    await self.cookieStore?.delete("display");
  }
  return Response.redirect(request.referrer || "/", 303);
}

async function shellFile(request) {
  const kept = await (await caches.open(CACHE)).match(request, { ignoreSearch: true });
  return kept || fetch(request);
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin || url.pathname.startsWith("/sync/")) {
    return;
  }
  const match = route(request.method, url.pathname);
  if (match) {
    event.respondWith(networkFirst(request, (copy) => answerOffline(copy, match)));
  } else if (request.method === "POST" && url.pathname === "/display") {
    event.respondWith(networkFirst(request, toggleDisplay));
  } else if (request.method === "POST" && url.pathname === "/logout") {
    event.respondWith(signOut(request));
  } else if (request.mode === "navigate") {
    event.respondWith(networkFirst(request, offlineOnly));
  } else if (request.method === "GET" && (url.pathname.startsWith("/vendor/") || url.pathname.startsWith("/static/")
             || url.pathname.startsWith("/pwa/") || url.pathname === "/manifest.webmanifest")) {
    event.respondWith(shellFile(request));
  }
});

// ---- sync and its state

let syncing = null;
let timer = null;

// The page asks for a sync when the phone says it is online again, which can come before requests get through
// (the radio back before the link, a weak signal): a sync that could not reach the server tries again in 1 s, then
// 2, 4 … up to 30 s, while the phone says it is online, instead of waiting for the page's next minute. Offline,
// the page's "online" asks again.
const RETRY_FIRST_MS = 1000;
const RETRY_MOST_MS = 30 * 1000;
let retryDelay = RETRY_FIRST_MS;
let retryTimer = null;

function retrySoon() {
  clearTimeout(retryTimer);
  if (!self.navigator.onLine) {
    retryDelay = RETRY_FIRST_MS;
    return;
  }
  retryTimer = setTimeout(() => syncNow(), retryDelay);
  retryDelay = Math.min(retryDelay * 2, RETRY_MOST_MS);
}

function reached() {
  clearTimeout(retryTimer);
  retryDelay = RETRY_FIRST_MS;
}

function scheduleSync() {
  clearTimeout(timer);
  timer = setTimeout(() => syncNow(), 200);
}

// One sync at a time; asked for during one, another runs right after it (the one running may have read the
// server before what the asker is waiting for).
let again = false;
function syncNow() {
  if (syncing) {
    again = true;
    return syncing;
  }
  syncing = (async () => {
    do {
      again = false;
      await runSync();
    } while (again);
  })().finally(() => {
    syncing = null;
    broadcast();
  });
  return syncing;
}

async function saveState(db, changes) {
  const kept = await db.get(SYNC_STATE).catch(() => ({ _id: SYNC_STATE }));
  await db.put({ ...kept, ...changes });
}

async function runSync() {
  let session = null;
  try {
    await completeSignOut(); // else the server would still answer for whoever signed out offline
    await sendUrgent();
    session = await refreshSession();
  } catch { // offline, or the server not answering yet: the state says so
    retrySoon();
    return;
  }
  reached();
  if (!session) { // the session lapsed: offline work stays, and waits for the next sign-in
    const kept = await storedSession();
    if (kept) {
      await saveState(replica(kept), { error: "sync_signed_out" });
    }
    return;
  }
  if (!session.works_offline) { // a desk (secretary, department, admin): online only, no replica kept here
    await forget(session);
    return;
  }
  await broadcast(); // the bar shows who syncs from here on ("正在同步…"): a phone's first sync can take minutes
  const db = replica(session);
  try {
    await pinInstallationKey(session.installation_key); // first sync: pinned; later: must be the same
    // Once the urgent kinds are in, a new phone registers its key while its household list comes down (the server
    // wraps a key grant per resident meanwhile), and caches its shell (templates, code): the pull of the rest waits
    // for both, so the grants come with the rest. Without a key the phone still syncs; it only cannot open protected
    // fields offline, and the bar says why.
    let registering = null;
    const register = () => (registering ||= phoneKey(session.user._id, session.csrf_token)
      .then(() => null, (e) => (e.key ? { key: e.key, params: e.params || {} } : e.message)));
    const remote = new PouchDB(`${self.location.origin}/sync/main`, remoteOptions({ csrfToken: session.csrf_token }));
    // Urgent kinds first (alerts, service requests): the bar shows them arrived before the photos go.
    const own = new Set(Object.keys(await unsentRevs(db)));
    const schema = await syncSchema();
    const { push } = await syncOnce(db, remote, { first: schema.sync_first, onFirst: broadcast,
                                                  list: schema.sync_list, own,
                                                  rest: () => Promise.all([register(), refreshShell()]) });
    const keyError = await register();
    // Kept as the sync gateway answered (sync/writes.py): the reason for logs, the errors for the person.
    const refused = (push?.errors || []).map((e) => ({ id: e.id || "", reason: String(e.reason || e.message || e),
      errors: e.errors || [{ field: "(document)", key: "err_sync_refused", params: {} }] }));
    await settleUnsent(db, remote);
    const { update_seq: seq } = await db.info();
    await saveState(db, { synced_seq: seq, last_synced_at: new Date().toISOString(), refused, error: keyError });
    await broadcast(); // the data is in: pages may say so before the conflicts count comes
    // Offline edits that clashed with someone else's: kept, for a person to choose (/conflicts).
    // While the server still builds its index of them (first start) it says so, and the count stays as it was.
    const { conflicts, preparing } = await (await remote.fetch("_linli_conflicts", { headers: new Headers() })).json();
    if (!preparing) {
      await saveState(db, { conflicts: conflicts.length });
    }
  } catch (error) {
    await saveState(db, { error: String(error.message || error) });
  }
}

// The urgent part of what waits (pushUrgent), as the phone's user last known, before the session is asked for: a
// lapsed session or another user's cookie is refused by the gateway, and the full sync after says why.
async function sendUrgent() {
  const kept = await storedSession();
  const first = (await schemaJSON())?.sync_first;
  if (!kept?.works_offline || !first) {
    return;
  }
  const db = replica(kept);
  const revs = await unsentRevs(db);
  const remote = new PouchDB(`${self.location.origin}/sync/main`, remoteOptions({ csrfToken: kept.csrf_token }));
  const sent = await pushUrgent(db, remote, revs, first).catch(() => []);
  if (sent.length) {
    await settleUnsent(db, remote).catch(() => null);
    await broadcast();
  }
}

// Documents changed in the replica since the last completed sync: written here, or pulled by a sync that did not
// complete. An upper bound of what waits, for deciding what may be deleted; not what the sync bar counts.
async function changedSinceSync(db) {
  const kept = await db.get(SYNC_STATE).catch(() => ({}));
  const waiting = await db.changes({ since: kept.synced_seq || 0 });
  return waiting.results.filter((c) => !c.id.startsWith("_local/")).length;
}

// ---- the phone's own changes, until the server has them ("待上传" counts these, and only these)
//
// Every document an offline page writes is noted with its revision; after each push the server is asked which of
// them it has (_revs_diff), and those are struck off. A download is never one of them.
const UNSENT = "_local/linli_unsent";
let unsentQueue = Promise.resolve(); // one change of the note at a time (it is one document)

function changeUnsent(db, change) {
  const done = unsentQueue.then(async () => {
    const kept = await db.get(UNSENT).catch(() => ({ _id: UNSENT, revs: {} }));
    await db.put({ ...kept, revs: await change(kept.revs) });
  });
  unsentQueue = done.catch(() => null); // a failed change (offline) fails its caller, not the next one
  return done;
}

// The replica as offline pages write to it (offline/pages.js puts): each write noted as the phone's own.
function ownWrites(db) {
  return new Proxy(db, {
    get(target, name) {
      if (name === "put") {
        return async (...args) => {
          const written = await target.put(...args);
          await changeUnsent(target, (revs) => ({ ...revs, [written.id]: written.rev }));
          return written;
        };
      }
      const value = target[name];
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

async function settleUnsent(db, remote) {
  await changeUnsent(db, async (revs) => {
    const ids = Object.keys(revs);
    if (!ids.length) {
      return revs;
    }
    const missing = await remote.revsDiff(Object.fromEntries(ids.map((id) => [id, [revs[id]]])));
    return Object.fromEntries(ids.filter((id) => missing[id]).map((id) => [id, revs[id]]));
  });
}

// The note of the phone's own writes ({id: rev}), once every change to it so far is made.
async function unsentRevs(db) {
  await unsentQueue;
  return (await db.get(UNSENT).catch(() => ({}))).revs || {};
}

// The phone's own changes the server does not have yet, less those it refused (the bar lists them apart).
async function unsentChanges(db) {
  const revs = await unsentRevs(db);
  const { refused = [] } = await db.get(SYNC_STATE).catch(() => ({}));
  const refusedIds = new Set(refused.map((r) => r.id));
  return Object.keys(revs).filter((id) => !refusedIds.has(id));
}

// What waits, by kind ("走访 2 · 告警 1"), the urgent kinds first: their labels are the declaration's.
async function waitingByKind(db, ids, lang) {
  const schema = (await schemaJSON()) || {};
  const types = schema.types || {};
  const first = new Set(schema.sync_first?.types || []);
  const counts = new Map();
  for (const row of (await db.allDocs({ keys: ids, include_docs: true })).rows) {
    const type = row.doc?.type || "";
    counts.set(type, (counts.get(type) || 0) + 1);
  }
  return [...counts].sort(([a], [b]) => first.has(b) - first.has(a) || a.localeCompare(b))
    .map(([type, count]) => ({ type, count, urgent: first.has(type), label: types[type]?.label?.[lang] || type }));
}

// What every page shows: last synced, changes waiting (by kind), errors (app.js renders it).
async function syncState() {
  const session = await storedSession();
  if (!session) {
    return { signed_in: false };
  }
  const db = replica(session);
  const kept = await db.get(SYNC_STATE).catch(() => ({}));
  const waiting = await unsentChanges(db);
  const t = translator(session.messages);
  const refused = (kept.refused || [])
    .map((r) => ({ id: r.id, texts: (r.errors || []).map((e) => t(e.key, e.params)) }));
  return { signed_in: true, last_synced_at: kept.last_synced_at || null, pending: waiting.length,
           pending_kinds: await waitingByKind(db, waiting, session.lang),
           error: kept.error?.key ? t(kept.error.key, kept.error.params) : kept.error || null,
           refused, conflicts: kept.conflicts || 0, syncing: !!syncing };
}

async function broadcast(extra = {}) {
  const state = { ...(await syncState()), ...extra };
  // Uncontrolled windows too: a page loaded while this worker was still installing (a new phone's first page, a
  // hard reload) stays uncontrolled for its life, yet it asks this worker to sync and shows the bar from its answer.
  for (const client of await self.clients.matchAll({ type: "window", includeUncontrolled: true })) {
    client.postMessage({ type: "sync-state", state });
  }
}

function changed() {
  broadcast();
  scheduleSync();
}

self.addEventListener("message", (event) => {
  const { type } = event.data || {};
  if (type === "sync") {
    event.waitUntil(syncNow());
  } else if (type === "state") {
    event.waitUntil(broadcast());
  }
});
