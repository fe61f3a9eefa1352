"""What a ballot must be to be stored (issue 15 items 4, 5, 7, 10): one pure function, `ballot_refusal`, for the
voter's own vote and the secretary's paper ballot (server/services/deliberation.py `cast`) and for the grid
worker's ballot at the door, written offline on the phone and judged by the sync gateway (access.write_refusal).

**The resident's confirmation at the door: a voting card.** The secretary prints a card per voter from the roll
page: a one-time code of CODE_LENGTH characters. The server keeps only `card_hash` (sha256 of the ballot's id and
the code) in a `voting_card` document of the accounts database, which no phone ever receives. At the door the
resident types the code; the phone writes `confirmation` = HMAC-SHA256(key = card_hash, message = the ballot's id,
choice, channel, assisted_by and created_at), never the code itself. The gateway recomputes it from the stored hash:
the phone cannot forge a confirmation without the code (it holds no hash to try codes against), a confirmation
copied onto another choice or voter does not match, and the code is tied to one voter of one matter (a second
ballot with it is a second version of that voter's one ballot, counted once). Why not a PIN the resident sets:
it needs the resident to have set one beforehand, online; a printed card reaches every household, also those
without a smartphone. Who printed the cards (the secretary) could forge a confirmation: the secretary is
accountable for the roll already, and every version is kept and listed.

**Grace period.** A ballot recorded at the door before the vote closed is accepted until DOOR_GRACE after the
closing time, as long as the result is not yet published (the minute clock publishes a household or residents'
vote DOOR_GRACE after its closing time; a secretary who closes by hand ends the grace period then).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import re
from collections.abc import Collection
from typing import Any

from server.domain.errors import FieldError

Doc = dict[str, Any]

DOOR_GRACE = dt.timedelta(hours=6)  # a phone back from a day's round in basements syncs the same evening
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L: read aloud from a printed card
CODE_LENGTH = 10  # 31**10 ≈ 8 × 10^14: no trying codes against a confirmation
# A secret ballot's choice: an envelope sealed to the matter's key ("enc:" base64url, header = version byte 2
# (sealed, crypto/envelope.py SEALED_VERSION) and key version 1 as 4 bytes (server/security/keystore.py
# MATTER_KEY_VERSION); the services layer asserts both). Whether it opens, and to an option, only the close tells.
SEALED_CHOICE_HEADER = (2, 1)
SEALED_MIN_BYTES = 5 + 65 + 12 + 16  # header, ephemeral P-256 point, nonce, tag
RECEIPT = re.compile(r"^[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}$")
# Conflicts nobody resolves (the conflict screens, the gateway's merge): every version of a ballot is kept and
# counted once by precedence (server/services/deliberation.py PRECEDENCE).
CONFLICTS_KEPT = frozenset({"ballot"})


def ballot_id(matter_id: str, voter: str) -> str:
    return f"ballot:{matter_id.split(':', 1)[-1]}:{voter}"


def card_id(matter_id: str, voter: str) -> str:
    return f"voting_card:{matter_id.split(':', 1)[-1]}:{voter}"


def normal_code(code: str) -> str:
    """A code as typed ("k7mq 2-xr…") as printed: upper case, without spaces or dashes."""
    return re.sub(r"[\s-]", "", code).upper()


def card_hash(ballot: str, code: str) -> str:
    """What the server keeps of a voting card's code: sha256 of the ballot's id and the code (hex)."""
    return hashlib.sha256(f"linli voting card\n{ballot}\n{normal_code(code)}".encode()).hexdigest()


def confirmation_message(ballot: Doc) -> bytes:
    """What a confirmation binds: the ballot's id, choice, channel, who assisted and when (canonical JSON)."""
    fields = {k: ballot.get(k) for k in ("_id", "choice", "channel", "assisted_by", "created_at")}
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def confirmation(hash_hex: str, ballot: Doc) -> str:
    """The confirmation a phone writes once the resident typed their code (pwa/offline/door_ballot.js, the same)."""
    return hmac.new(bytes.fromhex(hash_hex), confirmation_message(ballot), hashlib.sha256).hexdigest()


def looks_sealed(choice: Any) -> bool:
    """True if a choice is shaped as an envelope sealed to a matter's key."""
    if not isinstance(choice, str) or not choice.startswith("enc:"):
        return False
    body = choice[4:]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        return False
    return len(raw) > SEALED_MIN_BYTES and (raw[0], int.from_bytes(raw[1:5], "big")) == SEALED_CHOICE_HEADER


def _at(value: Any) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else None


def ballot_refusal(ballot: Doc, matter: Doc | None, entry: Doc | None, now: dt.datetime, *, writer: str,
                   writer_grids: Collection[str] = (), household: Doc | None = None,
                   card: Doc | None = None) -> tuple[FieldError, int] | None:
    """Why this ballot may not be stored (the error for the person and an HTTP status); None if it may.

    `matter` is the document ballot["matter"] names; `entry` the voter's entry of the frozen roll ({voter,
    household?}; for a door ballot the voting card, made from the roll); `writer` and `writer_grids` who writes it;
    for a door ballot also the voter's `household` and its voting `card` (None if there is none)."""
    def no(field: str, key: str, status: int = 400, **params: Any) -> tuple[FieldError, int]:
        return FieldError(field, key, params), status

    if matter is None or matter.get("type") != "matter" or matter.get("community") != ballot.get("community"):
        return no("matter", "vote_not_on_roll", 403)
    if matter.get("status") == "preparing":  # its roll is being frozen (server/services/deliberation.py)
        return no("matter", "vote_roll_preparing", 409)
    if matter.get("status") != "open":
        return no("matter", "vote_matter_closed", 409)
    door = ballot.get("channel") == "door"
    made = _at(ballot.get("created_at"))
    opens, closes = _at(matter["opens_at"]), _at(matter["closes_at"])
    if made is None or made < opens or now < opens:
        return no("matter", "vote_not_yet_open", 409)
    if (made if door else now) > closes:
        return no("matter", "vote_window_over", 409)
    if door and now > closes + DOOR_GRACE:
        return no("matter", "vote_grace_over", 409, hours=int(DOOR_GRACE.total_seconds() // 3600))
    if entry is None or entry.get("voter") != ballot.get("voter"):  # at the door: no card, none made from the roll
        return no("matter", "vote_door_no_card" if door else "vote_not_on_roll", 403)
    if ballot.get("_id") != ballot_id(matter["_id"], str(ballot.get("voter"))):
        return no("voter", "vote_ballot_id")
    if door:
        refused = _door_refusal(ballot, entry, writer, writer_grids, household, card)
        if refused:
            return no(*refused[:2], 403 if refused[0] == "household" else 400)
    choice = ballot.get("choice")
    if matter.get("mode") == "secret":
        if not looks_sealed(choice):
            return no("choice", "vote_must_be_sealed")
    elif choice not in matter.get("options", []):
        return no("choice", "vote_unknown_option", value=str(choice))
    if door and not RECEIPT.match(str(ballot.get("receipt"))):
        return no("receipt", "vote_receipt_shape")
    return None


def _door_refusal(ballot: Doc, entry: Doc, writer: str, writer_grids: Collection[str], household: Doc | None,
                  card: Doc | None) -> tuple[str, str] | None:
    """A ballot at the door: for a household of the writer's grid, recorded by them, with the resident's consent
    and their card's confirmation."""
    voters_household = entry.get("household") or entry.get("voter")
    if (household is None or household.get("_id") != voters_household or ballot.get("household") != voters_household
            or household.get("grid") not in writer_grids or ballot.get("grid") != household.get("grid")):
        return "household", "vote_door_not_your_grid"
    if ballot.get("assisted_by") != writer or ballot.get("created_by") != writer:
        return "assisted_by", "vote_door_assisted_by"
    if ballot.get("consent") is not True:
        return "consent", "vote_door_consent"
    if card is None or not card.get("hash"):
        return "confirmation", "vote_door_no_card"
    if not hmac.compare_digest(str(ballot.get("confirmation")), confirmation(card["hash"], ballot)):
        return "confirmation", "vote_door_code_wrong"
    return None
