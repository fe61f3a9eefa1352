"""Vouchers a partner checks without the server: the installation signs what a voucher is for, any phone that
pinned the installation key (at its first sync, `installation_key` in /pwa/session.json) verifies it offline.

    code      = "LV1." base64url(payload) "." base64url(r ‖ s)
    payload   = canonical JSON {"id", "organisation", "reward", "points", "issued_at"} (sorted keys, no spaces)
    signature = ECDSA-P256-SHA256(installation key, "linli:voucher:v1" 0x00 ‖ payload)

The installation key (crypto/key_statements.py) rather than a key of its own: phones pin it already, a master-key
rotation re-wraps it without changing it (vouchers stay valid), and the label keeps a voucher from ever reading as a
write-key statement. Single use is not the signature's business: it is the redemption's id (one per voucher).
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from .envelope import b64url, unb64url

PREFIX = "LV1."
LABEL = b"linli:voucher:v1\x00"
PAYLOAD_FIELDS = ("id", "issued_at", "organisation", "points", "reward")
_COORDINATE = 32
MAX_CODE_CHARS = 600  # a real code is about 300 characters; anything longer is not one


class ForgedVoucher(ValueError):
    """Not a voucher this installation signed (malformed, altered, or signed by another key)."""


def _payload_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps({k: payload[k] for k in PAYLOAD_FIELDS}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def sign(key: ec.EllipticCurvePrivateKey, payload: dict[str, Any]) -> str:
    """The voucher's code: its payload and the installation's signature over it."""
    return sign_body(key, _payload_bytes(payload))


def sign_body(key: ec.EllipticCurvePrivateKey, body: bytes) -> str:
    """A code over any body: sign()'s, and the shared vectors' malformed ones (crypto/vectors/make_vectors.py)."""
    r, s = decode_dss_signature(key.sign(LABEL + body, ec.ECDSA(hashes.SHA256(), deterministic_signing=True)))
    return f"{PREFIX}{b64url(body)}.{b64url(r.to_bytes(_COORDINATE, 'big') + s.to_bytes(_COORDINATE, 'big'))}"


def open_code(public_key: ec.EllipticCurvePublicKey, code: str) -> dict[str, Any]:
    """The payload of a code the installation signed; ForgedVoucher otherwise."""
    try:
        if not code.startswith(PREFIX) or len(code) > MAX_CODE_CHARS:
            raise ValueError
        body_b64, signature_b64 = code[len(PREFIX):].split(".")
        body, signature = unb64url(body_b64), unb64url(signature_b64)
        if len(signature) != 2 * _COORDINATE:
            raise ValueError
        der = encode_dss_signature(int.from_bytes(signature[:_COORDINATE], "big"),
                                   int.from_bytes(signature[_COORDINATE:], "big"))
        public_key.verify(der, LABEL + body, ec.ECDSA(hashes.SHA256()))
        payload = json.loads(body)
        if not isinstance(payload, dict) or sorted(payload) != sorted(PAYLOAD_FIELDS):
            raise ValueError
    except (InvalidSignature, ValueError, UnicodeDecodeError):
        raise ForgedVoucher("not a voucher of this installation") from None
    return payload
