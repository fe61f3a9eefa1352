"""Answers kept until what they were made from changes (server/web/kept_answers.py), against a real CouchDB:
kept while nothing of theirs changes, dropped by a change of theirs, never kept from before a change, kept at most
so long, and never more than so many or so large together."""

from __future__ import annotations

from server.store.couch import Couch
from server.web.kept_answers import KeptAnswers


def test_an_answer_is_kept_until_a_document_it_names_changes(couch: Couch) -> None:
    kept: KeptAnswers[str] = KeptAnswers(couch.main, ("service_request:",), keep_seconds=60)
    generation = kept.generation()
    kept.put("list", generation, 0.0, "answer")
    couch.main.save({"_id": "household:a", "type": "household"})  # not one it is made from
    assert kept.get("list", 1.0) == "answer"
    couch.main.save({"_id": "service_request:a", "type": "service_request"})
    generation = kept.generation()
    assert kept.get("list", 2.0) is None
    kept.put("list", generation, 2.0, "new answer")
    assert kept.get("list", 3.0) == "new answer"


def test_an_answer_made_before_a_change_is_not_kept(couch: Couch) -> None:
    kept: KeptAnswers[str] = KeptAnswers(couch.main, ("service_request:",), keep_seconds=60)
    before = kept.generation()  # a list is being made from what was there...
    couch.main.save({"_id": "service_request:b", "type": "service_request"})  # ...when another client writes
    kept.generation()
    kept.put("list", before, 0.0, "made before")
    assert kept.get("list", 0.0) is None


def test_an_answer_is_kept_at_most_keep_seconds_and_the_least_used_goes_first(couch: Couch) -> None:
    kept: KeptAnswers[str] = KeptAnswers(couch.main, ("service_request:",), keep_seconds=60, most=2)
    generation = kept.generation()
    kept.put("a", generation, 0.0, "A")
    assert kept.get("a", 59.9) == "A"
    assert kept.get("a", 60.0) is None
    kept.put("b", generation, 100.0, "B")
    kept.put("c", generation, 100.0, "C")
    assert kept.get("b", 100.0) == "B"  # b used: c is now the least recently used
    kept.put("d", generation, 100.0, "D")
    assert [kept.get(k, 100.0) for k in "bcd"] == ["B", None, "D"]


def test_answers_are_kept_within_their_bytes_together_and_one_too_large_is_not_kept(couch: Couch) -> None:
    kept: KeptAnswers[str] = KeptAnswers(couch.main, ("service_request:",), keep_seconds=60, most_bytes=100)
    generation = kept.generation()
    kept.put("a", generation, 0.0, "A", size=60)
    kept.put("a", generation, 0.0, "A again", size=60)  # the same key kept anew: counted once
    kept.put("b", generation, 0.0, "B", size=40)
    assert [kept.get(k, 0.0) for k in "ab"] == ["A again", "B"]
    kept.put("c", generation, 0.0, "C", size=30)  # 130 bytes: the least recently used (a) goes
    assert [kept.get(k, 0.0) for k in "abc"] == [None, "B", "C"]
    kept.put("d", generation, 0.0, "D", size=101)  # larger than all may be: not kept, nothing dropped for it
    assert [kept.get(k, 0.0) for k in "bcd"] == ["B", "C", None]
