"""The encrypted-field envelope, version 1: one wire format for Python and WebCrypto.

    envelope   = "enc:" base64url-without-padding( header || nonce || ciphertext || tag )
    header     = version (1 byte, 0x01) || key_version (4 bytes, big-endian)
    nonce      = 12 random bytes
    ciphertext = AES-256-GCM( data key, nonce, plaintext, aad ), 16-byte tag appended
    plaintext  = the field's value as UTF-8 JSON
    aad        = "linli:field:v1" || 0x00 || header || lp(doc_id) || lp(field) || lp(tier)
    lp(s)      = length of UTF-8 s (2 bytes, big-endian) || UTF-8 s

The additional authenticated data binds a ciphertext to its document, field,
tier and key version: moved to another field or another resident, it fails to
open. `pwa/crypto/envelope.js` implements the same; `crypto/vectors/` holds the
test vectors both must pass.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import struct
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "enc:"
VERSION = 1
AAD_LABEL = b"linli:field:v1\x00"
_HEADER = struct.Struct(">BI")
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
MIN_BYTES = _HEADER.size + NONCE_BYTES + TAG_BYTES


class EnvelopeError(ValueError):
    """An envelope that cannot be opened. The message never contains key material or plaintext.

    `reason` is one of REASONS, the same words the JavaScript side uses.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


REASONS = ("format", "truncated", "version", "authentication")


class FieldContext(NamedTuple):
    """Where a ciphertext belongs: authenticated, never encrypted."""

    doc_id: str
    field: str
    tier: str

    @property
    def aad_tail(self) -> bytes:
        # Field and tier come from the declaration (few): their part is cached; the document id is per record.
        return _length_prefixed(self.doc_id) + _field_tier_part(self.field, self.tier)


def _length_prefixed(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise EnvelopeError("format", "context string longer than 65535 bytes")
    return len(raw).to_bytes(2, "big") + raw


@functools.lru_cache(maxsize=1024)
def _field_tier_part(field: str, tier: str) -> bytes:
    return _length_prefixed(field) + _length_prefixed(tier)


def aad(context: FieldContext, header: bytes) -> bytes:
    return AAD_LABEL + header + context.aad_tail


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


def unb64url(text: str) -> bytes:
    """Strict: any character outside the base64url alphabet (including "+", "/" and padding) is an error."""
    if "+" in text or "/" in text or "=" in text:
        raise binascii.Error("not unpadded base64url")
    raw = text.encode("ascii")  # a non-ASCII character raises UnicodeEncodeError, a ValueError
    return binascii.a2b_base64((raw + b"=" * (-len(raw) % 4)).translate(_TO_STANDARD), strict_mode=True)


def encode_plaintext(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


class DataKey:
    """One version of one data key, ready to seal and open fields.

    Holds the AES key schedule, so sealing a whole record costs one setup, not one per field.
    """

    def __init__(self, key: bytes, version: int) -> None:
        if len(key) != KEY_BYTES:
            raise EnvelopeError("format", "data key must be 32 bytes")
        if not 0 <= version <= 0xFFFFFFFF:
            raise EnvelopeError("format", "key version out of range")
        self._aead = AESGCM(key)
        self.version = version

    def __repr__(self) -> str:
        return f"DataKey(version={self.version})"  # never the key itself

    def seal_bytes(self, context: FieldContext, plaintext: bytes, nonce: bytes | None = None) -> str:
        """Encrypt plaintext bytes. `nonce` is for test vectors only; leave it None."""
        nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
        header = _HEADER.pack(VERSION, self.version)
        return PREFIX + b64url(header + nonce + self._aead.encrypt(nonce, plaintext, aad(context, header)))

    def seal(self, context: FieldContext, value: Any) -> str:
        """Encrypt one field value (anything JSON can hold) into an envelope string."""
        return self.seal_bytes(context, encode_plaintext(value))

    def open_bytes(self, context: FieldContext, envelope: str) -> bytes:
        parsed = parse(envelope)
        try:
            return self._aead.decrypt(parsed.nonce, parsed.sealed, aad(context, parsed.header))
        except InvalidTag:
            raise EnvelopeError("authentication",
                                f"encrypted field {context.field!r} of {context.doc_id!r} does not open: wrong key, "
                                "or the ciphertext was altered or moved from another field or document") from None

    def open(self, context: FieldContext, envelope: str) -> Any:
        """Decrypt an envelope sealed for the same context; raise EnvelopeError otherwise."""
        return json.loads(self.open_bytes(context, envelope).decode("utf-8"))


class Parsed(NamedTuple):
    version: int
    key_version: int
    header: bytes
    nonce: bytes
    sealed: bytes


def parse(envelope: Any) -> Parsed:
    """Split an envelope into its parts, checking its shape (not its authenticity)."""
    if not isinstance(envelope, str) or not envelope.startswith(PREFIX):
        raise EnvelopeError("format", f"not an encrypted field: must be a string starting with {PREFIX!r}")
    try:
        raw = unb64url(envelope[len(PREFIX):])
    except (binascii.Error, ValueError):
        raise EnvelopeError("format", "encrypted field is not valid base64url") from None
    if len(raw) < MIN_BYTES:
        raise EnvelopeError("truncated",
                            f"encrypted field is truncated ({len(raw)} bytes, at least {MIN_BYTES} needed)")
    version, key_version = _HEADER.unpack_from(raw)
    if version != VERSION:
        raise EnvelopeError("version", f"unsupported envelope version {version} (this code reads version {VERSION})")
    header_end = _HEADER.size
    return Parsed(version, key_version, raw[:header_end], raw[header_end:header_end + NONCE_BYTES],
                  raw[header_end + NONCE_BYTES:])


def key_version_of(envelope: str) -> int:
    """Which version of the data key an envelope needs (readable without any key)."""
    return parse(envelope).key_version
