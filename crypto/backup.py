"""Backup recipes: key material sealed under a passphrase, and a backup manifest's MAC under the master key.

`linli backup --key` writes the master key apart from the databases' backup, sealed so that the file alone
opens nothing: scrypt derives an AES-256-GCM key from the passphrase and a random salt (n = 2**15, r = 8, p = 1:
~0.1 s and 32 MB a guess), the header is authenticated as associated data. `linli backup` MACs its manifest
(which names every file with its SHA-256) under a key derived from the master key, so a backup rewritten whole —
files and checksums — is refused on restore as surely as one cut short; and a backup of another installation
fails the same check, since its master key is another.
"""

from __future__ import annotations

import hmac
import json
import secrets
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .envelope import KEY_BYTES, b64url, unb64url

KEY_EXPORT_FORMAT = "linli-key-export/1"
PASSPHRASE_MIN = 12  # characters
SCRYPT = {"n": 2**15, "r": 8, "p": 1}
MANIFEST_MAC_INFO = b"linli:backup-manifest:v1\x00"


class BackupKeyError(ValueError):
    """A key export that does not open (wrong passphrase, altered or not one), or a manifest whose MAC fails."""


def _scrypt_key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=KEY_BYTES, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def seal_under_passphrase(secret: dict[str, Any], passphrase: str) -> bytes:
    """The JSON secret as a key-export file's bytes (JSON: format, scrypt parameters and salt, nonce, ciphertext)."""
    if len(passphrase) < PASSPHRASE_MIN:
        raise BackupKeyError(f"the passphrase must be at least {PASSPHRASE_MIN} characters")
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    header = {"format": KEY_EXPORT_FORMAT, "kdf": {"name": "scrypt", **SCRYPT, "salt": b64url(salt)},
              "nonce": b64url(nonce)}
    aad = json.dumps(header, sort_keys=True).encode()
    sealed = AESGCM(_scrypt_key(passphrase, salt, **SCRYPT)).encrypt(nonce, json.dumps(secret).encode(), aad)
    return json.dumps({**header, "ciphertext": b64url(sealed)}, indent=1).encode()


def open_under_passphrase(data: bytes, passphrase: str) -> dict[str, Any]:
    try:
        sealed = json.loads(data)
        header = {k: sealed[k] for k in ("format", "kdf", "nonce")}
        kdf = header["kdf"]
        if header["format"] != KEY_EXPORT_FORMAT or kdf.get("name") != "scrypt":
            raise BackupKeyError(f"not a {KEY_EXPORT_FORMAT} file")
        if not (2**10 <= kdf["n"] <= 2**20 and kdf["r"] <= 16 and kdf["p"] <= 4):  # a file cannot make us spin
            raise BackupKeyError("the key file asks for unreasonable scrypt parameters")
        key = _scrypt_key(passphrase, unb64url(kdf["salt"]), kdf["n"], kdf["r"], kdf["p"])
        aad = json.dumps(header, sort_keys=True).encode()
        return json.loads(AESGCM(key).decrypt(unb64url(header["nonce"]), unb64url(sealed["ciphertext"]), aad))
    except InvalidTag:
        raise BackupKeyError("the key file does not open: wrong passphrase, or the file was altered") from None
    except (ValueError, KeyError, TypeError) as bad:
        if isinstance(bad, BackupKeyError):
            raise
        raise BackupKeyError(f"not a {KEY_EXPORT_FORMAT} file") from None


def manifest_mac(master: bytes, manifest: bytes) -> str:
    """HMAC-SHA256 of the manifest's bytes under a key derived from the master key for this purpose only."""
    mac_key = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=MANIFEST_MAC_INFO).derive(master)
    return b64url(hmac.new(mac_key, manifest, "sha256").digest())


def manifest_is_authentic(master: bytes, manifest: bytes, mac: str) -> bool:
    return hmac.compare_digest(manifest_mac(master, manifest), mac)
