// The offline app's pages in Node, for the page-parity test (tests/test_page_parity.py): for each user, a phone
// as the service worker makes it (a PouchDB replica pulled through the sync gateway with that user's session,
// the phone key registered with keys.js, /pwa/session.json and /schema.json kept), then requests answered by
// the very handlers of offline/pages.js and rendered with render.js and Nunjucks, undefined variables failing.
//
//   node pwa/tests/offline_pages.mjs '{"url": "http://127.0.0.1:port/", "templates": dir, "pages": path}'
//
// stdin, one JSON command a line; stdout, one JSON answer a line:
//   {"op": "phone", "user", "cookie"}  → {"ok": true, "value": {"docs", "key"}}: sync this user's phone
//   {"op": "render", "user", "method", "path", "form": [[name, value | {"file": b64, "type", "name"}]],
//    "htmx"} → {"ok": true, "value": {"status", "html"} | {"redirect"} | {"blob": {"size"}}}
//   {"op": "documents", "user", "type"} → {"ok": true, "value": [the replica's documents of that type]}
// `pages` is the offline/pages.js to test (the test also runs a deliberately broken copy).

import "fake-indexeddb/auto";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import nunjucks from "nunjucks";
import PouchDB from "pouchdb";
import IndexedDBAdapter from "pouchdb-adapter-indexeddb";
import { phoneKey, pinInstallationKey } from "../offline/keys.js";
import { pageContext, sessionContext, templateEnvironment } from "../render.js";
import { remoteOptions, syncOnce } from "../sync/replica.js";
import { loadConfig } from "./config.mjs";

PouchDB.plugin(IndexedDBAdapter);
globalThis.navigator ??= { userAgent: "Node" }; // read by PouchDB's indexeddb adapter, as in sync_phone.mjs
globalThis.self ??= globalThis;
// PouchDB's Node build holds attachments as Buffers where its browser build holds Blobs: the pages' Blobs (a
// form's photo) become Buffers on the way in, as the browser build would take them as they are.
function takingBlobs(db) {
  const put = db.put.bind(db);
  db.put = async (doc, ...rest) => {
    for (const attachment of Object.values(doc._attachments || {})) {
      if (attachment.data instanceof Blob) {
        attachment.data = Buffer.from(await attachment.data.arrayBuffer());
      }
    }
    return put(doc, ...rest);
  };
  return db;
}

const config = loadConfig(process.argv[2]);
const { answer, route } = await import(pathToFileURL(config.pages).href);

// The browser sends the page's own cookie with every same-origin fetch, and resolves relative URLs (keys.js
// registers the phone key at "/phone-keys"): this fetch does both for the phone being driven.
const browserFetch = globalThis.fetch;
let cookie = "";
globalThis.fetch = (url, options = {}) => {
  const headers = new Headers(options.headers);
  headers.set("Cookie", cookie);
  // node-fetch's buffer(), which PouchDB's Node build reads attachments with (else it makes Blobs it cannot hash).
  return browserFetch(new URL(String(url), config.url), { ...options, headers })
    .then((response) => Object.assign(response, { buffer: async () => Buffer.from(await response.arrayBuffer()) }));
};
const getJSON = async (path) => (await fetch(path, { headers: { Accept: "application/json" } })).json();

const phones = new Map();
let environment = null;

async function phone({ user, cookie: userCookie }) {
  cookie = userCookie;
  const session = await getJSON("/pwa/session.json");
  session.messages = await getJSON(session.messages_url); // as sw.js refreshSession does
  await pinInstallationKey(session.installation_key); // as sw.js does at the first sync
  const schema = await getJSON("/schema.json");
  const db = takingBlobs(new PouchDB(`linli-${session.user._id}`, { adapter: "indexeddb" }));
  // As a new phone does in sw.js runSync: register the key (the server issues its grants), then sync.
  const key = await phoneKey(session.user._id, session.csrf_token).then((k) => k.id, (e) => `refused: ${e.message}`);
  const remote = new PouchDB(new URL("sync/main", config.url).href, remoteOptions({ csrfToken: session.csrf_token, fetch: globalThis.fetch }));
  const { pull } = await syncOnce(db, remote);
  if (pull.doc_write_failures) {
    throw new Error(`the replica refused ${pull.doc_write_failures} documents`);
  }
  environment ||= templateEnvironment(nunjucks, new nunjucks.FileSystemLoader(config.templates),
                                      { timeZone: session.time_zone, strict: true });
  phones.set(user, { db, session, schema, cookie: userCookie });
  return { docs: (await db.info()).doc_count, key };
}

function formData(fields) {
  const form = new FormData();
  for (const [name, value] of fields) {
    if (typeof value === "string") {
      form.append(name, value);
    } else {
      form.append(name, new File([Buffer.from(value.file, "base64")], value.name, { type: value.type }));
    }
  }
  return form;
}

async function render({ user, method, path, form, htmx }) {
  const { db, session, schema, cookie: userCookie } = phones.get(user);
  cookie = userCookie;
  const url = new URL(path, config.url);
  const match = route(method, url.pathname);
  if (!match) {
    throw new Error(`the offline app does not answer ${method} ${url.pathname}`);
  }
  const body = method === "POST" ? formData([["csrf_token", session.csrf_token], ...(form || [])]) : null;
  const result = await answer(match, { db, session, schema, url, method, form: body, htmx: !!htmx,
                                       csrfToken: body?.get("csrf_token") });
  if (result.redirect || result.blob) {
    // A photo: its size (in Node, PouchDB hands attachments out as Buffers, which carry no type).
    return result.redirect ? { redirect: result.redirect } : { blob: { size: result.blob.length ?? result.blob.size } };
  }
  try {
    const context = pageContext(sessionContext(session), session.messages, result.context);
    return { status: result.status, html: environment.render(result.template, context) };
  } catch (error) {
    return { status: result.status, error: error.message };
  }
}

// The replica's documents of one type (attachments as stubs), to compare what a form wrote on each side.
async function documents({ user, type }) {
  const { db } = phones.get(user);
  const rows = (await db.allDocs({ startkey: `${type}:`, endkey: `${type}:\ufff0`, include_docs: true })).rows;
  return rows.map((row) => row.doc);
}

const commands = { phone, render, documents };
for await (const line of createInterface({ input: process.stdin })) {
  const { op, ...args } = JSON.parse(line);
  let reply;
  try {
    reply = { ok: true, value: await commands[op](args) };
  } catch (error) {
    reply = { ok: false, error: String(error?.stack || error?.message || error) };
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
}
