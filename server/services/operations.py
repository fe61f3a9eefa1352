"""What an operator watches, read from CouchDB when `/metrics` is scraped (server/web/observability.py): alerts
nobody has acknowledged, by how long they have waited, and how long each BLE gateway has been silent.

Both read small things: the `open_alerts` view's keys (no documents) and the gateways' heartbeat documents.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from server.store.couch import Couch

# The ages an unacknowledged alert is counted under (Prometheus' cumulative "le" buckets, in seconds).
ALERT_AGE_BUCKETS = (60, 300, 900, 3600, 4 * 3600, 24 * 3600)


@dataclass(frozen=True)
class OperationsFigures:
    alerts_waiting: dict[float, int]  # upper bound in seconds (inf last) -> alerts raised at most that long ago
    gateway_silence: dict[str, float]  # gateway id -> seconds since its last heartbeat


def figures(couch: Couch, now: dt.datetime) -> OperationsFigures:
    ages = [(now - dt.datetime.fromisoformat(row["key"][1])).total_seconds()
            for row in couch.main.query("linli/open_alerts", include_docs="false", as_list=True)]
    waiting = {float(bound): sum(age <= bound for age in ages) for bound in ALERT_AGE_BUCKETS}
    waiting[float("inf")] = len(ages)
    beats = couch.main.all(startkey="gateway_health:", endkey="gateway_health:\ufff0", as_list=True)
    silence = {row["doc"]["gateway"]: (now - dt.datetime.fromisoformat(row["doc"]["heartbeat_at"])).total_seconds()
               for row in beats if row.get("doc")}
    return OperationsFigures(waiting, silence)
