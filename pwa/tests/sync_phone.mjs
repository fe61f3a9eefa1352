// A phone for the sync tests (tests/test_sync_*.py): real PouchDB 9 with the
// indexeddb adapter (on fake-indexeddb in Node, as in the browser), pointed at
// the gateway with pwa/sync/replica.js. Python drives it with one JSON command
// per stdin line and reads one JSON answer per stdout line.
//
//   node pwa/tests/sync_phone.mjs '{"url": ".../sync/main", "cookie": "...", "csrfToken": "..."}'

import "fake-indexeddb/auto";
import { createInterface } from "node:readline";
import PouchDB from "pouchdb";
import IndexedDBAdapter from "pouchdb-adapter-indexeddb";
import { purgeOutOfScope, remoteOptions, syncOnce } from "../sync/replica.js";
import { loadConfig } from "./config.mjs";

PouchDB.plugin(IndexedDBAdapter);
// Browser globals PouchDB's indexeddb code reads: navigator (its blob-support probe) and self
// (purge bookkeeping refers to `self`, the window in a browser).
globalThis.navigator ??= { userAgent: "Node" };
globalThis.self ??= globalThis;

const config = loadConfig(process.argv[2]);
// A connection cut mid-body (the gateway killed) surfaces inside PouchDB as an unhandled
// rejection; a browser logs those and goes on, and so does this phone.
process.on("unhandledRejection", (error) => process.stderr.write(`unhandled: ${error}\n`));
const withCookie = (url, options) => {
  if (config.cookie) {
    options.headers.set("Cookie", config.cookie);
  }
  return fetch(url, options);
};
const local = new PouchDB(config.name || "phone", { adapter: "indexeddb" });
const remote = new PouchDB(config.url, remoteOptions({ ...config, fetch: withCookie }));
let live = null;
let background = null;
const progress = { docs_written: 0 };
const liveErrors = [];

function summary(result) {
  return { ok: result.ok, docs_read: result.docs_read, docs_written: result.docs_written,
           doc_write_failures: result.doc_write_failures,
           errors: (result.errors || []).map((e) => ({ id: e.id, reason: e.reason ?? String(e), errors: e.errors })),
           last_seq: result.last_seq };
}

const commands = {
  pull: async ({ batch_size }) => summary(await local.replicate.from(remote, batch_size ? { batch_size } : {})),
  push: async () => summary(await local.replicate.to(remote)),
  sync: async () => {
    const { push, pull, purged } = await syncOnce(local, remote);
    return { push: summary(push), pull: summary(pull), purged };
  },
  purge: async () => ({ purged: await purgeOutOfScope(local, remote) }),
  // A sync left running while the test kills the gateway under it (tests/test_timebank_offline.py).
  startSync: async () => {
    background = syncOnce(local, remote).then(({ push, pull, purged }) => ({ push: summary(push), pull: summary(pull),
                                                                            purged }),
                                              (error) => ({ failed: String(error.message || error) }));
    return { started: true };
  },
  finishSync: async () => background,
  ids: async () => (await local.allDocs()).rows.map((row) => row.id),
  get: async ({ id, conflicts }) => local.get(id, { conflicts: !!conflicts }).catch(() => null),
  put: async ({ doc }) => local.put(doc),
  startPull: async ({ batch_size }) => {
    const replication = local.replicate.from(remote, { batch_size: batch_size || 100 });
    replication.on("change", (info) => { progress.docs_written = info.docs_written; });
    background = replication.then(summary, (error) => ({ failed: String(error.message || error) }));
    return { started: true };
  },
  progress: async () => progress,
  finishPull: async () => background,
  startLive: async ({ timeout_ms }) => {
    live = local.replicate.from(remote, { live: true, retry: true });
    live.on("error", (error) => liveErrors.push(String(error)));
    // "paused": caught up and now waiting on the gateway's changes feed (the caller's condition, not a sleep).
    const waiting = await new Promise((resolve) => {
      live.once("paused", () => resolve(true));
      setTimeout(() => resolve(false), timeout_ms || 30000);
    });
    return { started: true, waiting, errors: liveErrors };
  },
  waitFor: async ({ id, timeout_ms }) => {
    const deadline = Date.now() + (timeout_ms || 10000);
    while (Date.now() < deadline) {
      const doc = await local.get(id).catch(() => null);
      if (doc) {
        return { found: true };
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return { found: false, errors: liveErrors };
  },
  stopLive: async () => {
    live?.cancel();
    return { stopped: true };
  },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const { op, ...args } = JSON.parse(line);
  let answer;
  try {
    answer = { ok: true, value: await commands[op](args) };
  } catch (error) {
    answer = { ok: false, error: String(error && (error.message || error.reason || error)), status: error?.status };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
