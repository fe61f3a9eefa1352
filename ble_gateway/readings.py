"""Which measurements become `reading` documents.

Meters advertise every few seconds; storing each would flood the grid workers' replicas (CHT advises
staying under ~10,000 documents per offline user) and cost the gateway a disk sync per advertisement.
A numeric value is stored when it differs from the last stored one and at least `REFRESH` passed since
then (meters count cumulatively, so nothing is lost in between); an on/off state (door, motion)
whenever it changes. The rules see every advertisement regardless, and alerts never wait.
"""

from __future__ import annotations

import datetime as dt

from .state import DurableState

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
            if not changed or (not binary and since < REFRESH):
                return False
        self.state.put(key, {"value": value, "at": at.isoformat()})
        return True
