"""Every log line the test run writes, scanned at its end for protected plaintext (issue 20: "never log plaintext
of protected fields"): conftest.py installs `KEEPER` on the root logger when the run starts and fails the run in
`pytest_sessionfinish` if a line holds a protected value of the test streets. The `linli serve` processes tests
start add theirs: what tests/test_serve.py `stop` read of one (`keep_output`), the log file of the sync tests'
(tests/sync_harness.py, `LOG_FILES`).

The values looked for are the protected fields of the hand-made street (tests/street.py) and of the small demo
(conftest.DEMO_SIZE), as their generators make them before sealing: 8 characters or more (phone and ID numbers,
addresses, notes), so that a common word that is also a field's value does not raise a false alarm.

The servers' output is also scanned for tracebacks (`tracebacks`): an exception no code path caught is a bug
whichever test's request met it, and the test may well have passed (its answer a 500 it did not look at, or a
background task's failure it never saw); the run fails showing the traceback whole.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from crypto.fields import protected_fields
from server.domain.declaration import DOC_TYPES

MIN_LENGTH = 8
SERVED_RESIDENTS = 400  # the demo of the `linli serve` tests start (tests/test_serve.py): its values are looked for


class LogKeeper(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(logging.Formatter().format(record))  # the message and any traceback
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is kept as its raw message
            self.lines.append(str(record.msg))


KEEPER = LogKeeper()
LOG_FILES: list[Path] = []  # subprocesses' logs, read at the end of the run


SERVED_OUTPUT: list[str] = []  # what tests/test_serve.py `stop` read of the `linli serve` processes it stopped


def keep_output(text: str) -> None:
    """A `linli serve` process's output, scanned with this process's log lines."""
    SERVED_OUTPUT.extend(text.splitlines())


def served_lines() -> Iterator[str]:
    """What the `linli serve` processes the tests started printed."""
    yield from SERVED_OUTPUT
    for path in LOG_FILES:
        if path.exists():
            yield from path.read_text(encoding="utf-8", errors="replace").splitlines()


def scanned_lines() -> Iterator[str]:
    yield from KEEPER.lines
    yield from served_lines()


def tracebacks(lines: Iterable[str]) -> list[str]:
    """Each traceback in these lines, whole: from "Traceback (most recent call last):" to the exception's line (the
    first after it that is not indented)."""
    found: list[list[str]] = []
    inside = False
    for line in lines:
        if "Traceback (most recent call last):" in line:
            found.append([line])
            inside = True
        elif inside:
            found[-1].append(line)
            inside = line.startswith((" ", "\t")) or not line.strip()
    return ["\n".join(block) for block in found]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def protected_values(docs: Iterable[dict[str, Any]]) -> set[str]:
    """The plaintext of every protected field of these (unsealed) documents, 8 characters or longer."""
    found: set[str] = set()
    for doc in docs:
        if doc.get("type") in DOC_TYPES:
            for name in protected_fields(doc["type"]):
                found.update(s for s in _strings(doc.get(name)) if len(s) >= MIN_LENGTH)
    return found


def leaks(lines: Iterable[str], values: set[str]) -> list[tuple[str, str]]:
    """(value, line) for every line that holds one of the values."""
    return [(value, line) for line in lines for value in values if value in line]
