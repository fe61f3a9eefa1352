"""The sync gateway's routes: the CouchDB replication protocol as PouchDB 9 uses it, per user.

Mounted at `/sync` inside the web application (so the web session's cookie
works), the database is `/sync/main`. Every handler first asks who is asking
(`auth.principal`), then answers only with what `server.domain.access.may_see` lets
that user see; a document outside it is indistinguishable from one that does
not exist.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.domain import migrations
from server.domain.access import Principal, may_see
from server.domain.declaration import MAIN_DB
from server.domain.http_headers import attachment_answer
from server.security.sessions import csrf_token
from server.store.config import Settings
from server.store.couch import UNREACHABLE
from server.store.health import Health

from . import merge, purges, writes
from .auth import principal
from .changes import changes
from .ciphertext import CiphertextCheck
from .codes import CodeKey
from .hub import ChangesHub
from .jsonio import FastJSONResponse
from .principals import PrincipalCache
from .protocol import (
    MAX_IDS,
    ProtocolError,
    bad_request,
    bool_param,
    encode_seq,
    json_body,
    not_found,
    string_list,
)
from .upstream import Upstream, UpstreamError, doc_path

MAX_LOCAL_BYTES = 1024 * 1024
AfterWrite = Callable[[list[dict[str, Any]]], Awaitable[None]]
# Given the writer and the claims refused for a wrong in-person code: the server counts them against the resident.
AfterCodeMiss = Callable[[str, list[dict[str, Any]]], Awaitable[None]]
logger = logging.getLogger("linli.sync")
DOC_PARAMS = ("rev", "revs", "open_revs", "latest", "attachments", "conflicts")


def _missing(wanted: dict[str, Any]) -> dict[str, Any]:
    """Apache CouchDB's _bulk_get entry for a missing document, built from the request alone, so that it is
    the same for a hidden one (never its current `_rev`) and for an unknown one (pouchdb-server says `{}`
    or `{"missing": rev}` there)."""
    return {"error": {"id": wanted["id"], "rev": wanted.get("rev", "undefined"), "error": "not_found",
                      "reason": "missing"}}


def _visible(p: Principal, entry: dict[str, Any]) -> bool:
    """A _bulk_get entry to pass on as it is: a document the user may see, or an error other than "missing"."""
    if "ok" in entry:
        return may_see(p, entry["ok"])
    return "error" in entry and entry["error"].get("error") != "not_found"


def _answers_by_id(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """CouchDB's _bulk_get answers, each document's entries together.

    Apache CouchDB answers once per requested entry, but pouchdb-server once per id (one id asked twice,
    or at two revisions, gets one answer), so answers are matched to requests by id and rev, never by position.
    """
    by_id: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        by_id.setdefault(result["id"], []).extend(result["docs"])
    return by_id


def _answer_for(wanted: dict[str, Any], fetched: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    entries = fetched.get(wanted["id"], [])
    if "rev" in wanted:  # (with latest=true the answer may be a later revision: then all of them)
        entries = [e for e in entries if (e.get("ok") or e.get("error") or {}).get(
            "_rev" if "ok" in e else "rev") == wanted["rev"]] or entries
    return {"id": wanted["id"], "docs": [dict(e) for e in entries]}


class Gateway:
    """The handlers, bound to one CouchDB and one changes follower."""

    def __init__(self, settings: Settings, couch_url: str, after_write: AfterWrite | None = None,
                 after_code_miss: AfterCodeMiss | None = None) -> None:
        self.after_write = after_write
        self.after_code_miss = after_code_miss
        self.upstream = Upstream(settings, couch_url)
        self.hub = ChangesHub(self.upstream)
        self.ciphertext = CiphertextCheck(self.upstream, settings.master_keys)
        self.codes = CodeKey(self.upstream, settings.master_keys)
        self.principals = PrincipalCache()
        # Stable across processes behind a load balancer: PouchDB folds it into its replication ids.
        self.uuid = hashlib.sha256(f"linli-sync:{settings.db_prefix}".encode()).hexdigest()[:32]

    async def _user(self, request: Request) -> Principal:
        if request.path_params.get("db", MAIN_DB) != MAIN_DB:
            raise not_found("Database does not exist.")
        return await principal(request, self.upstream, self.principals)

    async def root(self, request: Request) -> Response:
        return FastJSONResponse({"couchdb": "Welcome", "uuid": self.uuid, "vendor": {"name": "Linli sync gateway"}})

    async def session(self, request: Request) -> Response:
        """Who the gateway takes the caller for, and (cookie sessions) the CSRF token writes must send."""
        p = await principal(request, self.upstream, self.principals)
        token = None if request.headers.get("authorization") else csrf_token(request.scope["session"])
        return FastJSONResponse({"ok": True, "userCtx": {"name": p.user_id, "roles": sorted(r.value for r in p.roles)},
                             "csrf_token": token})

    async def db_info(self, request: Request) -> Response:
        p = await self._user(request)
        if request.method == "PUT":
            raise ProtocolError(412, "file_exists", "The database could not be created, the file already exists.")
        info = await self.upstream.call("GET", self.upstream.main)
        # Counts would tell a phone how big the rest of the street is: only the sequence is shared.
        return FastJSONResponse({"db_name": MAIN_DB, "update_seq": encode_seq(p, info["update_seq"]),
                             "instance_start_time": "0"})

    async def create_other_db(self, request: Request) -> Response:
        raise ProtocolError(403, "forbidden", "the sync gateway serves only the database 'main'")

    # ------------------------------------------------------------ checkpoints

    def _local_id(self, p: Principal, request: Request) -> str:
        local_id = request.path_params["local_id"]
        if not 0 < len(local_id) <= 200:
            raise bad_request("a _local document id must have 1 to 200 characters")
        # Namespaced per user: nobody can name, read or overwrite another user's checkpoints.
        owner = hashlib.sha256(p.user_id.encode()).hexdigest()[:20]
        return f"_local/{owner}.{local_id}"

    async def local(self, request: Request) -> Response:
        p = await self._user(request)
        stored_id = self._local_id(p, request)
        path = "_local/" + doc_path(stored_id.removeprefix("_local/"))
        shown_id = "_local/" + request.path_params["local_id"]
        if request.method == "GET":
            doc = await self.upstream.call("GET", self.upstream.main, path)
            if doc is None:
                raise not_found()
            return FastJSONResponse({**doc, "_id": shown_id})
        if request.method == "DELETE":
            rev = request.query_params.get("rev")
            answer = await self.upstream.call("DELETE", self.upstream.main, path, params={"rev": rev} if rev else None,
                                              ok=(200, 409))
            if answer is None:
                raise not_found()
            return FastJSONResponse({**answer, "id": shown_id}, status_code=409 if "error" in answer else 200)
        if int(request.headers.get("content-length") or 0) > MAX_LOCAL_BYTES:
            raise ProtocolError(413, "too_large", f"a _local document may have at most {MAX_LOCAL_BYTES} bytes")
        body = await json_body(request, limit=MAX_LOCAL_BYTES)  # the bound again, decoded (a compressed body)
        answer = await self.upstream.call("PUT", self.upstream.main, path, body={**body, "_id": stored_id},
                                          ok=(201, 409))
        return FastJSONResponse({**answer, "id": shown_id}, status_code=409 if "error" in answer else 201)

    # ------------------------------------------------------------ reading

    async def changes(self, request: Request) -> Response:
        return await changes(request, await self._user(request), self.upstream, self.hub)

    async def revs_diff(self, request: Request) -> Response:
        p = await self._user(request)
        body = await json_body(request)
        if len(body) > MAX_IDS:
            raise bad_request(f"_revs_diff asks about {len(body)} documents; at most {MAX_IDS} per request")
        for doc_id, revs in body.items():
            string_list(revs, f"the revisions of {doc_id!r}")
        current = await self.upstream.winners(body)
        seen = {doc_id: revs for doc_id, revs in body.items() if doc_id in current and may_see(p, current[doc_id])}
        answer = await self.upstream.call("POST", self.upstream.main, "_revs_diff", body=seen) if seen else {}
        # Outside the user's scope, or unknown: every revision is "missing", as for a document that does not exist.
        answer.update({doc_id: {"missing": revs} for doc_id, revs in body.items() if doc_id not in seen})
        return FastJSONResponse(answer)

    async def bulk_get(self, request: Request) -> Response:
        p = await self._user(request)
        requested = (await json_body(request)).get("docs")
        if not isinstance(requested, list) or len(requested) > MAX_IDS or not all(
                isinstance(d, dict) and isinstance(d.get("id"), str) and d["id"]
                and isinstance(d.get("rev", ""), str) for d in requested):
            raise bad_request(f"docs must be a list of at most {MAX_IDS} objects with a string id (and rev)")
        params = {name: "true" for name in ("revs", "attachments", "latest") if bool_param(request, name)}
        results = [self._recent(d, params) for d in requested]
        misses = [d for d, result in zip(requested, results, strict=True) if result is None]
        if misses:  # one request for the whole batch, never one per document
            answer = await self.upstream.call("POST", self.upstream.main, "_bulk_get", params=params,
                                              body={"docs": [{k: d[k] for k in ("id", "rev", "atts_since") if k in d}
                                                             for d in misses]})
            fetched = _answers_by_id(answer["results"])
            results = [result if result is not None else _answer_for(wanted, fetched)
                       for wanted, result in zip(requested, results, strict=True)]
        for wanted, result in zip(requested, results, strict=True):
            result["docs"] = [entry if _visible(p, entry) else _missing(wanted) for entry in result["docs"]]
        return FastJSONResponse({"results": results})

    def _recent(self, wanted: dict[str, Any], params: dict[str, str]) -> dict[str, Any] | None:
        """A _bulk_get result from the revisions just read (`revisions.py`), or None to ask CouchDB."""
        if "attachments" in params or "atts_since" in wanted or "rev" not in wanted:
            return None  # attachment bodies and "the current revision" are CouchDB's to answer
        doc = self.upstream.recent.get(wanted["id"], wanted["rev"])
        if doc is None:
            return None
        if "revs" not in params:
            doc = {k: v for k, v in doc.items() if k != "_revisions"}
        return {"id": wanted["id"], "docs": [{"ok": doc}]}

    async def get_doc(self, request: Request) -> Response:
        p = await self._user(request)
        doc_id = request.path_params["doc_id"]
        if doc_id.startswith("_"):  # _all_docs, _design, _find …: not offered
            return await self.unsupported(request)
        params = {k: v for k, v in request.query_params.items() if k in DOC_PARAMS}
        answer = await self.upstream.get(self.upstream.main, doc_id, **params)
        if "open_revs" in params and isinstance(answer, list):
            return FastJSONResponse([entry if "ok" not in entry or may_see(p, entry["ok"])
                                 else {"missing": entry["ok"].get("_rev")} for entry in answer])
        if not isinstance(answer, dict) or not may_see(p, answer):
            raise not_found()
        return FastJSONResponse(answer)

    async def get_attachment(self, request: Request) -> Response:
        p = await self._user(request)
        doc_id, name = request.path_params["doc_id"], request.path_params["attachment"]
        if doc_id.startswith("_"):
            return await self.unsupported(request)
        rev = request.query_params.get("rev")
        doc = await self.upstream.get(self.upstream.main, doc_id, **({"rev": rev} if rev else {}))
        if not isinstance(doc, dict) or not may_see(p, doc) or name not in doc.get("_attachments", {}):
            raise not_found()
        response = await self.upstream.http.get(f"{self.upstream.main}/{doc_path(doc_id)}/{doc_path(name)}",
                                                params={"rev": doc["_rev"]})
        if response.status_code != 200:
            raise not_found()
        media_type, headers = attachment_answer(response.content)  # by its bytes, inert if opened
        return Response(response.content, media_type=media_type, headers=headers)

    # ------------------------------------------------------------ writing

    async def bulk_docs(self, request: Request) -> Response:
        p = await self._user(request)
        body = await json_body(request)
        docs, new_edits = body.get("docs"), body.get("new_edits", True)
        if not isinstance(docs, list) or not isinstance(new_edits, bool):
            raise bad_request("body must be {\"docs\": [...], \"new_edits\": true|false}")
        if body.get("all_or_nothing"):
            raise bad_request("all_or_nothing is not supported (CouchDB 3 has no such transactions either)")
        if len(docs) > MAX_IDS:
            raise bad_request(f"at most {MAX_IDS} documents per _bulk_docs request")
        current = await self.upstream.winners(d["_id"] for d in docs
                                              if isinstance(d, dict) and isinstance(d.get("_id"), str))
        olds = [current.get(doc["_id"]) if isinstance(doc, dict) and isinstance(doc.get("_id"), str) else None
                for doc in docs]
        refs = await self.codes.opened_locks(await self.upstream.by_id(set().union(*map(writes.ref_ids, docs, olds))))
        now = dt.datetime.now(dt.UTC)
        verdicts: list[writes.Refusal | None] = []
        for doc, old in zip(docs, olds, strict=True):
            verdicts.append(writes.refusal(p, doc, old, new_edits, refs, now))
            if verdicts[-1] is None:  # a later document of the batch may name this one
                refs[doc["_id"]] = writes.tombstone(doc, old) if doc.get("_deleted") else doc
        # What passed the rules: its new protected values must open under the right key (sync/ciphertext.py).
        changed = {i: (doc, names) for i, (doc, old) in enumerate(zip(docs, olds, strict=True))
                   if verdicts[i] is None and not doc.get("_deleted")
                   and (names := writes.new_protected_values(doc, old))}
        for index, fields in (await self.ciphertext.refused_fields(changed)).items():
            verdicts[index] = writes.ciphertext_refusal(docs[index], fields)
        accepted, refused, lost_audience, conflicted = [], {}, set(), []
        for index, (doc, old) in enumerate(zip(docs, olds, strict=True)):
            if verdicts[index]:
                refused[index] = verdicts[index].answer(doc)
                continue
            # An edit gets its revision from CouchDB, so it is stored upgraded (server/domain/migrations.py).
            accepted.append(writes.tombstone(doc, old) if doc.get("_deleted")
                            else migrations.upgrade(doc) if new_edits else doc)
            lost_audience |= writes.audience_users(old) - writes.audience_users(accepted[-1])
            if not new_edits and writes.creates_conflict(doc, old):
                conflicted.append(doc["_id"])
        stored = await self.upstream.call("POST", self.upstream.main, "_bulk_docs",
                                          body={"docs": accepted, "new_edits": new_edits}) if accepted else []
        if not new_edits:
            await self._upgrade_replicated(accepted, stored, conflicted)
        if lost_audience:
            await purges.note_lost_audience(self.upstream, lost_audience)
        await asyncio.gather(*(merge.resolve(self.upstream, doc_id) for doc_id in conflicted))
        if self.after_write and accepted:
            try:
                await self.after_write(accepted)
            except Exception:  # noqa: BLE001 - stored is stored: what follows is retried by the server's clock
                logger.exception("after a phone's write")
        missed = [docs[i] for i, verdict in enumerate(verdicts) if verdict and writes.wrong_code(verdict)]
        if self.after_code_miss and missed:
            try:
                await self.after_code_miss(p.user_id, missed)
            except Exception:  # noqa: BLE001 - the refusal stands; a miss not counted is one more guess allowed
                logger.exception("counting wrong in-person codes")
        if not new_edits:  # CouchDB answers only the failures here
            return FastJSONResponse([*stored, *refused.values()], status_code=201)
        answers, stored_iter = [], iter(stored)
        for index in range(len(docs)):
            answers.append(refused[index] if index in refused else next(stored_iter))
        return FastJSONResponse(answers, status_code=201)

    async def _upgrade_replicated(self, accepted: list[dict[str, Any]], failed: list[dict[str, Any]],
                                  conflicted: list[str]) -> None:
        """A replicated document written under an older declaration version (an old app, or a phone not updated
        yet) keeps the phone's revision, as replication needs, and gets its upgrade (server/domain/migrations.py)
        as the server's next revision on top, which the phone pulls. One that failed, or made a conflict, is left
        to `linli migrate` (a person resolves the conflict first)."""
        skip = {answer.get("id") for answer in failed} | set(conflicted)
        upgrades = [{**{k: v for k, v in migrations.upgrade(doc).items() if k != "_revisions"}, "_rev": doc["_rev"]}
                    for doc in accepted if migrations.is_behind(doc) and doc["_id"] not in skip]
        if upgrades:
            answers = await self.upstream.call("POST", self.upstream.main, "_bulk_docs", body={"docs": upgrades})
            for answer in answers:
                if "error" in answer:
                    logger.info("upgrade of %s left to linli migrate: %s", answer.get("id"), answer["error"])

    # ------------------------------------------------------------ Linli's own

    async def scope(self, request: Request) -> Response:
        p = await self._user(request)
        return FastJSONResponse({"user": p.user_id, "scope": await purges.scope(self.upstream, p)})

    async def purge_check(self, request: Request) -> Response:
        p = await self._user(request)
        ids = string_list((await json_body(request)).get("ids"), "ids")
        return FastJSONResponse({"purge": await purges.to_purge(self.upstream, p, ids)})

    async def conflicts(self, request: Request) -> Response:
        p = await self._user(request)
        conflicts = await merge.conflicts_for(self.upstream, p)
        # Still being indexed: an empty list, said to be so (the phone keeps its count until it knows).
        return FastJSONResponse({"conflicts": conflicts or [], "preparing": conflicts is None})

    async def unsupported(self, request: Request) -> Response:
        raise ProtocolError(404, "not_found", f"{request.url.path} is not offered by the sync gateway")


async def _protocol_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProtocolError)
    return FastJSONResponse({"error": exc.error, "reason": exc.reason}, status_code=exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
    return FastJSONResponse({"error": error, "reason": str(exc.detail)}, status_code=exc.status_code)


async def _upstream_error(request: Request, exc: Exception) -> Response:
    return FastJSONResponse({"error": "upstream", "reason": "CouchDB is unreachable or failed; try again"},
                        status_code=502)


async def _recovering(request: Request, exc: Exception) -> Response:
    """CouchDB is not there (restarting): the phone keeps its changes and retries (PouchDB backs off on a 503)."""
    return FastJSONResponse({"error": "recovering", "reason": "the database is restarting; try again in a moment"},
                            status_code=503, headers={"Retry-After": "5"})


def create_sync_app(settings: Settings, couch_url: str, health: Health | None = None,
                    after_write: AfterWrite | None = None, after_code_miss: AfterCodeMiss | None = None) -> Starlette:
    """The gateway as an ASGI app, to be mounted at /sync in the web application; its live clients are counted
    in `health` when given (/healthz). `after_write` is given what a `_bulk_docs` stored, before the phone is
    answered (the composition root passes what the server does next with a phone's writes, e.g. settling
    time-bank claims confirmed in person: the gateway knows no services); `after_code_miss` the claims it refused
    for a wrong in-person code, to be counted against the resident (server/domain/timebank.py CODE_MISSES_PER_DAY)."""
    g = Gateway(settings, couch_url, after_write, after_code_miss)
    if health is not None:
        health.sync_live_clients = g.hub.live_clients
    db = "/{db}"
    routes = [
        Route("/", g.root),
        Route("/_session", g.session),
        Route(db, g.db_info, methods=["GET", "HEAD", "PUT"]),
        Route(db + "/", g.db_info, methods=["GET", "HEAD", "PUT"]),
        Route(db + "/_local/{local_id}", g.local, methods=["GET", "PUT", "DELETE"]),
        Route(db + "/_changes", g.changes, methods=["GET", "POST"]),
        Route(db + "/_revs_diff", g.revs_diff, methods=["POST"]),
        Route(db + "/_bulk_get", g.bulk_get, methods=["POST"]),
        Route(db + "/_bulk_docs", g.bulk_docs, methods=["POST"]),
        Route(db + "/_linli_scope", g.scope),
        Route(db + "/_linli_purges", g.purge_check, methods=["POST"]),
        Route(db + "/_linli_conflicts", g.conflicts),
        Route(db + "/{doc_id}", g.get_doc),
        Route(db + "/{doc_id}/{attachment:path}", g.get_attachment),
        Route(db + "/{anything:path}", g.unsupported, methods=["POST", "PUT", "DELETE"]),
    ]
    return Starlette(routes=routes, exception_handlers={
        ProtocolError: _protocol_error, HTTPException: _http_error,
        UpstreamError: _upstream_error, httpx2.HTTPError: _upstream_error, json.JSONDecodeError: _upstream_error,
        **{kind: _recovering for kind in UNREACHABLE}})
