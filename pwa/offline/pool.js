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


// ---- check-ins (pages.js poolCheckin): the venue's code of the day, the window, who checks people in.

// pool.checkin_open: a check-in counts from `earlyMinutes` (pool.CHECKIN_EARLY, the session's
// pool_checkin_early_minutes) before the booking starts until its grace period ends. `now`: ms.
export function checkinOpen(booking, resource, earlyMinutes, now) {
  const start = Date.parse(booking.slot_start);
  return start - earlyMinutes * 60000 <= now && now <= start + resource.grace_minutes * 60000;
}

export const checkinId = (bookingId) => `checkin:${bookingId.slice("booking:".length)}`; // pool.checkin_id

// server/services/pool.py checkable: of `bookings`, the user's own (their first slots) of this resource, confirmed,
// not checked in (`checkedIn`: the check-ins' ids), whose window is open now; newest first (pool.bookings_of).
export function checkable(bookings, checkedIn, userId, resource, earlyMinutes, now) {
  return bookings.filter((b) => b.booked_by === userId && b.group === b._id && b.resource === resource._id
      && b.status === "confirmed" && !checkedIn.has(checkinId(b._id)) && checkinOpen(b, resource, earlyMinutes, now))
    .sort((a, b) => (a.slot_start < b.slot_start ? 1 : a.slot_start > b.slot_start ? -1 : 0));
}

async function sha256Hex(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// pool.code_matches: the venue's code changes daily; the resource carries each day's code's hash (pool.code_hash),
// and a scan counts only with the code of the day ("YYYY-MM-DD", China time) it is made.
export async function codeMatches(resource, day, code) {
  const expected = resource.code_hashes?.find((h) => h.date === day);
  return Boolean(expected) && await sha256Hex(code.trim().toUpperCase()) === expected.hash;
}

// server/services/pool.py is_keeper: who approves and checks people in: the resource's keepers, the community's
// secretary, the administrator. `user`: the session's user document.
export function isKeeper(user, resource) {
  return Boolean(resource.keepers?.includes(user._id) || (user.roles?.includes("secretary")
    && user.communities?.includes(resource.community)) || user.roles?.includes("admin"));
}

// ---- the calendar's day (pages.js poolResource)

// server/web/pool_pages.py _day: the day asked for, as Python's date.fromisoformat reads it ("YYYY-MM-DD",
// "YYYYMMDD", or an ISO week date "YYYY-Www-D", "YYYYWwwD", "YYYY-Www", "YYYYWww": its Monday), within `daysShown`
// days of `today` ("YYYY-MM-DD"), else today.
const CALENDAR_DAY = /^(\d{4})(?:-(\d\d)-(\d\d)|(\d\d)(\d\d))$/;
const WEEK_DAY = /^(\d{4})(?:-W(\d\d)(?:-([1-7]))?|W(\d\d)([1-7])?)$/;
const isoDay = (ms) => new Date(ms).toISOString().slice(0, 10);

// A calendar day's time; NaN (within no distance of today) if there is no such day. (Years before 100 come out as
// 19xx, not the year typed: no such day then, as none is within a year of today.)
function calendarDay(year, month, day) {
  const at = Date.UTC(Number(year), Number(month) - 1, Number(day));
  return isoDay(at) === `${year}-${month}-${day}` ? at : NaN;
}

// An ISO week's day: week 1 is the one with the year's first Thursday (and so its 4 January); week 53 only in a year
// that has one.
const mondayOfWeek1 = (year) => {
  const jan4 = Date.UTC(year, 0, 4);
  return jan4 - ((new Date(jan4).getUTCDay() + 6) % 7) * DAY_MS;
};
function weekDay(year, week, weekday) {
  const monday = mondayOfWeek1(year);
  const weeks = (mondayOfWeek1(year + 1) - monday) / (7 * DAY_MS);
  return week >= 1 && week <= weeks ? monday + ((week - 1) * 7 + weekday - 1) * DAY_MS : NaN;
}

export function shownDay(value, today, daysShown) {
  const c = CALENDAR_DAY.exec(value || "");
  const w = WEEK_DAY.exec(value || "");
  const at = c ? calendarDay(c[1], c[2] || c[4], c[3] || c[5])
    : w ? weekDay(Number(w[1]), Number(w[2] || w[4]), Number(w[3] || w[5] || 1)) : NaN;
  return Math.abs(at - Date.parse(`${today}T00:00:00Z`)) <= daysShown * DAY_MS ? isoDay(at) : today;
}

export const dayAfter = (day, n) => isoDay(Date.parse(`${day}T00:00:00Z`) + n * DAY_MS);
