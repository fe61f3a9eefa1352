"""Pairing BLE devices with residents and their safety rules (`linli device register | remove | rules`, and the
console's /devices page: the same functions, so a device paired on either is the same document).

A device document carries everything its gateway needs, copied at registration, so that the gateway
account reads its own devices' documents and nothing else (routing stays lookup-free, `access.py`):

* the resident's public write key, its version and the installation's statement vouching for it
  (`keystore.write_key_copy`, crypto/key_statements.py): the gateway seals readings and alert details it
  cannot open (envelope v2, write without read), and only to a key its pinned installation key vouches for;
  no client may write these fields (`server_only` in the declaration), so the sync gateway refuses a swap;
* `encrypted`: BTHome AES-CCM required; the bind key itself never enters CouchDB, it is installed on the
  gateway (`LINLI_GATEWAY_BIND_KEYS_FILE`);
* the resident's privacy choice for utility alerts, so the gateway sets `alert.visibility` (the alert
  sweep, `alerts.py`, corrects it if the resident changed their mind since);
* `registered_at`: registering again (after a battery change reset the device's counter) tells the
  gateway to start replay tracking afresh.

`linli keys rekey` and a privacy change refresh these copies themselves (`Firewall.refresh_device_copies`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from server.domain.access import deletion
from server.domain.declaration import DEVICE_KINDS, MAC_PATTERN, validate
from server.security.firewall import Firewall
from server.store.couch import Couch, get_or_none, iter_view_docs

Doc = dict[str, Any]


class RegistrationError(ValueError):
    """The device cannot be registered as asked; the message says why (in English, for the command line), `key`
    names it for a page (a UI text key of server/domain/i18n.py, `params` its parameters)."""

    def __init__(self, message: str, key: str = "err_pairing", **params: str) -> None:
        super().__init__(message)
        self.key, self.params = key, {"reason": message, **params}


def device_id(mac: str) -> str:
    return "device:" + mac.replace(":", "").lower()


def _existing(couch: Couch, doc_id: str, type_name: str) -> Doc:
    doc = get_or_none(couch.main, doc_id)
    if doc is None or doc.get("type") != type_name:
        raise RegistrationError(f"no {type_name} {doc_id!r}", f"err_pair_no_{type_name}")
    return doc


def register(firewall: Firewall, *, resident: str, gateway: str, kind: str, mac: str, encrypted: bool,
             model: str | None, now: dt.datetime) -> Doc:
    """Create or refresh the device document pairing a device with a resident and a gateway."""
    if kind not in DEVICE_KINDS:
        raise RegistrationError(f"kind must be one of {', '.join(DEVICE_KINDS)}", "err_pair_kind")
    if not MAC_PATTERN.match(mac.upper()):
        raise RegistrationError("the MAC must look like AA:BB:CC:DD:EE:FF", "err_mac")
    couch = firewall.couch
    person = _existing(couch, resident, "resident")
    station = _existing(couch, gateway, "gateway")
    if station["community"] != person["community"]:
        raise RegistrationError(f"{gateway} serves {station['community']}, but {resident} lives in "
                                f"{person['community']}", "err_pair_other_community")
    write_key = firewall.keystore.write_key_copy(resident)
    mac = mac.upper()
    doc_id = device_id(mac)
    doc = get_or_none(couch.main, doc_id) or {"_id": doc_id, "type": "device"}
    if doc.get("resident") not in (None, resident):
        raise RegistrationError(f"{mac} is registered to {doc['resident']}; remove that registration first",
                                "err_pair_taken", mac=mac)
    doc.update({key: person[key] for key in ("street", "community", "grid", "household")}, resident=resident,
               kind=kind, mac=mac, gateway=gateway, encrypted=encrypted, **write_key,
               utility_alerts=firewall.privacy_of(resident)["utility_alerts"], registered_at=now.isoformat())
    doc.setdefault("installed_at", now.date().isoformat())
    if model:
        doc["model"] = model
    validate(doc)
    return couch.main.save(doc)


def unregister(couch: Couch, mac_or_id: str) -> Doc:
    """End a device's pairing: its document is deleted (the tombstone keeps what routing reads, so the deletion
    reaches its gateway, which stops reading it, and the phones that had it). Returns the device as it was."""
    if not (mac_or_id.startswith("device:") or MAC_PATTERN.match(mac_or_id.upper())):
        raise RegistrationError("name the device by its MAC (AA:BB:CC:DD:EE:FF) or its id (device:…)")
    doc_id = mac_or_id if mac_or_id.startswith("device:") else device_id(mac_or_id.upper())
    doc = _existing(couch, doc_id, "device")
    couch.main.save(deletion(doc))
    return doc


def community_devices(couch: Couch, community: str) -> list[Doc]:
    """The community's paired devices, by household (the console's list)."""
    return sorted(iter_view_docs(couch.main, "linli/by_place", [community, "device"]),
                  key=lambda d: (d.get("household", ""), d["kind"]))


RULE_FIELDS = ("no_water_hours", "no_activity_days", "heart_rate_min", "heart_rate_max", "power_max_watts",
               "quiet_start", "quiet_end", "escalate_minutes")


def safety_rules_id(resident: str) -> str:
    return "safety_rules:" + resident.split(":", 1)[1]


def set_rules(couch: Couch, *, resident: str, gateway: str, values: dict[str, Any], by: str,
              now: dt.datetime) -> Doc:
    """Store a resident's thresholds (only the given ones change; the gateway's defaults fill the rest)."""
    person = _existing(couch, resident, "resident")
    _existing(couch, gateway, "gateway")
    unknown = set(values) - set(RULE_FIELDS)
    if unknown:
        raise RegistrationError(f"unknown safety rule(s): {', '.join(sorted(unknown))}")
    doc = get_or_none(couch.main, safety_rules_id(resident)) or {"_id": safety_rules_id(resident),
                                                                 "type": "safety_rules"}
    doc.update({key: person[key] for key in ("street", "community", "grid", "household")}, resident=resident,
               gateway=gateway, updated_by=by, updated_at=now.isoformat(),
               **{k: v for k, v in values.items() if v is not None})
    validate(doc)
    return couch.main.save(doc)
