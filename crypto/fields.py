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
from typing import Any

from server.domain.declaration import DOC_TYPES, ENCRYPTED_PREFIX, PROTECTED_TIERS

from .envelope import (
    NONCE_BYTES,
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
    return isinstance(value, str) and value.startswith(ENCRYPTED_PREFIX)


def plaintext_fields(doc: dict[str, Any]) -> list[str]:
    """Protected fields of doc that hold a value which is not an envelope (must be sealed before storing)."""
    return [name for name in protected_fields(doc["type"]) if doc.get(name) is not None and not is_sealed(doc[name])]


def seal_document(doc: dict[str, Any], data_keys: dict[str, DataKey]) -> dict[str, Any]:
    """A copy of doc with every plaintext protected field sealed; envelopes already there stay as they are."""
    sealed = dict(doc)
    doc_part = length_prefixed(doc["_id"])
    unsealed = [(name, tier, part) for name, (tier, part) in _aad_parts(doc["type"]).items()
                if doc.get(name) is not None and not is_sealed(doc[name])]
    nonces = os.urandom(NONCE_BYTES * len(unsealed))  # one draw a record: a field's own draw costs as much as its AES
    for at, (name, tier, part) in enumerate(unsealed):
        sealed[name] = data_keys[tier].seal_with_tail(doc_part + part, encode_plaintext(doc[name]),
                                                      nonces[at * NONCE_BYTES:(at + 1) * NONCE_BYTES])
    return sealed


def open_fields(doc: dict[str, Any], keys: ResidentKeys, names: list[str] | None = None) -> dict[str, Any]:
    """Decrypt the named protected fields (default: all) of the tiers keys holds; skip the other tiers.

    Raises EnvelopeError for a ciphertext that does not belong where it is (moved, altered, or sealed
    with a key version this resident does not have).
    """
    parts = _aad_parts(doc["type"])
    doc_part = length_prefixed(doc["_id"])
    opened: dict[str, Any] = {}
    for name in names if names is not None else parts:
        (tier, part), value = parts[name], doc.get(name)
        if value is None or tier not in keys.current:
            continue
        if not is_sealed(value):
            raise EnvelopeError("format", f"protected field {name!r} of {doc['_id']!r} is stored unencrypted")
        raw = decode(value)
        key = keys.for_envelope(tier, raw)
        if key is None:
            parse(value)  # a malformed envelope says why; a well-formed one needs a key version we lack
            raise EnvelopeError("authentication", f"encrypted field {name!r} of {doc['_id']!r} needs a data key "
                                "version this resident does not have")
        if isinstance(key, DataKey):
            plaintext = key.open_with_tail(doc_part + part, raw)
            # Not opening: built again the slow way, which names what is wrong (moved, altered, truncated).
            opened[name] = decode_plaintext(plaintext if plaintext is not None else key.open_decoded(
                FieldContext(doc["_id"], name, tier), value, raw))
        else:
            opened[name] = key.open(FieldContext(doc["_id"], name, tier), value)
    return opened


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
