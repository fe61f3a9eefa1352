"""What a phone and the server agree on about phone keys (tests/vectors/phone_keys.json, written by hand; Node runs
the same vectors in pwa/tests/keys.test.mjs): which searchable field a typed number is, and a grant's id."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from server.security.firewall import number_field
from server.security.grants import grant_id
from server.store.config import PROJECT_ROOT

VECTORS = json.loads((Path(__file__).parent / "vectors" / "phone_keys.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("vector", VECTORS["number_field"], ids=lambda v: repr(v["text"]))
def test_a_typed_number_is_the_field_the_phone_says_it_is(vector: dict) -> None:
    assert number_field(vector["text"]) == vector["field"]


@pytest.mark.parametrize("vector", VECTORS["grant_id"], ids=lambda v: v["id"])
def test_a_grant_id_is_the_phones(vector: dict) -> None:
    assert grant_id(vector["phone_key"], vector["resident"], vector["tier"]) == vector["id"]


def test_node_keys_js_passes_the_same_vectors_and_its_rules() -> None:
    """pwa/tests/keys.test.mjs: these vectors, and keys.js's phone key, grants, pinned installation key."""
    result = subprocess.run(["node", "--test", "pwa/tests/keys.test.mjs"], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and re.search(r"^# fail 0$", result.stdout, re.M), result.stdout[-3000:]
