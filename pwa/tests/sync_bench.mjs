// The Node side of bench/sync_replication.py: real PouchDB 9 replicating through the gateway.
//   mode "initial": one replica pulls everything, prints {"ms", "docs"}.
//   mode "live": one caught-up replica per device token (each a distinct user), replicating live
//         from the current sequence; prints {"ready": N}, then on the stdin line "go" waits until
//         every replica has doc_id and prints {"latencies_ms": [...]}.
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
const remote = (deviceToken) => new PouchDB(config.url, remoteOptions({ ...config, deviceToken, fetch: withCookie }));
const say = (value) => process.stdout.write(JSON.stringify(value) + "\n");

if (config.mode === "initial") {
  const local = new PouchDB("initial", { adapter: "memory" });
  const started = performance.now();
  const result = await local.replicate.from(remote(), { batch_size: config.batch_size || 100 });
  say({ ms: performance.now() - started, docs: result.docs_written });
} else {
  const arrived = [];
  const feeds = [];
  // Caught up: the phones of this measurement already hold their grid, so they start at the current
  // sequence (their own, behind their fingerprint) instead of each pulling 10,000 documents first.
  await Promise.all(config.tokens.map(async (token, i) => {
    const local = new PouchDB(`phone${i}`, { adapter: "memory" });
    const source = remote(token);
    const { update_seq: since } = await source.info();
    arrived.push(new Promise((resolve) => {
      local.changes({ live: true, since: "now" }).on("change", (change) => {
        if (change.id === config.doc_id) {
          resolve(performance.now());
        }
      });
    }));
    feeds.push(local.replicate.from(source, { live: true, retry: true, since }));
  }));
  await new Promise((resolve) => setTimeout(resolve, 3000)); // every feed is waiting on the gateway
  say({ ready: feeds.length });
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
