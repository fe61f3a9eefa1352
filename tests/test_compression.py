"""Compression where it is safe (issue 22 item 1), against the real gateway over the real pouchdb-server: the sync's
answers and the browser code in brotli or gzip as the client accepts, pages never (server/web/compression.py says
why); compressed request bodies decoded within the gateway's bound, a zip bomb or a wrong encoding refused with a
4xx naming it, never a 5xx."""

from __future__ import annotations

import gzip
import json
import secrets
import zlib
from collections.abc import Iterator

import brotli
import pytest
from starlette.routing import Mount
from starlette.testclient import TestClient

from server.store.config import PROJECT_ROOT, Settings
from server.store.couch import Couch
from server.store.embedded_couch import EmbeddedCouch
from server.web import assets
from server.web.app import create_app
from sync import protocol
from sync.app import create_sync_app

from . import street


@pytest.fixture
def worker(loaded: Couch, settings: Settings, couch_server: EmbeddedCouch) -> Iterator[tuple[TestClient, str]]:
    """The street's grid worker signed in to the web app with the gateway at /sync, and the session's CSRF token."""
    app = create_app(settings, loaded, mounts=[Mount("/sync", create_sync_app(settings, couch_server.url))],
                     clocks=False)
    with TestClient(app, follow_redirects=False) as client:
        street.as_user(client, "worker1")
        yield client, client.get("/sync/_session").json()["csrf_token"]


def raw(client: TestClient, path: str, encoding: str) -> tuple[dict[str, str], bytes]:
    """An answer's headers and its bytes as sent (the test client would decode them)."""
    with client.stream("GET", path, headers={"Accept-Encoding": encoding}) as answer:
        assert answer.status_code == 200, answer.read()
        return dict(answer.headers), b"".join(answer.iter_raw())


def test_sync_answers_and_browser_code_are_compressed_as_the_client_accepts(worker: tuple[TestClient, str]) -> None:
    client, _ = worker
    plain_headers, plain = raw(client, "/sync/main/_changes?include_docs=true", "identity")
    assert "content-encoding" not in plain_headers and len(plain) > 2000
    br_headers, br = raw(client, "/sync/main/_changes?include_docs=true", "gzip, deflate, br")
    assert br_headers["content-encoding"] == "br" and "Accept-Encoding" in br_headers["vary"]
    assert int(br_headers["content-length"]) == len(br)
    assert json.loads(brotli.decompress(br)) == json.loads(plain)
    gz_headers, gz = raw(client, "/sync/main/_changes?include_docs=true", "gzip")
    assert gz_headers["content-encoding"] == "gzip" and gzip.decompress(gz) == plain
    # A small street, mostly ciphertext (which does not compress): well under half; the demo grid is ~4x smaller.
    assert len(br) < len(plain) / 2 and len(gz) < len(plain) / 2, (len(plain), len(gz), len(br))
    js_headers, js = raw(client, "/pwa/app.js", "br;q=0, gzip")
    assert js_headers["content-encoding"] == "gzip" and b"import" in gzip.decompress(js)


def test_pages_and_the_csrf_token_are_never_compressed(worker: tuple[TestClient, str]) -> None:
    """A page echoes what a visitor typed beside secrets (BREACH): its length must not depend on a guess."""
    client, token = worker
    headers, page = raw(client, "/requests?q=" + token[:4], "br, gzip")
    assert "content-encoding" not in headers and b"<html" in page
    for path in ("/pwa/session.json", "/sync/_session"):
        headers, body = raw(client, path, "br, gzip")
        assert "content-encoding" not in headers and token.encode() in body, path


def _local_doc(client: TestClient, token: str, body: bytes, encoding: str) -> tuple[int, dict[str, str]]:
    answer = client.put(f"/sync/main/_local/compression-{secrets.token_hex(3)}", content=body,
                        headers={"Content-Type": "application/json", "Content-Encoding": encoding,
                                 "X-CSRF-Token": token})
    return answer.status_code, answer.json()


def test_compressed_request_bodies_are_decoded_within_the_bound(worker: tuple[TestClient, str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A _local document's bound is 1 MB; _revs_diff's (50 MB) is lowered here so that the test stays quick."""
    client, token = worker
    doc = json.dumps({"note": "sent compressed"}).encode()
    assert _local_doc(client, token, gzip.compress(doc), "gzip")[0] == 201
    assert _local_doc(client, token, brotli.compress(doc), "br")[0] == 201
    # A bomb: a few KB that would decode to 20 MB, far past the bound.
    zeros = b'{"note": "' + b"0" * (20 * 1024 * 1024) + b'"}'
    for encoding, bomb in (("gzip", gzip.compress(zeros, 9)), ("br", brotli.compress(zeros, quality=5))):
        assert len(bomb) < 64 * 1024
        status, answer = _local_doc(client, token, bomb, encoding)
        assert (status, answer["error"]) == (413, "too_large"), (encoding, answer)
    monkeypatch.setattr(protocol, "MAX_BODY_BYTES", 2 * 1024 * 1024)
    answer = client.post("/sync/main/_revs_diff", content=gzip.compress(zeros, 9), headers={
        "Content-Type": "application/json", "Content-Encoding": "gzip", "X-CSRF-Token": token})
    assert (answer.status_code, answer.json()["error"]) == (413, "too_large")
    # Wrong or unknown encodings: the error names what is wrong.
    cut = gzip.compress(doc)[:-6]
    for body, encoding, reason in ((doc, "gzip", "gzip"), (cut, "gzip", "cut short"), (doc, "br", "brotli"),
                                   (zlib.compress(doc), "deflate", "not accepted")):
        status, answer = _local_doc(client, token, body, encoding)
        assert status in (400, 415) and reason in answer["reason"], (encoding, answer)
    # The pages take no compressed body at all: refused before it is read.
    answer = client.post("/lang", content=gzip.compress(b"lang=en"), headers={
        "Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip", "X-CSRF-Token": token})
    assert answer.status_code == 415 and "Content-Encoding" in answer.text


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_a_bomb_is_never_expanded_past_the_room_left(encoding: str) -> None:
    """The refusal above would come anyway once 20 MB were decoded; this is what keeps them from being decoded."""
    zeros = b"0" * (20 * 1024 * 1024)
    bomb = gzip.compress(zeros, 9) if encoding == "gzip" else brotli.compress(zeros, quality=5)
    decoder = protocol._body_decoder(encoding)
    out = decoder.chunk(bomb, 4096)
    assert len(out) <= 64 * 1024 and decoder.over


def test_browser_code_is_linked_by_versioned_name_and_sent_precompressed(worker: tuple[TestClient, str]) -> None:
    """Pages link the stylesheet and scripts by a name with their digest, answered cacheable for a year (a new
    content is a new name) from the setup's brotli; the plain name is revalidated (no-cache), a stale digest too."""
    client, _ = worker
    assets.precompress()  # what ./dev runs after the npm install (quick when done)
    urls = assets.asset_urls()
    css = urls["/static/linli.css"]
    page = client.get("/requests").text
    assert f'href="{css}"' in page and f'src="{urls["/pwa/photos.js"]}"' in page
    original = (PROJECT_ROOT / "server/web/static/linli.css").read_bytes()
    headers, sent = raw(client, css, "br, gzip")
    assert headers["cache-control"] == assets.IMMUTABLE and headers["content-encoding"] == "br"
    assert brotli.decompress(sent) == original and len(sent) < len(original) / 3
    assert client.get(css, headers={"If-None-Match": headers["etag"]}).status_code == 304
    for stale in ("/static/linli.css", "/static/linli.css?v=0123456789abcdef"):
        headers, sent = raw(client, stale, "gzip")
        assert headers["cache-control"] == "no-cache" and gzip.decompress(sent) == original, stale
    assert client.get("/pwa/session.json").json()["assets"] == urls  # the offline pages link the same names


def test_the_offline_apps_templates_and_messages_go_compressed(worker: tuple[TestClient, str]) -> None:
    """What a new phone's shell downloads besides the code: the server's template files (its own, the same for
    everyone: not pages) from the setup's brotli, and the language's messages that session.json names."""
    client, _ = worker
    assets.precompress()
    original = (PROJECT_ROOT / "server/web/templates/household.html").read_bytes()
    headers, sent = raw(client, "/pwa/templates/household.html", "br, gzip")
    assert headers["content-encoding"] == "br" and brotli.decompress(sent) == original
    assert len(sent) < len(original) / 2
    headers, sent = raw(client, client.get("/pwa/session.json").json()["messages_url"], "br, gzip")
    assert headers["content-encoding"] == "br" and len(sent) < len(brotli.decompress(sent)) / 2
    assert json.loads(brotli.decompress(sent))["app_name"]
