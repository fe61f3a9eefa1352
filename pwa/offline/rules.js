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

const PHOTO_TYPES = ["image/jpeg", "image/png", "image/webp"];
const MAGIC = [[[0xff, 0xd8, 0xff], "image/jpeg"], [[0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "image/png"],
  [[0x25, 0x50, 0x44, 0x46, 0x2d], "application/pdf"]];
const startsWith = (bytes, magic, at = 0) => magic.every((b, i) => bytes[at + i] === b);

// What a file is by its first bytes (a Uint8Array): a JPEG, PNG or WebP image, a PDF; null for anything else.
export function sniffedType(bytes) {
  if (bytes.length >= 12 && startsWith(bytes, [0x52, 0x49, 0x46, 0x46]) && startsWith(bytes, [0x57, 0x45, 0x42, 0x50], 8)) {
    return "image/webp";
  }
  return MAGIC.find(([magic]) => startsWith(bytes, magic))?.[1] ?? null;
}

// Why a photo is refused ("photo_too_large", "photo_not_image", "photo_type_mismatch"), or null.
export function photoRefusal(bytes, declared, maxBytes) {
  if (bytes.length > maxBytes) {
    return "photo_too_large";
  }
  const kind = sniffedType(bytes);
  if (!PHOTO_TYPES.includes(kind)) {
    return "photo_not_image";
  }
  return declared && declared !== kind ? "photo_type_mismatch" : null;
}
