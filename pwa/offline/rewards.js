// A voucher honoured at the partner's counter offline (pages.js redeemPage), as server/services/rewards.py use
// records it and server/domain/points.py names it: the redemption, under the id made from its voucher, once; why a
// second use is refused (secondUseRefusal, the twin of points.second_use_refusal); and the redemption the phone
// writes, which the sync gateway holds to its voucher (server/domain/access.py _redemption_refusal). Both sides run
// tests/vectors/redemption.json (Python: tests/test_redemption_vectors.py).

// points.redemption_id: one redemption per voucher, so a second use (another phone, a retry) is a conflict on it.
export const redemptionId = (voucherId) => `redemption:${voucherId.replace(/^voucher:/, "")}`;

// points.second_use_refusal: [message key, params] for a voucher whose redemption `first` is recorded already
// (`at`: when, as stored; the page shows it in local time).
export const secondUseRefusal = (first) => (first.voided ? ["pt_voided", {}] : ["pt_used", { at: first.created_at }]);

// The redemption of a voucher the pinned installation key signed (`signed`: what its code says: id, reward,
// organisation), for the partner `organisation` (its place is the voucher's), by `userId` at `at` (ISO). `held`: the
// voucher's document if the replica holds it; one bought since the last sync is not there yet, and its holder,
// which the code does not say, is then left out (the gateway takes a redemption without a holder).
export function redemptionOf(signed, organisation, held, userId, at) {
  return { _id: redemptionId(signed.id), type: "redemption", street: organisation.street,
    community: organisation.community, voucher: signed.id, reward: signed.reward, organisation: signed.organisation,
    ...(held ? { holder: held.holder } : {}), created_by: userId, created_at: at };
}
