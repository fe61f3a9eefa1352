"""Property test: role × tier × grid × privacy choice × grant state never opens more than the rules allow.

The oracle below is written from the issue's threat model, not from the code, so
that a change to `server/security/firewall.py` that widens access fails here.
"""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from server.domain.access import Principal, may_see
from server.domain.declaration import ALERT_KINDS, PRIVACY_CHOICES, Role
from server.domain.entitlement import (
    PROTECTED_CATEGORIES,
    alert_visibility,
    entitlement,
    may_notify_family,
    privacy_choices,
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
}
GRANT_STATES = ("none", "active", "expired", "revoked", "refused", "pending", "for_someone_else", "other_category")


def oracle(relation: str, category: str, privacy: dict[str, str], grant: str, granted_category: str) -> bool:
    """The threat model, restated as a table."""
    if relation in ("own", "secretary_same_community"):
        return True
    if relation != "worker_same_grid":
        return False
    if category == "contact":
        return privacy["contact"] == "grid_staff"
    return privacy[category] == "with_approval" and grant == "active" and granted_category == category


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


@settings(max_examples=600, deadline=None)
@given(relation=st.sampled_from(sorted(RELATIONS)), category=st.sampled_from(PROTECTED_CATEGORIES),
       choices=st.fixed_dictionaries({c: st.sampled_from(o) for c, o in PRIVACY_CHOICES.items()}),
       grant=st.sampled_from(GRANT_STATES))
def test_no_read_beyond_entitlement(relation: str, category: str, choices: dict[str, str], grant: str) -> None:
    roles, communities, grids, own = RELATIONS[relation]
    resident = RESIDENT["_id"] if own else "resident:someone_else" if relation == "other_resident" else None
    p = Principal(f"user:{relation}", frozenset(roles), STREET, frozenset(communities), frozenset(grids),
                  resident=resident)
    privacy = privacy_choices(choices)
    grants = _grant(grant, category, p.user_id)
    granted_category = grants[0]["categories"][0] if grants else ""
    decision = entitlement(p, RESIDENT, category, privacy, grants, NOW)
    assert decision.allowed == oracle(relation, category, privacy, grant, granted_category), decision
    if decision.allowed:  # nobody opens a record they may not even see
        assert may_see(p, RESIDENT)


ALERT = {**RESIDENT, "_id": "alert:a1", "type": "alert", "resident": RESIDENT["_id"]}


@settings(max_examples=200, deadline=None)
@given(relation=st.sampled_from(sorted(RELATIONS)), kind=st.sampled_from(ALERT_KINDS),
       choice=st.sampled_from(PRIVACY_CHOICES["utility_alerts"]), family=st.sampled_from(PRIVACY_CHOICES["sos_family"]))
def test_alert_privacy_choices_are_enforced(relation: str, kind: str, choice: str, family: str) -> None:
    roles, communities, grids, own = RELATIONS[relation]
    p = Principal(f"user:{relation}", frozenset(roles), STREET, frozenset(communities), frozenset(grids),
                  resident=RESIDENT["_id"] if own else None)
    privacy = privacy_choices({"utility_alerts": choice, "sos_family": family})
    alert = {**ALERT, "kind": kind, "visibility": alert_visibility(privacy, kind)}
    private = kind in ("no_water", "electricity") and choice == "grid_worker_only"
    # The administrator and the secretary oversee alerts, except those the resident kept to their grid worker.
    overseers = ("secretary_same_community", "admin")
    expected = relation in ("own", "worker_same_grid") or (relation in overseers and not private)
    assert may_see(p, alert) == expected
    assert may_notify_family(privacy, kind) == (kind in ("sos", "fall") and family == "notify")
