"""Why a category of a resident's record stays closed on a phone with no usable key grant for it, as the firewall
says it and as the phone says it offline (tests/vectors/entitlement_offline.json; Node runs the same vectors against
pwa/offline/entitlement.js in pwa/tests/entitlement.test.mjs): entitlement.entitlement's reason where it refuses,
"no key yet" where it would open."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from server.domain.access import Principal, may_see
from server.domain.declaration import DOC_TYPES
from server.domain.entitlement import CATEGORY_FIELDS, entitlement, privacy_choices
from server.security.grants import phones_carry_keys
from server.store.config import PROJECT_ROOT

VECTORS = json.loads((Path(__file__).parent / "vectors" / "entitlement_offline.json").read_text(encoding="utf-8"))


def test_the_vectors_state_the_declarations_tiers_and_whose_phones_hold_keys() -> None:
    fields = DOC_TYPES["resident"].fields
    assert VECTORS["tiers"] == {category: fields[names[0]].effective_tier.value
                                for category, names in CATEGORY_FIELDS.items()}
    for user in VECTORS["users"].values():
        p = Principal.of(user)
        assert user["phone_keys"] is phones_carry_keys(p) and may_see(p, VECTORS["resident"])


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_a_closed_category_is_explained_as_the_firewall_explains_it(case: dict[str, Any]) -> None:
    found = entitlement(Principal.of(VECTORS["users"][case["user"]]), VECTORS["resident"], case["category"],
                        privacy_choices(case["privacy"]), VECTORS["requests"][case["requests"]],
                        dt.datetime.fromisoformat(VECTORS["now"]))
    assert ("fw_offline_no_key" if found.allowed else found.reason) == case["reason"]


def test_node_passes_the_same_vectors() -> None:
    result = subprocess.run(["node", "--test", "pwa/tests/entitlement.test.mjs"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    expected = len(VECTORS["cases"]) + 1  # and the approvals' test
    assert re.search(rf"^# pass {expected}$", result.stdout, re.M) and re.search(r"^# fail 0$", result.stdout, re.M)
