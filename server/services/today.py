"""What needs the secretary today (issue 14, item 4): her home page's lists, each a count and the first few, each
row leading to the page that acts on it.

Read from the `by_place` view's "attention" rows (only what is still open is indexed there, in the pass that
builds the first pages' view: queries.attention), one request per community, then judged here: which requests
are late or escalated, which alerts are people's (SOS and falls first) and which are equipment gone silent. Only
documents the secretary may see are counted (`access.may_see`: an alert a resident keeps between themselves and
their grid worker is not hers).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from server.domain.access import Principal, may_see
from server.domain.field_rules import alerts_in_order
from server.services import projects
from server.services.needs import oldest_first
from server.store import queries
from server.store.couch import Couch, get_many

Doc = dict[str, Any]
SHOWN = 5  # rows a list shows; its count says how many there are
SILENT_KINDS = frozenset({"gateway_silent", "device_silent"})


@dataclass(frozen=True)
class Item:
    """One of the day's lists: what it is (an i18n key), how many, the first few, and where all of them are."""

    key: str
    count: int
    docs: list[Doc]
    href: str


def _late(request: Doc, now: dt.datetime) -> bool:
    due = request.get("due_close")
    return request["status"] == "escalated" or (due is not None and dt.datetime.fromisoformat(due) < now)


def _item(key: str, docs: list[Doc], href: str) -> Item:
    return Item(key, len(docs), docs[:SHOWN], href)


def of_secretary(couch: Couch, p: Principal, now: dt.datetime) -> list[Item]:
    """The secretary's day across her communities, in the order she should look: approvals waiting for her,
    people in danger, late requests, needs nobody has taken up, equipment gone silent."""
    open_docs = queries.attention(couch, sorted(p.communities))
    seen = {kind: [d for d in docs if may_see(p, d)] for kind, docs in open_docs.items()}
    alerts = alerts_in_order(seen.get("alert", []))
    late = [r for r in seen.get("service_request", []) if _late(r, now)]
    late.sort(key=lambda r: (r["status"] != "escalated", r.get("due_close") or ""))
    return [
        _item("today_approvals", seen.get("access_request", []), "/approvals"),
        _item("today_alerts", [a for a in alerts if a["kind"] not in SILENT_KINDS], "/alerts"),
        _item("today_late_requests", late, "/requests"),
        _item("today_needs", oldest_first(seen.get("need", [])), "/needs/open"),
        _item("today_silent", [a for a in alerts if a["kind"] in SILENT_KINDS], "/alerts"),
        # Service projects two evaluations in a row failed: the withdrawal vote is open (server/services/projects.py).
        _item("today_withdrawals", projects.withdrawal_proposals(couch, sorted(p.communities)), "/projects"),
    ]


def names(couch: Couch, items: list[Item]) -> dict[str, str]:
    """What the rows name: residents, households (address), gateways, and the staff who asked for access."""
    docs = [d for item in items for d in item.docs]
    places = get_many(couch.main, {d[k] for d in docs for k in ("resident", "household", "gateway") if d.get(k)})
    people = queries.user_names(couch, {d["requester"] for d in docs if d.get("requester")})
    return {**{i: d.get("name") or d.get("address", "") for i, d in places.items()}, **people}
