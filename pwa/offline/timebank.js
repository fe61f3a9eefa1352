// The time bank's claim rules as server/domain/timebank.py states them, for the offline /timebank (pages.js
// claimOffline, timebankContext) and the node tests: hours as people read them, hours as typed in whole minutes, and
// why a claim may not be made (claimRefusal, the twin of timebank.claim_refusal). Both sides run
// tests/vectors/timebank_claim.json (Python: tests/test_timebank_vectors.py). `rules` is the session's `timebank`
// (timebank.offline_rules: the limits and the claimable types, declared once in Python).

// server/domain/timebank.py hours_text: minutes as hours for people ("1.5", "-0.5", "1").
export const hoursText = (minutes) => (minutes / 60).toFixed(2).replace(/0+$/, "").replace(/\.$/, "");

// server/web/timebank_pages.py _minutes reads hours with Python's float(): any Unicode decimal digits (a full-width
// "１.５" from a Chinese keyboard is 1.5), single underscores between digits, no "0x" prefixes; what it cannot read,
// or reads as infinite, stays text and the rules refuse it. round() rounds halves to even.
const DIGITS = String.raw`\p{Nd}(?:_?\p{Nd})*`;
const PYTHON_FLOAT = new RegExp(String.raw`^[+-]?(?:(?:${DIGITS})?\.${DIGITS}|${DIGITS}\.?)(?:[eE][+-]?${DIGITS})?$`,
  "u");
const PYTHON_SPACE = "[\\t-\\r\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"; // what float() strips
const PYTHON_STRIP = new RegExp(`^${PYTHON_SPACE}+|${PYTHON_SPACE}+$`, "g");
const DECIMAL = /\p{Nd}/u;

// A decimal digit's value: Unicode puts each script's digits 0-9 in a run of their own, in order.
function digitValue(digit) {
  const point = digit.codePointAt(0);
  let zero = point;
  while (DECIMAL.test(String.fromCodePoint(zero - 1))) zero -= 1;
  return (point - zero) % 10;
}

const roundHalfEven = (x) => {
  const r = Math.round(x); // halves up
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
};

export function minutesOf(typed) {
  const text = typed.replace(PYTHON_STRIP, "");
  if (!PYTHON_FLOAT.test(text)) {
    return typed;
  }
  const hours = Number(text.replace(/_/g, "").replace(/\p{Nd}/gu, (d) => String(digitValue(d))));
  return Number.isFinite(hours * 60) ? roundHalfEven(hours * 60) : typed;
}

export const claimId = (taskId) => `claim:${taskId}`; // timebank.claim_id: one task, one claim

const IN_PERSON_FIELDS = ["in_person_code", "in_person_consent", "in_person_at"];
const PLACE = ["street", "community", "grid", "resident"];

// timebank.claim_refusal, all of it a phone can judge ([message key, params], or null): not whether an in-person code
// is one of the resident's good codes, nor whether their codes rest after wrong tries (their ledger lock stays on the
// server: the gateway judges both when the claim syncs). `writer`: the user id making the claim.
export function claimRefusal(writer, claim, task, rules) {
  const { minutes } = claim;
  if (!Number.isInteger(minutes) || minutes <= 0 || minutes > rules.max_minutes) {
    return ["tb_minutes_range", { hours: Math.floor(rules.max_minutes / 60) }];
  }
  if (claim.status !== "claimed") {
    return ["tb_claim_made_claimed", {}];
  }
  if (typeof claim.task !== "string" || claim._id !== claimId(claim.task)) {
    return ["tb_claim_id", {}];
  }
  if (!task || !rules.claimable_types.includes(task.type) || task._deleted || !task.resident) {
    return ["tb_claim_no_task", {}]; // hours are claimed from someone: a task for a whole household is not
  }
  if (PLACE.some((name) => task[name] !== claim[name])) {
    return ["tb_claim_task_elsewhere", {}];
  }
  if ((task.assigned_to || task.created_by) !== writer) { // timebank.doer_of
    return ["tb_claim_not_yours", {}];
  }
  if (!IN_PERSON_FIELDS.some((name) => claim[name] !== undefined && claim[name] !== null)) {
    return null;
  }
  if (claim.in_person_consent !== true || !claim.in_person_at) {
    return ["tb_in_person_consent", {}];
  }
  return typeof claim.in_person_code === "string" && claim.in_person_code.trim() ? null : ["tb_code_wrong", {}];
}
