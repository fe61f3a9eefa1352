// The pool's booking rules as server/domain/pool.py states them, for the offline pages (pages.js poolResource,
// poolBook) and the node tests: a resource's hours on a day, the hour in China time, and why a slot may not be
// booked (bookingRefusal, the twin of pool.booking_refusal; both sides run tests/vectors/pool_booking.json).

export const DAY_MS = 86400000;
export const HOUR_MS = 3600000;
const CHINA_MS = 8 * HOUR_MS;

// server/domain/pool.py open_hours_on, blocked_hours_on, opening_text. `day`: "YYYY-MM-DD"; weekday 0 is Monday.
const weekdayOf = (day) => (new Date(`${day}T00:00:00Z`).getUTCDay() + 6) % 7;
export function openHoursOn(resource, day) {
  const hours = new Set();
  for (const r of (resource.open_hours || []).filter((h) => h.weekday === weekdayOf(day))) {
    for (let h = Math.max(0, r.opens); h < Math.min(24, r.closes); h += 1) hours.add(h);
  }
  return [...hours].sort((a, b) => a - b);
}

export function blockedHoursOn(resource, day) {
  const hours = new Map();
  for (const b of (resource.blackouts || []).filter((x) => x.date === day)) {
    for (let h = Math.max(0, b.from_hour); h < Math.min(24, b.to_hour); h += 1) {
      if (!hours.has(h)) hours.set(h, b.reason || "");
    }
  }
  return hours;
}

export function openingText(resource, day) {
  const runs = [];
  for (const h of openHoursOn(resource, day)) {
    if (runs.length && runs[runs.length - 1][1] === h) runs[runs.length - 1][1] = h + 1;
    else runs.push([h, h + 1]);
  }
  return runs.map(([a, b]) => `${a}-${b}`).join(", ") || "-";
}

// server/domain/pool.py, the hour in China time (no daylight saving: an hour is an hour), as the server cuts them.
export const chinaParts = (ms) => new Date(ms + CHINA_MS).toISOString(); // "YYYY-MM-DDTHH:…" of China time
export const slotIdAt = (resourceId, ms) => `booking:${resourceId.slice("resource:".length)}:${
  chinaParts(ms).slice(0, 13).replace(/[-T]/g, "")}`;
export const slotStartAt = (ms) => `${chinaParts(ms).slice(0, 19)}+08:00`; // Python's isoformat() of the hour
export const isWhole = (value) => Number.isInteger(value);

// pool.booking_refusal: why this slot of a booking may not be booked ([message key, params]); null if it may.
// `kinds`: what the booker books as (pool.booker_kinds).
export function bookingRefusal(booking, resource, kinds, now) {
  if (!resource || resource.type !== "resource" || resource._deleted || booking.resource !== resource._id
      || booking.community !== resource.community) {
    return ["pool_no_resource", {}];
  }
  const start = Date.parse(booking.slot_start);
  if (!/(Z|[+-]\d\d:\d\d)$/.test(String(booking.slot_start)) || Number.isNaN(start)
      || booking._id !== slotIdAt(resource._id, start) || start % HOUR_MS) {
    return ["pool_slot_id", {}];
  }
  const m = /:(\d{4})(\d\d)(\d\d)(\d\d)$/.exec(String(booking.group));
  const first = m && Date.parse(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:00:00+08:00`);
  const { hours } = booking;
  if (!isWhole(hours) || hours < 1 || !first || booking.group !== slotIdAt(resource._id, first)
      || !(first <= start && start < first + HOUR_MS * hours)) {
    return ["pool_slot_id", {}];
  }
  if (hours > resource.max_hours) {
    return ["pool_too_long", { max: resource.max_hours }];
  }
  if (first + HOUR_MS <= now) { // the hour under way may still be booked, for what is left of it
    return ["pool_past", {}];
  }
  if (first > now + resource.book_ahead_days * DAY_MS) {
    return ["pool_too_far", { days: resource.book_ahead_days }];
  }
  const local = chinaParts(start);
  const [day, hour] = [local.slice(0, 10), Number(local.slice(11, 13))];
  if (!openHoursOn(resource, day).includes(hour)) {
    return ["pool_closed", { hours: openingText(resource, day) }];
  }
  const blocked = blockedHoursOn(resource, day);
  if (blocked.has(hour)) {
    return ["pool_blackout", { reason: blocked.get(hour) || "-" }];
  }
  if (!isWhole(booking.people) || booking.people < 1 || booking.people > resource.capacity) {
    return ["pool_over_capacity", { capacity: resource.capacity }];
  }
  if (![...kinds].some((kind) => resource.who_may_book.includes(kind))) {
    return ["pool_not_for_you", {}];
  }
  if (booking.status !== (resource.approval ? "requested" : "confirmed")) {
    return ["pool_status", {}];
  }
  return null;
}

