// Page glue for the offline app: installs the service worker (sw.js), asks it to sync when the page
// opens, when the network returns and every minute, and shows its state in every page's sync bar
// (base.html #sync-state). Pages work without it; it only adds offline use and the sync bar.

import { localTime as localTimeIn } from "/pwa/render.js";

const SYNC_EVERY_MS = 60 * 1000;
const bar = document.getElementById("sync-state");
// The words come from the page (base.html data-* attributes, server/domain/i18n.py), in its language.
const text = bar ? bar.dataset : {};
// Times as the pages show them (LINLI_TIMEZONE), by the same function the offline pages render with.
const localTime = localTimeIn(text.timeZone || undefined);

function show(state) {
  if (!bar || !state.signed_in) {
    return;
  }
  const parts = [navigator.onLine ? text.online : text.offline];
  parts.push(state.last_synced_at ? `${text.synced} ${localTime(state.last_synced_at)}` : text.never);
  if (state.syncing && navigator.onLine) {
    parts.push(text.running); // the label: data-syncing is the bar's own state ("yes"/"no", below)
  }
  const kinds = (state.pending_kinds || []).map((k) => `${k.label} ${k.count}`).join(" · ");
  parts.push(`${state.pending} ${text.waiting}${kinds ? ` (${kinds})` : ""}`);
  if (state.refused.length) {
    parts.push(`${state.refused.length} ${text.refused}`);
  }
  // Each refused change and why, in the page's language (the service worker translated the server's keys).
  const refused = bar.querySelector("[data-sync-refused]");
  refused.hidden = !state.refused.length;
  refused.replaceChildren(...state.refused.map((r) => {
    const item = document.createElement("li");
    item.textContent = `${r.id}${text.colon}${r.texts.join(" ")}`;
    return item;
  }));
  const conflicts = bar.querySelector("[data-sync-conflicts]");
  conflicts.hidden = !state.conflicts;
  conflicts.textContent = `${state.conflicts} ${text.conflicts}`;
  if (state.error) {
    parts.push(state.error === "sync_signed_out" ? text.signedOut : `${text.error}: ${state.error}`);
  }
  bar.querySelector("[data-sync-text]").textContent = parts.join(" · ");
  bar.dataset.pending = String(state.pending);
  bar.dataset.pendingUrgent = String((state.pending_kinds || []).filter((k) => k.urgent)
    .reduce((sum, k) => sum + k.count, 0));
  bar.dataset.syncing = state.syncing ? "yes" : "no";
  bar.dataset.lastSynced = state.last_synced_at || "";
  bar.classList.toggle("sync-error", !!state.error || state.refused.length > 0);
  bar.classList.toggle("sync-offline", !navigator.onLine);
  bar.hidden = false;
}

async function start() {
  if (!("serviceWorker" in navigator) || !bar) {
    return;
  }
  const registration = await navigator.serviceWorker.register("/sw.js", { type: "module", scope: "/" });
  navigator.serviceWorker.addEventListener("message", (event) => {
    if (event.data?.type === "sync-state") {
      show(event.data.state);
    }
  });
  const worker = () => navigator.serviceWorker.controller || registration.active;
  const ask = (type) => worker()?.postMessage({ type });
  await navigator.serviceWorker.ready;
  bar.querySelector("button").addEventListener("click", () => ask("sync"));
  window.addEventListener("online", () => ask("sync"));
  window.addEventListener("offline", () => ask("state"));
  setInterval(() => document.visibilityState === "visible" && ask("sync"), SYNC_EVERY_MS);
  ask("state");
  ask("sync");
}

start();
