"""A service request's states: where each may move, which are open, and the clock's rules the minute sweep keeps.

Declared here, apart from the service that moves requests (server/services/service_requests.py), because the
store's view of what the sweep must look at next (server/store/views.py `request_clock`) is built from the same
rules and may import only the domain.
"""

from __future__ import annotations

import datetime as dt

from server.domain.declaration import REQUEST_STATES

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "received": ("acknowledged", "in_progress", "escalated", "resolved", "returned"),
    "acknowledged": ("in_progress", "escalated", "resolved", "returned"),
    "in_progress": ("escalated", "resolved", "returned"),
    "escalated": ("in_progress", "resolved", "returned"),
    "resolved": ("closed", "reopened"),
    "closed": ("reopened",),
    "reopened": ("acknowledged", "in_progress", "escalated", "resolved", "returned"),
    # Handed back by its department: the grid that owns it takes it on (§5.2).
    "returned": ("acknowledged", "in_progress", "escalated", "resolved"),
}
assert set(TRANSITIONS) == set(REQUEST_STATES)
OPEN_STATES = frozenset(s for s in REQUEST_STATES if s not in ("resolved", "closed"))
# A department's work on a request ends when it is resolved or handed back.
DEPARTMENT_OPEN_STATES = OPEN_STATES - {"returned"}
# The states a missed deadline escalates (an escalated request is not escalated again).
ESCALATES_FROM = frozenset(s for s in OPEN_STATES if "escalated" in TRANSITIONS[s])
WARN_BEFORE = dt.timedelta(hours=4)
# Each deadline: the field holding it, the field whose presence means it was met, and its name in `warned`.
DEADLINES = (("due_respond", "acknowledged_at", "respond"), ("due_close", "resolved_at", "close"))
