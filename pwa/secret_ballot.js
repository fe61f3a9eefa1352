// A secret vote's choice is sealed in the browser to the matter's public key (write without read:
// crypto/envelope.py seal_for, bound to the ballot's id): the server stores an envelope it opens only at the close
// (server/services/deliberation.py), and this page keeps no way to read it back. The same at the door, on the grid
// worker's phone (matter_door.html): the phone cannot read back what it recorded. The options carry a name only
// until the envelope is made; what is sent is the envelope alone.
import { b64urlDecode, sealFor } from "/pwa/crypto/envelope.js";

// The ballot the choice is bound to: the voter's own (data-ballot), or at the door the chosen household's
// (data-ballot-prefix + the household; server/domain/ballots.py ballot_id).
function ballotOf(form) {
  return form.dataset.ballot || form.dataset.ballotPrefix + form.querySelector("[name=household]").value;
}

for (const form of document.querySelectorAll("form[data-seal-public]")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const options = [...form.querySelectorAll("input[data-option]")];
    const chosen = options.find((o) => o.checked);
    if (!chosen) {
      return;
    }
    form.querySelector("input[name=choice]").value = await sealFor(
      b64urlDecode(form.dataset.sealPublic), Number(form.dataset.keyVersion),
      { doc_id: ballotOf(form), field: "choice", tier: "basic" }, chosen.value);
    options.forEach((o) => o.removeAttribute("name"));
    form.submit(); // no submit event again: sent once, sealed
  });
}
