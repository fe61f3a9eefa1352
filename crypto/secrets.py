"""Secrets from the environment or a file, never from the repository: `$NAME`, else the file `$NAME_FILE` names.

Shared by the server (session key, master key, CouchDB password) and the BLE gateway (device token, bind keys),
which must not load the server's storage layer to read one.
"""

from __future__ import annotations

import os
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
