"""`linli device register | remove | rules` and `linli alerts-sweep`: the BLE gateway's side of the command line.

Kept apart from `main.py` like `admin.py`; `main.build_parser` adds these with `add_parsers`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
from collections.abc import Callable

from server.domain.declaration import DEVICE_KINDS, ValidationError
from server.security.firewall import Firewall
from server.security.keystore import ShreddedError
from server.services import alerts, devices
from server.store.config import Settings, load_settings
from server.store.couch import Couch

OpenCouch = Callable[..., contextlib.AbstractContextManager[tuple[Settings, Couch]]]


def cmd_register(args: argparse.Namespace, open_couch: OpenCouch) -> int:
    with open_couch(load_settings()) as (settings, couch):
        try:
            doc = devices.register(Firewall.open(settings, couch), resident=args.resident, gateway=args.gateway,
                                   kind=args.kind, mac=args.mac, encrypted=args.encrypted, model=args.model,
                                   now=dt.datetime.now(dt.UTC))
        except (devices.RegistrationError, ValidationError, ShreddedError) as error:
            print(f"linli: {error}", file=sys.stderr)
            return 2
    print(f"Registered {doc['_id']} ({doc['kind']}, {doc['mac']}) for {doc['resident']}, read by {doc['gateway']}.")
    if args.encrypted:
        print(f"Install its BTHome bind key on the gateway: \"{doc['mac']}\": \"<32 hex digits>\" in the file "
              "LINLI_GATEWAY_BIND_KEYS_FILE names (mode 600). The key never goes into CouchDB.")
    return 0


def cmd_remove(args: argparse.Namespace, open_couch: OpenCouch) -> int:
    with open_couch(load_settings()) as (_, couch):
        try:
            doc = devices.unregister(couch, args.device)
        except devices.RegistrationError as error:
            print(f"linli: {error}", file=sys.stderr)
            return 2
    print(f"Removed {doc['_id']} ({doc['kind']}, {doc['mac']}) of {doc.get('resident')}; {doc.get('gateway')} stops "
          "reading it at its next configuration refresh.")
    return 0


def cmd_rules(args: argparse.Namespace, open_couch: OpenCouch) -> int:
    values = {name: getattr(args, name) for name in devices.RULE_FIELDS}
    with open_couch(load_settings()) as (_, couch):
        try:
            doc = devices.set_rules(couch, resident=args.resident, gateway=args.gateway, values=values,
                                    by=args.by, now=dt.datetime.now(dt.UTC))
        except (devices.RegistrationError, ValidationError) as error:
            print(f"linli: {error}", file=sys.stderr)
            return 2
    shown = ", ".join(f"{k}={doc[k]}" for k in devices.RULE_FIELDS if k in doc) or "defaults"
    print(f"Safety rules of {args.resident}: {shown}.")
    return 0


def cmd_sweep(args: argparse.Namespace, open_couch: OpenCouch) -> int:
    with open_couch(load_settings()) as (_, couch):
        report = alerts.sweep(couch, dt.datetime.now(dt.UTC))
    print(f"{report.open_alerts} open alerts: {report.family_notified} family notifications, "
          f"{report.escalated} escalated, {report.visibility_changed} visibility corrected; silent gateways and "
          f"devices: {report.silent_raised} raised, {report.silent_resolved} heard again.")
    return 0


def add_parsers(sub: argparse._SubParsersAction, open_couch: OpenCouch) -> None:
    def bind(p: argparse.ArgumentParser, command: Callable[[argparse.Namespace, OpenCouch], int]) -> None:
        p.set_defaults(func=lambda args: command(args, open_couch))

    device = sub.add_parser("device", help="BLE devices: pair a wristband or meter with a resident and a gateway")
    device_sub = device.add_subparsers(dest="device_command", required=True, metavar="ACTION")
    register = device_sub.add_parser("register", help="register (or refresh) a device; run again after a battery "
                                     "change, a re-key or a privacy change")
    register.add_argument("--resident", required=True, help="resident id, e.g. resident:c1-g01-0001-1")
    register.add_argument("--gateway", required=True, help="gateway id, e.g. gateway:c1-hall")
    register.add_argument("--kind", required=True, choices=DEVICE_KINDS)
    register.add_argument("--mac", required=True, help="the device's BLE address, AA:BB:CC:DD:EE:FF")
    register.add_argument("--encrypted", action="store_true", help="BTHome AES-CCM with a bind key (wristbands: "
                          "always; plain advertisements can be forged)")
    register.add_argument("--model", help="make and model, for the record")
    bind(register, cmd_register)
    remove = device_sub.add_parser("remove", help="un-pair a device (its gateway stops reading it)")
    remove.add_argument("device", help="the device's MAC (AA:BB:CC:DD:EE:FF) or id (device:…)")
    bind(remove, cmd_remove)
    rules = device_sub.add_parser("rules", help="a resident's safety thresholds and quiet hours")
    rules.add_argument("resident")
    rules.add_argument("--gateway", required=True, help="the gateway that applies them")
    rules.add_argument("--by", required=True, help="who sets them (user id, e.g. user:wangge01)")
    for name in devices.RULE_FIELDS:
        kind = str if name.startswith("quiet") else int
        rules.add_argument("--" + name.replace("_", "-"), dest=name, type=kind,
                           help="HH:MM" if kind is str else None)
    bind(rules, cmd_rules)

    sweep = sub.add_parser("alerts-sweep", help="silent gateways and devices, family notifications, escalation of "
                           "unacknowledged alerts (the server also does this every minute)")
    bind(sweep, cmd_sweep)
