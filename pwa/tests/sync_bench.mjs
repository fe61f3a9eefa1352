// Phones for bench/sync_replication.py: PouchDB 9 on the memory adapter.
//   initial: one pull of a remote into a fresh replica; prints {"ms", "docs"}.
//   live: N replicas pull, then replicate live; prints {"ready": N}, then on the stdin line "go"
//         waits until every replica has doc_id and prints {"latencies_ms": [...]}.
import { createInterface } from "node:readline";
import PouchDB from "pouchdb";
import MemoryAdapter from "pouchdb-adapter-memory";
import { remoteOptions } from "../sync/replica.js";

PouchDB.plugin(MemoryAdapter);
const config = JSON.parse(process.argv[2]);
const withCookie = (url, options) => {
  if (config.cookie) {
    options.headers.set("Cookie", config.cookie);
  }
  return fetch(url, options);
};
const remote = () => new PouchDB(config.url, remoteOptions({ ...config, fetch: withCookie }));
const say = (value) => process.stdout.write(JSON.stringify(value) + "\n");

if (config.mode === "initial") {
  const local = new PouchDB("initial", { adapter: "memory" });
  const started = performance.now();
  const result = await local.replicate.from(remote(), { batch_size: config.batch_size || 100 });
  say({ ms: performance.now() - started, docs: result.docs_written });
} else {
  const phones = [];
  for (let i = 0; i < config.clients; i++) {
    const local = new PouchDB(`phone${i}`, { adapter: "memory" });
    await local.replicate.from(remote());
    phones.push(local);
  }
  const arrived = phones.map((local) => new Promise((resolve) => {
    local.changes({ live: true, since: "now" }).on("change", (change) => {
      if (change.id === config.doc_id) {
        resolve(performance.now());
      }
    });
  }));
  const feeds = phones.map((local) => local.replicate.from(remote(), { live: true, retry: true }));
  await new Promise((resolve) => setTimeout(resolve, 3000)); // every feed is waiting on the gateway
  say({ ready: phones.length });
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line.trim() === "go") {
      break;
    }
  }
  const go = performance.now();
  const times = await Promise.all(arrived);
  say({ latencies_ms: times.map((t) => t - go) });
  feeds.forEach((feed) => feed.cancel());
  process.exit(0);
}
