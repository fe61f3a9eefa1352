// node --test pwa/tests/: the phone's door-ballot confirmation equals the server's (tests/test_door_ballot.py VECTOR).
import { test } from "node:test";
import assert from "node:assert/strict";
import { cardHash, confirmation, newReceipt } from "../offline/door_ballot.js";

test("the confirmation of the shared vector", async () => {
  const ballot = { _id: "ballot:m1:household:h1", choice: "yes", channel: "door", assisted_by: "user:w",
                   created_at: "2026-01-01T10:00:00+08:00" };
  const card = await cardHash(ballot._id, "abcde-23456");
  assert.equal(card, await cardHash(ballot._id, "ABCDE23456"));
  assert.equal(await confirmation(card, ballot), "f79d1846522ce42ef91af02b7f3e0c178ceeab08d5875e6400052a13429ab68d");
});

test("a receipt is shaped as the server's", () => {
  assert.match(newReceipt(), /^[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}$/);
});
