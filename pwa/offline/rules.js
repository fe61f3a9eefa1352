// The field work's rules the offline pages apply exactly as the server does (server/domain/field_rules.py), with
// the vocabularies from /pwa/session.json. server/domain/vectors/field_rules.json pins both to the same answers
// (pwa/tests/field_rules.test.mjs here, tests/test_field_rules.py in Python).

// A visit's needs from its form: checkbox keys and free-text lines, blank lines dropped, in order.
// Lines break where Python's str.splitlines breaks them, and are trimmed of what Python's str.strip trims
// (JavaScript's trim differs: it keeps \x1c-\x1f and \x85, and removes U+FEFF).
const LINE_BREAK = /\r\n|[\n\v\f\r\x1c-\x1e\x85\u2028\u2029]/;
const SPACE = "[\\t\\n\\v\\f\\r \\x1c-\\x1f\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const PYTHON_STRIP = new RegExp(`^${SPACE}+|${SPACE}+$`, "g");
export function needsOf(values) {
  const lines = values.flatMap((v) => String(v).split(LINE_BREAK)).map((l) => l.replace(PYTHON_STRIP, "")).filter(Boolean);
  return [...new Set(lines)];
}

export class AlertRefused extends Error {}

// The alert after `action` by `userId` at `stamp` (ISO time), not stored; `actions` is session.alert_actions
// ({action: [to, [from states]]}). Throws AlertRefused with an i18n key.
export function alertAfter(doc, action, userId, stamp, actions) {
  if (!Object.hasOwn(actions, action)) {
    throw new AlertRefused("alert_unknown_action");
  }
  const [to, from] = actions[action];
  if (!from.includes(doc.status)) {
    throw new AlertRefused("alert_not_allowed");
  }
  const changed = { ...doc, status: to };
  if (!changed.acknowledged_by) { // going to visit or resolving acknowledges it too
    Object.assign(changed, { acknowledged_by: userId, acknowledged_at: stamp });
  }
  if (to === "resolved") {
    changed.resolved_at = stamp;
  }
  changed.updated_at = stamp;
  return changed;
}

// The inbox's order: open ones first, among them the urgent kinds first; each part newest first.
export function alertsInOrder(alerts, urgentKinds) {
  const rank = (a) => 2 * (a.status === "resolved") + !urgentKinds.includes(a.kind);
  return [...alerts].sort((a, b) => new Date(b.raised_at) - new Date(a.raised_at)).sort((a, b) => rank(a) - rank(b));
}

export class TaskRefused extends Error {}

const OPEN_TASK_STATES = ["assigned", "accepted"]; // server/domain/field_rules.py
const TASK_NOTE_REQUIRED = ["done", "declined"];

// The task after its volunteer's `answer` with `note` at `stamp`, not stored; `answers` is session.task_answers
// ({state: [answers]}), `maxNote` the declaration's volunteer_note max_length (/schema.json). Throws TaskRefused
// with an i18n key (server/domain/field_rules.py task_answered).
export function taskAnswered(doc, answer, note, stamp, answers, maxNote) {
  if (!(answers[doc.status] || []).includes(answer)) {
    throw new TaskRefused("task_answer_not_allowed");
  }
  const trimmed = note.replace(PYTHON_STRIP, "");
  if (TASK_NOTE_REQUIRED.includes(answer) && !trimmed) {
    throw new TaskRefused("task_note_required");
  }
  if ([...trimmed].length > maxNote) { // Python counts code points
    throw new TaskRefused("task_note_too_long");
  }
  return { ...doc, status: answer, updated_at: stamp, ...(trimmed ? { volunteer_note: trimmed } : {}) };
}

// Open tasks first, soonest due first (undated after dated); then the rest; newest first within a day.
export function tasksInOrder(tasks) {
  const key = (t) => `${OPEN_TASK_STATES.includes(t.status) ? 0 : 1}${t.due_on || "9999"}`;
  const newestFirst = [...tasks].sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0));
  return newestFirst.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

const startsAt = (bytes, at, magic) => magic.every((b, i) => bytes[at + i] === b);

// What a file is by its first bytes (a Uint8Array): a type of `signatures` ({type: [[offset, bytes]]}, all must
// match: session.photo_rule.signatures, server/domain/field_rules.py PHOTO_SIGNATURES), or null.
export function sniffedType(bytes, signatures) {
  return Object.entries(signatures).find(([, signature]) => signature.every(([at, magic]) => startsAt(bytes, at, magic)))
    ?.[0] ?? null;
}

// Markup (any case) where a browser looks when it guesses a type: a page behind a photo's first bytes.
function hasMarkup(bytes, rule) {
  const head = bytes.slice(0, rule.markup_window).map((b) => (b >= 0x41 && b <= 0x5a ? b + 0x20 : b));
  return rule.markup.some((marker) => head.some((_, at) => startsAt(head, at, marker)));
}

// Why a photo is refused ("photo_too_large", "photo_not_image", "photo_type_mismatch"), or null; `rule` is
// session.photo_rule.
export function photoRefusal(bytes, declared, maxBytes, rule) {
  if (bytes.length > maxBytes) {
    return "photo_too_large";
  }
  const kind = sniffedType(bytes, rule.signatures);
  if (kind === null || hasMarkup(bytes, rule)) {
    return "photo_not_image";
  }
  return declared && declared !== kind ? "photo_type_mismatch" : null;
}
