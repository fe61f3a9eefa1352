"""The gateway's only way to the rest of Linli: the sync gateway (`/sync/main`), with its device token.

It pulls its configuration (the documents its account may see: its devices, their residents' safety
rules) from `_changes`, and pushes the outbox with `_bulk_docs`. Readings and alerts are create-only
with deterministic ids, and the gateway may not read them back, so a document stored by an earlier
push that was cut off before its answer comes back as a conflict or as "outside what you may see":
both mean "already there", which is what makes a retry safe.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx2

from server.domain.access import OUTSIDE_SCOPE

log = logging.getLogger(__name__)

Doc = dict[str, Any]
CHANGES_PAGE = 500


class UplinkError(RuntimeError):
    """The sync gateway cannot be reached or answered unexpectedly: stay offline and try later."""


class Refused(ValueError):
    """The sync gateway will never store this document as it is (the reason says why)."""


@dataclass
class PushResult:
    stored: list[str] = field(default_factory=list)  # stored now, or found already stored
    refused: dict[str, str] = field(default_factory=dict)  # id → reason: will never be stored as it is
    retry: list[str] = field(default_factory=list)  # transient: try again later


class Uplink:
    def __init__(self, sync_url: str, token: str, timeout: float = 30.0) -> None:
        self.sync_url = sync_url.rstrip("/")
        self._http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                        timeout=httpx2.Timeout(timeout, connect=10))

    def __repr__(self) -> str:
        return f"Uplink({self.sync_url})"  # never the token

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, f"{self.sync_url}/{path}", **kwargs)
        except httpx2.HTTPError as error:
            raise UplinkError(f"sync gateway unreachable: {type(error).__name__}") from None
        if response.status_code == 404 and method == "GET":
            return None
        if response.status_code >= 300:
            raise UplinkError(f"sync gateway answered {response.status_code} to {method} {path.split('?')[0]}: "
                              f"{response.text[:200]}")
        return response.json()

    async def changes(self, since: str) -> tuple[list[Doc], str]:
        """Every document change this gateway may see after `since`, and the new checkpoint."""
        docs: list[Doc] = []
        while True:
            page = await self._call("GET", "_changes", params={"since": since, "include_docs": "true",
                                                               "limit": str(CHANGES_PAGE)})
            results = page["results"]
            docs += [r["doc"] if "doc" in r else {"_id": r["id"], "_deleted": True} for r in results]
            since = str(page["last_seq"])
            if len(results) < CHANGES_PAGE:
                return docs, since

    async def push(self, docs: list[Doc]) -> PushResult:
        """Create documents; see the module docstring for why conflicts count as stored."""
        result = PushResult()
        if not docs:
            return result
        answers = await self._call("POST", "_bulk_docs", json={"docs": docs})
        for doc, answer in zip(docs, answers, strict=True):
            error, reason = answer.get("error"), answer.get("reason", "")
            if not error or error == "conflict" or (error == "forbidden" and reason == OUTSIDE_SCOPE):
                result.stored.append(doc["_id"])
            elif error == "forbidden":
                result.refused[doc["_id"]] = reason
            else:
                result.retry.append(doc["_id"])
        return result

    async def put_latest(self, doc: Doc, rev: str | None) -> str:
        """Store a document this gateway keeps up to date (health); returns the new revision."""
        for _ in range(3):
            body = {**doc, **({"_rev": rev} if rev else {})}
            (answer,) = await self._call("POST", "_bulk_docs", json={"docs": [body]})
            if "rev" in answer and not answer.get("error"):
                return str(answer["rev"])
            if answer.get("error") == "forbidden":
                raise Refused(f"{doc['_id']}: {answer.get('reason')}")
            if answer.get("error") != "conflict":
                raise UplinkError(f"{doc['_id']}: {answer.get('error')}: {answer.get('reason')}")
            current = await self._call("GET", quote(doc["_id"], safe=""))  # someone else's revision: build on it
            rev = current["_rev"] if current else None
        raise UplinkError(f"{doc['_id']}: kept conflicting")
