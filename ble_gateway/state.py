"""Small JSON records the gateway must not forget across restarts (rule episodes, last stored readings).

Changes are collected here and written by the outbox in the same SQLite transaction as the documents
they produced, so after a power cut the state and the documents agree.
"""

from __future__ import annotations

from typing import Any


class DurableState:
    def __init__(self, records: dict[str, dict[str, Any]] | None = None) -> None:
        self._records = dict(records or {})
        self._dirty: set[str] = set()

    def get(self, key: str) -> dict[str, Any] | None:
        return self._records.get(key)

    def put(self, key: str, record: dict[str, Any]) -> None:
        self._records[key] = record
        self._dirty.add(key)

    def items_with_prefix(self, prefix: str) -> list[tuple[str, dict[str, Any]]]:
        return [(k, v) for k, v in self._records.items() if k.startswith(prefix)]

    def take_dirty(self) -> dict[str, dict[str, Any]]:
        """The records changed since the last call (for the outbox to write)."""
        dirty = {key: self._records[key] for key in self._dirty}
        self._dirty.clear()
        return dirty
