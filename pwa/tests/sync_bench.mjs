// The Node side of bench/sync_replication.py: one real PouchDB 9 replica pulls everything through
// the gateway (or straight from CouchDB, the reference) and prints {"ms", "docs"}.
import PouchDB from "pouchdb";
import MemoryAdapter from "pouchdb-adapter-memory";
import { remoteOptions } from "../sync/replica.js";
import { loadConfig } from "./config.mjs";

PouchDB.plugin(MemoryAdapter);
const config = loadConfig(process.argv[2]);
const withCookie = (url, options) => {
  if (config.cookie) {
    options.headers.set("Cookie", config.cookie);
  }
  return fetch(url, options);
};
const remote = () => new PouchDB(config.url, remoteOptions({ ...config, fetch: withCookie }));
const say = (value) => process.stdout.write(JSON.stringify(value) + "\n");

const local = new PouchDB("initial", { adapter: "memory" });
const started = performance.now();
const result = await local.replicate.from(remote(), { batch_size: config.batch_size || 100 });
say({ ms: performance.now() - started, docs: result.docs_written });
