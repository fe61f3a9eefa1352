"""`linli migrate [--dry-run] [--batch N]`: stored documents upgraded to the current declaration version
(server/services/migrate.py holds the work, server/domain/migrations.py the migrations). Safe while `linli serve`
runs on the same data folder or CouchDB; killed, it resumes from its checkpoint when run again.

Kept apart from `main.py` like `admin.py`; `main.build_parser` adds it with `add_parsers`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable

from tqdm import tqdm

from server.services import migrate
from server.store.config import Settings, load_settings
from server.store.couch import Couch

OpenCouch = Callable[..., contextlib.AbstractContextManager[tuple[Settings, Couch]]]


def cmd_migrate(args: argparse.Namespace, open_couch: OpenCouch) -> int:
    if args.batch < 1:
        print("linli: --batch must be at least 1", file=sys.stderr)
        return 2
    with open_couch(load_settings()) as (_settings, couch), \
            tqdm(desc="documents read", unit="doc", file=sys.stderr, disable=args.dry_run) as bar:
        report = migrate.migrate(couch, dry_run=args.dry_run, batch=args.batch,
                                 progress=lambda _type, read: bar.update(read - bar.n))
    if report.resumed_after:
        print(f"Resumed after {report.resumed_after} (an earlier run was interrupted there).")
    for change in report.changes if args.dry_run else ():
        versions = f"version {change.from_version}" + (
            f" → {change.to_version}" if change.to_version != change.from_version else ", filled")
        print(f"{change.doc_id}: {versions}: {', '.join(change.fields)}")
    verb = "would upgrade" if args.dry_run else "upgraded"
    print(f"{report.read} documents of {', '.join(migrate.types_read()) or 'no type'} read; "
          f"{verb} {len(report.changes)}.")
    for unfilled in report.unfilled:
        print(f"Left without (nothing certain to fill it with): {unfilled}")
    for left in report.left:
        print(f"linli: not upgraded, run again: {left}", file=sys.stderr)
    return 1 if report.left else 0


def add_parsers(sub: argparse._SubParsersAction, open_couch: OpenCouch) -> None:
    parser = sub.add_parser("migrate", help="upgrade stored documents written under an older declaration version "
                                            "(in batches, while the server runs; resumes where a killed run stopped)")
    parser.add_argument("--dry-run", action="store_true", help="list what would change (ids, versions, field names) "
                                                               "and write nothing")
    parser.add_argument("--batch", type=int, default=migrate.BATCH, help=f"documents per batch (default "
                                                                           f"{migrate.BATCH})")
    parser.set_defaults(func=lambda args: cmd_migrate(args, open_couch))
