"""Write crypto/vectors/v1.json: the shared test vectors for Python and WebCrypto.

    .venv/bin/python -m crypto.vectors.make_vectors

Deterministic (fixed keys, nonces and ephemeral keys), so the file only
changes when the format does; tests/test_crypto.py checks that the committed
file is what this script writes. The key-wrap section also carries RFC 3394's
own example (§4.6), which no code of ours produced.
"""

from __future__ import annotations

import binascii
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .. import key_statements, vouchers
from ..blind_index import blind_index
from ..envelope import (
    PREFIX,
    URLSAFE_VERSION,
    VERSION,
    DataKey,
    FieldContext,
    aad,
    b64url,
    decode,
    encode,
    encode_plaintext,
    seal_for,
    unb64url,
)
from ..keys import wrap, wrap_for_phone

PATH = Path(__file__).resolve().parent / "v1.json"


def _bytes(label: str, n: int = 32) -> bytes:
    """Fixed pseudo-random bytes for a label (test material only)."""
    return hashlib.sha256(label.encode()).digest()[:n]


def _private_key(label: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(_bytes(label), "big") % (2**255), ec.SECP256R1())


def _jwk(private: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    numbers = private.private_numbers()
    as_b64 = lambda n: b64url(n.to_bytes(32, "big"))  # noqa: E731
    return {"kty": "EC", "crv": "P-256", "d": as_b64(numbers.private_value),
            "x": as_b64(numbers.public_numbers.x), "y": as_b64(numbers.public_numbers.y)}


def _raw_public(private: ec.EllipticCurvePrivateKey) -> bytes:
    numbers = private.public_key().public_numbers()
    return b"\x04" + numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")


def _tamper(envelope: str, index: int, bit: int = 0x01) -> str:
    raw = bytearray(decode(envelope))
    raw[index] ^= bit
    return encode(bytes(raw))


def _cut(envelope: str, length: int) -> str:
    return encode(decode(envelope)[:length])


def _shortest(envelope: str, before_nonce: int) -> str:
    """The envelope without its ciphertext: header (and ephemeral key), nonce and tag, the least a version allows."""
    raw = decode(envelope)
    return encode(raw[:before_nonce + 12] + raw[-16:])


def _seal_urlsafe(key: bytes, key_version: int, context: FieldContext, plaintext: bytes, nonce: bytes) -> str:
    """A data key's envelope of version 1, as sealed before version 3 (no code of ours writes it any more; what it
    wrote is still opened)."""
    header = bytes([URLSAFE_VERSION]) + key_version.to_bytes(4, "big")
    return PREFIX + b64url(header + nonce + AESGCM(key).encrypt(nonce, plaintext, aad(context, header)))


def _invalid_envelopes(good: dict[str, Any], specs: list[tuple[str, str, dict[str, Any], str]]) -> list[dict]:
    cases = []
    for name, text, changes, reason in specs:
        case = {k: good[k] for k in ("key", "doc_id", "field", "tier")}
        case.update(changes)
        cases.append({"name": name, **case, "envelope": text, "reason": reason})
    return cases


def build() -> dict[str, Any]:
    key = _bytes("data key 1")
    cases = [
        ("phone", "resident:c1-g01-0001-1", "phone", "contact", 1, "10012345678"),
        ("id card", "resident:c1-g01-0001-1", "id_card", "contact", 1, "990101195003040011"),
        ("chinese text", "resident:c1-g01-0002-1", "health_notes", "core", 3, "高血压，每日服药；需定期随访"),
        ("list", "resident:c1-g01-0002-1", "chronic_conditions", "core", 3, ["高血压", "糖尿病"]),
        ("boolean", "resident:c1-g01-0003-2", "minimum_living_allowance", "core", 7, True),
        ("number", "resident:c1-g01-0003-2", "allowance_monthly_yuan", "core", 4294967295, 820),
        ("empty string", "resident:x", "emergency_contact_name", "contact", 0, ""),
    ]
    envelope, envelope_v1 = [], []
    for i, (name, doc_id, field, tier, version, value) in enumerate(cases):
        plaintext = encode_plaintext(value)
        nonce, context = _bytes(f"nonce {i}", 12), FieldContext(doc_id, field, tier)
        case = {"name": name, "key": b64url(key), "key_version": version, "doc_id": doc_id, "field": field,
                "tier": tier, "nonce": b64url(nonce), "plaintext_json": plaintext.decode()}
        envelope.append({**case, "envelope": DataKey(key, version).seal_bytes(context, plaintext, nonce=nonce)})
        envelope_v1.append({**case, "envelope": _seal_urlsafe(key, version, context, plaintext, nonce)})

    good = envelope_v1[0]  # the cases of version 1 keep the strings they had when version 1 was written
    raw_len = len(unb64url(good["envelope"][len(PREFIX):]))
    invalid_specs = [
        ("tampered tag", _tamper(good["envelope"], raw_len - 1), {}, "authentication"),
        ("tampered ciphertext", _tamper(good["envelope"], 17), {}, "authentication"),
        ("tampered key version", _tamper(good["envelope"], 4), {}, "authentication"),
        ("moved to another field", good["envelope"], {"field": "emergency_contact_phone"}, "authentication"),
        ("moved to another resident", good["envelope"], {"doc_id": "resident:c1-g01-0001-2"}, "authentication"),
        ("other tier claimed", good["envelope"], {"tier": "core"}, "authentication"),
        ("wrong key", good["envelope"], {"key": b64url(_bytes("data key 2"))}, "authentication"),
        ("wrong version byte", _tamper(good["envelope"], 0), {}, "version"),
        ("truncated", PREFIX + b64url(unb64url(good["envelope"][len(PREFIX):])[:32]), {}, "truncated"),
        # The shortest envelope is whole (no ciphertext, the tag): it is opened, and fails only on its tag.
        ("shortest, with a tag that does not match", _shortest(good["envelope"], 5), {}, "authentication"),
        ("empty body", PREFIX, {}, "truncated"),
        ("missing prefix", good["envelope"][len(PREFIX):], {}, "format"),
        ("padded base64", good["envelope"] + "=", {}, "format"),
        ("standard base64 alphabet", PREFIX + "+/+/" + good["envelope"][8:], {}, "format"),
        ("base64url of a length no bytes have", PREFIX + "AAAAA", {}, "format"),
        ("version 1 in standard base64, padded", PREFIX + binascii.b2a_base64(decode(good["envelope"]),
                                                                               newline=False).decode(), {}, "format"),
    ]
    current = envelope[0]
    body = current["envelope"][len(PREFIX):]
    current_specs = [
        ("version 3: tampered tag", _tamper(current["envelope"], len(decode(current["envelope"])) - 1), {},
         "authentication"),
        ("version 3: tampered ciphertext", _tamper(current["envelope"], 17), {}, "authentication"),
        ("version 3: tampered key version", _tamper(current["envelope"], 4), {}, "authentication"),
        ("version 3: moved to another field", current["envelope"], {"field": "emergency_contact_phone"},
         "authentication"),
        ("version 3: moved to another resident", current["envelope"], {"doc_id": "resident:c1-g01-0001-2"},
         "authentication"),
        ("version 3: wrong key", current["envelope"], {"key": b64url(_bytes("data key 2"))}, "authentication"),
        # The version is authenticated: relabelled as a version 1 (and written in its alphabet) it does not open.
        ("version 3 relabelled as version 1", _tamper(current["envelope"], 0, VERSION ^ URLSAFE_VERSION), {},
         "authentication"),
        ("version 3 with an unknown version byte", _tamper(current["envelope"], 0, 0x04), {}, "version"),
        ("version 3: truncated", _cut(current["envelope"], 32), {}, "truncated"),
        ("version 3: shortest, with a tag that does not match", _shortest(current["envelope"], 5), {},
         "authentication"),
        ("version 3 without its padding", PREFIX + body.rstrip("="), {}, "format"),
        ("version 3 in base64url", PREFIX + b64url(decode(current["envelope"])), {}, "format"),
        ("version 3 with a base64url character", PREFIX + body[:10] + "-" + body[11:], {}, "format"),
        ("version 3 with padding inside", PREFIX + body[:8] + "=" + body[9:], {}, "format"),
        ("version 3 with more after its padding", current["envelope"] + "AAAA", {}, "format"),
    ]
    envelope_invalid = _invalid_envelopes(good, invalid_specs) + _invalid_envelopes(current, current_specs)

    kek = _bytes("tier key")
    keywrap = [
        {"name": "RFC 3394 §4.6: 256-bit key, 256-bit KEK",
         "kek": b64url(bytes.fromhex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")),
         "key": b64url(bytes.fromhex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")),
         "wrapped": b64url(bytes.fromhex("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326"
                                         "CBC7F0E71A99F43BFB988B9B7A02DD21"))},
        {"name": "resident data key under a tier key", "kek": b64url(kek), "key": b64url(key),
         "wrapped": wrap(kek, key)},
    ]
    # `reason`: the phone's EnvelopeError reason (Python raises KeyMaterialError, which has none).
    keywrap_invalid = [
        {"name": "wrong KEK", "kek": b64url(_bytes("other tier key")), "wrapped": keywrap[1]["wrapped"],
         "reason": "authentication"},
        {"name": "altered", "kek": b64url(kek),
         "wrapped": b64url(bytes(b ^ (i == 9) for i, b in enumerate(unb64url(keywrap[1]["wrapped"])))),
         "reason": "authentication"},
        {"name": "not base64url", "kek": b64url(kek), "wrapped": "!!", "reason": "format"},
    ]

    index_key = _bytes("blind index key community:c1")
    blind = [{"key": b64url(index_key), "field": field, "value": value, "index": blind_index(index_key, field, value)}
             for field, value in (("id_card", "990101195003040011"), ("id_card", "99010119500304001x"),
                                  ("phone", "100 1234 5678"), ("phone", "100-1234-5678"), ("phone", "10012345679"))]

    phone = _private_key("phone of wangge01")
    grant_id = "grant:c1-g01-0001-1:core:1"
    granted = wrap_for_phone(_raw_public(phone), grant_id, key, ephemeral=_private_key("server ephemeral"))
    # "device_grant" and "device_private_jwk" predate the name phone key; they stay, as v1.json's bytes must.
    grants = [{"name": "core data key for one phone", "device_private_jwk": _jwk(phone), "grant_id": grant_id,
               **granted, "key": b64url(key)}]
    # After a rotation (crypto/keyring.py rotated_record) a grant also carries the versions it replaced.
    older, rotated_id = _bytes("core data key version 1"), "grant:c1-g01-0001-1:core:2"
    grants.append({"name": "core data key version 2 and the version 1 it replaced", "device_private_jwk": _jwk(phone),
                   "grant_id": rotated_id, "key_version": 2, "key": b64url(key), "older_key": b64url(older),
                   **wrap_for_phone(_raw_public(phone), rotated_id, key, ephemeral=_private_key("server ephemeral 2"),
                                    older={1: older})})

    recipient, other = _private_key("write key of resident:c1-g01-0002-1"), _private_key("another write key")
    sealed = []
    for i, (name, doc_id, field, version, value) in enumerate([
        ("blood pressure on a visit", "visit:c1-g01-0002-1-20261125", "blood_pressure", 3, "150/95"),
        ("finance note in Chinese", "resident:c1-g01-0002-1", "finance_notes", 1, "申请临时救助"),
    ]):
        ephemeral, nonce = _private_key(f"phone ephemeral {i}"), _bytes(f"sealed nonce {i}", 12)
        context = FieldContext(doc_id, field, "core")
        sealed.append({"name": name, "recipient_public": b64url(_raw_public(recipient)),
                       "recipient_private_jwk": _jwk(recipient), "ephemeral_private_jwk": _jwk(ephemeral),
                       "nonce": b64url(nonce), "key_version": version, "doc_id": doc_id, "field": field, "tier": "core",
                       "plaintext_json": json.dumps(value, ensure_ascii=False),
                       "envelope": seal_for(_raw_public(recipient), version, context, value, ephemeral=ephemeral,
                                            nonce=nonce)})
    good_sealed = sealed[0]
    sealed_raw_len = len(unb64url(good_sealed["envelope"][len(PREFIX):]))
    envelope_invalid.append({"name": "sealed for a write key (version 2)", **{k: good[k] for k in (
        "key", "doc_id", "field", "tier")}, "envelope": good_sealed["envelope"], "reason": "version"})
    sealed_invalid = [
        {"name": name, **{k: good_sealed[k] for k in ("doc_id", "field", "tier")}, "envelope": text,
         "recipient_private_jwk": _jwk(key), **changes, "reason": reason}
        for name, text, key, changes, reason in (
            ("moved to another visit", good_sealed["envelope"], recipient,
             {"doc_id": "visit:c1-g01-0002-1-20261126"}, "authentication"),
            ("moved to another field", good_sealed["envelope"], recipient, {"field": "health_notes"}, "authentication"),
            ("another resident's write key", good_sealed["envelope"], other, {}, "authentication"),
            ("tampered tag", _tamper(good_sealed["envelope"], sealed_raw_len - 1), recipient, {}, "authentication"),
            ("tampered ephemeral key", _tamper(good_sealed["envelope"], 20), recipient, {}, "format"),
            ("truncated", _cut(good_sealed["envelope"], 60), recipient, {}, "truncated"),
            ("shortest, with a tag that does not match", _shortest(good_sealed["envelope"], 5 + 65), recipient, {},
             "authentication"),
            ("one byte shorter than the shortest",
             _cut(_shortest(good_sealed["envelope"], 5 + 65), 5 + 65 + 12 + 16 - 1), recipient, {}, "truncated"),
            ("sealed for a data key", current["envelope"], recipient, {}, "version"),
            ("sealed for a data key before version 3", good["envelope"], recipient, {}, "version"),
            ("the shortest envelope sealed for a data key", _shortest(current["envelope"], 5), recipient, {},
             "version"),
        )]

    installation = _private_key("installation key")
    resident, write_public = "resident:c1-g01-0002-1", b64url(_raw_public(recipient))
    vouched = key_statements.vouch(installation, resident, 3, write_public)
    statement = {"installation_public": b64url(key_statements.public_raw(installation)), "resident": resident,
                 "key_version": 3, "write_public": write_public, "signature": vouched}
    write_key_statements = [{"name": "the installation vouches for the resident's key", **statement, "valid": True}] + [
        {"name": name, **statement, **changes, "valid": False} for name, changes in (
            ("another resident", {"resident": "resident:c1-g01-0003-1"}),
            ("another key version", {"key_version": 4}),
            ("an attacker's key", {"write_public": b64url(_raw_public(other))}),
            ("signed by another installation key", {"signature": key_statements.vouch(
                _private_key("attacker's installation key"), resident, 3, write_public)}),
            ("tampered signature", {"signature": _tamper("enc:" + vouched, 40)[len(PREFIX):]}),
            ("no signature", {"signature": ""}),
            ("a signature that is not base64url", {"signature": "!!"}),
        )]

    # Vouchers (crypto/vouchers.py), signed by the installation key: a payload, or null for a code that is not one.
    payload = {"id": "voucher:c1-0001", "issued_at": "2026-12-01T10:00:00+08:00", "organisation": "organisation:bakery",
               "points": 50, "reward": "一袋面包"}
    good_voucher = vouchers.sign(installation, payload)
    as_json = lambda value: json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()  # noqa: E731
    # Past the 600-character limit (602: a 383-byte payload; no code is 600 or 601 characters long).
    long = {**payload, "reward": "x" * (383 - len(as_json({**payload, "reward": ""})))}
    voucher_cases = [
        ("the installation's voucher", good_voucher, payload),
        ("signed by another key", vouchers.sign(_private_key("attacker's installation key"), payload), None),
        ("another prefix", "LV2." + good_voucher[4:], None),
        ("longer than a voucher can be", vouchers.sign(installation, long), None),
        ("a third part", good_voucher + ".AAAA", None),
        ("a signature a byte short", vouchers.PREFIX + good_voucher[4:].split(".")[0] + "." + b64url(
            unb64url(good_voucher.split(".")[2])[:-1]), None),
        ("not base64url", "LV1.!!.!!", None),
        ("signed, not JSON", vouchers.sign_body(installation, b"{not json"), None),
        ("signed, not an object", vouchers.sign_body(installation, as_json(sorted(payload))), None),
        ("signed without its reward", vouchers.sign_body(installation, as_json(
            {k: v for k, v in payload.items() if k != "reward"})), None),
        ("signed with a field more", vouchers.sign_body(installation, as_json({**payload, "note": "x"})), None),
        ("signed with its fields in another order", vouchers.sign_body(installation, as_json(
            dict(reversed(payload.items())))), payload),
    ]
    voucher_vectors = [{"name": name, "installation_public": statement["installation_public"], "code": code,
                        "payload": opened} for name, code, opened in voucher_cases]

    return {"format": "linli field envelope v3 (and v1, opened only) and sealed v2; see crypto/envelope.py and "
                      "pwa/crypto/envelope.js",
            "encoding": "all binary values are base64url without padding, but for version-3 envelopes: standard "
                        "base64, padded",
            "envelope": envelope, "envelope_v1": envelope_v1, "envelope_invalid": envelope_invalid, "keywrap": keywrap,
            "keywrap_invalid": keywrap_invalid, "blind_index": blind, "device_grant": grants,
            "sealed": sealed, "sealed_invalid": sealed_invalid, "write_key_statements": write_key_statements,
            "vouchers": voucher_vectors}


def render() -> str:
    return json.dumps(build(), ensure_ascii=False, indent=2) + "\n"


if __name__ == "__main__":
    PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {PATH}")
