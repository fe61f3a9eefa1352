"""The CouchDB helpers, against a real pouchdb-server."""

from __future__ import annotations

from server.store.couch import Couch, bulk_save, iter_view_docs


def test_view_docs_are_paged_without_losing_or_repeating_rows(couch: Couch) -> None:
    # Regression: more rows than one page made the second page request fail (found in a fresh-clone walkthrough).
    routing = {"street": "street:s", "community": "community:c", "grid": "grid:g"}
    docs = [{"_id": f"household:g-{n:04d}", "type": "household", **routing, "address": f"{n}号"} for n in range(23)]
    docs.append({"_id": "household:other", "type": "household", **routing, "grid": "grid:other", "address": "x"})
    assert not [r for r in bulk_save(couch.main, docs) if r.error]
    paged = [d["_id"] for d in iter_view_docs(couch.main, "linli/by_place", ["grid:g", "household"], page=5)]
    assert paged == [d["_id"] for d in docs[:23]]
    exact = list(iter_view_docs(couch.main, "linli/by_place", ["grid:g", "household"], page=23))
    assert len(exact) == 23
