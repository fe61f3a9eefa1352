"""The one shape of an error a person can correct: which field, which message key, with which parameters.

Pages render it through the translator (i18n.py) in the reader's language next to the field it names
(templates/_errors.html); the offline app (pwa/offline/pages.js) builds the same triples for the same mistakes
(tests/vectors/validation.json pins that). `str()` gives the English text, for operators, logs and APIs
(`linli validate`, the sync gateway's refusals, Open311).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from server.domain.i18n import translator

Params = Mapping[str, str | int]


@dataclass(frozen=True)
class FieldError:
    field: str  # the form input (or document field) it belongs to
    key: str  # a message key of i18n.MESSAGES
    params: Params = field(default_factory=dict)

    def text(self, lang: str = "en") -> str:
        return translator(lang)(self.key, self.params)

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "params": dict(self.params)}

    def __str__(self) -> str:
        return f"{self.field}: {self.text()}"


class UserError(ValueError):
    """Input a person can correct. `errors` names each bad field; `status` is the HTTP answer (400, or 403 when
    the person may not do this at all)."""

    def __init__(self, errors: list[FieldError], status: int = 400) -> None:
        self.errors = errors
        self.status = status
        super().__init__("; ".join(str(e) for e in errors))


def by_field(errors: Iterable[FieldError]) -> dict[str, dict[str, Any]]:
    """What templates read: {field: {"key", "params"}}, the first error of each field."""
    shown: dict[str, dict[str, Any]] = {}
    for error in errors:
        shown.setdefault(error.field, error.as_json())
    return shown
