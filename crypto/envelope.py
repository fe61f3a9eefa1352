"""The encrypted-field envelope: one wire format for Python and WebCrypto.

    envelope   = "enc:" base64( header || nonce || ciphertext || tag )
    header     = version (1 byte) || key_version (4 bytes, big-endian)
    nonce      = 12 random bytes
    ciphertext = AES-256-GCM( data key, nonce, plaintext, aad ), 16-byte tag appended
    plaintext  = the field's value as UTF-8 JSON
    aad        = "linli:field:v1" || 0x00 || header || lp(doc_id) || lp(field) || lp(tier)
    lp(s)      = length of UTF-8 s (2 bytes, big-endian) || UTF-8 s

Version 3 (what a data key seals now) writes standard base64 with padding; version 1 (sealed until
2026-12-02, still opened; a field becomes version 3 when written again) wrote base64url without padding. Both are
strict: one spelling of each envelope. The version byte shows in the text: a version-3 envelope's base64 starts
"A" then one of "w"-"z", "0"-"9", "+", "/" (0x03 is 000000 11xxxx), which a version 1 or 2 never does (01xxxx,
10xxxx), so a reader knows the alphabet before decoding. Version 3 exists for speed: CPython and browsers decode
standard base64 natively, base64url only after a translation (the envelope's cost in `bench/field_crypto.py`).

The additional authenticated data binds a ciphertext to its document, field,
tier, envelope version and key version: moved to another field or another resident, or relabelled as
another version, it fails to open. `pwa/crypto/envelope.js` implements the same; `crypto/vectors/` holds the
test vectors both must pass.
"""

from __future__ import annotations

import binascii
import functools
import json
import json.scanner
import os
import struct
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "enc:"
VERSION = 3  # what a data key seals: standard base64
URLSAFE_VERSION = 1  # a data key's envelope before version 3, in base64url: opened, never written
DATA_KEY_VERSIONS = frozenset({VERSION, URLSAFE_VERSION})
SEALED_VERSION = 2  # write-without-read: sealed to a resident's public key (see seal_for), in base64url
AAD_LABEL = b"linli:field:v1\x00"
SEALED_INFO = b"linli:sealed:v2\x00"
_HEADER = struct.Struct(">BI")
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
EPHEMERAL_BYTES = 65  # an uncompressed P-256 point
HEADER_BYTES = _HEADER.size
NONCE_END = HEADER_BYTES + NONCE_BYTES  # in a data key's envelope
DATA_KEY_BYTES = HEADER_BYTES + NONCE_BYTES + TAG_BYTES  # the least a data key's envelope holds
MIN_BYTES = {URLSAFE_VERSION: DATA_KEY_BYTES, SEALED_VERSION: HEADER_BYTES + EPHEMERAL_BYTES + NONCE_BYTES + TAG_BYTES,
             VERSION: DATA_KEY_BYTES}
# What a version-3 envelope's base64 starts with: "A" and a character holding 0x03's last two bits, 11 (docstring).
_STANDARD_STARTS = frozenset("A" + c for c in "wxyz0123456789+/")
# How a version-3 envelope starts when its key version is below 2**28 (the key version's first byte, whose high half
# the second character holds, below 16): in practice, every one.
USUAL_START = PREFIX + "Aw"


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
        """The AAD after label and header: lp(doc_id) ‖ lp(field) ‖ lp(tier)."""
        return length_prefixed(self.doc_id) + field_tier_part(self.field, self.tier)


@functools.lru_cache(maxsize=4096)
def length_prefixed(text: str) -> bytes:
    """lp(text): the document's part of the AAD tail (a record's fields share it: `crypto/fields.py` builds it
    once a document)."""
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise EnvelopeError("format", "context string longer than 65535 bytes")
    return len(raw).to_bytes(2, "big") + raw


@functools.lru_cache(maxsize=1024)
def field_tier_part(field: str, tier: str) -> bytes:
    """lp(field) ‖ lp(tier): the rest of the AAD tail (fields and tiers come from the declaration: few)."""
    return length_prefixed(field) + length_prefixed(tier)


def aad(context: FieldContext, header: bytes) -> bytes:
    return AAD_LABEL + header + context.aad_tail


# base64url → standard base64; "+", "/" and "=" become "!", which strict decoding refuses, so one pass checks all.
_TO_STANDARD = bytes.maketrans(b"-_+/=", b"+/!!!")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64url(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    """Strict: any character outside the base64url alphabet (including "+", "/" and padding) is an error."""
    raw = text.encode("ascii")  # a non-ASCII character raises UnicodeEncodeError, a ValueError
    return binascii.a2b_base64(raw.translate(_TO_STANDARD) + b"=" * (-len(raw) % 4), strict_mode=True)


# One encoder, built once: json.dumps with options would build a new encoder on every call.
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode
# The decoder's scanner, called directly: `json.loads` first guesses the encoding of bytes (plaintexts are UTF-8 by
# definition) and matches whitespace around the value with regular expressions, five times the scan of a short value.
_scan_json = json.scanner.make_scanner(json.JSONDecoder())


def encode_plaintext(value: Any) -> bytes:
    return _encode_json(value).encode("utf-8")


def decode_plaintext(plaintext: bytes) -> Any:
    """The one JSON value an opened plaintext holds. What the scan does not take whole (whitespace around the value,
    anything after it, no value at all) is parsed by `json.loads`, which gives the same value or refuses it
    (ValueError) exactly as it would alone."""
    text = plaintext.decode("utf-8")
    try:
        value, end = _scan_json(text, 0)
    except StopIteration:  # no JSON value starts here: json.loads says so
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


@functools.lru_cache(maxsize=256)
def _data_key_heads(version: int) -> tuple[bytes, bytes]:
    """A data key's envelope header (version 3) for this key version, and the AAD's start (label ‖ header)."""
    if not 0 <= version <= 0xFFFFFFFF:
        raise EnvelopeError("format", "key version out of range")
    header = _HEADER.pack(VERSION, version)
    return header, AAD_LABEL + header


class DataKey:
    """One version of one data key, ready to seal and open fields.

    Holds the AES key schedule (`aead`), so sealing a whole record costs one setup, not one per field; with the
    header it writes and the start of its AAD, for `crypto/fields.py`, which seals and opens a record's fields in
    line.
    """

    __slots__ = ("aead", "version", "header", "aad_head")  # one is made per resident a page or a sync opens

    def __init__(self, key: bytes, version: int) -> None:
        if len(key) != KEY_BYTES:
            raise EnvelopeError("format", "data key must be 32 bytes")
        self.aead = AESGCM(key)
        self.version = version
        self.header, self.aad_head = _data_key_heads(version)

    def __repr__(self) -> str:
        return f"DataKey(version={self.version})"  # never the key itself

    def seal_bytes(self, context: FieldContext, plaintext: bytes, nonce: bytes | None = None) -> str:
        """Encrypt plaintext bytes. `nonce` is for test vectors only; leave it None."""
        return self.seal_with_tail(context.aad_tail, plaintext, nonce)

    def seal_with_tail(self, aad_tail: bytes, plaintext: bytes, nonce: bytes | None = None) -> str:
        """seal_bytes for the context whose `FieldContext.aad_tail` is given (a record's fields share the
        document's part of it, so `crypto/fields.py` builds no context per field). `nonce`: None draws a fresh one;
        `crypto/fields.py` draws a record's nonces in one call and writes the same envelope in line, without this
        call per field."""
        nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
        sealed = self.header + nonce + self.aead.encrypt(nonce, plaintext, self.aad_head + aad_tail)
        return PREFIX + binascii.b2a_base64(sealed, newline=False).decode("ascii")

    def seal(self, context: FieldContext, value: Any) -> str:
        """Encrypt one field value (anything JSON can hold) into an envelope string."""
        return self.seal_bytes(context, encode_plaintext(value))

    def open_bytes(self, context: FieldContext, envelope: str) -> bytes:
        return self.open_decoded(context, envelope, decode(envelope))

    def open_decoded(self, context: FieldContext, envelope: str, raw: bytes) -> bytes:
        """open_bytes for an envelope already decoded with `decode` (so a caller that looked at its header
        does not decode it twice)."""
        opened = self.open_with_tail(context.aad_tail, raw)
        if opened is not None:
            return opened
        if len(raw) >= DATA_KEY_BYTES and raw[0] in DATA_KEY_VERSIONS:
            raise _not_opening(context)
        parse(envelope)  # raises the precise error: truncated, unknown version
        raise EnvelopeError("version", f"encrypted field {context.field!r} of {context.doc_id!r} is sealed for "
                            "a resident's write key, not a data key")

    def open_with_tail(self, aad_tail: bytes, raw: bytes) -> bytes | None:
        """The plaintext of decoded envelope bytes for the context whose `FieldContext.aad_tail` is given, or None
        when they do not open under this key (`open_decoded` says why): what opens a record's fields, building
        no context and no error per field. Opens both versions a data key sealed (the header, in the AAD, says
        which)."""
        if len(raw) < DATA_KEY_BYTES or raw[0] not in DATA_KEY_VERSIONS:
            return None
        try:
            return self.aead.decrypt(raw[HEADER_BYTES:NONCE_END], raw[NONCE_END:],
                                     AAD_LABEL + raw[:HEADER_BYTES] + aad_tail)
        except InvalidTag:
            return None

    def open(self, context: FieldContext, envelope: str) -> Any:
        """Decrypt an envelope sealed for the same context; raise EnvelopeError otherwise."""
        return decode_plaintext(self.open_bytes(context, envelope))


def _not_opening(context: FieldContext) -> EnvelopeError:
    return EnvelopeError("authentication",
                         f"encrypted field {context.field!r} of {context.doc_id!r} does not open: wrong key, "
                         "or the ciphertext was altered or moved from another field or document")


def _decrypt(aead: AESGCM, context: FieldContext, header: bytes, nonce: bytes, sealed: bytes) -> bytes:
    try:
        return aead.decrypt(nonce, sealed, AAD_LABEL + header + context.aad_tail)
    except InvalidTag:
        raise _not_opening(context) from None


# ---------------------------------------------------------------- version 2: write without read
#
#   envelope = "enc:" base64url( header || ephemeral || nonce || ciphertext || tag ), header = 0x02 || key_version
#   key      = HKDF-SHA256( ECDH(ephemeral private, resident's write public key), salt = ephemeral, info = SEALED_INFO )
#   aad      = as version 1 (its header carries the version byte, so the two cannot be confused)
#
# A grid worker's phone seals a core value it records (a blood-pressure reading) with the resident's public
# write key, which everyone in the grid may hold; only the holder of the private half (kept sealed under the
# resident's core data key) opens it. Recording a value therefore never needs the right to read it.

def _point(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def _sealed_aead(shared_secret: bytes, ephemeral: bytes) -> AESGCM:
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=ephemeral,
                       info=SEALED_INFO).derive(shared_secret))


def write_public_key(public_raw: bytes) -> ec.EllipticCurvePublicKey:
    """A write key's public half from its raw point (checked to be on P-256), for `seal_for_key`."""
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_raw)
    except ValueError:
        raise EnvelopeError("format", "write key is not a P-256 public key") from None


def seal_for(public_raw: bytes, key_version: int, context: FieldContext, value: Any, *,
             ephemeral: ec.EllipticCurvePrivateKey | None = None, nonce: bytes | None = None) -> str:
    """Seal a value for the holder of a write key's private half. `ephemeral` and `nonce`: test vectors only."""
    return seal_for_key(write_public_key(public_raw), key_version, context, value, ephemeral=ephemeral, nonce=nonce)


def seal_for_key(recipient: ec.EllipticCurvePublicKey, key_version: int, context: FieldContext, value: Any, *,
                 ephemeral: ec.EllipticCurvePrivateKey | None = None, nonce: bytes | None = None) -> str:
    """`seal_for` with the key already loaded: a sender that seals many values for the same residents (the BLE
    gateway) loads and checks each key once instead of on every value."""
    ephemeral = ephemeral or ec.generate_private_key(ec.SECP256R1())
    point = _point(ephemeral.public_key())
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    header = _HEADER.pack(SEALED_VERSION, key_version)
    sealed = _sealed_aead(ephemeral.exchange(ec.ECDH(), recipient), point).encrypt(
        nonce, encode_plaintext(value), aad(context, header))
    return PREFIX + b64url(header + point + nonce + sealed)


class WriteKey:
    """The private half of a resident's write key: opens what phones sealed with `seal_for`."""

    def __init__(self, private: ec.EllipticCurvePrivateKey, version: int) -> None:
        self._private = private
        self.version = version

    def __repr__(self) -> str:
        return f"WriteKey(version={self.version})"

    @classmethod
    def generate(cls, version: int) -> WriteKey:
        return cls(ec.generate_private_key(ec.SECP256R1()), version)

    @property
    def public_raw(self) -> bytes:
        return _point(self._private.public_key())

    def private_der(self) -> bytes:
        return self._private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())

    @classmethod
    def from_der(cls, der: bytes, version: int) -> WriteKey:
        private = serialization.load_der_private_key(der, password=None)
        if not isinstance(private, ec.EllipticCurvePrivateKey):
            raise EnvelopeError("format", "write key is not an EC private key")
        return cls(private, version)

    def open(self, context: FieldContext, envelope: str) -> Any:
        return decode_plaintext(self.open_bytes(context, envelope))

    def open_bytes(self, context: FieldContext, envelope: str) -> bytes:
        parsed = parse(envelope)
        if parsed.version != SEALED_VERSION:
            raise EnvelopeError("version", f"encrypted field {context.field!r} of {context.doc_id!r} is not sealed "
                                "for a write key")
        try:
            ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), parsed.ephemeral)
        except ValueError:
            raise EnvelopeError("format", "sealed field has an invalid ephemeral key") from None
        aead = _sealed_aead(self._private.exchange(ec.ECDH(), ephemeral), parsed.ephemeral)
        return _decrypt(aead, context, parsed.header, parsed.nonce, parsed.sealed)


class Parsed(NamedTuple):
    version: int
    key_version: int
    header: bytes
    ephemeral: bytes  # version 2 only: the sender's one-time public key
    nonce: bytes
    sealed: bytes


def decode(envelope: Any) -> bytes:
    """The envelope's bytes (prefix and base64 checked: standard for version 3, base64url for the others;
    nothing else)."""
    if not isinstance(envelope, str) or not envelope.startswith(PREFIX):
        raise EnvelopeError("format", f"not an encrypted field: must be a string starting with {PREFIX!r}")
    body = envelope[len(PREFIX):]
    try:
        if body[:2] in _STANDARD_STARTS:
            return binascii.a2b_base64(body, strict_mode=True)  # a non-ASCII character raises ValueError
        return unb64url(body)
    except (binascii.Error, ValueError):
        raise EnvelopeError("format", "encrypted field is not valid base64 (standard with padding for version "
                            f"{VERSION}, base64url without for versions {URLSAFE_VERSION} and {SEALED_VERSION})"
                            ) from None


def encode(raw: bytes) -> str:
    """Envelope bytes as an envelope: the inverse of `decode`, in the alphabet their version byte asks for."""
    if raw[:1] == bytes([VERSION]):
        return PREFIX + binascii.b2a_base64(raw, newline=False).decode("ascii")
    return PREFIX + b64url(raw)


def parse(envelope: Any) -> Parsed:
    """Split an envelope into its parts, checking its shape (not its authenticity)."""
    raw = decode(envelope)
    if len(raw) < DATA_KEY_BYTES:  # the shortest any version allows
        raise EnvelopeError("truncated",
                            f"encrypted field is truncated ({len(raw)} bytes, at least {DATA_KEY_BYTES} needed)")
    version, key_version = _HEADER.unpack_from(raw)
    if version not in MIN_BYTES:
        raise EnvelopeError("version", f"unsupported envelope version {version} (this code reads versions "
                            f"{', '.join(map(str, MIN_BYTES))})")
    if len(raw) < MIN_BYTES[version]:
        raise EnvelopeError("truncated", f"encrypted field is truncated ({len(raw)} bytes, at least "
                            f"{MIN_BYTES[version]} needed for version {version})")
    ephemeral_end = _HEADER.size + (EPHEMERAL_BYTES if version == SEALED_VERSION else 0)
    return Parsed(version, key_version, raw[:_HEADER.size], raw[_HEADER.size:ephemeral_end],
                  raw[ephemeral_end:ephemeral_end + NONCE_BYTES], raw[ephemeral_end + NONCE_BYTES:])


def header_of(raw: bytes) -> tuple[int, int]:
    """(envelope version, key version) of decoded envelope bytes; (0, 0) if too short to tell."""
    return _HEADER.unpack_from(raw) if len(raw) >= _HEADER.size else (0, 0)


def key_version_of(envelope: str) -> int:
    """Which version of the data key an envelope needs (readable without any key)."""
    return parse(envelope).key_version
