"""Answers kept until what they were made from changes: Open311's lists, which city systems ask again and again
with the same parameters (issue 18: 50 lists a second at 1,000,000 requests, where each list made anew reads two
view ranges and the names it prints).

Before each answer the database's changes feed since the last look is read (one request, a handful of rows): a
change to any document whose id starts with one of the given prefixes drops every kept answer. So a request
written, closed or renamed is in the very next answer (read your writes), whichever process wrote it. An answer is
also kept at most `keep_seconds` by the caller's clock, because a list's default window ("the last 90 days up to
now") moves with time, not with documents.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pycouchdb

from server.store import feed

Answer = TypeVar("Answer")


@dataclass(frozen=True)
class _Kept(Generic[Answer]):
    made_at: float
    answer: Answer
    size: int


class KeptAnswers(Generic[Answer]):
    """At most `most` answers by key, of at most `most_bytes` together (the least recently used dropped first: a
    client varying its parameters cannot fill the memory). A change of theirs drops them all and starts a new
    generation: an answer made in an earlier one (from before the change) is not kept."""

    def __init__(self, db: pycouchdb.client.Database, prefixes: Iterable[str], keep_seconds: float,
                 most: int = 256, most_bytes: int = 32 * 2**20) -> None:
        self._db = db
        self._prefixes = tuple(prefixes)
        self._keep_seconds = keep_seconds
        self._most = most
        self._most_bytes = most_bytes
        self._bytes = 0
        self._lock = threading.Lock()
        self._seq: Any = None
        self._generation = 0
        self._answers: OrderedDict[Hashable, _Kept[Answer]] = OrderedDict()

    def generation(self) -> int:
        """Take in the changes since the last look (blocking: CouchDB is asked) and say the generation now; an
        answer made after this call reflects at least every change up to it."""
        with self._lock:  # one look at a time: two would each drop what the other kept
            if self._seq is None:
                self._seq = feed.current_seq(self._db)
                return self._generation
            changed, self._seq = feed.changed_after(self._db, self._seq, self._prefixes, most=0)
            if changed is None:  # more than `most` of ours changed: with 0, any one
                self._generation += 1
                self._answers.clear()
                self._bytes = 0
            return self._generation

    def get(self, key: Hashable, now: float) -> Answer | None:
        with self._lock:
            kept = self._answers.get(key)
            if kept is None or now - kept.made_at >= self._keep_seconds:
                return None
            self._answers.move_to_end(key)
            return kept.answer

    def put(self, key: Hashable, generation: int, now: float, answer: Answer, size: int = 0) -> None:
        """Keep `answer` (`size` bytes), made from what the database held at `generation`, unless a change came
        since or it is larger than all may be together."""
        with self._lock:
            if generation != self._generation or size > self._most_bytes:
                return
            if (replaced := self._answers.pop(key, None)) is not None:
                self._bytes -= replaced.size
            self._answers[key] = _Kept(now, answer, size)
            self._bytes += size
            while len(self._answers) > self._most or self._bytes > self._most_bytes:
                self._bytes -= self._answers.popitem(last=False)[1].size
