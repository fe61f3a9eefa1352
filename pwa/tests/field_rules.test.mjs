// node --test pwa/tests/: the field rules' shared vectors (server/domain/vectors/field_rules.json) in offline/rules.js.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { AlertRefused, TaskRefused, alertAfter, alertsInOrder, needsOf, photoRefusal, sniffedType, taskAnswered,
  tasksInOrder } from "../offline/rules.js";

const vectors = JSON.parse(await readFile(new URL("../../server/domain/vectors/field_rules.json", import.meta.url), "utf8"));

test("needs lists", () => {
  for (const { values, needs } of vectors.needs) {
    assert.deepEqual(needsOf(values), needs, JSON.stringify(values));
  }
});

test("alert actions", () => {
  for (const { doc, action, after, refused } of vectors.alert_after) {
    const answer = (() => {
      try {
        return { after: alertAfter(doc, action, vectors.user, vectors.at, vectors.alert_actions) };
      } catch (error) {
        assert.ok(error instanceof AlertRefused);
        return { refused: error.message };
      }
    })();
    assert.deepEqual(answer, after ? { after } : { refused }, `${doc.status} ${action}`);
  }
});

test("alert order", () => {
  for (const { alerts, order } of vectors.alerts_in_order) {
    assert.deepEqual(alertsInOrder(alerts, vectors.urgent_alert_kinds).map((a) => a._id), order);
  }
});

test("photos by their bytes", () => {
  for (const { name, bytes, declared, max_bytes: maxBytes, sniffed, refusal } of vectors.photos) {
    const data = new Uint8Array(Buffer.from(bytes, "base64"));
    assert.equal(sniffedType(data, vectors.photo_rule.signatures), sniffed, name);
    assert.equal(photoRefusal(data, declared, maxBytes, vectors.photo_rule), refusal, name);
  }
});

test("task answers", () => {
  for (const { doc, answer, note, after, refused } of vectors.task_answered) {
    const result = (() => {
      try {
        return { after: taskAnswered(doc, answer, note, vectors.at, vectors.task_answers, vectors.task_note_max) };
      } catch (error) {
        assert.ok(error instanceof TaskRefused);
        return { refused: error.message };
      }
    })();
    assert.deepEqual(result, after ? { after } : { refused }, `${doc.status} ${answer} ${JSON.stringify(note)}`);
  }
});

test("task order", () => {
  for (const { tasks, order } of vectors.tasks_in_order) {
    assert.deepEqual(tasksInOrder(tasks).map((t) => t._id), order);
  }
});
