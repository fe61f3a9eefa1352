"""Which measurements become `reading` documents.

Meters advertise every few seconds; storing each would flood the grid workers' replicas (CHT advises
staying under ~10,000 documents per offline user). A numeric value is stored when it changed and at
least `MIN_GAP` passed since the last stored one, and in any case every `REFRESH`; an on/off state
(door, motion) whenever it changes. The rules see every advertisement regardless.
"""

from __future__ import annotations

import datetime as dt

from .state import DurableState

MIN_GAP = dt.timedelta(minutes=1)
REFRESH = dt.timedelta(minutes=15)
# bthome-ble key → (metric, unit) of the reading.
NUMERIC = {"water": ("water", "L"), "power": ("power", "W"), "energy": ("energy", "kWh"),
           "battery": ("battery", "%"), "heart_rate": ("heart_rate", "bpm")}
BINARY = {"motion": ("motion", ""), "door": ("door_open", ""), "opening": ("door_open", "")}


class ReadingFilter:
    def __init__(self, state: DurableState) -> None:
        self.state = state

    def keep(self, device_id: str, metric: str, value: float, at: dt.datetime, *, binary: bool = False) -> bool:
        key = f"{device_id}|reading:{metric}"
        last = self.state.get(key)
        if last is not None:
            since = at - dt.datetime.fromisoformat(last["at"])
            changed = value != last["value"]
            if binary and not changed:
                return False
            if not binary and not (since >= REFRESH or (changed and since >= MIN_GAP)):
                return False
        self.state.put(key, {"value": value, "at": at.isoformat()})
        return True
