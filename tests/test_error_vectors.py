"""The validation rules both sides share give the same errors: server/domain/declaration.py `validate` (online,
and at the sync gateway) and pwa/offline/validation.js `fieldErrors` (offline forms), over the vectors in
tests/vectors/validation.json and the one declaration (/schema.json): {field: {key, params}} each; and a service
category's questions, checked by service_requests.check_attributes and validation.js `attributeErrors`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from server.domain.declaration import ValidationError, validate
from server.domain.errors import by_field
from server.domain.i18n import MESSAGES
from server.services.service_requests import RequestError, check_attributes
from server.store.config import PROJECT_ROOT

VECTORS = json.loads((Path(__file__).parent / "vectors" / "validation.json").read_text(encoding="utf-8"))


def long_text(value: str) -> str:
    """The vectors' "LONG:n" (n times 字) or "LONG:n:c" (n times the character c)."""
    count, _, char = value.removeprefix("LONG:").partition(":")
    return (char or "字") * int(count)


def document(vector: dict[str, Any]) -> dict[str, Any]:
    doc = dict(VECTORS["bases"][vector["base"]])
    for name, value in vector["set"].items():
        if value is None:
            doc.pop(name, None)
        elif isinstance(value, str) and value.startswith("LONG:"):
            doc[name] = long_text(value)
        else:
            doc[name] = value
    for name in vector.get("null", []):
        doc[name] = None
    return doc


def python_errors(doc: dict[str, Any]) -> dict[str, Any]:
    try:
        validate(doc)
    except ValidationError as invalid:
        return by_field(invalid.errors)
    return {}


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_python_gives_the_vectors_errors(vector: dict[str, Any]) -> None:
    assert python_errors(document(vector)) == vector["errors"]


def test_every_error_key_has_both_languages() -> None:
    keys = {e["key"] for v in VECTORS["vectors"] for e in v["errors"].values()}
    assert keys and all(key in MESSAGES[lang] for key in keys for lang in MESSAGES)


def answers(vector: dict[str, Any]) -> dict[str, Any]:
    return {code: long_text(value) if isinstance(value, str) and value.startswith("LONG:")
            else value for code, value in vector["answers"].items()}


def python_attribute_errors(given: dict[str, Any]) -> dict[str, Any]:
    try:
        check_attributes(VECTORS["category"], given)
    except RequestError as bad:
        return by_field(bad.errors)
    return {}


@pytest.mark.parametrize("vector", VECTORS["attributes"], ids=lambda v: v["name"])
def test_python_checks_answers_as_the_vectors_say(vector: dict[str, Any]) -> None:
    assert python_attribute_errors(answers(vector)) == vector["errors"]


def test_node_gives_the_vectors_errors_for_forms_and_answers() -> None:
    """pwa/tests/validation.test.mjs: every vector above, documents and answers, through validation.js (with the
    declaration export_json gives the browser); its mutation testing runs the same file (tests/mutation/)."""
    result = subprocess.run(["node", "--test", "pwa/tests/validation.test.mjs"], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = {line.split(" - ", 1)[1] for line in result.stdout.splitlines() if line.startswith("ok ")}
    ran = {f"a form's fields: {v['name']}" for v in VECTORS["vectors"]} | {
        f"a category's questions: {v['name']}" for v in VECTORS["attributes"]}
    assert ran <= passed, sorted(ran - passed)
