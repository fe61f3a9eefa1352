"""The devices this gateway reads, from their `device` documents (pulled through the sync gateway).

A device is known by its MAC address. Each document is checked against the declaration and against
what the gateway itself needs (a write key to seal with, vouched for by the installation key the gateway
pinned at enrolment, crypto/key_statements.py; a bind key if it must encrypt); a document that fails is
left out with a clear reason rather than half-used: the gateway never seals to a key the server did not
vouch for, whoever wrote the document. Advertisements from MAC addresses
that are not registered to this gateway are ignored, counted, and reported in the gateway's health
document (`unknown_macs`, the most recent few).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

from crypto import key_statements
from crypto.envelope import EnvelopeError, unb64url, write_public_key
from server.domain.declaration import PRIVACY_CHOICES, ValidationError, validate

log = logging.getLogger(__name__)

REPORTED_UNKNOWN = 20  # how many unknown MAC addresses the health document names


class DeviceConfigError(ValueError):
    """A device document the gateway cannot use; the message says which and why."""


class UnvouchedDeviceKey(DeviceConfigError):
    """A device document whose write key the pinned installation key does not vouch for."""


@dataclass(frozen=True)
class RegisteredDevice:
    doc_id: str
    mac: str
    kind: str
    resident: str
    household: str
    street: str
    community: str
    grid: str
    registered_at: str
    write_key: EllipticCurvePublicKey  # loaded once here: every reading and alert of the device is sealed to it
    write_key_version: int
    utility_alerts: str
    bind_key: bytes | None  # present exactly when the device must encrypt

    def __repr__(self) -> str:
        return f"RegisteredDevice({self.doc_id}, {self.mac}, {self.kind})"  # never the keys

    @property
    def key(self) -> str:
        return self.doc_id.split(":", 1)[1]

    @property
    def routing(self) -> dict[str, str]:
        """The fields every document about this device's resident carries (routing needs no lookup)."""
        return {"street": self.street, "community": self.community, "grid": self.grid,
                "household": self.household, "resident": self.resident}


def device_from_doc(doc: dict[str, Any], gateway: str, bind_keys: dict[str, bytes],
                    installation_key: EllipticCurvePublicKey) -> RegisteredDevice:
    try:
        validate(doc)
    except ValidationError as error:
        raise DeviceConfigError(str(error)) from None
    doc_id = doc["_id"]
    if doc.get("gateway") != gateway:
        raise DeviceConfigError(f"{doc_id}: registered to {doc.get('gateway')}, not to {gateway}")
    missing = [name for name in ("resident", "household", "write_public", "write_key_version") if not doc.get(name)]
    if missing:
        raise DeviceConfigError(f"{doc_id}: missing {', '.join(missing)} (register it with linli device register)")
    try:
        write_key = write_public_key(unb64url(doc["write_public"]))
    except EnvelopeError:
        raise DeviceConfigError(f"{doc_id}: write_public is not a P-256 public key") from None
    except ValueError:
        raise DeviceConfigError(f"{doc_id}: write_public is not base64url") from None
    try:
        key_statements.check(installation_key, doc["resident"], doc["write_key_version"], doc["write_public"],
                             doc.get("write_signature"))
    except key_statements.UnvouchedKey as error:
        raise UnvouchedDeviceKey(f"{doc_id}: refusing to seal readings to it: {error} (run linli device register "
                                "again; if it persists, someone changed the document)") from None
    bind_key = bind_keys.get(doc["mac"]) if doc.get("encrypted") else None
    if doc.get("encrypted") and bind_key is None:
        raise DeviceConfigError(f"{doc_id}: registered as encrypted, but no bind key for {doc['mac']} is configured "
                                "(LINLI_GATEWAY_BIND_KEYS_FILE)")
    return RegisteredDevice(doc_id, doc["mac"], doc["kind"], doc["resident"], doc["household"], doc["street"],
                            doc["community"], doc["grid"], doc.get("registered_at") or "", write_key,
                            doc["write_key_version"], doc.get("utility_alerts") or PRIVACY_CHOICES["utility_alerts"][0],
                            bind_key)


class Registry:
    """Registered devices by MAC address, and a tally of the unknown ones heard."""

    def __init__(self, gateway: str, bind_keys: dict[str, bytes], installation_key: EllipticCurvePublicKey) -> None:
        self.gateway = gateway
        self._bind_keys = bind_keys
        self._installation_key = installation_key
        self._by_mac: dict[str, RegisteredDevice] = {}
        self._by_id: dict[str, RegisteredDevice] = {}
        self.unknown_count = 0
        self._unknown_recent: OrderedDict[str, dt.datetime] = OrderedDict()
        self.problems: dict[str, str] = {}  # device id → why its document is not used

    def __len__(self) -> int:
        return len(self._by_mac)

    def devices(self) -> list[RegisteredDevice]:
        return list(self._by_mac.values())

    def get(self, doc_id: str) -> RegisteredDevice | None:
        return self._by_id.get(doc_id)

    def apply(self, doc: dict[str, Any]) -> None:
        """Take in one device document (new, changed or deleted).

        A change to a write key the installation does not vouch for is not taken in, and the device keeps its
        last vouched registration: its SOS presses still reach the resident's own key, not the changer's.
        """
        doc_id = doc["_id"]
        old = self._by_id.pop(doc_id, None)
        if old is not None:
            self._by_mac.pop(old.mac, None)
        self.problems.pop(doc_id, None)
        if doc.get("_deleted") or doc.get("gateway") != self.gateway:
            return
        try:
            device = device_from_doc(doc, self.gateway, self._bind_keys, self._installation_key)
        except DeviceConfigError as error:
            self.problems[doc_id] = str(error)
            log.error("device document not used: %s", error)
            if old is not None and isinstance(error, UnvouchedDeviceKey):
                self._by_id[doc_id] = self._by_mac[old.mac] = old
            return
        self._by_id[doc_id] = device
        self._by_mac[device.mac] = device

    def lookup(self, mac: str, heard_at: dt.datetime) -> RegisteredDevice | None:
        device = self._by_mac.get(mac)
        if device is None:
            self.unknown_count += 1
            self._unknown_recent.pop(mac, None)
            self._unknown_recent[mac] = heard_at
            if len(self._unknown_recent) > REPORTED_UNKNOWN:
                self._unknown_recent.popitem(last=False)
        return device

    @property
    def unknown_macs(self) -> list[str]:
        """The most recently heard unknown MAC addresses, newest last."""
        return list(self._unknown_recent)
