"""The encrypted-field wire format: shared vectors in Python, Node's WebCrypto and Chromium."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from crypto import envelope as env
from crypto import key_statements, keys, vouchers
from crypto.blind_index import blind_index
from crypto.vectors import make_vectors
from server.domain.declaration import ENCRYPTED_PREFIX
from server.store.config import PROJECT_ROOT, load_master_keys
from tests.browser import launch, serve_project

VECTORS = json.loads(make_vectors.PATH.read_text(encoding="utf-8"))
# The groups both languages pass; blind_index is Python's alone (no phone computes an index: number_index.py).
GROUPS = ("envelope", "envelope_v1", "envelope_invalid", "keywrap", "keywrap_invalid", "device_grant", "sealed",
          "sealed_invalid", "write_key_statements", "vouchers")


def b(text: str) -> bytes:
    return env.unb64url(text)


def ctx(case: dict) -> env.FieldContext:
    return env.FieldContext(case["doc_id"], case["field"], case["tier"])


def test_committed_vectors_are_what_the_generator_writes() -> None:
    assert make_vectors.PATH.read_text(encoding="utf-8") == make_vectors.render()


def test_domain_and_crypto_agree_on_the_envelope_prefix() -> None:
    assert env.PREFIX == ENCRYPTED_PREFIX


@pytest.mark.parametrize("case", VECTORS["envelope"], ids=lambda c: c["name"])
def test_python_passes_envelope_vectors(case: dict) -> None:
    plaintext = case["plaintext_json"].encode()
    data_key = env.DataKey(b(case["key"]), case["key_version"])
    assert data_key.seal_bytes(ctx(case), plaintext, nonce=b(case["nonce"])) == case["envelope"]
    assert data_key.open(ctx(case), case["envelope"]) == json.loads(case["plaintext_json"])
    assert env.key_version_of(case["envelope"]) == case["key_version"]


@pytest.mark.parametrize("case", VECTORS["envelope_v1"], ids=lambda c: c["name"])
def test_python_opens_what_was_sealed_before_version_3(case: dict) -> None:
    data_key = env.DataKey(b(case["key"]), case["key_version"])
    assert data_key.open(ctx(case), case["envelope"]) == json.loads(case["plaintext_json"])
    assert env.key_version_of(case["envelope"]) == case["key_version"]
    assert data_key.seal_bytes(ctx(case), case["plaintext_json"].encode(), nonce=b(case["nonce"])) != case["envelope"]


@pytest.mark.parametrize("case", VECTORS["envelope_invalid"], ids=lambda c: c["name"])
def test_python_rejects_invalid_envelopes_for_the_named_reason(case: dict) -> None:
    with pytest.raises(env.EnvelopeError) as caught:
        env.DataKey(b(case["key"]), 1).open(ctx(case), case["envelope"])
    assert caught.value.reason == case["reason"]
    message = str(caught.value)
    assert case["key"] not in message and "10012345678" not in message  # no key material, no plaintext


@pytest.mark.parametrize("case", VECTORS["keywrap"], ids=lambda c: c["name"])
def test_python_passes_keywrap_vectors(case: dict) -> None:
    assert keys.wrap(b(case["kek"]), b(case["key"])) == case["wrapped"]  # includes RFC 3394's own example
    assert keys.unwrap(b(case["kek"]), case["wrapped"]) == b(case["key"])


@pytest.mark.parametrize("case", VECTORS["keywrap_invalid"], ids=lambda c: c["name"])
def test_python_rejects_bad_wrapped_keys(case: dict) -> None:
    with pytest.raises(keys.KeyMaterialError, match="wrapped key does not unwrap"):
        keys.unwrap(b(case["kek"]), case["wrapped"])


def test_python_passes_blind_index_vectors() -> None:
    for case in VECTORS["blind_index"]:
        assert blind_index(b(case["key"]), case["field"], case["value"]) == case["index"]
    by_value = {(c["field"], c["value"]): c["index"] for c in VECTORS["blind_index"]}
    # Typing differences do not matter; a different number gives a different index.
    assert by_value[("id_card", "990101195003040011")] != by_value[("id_card", "99010119500304001x")]
    assert by_value[("phone", "100 1234 5678")] == by_value[("phone", "100-1234-5678")]
    assert by_value[("phone", "100 1234 5678")] != by_value[("phone", "10012345679")]


def test_python_opens_the_phone_grant_vectors() -> None:
    for case in VECTORS["device_grant"]:
        d = int.from_bytes(b(case["device_private_jwk"]["d"]), "big")
        phone = ec.derive_private_key(d, ec.SECP256R1())
        assert keys.unwrap_on_phone(phone, case["grant_id"], case) == b(case["key"])
        with pytest.raises(keys.KeyMaterialError, match="wrapped key does not unwrap"):
            keys.unwrap_on_phone(phone, case["grant_id"] + "x", case)  # bound to its grant
    rotated = VECTORS["device_grant"][1]  # and the version a rotation replaced, which it still opens
    assert keys.unwrap_on_phone(phone, rotated["grant_id"], rotated, version=1) == b(rotated["older_key"])
    with pytest.raises(keys.KeyMaterialError, match="the grant holds no key version 3"):
        keys.unwrap_on_phone(phone, rotated["grant_id"], rotated, version=3)


def _write_key(jwk: dict, version: int = 1) -> env.WriteKey:
    return env.WriteKey(ec.derive_private_key(int.from_bytes(b(jwk["d"]), "big"), ec.SECP256R1()), version)


@pytest.mark.parametrize("case", VECTORS["sealed"], ids=lambda c: c["name"])
def test_python_passes_sealed_vectors(case: dict) -> None:
    ephemeral = _write_key(case["ephemeral_private_jwk"])._private
    value = json.loads(case["plaintext_json"])
    sealed = env.seal_for(b(case["recipient_public"]), case["key_version"], ctx(case), value, ephemeral=ephemeral,
                          nonce=b(case["nonce"]))
    assert sealed == case["envelope"]
    assert _write_key(case["recipient_private_jwk"]).open(ctx(case), case["envelope"]) == value
    assert env.key_version_of(sealed) == case["key_version"]
    with pytest.raises(env.EnvelopeError, match="write key, not a data key") as caught:
        env.DataKey(bytes(32), 1).open(ctx(case), sealed)  # a data key never opens a sealed field
    assert caught.value.reason == "version"


@pytest.mark.parametrize("case", VECTORS["sealed_invalid"], ids=lambda c: c["name"])
def test_python_rejects_invalid_sealed_fields(case: dict) -> None:
    with pytest.raises(env.EnvelopeError) as caught:
        _write_key(case["recipient_private_jwk"]).open(ctx(case), case["envelope"])
    assert caught.value.reason == case["reason"]


@pytest.mark.parametrize("case", VECTORS["write_key_statements"], ids=lambda c: c["name"])
def test_python_checks_write_key_statements_as_the_vectors_say(case: dict) -> None:
    """What the BLE gateway (and, in envelope.js, the phone) checks before sealing to a resident's write key."""
    pinned = key_statements.load_pinned(case["installation_public"])
    check = lambda: key_statements.check(pinned, case["resident"], case["key_version"],  # noqa: E731
                                         case["write_public"], case["signature"])
    if case["valid"]:
        check()
    else:
        with pytest.raises(key_statements.UnvouchedKey, match=re.escape(f"the write key of {case['resident']} ")):
            check()


@pytest.mark.parametrize("case", VECTORS["vouchers"], ids=lambda c: c["name"])
def test_python_opens_vouchers_as_the_vectors_say(case: dict) -> None:
    """A partner's phone opens the same codes (envelope.js openVoucher, the same vectors)."""
    installation = key_statements.load_pinned(case["installation_public"])
    if case["payload"] is None:
        with pytest.raises(vouchers.ForgedVoucher):
            vouchers.open_code(installation, case["code"])
    else:
        assert vouchers.open_code(installation, case["code"]) == case["payload"]


@given(value=st.recursive(st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(),
                          lambda inner: st.lists(inner, max_size=4), max_leaves=8),
       doc_id=st.text(min_size=1, max_size=40), field=st.text(min_size=1, max_size=20),
       version=st.integers(0, 2**32 - 1))
def test_round_trip_and_binding(value: object, doc_id: str, field: str, version: int) -> None:
    key = env.DataKey(bytes(range(32)), version)
    context = env.FieldContext(doc_id, field, "core")
    sealed = key.seal(context, value)
    assert key.open(context, sealed) == value
    assert env.key_version_of(sealed) == version
    for moved in (env.FieldContext(doc_id + "x", field, "core"), env.FieldContext(doc_id, field + "x", "core"),
                  env.FieldContext(doc_id, field, "contact")):
        with pytest.raises(env.EnvelopeError, match="does not open: wrong key, or the ciphertext was altered or moved"):
            key.open(moved, sealed)


def test_sealing_twice_gives_different_ciphertexts() -> None:
    context = env.FieldContext("resident:r1", "phone", "contact")
    key = env.DataKey(bytes(32), 1)
    assert key.seal(context, "10012345678") != key.seal(context, "10012345678")
    assert repr(key) == "DataKey(version=1)"  # no key material in logs


def test_the_shortest_envelope_holds_no_ciphertext_and_opens_to_nothing() -> None:
    """Header, nonce and tag (33 bytes) are a whole envelope: an empty plaintext opens to empty bytes, and one byte
    fewer is truncated."""
    context = env.FieldContext("resident:r1", "phone", "contact")
    key = env.DataKey(bytes(32), 1)
    sealed = key.seal_bytes(context, b"")
    assert len(env.decode(sealed)) == env.MIN_BYTES[env.VERSION] == 33
    assert key.open_bytes(context, sealed) == b""
    with pytest.raises(env.EnvelopeError, match=r"truncated \(32 bytes"):
        key.open_bytes(context, env.encode(env.decode(sealed)[:32]))


def test_parse_splits_each_version_into_its_parts() -> None:
    for version, group in ((3, "envelope"), (1, "envelope_v1")):
        for case in VECTORS[group]:
            parsed = env.parse(case["envelope"])
            assert (parsed.version, parsed.key_version, parsed.ephemeral, parsed.nonce) == (
                version, case["key_version"], b"", b(case["nonce"]))  # a data key's envelope has no ephemeral key
            assert len(parsed.sealed) == len(case["plaintext_json"].encode()) + env.TAG_BYTES
    for case in VECTORS["sealed"]:
        parsed = env.parse(case["envelope"])
        assert (parsed.version, parsed.key_version, parsed.nonce) == (2, case["key_version"], b(case["nonce"]))
        assert len(parsed.ephemeral) == env.EPHEMERAL_BYTES and parsed.ephemeral[0] == 4  # an uncompressed point


def test_base64url_drops_only_the_padding() -> None:
    assert env.b64url(b"\x00\x00\x17") == "AAAX" and env.unb64url("AAAX") == b"\x00\x00\x17"
    assert env.b64url(b"\xfb\xff") == "-_8" and env.unb64url("-_8") == b"\xfb\xff"  # url-safe alphabet, no "="


def test_header_of_reads_five_bytes_and_reports_fewer_as_unknown() -> None:
    assert env.header_of(bytes([1, 0, 0, 1, 2])) == (1, 258)  # exactly a header is enough
    assert env.header_of(bytes([1, 0, 0, 1])) == (0, 0)


def test_a_plaintext_parses_as_exactly_one_json_value() -> None:
    for value in ["高血压", ["a", 1], {"b": None, "c": [1.5, "x"]}, True, 0, None, ""]:
        assert env.decode_plaintext(env.encode_plaintext(value)) == value
    assert env.decode_plaintext(b' [1, 2] ') == [1, 2]  # whitespace around a value: as json.loads reads it
    # Not exactly one JSON value: refused, never its first value alone.
    for broken in (b"1,2", b'"a" "b"', b"nope", b"", b"[1", b"\xef\xbb\xbf1", b"\xff"):
        with pytest.raises(ValueError):
            env.decode_plaintext(broken)


def test_v2_seals_with_a_fresh_ephemeral_key_and_nonce_each_time() -> None:
    write_key, context = env.WriteKey.generate(3), env.FieldContext("visit:v1", "blood_pressure", "core")
    first, second = (env.seal_for(write_key.public_raw, 3, context, "150/95") for _ in range(2))
    assert first != second and env.parse(first).ephemeral != env.parse(second).ephemeral
    assert env.parse(first).nonce != env.parse(second).nonce
    assert write_key.open(context, first) == write_key.open(context, second) == "150/95"


def test_a_write_key_survives_its_stored_form_and_shows_only_its_version() -> None:
    write_key = env.WriteKey.generate(3)
    sealed = env.seal_for(write_key.public_raw, 3, env.FieldContext("resident:r1", "finance_notes", "core"), "申请")
    stored = env.WriteKey.from_der(write_key.private_der(), 3)
    assert stored.open(env.FieldContext("resident:r1", "finance_notes", "core"), sealed) == "申请"
    assert (write_key.version, stored.version, stored.public_raw) == (3, 3, write_key.public_raw)
    assert repr(stored) == "WriteKey(version=3)"  # no key material in logs
    other = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption())
    with pytest.raises(env.EnvelopeError, match="^write key is not an EC private key$") as caught:
        env.WriteKey.from_der(other, 3)
    assert caught.value.reason == "format"


def _refusal(make: object) -> env.EnvelopeError:
    with pytest.raises(env.EnvelopeError) as caught:
        make()  # type: ignore[operator]
    return caught.value


def test_each_refusal_names_its_reason_and_what_is_wrong() -> None:
    """The reason is the word Python and JavaScript share; the message, what a person reading a 4xx needs, and
    never key material or plaintext."""
    good, sealed = VECTORS["envelope"][0], VECTORS["sealed"][0]
    key, context = env.DataKey(b(good["key"]), 1), ctx(good)
    write_key = _write_key(sealed["recipient_private_jwk"])
    body = env.decode(good["envelope"])
    short_sealed = env.PREFIX + env.b64url(bytes([2, 0, 0, 0, 1]) + bytes(env.NONCE_BYTES + env.TAG_BYTES + 1))
    bad_ephemeral = env.PREFIX + env.b64url(bytes([2, 0, 0, 0, 1]) + bytes(65 + env.NONCE_BYTES + env.TAG_BYTES))
    cases = [
        (lambda: env.DataKey(bytes(31), 1), "format", "data key must be 32 bytes"),
        (lambda: env.DataKey(bytes(32), -1), "format", "key version out of range"),
        (lambda: env.DataKey(bytes(32), 2**32), "format", "key version out of range"),
        (lambda: env.write_public_key(bytes(65)), "format", "write key is not a P-256 public key"),
        (lambda: key.open(context, "plain"), "format",
         "not an encrypted field: must be a string starting with 'enc:'"),
        (lambda: key.open(context, "enc:a=="), "format", "encrypted field is not valid base64 (standard with "
         "padding for version 3, base64url without for versions 1 and 2)"),
        (lambda: key.open(context, env.encode(body[:32])), "truncated",
         "encrypted field is truncated (32 bytes, at least 33 needed)"),
        (lambda: key.open(context, "enc:" + env.b64url(bytes([4]) + body[1:])), "version",
         "unsupported envelope version 4 (this code reads versions 1, 2, 3)"),
        (lambda: key.open(context, short_sealed), "truncated",
         "encrypted field is truncated (34 bytes, at least 98 needed for version 2)"),
        (lambda: key.open(context, sealed["envelope"]), "version",
         "encrypted field 'phone' of 'resident:c1-g01-0001-1' is sealed for a resident's write key, not a data key"),
        (lambda: write_key.open(context, good["envelope"]), "version",
         "encrypted field 'phone' of 'resident:c1-g01-0001-1' is not sealed for a write key"),
        (lambda: write_key.open(context, bad_ephemeral), "format", "sealed field has an invalid ephemeral key"),
    ]
    assert [(r.reason, str(r)) for r in (_refusal(make) for make, _, _ in cases)] == [
        (reason, message) for _, reason, message in cases]


def test_master_key_from_environment_or_file_never_generated_by_loading(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LINLI_MASTER_KEY", raising=False)
    monkeypatch.delenv("LINLI_MASTER_KEY_FILE", raising=False)
    monkeypatch.delenv("LINLI_MASTER_KEY_PREVIOUS", raising=False)
    # Loading makes nothing: only a new installation gets a key (tests/test_master_key.py).
    assert load_master_keys(tmp_path) == ((), f"none (LINLI_MASTER_KEY and LINLI_MASTER_KEY_FILE are unset, "
                                              f"no {tmp_path / 'master_key'})")
    assert not (tmp_path / "master_key").exists()
    (tmp_path / "master_key").write_text(env.b64url(bytes(32)))  # a generated key, from an earlier first start
    assert load_master_keys(tmp_path) == ((bytes(32),), str(tmp_path / "master_key"))
    key_file = tmp_path / "mk"
    key_file.write_text(env.b64url(bytes(range(32))))
    monkeypatch.setenv("LINLI_MASTER_KEY_FILE", str(key_file))
    assert load_master_keys(tmp_path) == ((bytes(range(32)),), f"LINLI_MASTER_KEY_FILE={key_file}")
    monkeypatch.setenv("LINLI_MASTER_KEY_PREVIOUS", env.b64url(bytes(32)))  # during a rotation: new first
    assert load_master_keys(tmp_path)[0] == (bytes(range(32)), bytes(32))
    monkeypatch.setenv("LINLI_MASTER_KEY", base64.urlsafe_b64encode(b"short").decode())
    with pytest.raises(keys.KeyMaterialError) as caught:
        load_master_keys(tmp_path)
    assert "32 bytes" in str(caught.value) and "c2hvcnQ" not in str(caught.value)


def test_master_key_check_value_vector() -> None:
    """HMAC-SHA256 of the label under HKDF-SHA256(master, no salt, info), computed here from hashlib alone."""
    master = bytes(range(32))
    prk = hmac.new(bytes(32), master, hashlib.sha256).digest()  # HKDF-Extract, salt = 32 zero bytes (RFC 5869)
    mac_key = hmac.new(prk, keys.MASTER_CHECK_INFO + b"\x01", hashlib.sha256).digest()  # HKDF-Expand, one block
    expected = env.b64url(hmac.new(mac_key, keys.MASTER_CHECK_LABEL, hashlib.sha256).digest())
    assert keys.master_key_check(master) == expected == "jrTU8pvrT7lSTf1GxWN-la1f4NeSYm5p1SNb_DSSlFc"
    assert keys.is_master_key_of(master, expected)
    assert not keys.is_master_key_of(bytes(32), expected) and not keys.is_master_key_of(master, None)
    assert env.b64url(master) not in expected  # the value is not the key


def test_node_webcrypto_passes_the_same_vectors() -> None:
    result = subprocess.run(["node", "--test", "pwa/tests/crypto.test.mjs"], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    expected = sum(len(VECTORS[g]) for g in GROUPS) + 1
    assert re.search(rf"^# pass {expected}$", result.stdout, re.M), result.stdout[-1000:]
    assert re.search(r"^# fail 0$", result.stdout, re.M)


def test_node_envelope_rules_beyond_the_vectors() -> None:
    """pwa/tests/envelope.test.mjs: the context limit, what parse() refuses, refusals naming what is wrong."""
    result = subprocess.run(["node", "--test", "pwa/tests/envelope.test.mjs"], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and re.search(r"^# fail 0$", result.stdout, re.M), result.stdout[-3000:]


@pytest.fixture(scope="module")
def static_server() -> Iterator[str]:
    with serve_project() as url:
        yield url


def test_chromium_webcrypto_passes_the_same_vectors(static_server: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            page.goto(static_server + "/pwa/README.md")
            results = page.evaluate("""async () => {
                const { runVectors } = await import('/pwa/crypto/vectors.js');
                const vectors = await (await fetch('/crypto/vectors/v1.json')).json();
                return runVectors(vectors);
            }""")
        finally:
            browser.close()
    failures = [r for r in results if not r["ok"]]
    assert not failures
    assert len(results) == sum(len(VECTORS[g]) for g in GROUPS)
