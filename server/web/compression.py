"""Fewer bytes on a weak signal (issue 22): answers compressed where that is safe, compressed requests refused.

**Answers.** JSON (the sync gateway's `_changes`, `_bulk_get`, `_all_docs`...), JavaScript, CSS, SVG and the
manifest go out as brotli when the client accepts it, else gzip; a streamed answer (`_changes?feed=longpoll`)
is flushed chunk by chunk, so a live change is never held back in a compressor. Answers that already carry an
encoding (a precompressed static file, server/web/assets.py) pass as they are; photos are compressed already.

**Never compressed: HTML pages and the two answers that carry the CSRF token** (/pwa/session.json,
/sync/_session). A page holds secrets (the CSRF token, a phone number just revealed, a resident's categories)
beside text an attacker can choose (a search box's `q` is echoed, a neighbour's request text is shown), and a
compressed answer's length then tells whether a guess matched a secret (BREACH). Masking the CSRF token per
answer would protect only the token, not the revealed fields, so pages stay uncompressed; they are small next
to the sync and the browser code, which carry protected fields only as ciphertext (fresh nonce per seal). The
template files the offline app downloads (/pwa/templates/) are not pages: the server's own source, the same for
everyone, sent precompressed (server/web/assets.py); so are the language's messages, kept out of session.json for
that reason (server/web/pwa_routes.py).

**Requests.** Pages and forms never send a compressed body: one with a `Content-Encoding` is refused (415)
before it is read. The sync gateway decodes gzip and brotli bodies itself, within its size bound
(sync/protocol.py `json_body`), so a "zip bomb" is refused after at most that many bytes of output.
"""

from __future__ import annotations

import zlib
from typing import Protocol

import brotli
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COMPRESSIBLE_TYPES = ("application/json", "text/javascript", "application/javascript", "text/css",
                      "image/svg+xml", "application/manifest+json")
# Answers that carry the CSRF token: never compressed (see above).
SECRET_BEARING_PATHS = frozenset({"/pwa/session.json", "/sync/_session"})
MIN_BYTES = 1024  # below this the encoding's header and a round of CPU gain nothing
BROTLI_QUALITY = 5  # on the fly: near gzip's speed at level 6, ~15% fewer bytes on the sync's JSON
GZIP_LEVEL = 6
# Where a body with its own encoding may go: the sync gateway decodes it within its bound.
DECODING_PREFIXES = ("/sync/",)


class _Encoder(Protocol):
    def chunk(self, data: bytes) -> bytes: ...
    def finish(self, data: bytes) -> bytes: ...


class _Brotli:
    def __init__(self) -> None:
        self.compressor = brotli.Compressor(quality=BROTLI_QUALITY)

    def chunk(self, data: bytes) -> bytes:
        return self.compressor.process(data) + self.compressor.flush()

    def finish(self, data: bytes) -> bytes:
        return self.compressor.process(data) + self.compressor.finish()


class _Gzip:
    def __init__(self) -> None:
        self.compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def chunk(self, data: bytes) -> bytes:
        return self.compressor.compress(data) + self.compressor.flush(zlib.Z_SYNC_FLUSH)

    def finish(self, data: bytes) -> bytes:
        return self.compressor.compress(data) + self.compressor.flush()


def accepted_encoding(accept_encoding: str) -> str | None:
    """"br" or "gzip", whichever the client accepts (brotli first), from an Accept-Encoding header."""
    offered = {}
    for part in accept_encoding.lower().split(","):
        name, _, params = part.strip().partition(";")
        q = params.strip().removeprefix("q=") if params.strip().startswith("q=") else "1"
        try:
            offered[name.strip()] = float(q)
        except ValueError:
            offered[name.strip()] = 0.0
    for name in ("br", "gzip"):
        if offered.get(name, 0) > 0:
            return name
    return None


def _compressible(scope: Scope, headers: Headers) -> bool:
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    length = headers.get("content-length")
    return (kind in COMPRESSIBLE_TYPES and "content-encoding" not in headers
            and scope["path"] not in SECRET_BEARING_PATHS
            and not (length is not None and length.isdigit() and int(length) < MIN_BYTES))


class CompressionMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_headers = Headers(scope=scope)
        if (request_headers.get("content-encoding", "identity").strip().lower() != "identity"
                and not scope["path"].startswith(DECODING_PREFIXES)):
            await PlainTextResponse("Content-Encoding is not accepted here: send the body uncompressed",
                                    status_code=415)(scope, receive, send)
            return
        coding = accepted_encoding(request_headers.get("accept-encoding", ""))
        if coding is None or scope["method"] == "HEAD":  # a HEAD's lengths are the uncompressed GET's
            await self.app(scope, receive, send)
            return
        encoder: _Encoder | None = None
        start: Message | None = None

        async def compressing_send(message: Message) -> None:
            nonlocal encoder, start
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.add_vary_header("Accept-Encoding")
                if message["status"] not in (204, 206, 304) and _compressible(scope, headers):
                    encoder = _Brotli() if coding == "br" else _Gzip()
                    start = message  # sent with the first part of the body, once its length is known or not
                    return
                await send(message)
            elif message["type"] == "http.response.body" and encoder is not None:
                more = message.get("more_body", False)
                body = encoder.chunk(message.get("body", b"")) if more else encoder.finish(message.get("body", b""))
                if start is not None:
                    headers = MutableHeaders(scope=start)
                    headers["Content-Encoding"] = coding
                    if more:
                        del headers["Content-Length"]  # streamed: the compressed length is known only at the end
                    else:
                        headers["Content-Length"] = str(len(body))
                    await send(start)
                    start = None
                await send({**message, "body": body})
            else:
                await send(message)

        await self.app(scope, receive, compressing_send)
