"""The browser code and stylesheet as files a phone fetches once (issue 22 item 1).

- **Versioned names.** A page links each file under a name that carries a digest of its content
  (`/static/linli.css?v=3f9a…`, `asset_urls()`, the pages' `assets` context, shipped to the service worker in
  /pwa/session.json so that its offline pages link the same names). Such a name is answered with a year's
  `Cache-Control: immutable`: a new content is a new name. Without its current digest (a module imported by its
  plain name, an old page) a file is answered `no-cache`: the browser asks again, and gets a 304 when unchanged.
  The service worker keeps the shell under the plain names and answers a versioned one from them (sw.js
  `shellFile` ignores the query).
- **Precompressed at setup.** `linli assets` (run by `./dev` after the npm install) writes each file's brotli
  (quality 11) and gzip (level 9) beside its digest in `build/assets/`; they are sent as they are to a client that
  accepts them. A file changed since (or a folder never built) is compressed on the fly instead
  (server/web/compression.py), never stale.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import brotli
from starlette.datastructures import Headers, MutableHeaders, QueryParams
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.store.config import PROJECT_ROOT
from server.web.compression import accepted_encoding

# URL prefix → folder: what /static, /vendor, /pwa and /pwa/templates serve (server/web/app.py, pwa_routes.py). The
# template files are the server's own, the same for everyone (no secret, nothing a user typed): a new phone's shell
# downloads ~100 KB of them, compressed like the code (the pages rendered from them are not: compression.py).
FOLDERS = {"/static/": PROJECT_ROOT / "server" / "web" / "static", "/vendor/": PROJECT_ROOT / "pwa" / "vendor",
           "/pwa/": PROJECT_ROOT / "pwa", "/pwa/templates/": PROJECT_ROOT / "server" / "web" / "templates"}
# What the pages link (base.html and the pages with their own scripts), by versioned name.
LINKED = ("/static/linli.css", "/static/icon.svg", "/vendor/htmx.min.js", "/pwa/app.js", "/pwa/photos.js",
          "/pwa/geolocate.js", "/pwa/secret_ballot.js", "/pwa/scan.js", "/vendor/jsQR.js")
BUILD_DIR = PROJECT_ROOT / "build" / "assets"
IMMUTABLE = "public, max-age=31536000, immutable"
_SUFFIXES = {".js", ".css", ".svg", ".json", ".webmanifest", ".html"}  # worth compressing (icons are PNG)


def _files() -> Iterator[tuple[str, Path]]:
    for prefix, folder in FOLDERS.items():
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                if path.is_file() and path.suffix in _SUFFIXES and "tests" not in path.relative_to(folder).parts:
                    yield prefix + path.relative_to(folder).as_posix(), path


@cache
def digests() -> dict[str, str]:
    """URL path → the first 16 hex digits of its file's SHA-256, once per process (files change with a deployment)."""
    return {url: hashlib.sha256(path.read_bytes()).hexdigest()[:16] for url, path in _files()}


def asset_urls() -> dict[str, str]:
    """The versioned name of each file the pages link."""
    return {url: f"{url}?v={digests()[url]}" for url in LINKED if url in digests()}


def precompress(build_dir: Path = BUILD_DIR) -> int:
    """Write every file's brotli and gzip beside its digest; returns how many files were compressed anew."""
    build_dir.mkdir(parents=True, exist_ok=True)
    made = 0
    for _, path in _files():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        if (build_dir / f"{digest}.br").exists() and (build_dir / f"{digest}.gz").exists():
            continue
        data = path.read_bytes()
        (build_dir / f"{digest}.br").write_bytes(brotli.compress(data, quality=11))
        (build_dir / f"{digest}.gz").write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
        made += 1
    return made


class AssetsMiddleware:
    """Cache headers by name, and the precompressed bytes where the setup made them (the module says why)."""

    def __init__(self, app: ASGIApp, build_dir: Path = BUILD_DIR) -> None:
        self.app, self.build_dir = app, build_dir

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        readable = scope["type"] == "http" and scope["method"] in ("GET", "HEAD")
        digest = digests().get(scope["path"]) if readable else None
        if digest is None:
            await self.app(scope, receive, send)
            return
        versioned = QueryParams(scope["query_string"]).get("v") == digest
        cache_control = IMMUTABLE if versioned else "no-cache"
        headers = Headers(scope=scope)
        coding = accepted_encoding(headers.get("accept-encoding", ""))
        packed = self.build_dir / f"{digest}.{'gz' if coding == 'gzip' else coding}" if coding else None
        if packed is None or not packed.is_file():
            async def with_cache_control(message: Message) -> None:
                if message["type"] == "http.response.start":
                    MutableHeaders(scope=message)["Cache-Control"] = cache_control
                await send(message)
            await self.app(scope, receive, with_cache_control)
            return
        etag = f'"{digest}-{coding}"'
        answer_headers = {"Cache-Control": cache_control, "ETag": etag, "Vary": "Accept-Encoding"}
        if etag in headers.get("if-none-match", ""):
            await Response(status_code=304, headers=answer_headers)(scope, receive, send)
            return
        kind = mimetypes.guess_type(scope["path"])[0] or "application/octet-stream"
        if scope["path"].endswith(".js"):
            kind = "text/javascript"
        await Response(packed.read_bytes(), media_type=kind,
                       headers={**answer_headers, "Content-Encoding": coding})(scope, receive, send)
