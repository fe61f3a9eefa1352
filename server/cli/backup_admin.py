"""`linli backup [--out FILE]`, `linli backup --key FILE` and `linli restore BACKUP [--key FILE] [--merge]`: what a
community's IT volunteer runs to keep the installation and to rebuild it on a fresh machine
(server/services/backup.py holds the work; crypto/backup.py the sealing).

Kept apart from `main.py` like `admin.py`; `main.build_parser` adds these with `add_parsers`. The passphrase of a
key export comes from LINLI_BACKUP_PASSPHRASE(_FILE) or a prompt, never an argument (it would sit in the shell's
history and the process list).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import getpass
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from tqdm import tqdm

from crypto.backup import BackupKeyError, open_under_passphrase, seal_under_passphrase
from crypto.envelope import b64url, unb64url
from crypto.keyring import master_id
from crypto.secrets import read_secret, write_private
from server.security import master_key
from server.security.filing_anchor import ANCHOR_FILE
from server.services import backup
from server.store.config import Settings, load_settings, master_key_file
from server.store.couch import Couch, connect
from server.store.embedded_couch import folder_couch

OpenCouch = Callable[..., contextlib.AbstractContextManager[tuple[Settings, Couch]]]


@contextlib.contextmanager
def _bars() -> Iterator[backup.Progress]:
    """One tqdm bar per step (stderr), closed at the end."""
    bars: dict[str, tqdm] = {}

    def progress(what: str, done: int, total: int) -> None:
        bar = bars.setdefault(what, tqdm(desc=what, total=max(total, done), unit="doc", file=sys.stderr))
        bar.total = max(bar.total, done)
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        for bar in bars.values():
            bar.close()


def _passphrase(twice: bool) -> str:
    given = read_secret("LINLI_BACKUP_PASSPHRASE")
    if given:
        return given.strip()
    first = getpass.getpass("Passphrase for the key file: ")
    if twice and getpass.getpass("The same passphrase again: ") != first:
        raise BackupKeyError("the two passphrases differ")
    return first


def cmd_backup(args: argparse.Namespace, open_couch: OpenCouch) -> int:
    if args.key:
        return _export_key(Path(args.key))
    with open_couch(load_settings()) as (settings, couch):
        out = Path(args.out) if args.out else (
            settings.data_dir / "backups" / f"linli-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.tar")
        out.parent.mkdir(parents=True, exist_ok=True)
        with _bars() as progress:
            manifest = backup.write_backup(couch, settings.master_keys[0], settings.data_dir / ANCHOR_FILE, out,
                                           progress)
    counts = ", ".join(f"{name} {d['documents']}" for name, d in manifest["databases"].items())
    print(f"Backup written to {out} ({out.stat().st_size:,} bytes; documents: {counts}). It holds no master key: "
          "keep `linli backup --key FILE` apart from it.")
    return 0


def _export_key(path: Path) -> int:
    settings = load_settings()
    if not settings.master_keys:
        print(f"linli: no master key to export ({settings.master_key_source})", file=sys.stderr)
        return 2
    try:
        sealed = seal_under_passphrase({"master_key": b64url(settings.master_keys[0]),
                                        "master_id": master_id(settings.master_keys[0])}, _passphrase(twice=True))
    except BackupKeyError as error:
        print(f"linli: {error}", file=sys.stderr)
        return 2
    write_private(path, sealed.decode())
    print(f"Master key {master_id(settings.master_keys[0])} exported to {path}, sealed under your passphrase. "
          "Keep it apart from the backups: together they open every protected field.")
    return 0


def cmd_restore(args: argparse.Namespace, open_couch: OpenCouch) -> int:
    settings = load_settings()
    try:
        master = _restoring_key(settings, Path(args.key) if args.key else None)
        backup.read_backup(Path(args.backup), master)  # the whole file checked before anything is written
    except (BackupKeyError, backup.BackupError) as error:
        print(f"linli: {error}", file=sys.stderr)
        return 2
    if not settings.master_keys:  # a fresh data folder: the backup's key becomes its key
        write_private(master_key_file(settings.data_dir), b64url(master))
        settings = load_settings()
    with _databases(settings) as couch:
        try:
            if args.merge:  # into a running installation: only with its own key
                master_key.establish(settings, couch)
            with _bars() as progress:
                done = backup.restore(couch, master, Path(args.backup), settings.data_dir / ANCHOR_FILE, progress,
                                      merge=args.merge)
            master_key.establish(settings, couch)  # the restored check value agrees with the key
        except backup.BackupError as error:
            print(f"linli: {error}", file=sys.stderr)
            return 2
    counts = ", ".join(f"{name} {n}" for name, n in done.documents.items())
    print(f"Restored {args.backup} (made {done.manifest['created_at']}; documents: {counts})"
          + ("; the filing log's anchor written" if done.anchor_written else "") + ". Start it with `linli serve`.")
    return 0


def _restoring_key(settings: Settings, key_file: Path | None) -> bytes:
    if key_file is None:
        if not settings.master_keys:
            raise BackupKeyError("this data folder has no master key: give the backup's with --key FILE "
                                 "(written by `linli backup --key`)")
        return settings.master_keys[0]
    exported = open_under_passphrase(key_file.read_bytes(), _passphrase(twice=False))
    master = unb64url(exported["master_key"])
    if settings.master_keys and settings.master_keys[0] != master:
        raise BackupKeyError(f"this installation already has another master key ({settings.master_key_source}); "
                             "restore into a new data folder, or without --key")
    return master


@contextlib.contextmanager
def _databases(settings: Settings) -> Iterator[Couch]:
    """The databases as they are, without writing the master key's check value first (the backup brings it)."""
    if settings.couchdb_url:
        yield connect(settings, designs=False)
        return
    with folder_couch(settings.data_dir / "couch", serving=False) as url:
        yield connect(settings, url, designs=False)


def add_parsers(sub: argparse._SubParsersAction, open_couch: OpenCouch) -> None:
    def bind(parser: argparse.ArgumentParser, command: Callable[[argparse.Namespace, OpenCouch], int]) -> None:
        parser.set_defaults(func=lambda args: command(args, open_couch))

    made = sub.add_parser("backup", help="write a backup of both databases (no master key in it), or with --key "
                                         "export the master key sealed under a passphrase")
    made.add_argument("--out", help="the backup file (default: <data folder>/backups/linli-<date>.tar)")
    made.add_argument("--key", metavar="FILE", help="export the master key to FILE instead (passphrase from "
                                                    "LINLI_BACKUP_PASSPHRASE(_FILE) or a prompt)")
    bind(made, cmd_backup)
    back = sub.add_parser("restore", help="rebuild an installation from a backup (refused if altered, cut short, "
                                          "of another installation, or into a non-empty one without --merge)")
    back.add_argument("backup", help="the backup file")
    back.add_argument("--key", metavar="FILE", help="the master key exported with `linli backup --key` (for a new "
                                                    "data folder)")
    back.add_argument("--merge", action="store_true", help="add the backup's revisions to a non-empty installation")
    bind(back, cmd_restore)
