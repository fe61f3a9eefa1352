// node --test pwa/tests/: pwa/offline/timebank.js, the time bank's claim rules the offline /timebank applies (pages.js
// claimOffline, timebankContext) as server/domain/timebank.py does, over the vectors both sides run
// (tests/vectors/timebank_claim.json; Python: tests/test_timebank_vectors.py).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import * as timebank from "../offline/timebank.js";

const vectors = JSON.parse(await readFile(new URL("../../tests/vectors/timebank_claim.json", import.meta.url),
  "utf8"));

const withChanges = (base, changes) => Object.fromEntries(Object.entries({ ...base, ...changes })
  .filter(([, value]) => value !== null));

for (const c of vectors.cases) {
  test(`claim: ${c.name}`, () => {
    const claim = { ...withChanges(vectors.claim, c.set), ...Object.fromEntries((c.nulls || []).map((n) => [n, null])) };
    const task = "task" in c ? null : withChanges(vectors.task, c.task_set || {});
    assert.deepEqual(timebank.claimRefusal(vectors.writer, claim, task, vectors.rules), "phone" in c ? c.phone : c.refusal);
  });
}

test("hours as typed, in whole minutes (timebank_pages._minutes)", () => {
  for (const [typed, minutes] of vectors.typed) {
    assert.equal(timebank.minutesOf(typed), minutes, JSON.stringify(typed));
  }
});

test("minutes as hours for people (timebank.hours_text)", () => {
  for (const [minutes, shown] of vectors.shown) {
    assert.equal(timebank.hoursText(minutes), shown, String(minutes));
  }
});
