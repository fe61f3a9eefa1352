"""A voucher honoured at the partner's counter, as the server and the partner's phone offline see it
(tests/vectors/redemption.json, written by hand; Node runs the same vectors against pwa/offline/rewards.js in
pwa/tests/rewards.test.mjs): the redemption's id, why a second use is refused, and that what the phone writes is
what the sync gateway takes."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from server.domain import points
from server.domain.access import _redemption_refusal
from server.domain.declaration import validate
from server.store.config import PROJECT_ROOT

VECTORS = json.loads((Path(__file__).parent / "vectors" / "redemption.json").read_text(encoding="utf-8"))


def test_the_signed_code_and_the_partner_are_the_vouchers() -> None:
    voucher, signed = VECTORS["voucher"], VECTORS["signed"]
    assert (signed["id"], signed["reward"], signed["organisation"], signed["points"]) == (
        voucher["_id"], voucher["reward"], voucher["organisation"], voucher["points"])
    assert (VECTORS["organisation"]["street"], VECTORS["organisation"]["community"]) == (
        voucher["street"], voucher["community"])


@pytest.mark.parametrize("held", ["held", "not_held"])
def test_what_the_phone_writes_is_what_the_gateway_takes(held: str) -> None:
    doc, voucher = VECTORS["written"][held], VECTORS["voucher"]
    validate(doc)
    assert doc["_id"] == points.redemption_id(voucher["_id"])
    assert _redemption_refusal(None, doc, {voucher["_id"]: voucher}) is None
    # and the one the server writes online (server/services/rewards.py use) differs only in its time
    online = {"_id": doc["_id"], "type": "redemption", "street": voucher["street"], "community": voucher["community"],
              "voucher": voucher["_id"], "reward": voucher["reward"], "organisation": voucher["organisation"],
              "holder": voucher["holder"], "created_by": VECTORS["user"], "created_at": VECTORS["at"]}
    assert doc == ({k: v for k, v in online.items() if k != "holder"} if held == "not_held" else online)


def test_a_redemption_is_named_by_its_voucher() -> None:
    assert [[voucher, points.redemption_id(voucher)] for voucher, _ in VECTORS["ids"]] == VECTORS["ids"]


@pytest.mark.parametrize("case", VECTORS["second_uses"], ids=lambda c: c["name"])
def test_a_second_use_is_refused_as_the_phone_refuses_it(case: dict[str, Any]) -> None:
    assert list(points.second_use_refusal(case["first"])) == case["refusal"]


def test_node_passes_the_same_vectors() -> None:
    result = subprocess.run(["node", "--test", "pwa/tests/rewards.test.mjs"], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    expected = len(VECTORS["second_uses"]) + 2  # and the redemption written, the ids
    assert re.search(rf"^# pass {expected}$", result.stdout, re.M) and re.search(r"^# fail 0$", result.stdout, re.M)
