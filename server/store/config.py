"""Settings, read once from the environment (and files the environment names).

Secrets never live in the repository: each secret comes from an environment
variable, or from a file named by `<NAME>_FILE`, or is generated into the data
folder with mode 0600 (the master key only for a new installation).
"""

from __future__ import annotations

import binascii
import datetime as dt
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from crypto import keys
from crypto.secrets import read_secret, write_private

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Local time for people: pages, the survey month, the audit report's night hours.
LOCAL_TZ = ZoneInfo(os.environ.get("LINLI_TIMEZONE", "Asia/Shanghai"))


def local_time(iso: str) -> str:
    """An ISO timestamp as people read it: local date and time, to the minute (LINLI_TIMEZONE); the pages' filter
    and messages that name a time (pwa/render.js localTime is the offline pages' twin)."""
    return dt.datetime.fromisoformat(iso).astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M") if iso else ""


def secret_or_generated(name: str, path: Path, make: Callable[[], str]) -> tuple[str, str]:
    """($NAME or the file $NAME_FILE names, else the data-folder file at path, made once) and where it came from.

    The generated file keeps restarts consistent (sessions stay valid, encrypted data stays readable).
    """
    value = read_secret(name)
    if value:
        return value, name
    if not path.exists():
        write_private(path, make())
    return path.read_text(encoding="utf-8").strip(), str(path)


def _decode_master_key(text: str, source: str) -> bytes:
    try:
        key = keys.unb64url(text)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != keys.KEY_BYTES:
        raise keys.KeyMaterialError(f"master key from {source} must be 32 bytes in base64url")
    return key


def _secret_source(name: str) -> str:
    """Where read_secret(name) took its value from, as an operator would look for it."""
    return name if os.environ.get(name) else f"{name}_FILE={os.environ.get(name + '_FILE')}"


def master_key_file(data_dir: Path) -> Path:
    """Where a new installation without LINLI_MASTER_KEY(_FILE) keeps its generated master key."""
    return data_dir / "master_key"


def load_master_keys(data_dir: Path) -> tuple[tuple[bytes, ...], str]:
    """The root of the key hierarchy, current first, and where it came from.

    $LINLI_MASTER_KEY(_FILE) (base64url of 32 bytes), else the data folder's master_key file. Nothing is
    generated here: only a new installation gets a key (server/security/master_key.py decides, having seen
    the database). During a master-key rotation, $LINLI_MASTER_KEY_PREVIOUS(_FILE) keeps the old key usable
    for key rings not yet re-wrapped (`linli keys rotate-master`).
    """
    text = read_secret("LINLI_MASTER_KEY")
    if text:
        source = _secret_source("LINLI_MASTER_KEY")
    elif master_key_file(data_dir).exists():
        source = str(master_key_file(data_dir))
        text = master_key_file(data_dir).read_text(encoding="utf-8").strip()
    else:
        return (), f"none (LINLI_MASTER_KEY and LINLI_MASTER_KEY_FILE are unset, no {master_key_file(data_dir)})"
    current = _decode_master_key(text, source)
    previous = read_secret("LINLI_MASTER_KEY_PREVIOUS")
    if previous is None:
        return (current,), source
    return (current, _decode_master_key(previous, _secret_source("LINLI_MASTER_KEY_PREVIOUS"))), source


def generate_master_key(settings: Settings) -> Settings:
    """A new installation's master key, written into the data folder (mode 0600) unless a process starting at the
    same moment wrote one first: then theirs is used, never overwritten."""
    path = master_key_file(settings.data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(keys.b64url(keys.new_key()))
    master_keys, source = load_master_keys(settings.data_dir)
    return replace(settings, master_keys=master_keys, master_key_source=f"{source} (generated)")


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    couchdb_url: str | None  # None: start the embedded pouchdb-server
    couchdb_user: str | None
    couchdb_password: str | None = field(repr=False)
    db_prefix: str
    secret_key: str = field(repr=False)
    host: str
    port: int
    session_max_age: int  # seconds
    cookie_secure: bool
    master_keys: tuple[bytes, ...] = field(repr=False)  # current first; () until a new installation makes one
    master_key_source: str = "LINLI_MASTER_KEY"  # where master_keys came from, for messages
    metrics_token: str | None = field(default=None, repr=False)  # a bearer of it may read /metrics
    sweep_seconds: float = 60  # how often the minute sweep runs (LINLI_SWEEP_SECONDS; the scale-out test's is 1)

    @property
    def couchdb_location(self) -> str:
        """Where the databases are, for people: the URL without credentials, or the embedded server's folder."""
        if not self.couchdb_url:
            return f"embedded pouchdb-server in {self.data_dir / 'couch'}"
        parts = urlsplit(self.couchdb_url)
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))

    def db_name(self, logical: str) -> str:
        """CouchDB database name for a logical database ("main", "accounts")."""
        return f"{self.db_prefix}{logical}"


def _secret_key_file(data_dir: Path) -> Path:
    return data_dir / "secret_key"


def _existing_secret_key(data_dir: Path) -> str:
    """$LINLI_SECRET_KEY(_FILE), else the data folder's generated one, else "" (`with_secret_key` makes it)."""
    path = _secret_key_file(data_dir)
    return read_secret("LINLI_SECRET_KEY") or (path.read_text(encoding="utf-8").strip() if path.exists() else "")


def with_secret_key(settings: Settings) -> Settings:
    """The settings with a session key, generated into the data folder if there is none yet: only once the
    master key has been found to belong to the database, so a refused command leaves no file behind."""
    if settings.secret_key:
        return settings
    key, _ = secret_or_generated("LINLI_SECRET_KEY", _secret_key_file(settings.data_dir),
                                 lambda: secrets.token_urlsafe(48))
    return replace(settings, secret_key=key)


def load_settings() -> Settings:
    # The project's data folder wherever the command is run from, so a command finds the server's key.
    data_dir = Path(os.environ.get("LINLI_DATA_DIR", PROJECT_ROOT / "data")).resolve()
    master_keys, master_key_source = load_master_keys(data_dir)
    return Settings(
        data_dir=data_dir,
        couchdb_url=os.environ.get("COUCHDB_URL") or None,
        couchdb_user=os.environ.get("COUCHDB_USER") or None,
        couchdb_password=read_secret("COUCHDB_PASSWORD"),
        db_prefix=os.environ.get("LINLI_DB_PREFIX", "linli_"),
        secret_key=_existing_secret_key(data_dir),
        host=os.environ.get("LINLI_HOST", "127.0.0.1"),
        port=int(os.environ.get("LINLI_PORT", "8000")),
        session_max_age=int(os.environ.get("LINLI_SESSION_MAX_AGE", str(12 * 3600))),
        cookie_secure=os.environ.get("LINLI_COOKIE_SECURE", "") == "1",
        master_keys=master_keys,
        master_key_source=master_key_source,
        metrics_token=read_secret("LINLI_METRICS_TOKEN"),
        sweep_seconds=float(os.environ.get("LINLI_SWEEP_SECONDS", "60")),
    )
