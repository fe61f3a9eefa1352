"""The document a page is about, as the signed-in user may have it. One answer for every page, and the offline
app's (pwa/offline/pages.js): 404 when there is none of that type *or* the access policy (`access.may_see`) hides
it, so that a page never tells a document the user may not see from one that does not exist; 403 only when the
user may see the document but a page's own stricter rule refuses them an action on it (`allowed`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException

from server.domain.access import Principal, may_see
from server.store import queries
from server.store.couch import Couch

Doc = dict[str, Any]


def visible_doc(couch: Couch, p: Principal, doc_id: str, type_name: str,
                allowed: Callable[[Principal, Doc], bool] | None = None) -> Doc:
    doc = queries.load_doc(couch, doc_id, type_name)
    if doc is None or not may_see(p, doc):
        raise HTTPException(404)
    if allowed is not None and not allowed(p, doc):
        raise HTTPException(403)
    return doc


def visible_household(couch: Couch, p: Principal, household_id: str) -> tuple[Doc, Doc]:
    """The household and its grid: both must be visible, as on the phone, whose replica holds what may_see lets
    through and which opens the grids listed in /pwa/session.json (a volunteer moved off the grid keeps no
    household of it)."""
    household = visible_doc(couch, p, household_id, "household")
    grid = queries.load_doc(couch, household["grid"], "grid")
    if grid is None or not may_see(p, grid):
        raise HTTPException(404)
    return household, grid
