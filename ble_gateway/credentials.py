"""The gateway's credentials: its device token for the sync gateway, the BTHome bind keys of its devices, and
the installation key it pinned at enrolment (public, but it decides which write keys the gateway seals to).

Both come from the environment or from a file its `_FILE` variable names (never from the repository or a
command line, where `ps` would show them), and neither is ever logged: errors name the variable and the
entry, never the value.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

from crypto import key_statements
from crypto.secrets import read_secret

TOKEN_VARIABLE = "LINLI_GATEWAY_TOKEN"
BIND_KEYS_VARIABLE = "LINLI_GATEWAY_BIND_KEYS"
INSTALLATION_KEY_VARIABLE = "LINLI_GATEWAY_INSTALLATION_KEY"
_MAC = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")
_BIND_KEY = re.compile(r"^[0-9a-fA-F]{32}$")


class SecretError(ValueError):
    """A secret is missing or malformed; the message names where it came from, never its value."""


def device_token() -> str:
    token = read_secret(TOKEN_VARIABLE)
    if not token:
        raise SecretError(f"set {TOKEN_VARIABLE} or {TOKEN_VARIABLE}_FILE to the gateway's device token "
                          "(linli device-token issue <gateway user>)")
    token = token.strip()
    if not token.startswith("lt_") or "." not in token:
        raise SecretError(f"{TOKEN_VARIABLE}: not a Linli device token (expected lt_<id>.<secret>)")
    return token


def installation_key() -> str:
    """The installation's public key, as `linli device-token issue` printed it (checked to be a P-256 point)."""
    key = read_secret(INSTALLATION_KEY_VARIABLE)
    if not key:
        raise SecretError(f"set {INSTALLATION_KEY_VARIABLE} or {INSTALLATION_KEY_VARIABLE}_FILE to the installation "
                          "key that `linli device-token issue` printed with the token: without it the gateway "
                          "cannot tell a resident's write key from one slipped into a device document")
    try:
        key_statements.load_pinned(key)
    except key_statements.UnvouchedKey as error:
        raise SecretError(f"{INSTALLATION_KEY_VARIABLE}: {error}") from None
    return key.strip()


def _check_private(path: Path) -> None:
    # Bind keys are as good as the devices' identities: a file others can read would let them forge SOS presses.
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(f"{path}: bind-key file must be readable by its owner only (chmod 600)")


def parse_bind_keys(text: str, source: str) -> dict[str, bytes]:
    """MAC → 16-byte AES key, from JSON {"AA:BB:CC:DD:EE:FF": "<32 hex digits>", …}."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise SecretError(f"{source}: not JSON (line {error.lineno})") from None
    if not isinstance(data, dict):
        raise SecretError(f"{source}: must be a JSON object mapping MAC addresses to bind keys")
    keys: dict[str, bytes] = {}
    for mac, key in data.items():
        if not isinstance(mac, str) or not _MAC.match(mac.upper()):
            raise SecretError(f"{source}: {mac!r} is not a MAC address like AA:BB:CC:DD:EE:FF")
        if not isinstance(key, str) or not _BIND_KEY.match(key):
            raise SecretError(f"{source}: the bind key of {mac.upper()} must be 32 hex digits (16 bytes)")
        keys[mac.upper()] = bytes.fromhex(key)
    return keys


def bind_keys() -> dict[str, bytes]:
    """The bind keys from $LINLI_GATEWAY_BIND_KEYS or the file $LINLI_GATEWAY_BIND_KEYS_FILE; {} if neither."""
    path = os.environ.get(BIND_KEYS_VARIABLE + "_FILE")
    if path and not os.environ.get(BIND_KEYS_VARIABLE):
        file = Path(path)
        try:
            _check_private(file)
            text = file.read_text(encoding="utf-8")
        except OSError as error:
            raise SecretError(f"{BIND_KEYS_VARIABLE}_FILE: cannot read {path}: {error.strerror}") from None
        return parse_bind_keys(text, path)
    text = read_secret(BIND_KEYS_VARIABLE)
    return parse_bind_keys(text, BIND_KEYS_VARIABLE) if text else {}
