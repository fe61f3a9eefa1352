// Why a category of a resident's record stays closed on this phone (pages.js household page and reveal), as the
// firewall (server/domain/entitlement.py entitlement) says it, for the categories the phone holds no usable key
// grant for: the firewall's reason where it refuses, and "no key for it yet" where it would open (the grant has not
// reached the phone, or this user opens protected fields online only). Both sides run
// tests/vectors/entitlement_offline.json (Python: tests/test_entitlement_vectors.py).

// entitlement.approval_is_active, and the approval entitlement looks for: the requester's own, for this resident
// and this category. `now`: ms.
export function activeApproval(requests, userId, residentId, category, now) {
  return requests.find((r) => r.requester === userId && r.resident === residentId && r.categories.includes(category)
    && r.status === "approved" && Date.parse(r.expires_at) > now) || null;
}

// `phoneKeys`: whether this user's phones get key grants (the session's phone_keys, grants.phones_carry_keys: grid
// workers, who see only their grids' residents); `privacy`: the resident's privacy document ({} if none); `tier`:
// the category's tier (the declaration's, in the schema); `approved`: an active approval of this user's for it.
export function lockedReason(phoneKeys, privacy, category, tier, approved) {
  if (!phoneKeys) {
    return "fw_offline_no_key"; // a secretary: opens protected fields online only
  }
  if (privacy[category] === "secretary_only") {
    return "fw_privacy_secretary_only";
  }
  return tier === "core" && !approved ? "fw_needs_approval" : "fw_offline_no_key";
}
