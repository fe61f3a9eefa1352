"""Settings, read once from the environment (and files the environment names).

Secrets never live in the repository: each secret comes from an environment
variable, or from a file named by `<NAME>_FILE`, or (for the embedded
development setup only) is generated into the data folder with mode 0600.
"""

from __future__ import annotations

import binascii
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from crypto import keys
from crypto.secrets import read_secret, write_private

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Local time for people: pages, the survey month, the audit report's night hours.
LOCAL_TZ = ZoneInfo(os.environ.get("LINLI_TIMEZONE", "Asia/Shanghai"))


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


def load_master_keys(data_dir: Path) -> tuple[bytes, ...]:
    """The root of the key hierarchy: $LINLI_MASTER_KEY(_FILE), base64url of 32 bytes, current first.

    Without either, a development key is generated once into the data folder.
    During a master-key rotation, $LINLI_MASTER_KEY_PREVIOUS(_FILE) keeps the
    old key usable for key rings not yet re-wrapped (`linli keys rotate-master`).
    """
    text, source = secret_or_generated("LINLI_MASTER_KEY", data_dir / "master_key",
                                       lambda: keys.b64url(keys.new_key()))
    current = _decode_master_key(text, source)
    previous = read_secret("LINLI_MASTER_KEY_PREVIOUS")
    return (current,) if previous is None else (current, _decode_master_key(previous, "LINLI_MASTER_KEY_PREVIOUS"))


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
    master_keys: tuple[bytes, ...] = field(repr=False)  # current first

    def db_name(self, logical: str) -> str:
        """CouchDB database name for a logical database ("main", "accounts")."""
        return f"{self.db_prefix}{logical}"


def load_settings() -> Settings:
    data_dir = Path(os.environ.get("LINLI_DATA_DIR", PROJECT_ROOT / "data")).resolve()
    return Settings(
        data_dir=data_dir,
        couchdb_url=os.environ.get("COUCHDB_URL") or None,
        couchdb_user=os.environ.get("COUCHDB_USER") or None,
        couchdb_password=read_secret("COUCHDB_PASSWORD"),
        db_prefix=os.environ.get("LINLI_DB_PREFIX", "linli_"),
        secret_key=secret_or_generated("LINLI_SECRET_KEY", data_dir / "secret_key",
                                       lambda: secrets.token_urlsafe(48))[0],
        host=os.environ.get("LINLI_HOST", "127.0.0.1"),
        port=int(os.environ.get("LINLI_PORT", "8000")),
        session_max_age=int(os.environ.get("LINLI_SESSION_MAX_AGE", str(12 * 3600))),
        cookie_secure=os.environ.get("LINLI_COOKIE_SECURE", "") == "1",
        master_keys=load_master_keys(data_dir),
    )
