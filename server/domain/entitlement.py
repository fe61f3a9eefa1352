"""The data-security firewall's rules (plan §5.1), pure: who may open which category of whose record.

Rules, in order (`entitlement`):
1. Only someone who may see the record at all (`access.may_see`) may open anything in it.
2. The resident may open all of their own record.
3. Contact: the grid's worker and the community's secretary, unless the resident chose
   "secretary only" (privacy mode).
4. Health and finance ("core"): the community's secretary; a grid worker only with an
   approved, unexpired access request for that resident and that category, and only while the
   resident's privacy choice allows approvals at all.
5. Nobody else: not volunteers, not department staff, not the administrator (who runs
   the system but has no need to read residents' protected data).

Everything these functions need is passed in; reading documents, opening values and filing each
opening are `server/security/firewall.py`'s. The BLE gateway and the phones' grants use the same rules.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from server.domain.access import Principal, may_see
from server.domain.declaration import CORE_CATEGORIES, DOC_TYPES, PRIVACY_CHOICES, PROTECTED_TIERS, Category, Role

Doc = dict[str, Any]

# Protected categories of the resident record and their fields, from the one declaration.
CATEGORY_FIELDS: dict[str, list[str]] = {}
for _name, _field in DOC_TYPES["resident"].fields.items():
    if _field.effective_tier in PROTECTED_TIERS:
        CATEGORY_FIELDS.setdefault(_field.category.value, []).append(_name)
PROTECTED_CATEGORIES = tuple(CATEGORY_FIELDS)  # contact, health, finance
# Why a grid worker opens contact details; the key is filed, the page shows its translation.
REVEAL_PURPOSES = ("routine_visit", "alert_follow_up", "service_request", "needs_assessment")
UTILITY_ALERT_KINDS = ("no_water", "electricity")


@dataclass(frozen=True)
class Entitlement:
    category: str
    allowed: bool
    reason: str  # UI text key: why (not) allowed
    approval: Doc | None = None  # the approved access request that allows it, for a grid worker's core access


def privacy_id(resident: str) -> str:
    return f"privacy:{resident.split(':', 1)[1]}"


def privacy_choices(doc: Doc | None) -> dict[str, str]:
    """The resident's choices, each defaulting to the first (most usual) choice."""
    return {category: (doc or {}).get(category) or choices[0] for category, choices in PRIVACY_CHOICES.items()}


def alert_visibility(privacy: dict[str, str], alert_kind: str) -> str:
    """The `visibility` a new alert gets (routing reads it, server/domain/access.py): water and electricity anomalies
    stay between the resident and their grid worker if the resident chose so."""
    return privacy["utility_alerts"] if alert_kind in UTILITY_ALERT_KINDS else "grid_staff"


def may_notify_family(privacy: dict[str, str], alert_kind: str) -> bool:
    """Whether the resident's family contact may be told of this alert (privacy mode: SOS and falls only)."""
    return alert_kind in ("sos", "fall") and privacy["sos_family"] == "notify"


def approval_is_active(access_request: Doc, now: dt.datetime) -> bool:
    return access_request["status"] == "approved" and dt.datetime.fromisoformat(access_request["expires_at"]) > now


def entitlement(p: Principal, resident: Doc, category: str, privacy: dict[str, str],
                access_requests: list[Doc], now: dt.datetime) -> Entitlement:
    """May p open this category of this resident's record? Pure: everything it needs is passed in."""
    if not may_see(p, resident):
        return Entitlement(category, False, "fw_not_yours")
    if p.resident == resident["_id"]:
        return Entitlement(category, True, "fw_own_record")
    secretary = p.has(Role.SECRETARY) and resident["community"] in p.communities
    worker = p.has(Role.GRID_WORKER) and resident["grid"] in p.grids
    if category == Category.CONTACT:
        if secretary:
            return Entitlement(category, True, "fw_secretary")
        if worker and privacy["contact"] == "grid_staff":
            return Entitlement(category, True, "fw_grid_worker")
        return Entitlement(category, False, "fw_privacy_secretary_only" if worker else "fw_no_role")
    if category in CORE_CATEGORIES:
        if secretary:
            return Entitlement(category, True, "fw_secretary")
        if not worker:
            return Entitlement(category, False, "fw_no_role")
        if privacy[category] == "secretary_only":
            return Entitlement(category, False, "fw_privacy_secretary_only")
        approval = next((r for r in access_requests if r["requester"] == p.user_id and r["resident"] == resident["_id"]
                         and category in r["categories"] and approval_is_active(r, now)), None)
        return Entitlement(category, approval is not None, "fw_approved" if approval else "fw_needs_approval",
                           approval)
    raise ValueError(f"{category!r} is not a protected category")
