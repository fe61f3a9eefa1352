"""Blind indexes: find a resident by ID card or phone number without storing it in clear.

    index = hex( HMAC-SHA256( index key, "linli:bidx:v1" 0x00 field 0x00 normalised value )[:4] )

Only the first 4 bytes (32 bits) are kept. With ~15,000 residents in a community
the chance that two different numbers share an index is about 3%, so a match
is a candidate to decrypt and confirm, and an index alone cannot confirm that a
given number is in the database with certainty (bounded leakage; see
crypto/README.md). The index key is per community, so the same number gives
unrelated indexes in two communities. Indexes and their key stay on the server
(server/security/number_index.py): beside the basic fields a phone holds, an
index would confirm an ID card number in ~500 guesses.
"""

from __future__ import annotations

import hashlib
import hmac

LABEL = b"linli:bidx:v1\x00"
INDEX_BYTES = 4


def normalise(value: str) -> str:
    """Ignore spaces, dashes and letter case, as people type numbers differently."""
    return "".join(ch for ch in value if ch not in " -\t").upper()


def blind_index(key: bytes, field: str, value: str) -> str:
    message = LABEL + field.encode("utf-8") + b"\x00" + normalise(value).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).digest()[:INDEX_BYTES].hex()
