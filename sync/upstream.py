"""The CouchDB behind the gateway, spoken to asynchronously.

The gateway is an asynchronous proxy with thousands of open requests (live
feeds) and one long-lived changes stream per process. pycouchdb is
synchronous (requests) and cannot stream a continuous feed into asyncio, so
the gateway talks to CouchDB through one pooled httpx client here; the
command line and the web pages keep using pycouchdb (`server/store/couch.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import quote

import httpx2

from server.domain.access import Doc
from server.domain.declaration import ACCOUNTS_DB, MAIN_DB, database_of
from server.store.config import Settings
from server.store.couch import server_url, split_credentials

from .jsonio import dumps, loads
from .revisions import RevisionCache

# A client may send a path and query this long (an id or rev of thousands of characters), but pouchdb-server (Node)
# refuses a request line over 16 KB with a bare 431; no document, revision or parameter of ours comes near.
MAX_PATH_BYTES = 8_000


class UpstreamError(RuntimeError):
    """CouchDB answered something the gateway did not expect (a 502 for the client)."""


def doc_path(doc_id: str) -> str:
    return quote(doc_id, safe="")


class Upstream:
    """Linli's two databases on one CouchDB server, over one connection pool."""

    def __init__(self, settings: Settings, couch_url: str) -> None:
        url, auth = split_credentials(server_url(settings, couch_url))  # COUCHDB_USER's, else the URL's own
        self.main = settings.db_name(MAIN_DB)
        self.accounts = settings.db_name(ACCOUNTS_DB)
        self.http = httpx2.AsyncClient(
            base_url=url, auth=auth, timeout=httpx2.Timeout(120, connect=10),
            # Compressed answers cost CPU on both sides of a fast link, and a compressing server
            # (pouchdb-server's middleware) holds a continuous feed back until its buffer fills.
            headers={"Accept-Encoding": "identity"},
            limits=httpx2.Limits(max_connections=64, max_keepalive_connections=64))
        # Revisions read from the main database that a _bulk_get will likely ask for next (revisions.py).
        self.recent = RevisionCache()

    async def call(self, method: str, db: str, path: str = "", *, params: dict[str, Any] | None = None,
                   body: Any = None, ok: Iterable[int] = (200, 201, 202)) -> Any:
        """One request; the decoded JSON answer, or None for a 404."""
        content = None if body is None else dumps(body)
        request = self.http.build_request(method, f"{db}/{path}", params=params, content=content,
                                          headers={"Content-Type": "application/json", "Accept": "application/json"})
        if method == "GET" and len(request.url.raw_path) > MAX_PATH_BYTES:
            return None  # names nothing CouchDB holds, and CouchDB could not even be asked (see MAX_PATH_BYTES)
        response = await self.http.send(request)
        if response.status_code == 404:
            return None
        if response.status_code not in ok:
            raise UpstreamError(f"CouchDB answered {response.status_code} to {method} {path or db}: "
                                f"{response.text[:200]}")
        return loads(response.content)

    async def get(self, db: str, doc_id: str, **params: Any) -> Doc | None:
        return await self.call("GET", db, doc_path(doc_id), params=params or None)

    async def winners(self, ids: Iterable[str]) -> dict[str, Doc]:
        """The current (winning) revision of each existing document, tombstones included."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        answer = await self.call("POST", self.main, "_all_docs", params={"include_docs": "true"},
                                 body={"keys": ids})
        found: dict[str, Doc] = {}
        for row in answer["rows"]:
            if row.get("doc"):
                found[row["id"]] = row["doc"]
            elif row.get("value", {}).get("deleted"):
                # _all_docs leaves deleted bodies out; a tombstone may carry routing fields.
                found[row["id"]] = await self.get(self.main, row["id"], rev=row["value"]["rev"]) or {
                    "_id": row["id"], "_rev": row["value"]["rev"], "_deleted": True}
        return found

    async def by_id(self, ids: Iterable[str]) -> dict[str, Doc]:
        """The existing documents among ids, from the database their type lives in (main or accounts), in at
        most one request to each; tombstones of the main database included."""
        wanted: dict[str, list[str]] = {MAIN_DB: [], ACCOUNTS_DB: []}
        for doc_id in ids:
            database = database_of(doc_id)
            if database is not None:
                wanted[database].append(doc_id)
        main, accounts = await asyncio.gather(self.winners(wanted[MAIN_DB]), self._docs(self.accounts,
                                                                                        wanted[ACCOUNTS_DB]))
        return {**main, **accounts}

    async def _docs(self, db: str, ids: list[str]) -> dict[str, Doc]:
        if not ids:
            return {}
        answer = await self.call("POST", db, "_all_docs", params={"include_docs": "true"}, body={"keys": ids})
        return {row["id"]: row["doc"] for row in answer["rows"] if row.get("doc")}

    async def stream_lines(self, db: str, path: str, params: dict[str, Any]) -> AsyncIterator[bytes]:
        """The lines of a streamed answer (CouchDB's continuous changes feed)."""
        async with self.http.stream("GET", f"{db}/{path}", params=params, timeout=httpx2.Timeout(
                None, connect=10)) as response:
            if response.status_code != 200:
                raise UpstreamError(f"CouchDB answered {response.status_code} to the changes feed")
            async for line in response.aiter_lines():
                yield line.encode()

    async def close(self) -> None:
        await self.http.aclose()
