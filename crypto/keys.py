"""Key recipes: random keys, AES key wrap, and wrapping a key for one phone.

The hierarchy these serve (crypto/README.md): a master key from a file or the
environment wraps per-community tier keys, which wrap per-resident data keys,
which encrypt fields (crypto/envelope.py). A grant to a phone wraps one
resident's data key for that phone's ECDH P-256 public key, so the server
never needs the phone's private key and the phone never sees a tier key.

Every operation here is one WebCrypto can do too: AES-KW (RFC 3394), ECDH
P-256, HKDF-SHA256.
"""

from __future__ import annotations

import binascii
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from .envelope import KEY_BYTES, b64url, unb64url

GRANT_INFO = b"linli:grant:v1\x00"
# The master key's check value (server/security/master_key.py): a MAC of a fixed label under a key derived for
# this purpose only, so the stored value reveals nothing that opens a key ring or signs a checkpoint.
MASTER_CHECK_INFO = b"linli:master-key-check:v1\x00"
MASTER_CHECK_LABEL = b"linli: this is the installation's master key"
MASTER_CHECK_ALGORITHM = "hmac-sha256(hkdf-sha256(master, 'linli:master-key-check:v1'), label) v1"


class KeyMaterialError(ValueError):
    """A key that cannot be loaded or unwrapped. Messages never include key material."""


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def wrap(kek: bytes, key: bytes) -> str:
    """AES-KW (RFC 3394) of key under kek, base64url."""
    return b64url(aes_key_wrap(kek, key))


def unwrap(kek: bytes, wrapped: str) -> bytes:
    try:
        return aes_key_unwrap(kek, unb64url(wrapped))
    except (InvalidUnwrap, ValueError, binascii.Error):
        raise KeyMaterialError("wrapped key does not unwrap: wrong wrapping key or altered") from None


def master_key_check(master: bytes) -> str:
    """The check value recorded in the database for a master key (base64url of 32 bytes; never the key)."""
    mac_key = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=MASTER_CHECK_INFO).derive(master)
    return b64url(hmac.new(mac_key, MASTER_CHECK_LABEL, "sha256").digest())


def is_master_key_of(master: bytes, check: str | None) -> bool:
    """Whether master is the key a stored check value was made from (constant-time comparison)."""
    return check is not None and hmac.compare_digest(master_key_check(master), check)


def _grant_kek(shared_secret: bytes, grant_id: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None,
                info=GRANT_INFO + grant_id.encode("utf-8")).derive(shared_secret)


def wrap_for_phone(phone_public_raw: bytes, grant_id: str, key: bytes,
                   ephemeral: ec.EllipticCurvePrivateKey | None = None,
                   older: Mapping[int, bytes] | None = None) -> dict[str, Any]:
    """Wrap key for one phone's P-256 public key (uncompressed point), bound to grant_id.

    Returns the ephemeral public key and the wrapped key, both base64url, and with `older` (version → key:
    the versions a rotation replaced) `older_keys`, each wrapped under the same key-encryption key.
    `ephemeral` is for test vectors only.
    """
    phone = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), phone_public_raw)
    ephemeral = ephemeral or ec.generate_private_key(ec.SECP256R1())
    kek = _grant_kek(ephemeral.exchange(ec.ECDH(), phone), grant_id)
    public = ephemeral.public_key().public_bytes(serialization.Encoding.X962,
                                                 serialization.PublicFormat.UncompressedPoint)
    wrapped: dict[str, Any] = {"ephemeral_public": b64url(public), "wrapped_key": wrap(kek, key)}
    if older:
        wrapped["older_keys"] = {str(version): wrap(kek, k) for version, k in sorted(older.items())}
    return wrapped


def unwrap_on_phone(phone_private: ec.EllipticCurvePrivateKey, grant_id: str, grant: dict[str, Any],
                    version: int | None = None) -> bytes:
    """What the phone does (in WebCrypto); here for tests and for the vectors. `version`: one of the grant's
    older keys instead of its current one."""
    ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(grant["ephemeral_public"]))
    kek = _grant_kek(phone_private.exchange(ec.ECDH(), ephemeral), grant_id)
    if version is None or version == grant.get("key_version"):
        return unwrap(kek, grant["wrapped_key"])
    older = grant.get("older_keys", {})
    if str(version) not in older:
        raise KeyMaterialError(f"the grant holds no key version {version}")
    return unwrap(kek, older[str(version)])
