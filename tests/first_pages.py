"""Each role's first pages right after `linli serve` prints its URL (issue 19 item 1): signed in over HTTP, each
page timed from the request to its whole answer, redirects followed. Used by tests/test_first_start.py (a bound)
and bench/first_start.py (the figures)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import httpx2

# One demo account of each role that signs in with the demo password (residents sign up by activation code),
# and what each opens first: "/" (their home page: server/web/home.py), and for the phones' roles what the
# offline app's first sync asks (its session, the conflicts to resolve).
FIRST_PAGES = {
    "shuji1": ("/",),
    "admin": ("/",),
    "wangge01": ("/", "/pwa/session.json", "/conflicts"),
    "zhiyuan01a": ("/", "/pwa/session.json"),
    "bumen_urban_management": ("/",),
    "hezuo1": ("/",),
}


@dataclass(frozen=True)
class Answer:
    username: str
    path: str
    final_path: str  # after redirects (a home page)
    status: int
    seconds: float


def open_first_pages(url: str, password: str, timeout: float = 120) -> list[Answer]:
    """Sign in as each account of FIRST_PAGES and open its pages, one account after another."""
    answers = []
    for username, paths in FIRST_PAGES.items():
        with httpx2.Client(base_url=url, follow_redirects=True, timeout=timeout) as client:
            form = client.get("/login").text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
            signed_in = client.post("/login", data={"username": username, "password": password, "next": "/",
                                                    "csrf_token": csrf}, follow_redirects=False)
            assert signed_in.status_code == 303, (username, signed_in.status_code)
            for path in paths:
                started = time.monotonic()
                answer = client.get(path)
                answers.append(Answer(username, path, answer.url.path, answer.status_code,
                                      time.monotonic() - started))
    return answers
