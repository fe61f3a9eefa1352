"""Documents that left a user's scope are purged from their phone, not deleted.

A deletion would replicate back up and delete the document for everyone, so
the phone purges locally instead (`pwa/sync/purge.js`). It asks two things:

- `GET _linli_scope`: a string that changes whenever the user's scope may have
  shrunk: their account changed (grid, roles, grants: the principal's
  fingerprint) or a write through the gateway took them off a document that
  names them (a household's volunteers, a task's assignee: the epoch below).
- `POST _linli_purges {"ids": [...]}`: which of these local ids to purge: those
  that exist in CouchDB and that the user may no longer see. Ids CouchDB does
  not have (made offline, not pushed yet) are never purged.

The phone asks the second only when the first changed since its last check
(and once a day, for changes made outside the gateway). The epoch lives in
the accounts database (`sync_epoch:<user id>`), so every gateway process
agrees on it.
"""

from __future__ import annotations

from collections.abc import Iterable

from server.domain.access import Principal, may_see

from .protocol import fingerprint
from .upstream import Upstream, doc_path


def _epoch_id(user_id: str) -> str:
    return f"sync_epoch:{user_id}"


async def scope(upstream: Upstream, p: Principal) -> str:
    epoch = await upstream.get(upstream.accounts, _epoch_id(p.user_id))
    return f"{fingerprint(p)}.{epoch['epoch'] if epoch else 0}"


async def note_lost_audience(upstream: Upstream, user_ids: Iterable[str]) -> None:
    """Bump the epoch of users a write has just taken off a document."""
    for user_id in user_ids:
        for _ in range(3):  # concurrent bumps race on one document; either bump is enough
            doc = await upstream.get(upstream.accounts, _epoch_id(user_id)) or {"_id": _epoch_id(user_id),
                                                                                  "epoch": 0}
            doc["epoch"] += 1
            answer = await upstream.call("PUT", upstream.accounts, doc_path(doc["_id"]), body=doc,
                                         ok=(201, 202, 409))
            if answer.get("ok"):
                break


async def to_purge(upstream: Upstream, p: Principal, ids: list[str]) -> list[str]:
    """The ids among `ids` that exist in CouchDB and that this user may not see."""
    current = await upstream.winners(ids)
    return [doc_id for doc_id, doc in current.items() if not may_see(p, doc)]
