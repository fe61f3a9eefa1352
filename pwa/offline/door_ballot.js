// The grid worker's ballot at the door, as the phone writes it into its replica (server/domain/ballots.py is the
// rule; the sync gateway judges the ballot by it when it arrives, and refuses a wrong code with its reason).
// The resident types the code printed on their voting card; the phone keeps neither the code nor anything to try
// codes against: it writes `confirmation` = HMAC-SHA256(key = sha256 of the ballot's id and the code, message = the
// ballot's id, choice, channel, who assisted and when), which only the server, holding the card's hash, can check.

const encoder = new TextEncoder();

const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");

// ballots.normal_code: as printed, upper case, without spaces or dashes.
export const normalCode = (code) => code.replace(/[\s-]/g, "").toUpperCase();

// ballots.card_hash
export async function cardHash(ballotId, code) {
  return hex(await crypto.subtle.digest("SHA-256", encoder.encode(`linli voting card\n${ballotId}\n${normalCode(code)}`)));
}

// ballots.confirmation_message: canonical JSON, keys sorted as Python sorts them ("_id" first).
function confirmationMessage(ballot) {
  const fields = {};
  for (const name of ["_id", "assisted_by", "channel", "choice", "created_at"]) {
    fields[name] = ballot[name] ?? null;
  }
  return encoder.encode(JSON.stringify(fields));
}

// ballots.confirmation
export async function confirmation(cardHashHex, ballot) {
  const raw = Uint8Array.from(cardHashHex.match(/../g), (h) => parseInt(h, 16));
  const key = await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return hex(await crypto.subtle.sign("HMAC", key, confirmationMessage(ballot)));
}

// deliberation.format_receipt of 48 random bits: "3F9A-C21B-07DE".
export function newReceipt() {
  const digits = hex(crypto.getRandomValues(new Uint8Array(6))).toUpperCase();
  return `${digits.slice(0, 4)}-${digits.slice(4, 8)}-${digits.slice(8, 12)}`;
}
