"""Residents' in-person confirmation codes at the gateway: a phone's claim carrying a code is judged against the
resident's `ledger_lock` opened (server/domain/timebank.py `opened`: their secret beside it, in memory), the secret
derived from the installation's code key, which the master key unwraps (server/security/keystore.py
`open_wrapped`). The key is read once per process: a master-key rotation re-wraps it, the bytes stay the same."""

from __future__ import annotations

from server.domain.access import Doc
from server.domain.timebank import opened
from server.security.keystore import CODE_KEY_ID, open_wrapped

from .upstream import Upstream


class CodeKey:
    def __init__(self, upstream: Upstream, master_keys: tuple[bytes, ...]) -> None:
        self.upstream = upstream
        self.master_keys = master_keys
        self._key: bytes | None = None

    def __repr__(self) -> str:
        return f"CodeKey(loaded={self._key is not None})"  # never the key

    async def opened_locks(self, refs: dict[str, Doc]) -> dict[str, Doc]:
        """`refs` with every resident's lock that has codes opened, for the write rules to check a code with."""
        locks = {i: d for i, d in refs.items() if d.get("type") == "ledger_lock" and "codes_from" in d}
        if not locks:
            return refs
        key = await self._code_key()
        return {**refs, **{i: opened(lock, key) or lock for i, lock in locks.items()}}

    async def _code_key(self) -> bytes | None:
        if self._key is None:
            doc = await self.upstream.get(self.upstream.accounts, CODE_KEY_ID)
            if doc is None:  # no resident was ever shown codes: none can be right
                return None
            self._key = open_wrapped(self.master_keys, doc)
        return self._key
