"""The gateway: advertisements and heart-rate notifications in, readings, alerts and health out.

    scanner (bleak) ─► registry ─► decoder (bthome-ble) ─► rules ─► documents (sealed) ─► outbox (SQLite)
    heart-rate monitors (bleak GATT) ─────────────────────────┘                               │
                                                      uplink (sync gateway, device token) ◄───┘

Routine readings are committed to the outbox in groups (one transaction at most every `commit_seconds`);
an alert commits everything waiting with it before its local alarm sounds (`on_alarm`, SOS and fall, so
that someone in the room hears it even offline) and before anything is sent. The uplink drains only what
is committed, whenever the network allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner

from crypto import key_statements

from . import documents
from .clock import Clock, SystemClock
from .decode import Decoder, Packet, Rejection, Sequence
from .heart_rate import HeartRateMeasurement, HeartRateMonitor
from .outbox import Outbox
from .readings import BINARY, NUMERIC, ReadingFilter
from .registry import RegisteredDevice, Registry
from .rules import AlertDraft, RuleEngine, RulesConfigError, SafetyRules
from .scanner import ScanSupervisor
from .state import DurableState
from .uplink import Refused, Uplink, UplinkError

log = logging.getLogger(__name__)

Doc = dict[str, Any]
LOCAL_ALARM_KINDS = ("sos", "fall")
KEEP_SENT = dt.timedelta(days=30)


@dataclass(frozen=True)
class GatewayConfig:
    gateway: str  # the gateway document's id, e.g. gateway:gw1
    data_dir: Path
    # The installation key pinned at enrolment (base64url): the gateway seals only to write keys it vouches for.
    installation_key: str
    timezone: str = "Asia/Shanghai"
    tick_seconds: float = 30.0
    push_seconds: float = 5.0
    config_seconds: float = 300.0
    heartbeat_minutes: float = 5.0
    device_health_minutes: float = 60.0
    stall_seconds: float = 120.0
    push_batch: int = 200
    commit_seconds: float = 1.0  # group commit: what a power cut may lose of routine readings (README)


def _log_alarm(draft: AlertDraft) -> None:
    log.critical("LOCAL ALARM: %s from %s (%s)", draft.kind, draft.device.doc_id, draft.device.resident)


class Gateway:
    def __init__(self, config: GatewayConfig, bind_keys: dict[str, bytes], uplink: Uplink | None = None,
                 clock: Clock | None = None, scanner_backend: type[BaseBleakScanner] | None = None,
                 client_backend: type[BaseBleakClient] | None = None,
                 on_alarm: Callable[[AlertDraft], Any] = _log_alarm) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.uplink = uplink
        self.on_alarm = on_alarm
        self._client_backend = client_backend
        self.outbox = Outbox(config.data_dir / "gateway.sqlite3")
        self.registry = Registry(config.gateway, bind_keys, key_statements.load_pinned(config.installation_key))
        self.state = DurableState(self.outbox.state())
        self._safety: dict[str, SafetyRules] = {}
        self.rules = RuleEngine(self.state, self.rules_for, self.registry.get, ZoneInfo(config.timezone))
        self.readings = ReadingFilter(self.state)
        self.scanner = ScanSupervisor(self.handle_advertisement, scanner_backend, config.stall_seconds)
        self.started_at = self.clock.now()
        self.advertisements = 0
        self.rejected: Counter[str] = Counter()
        self.rejected_by_device: Counter[str] = Counter()
        self.last_seen: dict[str, dt.datetime] = {}
        self.battery: dict[str, float] = {}
        self.online = False
        self.last_push_at: dt.datetime | None = None
        self.gateway_doc: Doc | None = None
        self._health_written: dict[str, tuple[dt.datetime, bool]] = {}
        self._heartbeat_at: dt.datetime | None = None
        self._monitors: dict[str, asyncio.Task[None]] = {}
        self._push_now = asyncio.Event()
        self._unsaved: dict[str, tuple[str, Sequence]] = {}
        self._unwritten: list[Doc] = []  # routine readings waiting for the next group commit
        self._saved_at = time.monotonic()
        self.decoder = Decoder()
        docs, self._since = self.outbox.config()
        self._apply_config(docs)  # the last known configuration: the gateway starts (and alarms) offline
        # Replay tracking resumes where it stopped, unless the device was registered again since.
        self.decoder.last.update({device_id: sequence for device_id, (registered_at, sequence)
                                  in self.outbox.sequences().items()
                                  if (d := self.registry.get(device_id)) and d.registered_at == registered_at})

    def flush(self, docs: list[Doc] | None = None) -> None:
        """Commit what waits (readings, sequences, rule state) and `docs` in one transaction, if anything does."""
        docs = self._unwritten + (docs or [])
        state = self.state.take_dirty()
        if docs or self._unsaved or state:
            self.outbox.record(docs, self._unsaved, state, self.clock.now())
        self._unwritten, self._unsaved = [], {}
        self._saved_at = time.monotonic()

    def close(self) -> None:
        self.flush()
        self.outbox.close()

    # ------------------------------------------------------------ configuration

    def rules_for(self, resident: str) -> SafetyRules:
        return self._safety.get(resident) or SafetyRules()

    def _apply_config(self, docs: list[Doc]) -> None:
        for doc in docs:
            kind = doc.get("type")
            if kind == "device" or (doc.get("_deleted") and doc["_id"].startswith("device:")):
                old = self.registry.get(doc["_id"])
                self.registry.apply(doc)
                new = self.registry.get(doc["_id"])
                if old is not None and (new is None or new.registered_at != old.registered_at):
                    self.decoder.forget(doc["_id"])
            elif kind == "safety_rules":
                try:
                    self._safety[doc["resident"]] = SafetyRules.from_doc(doc)
                except RulesConfigError as error:
                    log.error("safety rules not used (defaults apply): %s", error)
            elif kind == "gateway" and doc["_id"] == self.config.gateway:
                self.gateway_doc = doc

    async def refresh_config(self) -> None:
        if self.uplink is None:
            return
        docs, since = await self.uplink.changes(self._since)
        self._apply_config(docs)
        self.outbox.save_config([d for d in docs if d.get("type") in ("device", "safety_rules", "gateway")
                                 or d.get("_deleted")], since)
        self._since = since
        self._sync_monitors()

    # ------------------------------------------------------------ what is heard

    def handle_advertisement(self, ble_device: BLEDevice, adv: AdvertisementData) -> None:
        now = self.clock.now()
        self.advertisements += 1
        device = self.registry.lookup(ble_device.address.upper(), now)
        if device is None:
            return
        result = self.decoder.decode(device, ble_device, adv, now, time.monotonic())
        if result is None:
            return
        if isinstance(result, Rejection):
            self.rejected[result.value] += 1
            self.rejected_by_device[device.doc_id] += 1
            log.warning("%s: advertisement refused (%s)", device.doc_id, result.value)
            return
        self.last_seen[device.doc_id] = now
        if "battery" in result.values:
            self.battery[device.doc_id] = result.values["battery"]
        docs = self._readings_of(result)
        drafts = self.rules.on_packet(result)
        self._commit(docs, drafts, {device.doc_id: (device.registered_at, result.sequence)})

    def _readings_of(self, packet: Packet) -> list[Doc]:
        device, seq = packet.device, packet.sequence
        docs = []
        for key, value in packet.values.items():
            metric, unit = NUMERIC.get(key, (None, ""))
            if metric and self.readings.keep(device.doc_id, metric, value, seq.heard_at):
                docs.append(documents.reading(device, seq.tag, metric, value, unit, seq.heard_at, seq.number))
        for key, on in packet.binary.items():
            metric, unit = BINARY.get(key, (None, ""))
            if metric and self.readings.keep(device.doc_id, metric, float(on), seq.heard_at, binary=True):
                docs.append(documents.reading(device, seq.tag, metric, float(on), unit, seq.heard_at, seq.number))
        return docs

    def handle_heart_rate(self, device: RegisteredDevice, measurement: HeartRateMeasurement) -> None:
        now = self.clock.now()
        self.last_seen[device.doc_id] = now
        docs = []
        if measurement.usable and self.readings.keep(device.doc_id, "heart_rate", measurement.bpm, now):
            docs.append(documents.reading(device, f"hr{int(now.timestamp())}", "heart_rate", measurement.bpm, "bpm",
                                          now))
        self._commit(docs, self.rules.on_heart_rate(device, measurement, now), {})

    def _commit(self, docs: list[Doc], drafts: list[AlertDraft],
                sequences: dict[str, tuple[str, Sequence]]) -> None:
        """Write what a packet produced. Alerts are on disk, with everything heard before them, before this
        returns (and so before the local alarm or any delivery). Readings, sequences and rule state are
        committed as a group within `commit_seconds` (by the next packet after it, or by `run`'s commit
        step): a disk sync per reading would cap the gateway far below what a busy community's meters send.
        A power cut can therefore lose at most the last `commit_seconds` of routine readings, all together
        with their sequences and rule state, as if it had come that much earlier; nothing uncommitted was
        sent anywhere, so nothing is doubled either."""
        alerts = [documents.alert(draft) for draft in drafts]
        self._unwritten += docs
        self._unsaved.update(sequences)
        if alerts or time.monotonic() - self._saved_at >= self.config.commit_seconds:
            self.flush(alerts)
        for draft in drafts:
            log.info("alert %s raised (%s)", draft.alert_id, draft.kind)
            if draft.kind in LOCAL_ALARM_KINDS:
                self.on_alarm(draft)
        if drafts:
            self._push_now.set()

    # ------------------------------------------------------------ time

    def tick(self) -> None:
        """Time-based rules, device health and the heartbeat; called every `tick_seconds`."""
        now = self.clock.now()
        self._commit([], self.rules.on_tick(now), {})
        self.flush()
        self._write_device_health(now)
        due = self._heartbeat_at is None or now - self._heartbeat_at >= dt.timedelta(
            minutes=self.config.heartbeat_minutes)
        if due and self.gateway_doc is not None:
            self._heartbeat_at = now
            self.outbox.put_latest(documents.gateway_health(
                self.config.gateway, self.gateway_doc["street"], self.gateway_doc["community"], self.figures(now)))
            self.outbox.prune_sent(now - KEEP_SENT)

    def _write_device_health(self, now: dt.datetime) -> None:
        every = dt.timedelta(minutes=self.config.device_health_minutes)
        for device in self.registry.devices():
            last_seen = self.last_seen.get(device.doc_id)
            if last_seen is None:
                continue
            battery = self.battery.get(device.doc_id)
            low = battery is not None and battery < 15
            written = self._health_written.get(device.doc_id)
            if written is not None and now - written[0] < every and written[1] == low:
                continue
            self._health_written[device.doc_id] = (now, low)
            self.outbox.put_latest(documents.device_health(device, self.config.gateway, last_seen, battery,
                                                           self.rejected_by_device[device.doc_id], now))

    def figures(self, now: dt.datetime) -> dict[str, Any]:
        counts = self.outbox.counts()
        figures: dict[str, Any] = {
            "heartbeat_at": now.isoformat(), "started_at": self.started_at.isoformat(),
            "scanning": self.scanner.scanning, "scanner_restarts": self.scanner.restarts,
            "advertisements": self.advertisements, "unknown_devices": self.registry.unknown_count,
            "unknown_macs": self.registry.unknown_macs, "outbox_pending": counts["pending"],
            **{f"rejected_{r.value}": self.rejected[r.value] for r in Rejection}}
        if self.last_push_at is not None:
            figures["last_push_at"] = self.last_push_at.isoformat()
        return figures

    # ------------------------------------------------------------ delivery

    async def push(self) -> int:
        """Send what waits in the outbox; returns how many documents were delivered (UplinkError if offline)."""
        if self.uplink is None:
            return 0
        delivered = 0
        while batch := self.outbox.pending(self.config.push_batch):
            result = await self.uplink.push(batch)
            self.outbox.mark_sent(result.stored)
            for doc_id, reason in result.refused.items():
                log.error("%s refused by the sync gateway: %s", doc_id, reason)
                self.outbox.mark_refused(doc_id, reason)
            delivered += len(result.stored)
            if result.retry:
                break
        for doc, rev in self.outbox.dirty_latest():
            try:
                rev = await self.uplink.put_latest(doc, rev)
            except Refused as error:  # e.g. a device paired to a grid this gateway's account does not serve
                log.error("health document refused by the sync gateway: %s", error)
            self.outbox.latest_delivered(doc["_id"], doc, rev)
        self.online, self.last_push_at = True, self.clock.now()
        return delivered

    # ------------------------------------------------------------ running

    def _sync_monitors(self) -> None:
        """One heart-rate monitor per registered wristband."""
        wristbands = {d.doc_id: d for d in self.registry.devices() if d.kind == "wristband"}
        for device_id in set(self._monitors) - set(wristbands):
            self._monitors.pop(device_id).cancel()
        for device_id, device in wristbands.items():
            if device_id not in self._monitors:
                monitor = HeartRateMonitor(device, self.handle_heart_rate, self._client_backend)
                self._monitors[device_id] = asyncio.create_task(monitor.run(), name=f"heart rate {device_id}")

    async def _every(self, seconds: float, step: Callable[[], Any], what: str,
                     wake: asyncio.Event | None = None) -> None:
        """Run step every `seconds` (sooner when `wake` is set: an alert does not wait for the next round)."""
        wake = wake or asyncio.Event()
        while True:
            try:
                outcome = step()
                if asyncio.iscoroutine(outcome):
                    await outcome
            except UplinkError as error:
                self.online = False
                log.info("%s postponed, offline: %s", what, error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), seconds)
            wake.clear()

    async def run(self) -> None:
        """Run until cancelled."""
        self._sync_monitors()
        tasks = [asyncio.create_task(coro) for coro in (
            self.scanner.run(),
            self._every(self.config.config_seconds, self.refresh_config, "configuration"),
            self._every(self.config.tick_seconds, self.tick, "tick"),
            self._every(self.config.commit_seconds, self.flush, "commit"),  # readings heard before a lull
            self._every(self.config.push_seconds, self.push, "push", self._push_now))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in [*tasks, *self._monitors.values()]:
                task.cancel()
            await asyncio.gather(*tasks, *self._monitors.values(), return_exceptions=True)
            self._monitors.clear()
