"""Sealing and opening a whole document's protected fields, by the declaration's tiers.

Which fields are protected, and with which tier, comes from `server.domain.declaration`
only. A document's protected fields are sealed with the data keys of the
resident it is about (`key_owner`): the resident's own record, and every
visit, alert or reading that names them. Destroying that resident's data keys
therefore makes all of it unreadable at once.
"""

from __future__ import annotations

import functools
import os
from binascii import a2b_base64, b2a_base64
from typing import Any

from cryptography.exceptions import InvalidTag

from server.domain.declaration import DOC_TYPES, PROTECTED_TIERS

from .envelope import (
    DATA_KEY_BYTES,
    HEADER_BYTES,
    NONCE_BYTES,
    NONCE_END,
    PREFIX,
    USUAL_START,
    DataKey,
    EnvelopeError,
    FieldContext,
    decode,
    decode_plaintext,
    encode_plaintext,
    field_tier_part,
    length_prefixed,
    parse,
)
from .keyring import ResidentKeys

PREFIX_CHARS = len(PREFIX)


@functools.cache
def protected_fields(type_name: str) -> dict[str, str]:
    """Field name → tier, for the protected fields of a document type."""
    return {name: f.effective_tier.value for name, f in DOC_TYPES[type_name].fields.items()
            if f.effective_tier in PROTECTED_TIERS}


@functools.cache
def _aad_parts(type_name: str) -> dict[str, tuple[str, bytes]]:
    """Field name → (tier, its part of the AAD tail), for the protected fields of a document type: built once, so
    sealing or opening a record's fields costs the cipher and the envelope, not the context."""
    return {name: (tier, field_tier_part(name, tier)) for name, tier in protected_fields(type_name).items()}


def key_owner(doc: dict[str, Any]) -> str | None:
    """The resident whose data keys protect this document's fields (None: it has no protected fields)."""
    if doc.get("type") == "resident":
        return doc.get("_id")
    return doc.get("resident") if protected_fields(doc.get("type", "")) else None


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def plaintext_fields(doc: dict[str, Any]) -> list[str]:
    """Protected fields of doc that hold a value which is not an envelope (must be sealed before storing)."""
    return [name for name in protected_fields(doc["type"]) if doc.get(name) is not None and not is_sealed(doc[name])]


# Sealing and opening a record's fields is the server's hottest crypto (a page of a grid's residents, a sync's
# check of a phone's writes): the usual field is handled here in line, with no function of ours per field, since
# each costs about a tenth of the field's own AES-GCM (bench/field_crypto.py, issue 19). The rest (envelopes of
# other versions, anything that does not open) goes the careful way, one function per field, which says why.

def seal_document(doc: dict[str, Any], data_keys: dict[str, DataKey]) -> dict[str, Any]:
    """A copy of doc with every plaintext protected field sealed; envelopes already there stay as they are."""
    sealed = dict(doc)
    doc_part = length_prefixed(doc["_id"])
    parts = _aad_parts(doc["type"])
    # One draw a record, a nonce for each protected field it could have: a field's own draw costs as much as its AES.
    nonces, at = os.urandom(NONCE_BYTES * len(parts)), 0
    for name in parts.keys() & doc.keys():  # the protected fields it has (a set: few of the declared, in C)
        if (value := doc[name]) is None or (isinstance(value, str) and value.startswith(PREFIX)):  # is_sealed
            continue
        tier, part = parts[name]
        key, nonce, at = data_keys[tier], nonces[at:at + NONCE_BYTES], at + NONCE_BYTES
        envelope = key.header + nonce + key.aead.encrypt(nonce, encode_plaintext(value), key.aad_head + doc_part + part)
        sealed[name] = PREFIX + b2a_base64(envelope, newline=False).decode("ascii")
    return sealed


def open_fields(doc: dict[str, Any], keys: ResidentKeys, names: list[str] | None = None) -> dict[str, Any]:
    """Decrypt the named protected fields (default: all) of the tiers keys holds; skip the other tiers.

    Raises EnvelopeError for a ciphertext that does not belong where it is (moved, altered, or sealed
    with a key version this resident does not have).
    """
    parts = _aad_parts(doc["type"])
    doc_part = length_prefixed(doc["_id"])
    current = keys.current
    opened: dict[str, Any] = {}
    for name in parts.keys() & doc.keys() if names is None else names:
        if (value := doc.get(name)) is None:
            continue
        tier, part = parts[name]
        if tier not in current:
            continue
        if value.__class__ is str and value.startswith(USUAL_START):
            try:
                raw = a2b_base64(value[PREFIX_CHARS:], strict_mode=True)
            except ValueError:  # binascii.Error is one; the careful way names it
                raw = b""
            if raw.startswith((key := current[tier]).header) and len(raw) >= DATA_KEY_BYTES:
                try:
                    opened[name] = decode_plaintext(key.aead.decrypt(raw[HEADER_BYTES:NONCE_END], raw[NONCE_END:],
                                                                     key.aad_head + doc_part + part))
                    continue
                except InvalidTag:
                    pass  # the careful way says why
        opened[name] = decode_plaintext(_open_field(doc, name, tier, keys))
    return opened


def _open_field(doc: dict[str, Any], name: str, tier: str, keys: ResidentKeys) -> bytes:
    """One field's plaintext the careful way (any version, any key this resident holds), or the error that says why
    it does not open."""
    value = doc[name]
    if not is_sealed(value):
        raise EnvelopeError("format", f"protected field {name!r} of {doc['_id']!r} is stored unencrypted")
    raw = decode(value)
    key = keys.for_envelope(tier, raw)
    context = FieldContext(doc["_id"], name, tier)
    if isinstance(key, DataKey):
        return key.open_decoded(context, value, raw)
    if key is not None:
        return key.open_bytes(context, value)
    parse(value)  # a malformed envelope says why; a well-formed one needs a key version we lack
    raise EnvelopeError("authentication", f"encrypted field {name!r} of {doc['_id']!r} needs a data key "
                        "version this resident does not have")


def fields_not_opening(doc: dict[str, Any], keys: ResidentKeys, names: list[str]) -> list[str]:
    """Of the named protected fields, those whose value does not open under keys for exactly this document, field
    and tier: plaintext, fake ciphertext (a well-formed envelope around anything), a value sealed under another
    key, or one moved from another document or field. What it opens to is thrown away."""
    refused = []
    for name in names:
        try:
            opened = name in open_fields(doc, keys, [name])  # not opened: no value, or a tier keys lacks
        except ValueError:  # EnvelopeError, or what opened is not one JSON value
            opened = False
        if not opened:
            refused.append(name)
    return refused
