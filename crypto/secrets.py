"""Secrets from the environment or a file, never from the repository: `$NAME`, else the file `$NAME_FILE` names.

Shared by the server (session key, master key, CouchDB password) and the BLE gateway (device token, bind keys),
which must not load the server's storage layer to read one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def read_secret(name: str) -> str | None:
    """Value of $NAME, else the contents of the file named by $NAME_FILE, else None."""
    value = os.environ.get(name)
    if value:
        return value
    path = os.environ.get(name + "_FILE")
    if path:
        return Path(path).read_text(encoding="utf-8").strip()
    return None


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (secrets, demo passwords)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def private_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret kept in `path`, made by `make` the first time (mode 0600 from creation, put in place whole by a
    hard link, so two processes starting together agree on one). Refused if the file is another user's, a symlink,
    or readable by others: a secret anyone else could have read or planted is no secret."""
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        write_private(temporary, make())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, encoding="utf-8") as f:
        info = os.fstat(f.fileno())
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise PermissionError(f"{path} must belong to this user and be readable by it alone (chmod 600)")
        return f.read().strip()
