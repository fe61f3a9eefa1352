// node --test pwa/tests/: pwa/offline/pool.js, the pool's booking rules the offline pages apply (pages.js poolBook,
// poolResource) as server/domain/pool.py does, over the vectors both sides run (tests/vectors/pool_booking.json;
// Python: tests/test_pool_vectors.py).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import * as pool from "../offline/pool.js";

const vectors = JSON.parse(await readFile(new URL("../../tests/vectors/pool_booking.json", import.meta.url), "utf8"));

const withChanges = (base, changes) => Object.fromEntries(Object.entries({ ...base, ...changes })
  .filter(([, value]) => value !== null));

for (const c of vectors.cases) {
  test(`booking: ${c.name}`, () => {
    const booking = withChanges(vectors.booking, c.set);
    const resource = "resource" in c ? null : withChanges(vectors.resource, c.resource_set || {});
    const now = Date.parse(c.now || vectors.now);
    assert.deepEqual(pool.bookingRefusal(booking, resource, new Set(c.kinds || vectors.kinds), now), c.refusal);
  });
}

for (const d of vectors.days) {
  test(`hours on ${d.day}`, () => {
    assert.deepEqual(pool.openHoursOn(vectors.resource, d.day), d.open);
    assert.equal(pool.openingText(vectors.resource, d.day), d.text);
    assert.deepEqual(Object.fromEntries([...pool.blockedHoursOn(vectors.resource, d.day)].map(([h, r]) => [String(h), r])),
      d.blocked);
  });
}

// What the offline booking writes: the slot's id and start as the server names them (pool.slot_id, isoformat).
test("a slot's id and start are the server's, in China time", () => {
  const at = Date.parse("2026-03-03T07:00:00Z");
  assert.equal(pool.slotIdAt("resource:hall", at), "booking:hall:2026030315");
  assert.equal(pool.slotStartAt(at), "2026-03-03T15:00:00+08:00");
  assert.equal(pool.slotIdAt("resource:hall", Date.parse("2026-03-03T16:00:00Z")), "booking:hall:2026030400");
  assert.equal(pool.chinaParts(Date.parse("2026-03-03T16:30:00Z")).slice(0, 16), "2026-03-04T00:30");
  assert.equal(pool.HOUR_MS, 3600 * 1000);
  assert.equal(pool.DAY_MS, 24 * 3600 * 1000);
});

// A check-in: its window, the venue's code of the day, who is a keeper, which bookings may be checked in to now,
// and the calendar's day (tests/vectors/pool_checkin.json).
const checkin = JSON.parse(await readFile(new URL("../../tests/vectors/pool_checkin.json", import.meta.url), "utf8"));

for (const c of checkin.windows) {
  test(`check-in window: ${c.name}`, () => {
    assert.equal(pool.checkinOpen({ slot_start: c.slot_start }, { grace_minutes: c.grace_minutes }, checkin.early_minutes,
      Date.parse(c.at)), c.open);
  });
}

for (const c of checkin.codes) {
  test(`the day's code: ${c.name}`, async () => {
    assert.equal(await pool.codeMatches(withChanges(checkin.resource, c.resource_set || {}), c.day, c.code), c.match);
  });
}

for (const c of checkin.keepers) {
  test(`keeper: ${c.name}`, () => {
    assert.equal(pool.isKeeper(c.user, withChanges(checkin.resource, c.resource_set || {})), c.keeper);
  });
}

test("the bookings one may check in to now: one's own first slots, confirmed, not checked in, newest first", () => {
  const { bookings, checked_in: checkedIn, user, now, expected } = checkin.checkable;
  const found = pool.checkable(bookings, new Set(checkedIn), user, checkin.resource, checkin.early_minutes,
    Date.parse(now));
  assert.deepEqual(found.map((b) => b._id), expected);
  assert.equal(pool.checkinId("booking:hall:2026030315"), "checkin:hall:2026030315");
});

test("the calendar's day (pool_pages._day), and the days either side", () => {
  for (const [value, day] of checkin.days) {
    assert.equal(pool.shownDay(value, checkin.today, checkin.days_shown), day, JSON.stringify(value));
  }
  assert.equal(pool.shownDay(undefined, checkin.today, checkin.days_shown), checkin.today);
  assert.equal(pool.dayAfter("2026-02-28", 1), "2026-03-01");
  assert.equal(pool.dayAfter("2026-01-01", -1), "2025-12-31");
});
