"""`linli`: the command line for running and administering Linli.

    linli serve            start the web server (and the embedded CouchDB unless COUCHDB_URL is set)
    linli demo             load the synthetic demo community
    linli user …           add an account, set its password, deactivate or reactivate it (as /accounts does)
    linli validate FILE    check documents in a JSON file against the domain declaration
    linli audit verify     prove the filing log intact, or name the first broken entry
    linli audit report     who opened what in a period, and anomalies worth a second look
    linli keys …           rotate the master key, tier keys, or one resident's data keys
    linli resident erase   crypto-shred one resident's protected data
    linli device-token     issue or revoke a sync token for a BLE gateway or a script
    linli export-schema    print the domain declaration as JSON (what the PWA reads)
    linli assets           precompress the browser code and stylesheet (brotli, gzip; `./dev` runs it)

Every command that uses the database first names its data folder and databases (stderr; `linli --quiet …`
leaves it out) and checks the master key against the database before writing (server/security/master_key.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import getpass
import json
import logging.config
import os
import re
import secrets
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crypto.keys import KeyMaterialError
from crypto.secrets import write_private
from server.cli import admin, backup_admin, device_admin, migrate_admin
from server.domain.declaration import ACCOUNTS_DB, MAIN_DB, Role, ValidationError, export_json, validate
from server.security import account_changes, accounts, filing, master_key, number_index
from server.security.filing import Signer
from server.security.firewall import Firewall
from server.security.keystore import KeyStore
from server.services import deliberation, demo, snapshots, timebank
from server.store import views
from server.store.config import Settings, load_settings, with_secret_key
from server.store.couch import UNREACHABLE, Couch, build_views, connect, ensure_designs, get_or_none
from server.store.embedded_couch import FolderInUse, Record, folder_couch, free_port
from server.store.health import Health

if TYPE_CHECKING:
    import uvicorn

DEMO_LOGINS_FILE = "demo-logins.txt"


@contextlib.contextmanager
def open_couch(settings: Settings, serving: bool = False, starting_rotation: bool = False,
               health: Health | None = None) -> Iterator[tuple[Settings, Couch]]:
    """Connect to COUCHDB_URL, else to the data folder's embedded CouchDB: for a command, the one of the
    `linli serve` running on the folder if any, else one started for the duration; for `linli serve`, its own
    (FolderInUse if another serve runs there). Then check the master key before anything is written
    (MasterKeyRefused); the settings come back with a new installation's generated key. Given a Health, an
    embedded CouchDB started here is supervised (restarted if it exits)."""
    if settings.couchdb_url:  # production CouchDB: any number of servers and commands share it
        yield _checked(settings, connect(settings, designs=False), starting_rotation)
        return

    def say_waiting(record: Record) -> None:
        print(f"linli: waiting for another linli command (pid {record.owner_pid}) to finish with the CouchDB of "
              f"{settings.data_dir} …", file=sys.stderr, flush=True)

    with folder_couch(settings.data_dir / "couch", serving=serving, on_wait=say_waiting, health=health) as url:
        yield _checked(settings, connect(settings, url, designs=False), starting_rotation)


def _checked(settings: Settings, couch: Couch, starting_rotation: bool) -> tuple[Settings, Couch]:
    settings, note = master_key.establish(settings, couch, starting_rotation=starting_rotation)
    if note:
        print(f"linli: {note}", file=sys.stderr, flush=True)
    ensure_designs(couch)
    return with_secret_key(settings), couch


def banner(settings: Settings) -> str:
    """A command's first line: which data folder and which databases it uses (never credentials)."""
    folder = f"{settings.data_dir}" + ("" if settings.data_dir.is_dir() else " (does not exist)")
    return (f"linli: data folder {folder}, CouchDB {settings.couchdb_location} "
            f"({settings.db_name(MAIN_DB)}, {settings.db_name(ACCOUNTS_DB)})")


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        # As the server itself will bind: a port left in TIME_WAIT by the previous run counts as free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def load_demo(settings: Settings, couch: Couch, size: demo.DemoSize, seed: int) -> tuple[str | None, bool]:
    """Load the demo community's documents if they are not there yet; return the demo logins text, if any, and
    whether they were loaded now (then `close_demo_votes` and `spend_demo_points` follow, once the indexes they
    read are built).

    The shared demo password is random per installation and kept in the data
    folder (mode 0600), never in the repository.
    """
    logins_path = settings.data_dir / DEMO_LOGINS_FILE
    loaded = get_or_none(couch.main, demo.STREET_ID) is None
    if loaded:
        password = secrets.token_urlsafe(9)
        print(f"Loading the demo community (seed {seed}) …", flush=True)
        firewall = Firewall.open(settings, couch)
        report = demo.load(couch, firewall, seed=seed, size=size, password_hash=accounts.hash_password(password),
                           progress=sys.stdout.isatty(), indexed=views.FIRST)
        print(f"Loaded {report.docs} documents in {report.seconds:.1f} s.", flush=True)
        lines = [f"Demo password for every demo account: {password}", ""]
        lines += [f"  {login.username:<22} {login.role:<18} {login.where}" for login in demo.demo_logins(seed, size)]
        write_private(logins_path, "\n".join(lines) + "\n")
    return (logins_path.read_text(encoding="utf-8") if logins_path.exists() else None), loaded


def close_demo_votes(settings: Settings, couch: Couch) -> None:
    """The history's past votes counted and published now (signed, filed), not at the first minute sweep."""
    firewall = Firewall.open(settings, couch)
    deliberation.close_due(couch, firewall.keystore, firewall.signer, dt.datetime.now(dt.UTC))


def spend_demo_points(settings: Settings, couch: Couch, seed: int) -> None:
    """The year's participation points minted, some spent on vouchers (signed with the installation key): once,
    right after the demo is loaded (it reads the ledger's index)."""
    demo.points_after_load(couch, Firewall.open(settings, couch).keystore, dt.datetime.now(dt.UTC), seed)


def print_index_times(took: dict[str, float]) -> None:
    for view, seconds in took.items():
        print(f"Index {view} built in {seconds:.1f} s.", flush=True)


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """Every log line of the server (ours and uvicorn's) on stderr, with the request id it was written for: text for
    a person at a terminal, JSON for a log collector (server/web/observability.py)."""
    formatter = ({"()": "server.web.observability.JsonFormatter"} if log_format == "json" else
                 {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"})
    return {"version": 1, "disable_existing_loggers": False,
            "filters": {"request_id": {"()": "server.web.observability.RequestIdFilter"}},
            "formatters": {"main": formatter},
            "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                    "formatter": "main", "filters": ["request_id"]}},
            "root": {"handlers": ["stderr"], "level": level.upper()},
            "loggers": {name: {"handlers": [], "propagate": True} for name in
                        ("uvicorn", "uvicorn.error", "uvicorn.access")}}


def cmd_serve(args: argparse.Namespace) -> int:
    args.log_config = logging_config(args.log_format or ("text" if sys.stderr.isatty() else "json"), args.log_level)
    logging.config.dictConfig(args.log_config)
    settings = load_settings()
    port = settings.port if _port_is_free(settings.host, settings.port) else free_port(settings.host)
    health = Health(first_views_built=False)
    try:
        with open_couch(settings, serving=True, health=health) as (settings, couch):
            stopped = _serve(args, settings, couch, port, health)
    except FolderInUse as error:
        print(f"linli: the data folder {settings.data_dir} is already served by linli serve (pid "
              f"{error.record.owner_pid}, its CouchDB at {error.record.url}); stop that one first. Several servers "
              "can share one CouchDB set with COUCHDB_URL.", file=sys.stderr)
        return 1
    if stopped:
        print(f"linli: stopped: {stopped}", file=sys.stderr)
        return 1
    print("Stopped cleanly.")
    return 0


def _serve(args: argparse.Namespace, settings: Settings, couch: Couch, port: int, health: Health) -> str | None:
    """An installation from before server-only blind indexes migrated (number_index.migrate), the demo on first
    start, the first indexes, the banner, then the web app and sync gateway until Ctrl-C;
    returns why it stopped by itself, if it did (its master key is no longer the database's)."""
    import uvicorn  # here, not at the top: the other commands start faster without it
    from starlette.routing import Mount

    from server.web.app import create_app
    from sync.app import create_sync_app

    note = number_index.migrate(couch, Firewall.open(settings, couch).keystore)
    if note:
        print(f"linli: {note}", flush=True)
    if accounts.TEST_HASH:
        print("linli: LINLI_TEST_PASSWORD_HASH=1: passwords are hashed at argon2id's least cost, for tests only; "
              "never set it where people sign in", file=sys.stderr, flush=True)
    logins, demo_loaded = None, False
    if not args.no_demo and (args.demo or not settings.couchdb_url):
        logins, demo_loaded = load_demo(settings, couch, demo.DemoSize.for_residents(args.residents), args.seed)
    # Before the URL only the indexes every role's first page and a phone's first sync read (server/store/views.py):
    # one pass over each database. The ledgers' and figures' index is built just after, while people sign in.
    print("Building the database indexes …", flush=True)
    took = build_views(couch, views.FIRST)
    print_index_times(took)
    health.first_views_built, health.built_before_url = True, sorted(took)
    if demo_loaded:
        close_demo_votes(settings, couch)
    vouched = Firewall.open(settings, couch).vouch_for_existing_keys()
    if vouched:
        print(f"Vouched for the write keys of {vouched} residents (an installation from before key statements).",
              flush=True)
    stopping = threading.Event()
    threading.Thread(target=_build_other_views, args=(settings, couch, stopping, health,
                                                     args.seed if demo_loaded else None),
                     daemon=True, name="build-views").start()
    url = f"http://{settings.host}:{port}/"
    print("\n" + "=" * 60)
    print(f"Linli is running: open {url}")
    print("CouchDB: " + ("COUCHDB_URL" if settings.couchdb_url else f"embedded, data in {settings.data_dir}"))
    if logins:
        print(logins, end="")
        print(f"(kept in {settings.data_dir / DEMO_LOGINS_FILE})")
    print("Press Ctrl-C to stop.")
    print("=" * 60 + "\n", flush=True)
    # The sync gateway shares the web app's process, session cookie and CSRF check (sync/README.md).
    gateway = Mount("/sync", create_sync_app(settings, couch.url, health,
                                           after_write=_after_phone_write(couch, KeyStore(couch, settings.master_keys)),
                                           after_code_miss=_after_code_miss(couch)))
    # Live sync feeds stay open for minutes: Ctrl-C closes them after 5 s instead of waiting.
    app = create_app(settings, couch, mounts=[gateway], health=health)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=port, log_level=args.log_level,
                                          log_config=args.log_config,
                                          proxy_headers=True, timeout_graceful_shutdown=5))
    stop_reason = _watch_master_key(settings, couch, server)
    try:
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C after its graceful shutdown
            server.run()
    finally:
        stopping.set()
    return stop_reason[0] if stop_reason else None


def _after_phone_write(couch: Couch, keys: KeyStore) -> Callable[[list[dict[str, Any]]], Awaitable[None]]:
    """What the server does next with what a phone stored through the sync gateway: time-bank claims the resident
    confirmed in person move their hours now (server/services/timebank.py settle_in_person)."""
    async def after(stored: list[dict[str, Any]]) -> None:
        ids = timebank.confirmed_in_person(stored)
        if ids:
            await asyncio.to_thread(timebank.settle_in_person, couch, keys, ids, dt.datetime.now(dt.UTC))
    return after


def _after_code_miss(couch: Couch) -> Callable[[str, list[dict[str, Any]]], Awaitable[None]]:
    """Claims a phone sent with a wrong in-person code: counted against their resident (timebank.count_code_misses)."""
    async def after(writer: str, refused: list[dict[str, Any]]) -> None:
        await asyncio.to_thread(timebank.count_code_misses, couch, writer, refused, dt.datetime.now(dt.UTC))
    return after


def _watch_master_key(settings: Settings, couch: Couch, server: uvicorn.Server) -> list[str]:
    """Every WATCH_SECONDS, check that this server's master key is still the database's; once it is not (a
    `linli keys rotate-master` ran elsewhere), shut the server down as Ctrl-C would and put why in the list.

    Stopping, not carrying on: the new key cannot reach a running process, and one carrying on with the old key
    would sign filing-log checkpoints the new key does not verify and could not open re-wrapped key rings.
    """
    reason: list[str] = []

    def watch() -> None:
        while not server.should_exit:
            time.sleep(master_key.WATCH_SECONDS)
            try:
                doc = get_or_none(couch.accounts, master_key.CHECK_ID)
            except Exception:  # noqa: BLE001 - CouchDB briefly unreachable: the server says so itself; retry
                continue
            problem = master_key.refusal(settings, doc) if doc else "the master key's check value was deleted"
            if problem:
                reason.append(f"{problem} (checked against {master_key.where(couch)}); restart linli serve with "
                              "the database's master key")
                server.should_exit = True

    threading.Thread(target=watch, daemon=True, name="master-key-watch").start()
    return reason


def _build_other_views(settings: Settings, couch: Couch, stopping: threading.Event, health: Health,
                       demo_seed: int | None) -> None:
    """Build the indexes the first pages do not need (pages that read them say "preparing" meanwhile:
    server/web/preparing.py); a server stopped meanwhile takes its database with it, and the half-built index is
    simply finished at the next start (no traceback for an operator's Ctrl-C). A database that dies meanwhile is
    restarted (embedded_couch.supervise): the build carries on once it answers again. Then a demo loaded just
    now gets its year of points, and the months just over are frozen and published (the web app's hourly clock
    does it from then on)."""
    while not stopping.is_set():
        try:
            print_index_times(build_views(couch, tuple(p for p in views.PHYSICAL if p not in views.FIRST)))
            if demo_seed is not None:
                try:
                    spend_demo_points(settings, couch, demo_seed)
                except UNREACHABLE:
                    raise
                except Exception as error:  # noqa: BLE001 - the minute sweep mints the same points meanwhile
                    logging.getLogger("linli.demo").warning("demo points: stopped by %s; the minute sweep mints "
                                                            "them, no vouchers bought", type(error).__name__)
                demo_seed = None
            health.all_views_built = True
            snapshots.freeze_due(couch, Signer.of(settings), dt.datetime.now(dt.UTC))
            return
        except UNREACHABLE:
            stopping.wait(2)
        except Exception:
            if not stopping.is_set():
                raise
            return


def cmd_demo(args: argparse.Namespace) -> int:
    with open_couch(load_settings()) as (settings, couch):
        logins, loaded = load_demo(settings, couch, demo.DemoSize.for_residents(args.residents), args.seed)
        if loaded:
            close_demo_votes(settings, couch)
            spend_demo_points(settings, couch, args.seed)
    print(logins or "The demo community was already loaded (no logins file found in the data folder).")
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    password = os.environ.get("LINLI_NEW_PASSWORD") or getpass.getpass("Password for the new user: ")
    new = account_changes.NewAccount(args.username, args.display_name, args.role, args.street, args.community,
                                     args.grid, args.department, args.resident, args.gateway,
                                     args.organisation)
    return _change_user(lambda firewall: account_changes.add(firewall, new, password, **_by_command_line()),
                        f"Created user {args.username}.")


def cmd_user_deactivate(args: argparse.Namespace) -> int:
    return _change_user(lambda firewall: account_changes.set_active(firewall, args.username, False,
                                                                    **_by_command_line()),
                        f"Deactivated {args.username}; their sessions and device tokens no longer work.")


def cmd_user_reactivate(args: argparse.Namespace) -> int:
    return _change_user(lambda firewall: account_changes.set_active(firewall, args.username, True,
                                                                    **_by_command_line()),
                        f"Reactivated {args.username}; they can sign in again.")


def cmd_user_password(args: argparse.Namespace) -> int:
    password = os.environ.get("LINLI_NEW_PASSWORD") or getpass.getpass(f"New password for {args.username}: ")
    return _change_user(lambda firewall: account_changes.set_password(firewall, args.username, password,
                                                                      **_by_command_line()),
                        f"New password set for {args.username}; every session they had open has ended.")


def _by_command_line() -> dict[str, Any]:
    """How the filing log names a change made here: no account, the command line, now."""
    return {"by": account_changes.COMMAND_LINE, "device": "linli user", "now": dt.datetime.now(dt.UTC)}


def _change_user(change: Callable[[Firewall], object], done: str) -> int:
    """Make one account change (server/security/account_changes.py, as the /accounts page does); a refusal is
    printed in English, exit status 2."""
    with open_couch(load_settings()) as (settings, couch):
        try:
            change(Firewall.open(settings, couch))
        except account_changes.AccountRefused as refused:
            for error in refused.errors:
                print(f"linli: {error}", file=sys.stderr)
            return 2
    print(done)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        data = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        print(f"linli: cannot read {args.file}: {error}", file=sys.stderr)
        return 2
    docs = data if isinstance(data, list) else data.get("docs", [data]) if isinstance(data, dict) else [data]
    bad = 0
    for index, doc in enumerate(docs):
        try:
            validate(doc)
        except ValidationError as error:
            bad += 1
            for field_error in error.errors:
                print(f"document {index} ({error.doc_id or 'no _id'}): {field_error}")
    print(f"{len(docs) - bad} valid, {bad} invalid")
    return 1 if bad else 0


def _published_head(text: str) -> tuple[str, int, str]:
    """COMMUNITY:SEQ:HASH, as an audit report prints it."""
    community, seq, head = text.rsplit(":", 2)
    if not (community and seq.isdigit() and re.fullmatch(r"[0-9a-f]{64}", head)):
        raise argparse.ArgumentTypeError("expected COMMUNITY:SEQ:HASH, e.g. community:c1:1200:<64 hex digits>")
    return community, int(seq), head


def cmd_audit_verify(args: argparse.Namespace) -> int:
    published: dict[str, list[tuple[int, str]]] = {}
    for community, seq, head in args.head:
        published.setdefault(community, []).append((seq, head))
    with open_couch(load_settings()) as (settings, couch):
        signer = filing.Signer.of(settings)
        communities = args.community or sorted(set(filing.communities(couch, signer)) | set(published))
        verdicts = {c: filing.verify(couch, signer, c, published.get(c, ())) for c in communities}
    for community, verdict in verdicts.items():
        print(f"{community}: {verdict}")
    return 0 if all(v.ok for v in verdicts.values()) else 1


def cmd_device_token_issue(args: argparse.Namespace) -> int:
    import datetime as dt

    from sync.auth import new_device_token

    with open_couch(load_settings()) as (settings, couch):
        user = get_or_none(couch.accounts, accounts.user_id(args.username))
        if user is None or not user.get("active"):
            print(f"linli: no active user {args.username!r}", file=sys.stderr)
            return 2
        token, doc = new_device_token(user["_id"], args.label, dt.datetime.now(dt.UTC))
        couch.accounts.save(doc)
        installation_key = Firewall.open(settings, couch).keystore.installation_public()
    print("Installation key (public; a BLE gateway pins it as LINLI_GATEWAY_INSTALLATION_KEY and seals readings only "
          "to write keys it vouches for):")
    print(installation_key)
    print(f"Device token for {args.username} (shown once; send it as 'Authorization: Bearer <token>'):")
    print(token)  # the last line, for scripts
    return 0


def cmd_device_token_revoke(args: argparse.Namespace) -> int:
    from sync.auth import token_doc_id

    token_id = args.token_id.removeprefix("lt_").split(".")[0]
    with open_couch(load_settings()) as (_, couch):
        doc = get_or_none(couch.accounts, token_doc_id(token_id))
        if doc is None:
            print(f"linli: no device token {token_id!r}", file=sys.stderr)
            return 2
        couch.accounts.save({**doc, "revoked": True})
    print(f"Revoked device token {token_id}.")
    return 0


def cmd_export_schema(args: argparse.Namespace) -> int:
    print(json.dumps(export_json(), ensure_ascii=False, indent=2))
    return 0


def cmd_assets(args: argparse.Namespace) -> int:
    from server.web.assets import BUILD_DIR, precompress

    made = precompress()
    print(f"{made} files compressed into {BUILD_DIR} (the others were there already)", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linli", description="Linli (邻里): offline-first community governance. "
        "Configuration comes from the environment: COUCHDB_URL, COUCHDB_USER, COUCHDB_PASSWORD(_FILE), "
        "LINLI_DATA_DIR, LINLI_SECRET_KEY(_FILE), LINLI_MASTER_KEY(_FILE), LINLI_HOST, LINLI_PORT (see README.md).")
    parser.add_argument("--quiet", action="store_true",
                        help="do not print which data folder and database the command uses")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the web server; without COUCHDB_URL also the embedded CouchDB "
                           "and, on first start, the demo community")
    serve.add_argument("--no-demo", action="store_true", help="do not load the demo community")
    serve.add_argument("--demo", action="store_true", help="load the demo community even with COUCHDB_URL set")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.add_argument("--log-format", choices=["text", "json"],
                       help="log lines as text or one JSON object each (default: text on a terminal, else json)")
    serve.set_defaults(func=cmd_serve)

    demo_cmd = sub.add_parser("demo", help="load the synthetic demo community (once; later runs do nothing)")
    demo_cmd.set_defaults(func=cmd_demo)

    for p in (serve, demo_cmd):
        p.add_argument("--seed", type=int, default=2025, help="demo generator seed (default 2025)")
        p.add_argument("--residents", type=int, default=demo.PILOT_RESIDENTS,
                       help="approximate number of demo residents (default: the pilot street, "
                            f"about {demo.PILOT_RESIDENTS})")

    user = sub.add_parser("user", help="manage accounts")
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    add = user_sub.add_parser("add", help="create an account (password from LINLI_NEW_PASSWORD or a prompt)")
    add.add_argument("username")
    add.add_argument("--display-name", required=True)
    add.add_argument("--role", action="append", required=True, choices=[r.value for r in Role])
    add.add_argument("--street", required=True, help="street id, e.g. street:hongshan")
    add.add_argument("--community", action="append", default=[], help="community id (repeatable)")
    add.add_argument("--grid", action="append", default=[], help="grid id (repeatable)")
    add.add_argument("--department", help="department id, for department staff")
    add.add_argument("--resident", help="resident id, for a resident's own account (or use an activation code)")
    add.add_argument("--gateway", help="gateway id, for a BLE gateway's account (role gateway)")
    add.add_argument("--organisation", help="organisation id, for a partner (whose vouchers they honour)")
    add.set_defaults(func=cmd_user_add)
    deactivate = user_sub.add_parser("deactivate", help="deactivate an account; ends all its sessions at once")
    deactivate.add_argument("username")
    deactivate.set_defaults(func=cmd_user_deactivate)
    reactivate = user_sub.add_parser("reactivate", help="let a deactivated account sign in again")
    reactivate.add_argument("username")
    reactivate.set_defaults(func=cmd_user_reactivate)
    password = user_sub.add_parser("password", help="set a new password (from LINLI_NEW_PASSWORD or a prompt); "
                                   "ends all the account's sessions at once")
    password.add_argument("username")
    password.set_defaults(func=cmd_user_password)

    check = sub.add_parser("validate", help="validate documents in a JSON file (one document, a list, "
                           "or {\"docs\": [...]}) and name every bad field")
    check.add_argument("file")
    check.set_defaults(func=cmd_validate, uses_database=False)

    audit = sub.add_parser("audit", help="the filing log of protected-data access")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_sub.add_parser("verify", help="prove each community's filing log intact, or name the first "
                                  "broken entry (exit 1)")
    verify.add_argument("--community", action="append", help="community id (repeatable; default: all)")
    verify.add_argument("--head", action="append", default=[], type=_published_head, metavar="COMMUNITY:SEQ:HASH",
                        help="a head an audit report published (repeatable): the log must still reach it")
    verify.set_defaults(func=cmd_audit_verify)
    admin.add_audit_report_parser(audit_sub, open_couch)
    admin.add_parsers(sub, open_couch)
    device_admin.add_parsers(sub, open_couch)
    backup_admin.add_parsers(sub, open_couch)
    migrate_admin.add_parsers(sub, open_couch)

    token = sub.add_parser("device-token", help="sync tokens for BLE gateways and scripts (stored as hashes)")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    issue = token_sub.add_parser("issue", help="issue a token that acts as USERNAME; printed once")
    issue.add_argument("username")
    issue.add_argument("--label", default="", help="what the token is for, e.g. the gateway's place")
    issue.set_defaults(func=cmd_device_token_issue)
    revoke = token_sub.add_parser("revoke", help="revoke a token (by the id after 'lt_', or the whole token)")
    revoke.add_argument("token_id")
    revoke.set_defaults(func=cmd_device_token_revoke)

    export = sub.add_parser("export-schema", help="print the domain declaration as JSON")
    export.set_defaults(func=cmd_export_schema, uses_database=False)
    assets = sub.add_parser("assets", help="precompress the browser code and stylesheet for `linli serve` (brotli, "
                                           "gzip, into build/assets/; ./dev runs it after the npm install)")
    assets.set_defaults(func=cmd_assets, uses_database=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "uses_database", True) and not args.quiet:
            print(banner(load_settings()), file=sys.stderr, flush=True)
        return args.func(args)
    except (master_key.MasterKeyRefused, KeyMaterialError) as error:
        print(f"linli: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
