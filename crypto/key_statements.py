"""The installation vouches for residents' write keys, so that nothing seals to a key a client slipped in.

A resident's public write key travels in documents others can touch (a `device` copy for the BLE gateway,
`data_key:<resident>` in a phone's replica). Whoever seals to it (the gateway, a phone) first checks the
installation's statement binding it to the resident:

    statement = ECDSA-P256-SHA256(installation key,
                                  "linli:write-key:v1" 0x00 resident 0x00 version 0x00 base64url(public point))
    signature = base64url(r ‖ s), 64 bytes: the encoding WebCrypto's ECDSA produces and checks

ECDSA P-256 rather than Ed25519: every phone browser's WebCrypto verifies it (Ed25519 arrived in browsers
only recently), and it is the curve the rest of the phone's cryptography already uses. The installation
key's public half is pinned by the gateway at enrolment (`LINLI_GATEWAY_SERVER_KEY`) and by the phone at its
first sync; the private half is stored wrapped under the master key (server/security/keystore.py).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from .envelope import b64url, unb64url

STATEMENT_LABEL = b"linli:write-key:v1\x00"
_COORDINATE_BYTES = 32


class UnvouchedKey(ValueError):
    """A write key without a valid statement from the pinned installation key; the message says which."""


def new_installation_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_raw(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The uncompressed point (65 bytes), as pinned and as WebCrypto imports it ("raw")."""
    return key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def load_pinned(public_b64: str) -> ec.EllipticCurvePublicKey:
    """The pinned installation key from its base64url point; UnvouchedKey if it is not one."""
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(public_b64.strip()))
    except ValueError:
        raise UnvouchedKey("the installation key is not a base64url P-256 public key") from None


def statement(resident: str, version: int, write_public_b64: str) -> bytes:
    return STATEMENT_LABEL + f"{resident}\x00{version}\x00{write_public_b64}".encode()


def vouch(key: ec.EllipticCurvePrivateKey, resident: str, version: int, write_public_b64: str) -> str:
    """The installation's signature over (resident, write-key version, public write key)."""
    # Deterministic (RFC 6979): the same key vouched for again gives the same statement, so copies do not churn.
    signed = key.sign(statement(resident, version, write_public_b64),
                      ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    r, s = decode_dss_signature(signed)
    return b64url(r.to_bytes(_COORDINATE_BYTES, "big") + s.to_bytes(_COORDINATE_BYTES, "big"))


def check(pinned: ec.EllipticCurvePublicKey, resident: str, version: int, write_public_b64: str,
          signature: str | None) -> None:
    """Return if the pinned installation key vouches for this write key of this resident; else UnvouchedKey."""
    if not signature:
        raise UnvouchedKey(f"the write key of {resident} carries no statement from the installation")
    try:
        raw = unb64url(signature)
        if len(raw) != 2 * _COORDINATE_BYTES:
            raise ValueError
        der = encode_dss_signature(int.from_bytes(raw[:_COORDINATE_BYTES], "big"),
                                   int.from_bytes(raw[_COORDINATE_BYTES:], "big"))
        pinned.verify(der, statement(resident, version, write_public_b64), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise UnvouchedKey(f"the write key of {resident} (version {version}) is not the one the installation "
                           "vouches for") from None
