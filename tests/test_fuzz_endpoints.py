"""No 5xx from bad input (issue 13): every endpoint of the app as `linli serve` builds it (pages, Open311, the
sync gateway's CouchDB-protocol routes, static files), listed from the app's own routes, is sent random and
boundary input by each kind of caller: anonymous, a grid worker, a secretary, a resident, the administrator, and a
scripted phone with a Bearer token. Fixed seed, bounded count; it fails naming every request answered with a 5xx.

Against a real `linli serve` (tests/sync_harness.py) over the small demo street. What the input may hold is also
read from the app: the parameter and field names its endpoint modules read (`query_params.get("q")`,
`form["lang"]`, `body.get("docs")`, …), the declaration's document types, and ids that exist.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
import pytest
from starlette.routing import BaseRoute, Mount, Route

from server.domain.declaration import DOC_TYPES, Role
from server.security import accounts
from server.security.firewall import Firewall
from server.services import demo
from server.store.couch import Couch, connect, ids_of_type
from server.store.embedded_couch import EmbeddedCouch, free_port
from server.web.app import create_app
from sync.app import create_sync_app
from sync.auth import new_device_token
from tests.browser import DEMO_PASSWORD, DEMO_RESIDENT
from tests.conftest import DEMO_SIZE, make_settings
from tests.street import TINY_PNG, hashed
from tests.sync_harness import login, serve, stop

SEED = 13
CASES = 2  # random requests per endpoint, method and caller: 6 callers × 90 endpoint-methods × 2 = 1,080
PARAMETER = re.compile(r"{(\w+)(?::(\w+))?}")
# Names an endpoint reads: query_params.get("q"), form["lang"], form.getlist("needs"), body.get("docs"), …
READ_NAME = re.compile(r"""(?:\.get|\.getlist|\[)\(?\s*["']([A-Za-z_][A-Za-z0-9_]{0,40})["']""")


@dataclass(frozen=True)
class Endpoint:
    path: str  # with {parameters}
    method: str


def endpoints(routes: list[BaseRoute], prefix: str = "") -> Iterator[Endpoint]:
    """Every (path, method) the app routes, mounted apps' included; a static folder as one `{file:path}`."""
    for route in routes:
        if isinstance(route, Route):
            for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                yield Endpoint(prefix + route.path, method)
        elif isinstance(route, Mount):
            if route.routes:
                yield from endpoints(list(route.routes), prefix + route.path)
            else:
                yield Endpoint(prefix + route.path + "/{file:path}", "GET")


def endpoint_functions(routes: list[BaseRoute]) -> Iterator[Any]:
    for route in routes:
        if isinstance(route, Route):
            yield route.endpoint
        elif isinstance(route, Mount) and route.routes:
            yield from endpoint_functions(list(route.routes))


def names_read(routes: list[BaseRoute]) -> list[str]:
    """The parameter and field names the endpoints' modules read, from their source."""
    files = set()
    for function in endpoint_functions(routes):
        function = inspect.unwrap(function)
        try:
            files.add(inspect.getsourcefile(function))
        except TypeError:  # a class instance (e.g. a static-files app) has no source of its own
            continue
    names = set()
    for file in files:
        names.update(READ_NAME.findall(Path(file).read_text(encoding="utf-8")))
    return sorted(names)


# ---------------------------------------------------------------- random and boundary input

BOUNDARY_TEXT = ["", " ", "0", "-1", "1", "2147483648", "-9223372036854775809", "1e309", "NaN", "true", "null",
                 "[]", "{}", "长" * 5000, "😀\u202e\u200b", "\x00", "\r\nX-Injected: 1", "2026-02-30",
                 "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "2026-11-30T08:00:00Z", "../../etc/passwd",
                 "<svg onload=alert(1)>", "%", "%zz", "a,b,,c", "[\"x\"]", "{\"a\":", "x" * 100_000]
BOUNDARY_JSON: list[Any] = [None, True, 0, -1, 2**63, 1e308, "", "长" * 5000, [], {}, [[[[[]]]]], {"": None},
                            [None] * 50, {"_id": None}, {"_id": 0, "_rev": []}]


class Inputs:
    """Random values: boundary cases, ids that exist, names the app reads, random unicode."""

    def __init__(self, rng: random.Random, ids: list[str], names: list[str]) -> None:
        self.rng, self.ids, self.names = rng, ids, names

    def text(self) -> str:
        kind = self.rng.random()
        if kind < 0.35:
            return self.rng.choice(BOUNDARY_TEXT)
        if kind < 0.6:
            return self.rng.choice(self.ids)
        if kind < 0.7:
            return self.rng.choice(self.names)
        alphabet = [chr(self.rng.randrange(0x20, 0x2FFF)) for _ in range(20)] + list("abc:_-/.?&=#%+ ")
        return "".join(self.rng.choice(alphabet) for _ in range(self.rng.randrange(1, 40)))

    def json(self, depth: int = 0) -> Any:
        kind = self.rng.random()
        if kind < 0.3 or depth > 3:
            return self.rng.choice(BOUNDARY_JSON) if self.rng.random() < 0.5 else self.text()
        if kind < 0.6:
            return {self.rng.choice(self.names): self.json(depth + 1) for _ in range(self.rng.randrange(0, 5))}
        if kind < 0.8:
            return [self.json(depth + 1) for _ in range(self.rng.randrange(0, 4))]
        return self.document()

    def document(self) -> dict[str, Any]:
        """Something shaped like a document of a declared type, with random fields."""
        doc = {"_id": self.rng.choice(self.ids + [self.text()]), "type": self.rng.choice([*DOC_TYPES, self.text()])}
        if self.rng.random() < 0.5:
            doc["_rev"] = self.rng.choice(["1-" + "a" * 32, "x", "999-" + "0" * 32, self.text()])
        for _ in range(self.rng.randrange(0, 6)):
            doc[self.rng.choice(self.names)] = self.json(3)
        return doc

    def query(self) -> dict[str, str]:
        # At most 2,000 characters each: an HTTP client sends no URL over 64 KB (bodies get the huge values).
        return {self.rng.choice(self.names): self.text()[:2000] for _ in range(self.rng.randrange(0, 4))}

    def path_value(self, name: str, convertor: str | None) -> str:
        value = self.rng.choice([self.text(), self.text(), f"{name}:does-not-exist", *self.ids_like(name)])
        value = value[:2000] or "x"  # an empty segment would be another route
        return quote(value, safe="/" if convertor == "path" else "")

    def ids_like(self, name: str) -> list[str]:
        """Existing ids whose type the parameter names (grid_id: grids), else any."""
        stem = name.removesuffix("_id")
        alike = [i for i in self.ids if i.startswith(stem + ":")]
        return [self.rng.choice(alike or self.ids)]

    def body(self, csrf: str) -> dict[str, Any]:
        """httpx2 arguments for one request body, with the session's CSRF token most of the time."""
        token = [("csrf_token", csrf)] if self.rng.random() < 0.8 else []
        fields = token + [(self.rng.choice(self.names), self.text()) for _ in range(self.rng.randrange(0, 6))]
        kind = self.rng.choice(["form", "form", "multipart", "bad multipart", "json", "json", "bad json", "bytes",
                                "empty"])
        if kind == "form":
            return {"data": dict(fields)}
        if kind == "multipart":
            content = self.rng.choice([TINY_PNG, b"", b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"random", b"big"])
            if content == b"random":
                content = self.rng.randbytes(self.rng.randrange(1, 5000))
            elif content == b"big":  # over every photo limit
                content = TINY_PNG + bytes(6_000_000)
            kind_of_file = self.rng.choice(["image/png", "image/svg+xml", "application/octet-stream", "", "长"])
            files = [(self.rng.choice(self.names), (self.text()[:50] or "f", content, kind_of_file))]
            return {"data": dict(fields), "files": files}
        if kind == "bad multipart":
            boundary = self.rng.choice(["", "x", "长", "-" * 80])
            raw = self.rng.choice([b"--x\r\nContent-Disposition: form-data\r\n\r\n", b"--x--", b"\xff" * 200])
            return {"content": raw, "headers": {"Content-Type": f"multipart/form-data; boundary={boundary}".encode()}}
        if kind == "json":
            return {"content": json.dumps(self.json()).encode(), "headers": {"Content-Type": "application/json"}}
        if kind == "bad json":
            raw = self.rng.choice([b"{", b'{"docs": [', b"\xff\xfe", b"[1, 2,]", b'{"a": NaN}', b"1e99999"])
            return {"content": raw, "headers": {"Content-Type": "application/json"}}
        if kind == "bytes":
            return {"content": self.rng.randbytes(self.rng.randrange(0, 5000)),
                    "headers": {"Content-Type": self.rng.choice(["text/plain", "application/x-www-form-urlencoded",
                                                                 "application/xml", "长/长"]).encode()}}
        return {}


# ---------------------------------------------------------------- the server and its callers

@dataclass
class Caller:
    name: str
    headers: dict[str, str]
    csrf: str


@dataclass
class Site:
    url: str
    routes: list[BaseRoute]
    ids: list[str]
    callers: list[Caller]


@pytest.fixture(scope="module")
def site(couch_server: EmbeddedCouch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    settings = make_settings(tmp_path_factory.mktemp("fuzz"), "fuzz_")
    couch = connect(settings, couch_server.url)
    firewall = Firewall.open(settings, couch)
    demo.load(couch, firewall, size=DEMO_SIZE, password_hash=hashed(DEMO_PASSWORD))
    couch.accounts.save(accounts.make_user("jumin1", "居民甲", [Role.RESIDENT], demo.STREET_ID,
                                           hashed(DEMO_PASSWORD), resident=DEMO_RESIDENT))
    token, token_doc = new_device_token(accounts.user_id("wangge01"), "fuzz", dt.datetime.now(dt.UTC))
    couch.accounts.save(token_doc)
    # The routes exactly as `linli serve` mounts them (server/cli/main.py), listed from the app, not by hand.
    routes = create_app(settings, couch, mounts=[Mount("/sync", create_sync_app(settings, couch.url))]).routes
    served = serve(couch_server.url, settings, free_port())
    try:
        callers = [Caller("anonymous", {}, "")]
        for username in ("wangge01", "shuji1", "jumin1", "admin"):
            cookie, csrf = login(served.url, username, DEMO_PASSWORD)
            callers.append(Caller(username, {"Cookie": cookie}, csrf))
        callers.append(Caller("phone (Bearer token)", {"Authorization": f"Bearer {token}"}, ""))
        yield Site(served.url.rstrip("/"), routes, _existing_ids(couch), callers)
    finally:
        stop(served)


def _existing_ids(couch: Couch) -> list[str]:
    ids = []
    for type_name in DOC_TYPES:
        ids += ids_of_type(couch.main, type_name)[:5] + ids_of_type(couch.accounts, type_name)[:5]
    return ids


def _describe(method: str, path: str, caller: Caller, arguments: dict[str, Any], answer: httpx2.Response) -> str:
    shown = {k: (v if len(repr(v)) < 200 else repr(v)[:200] + "…") for k, v in arguments.items()}
    shown["content-type"] = answer.request.headers.get("content-type")
    return f"{answer.status_code} for {method} {path[:300]} as {caller.name} with {shown}: {answer.text[:300]!r}"


def test_no_endpoint_answers_bad_input_with_a_5xx(site: Site) -> None:
    rng = random.Random(SEED)
    names = names_read(site.routes)
    inputs = Inputs(rng, site.ids, names)
    # Signing out last: the callers' sessions must last the whole walk.
    every = sorted(endpoints(site.routes), key=lambda endpoint: endpoint.path == "/logout")
    assert len(every) > 80 and any(e.path.startswith("/sync/") for e in every), every  # the listing found them
    assert {"docs", "csrf_token", "q", "lang"} <= set(names), names
    failures: list[str] = []
    sent = 0
    with httpx2.Client(timeout=httpx2.Timeout(30, read=5), follow_redirects=False) as client:
        for endpoint in every:
            for caller in site.callers:
                for _ in range(CASES):
                    path = PARAMETER.sub(lambda m: inputs.path_value(m.group(1), m.group(2)), endpoint.path)
                    arguments: dict[str, Any] = {"params": inputs.query()}
                    if endpoint.method != "GET":
                        arguments.update(inputs.body(caller.csrf))
                    headers = {**caller.headers, **arguments.pop("headers", {})}
                    if caller.csrf and rng.random() < 0.5:
                        headers["X-CSRF-Token"] = caller.csrf
                    request = client.build_request(endpoint.method, site.url + path, headers=headers, **arguments)
                    sent += 1
                    try:
                        answer = client.send(request, stream=True)  # a live feed answers its headers at once
                        if answer.status_code >= 500:
                            answer.read()
                            failures.append(_describe(endpoint.method, path, caller, arguments, answer))
                        answer.close()
                    except httpx2.ReadTimeout:
                        if not endpoint.path.endswith("/_changes"):  # only a long-poll feed may wait for changes
                            failures.append(f"no answer in 5 s to {endpoint.method} {path[:300]} as {caller.name}")
                    except httpx2.TransportError as error:  # a dropped connection (or a server gone) is no answer
                        failures.append(f"{type(error).__name__} for {endpoint.method} {path[:300]} as {caller.name}")
    print(f"{sent} requests to {len(every)} endpoint-methods as {len(site.callers)} callers")
    assert not failures, f"{len(failures)} of {sent} requests got a 5xx or no answer:\n" + "\n".join(failures)
