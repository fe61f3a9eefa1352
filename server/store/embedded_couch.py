"""The embedded CouchDB-compatible server: a real `pouchdb-server` process.

Used by `linli serve` when no COUCHDB_URL is set, by every other `linli` command, and by the
test suite. It listens on a free loopback port and keeps its files under the data folder.
It answers only its admin (`ADMIN_USER`, the password generated into the folder's `PASSWORD_FILE`,
mode 0600): `couch_gate.js` refuses every other request, and any sent by a web page of another
site, before pouchdb-server sees it; CORS is off. So a process on the host that cannot read the
data folder, or a page in a browser, can neither read nor rewrite anything.
The child gets SIGTERM if this process dies (Linux), so a crash leaves no orphan holding
the database files.

`linli serve` supervises its pouchdb-server (`supervise`): if it exits, it is started again on the same port
(so every client's URL stays right), with a growing pause if it keeps dying, and the event logged and counted in
the server's Health (health.py).

One data folder, one pouchdb-server (leveldb allows one process per database), shared:
`folder_couch` lets a command use the pouchdb-server of a `linli serve` running on the same
folder, refuses a second `linli serve`, and otherwise starts one for the command's duration.
Who owns the folder is decided by an OS lock (`flock` on `LOCK_FILE`, which the kernel drops
when its holders die, so a `kill -9` leaves nothing that blocks the next start); where that
owner's pouchdb-server listens is in `RECORD_FILE`, which is never trusted on its own (see
`read_record`).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import fcntl
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx2

from crypto.secrets import private_secret
from server.store.config import PROJECT_ROOT
from server.store.health import Health

POUCHDB_SERVER_BIN = PROJECT_ROOT / "node_modules" / "pouchdb-server" / "bin" / "pouchdb-server"
# Loaded into pouchdb-server with `node --require`, in this order: the door every request passes, and map functions
# compiled once instead of once per document (couch_maps.js says why), LevelDB's write buffer sized for a first start's
# bulk of writes (couch_level.js).
PRELOADS = tuple(Path(__file__).with_name(name) for name in ("couch_gate.js", "couch_maps.js", "couch_level.js"))
ADMIN_USER = "linli"
PASSWORD_FILE = "admin_password"  # in the pouchdb-server's folder, mode 0600, made on first start
_PR_SET_PDEATHSIG = 1
RESTART_PAUSES = (0.5, 1, 2, 4, 8, 15, 30)  # seconds before the n-th restart in a row (the last one repeats)
STABLE_AFTER = 60.0  # seconds up after which a later exit starts the pauses from the first again

log = logging.getLogger("linli.database")


def admin_password(folder: Path) -> str:
    """The embedded CouchDB's admin password for the database folder, generated on first use."""
    return private_secret(folder / PASSWORD_FILE, lambda: secrets.token_urlsafe(32))


def _url(port: int, password: str | None = None) -> str:
    """The loopback address; with the password, as a client connects (never print that one)."""
    credentials = "" if password is None else f"{ADMIN_USER}:{password}@"
    return f"http://{credentials}127.0.0.1:{port}/"


def _answers(port: int, password: str) -> bool:
    return httpx2.get(_url(port), auth=(ADMIN_USER, password), timeout=2).status_code == 200


def _write_config(folder: Path, password: str) -> None:
    """pouchdb-server's own settings, on every start: its admin (behind the gate, so that pouchdb-server too
    treats only that user as admin; it replaces the password with a pbkdf2 hash when it starts), no CORS
    (its default answers any Origin, with credentials), loopback only."""
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    config["admins"] = {ADMIN_USER: password}
    config.setdefault("httpd", {}).update(enable_cors=False, bind_address="127.0.0.1")
    temporary = folder / ".config.json.new"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    os.replace(temporary, path)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Runs in the child before exec: ask the kernel to SIGTERM it when we die."""
    with contextlib.suppress(OSError):  # not Linux/glibc: our own clean shutdown still applies
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _child_environment(data_dir: Path) -> dict[str, str]:
    """Ours without Linli's and CouchDB's settings (the master key may be among them: pouchdb-server needs none),
    plus what the gate reads: who the admin is and where the password is (not the password itself)."""
    kept = {name: value for name, value in os.environ.items() if not name.startswith(("LINLI_", "COUCHDB_"))}
    return {**kept, "LINLI_COUCH_USER": ADMIN_USER, "LINLI_COUCH_PASSWORD_FILE": str(data_dir / PASSWORD_FILE)}


def _command_line(data_dir: Path, port: int) -> list[str]:
    preloads = [arg for path in PRELOADS for arg in ("--require", str(path))]
    return ["node", *preloads, str(POUCHDB_SERVER_BIN), "--host", "127.0.0.1", "--port", str(port),
            "--dir", str(data_dir), "--config", str(data_dir / "config.json"), "--no-stdout-logs"]


class EmbeddedCouch:
    """Start, wait for and stop one pouchdb-server process."""

    def __init__(self, data_dir: Path, port: int | None = None, inherit_fd: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.password = admin_password(data_dir)
        self.url = _url(self.port, self.password)  # what clients connect to: credentials included
        self.location = _url(self.port)  # for people and logs
        self.inherit_fd = inherit_fd  # the folder lock: held until the child, too, has exited
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> EmbeddedCouch:
        if not POUCHDB_SERVER_BIN.exists():
            raise RuntimeError(f"{POUCHDB_SERVER_BIN} is missing: run the setup (./dev up) to install npm packages")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _write_config(self.data_dir, self.password)
        with open(self.data_dir / "pouchdb-server.log", "ab") as log:
            self.process = subprocess.Popen(
                _command_line(self.data_dir, self.port), cwd=self.data_dir,
                env=_child_environment(self.data_dir),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                # Own session: Ctrl-C reaches only us, and we stop the database after the web server.
                start_new_session=True, preexec_fn=_die_with_parent,
                pass_fds=() if self.inherit_fd is None else (self.inherit_fd,),
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pouchdb-server exited with {self.process.returncode}; "
                                   f"see {self.data_dir / 'pouchdb-server.log'}")
            try:
                if _answers(self.port, self.password):
                    return self
            except httpx2.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"pouchdb-server did not answer on {self.location} within {timeout:.0f}s")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait, then SIGKILL: leveldb flushes on each write, so TERM loses nothing."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> EmbeddedCouch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


LOCK_FILE = "linli-couch.lock"  # flock: held by whoever runs this folder's pouchdb-server, and by that child
RECORD_FILE = "linli-couch.json"  # where the lock holder's pouchdb-server listens (mode 0600, written atomically)
_NO_RECORD_PATIENCE = 60.0  # seconds the lock may be held with no live record (an owner starting or stopping)


@dataclass(frozen=True)
class Record:
    """The running pouchdb-server of a data folder, and the linli process that started it and will stop it.

    Start times (clock ticks since boot, /proc/PID/stat) tell a live process from a later one that
    reused its pid after a kill -9.
    """

    port: int
    pid: int  # pouchdb-server
    pid_started: int
    owner_pid: int  # `linli serve` or a command
    owner_started: int
    serving: bool  # True: `linli serve`, which others may use; False: a command's own, gone when it ends

    @property
    def url(self) -> str:
        """For people: without credentials. Always loopback: a record cannot send anyone's data elsewhere."""
        return _url(self.port)


class FolderInUse(RuntimeError):
    """Another `linli serve` runs the embedded CouchDB of this data folder."""

    def __init__(self, record: Record) -> None:
        super().__init__(f"linli serve (pid {record.owner_pid}) runs the embedded CouchDB at {record.url}")
        self.record = record


def _start_time(pid: int) -> int:
    """When the process started (clock ticks since boot); OSError if it is gone or not our user's."""
    if os.stat(f"/proc/{pid}").st_uid != os.getuid():
        raise PermissionError(f"process {pid} belongs to another user")
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the command name before ")" may hold spaces


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except (OSError, UnicodeDecodeError):
        return []


def read_record(folder: Path) -> Record | None:
    """The folder's record if it describes a live pouchdb-server of this folder that answers, else None.

    Not trusted on its own word: the file must be ours and private (not a symlink), both processes
    alive as our user with their recorded start times, the pouchdb-server running on exactly this
    folder and port, and answering there. So a stale record (owner killed) or one another user
    forged or pointed at a port they squat on is ignored, not used.
    """
    try:
        fd = os.open(folder / RECORD_FILE, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, encoding="utf-8") as f:
        info = os.fstat(f.fileno())
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            return None
        try:
            record = Record(**json.loads(f.read()))
        except (ValueError, TypeError):
            return None
    try:
        if (_start_time(record.pid) != record.pid_started or _start_time(record.owner_pid) != record.owner_started
                or _cmdline(record.pid) != _command_line(folder, record.port)):
            return None
        return record if _answers(record.port, admin_password(folder)) else None
    except (OSError, httpx2.HTTPError):
        return None


def _write_record(folder: Path, record: Record) -> None:
    """Atomically (rename), so that a reader sees the whole record or none; mode 0600 from creation."""
    temporary = folder / f".{RECORD_FILE}.{os.getpid()}"
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(asdict(record), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, folder / RECORD_FILE)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def folder_couch(folder: Path, *, serving: bool, on_wait: Callable[[Record], None] = lambda record: None,
                 health: Health | None = None) -> Iterator[str]:
    """The URL of the embedded CouchDB of `folder` for the duration of the block, with its admin's credentials.

    A command (serving=False) uses the pouchdb-server of a `linli serve` running on the folder, and
    otherwise starts its own, stopped after the block. `linli serve` (serving=True) always starts
    its own and raises FolderInUse if another serve runs. Both wait while a command's own
    pouchdb-server holds the folder (it stops when its command ends), calling on_wait once per such command.
    Given a Health, the pouchdb-server it starts is supervised for the block's duration (`supervise`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    lock = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        waited_for: Record | None = None
        patience = time.monotonic() + _NO_RECORD_PATIENCE
        while not _try_lock(lock):
            record = read_record(folder)
            if record is not None and record.serving:
                if serving:
                    raise FolderInUse(record)
                yield _url(record.port, admin_password(folder))
                return
            if record is not None:
                patience = time.monotonic() + _NO_RECORD_PATIENCE
                if waited_for != record:
                    on_wait(record)
                    waited_for = record
            elif time.monotonic() > patience:
                raise RuntimeError(f"{folder / LOCK_FILE} has been locked for {_NO_RECORD_PATIENCE:.0f} s by a "
                                   f"process that records no live pouchdb-server in {folder / RECORD_FILE}")
            time.sleep(0.2)
        # The folder is ours: whatever record is left belongs to an owner that is gone (kill -9).
        (folder / RECORD_FILE).unlink(missing_ok=True)
        with EmbeddedCouch(folder, inherit_fd=lock) as couch:
            def record_it() -> None:
                pid, owner = couch.process.pid, os.getpid()  # type: ignore[union-attr]
                _write_record(folder, Record(port=couch.port, pid=pid, pid_started=_start_time(pid),
                                             owner_pid=owner, owner_started=_start_time(owner), serving=serving))

            record_it()
            stopping = threading.Event()
            if health is not None:
                supervise(couch, health, stopping, on_restart=record_it)
            try:
                yield couch.url
            finally:  # before stopping it: nobody should start using a server that is going away
                stopping.set()
                (folder / RECORD_FILE).unlink(missing_ok=True)
    finally:
        os.close(lock)


def supervise(couch: EmbeddedCouch, health: Health, stopping: threading.Event,
              on_restart: Callable[[], None] = lambda: None) -> threading.Thread:
    """Watch the pouchdb-server until `stopping` is set; each time it exits, start it again on its port after a
    pause (RESTART_PAUSES, longer while it keeps dying), log both events in one line each and count them in
    `health`. Meanwhile pages and phones get "recovering" answers (app.py, sync/app.py), not tracebacks."""
    health.supervised = True

    def watch() -> None:
        in_a_row, up_since = 0, time.monotonic()
        while not stopping.wait(0.25):
            code = couch.process.poll() if couch.process else None
            if code is None:
                continue
            if time.monotonic() - up_since > STABLE_AFTER:
                in_a_row = 0
            pause = RESTART_PAUSES[min(in_a_row, len(RESTART_PAUSES) - 1)]
            health.database_last_exit = code
            health.database_down_since = health.database_down_since or dt.datetime.now(dt.UTC)
            log.error("embedded CouchDB (pouchdb-server pid %s) exited with %s; restarting in %.1f s (see %s)",
                      couch.process.pid, code, pause, couch.data_dir / "pouchdb-server.log")  # type: ignore[union-attr]
            if stopping.wait(pause):
                return
            in_a_row += 1
            try:
                couch.start()
            except RuntimeError as failed:
                log.error("embedded CouchDB did not come back: %s", failed)
                continue
            up_since = time.monotonic()
            on_restart()
            health.database_restarts += 1
            health.database_down_since = None
            log.warning("embedded CouchDB restarted (pid %s, restart %d)", couch.process.pid,  # type: ignore[union-attr]
                        health.database_restarts)

    thread = threading.Thread(target=watch, daemon=True, name="couch-supervisor")
    thread.start()
    return thread
