"""Participation points and what they buy (issue 16 item 4), as data: which participation mints how many points,
the ids that make minting and redeeming happen once, and what a redemption may not be. Pure: the acts are
server/services/rewards.py, the voucher's signature crypto/vouchers.py.

**Minting.** The community's account mints points for participation events. An event is read from a document
that exists anyway (a confirmed hour of help, a survey answer, a ballot; a hearing's attendance once the hearings
work reads it, server/domain/meetings.py PARTICIPATION): `participation:<kind>:<source>:<person>`, the form of
meetings.participation_id. The mint's transfer id is made from the event's (`mint_id`), so a re-run of the job, or
two servers running it, meet a conflict instead of minting twice.

**Redeeming.** A resident or volunteer spends points on a reward an organisation offers. Stock is a number of
slots: voucher `k` of a reward is `voucher:<reward key>:<k>`, k = 1..stock, so two redemptions racing for the last
unit race for one id and one loses; stock never goes below zero. The debit's id is made from its voucher
(`spend_id`): the redemption and the sweep that finishes one left half done (a process stopped between the voucher
and its debit, `PAY_WITHIN`) meet on that id, never two debits; the paying account's ledger lock keeps points from
going below zero however many redemptions race (server/services/timebank.py `_record`). A voucher is used once: its
redemption's id is made from it (`redemption_id`), and a second use, even recorded offline on another phone, is a
conflict of that document; a voucher voided (its debit reversed) has a redemption saying so (`voided`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from server.domain.declaration import REWARD_KINDS
from server.domain.timebank import is_account

# Points the community mints for each kind of participation. "hours_confirmed" is per hour of confirmed help
# (pro rata by the minute, rounded down); the others per event.
POINTS_RULES: dict[str, int] = {
    "hours_confirmed": 10,  # an hour of help the resident helped confirmed (a transfer of kind "confirmation")
    "survey_answered": 2,  # the month's satisfaction survey answered
    "voted": 5,  # a vote on a matter, by any channel (server/domain/meetings.py names it so too)
    "attended": 5,  # present at a hearing or meeting (read by the hearings work: the lead links it)
    "opinion": 2,  # an opinion posted before a meeting and not hidden
}
MAX_REWARD_POINTS = 10_000
# A redemption writes its voucher, then its debit, within a second; a voucher still unpaid after this was left by a
# process that stopped in between: the sweep pays it or, if the points are gone, withdraws it (its unit free again).
PAY_WITHIN = dt.timedelta(minutes=10)
MAX_STOCK = 10_000
STATEMENT_CSV_HEADER = ("名称", "账户类型", "期间", "期初时长（小时）", "时长收入", "时长支出",
                        "期末时长（小时）", "期初积分", "积分收入", "积分支出", "期末积分")


@dataclass(frozen=True)
class Event:
    """One participation: its kind (a key of POINTS_RULES), who took part (a resident, or a user), the document it
    is read from and when. The same shape as server/services/meetings.py Participation."""

    id: str
    kind: str
    person: str
    source: str
    at: str


def mint_id(event: str) -> str:
    return "transfer:mint:" + event


def points_for(kind: str, hours_minutes: int | None = None) -> int:
    """Points an event of this kind mints; for confirmed help, per minute of it (rounded down)."""
    rate = POINTS_RULES.get(kind, 0)
    return rate * hours_minutes // 60 if kind == "hours_confirmed" and hours_minutes is not None else rate


def voucher_id(reward: str, slot: int) -> str:
    return f"voucher:{reward.removeprefix('reward:')}:{slot:05d}"


def slot_of(voucher: str) -> int:
    return int(voucher.rsplit(":", 1)[1])


def redemption_id(voucher: str) -> str:
    """One redemption per voucher: a second use (another phone, a retry) is a conflict on this id."""
    return "redemption:" + voucher.removeprefix("voucher:")


def second_use_refusal(first: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Why a voucher whose redemption (`first`) is recorded is not honoured again: voided by the secretary's
    reversal, or used, and when (its time as stored; the page shows it local). The partner's phone says the same
    offline (pwa/offline/rewards.js)."""
    return ("pt_voided", {}) if first.get("voided") else ("pt_used", {"at": first["created_at"]})


def spend_id(voucher: str) -> str:
    """The debit that pays for a voucher, made from it: whoever writes it (the redemption, the sweep finishing one
    left unpaid), it is written once."""
    return "transfer:redemption:" + voucher.removeprefix("voucher:")


def redeem_refusal(reward: dict[str, Any] | None, account: str, balance: int, taken: int
                   ) -> tuple[str, dict[str, Any]] | None:
    """Why `account` (holding `balance` points) may not redeem this reward with `taken` of its slots used; None if
    it may. A message key of server/domain/points_messages.py and its parameters."""
    if reward is None or not reward.get("active"):
        return ("pt_no_reward", {})
    if not is_account(account) or account.startswith("community:") or account == reward["organisation"]:
        return ("pt_not_your_account", {})
    if taken >= reward["stock"]:
        return ("pt_out_of_stock", {})
    if balance < reward["points"]:
        return ("pt_points_short", {"balance": balance, "points": reward["points"]})
    return None


def reward_refusal(name: str, kind: str, points: Any, stock: Any) -> tuple[str, str, dict[str, Any]] | None:
    """Why a reward may not be offered so (the field, a message key, its parameters); None if it may."""
    if not name.strip():
        return ("name", "pt_reward_name", {})
    if kind not in REWARD_KINDS:
        return ("kind", "pt_reward_kind", {})
    for field, value, most in (("points", points, MAX_REWARD_POINTS), ("stock", stock, MAX_STOCK)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= most:
            return (field, "pt_whole_number", {"most": most})
    return None


def stock_refusal(stock: Any, taken: int) -> tuple[str, dict[str, Any]] | None:
    """Why a reward's stock may not be set to `stock` with `taken` units already bought (a message key and its
    parameters); None if it may. Never below what was bought: a voucher's slot is a unit of the stock."""
    if not isinstance(stock, int) or isinstance(stock, bool) or not 0 <= stock <= MAX_STOCK:
        return ("pt_stock_range", {"most": MAX_STOCK})
    if stock < taken:
        return ("pt_stock_below_taken", {"taken": taken})
    return None


def period_bounds(period: str) -> tuple[str, str] | None:
    """A statement's period, "2026" or "2026-03", as the ISO prefix range [start, end) its transfers fall in;
    None for anything else."""
    parts = period.split("-")
    if not all(p.isdigit() for p in parts) or len(parts[0]) != 4 or len(parts) > 2:
        return None
    year = int(parts[0])
    if len(parts) == 1:
        return f"{year:04d}", f"{year + 1:04d}"
    month = int(parts[1])
    if len(parts[1]) != 2 or not 1 <= month <= 12:
        return None
    return f"{year:04d}-{month:02d}", (f"{year:04d}-{month + 1:02d}" if month < 12 else f"{year + 1:04d}-01")


# A CouchDB cluster can accept two redemptions at once where one node gives the second a 409 (issue 24): one
# voucher slot taken by two accounts, or one account's two vouchers paid by one debit (server/services/rewards.py
# resolve_voucher_conflicts). The slot's winner keeps it and the other's debit is refunded, with this reason; a
# voucher that no debit paid for is withdrawn, unused, as a redemption refused on one node would have been.
VOUCHER_TAKEN_TWICE_REASON = ("同一兑换券被同时兑换两次，系统已退还积分"
                              "（a voucher taken twice at once: points refunded）")
