"""Background sweeps carry on past one document: a conflict (another process changed it first) or an error on
one is logged in one line, counted, and left for the next sweep, never stopping the rest (issue 24).

`each` is what every minute part's loop runs through (server/services/*, server/security/filing.py); the counts
since the process started reach `/healthz` (server/store/health.py) and `/metrics` (server/web/observability.py).
The log line names the part, the document id and the error's type, never the error's text: that could quote a
document's values.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from server.store.couch import UNREACHABLE

logger = logging.getLogger("linli.sweeps")
Item = TypeVar("Item")
Result = TypeVar("Result")

_skipped: Counter[str] = Counter()  # documents skipped, by sweep part, since the process started


def each(part: str, items: Iterable[Item], act: Callable[[Item], Result]) -> list[Result]:
    """`act` on every item, in order; what it returns, for the items it did not fail on. A database that stops
    answering stops the sweep (the clock logs that once); any other failure skips that one item."""
    done: list[Result] = []
    for item in items:
        try:
            done.append(act(item))
        except UNREACHABLE:
            raise
        except Exception as error:  # noqa: BLE001 - one document must not stop a sweep; the next one retries it
            _skipped[part] += 1
            logger.warning("sweep %s: skipped %s (%s); the next sweep tries it again", part, _name(item),
                           type(error).__name__)
    return done


def _name(item: Any) -> str:
    """An item's id: a document's `_id`, an id as it is, a tuple's parts' (a community and a month)."""
    if isinstance(item, dict):
        return str(item.get("_id", "?"))
    return " ".join(map(_name, item)) if isinstance(item, tuple) else str(item)


def skipped() -> dict[str, int]:
    """Documents each sweep part skipped since the process started."""
    return dict(_skipped)
