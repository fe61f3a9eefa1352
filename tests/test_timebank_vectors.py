"""Why a claim may not be made, as the server and the offline phone say it (tests/vectors/timebank_claim.json,
written by hand; Node runs the same vectors against pwa/offline/timebank.js in pwa/tests/timebank.test.mjs):
timebank.claim_refusal, the hours typed (timebank_pages._minutes) and shown (timebank.hours_text)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from server.domain import timebank
from server.store.config import PROJECT_ROOT
from server.web.timebank_pages import _minutes

VECTORS = json.loads((Path(__file__).parent / "vectors" / "timebank_claim.json").read_text(encoding="utf-8"))


def with_changes(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    doc = {**base, **changes}
    return {name: value for name, value in doc.items() if value is not None}


def test_the_vectors_state_the_servers_rules_and_a_good_code() -> None:
    rules = timebank.offline_rules()
    assert VECTORS["rules"] == {name: rules[name] for name in VECTORS["rules"]}
    assert timebank.code_number(VECTORS["lock"], VECTORS["good_code"]) == 0


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_a_claim_is_refused_as_the_phone_refuses_it(case: dict[str, Any]) -> None:
    claim = with_changes(VECTORS["claim"], case["set"]) | dict.fromkeys(case.get("nulls", []))
    task = None if "task" in case else with_changes(VECTORS["task"], case.get("task_set", {}))
    refusal = timebank.claim_refusal(VECTORS["writer"], claim, task, VECTORS["lock"])
    assert (list(refusal) if refusal else None) == case["refusal"]


@pytest.mark.parametrize(("typed", "minutes"), VECTORS["typed"], ids=repr)
def test_hours_are_read_as_the_phone_reads_them(typed: str, minutes: int | str) -> None:
    assert _minutes(typed) == minutes


@pytest.mark.parametrize(("minutes", "shown"), VECTORS["shown"], ids=repr)
def test_hours_are_shown_as_the_phone_shows_them(minutes: int, shown: str) -> None:
    assert timebank.hours_text(minutes) == shown


def test_node_passes_the_same_vectors() -> None:
    result = subprocess.run(["node", "--test", "pwa/tests/timebank.test.mjs"], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    expected = len(VECTORS["cases"]) + 2  # and the hours typed, the hours shown
    assert re.search(rf"^# pass {expected}$", result.stdout, re.M) and re.search(r"^# fail 0$", result.stdout, re.M)
