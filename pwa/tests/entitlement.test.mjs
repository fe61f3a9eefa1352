// node --test pwa/tests/: pwa/offline/entitlement.js, why a category of a resident's record stays closed on the phone
// (pages.js household page, reveal) as the firewall (server/domain/entitlement.py) says it, over the vectors both
// sides run (tests/vectors/entitlement_offline.json; Python: tests/test_entitlement_vectors.py).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { activeApproval, lockedReason } from "../offline/entitlement.js";

const vectors = JSON.parse(await readFile(new URL("../../tests/vectors/entitlement_offline.json", import.meta.url),
  "utf8"));
const now = Date.parse(vectors.now);

for (const c of vectors.cases) {
  test(c.name, () => {
    const user = vectors.users[c.user];
    const approval = activeApproval(vectors.requests[c.requests], user._id, vectors.resident._id, c.category, now);
    assert.equal(lockedReason(user.phone_keys, c.privacy, c.category, vectors.tiers[c.category], Boolean(approval)),
      c.reason);
  });
}

test("the approval found is the active one of the requester's for this resident and category", () => {
  const [rejected, approved] = vectors.requests["rejected, then approved"];
  assert.equal(activeApproval([rejected, approved], "user:wangge01", vectors.resident._id, "health", now), approved);
  assert.equal(activeApproval([approved], "user:wangge01", vectors.resident._id, "finance", now), null);
});
