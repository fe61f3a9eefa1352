"""The CouchDB replication protocol's small print: errors, request parsing, sequences.

Every malformed request becomes a `ProtocolError` (a 4xx with CouchDB's
`{"error", "reason"}` body naming what is wrong), never a 5xx.
"""

from __future__ import annotations

import functools
import hashlib
import zlib
from dataclasses import dataclass
from typing import Any

import brotli
from starlette.requests import Request

from server.domain.access import Principal

from .jsonio import loads

MAX_BODY_BYTES = 50 * 1024 * 1024  # a _bulk_docs batch with incident photos inline
MAX_IDS = 10_000  # ids in one _revs_diff, _bulk_get or purge check


class ProtocolError(Exception):
    """A request the gateway refuses; rendered as CouchDB renders its errors."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.error, self.reason = status, error, reason


def bad_request(reason: str) -> ProtocolError:
    return ProtocolError(400, "bad_request", reason)


def not_found(reason: str = "missing") -> ProtocolError:
    return ProtocolError(404, "not_found", reason)


async def json_body(request: Request, kind: type = dict, limit: int | None = None) -> Any:
    """The request body as JSON of the given kind, or a 4xx naming what is wrong. A body sent gzip- or
    brotli-compressed is decoded here, and refused once its decoded size passes `limit` (MAX_BODY_BYTES unless
    given): a "zip bomb" stops there, whatever it would grow to."""
    limit = limit or MAX_BODY_BYTES
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise ProtocolError(415, "bad_content_type", "Content-Type must be application/json")
    decoder = _body_decoder(request.headers.get("content-encoding", "identity"))
    body = b""
    try:
        async for chunk in request.stream():
            body += decoder.chunk(chunk, limit + 1 - len(body))
            if len(body) > limit or decoder.over:
                raise ProtocolError(413, "too_large", f"request body exceeds {limit} bytes")
        decoder.finish()
    except DecodeError as wrong:
        raise bad_request(f"request body is not valid {wrong}") from None
    try:
        value = loads(body)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("request body is not valid JSON") from None
    if not isinstance(value, kind):
        raise bad_request(f"request body must be a JSON {'object' if kind is dict else 'array'}")
    return value


class DecodeError(Exception):
    """A compressed body that does not decode; its message names the encoding."""


class _Identity:
    over = False

    def chunk(self, data: bytes, room: int) -> bytes:
        return data

    def finish(self) -> None:
        return None


class _Gunzip:
    """gzip, decoded at most `room` bytes at a time: input that would decode past the bound is never expanded."""

    def __init__(self) -> None:
        self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.over = False

    def chunk(self, data: bytes, room: int) -> bytes:
        try:
            out = self.inflater.decompress(data, max(room, 1))
        except zlib.error:
            raise DecodeError("gzip") from None
        self.over = bool(self.inflater.unconsumed_tail)  # more output waiting than the bound allows
        return out

    def finish(self) -> None:
        if not self.inflater.eof or self.inflater.unused_data:
            raise DecodeError("gzip (cut short or followed by other bytes)")


class _Unbrotli:
    """brotli, decoded at most `room` bytes at a time (the decoder's output_buffer_limit)."""

    def __init__(self) -> None:
        self.decoder = brotli.Decompressor()
        self.over = False

    def chunk(self, data: bytes, room: int) -> bytes:
        try:
            out = self.decoder.process(data, output_buffer_limit=max(room, 1))
            # Decoding stops at the limit; a decoder with output still waiting is over the bound.
            self.over = not self.decoder.can_accept_more_data()
        except brotli.error:
            raise DecodeError("brotli") from None
        return out

    def finish(self) -> None:
        if not self.decoder.is_finished():
            raise DecodeError("brotli (cut short)")


def _body_decoder(encoding: str) -> _Identity | _Gunzip | _Unbrotli:
    coding = encoding.strip().lower()
    if coding == "identity":
        return _Identity()
    if coding in ("gzip", "x-gzip"):
        return _Gunzip()
    if coding == "br":
        return _Unbrotli()
    raise ProtocolError(415, "bad_content_encoding", f"Content-Encoding {encoding!r} is not accepted: gzip, br or none")


def string_list(value: Any, what: str, limit: int = MAX_IDS) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise bad_request(f"{what} must be a list of non-empty strings")
    if len(value) > limit:
        raise bad_request(f"{what} has {len(value)} items; at most {limit} per request")
    return value


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise bad_request(f"{name} must be between {low} and {high}, got {value}")
    return value


def bool_param(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "false")
    if raw not in ("true", "false"):
        raise bad_request(f"{name} must be true or false, got {raw!r}")
    return raw == "true"


def choice_param(request: Request, name: str, choices: tuple[str, ...]) -> str:
    raw = request.query_params.get(name, choices[0])
    if raw not in choices:
        raise bad_request(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


# ---------------------------------------------------------------- sequences

# Asked for every change handed to every live feed: hashing anew each time was ~5% of a fan-out to 2,000 feeds.
@functools.lru_cache(maxsize=10_000)
def fingerprint(p: Principal) -> str:
    """Changes whenever what the user may see can change because their account changed."""
    parts = [p.user_id, p.street, p.department or "", p.resident or "", p.gateway or "",
             *sorted(r.value for r in p.roles), "|", *sorted(p.communities), "|", *sorted(p.grids)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Since:
    """Where a client's feed resumes in CouchDB's feed (None: from the start)."""

    couch_seq: str | None


def encode_seq(p: Principal, couch_seq: Any) -> str:
    """The sequence a client sees: the user's fingerprint, then CouchDB's (opaque) sequence.

    Sequences are opaque to PouchDB, which only hands them back as `since`. A
    sequence minted under another fingerprint (the user moved grid) restarts the
    feed from the beginning, so the newly visible documents arrive (what the phone
    already has is skipped by _revs_diff).
    """
    return f"{fingerprint(p)}.{couch_seq}"


def decode_since(p: Principal, raw: str | None) -> Since | str:
    """The `since` parameter as a position in CouchDB's feed, or "now"."""
    if raw is None or raw in ("0", ""):
        return Since(None)
    if raw == "now":
        return "now"
    if raw.startswith('"') and raw.endswith('"'):  # PouchDB JSON-encodes object-like sequences
        raw = raw[1:-1]
    mark, dot, couch_seq = raw.partition(".")
    if not dot or not couch_seq or len(mark) != 12:
        raise bad_request("since must be 0, now, or a sequence this gateway returned")
    return Since(couch_seq if mark == fingerprint(p) else None)
