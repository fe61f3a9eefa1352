"""Every case of role × tier × grid × privacy choice × grant state: none opens more than the rules allow.

The oracle below is written from the issue's threat model, not from the code, so
that a change to `server/security/firewall.py` that widens access fails here. The matrices are small enough
to enumerate (9,216 entitlement cases, 432 alert cases, well under a second), so no case is left to chance.
Each decision is checked whole: allowed or not, the reason the page shows, and the approval that allowed it.
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from server.domain.access import Principal, may_see
from server.domain.declaration import ALERT_KINDS, PRIVACY_CHOICES, Role
from server.domain.entitlement import (
    PROTECTED_CATEGORIES,
    Entitlement,
    alert_visibility,
    approval_is_active,
    entitlement,
    may_notify_family,
    privacy_choices,
    privacy_id,
)

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
STREET = "street:s"
RESIDENT = {"_id": "resident:r1", "type": "resident", "street": STREET, "community": "community:c1",
            "grid": "grid:c1-g1", "household": "household:h1"}

# How the user stands to the resident: (roles, communities, grids, own record?)
RELATIONS = {
    "own": ((Role.RESIDENT,), (), (), True),
    "worker_same_grid": ((Role.GRID_WORKER,), ("community:c1",), ("grid:c1-g1",), False),
    "worker_other_grid": ((Role.GRID_WORKER,), ("community:c1",), ("grid:c1-g2",), False),
    "worker_other_community": ((Role.GRID_WORKER,), ("community:c2",), ("grid:c2-g1",), False),
    "secretary_same_community": ((Role.SECRETARY,), ("community:c1",), (), False),
    "secretary_other_community": ((Role.SECRETARY,), ("community:c2",), (), False),
    "volunteer_same_grid": ((Role.VOLUNTEER,), ("community:c1",), ("grid:c1-g1",), False),
    "department_staff": ((Role.DEPARTMENT_STAFF,), (), (), False),
    "admin": ((Role.ADMIN,), (), (), False),
    "other_resident": ((Role.RESIDENT,), (), (), False),
    # The administrator sees every record but opens none, even when also working a grid: another grid, or this
    # one as a volunteer, gives no worker's right here.
    "admin_and_worker_other_grid": ((Role.ADMIN, Role.GRID_WORKER), ("community:c1",), ("grid:c1-g2",), False),
    "admin_and_volunteer_same_grid": ((Role.ADMIN, Role.VOLUNTEER), ("community:c1",), ("grid:c1-g1",), False),
}
# Who may see the resident's record at all (rule 1): the resident, the grid's staff, the administrator.
MAY_SEE = {"own", "worker_same_grid", "secretary_same_community", "admin", "admin_and_worker_other_grid",
           "admin_and_volunteer_same_grid"}
GRANT_STATES = ("none", "active", "expired", "revoked", "refused", "pending", "for_someone_else", "other_category")


def oracle(relation: str, category: str, privacy: dict[str, str], grant: str,
           granted_category: str) -> tuple[bool, str]:
    """The threat model, restated as a table: (allowed, the reason the page shows)."""
    if relation not in MAY_SEE:
        return False, "fw_not_yours"
    if relation == "own":
        return True, "fw_own_record"
    if relation == "secretary_same_community":
        return True, "fw_secretary"
    if relation != "worker_same_grid":
        return False, "fw_no_role"
    if privacy[category] == "secretary_only":
        return False, "fw_privacy_secretary_only"
    if category == "contact":
        return True, "fw_grid_worker"
    allowed = grant == "active" and granted_category == category
    return allowed, "fw_approved" if allowed else "fw_needs_approval"


def _grant(state: str, category: str, user_id: str) -> list[dict]:
    if state == "none":
        return []
    status = {"expired": "approved", "active": "approved", "for_someone_else": "approved",
              "other_category": "approved"}.get(state, state)
    expires = NOW + (dt.timedelta(hours=-1) if state == "expired" else dt.timedelta(hours=5))
    other = {"health": "finance", "finance": "health", "contact": "health"}[category]
    return [{"requester": "user:someone_else" if state == "for_someone_else" else user_id, "resident": RESIDENT["_id"],
             "categories": [other if state == "other_category" else category], "status": status,
             "expires_at": expires.isoformat(), "purpose": "p"}]


def every_privacy(names: tuple[str, ...]) -> list[dict[str, str]]:
    """Every combination of the residents' choices for these privacy questions."""
    return [dict(zip(names, picked, strict=True)) for picked in itertools.product(*(PRIVACY_CHOICES[n] for n in names))]


def principal(relation: str) -> Principal:
    roles, communities, grids, own = RELATIONS[relation]
    resident = RESIDENT["_id"] if own else "resident:someone_else" if relation == "other_resident" else None
    return Principal(f"user:{relation}", frozenset(roles), STREET, frozenset(communities), frozenset(grids),
                     resident=resident)


def test_no_read_beyond_entitlement_in_any_case() -> None:
    cases = list(itertools.product(sorted(RELATIONS), PROTECTED_CATEGORIES, every_privacy(tuple(PRIVACY_CHOICES)),
                                   GRANT_STATES))
    assert len(cases) == 9_216  # 12 relations × 3 categories × 32 choices × 8 grant states
    wrong = []
    for relation, category, choices, grant in cases:
        p = principal(relation)
        privacy = privacy_choices(choices)
        grants = _grant(grant, category, p.user_id)
        granted_category = grants[0]["categories"][0] if grants else ""
        decision = entitlement(p, RESIDENT, category, privacy, grants, NOW)
        allowed, reason = oracle(relation, category, privacy, grant, granted_category)
        # A grid worker's core access names the approval that allows it (filed with each opening); nothing else does.
        approval = grants[0] if reason == "fw_approved" else None
        if decision != Entitlement(category, allowed, reason, approval):
            wrong.append((relation, category, choices, grant, decision))
        elif decision.allowed and not may_see(p, RESIDENT):  # nobody opens a record they may not even see
            wrong.append((relation, category, choices, grant, "opened but may not see it"))
    assert not wrong, f"{len(wrong)} of {len(cases)} cases wrong, the first: {wrong[:3]}"


ALERT = {**RESIDENT, "_id": "alert:a1", "type": "alert", "resident": RESIDENT["_id"]}


def test_alert_privacy_choices_are_enforced_in_any_case() -> None:
    cases = list(itertools.product(sorted(RELATIONS), ALERT_KINDS, every_privacy(("utility_alerts", "sos_family"))))
    assert len(cases) == len(RELATIONS) * len(ALERT_KINDS) * 4
    wrong = []
    for relation, kind, choices in cases:
        p = principal(relation)
        privacy = privacy_choices(choices)
        alert = {**ALERT, "kind": kind, "visibility": alert_visibility(privacy, kind)}
        private = kind in ("no_water", "electricity") and choices["utility_alerts"] == "grid_worker_only"
        if alert["visibility"] != ("grid_worker_only" if private else "grid_staff"):
            wrong.append((relation, kind, choices, "visibility", alert["visibility"]))
        # The administrator and the secretary oversee alerts, except those the resident kept to their grid worker.
        overseers = ("secretary_same_community", *(r for r in RELATIONS if r.startswith("admin")))
        expected = relation in ("own", "worker_same_grid") or (relation in overseers and not private)
        if may_see(p, alert) != expected:
            wrong.append((relation, kind, choices, "may_see", not expected))
        if may_notify_family(privacy, kind) != (kind in ("sos", "fall") and choices["sos_family"] == "notify"):
            wrong.append((relation, kind, choices, "may_notify_family"))
    assert not wrong, f"{len(wrong)} of {len(cases)} cases wrong, the first: {wrong[:3]}"


def test_a_resident_who_chose_nothing_has_the_first_choice_of_each_question() -> None:
    defaults = {question: choices[0] for question, choices in PRIVACY_CHOICES.items()}
    assert privacy_choices(None) == privacy_choices({}) == defaults
    assert defaults["contact"] == "grid_staff" and defaults["health"] == "with_approval"  # the usual, as §5.1 says
    assert privacy_choices({"contact": "secretary_only"}) == {**defaults, "contact": "secretary_only"}


def test_an_approval_ends_at_its_expiry_time() -> None:
    approval = {"status": "approved", "expires_at": NOW.isoformat()}
    assert not approval_is_active(approval, NOW)  # "unexpired": at the expiry instant it no longer opens anything
    assert approval_is_active(approval, NOW - dt.timedelta(seconds=1))
    assert not approval_is_active({**approval, "status": "revoked"}, NOW - dt.timedelta(seconds=1))


def test_each_resident_has_their_own_privacy_document() -> None:
    # Ids may hold further colons after the type (the declaration checks only the prefix): all of it names them.
    assert privacy_id("resident:c1-g01-0001-1") == "privacy:c1-g01-0001-1"
    assert privacy_id("resident:c1:0001") == "privacy:c1:0001" != privacy_id("resident:c2:0001")


def test_an_unknown_category_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'address' is not a protected category"):
        entitlement(principal("secretary_same_community"), RESIDENT, "address", privacy_choices(None), [], NOW)
