// node --test pwa/tests/: pwa/offline/rewards.js, a voucher honoured at the partner's counter offline (pages.js
// redeemPage) as the server records it, over the vectors both sides run (tests/vectors/redemption.json; Python:
// tests/test_redemption_vectors.py).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import * as rewards from "../offline/rewards.js";

const vectors = JSON.parse(await readFile(new URL("../../tests/vectors/redemption.json", import.meta.url), "utf8"));

test("the redemption written: the voucher's, its holder only when the phone holds the voucher", () => {
  const { signed, organisation, voucher, user, at, written } = vectors;
  assert.deepEqual(rewards.redemptionOf(signed, organisation, voucher, user, at), written.held);
  assert.deepEqual(rewards.redemptionOf(signed, organisation, null, user, at), written.not_held);
});

test("a redemption is named by its voucher (points.redemption_id)", () => {
  for (const [voucher, id] of vectors.ids) {
    assert.equal(rewards.redemptionId(voucher), id);
  }
});

for (const c of vectors.second_uses) {
  test(`a second use: ${c.name}`, () => {
    assert.deepEqual(rewards.secondUseRefusal(c.first), c.refusal);
  });
}
