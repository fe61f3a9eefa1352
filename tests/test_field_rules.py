"""The field rules both sides apply (server/domain/field_rules.py, pwa/offline/rules.js) give the same answers:
the shared vectors (server/domain/vectors/field_rules.json) pass in Python and in Node, and are what the
generator writes. Each path a photo takes judges it by its bytes: tests/test_page_parity.py sends a PNG
declared as JPEG and a text declared as JPEG through the web pages, the offline pages and the sync gateway."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from server.domain import field_rules
from server.domain.vectors import make_vectors
from server.store.config import PROJECT_ROOT

VECTORS = json.loads(make_vectors.PATH.read_text(encoding="utf-8"))


def test_committed_vectors_are_what_the_generator_writes() -> None:
    assert make_vectors.PATH.read_text(encoding="utf-8") == make_vectors.render(), \
        "run .venv/bin/python -m server.domain.vectors.make_vectors"


def test_vocabularies_in_the_vectors_are_the_rules_own() -> None:
    assert VECTORS["alert_actions"] == json.loads(json.dumps(field_rules.ALERT_ACTIONS))
    assert VECTORS["urgent_alert_kinds"] == list(field_rules.URGENT_ALERT_KINDS)
    assert VECTORS["task_answers"] == json.loads(json.dumps(field_rules.TASK_ANSWERS))


@pytest.mark.parametrize("case", VECTORS["needs"])
def test_python_needs_lists(case: dict) -> None:
    assert field_rules.needs_of(case["values"]) == case["needs"]


@pytest.mark.parametrize("case", VECTORS["alert_after"])
def test_python_alert_actions(case: dict) -> None:
    try:
        answer = {"after": field_rules.alert_after(case["doc"], case["action"], VECTORS["user"], VECTORS["at"])}
    except field_rules.AlertRefused as refused:
        answer = {"refused": str(refused)}
    assert answer == {k: case[k] for k in ("after", "refused") if k in case}


@pytest.mark.parametrize("case", VECTORS["alerts_in_order"])
def test_python_alert_order(case: dict) -> None:
    assert [a["_id"] for a in field_rules.alerts_in_order(case["alerts"])] == case["order"]


@pytest.mark.parametrize("case", VECTORS["task_answered"])
def test_python_task_answers(case: dict) -> None:
    try:
        answer = {"after": field_rules.task_answered(case["doc"], case["answer"], case["note"], VECTORS["at"])}
    except field_rules.TaskRefused as refused:
        answer = {"refused": str(refused)}
    assert answer == {k: case[k] for k in ("after", "refused") if k in case}


def test_the_task_vectors_cover_every_answer_and_refusal() -> None:
    """What the shared task cases rest on: each answer taken somewhere, each refusal met, the order non-trivial."""
    after = {c["after"]["status"] for c in VECTORS["task_answered"] if "after" in c}
    refused = {c["refused"] for c in VECTORS["task_answered"] if "refused" in c}
    assert after == {"accepted", "done", "declined"}
    assert refused == {"task_answer_not_allowed", "task_note_required", "task_note_too_long"}
    assert VECTORS["tasks_in_order"][0]["order"] == ["f", "d", "c", "b", "a", "e"]


@pytest.mark.parametrize("case", VECTORS["photos"], ids=lambda c: c["name"])
def test_python_photos_by_their_bytes(case: dict) -> None:
    data = base64.b64decode(case["bytes"])
    assert field_rules.sniffed_type(data) == case["sniffed"]
    assert field_rules.photo_refusal(data, case["declared"], case["max_bytes"]) == case["refusal"]


def test_node_passes_the_same_vectors() -> None:
    result = subprocess.run(["node", "--test", "pwa/tests/field_rules.test.mjs"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "# pass 6" in result.stdout and "# fail 0" in result.stdout
