"""Administration commands: the firewall's (`linli keys …`, `linli resident erase`, `linli audit report`) and
the service desk's (`linli open311-key`, `linli requests-sweep`).

Kept apart from `main.py` (serving, demo, accounts) so that each file stays one concern;
`main.build_parser` adds these with `add_parsers`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
import time
from collections.abc import Callable, Iterator

from crypto import filing_log
from crypto.keyring import PROTECTED_TIERS
from server.security import audit_report, filing, grants, master_key
from server.security.firewall import Firewall
from server.services import service_requests
from server.store.config import LOCAL_TZ, Settings, load_settings
from server.store.couch import Couch, ids_of_type
from server.web import open311

OpenCouch = Callable[..., contextlib.AbstractContextManager[tuple[Settings, Couch]]]


def _communities(couch: Couch, chosen: list[str]) -> list[str]:
    return chosen or ids_of_type(couch.main, "community")


@contextlib.contextmanager
def _firewall(open_couch: OpenCouch, **options: bool) -> Iterator[Firewall]:
    with open_couch(load_settings(), **options) as (settings, couch):
        yield Firewall.open(settings, couch)


def cmd_rotate_master(args: argparse.Namespace, open_couch: OpenCouch) -> int:
    """Switch the check value to the new key (one write), re-wrap and re-sign, then mark the rotation done
    (one write): interrupted anywhere, running it again with both keys resumes (server/security/master_key.py)."""
    if len(load_settings().master_keys) < 2:
        print("linli: set LINLI_MASTER_KEY(_FILE) to the new key and LINLI_MASTER_KEY_PREVIOUS(_FILE) to the "
              "old one, then run this again", file=sys.stderr)
        return 2
    with _firewall(open_couch, starting_rotation=True) as firewall:
        masters = firewall.keystore.master_keys
        if master_key.begin_rotation(masters, firewall.couch):
            print(f"linli: the check value now names the new key; waiting {master_key.SETTLE_SECONDS:.0f} s for "
                  "servers still holding the old key to stop …", file=sys.stderr, flush=True)
            time.sleep(master_key.SETTLE_SECONDS)
        rings = firewall.keystore.rotate_master(progress=sys.stderr.isatty())
        new_signer, old_signer = (filing_log.signing_key(m) for m in masters[:2])  # current first
        signed = sum(filing.resign(firewall.couch, old_signer, new_signer, c)
                     for c in filing.communities(firewall.couch, firewall.signer))
        firewall.signer.anchor.resign(new_signer)  # after every log verified under the old key
        master_key.finish_rotation(firewall.couch)
    print(f"Re-wrapped {rings} key rings and re-signed {signed} filing-log checkpoints under the new master key. "
          "LINLI_MASTER_KEY_PREVIOUS can now be removed.")
    return 0


def cmd_rotate_tier(args: argparse.Namespace, open_couch: OpenCouch) -> int:
    with _firewall(open_couch) as firewall:
        for community in _communities(firewall.couch, args.community):
            street = firewall.couch.main.get(community)["street"]
            for tier in args.tier or PROTECTED_TIERS:
                moved = firewall.keystore.rotate_tier(community, street, tier, progress=sys.stderr.isatty())
                print(f"{community} {tier}: new tier key, {moved} data keys re-wrapped, old version dropped")
    return 0


def cmd_rekey(args: argparse.Namespace, open_couch: OpenCouch) -> int:
    with _firewall(open_couch) as firewall:
        resealed = firewall.rekey(args.resident)
        grants.resync_resident(firewall, args.resident, dt.datetime.now(dt.UTC))  # phones get the new keys
    print(f"{args.resident}: new data keys; {resealed} documents re-encrypted; the old keys open nothing now.")
    return 0


def cmd_erase(args: argparse.Namespace, open_couch: OpenCouch) -> int:
    if not args.yes:
        print("linli: erasing destroys the resident's protected data for good; add --yes to confirm",
              file=sys.stderr)
        return 2
    with _firewall(open_couch) as firewall:
        firewall.shred(args.resident)
    print(f"{args.resident}: data keys destroyed; their contact, health and finance data can no longer be opened.")
    return 0


def cmd_open311_key(args: argparse.Namespace, open_couch: OpenCouch) -> int:
    with open_couch(load_settings()) as (_, couch):
        street = open311.the_street(couch)
        if street is None:
            print("linli: no street in the database yet (load the demo or create the street first)", file=sys.stderr)
            return 2
        key = open311.issue_key(couch, args.name, street, dt.datetime.now(dt.UTC))
    print(f"Open311 API key for {args.name} (shown once; send it as the api_key parameter):")
    print(key)
    return 0


def cmd_requests_sweep(args: argparse.Namespace, open_couch: OpenCouch) -> int:
    with open_couch(load_settings()) as (_, couch):
        street = open311.the_street(couch)
        report = service_requests.sweep(couch, street, dt.datetime.now(dt.UTC)) if street else None
    if report is None:
        print("linli: no street in the database yet", file=sys.stderr)
        return 2
    print(f"warned {report.warned}, escalated {report.escalated}, departments overdue {report.departments_overdue}")
    return 0


def cmd_audit_report(args: argparse.Namespace, open_couch: OpenCouch) -> int:
    tz = LOCAL_TZ
    end = args.end or dt.datetime.now(tz).date()
    start = args.start or end - dt.timedelta(days=30)
    if start > end:
        print("linli: --from must not be after --to", file=sys.stderr)
        return 2
    with open_couch(load_settings()) as (settings, couch):
        anchor = filing.Signer.of(settings).anchor
        communities = _communities(couch, args.community)
        reports = [audit_report.for_community(couch, anchor, c, start, end, tz) for c in communities]
        spans = [s for c in communities for s in audit_report.exposure_of(couch, c, args.resident)] if args.resident \
            else []
    print("\n\n".join(audit_report.render_text(r) for r in reports))
    if args.resident:
        print("\n" + audit_report.render_exposure(args.resident, spans))
    return 1 if any(r.findings for r in reports) and args.fail_on_findings else 0


def add_parsers(sub: argparse._SubParsersAction, open_couch: OpenCouch) -> None:
    """Add `keys`, `resident` and `audit report` to the linli command line."""

    def bind(p: argparse.ArgumentParser, command: Callable[[argparse.Namespace, OpenCouch], int]) -> None:
        p.set_defaults(func=lambda args: command(args, open_couch))

    keys = sub.add_parser("keys", help="rotate the key hierarchy (master → tier keys → data keys)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    bind(keys_sub.add_parser("rotate-master", help="re-wrap every key ring under a new master key "
                             "(LINLI_MASTER_KEY new, LINLI_MASTER_KEY_PREVIOUS old); the server keeps running"),
         cmd_rotate_master)
    tier = keys_sub.add_parser("rotate-tier", help="new tier keys; every resident's data keys re-wrapped "
                               "(progress bar); the old tier key is dropped")
    tier.add_argument("--community", action="append", default=[], help="community id (default: all)")
    tier.add_argument("--tier", action="append", choices=PROTECTED_TIERS, help="tier (default: both)")
    bind(tier, cmd_rotate_tier)
    rekey = keys_sub.add_parser("rekey", help="new data keys for one resident and re-encrypt their documents "
                                "(after a phone with a grant was lost)")
    rekey.add_argument("resident", help="resident id, e.g. resident:c1-g01-0001-1")
    bind(rekey, cmd_rekey)

    key = sub.add_parser("open311-key", help="issue an API key for an Open311 client (printed once)")
    key.add_argument("name", help="who the key is for, e.g. the city's 12345 hotline system")
    bind(key, cmd_open311_key)
    sweep = sub.add_parser("requests-sweep", help="warn before and escalate after service-request deadlines "
                           "(the server also does this every minute)")
    bind(sweep, cmd_requests_sweep)

    resident = sub.add_parser("resident", help="residents' data")
    resident_sub = resident.add_subparsers(dest="resident_command", required=True, metavar="ACTION")
    erase = resident_sub.add_parser("erase", help="crypto-shred a resident's protected data (irreversible)")
    erase.add_argument("resident", help="resident id")
    erase.add_argument("--yes", action="store_true", help="confirm")
    bind(erase, cmd_erase)


def add_audit_report_parser(audit_sub: argparse._SubParsersAction, open_couch: OpenCouch) -> None:
    report = audit_sub.add_parser("report", help="who opened what in a period, and anomalies (outside their "
                                  "assignment, at night, many records in a day)")
    report.add_argument("--from", dest="start", type=dt.date.fromisoformat, help="first day (default: 30 days ago)")
    report.add_argument("--to", dest="end", type=dt.date.fromisoformat, help="last day (default: today)")
    report.add_argument("--community", action="append", default=[], help="community id (default: all)")
    report.add_argument("--fail-on-findings", action="store_true", help="exit 1 when there are findings")
    report.add_argument("--resident", help="also: whose phones held this resident's keys, from when to when "
                        "(resident id)")
    report.set_defaults(func=lambda args: cmd_audit_report(args, open_couch))
