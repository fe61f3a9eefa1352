// The pages the service worker answers when the server cannot be reached: the same routes, the same
// template files, and contexts built here from the local replica exactly as the server's handlers build
// them from CouchDB (server/web/app.py, server/store/queries.py, server/web/request_pages.py). Writes go into the
// replica and reach the server at the next sync, where the sync gateway checks them (sync/writes.py).
//
// A handler gets {db, session, schema, params, query, form, htmx} and returns
// {template, context, status} to render, or {redirect}.

import { EnvelopeError, normalise } from "../crypto/envelope.js";
import { grantId, grantIsUsable, numberField, openFields, storedPhoneKey, verifiedVoucher } from "./keys.js";
import { AlertRefused, TaskRefused, alertAfter, alertsInOrder, needsOf, photoRefusal, taskAnswered, tasksInOrder }
  from "./rules.js";
import { attributeErrors, fieldError, fieldErrors, firstCharacters } from "./validation.js";
import { cardHash, confirmation, newReceipt } from "./door_ballot.js";
import { activeApproval, lockedReason } from "./entitlement.js";
import { redemptionId, redemptionOf, secondUseRefusal } from "./rewards.js";
import { claimId, claimRefusal, hoursText, minutesOf } from "./timebank.js";
import { DAY_MS, HOUR_MS, blockedHoursOn, bookingRefusal, checkable, checkinId, chinaParts, codeMatches, dayAfter,
  isKeeper, isWhole, openHoursOn, openingText, shownDay, slotIdAt, slotStartAt } from "./pool.js";
import { localTime } from "../render.js";

export class OfflineError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// Input a person can correct: {field: {key, params}} as server/domain/errors.py UserError carries them.
class FormError extends OfflineError {
  constructor(errors) {
    super(400, "form_has_errors");
    this.errors = errors;
  }
}

const refuse = (field, key, params) => new FormError({ [field]: fieldError(key, params) });

const nowISO = () => new Date().toISOString();
const uuidHex = () => crypto.randomUUID().replace(/-/g, "");

async function load(db, id, type) {
  const doc = await db.get(id).catch(() => null);
  if (!doc || doc.type !== type) {
    throw new OfflineError(404, "not_found");
  }
  return doc;
}

// All local documents of one type, in id order (as the server's views list them). Read whole once; after that
// only the replica's changes since are applied, so a sync or an offline write costs what it changed.
const byType = new Map();
async function docsOfType(db, type) {
  const { update_seq: seq } = await db.info();
  let cached = byType.get(type);
  if (!cached || cached.db !== db.name) {
    const rows = (await db.allDocs({ startkey: `${type}:`, endkey: `${type}:\ufff0`, include_docs: true })).rows;
    cached = { db: db.name, seq, byId: new Map(rows.map((r) => [r.id, r.doc])), list: null };
    byType.set(type, cached);
  } else if (cached.seq !== seq) {
    const { results, last_seq: last } = await db.changes({ since: cached.seq, include_docs: true });
    for (const change of results.filter((c) => c.id.startsWith(`${type}:`))) {
      change.deleted ? cached.byId.delete(change.id) : cached.byId.set(change.id, change.doc);
      cached.list = null;
    }
    cached.seq = last;
  }
  cached.list ||= [...cached.byId.values()].filter((d) => d.type === type)
    .sort((a, b) => (a._id < b._id ? -1 : a._id > b._id ? 1 : 0));
  return cached.list;
}

// The resident record's protected categories and their fields, and its basic fields (server/security/firewall.py
// CATEGORY_FIELDS, server/store/queries.py _BASIC_RESIDENT_FIELDS), from the one declaration (/schema.json).
function residentFields(schema) {
  const fields = schema.types.resident.fields;
  const categories = {};
  const basic = [];
  for (const [name, f] of Object.entries(fields)) {
    if (schema.protected_tiers.includes(f.tier)) {
      (categories[f.category] ||= []).push(name);
    } else if (f.tier === "public" || f.tier === "basic") {
      basic.push(name);
    }
  }
  return { categories, basic, tierOf: (name) => fields[name].tier, kindOf: (name) => fields[name].kind };
}

function ageOn(birthDate, today) {
  const [y, m, d] = birthDate.split("-").map(Number);
  const before = today.getMonth() + 1 < m || (today.getMonth() + 1 === m && today.getDate() < d);
  return today.getFullYear() - y - (before ? 1 : 0);
}

// Which grids this user may open is the server's policy (server/domain/access.py), sent as data in the session
// (a session stored before it had the list opens none until the next sync brings a new one). A grid not among
// them is not found, as one that does not exist: online and offline, what a user may not see and what is not
// there look the same (server/web/lookup.py), and the phone could not tell them apart anyway.
async function gridOf(db, session, gridId) {
  if (!(session.browsable_grids || []).includes(gridId)) {
    throw new OfflineError(404, "not_found");
  }
  return load(db, gridId, "grid");
}

// An opening of protected fields on this phone, for the filing log: the server files it when it arrives
// (server/security/filing.py file_reports); the phone cannot write the log itself.
async function reportOpening(db, session, key, resident, fields, purpose) {
  const at = nowISO();
  await db.put({ _id: `access_report:${uuidHex()}`, type: "access_report", street: resident.street,
    community: resident.community, grid: resident.grid, household: resident.household, resident: resident._id,
    fields, purpose, at, phone_key: key.id, created_by: session.user._id, created_at: at });
}

// server/security/firewall.py find_by_number, offline. No blind index or index key reaches a phone (an index beside
// birth date and gender let a phone confirm numbers it may not open: crypto/README.md "Blind index leakage"), so the
// phone compares the typed number with the numbers it can open: those of the grid's residents it holds a usable
// contact grant for (the server issues them by the firewall's rules, privacy choices included). Each match is
// reported for the filing log, as the server files each one it finds.
async function findByNumber(db, session, grid, number) {
  const field = numberField(number);
  const key = await storedPhoneKey(session.user._id);
  const found = new Set();
  if (!key) {
    return found;
  }
  const residents = (await docsOfType(db, "resident")).filter((r) => r.grid === grid._id && r[field]);
  const grants = await db.allDocs({ keys: residents.map((r) => grantId(key.id, r._id, "contact")), include_docs: true });
  const typed = normalise(number);
  for (const [i, resident] of residents.entries()) {
    const grant = grants.rows[i].doc;
    if (!grantIsUsable(grant)) {
      continue;
    }
    const value = await openFields(key, grant, resident, [field], "contact")
      .then((opened) => opened[field], (error) => { if (error instanceof EnvelopeError) return null; throw error; });
    if (value !== null && normalise(String(value)) === typed) { // null also: re-keyed since this grant, skipped
      await reportOpening(db, session, key, resident, [field], "search_by_number");
      found.add(resident.household);
    }
  }
  return found;
}

// server/web/app.py grid_page + queries.grid_households
async function gridPage({ db, session, params, query, htmx }) {
  const grid = await gridOf(db, session, params.id);
  let q = firstCharacters(query.get("q") || "", 100).trim();
  const offset = Math.max(0, parseInt(query.get("offset") || "0", 10) || 0);
  let households = (await docsOfType(db, "household")).filter((h) => h.grid === grid._id);
  const residents = new Map((await docsOfType(db, "resident")).map((r) => [r._id, r]));
  const headName = (h) => residents.get(h.head || "")?.name || "";
  if (numberField(q)) { // a phone or ID card number: compared with the numbers this phone may open, never plaintext
    const only = await findByNumber(db, session, grid, q);
    households = households.filter((h) => only.has(h._id));
    q = "";
  }
  if (q) {
    households = households.filter((h) => h.address.includes(q) || headName(h).includes(q));
  }
  const slice = households.slice(offset, offset + session.shown.households);
  const end = offset + slice.length;
  const page = {
    rows: slice.map((h) => ({ id: h._id, address: h.address, head_name: headName(h),
                              member_count: h.member_count || 0, tags: h.tags || [] })),
    total: households.length, next_offset: end < households.length ? end : null,
  };
  if (htmx) {
    return { template: "_household_rows.html", context: { grid, page, q: query.get("q") || "" } };
  }
  return { template: "grid.html", context: { grid, page, q: query.get("q") || "",
                                             ...await openNeeds(db, session, grid, residents) } };
}

// server/web/need_pages.py open_needs_context: the grid's needs nobody has handled yet, oldest first, for the staff
// who handle them (its worker, the secretary); named as far as the replica holds the residents and households.
async function openNeeds(db, session, grid, residents) {
  const roles = session.user.roles || [];
  const shown = roles.includes("grid_worker") || roles.includes("secretary");
  const found = !shown ? [] : (await docsOfType(db, "need")).filter((n) => n.grid === grid._id && n.status === "open")
    .sort((a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : a._id < b._id ? -1 : 1));
  const households = new Map((await docsOfType(db, "household")).map((h) => [h._id, h]));
  const names = {};
  for (const n of found) {
    if (residents.has(n.resident)) names[n.resident] = residents.get(n.resident).name;
    if (households.has(n.household)) names[n.household] = households.get(n.household).address;
  }
  return { needs_shown: shown, open_needs: found, names, need_categories: session.need_categories };
}

// This phone's usable key grant for a category of a resident's record, and the approved access request it
// was issued for (core tiers): {grant, approval}, or null. One core key opens health and finance alike, so a
// grant issued for an approval opens only the categories that approval names (server/domain/entitlement.py).
async function grantFor(db, key, resident, fields, category) {
  const grant = key ? await db.get(grantId(key.id, resident._id, fields.tierOf(fields.categories[category][0])))
    .catch(() => null) : null;
  if (!grantIsUsable(grant)) {
    return null;
  }
  const approval = grant.access_request ? await db.get(grant.access_request).catch(() => null) : null;
  return !grant.access_request || approval?.categories?.includes(category) ? { grant, approval } : null;
}

// What the phone may open, as far as it can tell offline: a category opens when this phone holds a usable
// key grant for it (the server issues grants exactly by the firewall's rules, server/security/grants.py).
// `key` is this phone's (keys.js storedPhoneKey), null before it registered one.
async function entitlements(db, session, key, resident, fields) {
  const privacy = await privacyOf(db, resident);
  const result = [];
  for (const category of Object.keys(fields.categories)) {
    const tier = fields.tierOf(fields.categories[category][0]);
    const usable = await grantFor(db, key, resident, fields, category);
    if (usable) {
      const { approval } = usable;
      result.push({ category, allowed: true, reason: approval ? "fw_approved" : "fw_grid_worker", approval });
    } else {
      result.push({ category, allowed: false, reason: await closedReason(db, session, resident, privacy, category, tier),
                    approval: null });
    }
  }
  return result;
}

// Why a category without a usable grant stays closed, as the firewall would say it (entitlement.js).
async function closedReason(db, session, resident, privacy, category, tier) {
  const approval = activeApproval(await docsOfType(db, "access_request"), session.user._id, resident._id, category,
                                  Date.now());
  return lockedReason(session.phone_keys, privacy, category, tier, Boolean(approval));
}

async function privacyOf(db, resident) {
  return db.get(`privacy:${resident._id.split(":")[1]}`).catch(() => ({}));
}

// server/web/app.py household_page + queries.household_detail
async function householdPage({ db, session, schema, params }) {
  const household = await load(db, params.id, "household");
  const grid = await gridOf(db, session, household.grid);
  const fields = residentFields(schema);
  const today = new Date();
  const members = (await docsOfType(db, "resident")).filter((r) => r.household === household._id);
  const key = await storedPhoneKey(session.user._id);
  const residents = [];
  for (const r of members) {
    const basic = Object.fromEntries(fields.basic.filter((k) => k in r).map((k) => [k, r[k]]));
    residents.push({ ...basic, id: r._id, age: ageOn(r.birth_date, today), doc: r,
                     protected: await entitlements(db, session, key, r, fields),
                     has_account: session.residents_with_accounts.includes(r._id) });
  }
  return { template: "household.html",
           context: { household, grid, residents, visits: await recentVisits(db, session, schema, household._id),
                      common_needs: session.common_needs, purposes: session.reveal_purposes,
                      tasks: tasksInOrder((await docsOfType(db, "task")).filter((t) => t.household === household._id)),
                      may_assign: (session.task_assign_grids || []).includes(household.grid), names: session.names } };
}

// server/web/field_pages.py recent_visits; authors' names are the session's (accounts are not replicated). A visit's
// protected fields (VISIT_PROTECTED, from the declaration) stay sealed: the page says only that there is one.
async function recentVisits(db, session, schema, householdId) {
  const fields = schema.types.visit.fields;
  const sealed = Object.keys(fields).filter((name) => schema.protected_tiers.includes(fields[name].tier));
  const visits = (await docsOfType(db, "visit")).filter((v) => v.household === householdId)
    .sort((a, b) => new Date(b.visited_at) - new Date(a.visited_at)).slice(0, session.shown.recent_visits);
  return visits.map((v) => ({ _id: v._id, visited_at: v.visited_at, kind: v.kind, notes: v.notes || "",
    needs: v.needs || [], author: session.names[v.created_by] ?? "",
    photo: Object.keys(v._attachments || {}).sort()[0] ?? null, health_sealed: sealed.some((name) => v[name]) }));
}

// server/web/app.py reveal: open one category with this phone's grant, and report the opening for the filing log.
async function reveal({ db, session, schema, params, form, htmx }) {
  const resident = await load(db, params.id, "resident");
  await gridOf(db, session, resident.grid);
  const fields = residentFields(schema);
  const category = String(form.get("category") || "");
  const names = fields.categories[category] || [];
  const key = await storedPhoneKey(session.user._id);
  let values = {};
  let error = null;
  if (!names.length) {
    error = "fw_unknown_category";
  } else {
    const tier = fields.tierOf(names[0]);
    const { grant, approval } = await grantFor(db, key, resident, fields, category) || {};
    const purpose = firstCharacters((approval?.purpose || String(form.get("purpose") || "")).trim(), 500);
    if (!grant) {
      error = await closedReason(db, session, resident, await privacyOf(db, resident), category, tier);
    } else if (!purpose) {
      error = "fw_purpose_required";
    } else {
      try {
        values = await openFields(key, grant, resident, names, tier);
      } catch {
        error = "fw_tampered";
      }
      if (!error) {
        await reportOpening(db, session, key, resident, names, purpose);
      }
    }
  }
  const shown = names.map((name) => [name, error ? null : values[name] ?? null, fields.kindOf(name)]);
  return { template: htmx ? "_revealed.html" : "revealed.html", status: error && !htmx ? 403 : 200,
           context: { resident, category, fields: shown, error } };
}

// server/web/household_edit.py, offline: the edit lands in the replica; if someone else changed the household on
// the server meanwhile, the sync keeps both versions and a person chooses (/conflicts).
async function editHousehold({ db, session, schema, params, form, method }) {
  const { texts, editable } = session.household_form;
  const household = await load(db, params.id, "household");
  await gridOf(db, session, household.grid);
  if (!(session.household_edit_grids || []).includes(household.grid)) { // a volunteer's: as the server's rules say
    throw new OfflineError(403, "forbidden");
  }
  const fields = schema.types.household.fields;
  let values = { ...Object.fromEntries(editable.map((n) => [n, household[n] ?? null])),
                 tags: household.tags || [], _rev: household._rev };
  let errors = {};
  let message = null;
  let status = 200;
  if (method === "POST") {
    values = { ...Object.fromEntries(texts.map((n) => [n, String(form.get(n) || "").trim() || null])),
               housing: String(form.get("housing") || "") || null, tags: form.getAll("tags").map(String),
               _rev: String(form.get("_rev") || "") };
    const doc = Object.fromEntries(Object.entries(household).filter(([k]) => !editable.includes(k)));
    for (const name of editable) {
      if (values[name] !== null) doc[name] = values[name];
    }
    Object.assign(doc, { updated_by: session.user._id, updated_at: nowISO() });
    errors = fieldErrors(schema, doc);
    if (Object.keys(errors).length) {
      status = 400;
    } else if (values._rev !== household._rev) {
      [message, status] = ["changed_meanwhile", 409];
    } else {
      await db.put(doc);
      return { redirect: `/households/${household._id}` };
    }
  }
  return { template: "household_edit.html", status, context: {
    household, values, errors, message, housing_choices: fields.housing.choices, tag_choices: fields.tags.choices } };
}

// ---- alerts (server/web/field_pages.py): the inbox, and acknowledge / visiting / resolve written offline

const actionsByState = (session, states) => Object.fromEntries(states.map((state) => [state,
  Object.entries(session.alert_actions).filter(([, [, from]]) => from.includes(state)).map(([a]) => a)]));

async function alertNames(db, session, alerts) {
  const ids = new Set(alerts.flatMap((a) => ["resident", "household", "gateway"].map((k) => a[k]).filter(Boolean)));
  const rows = (await db.allDocs({ keys: [...ids], include_docs: true })).rows.filter((r) => r.doc);
  const names = Object.fromEntries(rows.map((r) => [r.id, r.doc.name || r.doc.address || ""]));
  return { ...names, ...session.names }; // who acknowledged: colleagues' names come with the session
}

function alertContext(session, schema) {
  return { actions: actionsByState(session, schema.types.alert.fields.status.choices) };
}

async function alertsPage({ db, session, schema, query, error = null }) {
  if (!session.may_see_alerts) {
    throw new OfflineError(403, "forbidden");
  }
  const showAll = query.get("status") === "all";
  const open = (await docsOfType(db, "alert")).filter((a) => showAll || a.status !== "resolved");
  const ordered = alertsInOrder(open, session.urgent_alert_kinds);
  const stillOpen = ordered.filter((a) => a.status !== "resolved"); // as field_pages.py visible_alerts: every open one
  const alerts = [...stillOpen, ...ordered.slice(stillOpen.length).slice(0, session.shown.resolved_alerts)]; // newest
  return { template: "alerts.html", context: { alerts, names: await alertNames(db, session, alerts),
    ...alertContext(session, schema), show_all: showAll, error, row_error: null } };
}

async function actOnAlert({ db, session, schema, params, form, htmx }) {
  let doc = await load(db, `alert:${params.id}`, "alert");
  let error = null;
  try {
    const changed = alertAfter(doc, String(form.get("action") || ""), session.user._id, nowISO(), session.alert_actions);
    if (!(session.alert_act_grids || []).includes(doc.grid)) { // seen, not theirs to act on (a resident's own alert)
      throw new OfflineError(403, "forbidden");
    }
    if (String(form.get("_rev") || doc._rev) !== doc._rev) {
      throw new AlertRefused("alert_conflict");
    }
    changed._rev = (await db.put(changed)).rev;
    doc = changed;
  } catch (refused) {
    if (!(refused instanceof AlertRefused)) throw refused;
    error = refused.message;
  }
  if (htmx) {
    return { template: "_alert_rows.html", context: { alerts: [doc], names: await alertNames(db, session, [doc]),
      ...alertContext(session, schema), row_error: error } };
  }
  // A stale revision is refused as CouchDB refuses one (409), the others are bad requests (field_pages.py act).
  return error ? { ...(await alertsPage({ db, session, schema, query: new URLSearchParams(), error })),
                   status: error === "alert_conflict" ? 409 : 400 }
    : { redirect: `/alerts#alert-${doc._id.replace(":", "-")}` };
}

// ---- visits (server/web/field_pages.py visit_new): needs list and a photo from the camera, written offline

async function newVisit({ db, session, schema, params, form, method }) {
  const household = await load(db, params.id, "household");
  await gridOf(db, session, household.grid);
  const residents = (await docsOfType(db, "resident")).filter((r) => r.household === household._id)
    .map((r) => ({ _id: r._id, name: r.name }));
  const kinds = schema.types.visit.fields.kind.choices;
  let values = { kind: kinds[0], resident: "", notes: "", needs: [], photo_chosen: false };
  let errors = {};
  if (method === "POST") {
    const photo = form.get("photo");
    values = { kind: String(form.get("kind") || ""), resident: String(form.get("resident") || ""),
               notes: String(form.get("notes") || "").trim(),
               needs: needsOf(form.getAll("needs").filter((v) => typeof v === "string")),
               photo_chosen: !!(photo && typeof photo !== "string" && photo.size) };
    try {
      await storeVisit(db, session, schema, household, values, residents, photo);
      return { redirect: `/households/${household._id}` };
    } catch (bad) {
      if (!(bad instanceof FormError)) throw bad;
      errors = bad.errors;
    }
  }
  // A visit answering a need (?need=) is recorded online only: the need's change names the visit, which the sync
  // gateway would judge before the visit reached the server. Offline the form records a plain visit.
  return { template: "visit_new.html", status: Object.keys(errors).length ? 400 : 200, context: {
    household, residents, kinds, common_needs: session.common_needs, values, errors, need: null,
    free_needs: values.needs.filter((n) => !session.common_needs.includes(n)) } };
}

async function storeVisit(db, session, schema, household, values, residents, photo) {
  if (values.resident && !residents.some((r) => r._id === values.resident)) {
    throw refuse("resident", "err_not_household_member");
  }
  const at = nowISO();
  const visit = { _id: `visit:${uuidHex()}`, type: "visit", street: household.street, community: household.community,
    grid: household.grid, household: household._id, kind: values.kind, visited_at: at, needs: values.needs,
    created_by: session.user._id, created_at: at };
  for (const name of ["resident", "notes"]) {
    if (values[name]) visit[name] = values[name];
  }
  const errors = fieldErrors(schema, visit);
  if (Object.keys(errors).length) {
    throw new FormError(errors);
  }
  if (photo && typeof photo !== "string" && photo.size) {
    const [name, attachment] = Object.entries(await photoAttachments([photo], session.photo_rule, "visit"))[0];
    visit._attachments = { [name.replace(/^photo-1/, "photo")]: attachment };
  }
  await db.put(visit);
}

async function attachment(db, doc, name) {
  const blob = name ? await db.getAttachment(doc._id, name).catch(() => null) : null;
  if (!blob) {
    throw new OfflineError(404, "not_found");
  }
  return { blob };
}

async function visitPhoto({ db, params }) {
  const visit = await load(db, `visit:${params.id}`, "visit");
  return attachment(db, visit, Object.keys(visit._attachments || {}).sort()[0]);
}

// ---- volunteers' tasks (server/web/task_pages.py): listed and answered offline; assigning needs the server, which
// names the grid's volunteers. The replica holds the tasks this user may see, as the server's list shows them.

async function tasksPage({ db, session }) {
  if (!session.may_see_tasks) {
    throw new OfflineError(403, "forbidden");
  }
  const volunteer = (session.user.roles || []).includes("volunteer");
  const grids = session.user.grids || [];
  const households = volunteer ? (await docsOfType(db, "household")).filter((h) => grids.includes(h.grid)) : [];
  const tasks = tasksInOrder(await docsOfType(db, "task")).slice(0, session.shown.tasks);
  return { template: "tasks.html", context: { tasks, households, names: session.names, volunteer } };
}

function taskContext(session, task, error, note) {
  const answers = task.assigned_to === session.user._id ? session.task_answers[task.status] || [] : [];
  return { task, names: session.names, answers, error, note,
           may_assign: (session.task_assign_grids || []).includes(task.grid) };
}

// Assigning a task (/tasks/new) needs the server: answered as any page the phone cannot make (sw.js), not as a task.
async function needsServer() {
  throw new OfflineError(503, "offline_unavailable");
}

async function taskPage({ db, session, params }) {
  return { template: "task.html", context: taskContext(session, await load(db, `task:${params.id}`, "task"), null, "") };
}

// server/web/task_pages.py answer: the volunteer's answer lands in the replica and reaches the server at the next
// sync, where the sync gateway holds it to the same rule (access.py _task_answer_refusal).
async function answerTask({ db, session, schema, params, form }) {
  const task = await load(db, `task:${params.id}`, "task");
  if (task.assigned_to !== session.user._id) {
    throw new OfflineError(403, "forbidden");
  }
  const note = String(form.get("volunteer_note") || "");
  let answered;
  try {
    answered = taskAnswered(task, String(form.get("answer") || ""), note, nowISO(), session.task_answers,
                            schema.types.task.fields.volunteer_note.max_length);
  } catch (refused) {
    if (!(refused instanceof TaskRefused)) throw refused;
    return { template: "task.html", status: 400, context: taskContext(session, task, refused.message, note) };
  }
  if (String(form.get("_rev") || task._rev) !== task._rev) {
    return { template: "task.html", status: 409, context: taskContext(session, task, "task_conflict", note) };
  }
  await db.put(answered);
  return { redirect: `/tasks/${params.id}` };
}

// ---- the time bank in the field (server/web/timebank_pages.py): a volunteer's or grid worker's /timebank from the
// replica (their balances from the transfers naming their account, claims, help to claim), and a claim made offline,
// perhaps confirmed in person with the resident's code: it reaches the server at the next sync, where the gateway
// judges it by the same rule as the online form (server/domain/timebank.py claim_refusal) and checks the code.

const shownClaim = (c) => ({ ...c, shown: hoursText(c.minutes) });
const compare = (x, y) => (x < y ? -1 : x > y ? 1 : 0);
const latestFirst = (list) => list.sort((a, b) => compare(b.created_at, a.created_at)); // stable: equals keep order
// A CouchDB view's order (its key, then the document id), then newest first as the server sorts it (Python's sort is
// stable too, so equals keep the view's order).
const viewThenNewest = (key) => (list) => latestFirst(list.sort((a, b) => compare(key(a), key(b))
  || compare(a._id, b._id)));

// An account's legs on one ledger as the ledger view holds them ([community, ledger, account, created_at]), each
// with `signed`: what it did to the account; their sum is the balance (server/services/timebank.py balance).
const legsOf = (transfers, community, ledger, account) => transfers.filter((t) => t.community === community
  && t.ledger === ledger && (t.from_account === account || t.to_account === account))
  .sort((a, b) => compare(a.created_at, b.created_at) || compare(a._id, b._id))
  .map((t) => ({ ...t, signed: t.from_account === account ? -t.amount : t.amount }));
const sumOf = (legs) => legs.reduce((sum, t) => sum + t.signed, 0);

async function timebankContext(db, session) {
  const user = session.user;
  const roles = user.roles || [];
  const rules = session.timebank;
  const resident = user.resident ? await load(db, user.resident, "resident") : null;
  const community = resident ? resident.community : (user.communities || [])[0];
  if (!community) {
    throw new OfflineError(404, "not_found");
  }
  const account = user.resident || user._id;
  const claims = await docsOfType(db, "claim");
  const toAnswer = viewThenNewest((c) => c.created_at)(claims.filter((c) => resident && c.resident === resident._id
    && c.status === "claimed"));
  if (roles.includes("grid_worker")) { // the human window: claims of their grids' residents, answered with consent
    for (const grid of user.grids || []) {
      toAnswer.push(...claims.filter((c) => c.grid === grid && c.status === "claimed" && c.created_by !== user._id
        && !toAnswer.some((a) => a._id === c._id)));
    }
  }
  const made = viewThenNewest((c) => `${c.status}\u0000${c.created_at}`)(claims.filter((c) => c.created_by === user._id));
  const claimed = new Set(claims.map((c) => c._id));
  const since = new Date(Date.now() - rules.expires_days * 86400000).toISOString().replace("Z", "+00:00");
  const tasks = [];
  if (roles.includes("volunteer") || roles.includes("grid_worker")) {
    for (const grid of user.grids || []) {
      for (const type of rules.claimable_types) {
        tasks.push(...(await docsOfType(db, type)).filter((t) => t.grid === grid
          && (t.assigned_to || t.created_by) === user._id && t.resident && (t.created_at || "") >= since
          && !claimed.has(`claim:${t._id}`)));
      }
    }
  }
  latestFirst(tasks);
  const entries = [];
  const balances = {};
  const transfers = await docsOfType(db, "transfer");
  for (const ledger of rules.ledgers) {
    const legs = legsOf(transfers, community, ledger, account);
    balances[ledger] = sumOf(legs);
    entries.push(...legs.map((t) => ({ ...t, shown: ledger === "hours" ? hoursText(t.signed) : String(t.signed) })));
  }
  latestFirst(entries);
  const names = { ...session.names };
  for (const type of ["resident", "household", "organisation", "community"]) {
    for (const doc of await docsOfType(db, type)) {
      names[doc._id] = doc.name || doc.address || doc._id;
    }
  }
  return { hours: hoursText(balances.hours), points: balances.points, to_answer: toAnswer.map(shownClaim), codes: [],
           made: made.map(shownClaim), tasks, entries, names, account, floor_hours: rules.floor_hours,
           max_minutes: rules.max_minutes, expires_days: rules.expires_days,
           answering_for_others: roles.includes("grid_worker") };
}

// Only who works in the field has it offline; a resident answers claims on their own page, online.
function fieldOnly(session) {
  const roles = session.user.roles || [];
  if (!roles.includes("volunteer") && !roles.includes("grid_worker")) {
    throw new OfflineError(503, "offline_unavailable");
  }
}

async function timebankPage({ db, session, query }) {
  fieldOnly(session);
  const done = session.timebank.done.includes(query.get("done")) ? query.get("done") : null;
  return { template: "timebank.html", context: { errors: {}, done, ...await timebankContext(db, session) } };
}

// server/services/timebank.py claim, into the replica: the claim the server would write, judged by the same rule
// (timebank.js claimRefusal) as far as a phone can; whether an in-person code is the resident's the gateway judges
// at sync. The form input each refusal belongs to is the session's (server/services/timebank.py CLAIM_FIELDS).
async function claimOffline({ db, session, form }) {
  fieldOnly(session);
  const taskId = String(form.get("task") || "");
  const task = taskId ? await db.get(taskId).catch(() => null) : null; // the replica holds what this user may see
  const refused = async (field, key, params, status) => ({ template: "timebank.html", status, context: {
    errors: { [field]: fieldError(key, params) }, done: null, ...await timebankContext(db, session) } });
  if (!task) {
    throw new OfflineError(404, "not_found");
  }
  const code = String(form.get("in_person_code") || "").trim();
  const consent = form.get("in_person_consent") === "yes";
  const at = nowISO();
  const note = firstCharacters(String(form.get("note") || "").trim(), 500);
  const doc = { _id: claimId(taskId), type: "claim" };
  for (const name of ["street", "community", "grid", "household", "resident"]) {
    if (task[name] !== undefined && task[name] !== null) doc[name] = task[name];
  }
  Object.assign(doc, { task: taskId, minutes: minutesOf(String(form.get("hours") || "")), ...(note ? { note } : {}),
    status: "claimed", ...(code || consent ? { in_person_code: code, in_person_consent: consent, in_person_at: at } : {}),
    created_by: session.user._id, created_at: at });
  const refusal = claimRefusal(session.user._id, doc, task, session.timebank);
  if (refusal) {
    const [key, params] = refusal;
    const field = session.timebank.claim_fields[key] || "task";
    return refused(field, key, params, key === "tb_claim_not_yours" ? 403 : 400);
  }
  if (await db.get(doc._id).catch(() => null)) {
    return refused("task", "tb_claim_exists", {}, 409);
  }
  await db.put(doc);
  return { redirect: "/timebank?done=claimed" };
}

async function catalogue(db, activeOnly) {
  const categories = (await docsOfType(db, "service_category")).filter((c) => !activeOnly || c.active !== false);
  return Object.fromEntries(categories.map((c) => [c.code, c]));
}

// server/web/request_pages.py list_page: what the phone holds is what this user may see.
async function requestsPage({ db, session }) {
  const requests = (await docsOfType(db, "service_request"))
    .sort((a, b) => (b.created_at || "").localeCompare(a.created_at || "")).slice(0, session.shown.requests);
  return { template: "requests.html", context: { requests, categories: await catalogue(db, false), now: nowISO() } };
}

function answers(form) {
  const result = {};
  for (const name of new Set(form.keys())) {
    if (name.startsWith("attribute.")) {
      const values = form.getAll(name).map(String).filter(Boolean);
      if (values.length) {
        const code = name.slice("attribute.".length).replace(/\[\]$/, "");
        result[code] = values.length > 1 || name.endsWith("[]") ? values : values[0];
      }
    }
  }
  return result;
}

// The photos of a form, as a document of `docType` carries them, by the server's rule (session.photo_rule).
async function photoAttachments(files, rule, docType) {
  const { max_bytes: maxBytes, max_count: maxCount } = rule.limits[docType];
  const chosen = files.filter((file) => typeof file !== "string" && file.size);
  if (chosen.length > maxCount) {
    throw refuse("photo", "err_too_many_photos", { max: maxCount });
  }
  const attachments = {};
  let n = 0;
  for (const file of chosen) {
    // Judged by its bytes, by the server's rule (server/domain/field_rules.py photo_refusal).
    const refusal = photoRefusal(new Uint8Array(await file.arrayBuffer()), file.type || null, maxBytes, rule);
    if (refusal === "photo_too_large") {
      throw refuse("photo", "err_photo_too_big",
                   { kb: Math.floor(file.size / 1024), mb: Math.floor(maxBytes / 1048576) });
    }
    if (refusal === "photo_not_image") {
      throw refuse("photo", "err_photo_type");
    }
    if (refusal === "photo_type_mismatch") {
      throw refuse("photo", "err_photo_type_mismatch", { declared: file.type });
    }
    n += 1;
    attachments[`photo-${n}.${file.type.split("/")[1]}`] = { content_type: file.type, data: file };
  }
  return attachments;
}

// server/web/request_pages.py new_page; the server dispatches it and starts its clocks when it arrives
// (server/services/service_requests.py intake), from the time it was reported here.
async function newRequest({ db, session, schema, form, method }) {
  const categories = await catalogue(db, true);
  const values = { ...Object.fromEntries(session.request_form_fields.map((name) => [name, ""])),
    ...(method === "POST" ? Object.fromEntries([...form.entries()].filter(([, v]) => typeof v === "string")) : {}) };
  const staff = (session.user.roles || []).includes("grid_worker");
  if (method === "GET") { // a resident's home address offered, as the server does (session.json)
    values.address = session.home_address || "";
  }
  let errors = {};
  if (method === "POST") {
    values.photo_chosen = form.getAll("photo").some((f) => typeof f !== "string" && f.size);
    try {
      const id = await storeRequest(db, session, schema, form, values, categories, staff);
      return { redirect: `/requests/${id.split(":")[1]}` };
    } catch (bad) {
      if (!(bad instanceof FormError)) throw bad;
      errors = bad.errors;
    }
  }
  return { template: "request_new.html", status: Object.keys(errors).length ? 400 : 200,
           context: { categories: Object.entries(categories), errors, values,
                      category: categories[values.category || ""] || null, staff } };
}

async function storeRequest(db, session, schema, form, values, categories, staff) {
  const category = categories[values.category || ""];
  const description = (values.description || "").trim();
  const photos = await photoAttachments(form.getAll("photo"), session.photo_rule, "service_request");
  if (!category) {
    throw refuse("service_code", "err_unknown_service", { code: values.category || "" });
  }
  if (!description && !Object.keys(photos).length) {
    throw refuse("description", "err_description_or_photo");
  }
  const lat = parseFloat(values.lat);
  const lon = parseFloat(values.lon);
  const location = Number.isFinite(lat + lon) ? { lat, lon } : null;
  if (!staff && !(values.address || "").trim() && !location) {
    throw refuse("lat", "err_location_required");
  }
  // Placed as the server places it (service_requests.create): staff's own first grid; a resident's own grid, from
  // their record in the replica (NewRequest.home_grid), whose worker receives it first.
  const gridId = staff ? [...(session.user.grids || [])].sort()[0] : null;
  const home = !staff && session.user.resident ? await db.get(session.user.resident).catch(() => null) : null;
  const place = gridId ? await load(db, gridId, "grid") : home?.type === "resident" ? home : null;
  if (!place) {
    throw refuse("grid", "err_offline_own_grid");
  }
  const onBehalf = staff && "on_behalf" in values;
  if (onBehalf && !("consent" in values)) {
    throw refuse("consent", "err_consent_required");
  }
  const unanswered = attributeErrors(category, answers(form)); // the category's questions, as intake checks them
  if (Object.keys(unanswered).length) {
    throw new FormError(unanswered);
  }
  const at = nowISO();
  const doc = {
    _id: `service_request:${uuidHex()}`, type: "service_request", street: place.street, community: place.community,
    grid: home ? home.grid : place._id, category: category.code, description, status: "received", source: "offline",
    on_behalf: onBehalf, consent: "consent" in values, created_by: session.user._id, created_at: at, updated_at: at,
    // The declaration version it is written under (server/domain/migrations.py): else the gateway upgrades it.
    [schema.version_field]: schema.types.service_request.version,
  };
  const optional = { address: (values.address || "").trim(), reporter_name: (values.reporter_name || "").trim(),
                     attributes: answers(form), location, resident: session.user.resident, household: home?.household };
  for (const [name, value] of Object.entries(optional)) {
    if (value && (typeof value !== "object" || Object.keys(value).length)) {
      doc[name] = value;
    }
  }
  if (Object.keys(photos).length) {
    doc._attachments = photos;
  }
  await db.put(doc);
  return doc._id;
}

// server/web/request_pages.py questions: the chosen category's questions, as the form changes.
async function requestQuestions({ db, query }) {
  return { template: "_questions.html",
           context: { category: (await catalogue(db, true))[query.get("category") || ""] || null, values: {},
                      errors: {} } };
}

// server/web/request_pages.py detail. Read-only offline: acting on a request moves its status, owner, history and
// clocks by rules (service_requests.transition, may_act) that the sync gateway does not apply to a phone's writes
// (it checks placement and schema), so an action written here could not be held to them; it needs the network.
// Who acted is named as far as the session knows them (colleagues; the departments are in the replica).
async function requestPage({ db, session, params }) {
  const doc = await load(db, `service_request:${params.id}`, "service_request");
  return { template: "request.html", context: await requestContext(db, session, doc) };
}

// The one act a grid worker's phone records offline on a request (issue 18): the reporter's answer to "is it
// really fixed?", at a visit or the human window, with their consent. It is written as a `fix_check`, which the
// server applies by the rules it applies online (service_requests.apply_fix_checks) when the phone syncs.
async function actOnRequest({ db, session, params, form }) {
  const doc = await load(db, `service_request:${params.id}`, "service_request");
  const action = String(form.get("action") || "");
  const via = String(form.get("via") || "");
  const reason = String(form.get("reason") || "");
  if (!["fixed", "not_fixed"].includes(action) || via === "own") {
    return needsServer();  // every other act, and a resident's own answer, moves the request: online only
  }
  const errors = fixCheckErrors(doc, session, action, via, form.has("consent"), reason);
  if (errors) {
    return { template: "request.html", status: errors.status,
             context: { ...await requestContext(db, session, doc), errors: errors.errors, acted: action, reason } };
  }
  const now = nowISO();
  await db.put({ _id: `fix_check:${uuidHex()}`, type: "fix_check", street: doc.street, community: doc.community,
                 grid: doc.grid, request: doc._id, fixed: action === "fixed", via, consent: true,
                 ...(reason.trim() ? { reason: firstCharacters(reason.trim(), 500) } : {}), created_by: session.user._id,
                 created_at: now });
  return { redirect: `/requests/${params.id}` };
}

// service_requests.confirm's checks, in its order and with its keys, so that the page says the same offline.
function fixCheckErrors(doc, session, action, via, consent, reason) {
  if (doc.status !== "closed" || doc.confirmed_at) {
    return { status: 400, errors: { confirm: fieldError("err_confirm_closed", {}) } };
  }
  if (!confirmChannels(session, doc).includes(via)) {
    throw new OfflineError(403, "forbidden");
  }
  if (!consent) {
    return { status: 400, errors: { consent: fieldError("err_consent_required", {}) } };
  }
  if (action === "not_fixed" && !reason.trim()) {
    return { status: 400, errors: { reason: fieldError("err_not_fixed_reason", {}) } };
  }
  return null;
}

// service_requests.confirm_channels: the reporter on their own page; the grid's worker or the community's secretary.
function confirmChannels(session, doc) {
  if (doc.status !== "closed" || doc.confirmed_at) {
    return [];
  }
  const user = session.user;
  const roles = user.roles || [];
  const reporter = user._id === doc.created_by || (user.resident && user.resident === doc.resident);
  const staff = (roles.includes("grid_worker") && (user.grids || []).includes(doc.grid))
    || (roles.includes("secretary") && (user.communities || []).includes(doc.community));
  return [...(reporter ? ["own"] : []), ...(staff ? ["window", "visit"] : [])];
}

async function requestContext(db, session, doc) {
  const categories = await catalogue(db, false);
  const departments = Object.fromEntries((await docsOfType(db, "department")).map((d) => [d._id, d.name]));
  const fixPending = (await docsOfType(db, "fix_check")).find((c) => c.request === doc._id && !c.outcome) || null;
  return {
    doc, category: categories[doc.category] || null, names: session.names, departments, errors: {}, note: "",
    satisfaction: session.satisfaction, may_act: false, reporter: false, secretary: false, department_actions: [],
    department_view: false, reason: "", acted: "", whistled: [], transitions: [],
    confirm_channels: confirmChannels(session, doc), fix_pending: fixPending,
    // A progress note's photo is shown with its note in the history, not among the report's photos.
    photos: Object.keys(doc._attachments || {}).filter((name) => !(doc.history || []).some((h) => h.photo === name))
      .sort() };
}

async function requestPhoto({ db, params }) {
  return attachment(db, await load(db, `service_request:${params.id}`, "service_request"), params.name);
}

// server/web/app.py home: where "/" leads is the server's decision (server/web/home.py, in the session): a page,
// the role page, or a resident's own record.
async function home(args) {
  const { session } = args;
  if (session.home) {
    return { redirect: session.home };
  }
  if (!session.home_roles) {
    return myRecord(args);
  }
  return { template: "home.html", context: { role_keys: session.home_roles } };
}

const newestFirst = (at) => (a, b) => (a[at] < b[at] ? 1 : a[at] > b[at] ? -1 : a._id < b._id ? 1 : -1);

// server/web/app.py my_record: what is held, who opened it and why (the filing log's entries about this resident,
// which reach their replica: access.py _audit), their needs. The session names who opened it.
async function myRecord({ db, session, schema }) {
  const resident = await load(db, session.user.resident, "resident");
  const openings = (await docsOfType(db, "audit_entry")).filter((e) => e.target === resident._id)
    .sort(newestFirst("at")).slice(0, session.shown.openings);
  const needs = (await docsOfType(db, "need")).filter((n) => n.resident === resident._id)
    .sort(newestFirst("created_at"));
  return { template: "my_record.html", context: {
    resident, openings, names: session.names, categories: Object.keys(residentFields(schema).categories),
    purposes_known: session.own_record_purposes, needs, need_categories: session.need_categories,
    spoken_languages: session.spoken_languages, need_hour_rows: session.need_hour_rows,
    need_values: { category: session.need_categories[0], description: "", language: "", hours: [] },
    need_errors: {} } };
}

// ---- matters and the ballot at the door (issue 15): server/web/matter_pages.py, for the grid worker's phone

// server/web/matter_pages.py list_page + deliberation.matters_of: the matters of the user's communities, open ones
// first, then newest first; a grid worker's open household votes lead to the door ballot form.
async function mattersPage({ db, session }) {
  const communities = session.user.communities || [];
  if (!communities.length) { // a resident: their community's matters reach no replica (access.py _of_community)
    throw new OfflineError(503, "offline_unavailable");
  }
  const newestFirst = (await docsOfType(db, "matter")).filter((m) => communities.includes(m.community))
    .sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0));
  const matters = [...newestFirst.filter((m) => m.status === "open"), ...newestFirst.filter((m) => m.status !== "open")];
  const names = Object.fromEntries((await docsOfType(db, "community")).filter((c) => communities.includes(c._id))
    .map((c) => [c._id, c.name]));
  return { template: "matters.html", context: { matters, names, may_open: false,
                                               door: (session.user.roles || []).includes("grid_worker") } };
}

// server/web/matter_pages.py door_page + deliberation.record_at_door: the households of the worker's grids, the
// ballots they recorded with their receipts, and the ballot written into the replica. What only the server can
// judge (the voting card's code, the window by its clock) it judges when the ballot arrives: a refusal shows in the
// sync bar with its reason.
async function doorBallot({ db, session, params, form, method }) {
  const matter = await load(db, `matter:${params.key}`, "matter");
  const me = session.user._id;
  if (!(session.user.roles || []).includes("grid_worker") || matter.electorate !== "household"
      || !(session.user.communities || []).includes(matter.community)) {
    throw new OfflineError(404, "not_found");
  }
  const grids = session.user.grids || [];
  const households = (await docsOfType(db, "household"))
    .filter((h) => grids.includes(h.grid) && h.community === matter.community);
  const values = { household: method === "POST" ? firstCharacters(String(form.get("household") || ""), 200) : "" };
  let errors = {};
  if (method === "POST") {
    try {
      await storeDoorBallot(db, me, matter, households.find((h) => h._id === values.household), form);
      return { redirect: `/matters/${params.key}/door#recorded` };
    } catch (bad) {
      if (!(bad instanceof FormError)) throw bad;
      errors = bad.errors;
    }
  }
  const recorded = (await docsOfType(db, "ballot"))
    .filter((b) => b.matter === matter._id && b.channel === "door" && b.assisted_by === me)
    .sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0));
  return { template: "matter_door.html", status: Object.keys(errors).length ? 400 : 200, context: {
    matter, key: params.key, households, values, ballot_prefix: `ballot:${params.key}:`, recorded, errors,
    addresses: Object.fromEntries(households.map((h) => [h._id, h.address])) } };
}

async function storeDoorBallot(db, me, matter, home, form) {
  const choice = firstCharacters(String(form.get("choice") || ""), 1000);
  if (!home) {
    throw refuse("household", "vote_door_not_your_grid");
  }
  if (form.get("consent") !== "yes") {
    throw refuse("consent", "vote_door_consent");
  }
  if (matter.mode === "secret" ? !choice.startsWith("enc:") : !matter.options.includes(choice)) {
    throw matter.mode === "secret" ? refuse("choice", "vote_must_be_sealed")
      : refuse("choice", "vote_unknown_option", { value: choice });
  }
  const ballot = { _id: `ballot:${matter._id.split(":")[1]}:${home._id}`, type: "ballot", street: matter.street,
    community: matter.community, grid: home.grid, matter: matter._id, voter: home._id, household: home._id, choice,
    channel: "door", assisted_by: me, consent: true, receipt: newReceipt(), created_by: me, created_at: nowISO() };
  const code = firstCharacters(String(form.get("code") || ""), 40);
  ballot.confirmation = await confirmation(await cardHash(ballot._id, code), ballot);
  // Recorded here already: a ballot is not changed (another phone's ballot for the household, which this replica
  // does not hold, becomes a version beside this one when both sync, counted once by precedence).
  if (await db.get(ballot._id).catch(() => null)) {
    throw refuse("household", "vote_ballot_kept");
  }
  await db.put(ballot);
}

// server/web/reward_pages.py redeem_context: the partner's counter (issue 16). The organisation's redemptions held
// by the replica, newest first, and those with a second use kept beside them (a conflict: server/services/rewards.py
// used_twice).
async function partnerContext(db, session) {
  const organisation = await load(db, session.user.organisation || "organisation:none", "organisation")
    .catch(() => { throw new OfflineError(403, "forbidden"); });
  const rows = (await db.allDocs({ startkey: "redemption:", endkey: "redemption:\ufff0", include_docs: true,
    conflicts: true })).rows.map((r) => r.doc).filter((d) => d.organisation === organisation._id);
  const recent = rows.sort(newestFirst("created_at")).slice(0, session.shown.redemptions);
  const twice = rows.filter((d) => d._conflicts?.length).sort(newestFirst("created_at"));
  const rewards = await docsOfType(db, "reward");
  const reward_names = Object.fromEntries(rewards.map((r) => [r._id, r.name]));
  return { organisation, recent, twice, reward_names };
}

// server/web/reward_pages.py partner_page and honour, over rewards.use: a code the pinned installation key signed,
// for this partner, recorded once under the id made from its voucher. Offline the voucher itself may not be in
// the replica yet (bought after the last sync): its signature is what vouches for it; a second use on another
// phone meets this one at the next sync as a conflict, kept and shown.
async function redeemPage({ db, session, method, form }) {
  const page = async (extra, status = 200) => ({ template: "redeem.html", status,
    context: { errors: {}, used: null, code: "", ...await partnerContext(db, session), ...extra } });
  if (!session.user.roles.includes("partner")) {
    throw new OfflineError(403, "forbidden");
  }
  if (method !== "POST") {
    return page({});
  }
  const code = firstCharacters(String(form.get("code") || ""), 2000);
  const voucher = await verifiedVoucher(code.trim());
  const refused = (key, params, status) => page({ code, errors: { code: fieldError(key, params) } }, status);
  if (!voucher) {
    return refused("pt_forged", {}, 400);
  }
  if (voucher.organisation !== session.user.organisation) {
    return refused("pt_other_partner", {}, 403);
  }
  const organisation = await load(db, voucher.organisation, "organisation");
  const first = await db.get(redemptionId(voucher.id)).catch(() => null);
  if (first) { // used already, or voided by the secretary's reversal (server/services/rewards.py void)
    const [key, params] = secondUseRefusal(first);
    return refused(key, params.at ? { at: localTime(session.time_zone)(params.at) } : params, 409);
  }
  const held = await db.get(voucher.id).catch(() => null); // bought since the last sync: its holder is not known
  const used = redemptionOf(voucher, organisation, held, session.user._id, nowISO());
  await db.put(used);
  return page({ used: { ...used, points: voucher.points } });
}

// server/web/reward_pages.py rewards_context, from the replica (issue 16): my points (the transfers naming my
// account), how points are earned (session.json), the catalogue, and my vouchers paid for, each with the QR code the
// server drew when it was made (stored with it) and its redemption once used or voided (a redemption names its
// voucher's holder, so it reaches their phone). Buying needs the server: the units left count everyone's vouchers,
// which no phone holds, and the debit takes the account's ledger lock. So offline the catalogue says so, with no
// form and no units left (tests/test_page_parity.py PARTLY_KNOWN).
async function rewardsPage({ db, session, query }) {
  const user = session.user;
  const own = async (id, type) => (id ? db.get(id).then((d) => (d.type === type ? d : null), () => null) : null);
  const resident = await own(user.resident, "resident");
  const organisation = await own(user.organisation, "organisation");
  const community = resident?.community || organisation?.community || (user.communities || [])[0];
  if (!community) {
    throw new OfflineError(404, "not_found");
  }
  const account = user.resident || user._id; // server/domain/timebank.py account_of
  const transfers = await docsOfType(db, "transfer");
  const paid = new Set(transfers.map((t) => t._id));
  const rewards = await docsOfType(db, "reward");
  const mine = viewThenNewest(() => "")((await docsOfType(db, "voucher"))
    .filter((v) => v.community === community && v.holder === account && paid.has(v.transfer)));
  const vouchers = await Promise.all(mine.map(async (v) => ({ ...v,
    used: await db.get(`redemption:${v._id.slice("voucher:".length)}`).catch(() => null) })));
  const names = Object.fromEntries((await docsOfType(db, "organisation")).map((o) => [o._id, o.name]));
  return { template: "rewards.html", context: {
    errors: {}, done: session.rewards_done.includes(query.get("done")) ? query.get("done") : null,
    points: sumOf(legsOf(transfers, community, "points", account)), rules: session.points_rules,
    buying_needs_server: true, vouchers, names,
    // by price; among equals in id order, as the server's stable sort of its view's rows
    catalogue: rewards.filter((r) => r.community === community && r.active).sort((a, b) => a.points - b.points),
    reward_names: Object.fromEntries(rewards.map((r) => [r._id, r.name])) } };
}

// The resource pool (server/web/pool_pages.py, server/services/pool.py): the page the venue's QR code opens, and
// the check-in it makes, into the replica; the sync gateway holds it to pool.checkin_refusal (a forged code refused).
// The session's time zone (China time) gives the day whose code a scan needs (pool.js codeMatches).
const todayIn = (timeZone) => new Intl.DateTimeFormat("en-CA", { timeZone }).format(new Date());

// server/services/pool.py checkable, over the replica's bookings and check-ins.
async function checkableHere(db, session, resource) {
  const checkedIn = new Set((await docsOfType(db, "checkin")).map((c) => c._id));
  return checkable(await docsOfType(db, "booking"), checkedIn, session.user._id, resource,
                   session.pool_checkin_early_minutes, Date.now());
}

async function poolCheckin({ db, session, query, form, method }) {
  const values = method === "POST" ? form : query;
  const resource = await load(db, String(values.get("resource") || ""), "resource");
  const bookings = await checkableHere(db, session, resource);
  const code = firstCharacters(String(values.get("code") || ""), 64);
  const page = (errors, status) => ({ template: "pool_checkin.html", status, context: {
    resource, bookings, code, errors, done: method === "GET" && query.get("done") === "checked_in" ? "checked_in" : null } });
  if (method === "GET") {
    return page({}, 200);
  }
  const booking = bookings.find((b) => b._id === String(form.get("booking") || ""));
  if (!booking) {
    return page({ "(form)": fieldError("pool_checkin_window", { minutes: resource.grace_minutes }) }, 400);
  }
  if (!await codeMatches(resource, todayIn(session.time_zone), code)) {
    return page({ code: fieldError("pool_checkin_code", {}) }, 400);
  }
  await db.put({ _id: checkinId(booking._id), type: "checkin", street: resource.street, community: resource.community,
                 resource: resource._id, booking: booking._id, method: "scan", code: code.trim().toUpperCase(),
                 created_by: session.user._id, created_at: nowISO() });
  return { redirect: `/pool/checkin?resource=${encodeURIComponent(resource._id)}&done=checked_in` };
}

// The pool browsed offline (issue 17 item 5): server/web/pool_pages.py list_page and resource_page over the replica,
// for those who work in a community (grid workers, volunteers), whose phone holds its resources, bookings and
// check-ins (access.py RULES), and for residents, whose phone holds only their own bookings: the hours others hold
// come with their session (pool.held_ahead: states, never whose), from the day it was fetched to the end of each
// resource's booking window; another day of a resident's calendar needs the server. Booking from the calendar
// works offline too (poolBook).
function poolCommunity(session) {
  const community = session.user.resident ? session.pool.community : (session.user.communities || [])[0];
  if (!community) {
    throw new OfflineError(404, "not_found");
  }
  return community;
}

const byId = (a, b) => (a._id < b._id ? -1 : a._id > b._id ? 1 : 0);

const doneOf = (session, query) => (session.pool.done.includes(query.get("done")) ? query.get("done") : null);
const bySlotStart = (a, b) => (a.slot_start < b.slot_start ? -1 : a.slot_start > b.slot_start ? 1 : byId(a, b));

async function poolPage({ db, session, query }) {
  const community = poolCommunity(session);
  const me = session.user._id;
  const resources = (await docsOfType(db, "resource")).filter((r) => r.community === community)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const mine = (await docsOfType(db, "booking")).filter((b) => b.group === b._id && b.booked_by === me)
    .sort(bySlotStart).reverse().slice(0, 50); // pool.bookings_of: newest first
  const checkedIn = new Set((await docsOfType(db, "checkin")).map((c) => c._id));
  const today = todayIn(session.time_zone);
  return { template: "pool.html", context: {
    resources, mine, today, done: doneOf(session, query),
    may_add: (session.user.roles || []).includes("secretary") && (session.user.communities || []).includes(community),
    checked: Object.fromEntries(mine.filter((b) => checkedIn.has(checkinId(b._id)))
      .map((b) => [b._id.slice("booking:".length), true])),
    names: Object.fromEntries(resources.map((r) => [r._id, r.name])),
    openings: Object.fromEntries(resources.map((r) => [r._id, openingText(r, today)])) } };
}

// pool_pages.resource_of: a resource of the person's community; any other is not found.
async function poolResourceOf(db, session, key) {
  const community = poolCommunity(session);
  const resource = await load(db, `resource:${key}`, "resource");
  if (resource.community !== community) {
    throw new OfflineError(404, "not_found");
  }
  return resource;
}

// A resident's calendar: the hours others hold that day, from the session (pool.held_ahead), as booking documents
// that name no one (pool.held_state: "conflict" stands for the two phones' versions); their own come from the
// replica. Another person's calendar is all in the replica: nothing here.
function othersHeld(session, resource, day) {
  if (!session.user.resident) {
    return [];
  }
  const ahead = session.pool.held?.resources?.[resource._id];
  if (!ahead || day < session.pool.held.from || day > ahead.until) {
    throw new OfflineError(503, "offline_unavailable");
  }
  const key = day.replace(/-/g, "");
  return Object.entries(ahead.hours).filter(([slot]) => slot.startsWith(key)).map(([slot, state]) => [
    Number(slot.slice(-2)), { _id: `booking:${resource._id.slice("resource:".length)}:${slot}`, status: state,
      ...(state === "conflict" ? { _conflicts: [state] } : {}) }]);
}

async function poolResource({ db, session, params, query }, errors = {}, status = 200, form = null) {
  const resource = await poolResourceOf(db, session, params.key);
  const today = todayIn(session.time_zone);
  const day = shownDay(query.get("day") || form?.get("day"), today, session.pool.days_shown);
  const keeper = isKeeper(session.user, resource);
  const prefix = `booking:${params.key}:`;
  const held = new Map([...othersHeld(session, resource, day), ...(await db.allDocs({
    startkey: `${prefix}${day.replace(/-/g, "")}00`, endkey: `${prefix}${day.replace(/-/g, "")}99`, include_docs: true,
    conflicts: true })).rows.filter((r) => r.doc).map((r) => [Number(r.id.slice(-2)), r.doc])]);
  const blocked = blockedHoursOn(resource, day);
  const hours = openHoursOn(resource, day).map((hour) => { // pool.day_view
    const doc = held.get(hour);
    const state = doc?._conflicts?.length ? "conflict" : blocked.has(hour) ? "blocked"
      : doc && session.pool.active.includes(doc.status) ? doc.status : "free";
    return { hour, state, booking: doc || null, reason: blocked.get(hour) || "" };
  });
  const toApprove = !keeper ? [] : (await docsOfType(db, "booking"))
    .filter((b) => b.resource === resource._id && b.group === b._id && b.status === "requested").sort(bySlotStart);
  // Who booked, by name: the names the session carries (colleagues; a resident's account name stays online).
  const seen = [...hours.filter((h) => h.booking).map((h) => h.booking.booked_by), ...toApprove.map((b) => b.booked_by)];
  const names = Object.fromEntries(seen.filter((id) => keeper && session.names[id]).map((id) => [id, session.names[id]]));
  const conflicted = keeper ? (await db.allDocs({ startkey: prefix, endkey: `${prefix}\ufff0`, include_docs: true,
    conflicts: true })).rows.filter((r) => r.doc?._conflicts?.length).map((r) => r.id) : [];
  const code = keeper ? ((session.pool.codes[resource._id] || []).find((c) => c.date === today) || {}).code : null;
  return { template: "pool_resource.html", status, context: {
    resource, day, keeper, prev_day: dayAfter(day, -1), next_day: dayAfter(day, 1),
    opening: openingText(resource, day), user_id: session.user._id, errors, done: doneOf(session, query),
    form: typedForm(form, day), hours, names, to_approve: toApprove,
    conflicts: conflicted.sort(), code: code || null } };
}

// pool_pages._typed: what the booking form shows again after a refusal (first showing: the day, one hour, one).
function typedForm(form, day) {
  const given = Object.fromEntries(["hour", "hours", "people", "purpose"].map((name) => [name,
    firstCharacters(String(form?.get(name) ?? ""), 200)]));
  return { ...given, day: String(form?.get("day") ?? "") || day, hours: given.hours || "1",
    people: given.people || "1" };
}

const asWhole = (value) => (/^\s*[+-]?\d+\s*$/.test(String(value)) ? Number(value) : String(value)); // pool_pages._int

// pool_pages.book and pool.book, offline: every slot free as this phone knows it (its replica; a resident's, with
// the hours others hold from the session) and within the resource's rules, or nothing is written. The sync
// gateway judges it again (access._pool_refusal); two phones that took one slot meet there as one document in
// conflict, listed on the keeper's calendar to resolve (pool.conflicts_of), never two bookings.
async function poolBook(request) {
  const { db, session, params, form } = request;
  const resource = await poolResourceOf(db, session, params.key);
  const refused = (field, key, args, status = 400) => poolResource(request, { [field]: fieldError(key, args) },
    status, form);
  const dayGiven = String(form.get("day") ?? "");
  const hourGiven = asWhole(form.get("hour") ?? "");
  const m = /^(\d{4})-?(\d\d)-?(\d\d)$/.exec(dayGiven);
  const start = m && isWhole(hourGiven) && hourGiven >= 0 && hourGiven <= 23
    && Date.parse(`${m[1]}-${m[2]}-${m[3]}T${String(hourGiven).padStart(2, "0")}:00:00+08:00`);
  if (!start || chinaParts(start).slice(0, 10) !== `${m[1]}-${m[2]}-${m[3]}`) {
    return refused("hour", "pool_slot_id", {});
  }
  const hours = asWhole(form.get("hours") ?? "1");
  if (!isWhole(hours) || hours < 1 || hours > 24) {
    return refused("hours", "pool_too_long", { max: resource.max_hours });
  }
  const now = Date.now();
  const today = Date.parse(`${chinaParts(now).slice(0, 10)}T00:00:00+08:00`);
  if (start < today - DAY_MS) {
    return refused("day", "pool_past", {});
  }
  if (start >= today + (resource.book_ahead_days + 2) * DAY_MS) {
    return refused("day", "pool_too_far", { days: resource.book_ahead_days });
  }
  const kinds = new Set([...(session.user.roles || []).filter((r) => ["volunteer", "grid_worker", "secretary"]
    .includes(r)), ...(session.user.resident ? ["resident"] : [])]);
  const purpose = firstCharacters(String(form.get("purpose") ?? "").trim(), 200);
  const docs = [];
  for (let n = 0; n < hours; n += 1) {
    const at = start + n * HOUR_MS;
    const id = slotIdAt(resource._id, at);
    const day = chinaParts(at).slice(0, 10);
    const inWindow = !session.user.resident || (day >= (session.pool.held?.from || "")
      && day <= (session.pool.held?.resources?.[resource._id]?.until || ""));
    const others = inWindow ? new Map(othersHeld(session, resource, day)) : new Map();
    const old = await db.get(id).catch(() => null);
    if ((old && session.pool.active.includes(old.status)) || others.has(Number(chinaParts(at).slice(11, 13)))) {
      return refused("(form)", "pool_slot_taken", {}, 409);
    }
    const doc = { _id: id, ...(old ? { _rev: old._rev, ...(old.waitlist?.length ? { waitlist: old.waitlist } : {}) }
      : {}), type: "booking", street: resource.street, community: resource.community, resource: resource._id,
      slot_start: slotStartAt(at), group: slotIdAt(resource._id, start), hours,
      people: asWhole(form.get("people") ?? "1"), status: resource.approval ? "requested" : "confirmed",
      booked_by: session.user._id, created_at: nowISO(),
      ...(session.user.resident ? { resident: session.user.resident } : {}), ...(purpose ? { purpose } : {}) };
    const refusal = bookingRefusal(doc, resource, kinds, now);
    if (refusal) {
      return refused(session.pool.refusal_fields[refusal[0]] || "(form)", refusal[0], refusal[1]);
    }
    docs.push(doc);
  }
  await db.bulkDocs(docs);
  return { redirect: `/pool/r/${params.key}?day=${dayGiven}&done=${resource.approval ? "requested" : "booked"}` };
}

// pool_pages.photo: the resource's photo, from the replica.
async function poolPhoto({ db, session, params }) {
  const resource = await poolResourceOf(db, session, params.key);
  return attachment(db, resource, Object.keys(resource._attachments || {})[0]);
}

// One request answered from the replica, as the service worker answers it (sw.js) and as the page-parity test
// renders it (pwa/tests/offline_pages.mjs): {template, context, status}, {redirect} or {blob}. A refusal
// (OfflineError) is the app's error page; a form must carry the session's CSRF token (`csrfToken`: the form's
// field or the X-CSRF-Token header).
export async function answer({ handler, params }, { db, session, schema, url, method, form, htmx, csrfToken }) {
  if (form && csrfToken !== session.csrf_token) {
    return { template: "error.html", context: { message: "csrf_failed", errors: {} }, status: 403 };
  }
  try {
    return { status: 200, ...await handler({ db, session, schema, params, query: url.searchParams, form, htmx, method }) };
  } catch (error) {
    if (!(error instanceof OfflineError)) {
      throw error;
    }
    return { template: "error.html", context: { message: error.message, errors: {} }, status: error.status };
  }
}

// [method, path pattern, handler]; `:name` matches one path segment.
export const ROUTES = [
  ["GET", "/", home],
  ["GET", "/grids/:id", gridPage],
  ["GET", "/households/:id", householdPage],
  ["POST", "/residents/:id/reveal", reveal],
  ["GET", "/households/:id/edit", editHousehold],
  ["POST", "/households/:id/edit", editHousehold],
  ["GET", "/alerts", alertsPage],
  ["POST", "/alerts/:id/act", actOnAlert],
  ["GET", "/households/:id/visits/new", newVisit],
  ["POST", "/households/:id/visits/new", newVisit],
  ["GET", "/visits/:id/photo", visitPhoto],
  ["GET", "/tasks", tasksPage],
  ["GET", "/tasks/new", needsServer],
  ["GET", "/tasks/:id", taskPage],
  ["POST", "/tasks/:id/answer", answerTask],
  ["GET", "/requests", requestsPage],
  ["GET", "/requests/new", newRequest],
  ["POST", "/requests/new", newRequest],
  ["GET", "/requests/questions", requestQuestions],
  ["GET", "/requests/:id", requestPage],
  ["POST", "/requests/:id/act", actOnRequest],
  ["GET", "/requests/:id/photos/:name", requestPhoto],
  ["GET", "/matters", mattersPage],
  ["GET", "/matters/:key/door", doorBallot],
  ["POST", "/matters/:key/door", doorBallot],
  ["GET", "/rewards", rewardsPage],
  ["GET", "/redeem", redeemPage],
  ["POST", "/redeem", redeemPage],
  ["GET", "/pool/checkin", poolCheckin],
  ["POST", "/pool/checkin", poolCheckin],
  ["GET", "/pool", poolPage],
  ["GET", "/pool/r/:key", poolResource],
  ["POST", "/pool/r/:key/book", poolBook],
  ["GET", "/pool/r/:key/photo", poolPhoto],
  ["GET", "/timebank", timebankPage],
  ["POST", "/claims", claimOffline],
  ["GET", "/survey/door", surveyDoor],
  ["POST", "/survey/door", surveyDoor],
];

// ---- the monthly survey at the door (issue 18): server/web/survey_pages.py door_page, server/services/survey.py
// door_list and answer_at_door. The month's sample (the community's, which the replica holds) and the households of
// it this phone may see; an answer written into the replica under the household's id for the month, which the sync
// gateway judges by the rule the page uses (access.survey_door_refusal) and refuses with the same words. Answered:
// from this phone, or as the sample says (its `answered`, kept by the server: survey.mark_answered), since others'
// answers reach no replica (access.py RULES survey_response): which doors are done, never what was answered.
function localMonth(timeZone) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit" })
    .formatToParts(new Date()).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}`;
}

async function surveyDoor({ db, session, form, method }) {
  const roles = session.user.roles || [];
  if (!roles.includes("volunteer") && !roles.includes("grid_worker")) {
    throw new OfflineError(403, "forbidden");
  }
  const me = session.user._id;
  const grids = session.user.grids || [];
  const month = localMonth(session.time_zone);
  const samples = Object.fromEntries((await docsOfType(db, "survey_sample")).filter((d) => d.month === month)
    .map((d) => [d.community, d]));
  let typed = { household: "", overall: "" };
  let errors = {};
  if (method === "POST") {
    typed = { household: String(form.get("household") || ""), overall: String(form.get("overall") || "") };
    const home = await load(db, firstCharacters(typed.household, 2000), "household");
    try {
      await storeDoorAnswer(db, me, grids, home, samples[home.community], month, typed.overall,
                            form.get("consent") !== null);
      typed = { household: "", overall: "" };
    } catch (bad) {
      if (!(bad instanceof FormError)) throw bad;
      errors = bad.errors;
    }
  }
  const answered = new Set([
    ...(await docsOfType(db, "survey_response")).filter((d) => d.month === month).map((d) => d.household),
    ...Object.values(samples).flatMap((d) => d.answered || [])]);
  const households = await docsOfType(db, "household");
  const rows = [];
  for (const community of [...(session.user.communities || [])].sort()) {
    const mine = new Set((samples[community]?.households || []).filter((e) => grids.includes(e.grid))
      .map((e) => e.household));
    rows.push(...households.filter((h) => mine.has(h._id)).map((h) => ({ household: h, answered: answered.has(h._id) })));
  }
  rows.sort((a, b) => (a.answered - b.answered) || (a.household.address < b.household.address ? -1
    : a.household.address > b.household.address ? 1 : 0));
  return { template: "survey_door.html", status: Object.keys(errors).length ? 400 : 200,
           context: { rows, errors, typed, month } };
}

async function storeDoorAnswer(db, me, grids, home, sample, month, overall, consent) {
  if (!(sample?.households || []).some((e) => e.household === home._id)) {
    throw refuse("household", "err_survey_not_sampled", { month });
  }
  if (!grids.includes(home.grid)) {
    throw new OfflineError(403, "forbidden");
  }
  if (!consent) {
    throw refuse("consent", "err_survey_consent", { month });
  }
  if (!/^[1-5]$/.test(overall)) {
    throw refuse("overall", "err_survey_overall", { month });
  }
  const id = `survey_response:${home.community.split(":")[1]}:${month}:door-${home._id.split(":")[1]}`;
  if (await db.get(id).catch(() => null)) {
    throw refuse("overall", "err_survey_answered", { month });
  }
  await db.put({ _id: id, type: "survey_response", street: home.street, community: home.community, month,
                 overall: Number(overall), household: home._id, channel: "door", consent: true, created_by: me,
                 created_at: nowISO() });
}

export function route(method, path) {
  const parts = path.split("/");
  for (const [m, pattern, handler] of ROUTES) {
    const wanted = pattern.split("/");
    if (m !== method || wanted.length !== parts.length) {
      continue;
    }
    const params = {};
    if (wanted.every((w, i) => (w.startsWith(":") ? (params[w.slice(1)] = decodeURIComponent(parts[i])) : w === parts[i]))) {
      return { handler, params };
    }
  }
  return null;
}
