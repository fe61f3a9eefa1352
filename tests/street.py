"""A small hand-made street for page tests, and helpers to drive the pages like a browser."""

from __future__ import annotations

import functools
import re

from starlette.testclient import TestClient

from server.domain.declaration import Role, validate
from server.security import accounts

PASSWORD = "correct horse battery"
# A valid 1×1 PNG: the photo a phone camera would send, in tests.
TINY_PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c49444154789c"
                         "63f8cfc0000003010100c9fe92ef0000000049454e44ae426082")
# Finding 5 of issue 13: "photos" that run a script where a browser renders them as a page. An SVG, and a page
# behind a JPEG's first bytes (a polyglot that a check of the magic bytes alone would pass).
SVG_WITH_SCRIPT = b'<svg xmlns="http://www.w3.org/2000/svg"><script>fetch("/pwa/session.json")</script></svg>'
HTML_AS_JPEG = b"\xff\xd8\xff\xe0<html><body><script>fetch('/pwa/session.json')</script></body></html>\xff\xd9"
STREET = "street:s1"
C1, C2 = "community:c1", "community:c2"
G1, G2, G3 = "grid:c1-g01", "grid:c1-g02", "grid:c2-g01"


def community_docs() -> list[dict]:
    docs: list[dict] = [{"_id": STREET, "type": "street", "street": STREET, "name": "测试街道"}]
    for cid, name in ((C1, "幸福社区"), (C2, "和谐社区")):
        docs.append({"_id": cid, "type": "community", "street": STREET, "community": cid, "name": name})
    for number, (gid, cid) in enumerate(((G1, C1), (G2, C1), (G3, C2)), start=1):
        docs.append({"_id": gid, "type": "grid", "street": STREET, "community": cid, "grid": gid,
                     "name": f"第{number}网格", "number": number})
        for h in range(1, 4 if gid == G1 else 2):
            hid = f"household:{gid[5:]}-{h:04d}"
            rid = f"resident:{gid[5:]}-{h:04d}-1"
            routing = {"street": STREET, "community": cid, "grid": gid}
            docs.append({"_id": hid, "type": "household", **routing, "address": f"{gid[5:]}路{h}号",
                         "head": rid, "member_count": 1, "tags": ["elderly_alone"] if h == 1 else []})
            docs.append({"_id": rid, "type": "resident", **routing, "household": hid, "name": f"居民{gid[-1]}{h}",
                         "gender": "female", "birth_date": "1940-05-06", "living_alone": h == 1,
                         "relation_to_head": "self", "phone": "10012345678",
                         "chronic_conditions": ["高血压"], "minimum_living_allowance": True})
    for doc in docs:
        validate(doc)
    return docs


@functools.cache
def hashed(password: str) -> str:
    """The password's argon2id hash, made once per run (a few tenths of a second each, and hundreds of tests make
    accounts): every account made with this password may share it, as the demo's accounts do (demo.user_docs); a
    login verifies it as it would a fresh one."""
    return accounts.hash_password(password)


def users() -> list[dict]:
    specs = [
        ("worker1", "张网格", [Role.GRID_WORKER], [C1], [G1]),
        ("worker3", "李网格", [Role.GRID_WORKER], [C2], [G3]),
        ("volunteer1", "赵志愿", [Role.VOLUNTEER], [C1], [G1]),
        ("secretary1", "王书记", [Role.SECRETARY], [C1], []),
        ("admin", "管理员", [Role.ADMIN], [], []),
    ]
    return [accounts.make_user(u, name, roles, STREET, hashed(PASSWORD), communities=cs, grids=gs)
            for u, name, roles, cs, gs in specs]


def csrf_of(client: TestClient, path: str = "/login") -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert match, "page has no CSRF field"
    return match.group(1)


def login(client: TestClient, username: str, password: str = PASSWORD):
    return client.post("/login", data={"username": username, "password": password, "next": "/",
                                       "csrf_token": csrf_of(client)})


def post_form(client: TestClient, path: str, data: dict, htmx: bool = False):
    """A form post as a page sends it: the session's CSRF token, and htmx's header if asked."""
    headers = {"HX-Request": "true"} if htmx else {}
    return client.post(path, data={**data, "csrf_token": csrf_of(client)}, headers=headers)


def logout(client: TestClient) -> None:
    client.post("/logout", data={"csrf_token": csrf_of(client)})


def as_user(client: TestClient, username: str, password: str = PASSWORD) -> None:
    """Sign the client out, and in again as `username`."""
    logout(client)
    response = login(client, username, password)
    assert response.status_code == 303, response.text
