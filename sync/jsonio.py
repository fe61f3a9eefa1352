"""JSON in and out of the gateway through orjson.

Every document a phone replicates is decoded from CouchDB and encoded again
for the phone; with the standard library that was a large share of the
gateway's CPU time in an initial sync. orjson's errors subclass
`json.JSONDecodeError`, so callers catch what they always caught.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse

loads = orjson.loads


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


class FastJSONResponse(JSONResponse):
    """Starlette's JSONResponse, rendered by orjson (UTF-8, compact, like CouchDB)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
