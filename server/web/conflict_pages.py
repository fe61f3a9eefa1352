"""Conflicting revisions a person resolves: the list, the versions side by side, the merge.

Phones replicate with new_edits=false, so two offline edits of one document leave two branches in
CouchDB. The sync gateway merges what its rules cover (sync/merge.py); the rest waits here. Each branch
must be visible to the user (`access.may_see`); protected-tier fields hold encrypted envelopes and are
never opened here: a person picks the version whose value to keep without seeing it.

Resolving writes the merged document as a child of the winning revision and a deletion as a child of
every losing one, in one `_bulk_docs` with new_edits=false, as replication does: a change landing between
our read and our write can then never lose a branch, at worst it leaves a new conflict that is listed
again. The page refuses when the revisions it showed are no longer the document's leaves. A resident's
search indexes, which live on the server only, are then brought in line with the numbers kept
(`Firewall.index_numbers`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server.domain.access import Principal, deletion, may_see
from server.domain.declaration import DOC_TYPES, PROTECTED_TIERS, DocType, ValidationError, validate
from server.domain.errors import FieldError, by_field
from server.security.firewall import Firewall
from server.services import deliberation
from server.store import queries
from server.store.couch import Couch, get_or_none, view_built
from server.web.preparing import built_soon

Doc = dict[str, Any]
Render = Callable[..., Response]
CurrentUser = Callable[[Request], Awaitable[Doc]]

# Set by the resolution itself (who resolved, when): shown per version, never chosen.
BOOKKEEPING = ("updated_at", "updated_by")
# Fields whose values the pages translate: the i18n key prefix of each value.
VALUE_KEYS = {"tags": "tag_", "housing": "housing_", "gender": "", "relation_to_head": "rel_",
              "elderly_care_level": "care_"}
# What names a document in the list, first found (basic or public tier only).
TITLE_FIELDS = ("name", "address", "description", "category", "kind")
TITLE_LENGTH = 60


logger = logging.getLogger("linli")


class ResolveError(Exception):
    """The resolution was refused: `message` is an i18n key, `errors` (errors.FieldError) say which fields and why,
    as pages show them; `detail` is an English explanation for the log, never shown."""

    def __init__(self, status: int, message: str, detail: str | None = None,
                 errors: list[FieldError] | None = None) -> None:
        super().__init__(detail or message)
        self.status, self.message, self.detail, self.errors = status, message, detail, by_field(errors or [])


# ---------------------------------------------------------------- reading branches

def _post(couch: Couch, path: str, body: Doc) -> Any:
    response, answer = couch.main.resource._request_response(
        "POST", path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    if response.status_code >= 400:
        raise RuntimeError(f"{path} failed with HTTP {response.status_code}: {answer}")
    return answer


def with_losers(couch: Couch, winners: list[Doc]) -> dict[str, list[Doc]]:
    """Each conflicted document's branches, the winner first, read in one `_bulk_get`."""
    wanted = [{"id": w["_id"], "rev": rev} for w in winners for rev in w.get("_conflicts", [])]
    branches = {w["_id"]: [w] for w in winners}
    if wanted:
        for result in _post(couch, "_bulk_get", {"docs": wanted})["results"]:
            branches[result["id"]].extend(d["ok"] for d in result["docs"] if "ok" in d)
    return branches


def branches_of(couch: Couch, doc_id: str) -> list[Doc] | None:
    """A document's live branches, the winner first; None if it does not exist."""
    winner = get_or_none(couch.main, doc_id, conflicts="true")
    return None if winner is None else with_losers(couch, [winner])[doc_id]


def visible_conflicts(couch: Couch, p: Principal) -> list[Doc]:
    """The conflicted documents of the user's street whose every branch the user may see, newest first (not a
    ballot's versions: each is kept and counted by precedence, listed on the matter's page)."""
    rows = couch.main.query("linli/conflicts", startkey=[p.street], endkey=[p.street, {}], include_docs="true",
                            conflicts="true", as_list=True)
    winners = [row["doc"] for row in rows if row.get("doc") and may_see(p, row["doc"])
               and row["doc"].get("type") not in deliberation.CONFLICTS_KEPT]
    listed = []
    for branches in with_losers(couch, winners).values():
        if len(branches) > 1 and all(may_see(p, b) for b in branches[1:]):
            doc_type = DOC_TYPES[branches[0]["type"]]
            listed.append({"id": branches[0]["_id"], "label_zh": doc_type.label_zh, "label_en": doc_type.label_en,
                           "title": title_of(doc_type, branches[0]), "versions": len(branches),
                           "updated_at": newest(branches)})
    return sorted(listed, key=lambda c: _instant(c["updated_at"]), reverse=True)


def title_of(doc_type: DocType, doc: Doc) -> str:
    for name in TITLE_FIELDS:
        spec = doc_type.fields.get(name)
        if spec and spec.effective_tier not in PROTECTED_TIERS and isinstance(doc.get(name), str) and doc[name]:
            return doc[name][:TITLE_LENGTH]
    return doc["_id"]


def newest(branches: list[Doc]) -> str | None:
    """The latest edit among the branches (updated_at, else created_at), as stored."""
    times = [b.get("updated_at") or b.get("created_at") for b in branches]
    return max((t for t in times if t), key=_instant, default=None)


def _instant(iso: str | None) -> dt.datetime:
    if not iso:
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    at = dt.datetime.fromisoformat(iso)
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


# ---------------------------------------------------------------- comparing

def differing_fields(branches: list[Doc]) -> list[str]:
    """The fields whose values are not the same on every branch, in declaration order (then by name)."""
    doc_type = DOC_TYPES[branches[0]["type"]]
    order = {name: i for i, name in enumerate((*doc_type.routing, "type", *doc_type.fields))}
    names = {k for b in branches for k in b if not k.startswith("_") and k not in BOOKKEEPING}
    differ = [n for n in names if any(b.get(n) != branches[0].get(n) for b in branches)]
    return sorted(differ, key=lambda n: (order.get(n, len(order)), n))


def _parts(spec_kind: str | None, name: str, value: Any) -> list[Doc]:
    """A value as display parts: an i18n key, a time for the `localtime` filter, or plain text."""
    if value is None:
        return [{"key": "empty_value"}]
    if isinstance(value, bool):
        return [{"key": "yes" if value else "no"}]
    if spec_kind == "datetime" and isinstance(value, str):
        return [{"time": value}]
    items = value if isinstance(value, list) else [value]
    if name in VALUE_KEYS and all(isinstance(item, str) for item in items):
        return [{"key": VALUE_KEYS[name] + item} for item in items] or [{"key": "empty_value"}]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [{"text": item} for item in value] or [{"key": "empty_value"}]
    if isinstance(value, str):
        return [{"text": value}]
    return [{"text": json.dumps(value, ensure_ascii=False, sort_keys=True)}]


def comparison(branches: list[Doc], chosen: dict[str, str] | None = None) -> Doc:
    """The conflict page's context: the versions and, per differing field, each version's value and the
    version chosen (the winner's unless `chosen` says otherwise)."""
    doc_type = DOC_TYPES[branches[0]["type"]]
    fields = []
    for name in differing_fields(branches):
        spec = doc_type.fields.get(name)
        protected = spec is not None and spec.effective_tier in PROTECTED_TIERS
        fields.append({
            "name": name, "protected": protected,
            "chosen": (chosen or {}).get(name, branches[0]["_rev"]),
            # Protected values are envelopes: nothing of them reaches the page.
            "cells": [{"rev": b["_rev"], "parts": [] if protected else _parts(spec and spec.kind, name, b.get(name))}
                      for b in branches],
        })
    return {"doc_id": branches[0]["_id"], "label_zh": doc_type.label_zh, "label_en": doc_type.label_en,
            "title": title_of(doc_type, branches[0]), "rev": branches[0]["_rev"],
            "conflicts": [b["_rev"] for b in branches[1:]], "fields": fields,
            "versions": [{"rev": b["_rev"], "updated_at": b.get("updated_at") or b.get("created_at"),
                          "editor": b.get("updated_by") or b.get("created_by")} for b in branches]}


# ---------------------------------------------------------------- resolving

def choices_from(form: FormData, branches: list[Doc]) -> dict[str, str]:
    """Per differing field, the revision whose value to keep; refused if the form names none or another."""
    revs = {b["_rev"] for b in branches}
    chosen = {name: str(form.get(name, "")) for name in differing_fields(branches)}
    missing = sorted(name for name, rev in chosen.items() if rev not in revs)
    if missing:
        raise ResolveError(400, "conflict_choose", errors=[FieldError(name, "err_choose_version") for name in missing])
    return chosen


def check_unchanged(branches: list[Doc], form: FormData) -> None:
    """Refuse if the document's leaves are no longer the revisions the page showed."""
    seen = (str(form.get("_rev", "")), sorted(str(r) for r in form.getlist("_conflicts")))
    if len(branches) < 2 or seen != (branches[0]["_rev"], sorted(b["_rev"] for b in branches[1:])):
        raise ResolveError(409, "conflict_changed")


def merged(branches: list[Doc], chosen: dict[str, str], p: Principal, now: dt.datetime) -> Doc:
    """The winner with each differing field taken from the chosen branch, stamped as the resolver's edit."""
    doc = _chosen(branches, chosen)
    fields = DOC_TYPES[doc["type"]].fields
    if "updated_at" in fields:
        doc["updated_at"] = now.isoformat()
    if "updated_by" in fields:
        doc["updated_by"] = p.user_id
    return doc


def _chosen(branches: list[Doc], chosen: dict[str, str]) -> Doc:
    """The winner with each differing field taken from the chosen branch: values all stored already."""
    by_rev = {b["_rev"]: b for b in branches}
    doc = {k: v for k, v in branches[0].items() if k not in ("_rev", "_conflicts", "_revisions")}
    for name, rev in chosen.items():
        if name in by_rev[rev]:
            doc[name] = by_rev[rev][name]
        else:
            doc.pop(name, None)
    return doc


def _child(parent_rev: str, body: Doc) -> Doc:
    """body as the next revision after parent_rev, for new_edits=false. The id is derived from the parent
    and the content, so the same resolution submitted twice writes the same revision, not a new conflict."""
    depth, parent_hash = parent_rev.split("-", 1)
    digest = hashlib.md5(json.dumps([parent_rev, body], sort_keys=True).encode(), usedforsecurity=False).hexdigest()
    start = int(depth) + 1
    return {**body, "_rev": f"{start}-{digest}", "_revisions": {"start": start, "ids": [digest, parent_hash]}}


def resolve(couch: Couch, p: Principal, branches: list[Doc], chosen: dict[str, str], now: dt.datetime) -> Doc:
    """Store the merged document and end every losing branch; returns the merged document."""
    doc = merged(branches, chosen, p, now)
    try:
        validate(doc)
    except ValidationError as invalid:
        raise ResolveError(400, "conflict_invalid", errors=invalid.errors) from None
    # Judged as an edit of the chosen values, each stored already in its branch (an alert acknowledged by another
    # person on the other branch stays theirs): what is new is the resolver's stamp.
    refusal = queries.refusal_to_store(couch, p, {**_chosen(branches, chosen), "_rev": branches[0]["_rev"]}, doc, now)
    if refusal:
        raise ResolveError(403, "conflict_refused", refusal)
    writes = [_child(branches[0]["_rev"], doc)]
    for loser in branches[1:]:
        tombstone = {k: v for k, v in deletion(loser).items() if k != "_rev"}
        writes.append(_child(loser["_rev"], tombstone))
    failed = _post(couch, "_bulk_docs", {"docs": writes, "new_edits": False})  # only failures are answered
    if failed:
        raise ResolveError(409, "conflict_changed", "; ".join(f"{r.get('error')}: {r.get('reason')}" for r in failed))
    return doc


# ---------------------------------------------------------------- pages

def routes(firewall: Firewall, current_user: CurrentUser, render: Render,
           now: Callable[[], dt.datetime]) -> list[Route]:
    couch = firewall.couch

    async def list_page(request: Request) -> Response:
        p = Principal.of(await current_user(request))
        if not await built_soon(view_built(couch.main, "conflicts")):  # first start: said, not waited for
            return render(request, "conflicts.html", 202, conflicts=[], resolved=None, preparing=True)
        conflicts = await run_in_threadpool(visible_conflicts, couch, p)
        return render(request, "conflicts.html", conflicts=conflicts,
                      resolved=request.query_params.get("resolved"), preparing=False)

    async def visible_branches(request: Request, p: Principal) -> list[Doc]:
        branches = await run_in_threadpool(branches_of, couch, request.path_params["doc_id"])
        # One not to be seen is answered as one that is not there (server/web/lookup.py).
        if branches is None or branches[0].get("type") not in DOC_TYPES or not all(may_see(p, b) for b in branches):
            raise HTTPException(404)
        return branches

    async def show(request: Request, p: Principal, branches: list[Doc], chosen: dict[str, str] | None = None,
                   error: ResolveError | None = None) -> Response:
        context = comparison(branches, chosen)
        editors = {v["editor"] for v in context["versions"] if v["editor"]}
        names = await run_in_threadpool(queries.user_names, couch, editors)
        for version in context["versions"]:
            version["editor"] = names.get(version["editor"], version["editor"])
        return render(request, "conflict.html", error.status if error else 200, **context,
                      may_resolve=await run_in_threadpool(queries.refusal_to_store, couch, p, branches[0],
                                                          branches[0], now()) is None,
                      message=error.message if error else None, errors=error.errors if error else {},
                      shown_fields=[f["name"] for f in context["fields"]])

    async def detail_page(request: Request) -> Response:
        p = Principal.of(await current_user(request))
        return await show(request, p, await visible_branches(request, p))

    async def resolve_page(request: Request) -> Response:
        p = Principal.of(await current_user(request))
        branches = await visible_branches(request, p)
        form = await request.form()
        chosen = None
        try:
            check_unchanged(branches, form)
            chosen = choices_from(form, branches)
            doc = await run_in_threadpool(resolve, couch, p, branches, chosen, now())
            if doc["type"] == "resident":  # its search indexes follow the numbers kept
                await run_in_threadpool(firewall.index_numbers, [doc])
        except ResolveError as refused:
            if refused.detail:  # names fields and rights, never values
                logger.info("conflict on %s not resolved: %s", branches[0]["_id"], refused.detail)
            # Changed meanwhile: show the versions as they are now, with the default choices.
            return await show(request, p, branches, None if refused.status == 409 else chosen, refused)
        return RedirectResponse("/conflicts?resolved=1", status_code=303)

    return [
        Route("/conflicts", list_page),
        Route("/conflicts/{doc_id}", detail_page, methods=["GET"]),
        Route("/conflicts/{doc_id}", resolve_page, methods=["POST"]),
    ]
