"""Brute-force limits hold under concurrency (issue 13, finding 9): parallel guesses against the real
pouchdb-server (and, for logins, through `linli serve`), released together by a barrier, are checked at most
`limit` times; the rest are refused unchecked. Before guesses were reserved, 40 parallel logins were all
checked (the code before, against these tests: 40 of 40 logins, 44 of 44 and 20 of 20 activation codes)."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable

import httpx2
from argon2 import PasswordHasher

from server.security import accounts
from server.store.couch import Couch
from server.web import activation

from .street import PASSWORD
from .sync_harness import PASSWORD as STREET_PASSWORD
from .sync_harness import Street, street_fixture  # noqa: F401 - the fixture

NOW = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)


def _in_parallel(n: int, guess: Callable[[int], str]) -> Counter[str]:
    """Run guess(i) for i < n in n threads started together; count what each returned (or raised)."""
    barrier, outcomes, lock = threading.Barrier(n), Counter[str](), threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        try:
            outcome = guess(i)
        except Exception as error:  # the outcome we count, e.g. LoginLocked
            outcome = type(error).__name__
        with lock:
            outcomes[outcome] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_parallel_login_guesses_are_checked_at_most_the_limit(loaded: Couch) -> None:
    def guess(i: int) -> str:
        user = accounts.authenticate(loaded.accounts, "worker1", f"wrong-guess-{i}", NOW)
        return "logged in" if user else "wrong"

    outcomes = _in_parallel(40, guess)
    assert outcomes == {"wrong": accounts.MAX_FAILURES, "LoginLocked": 40 - accounts.MAX_FAILURES}
    right = _in_parallel(1, lambda i: "logged in" if accounts.authenticate(loaded.accounts, "worker1", PASSWORD,
                                                                            NOW) else "wrong")
    assert right == {"LoginLocked": 1}  # locked for LOCKOUT, even with the right password
    later = NOW + accounts.LOCKOUT
    assert accounts.authenticate(loaded.accounts, "worker1", PASSWORD, later)["username"] == "worker1"


def test_parallel_guesses_at_the_login_form_of_linli_serve(street: Street) -> None:
    """The attack as found: many login requests at once against the running server, each with its own
    connection and CSRF token."""
    clients = [httpx2.Client(base_url=street.served.url, timeout=60, follow_redirects=False) for _ in range(40)]
    tokens = [re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text).group(1) for c in clients]

    def guess(i: int) -> str:
        answer = clients[i].post("/login", data={"username": "wangge01", "password": f"wrong-{i}",
                                                 "csrf_token": tokens[i], "next": "/"})
        return str(answer.status_code)

    outcomes = _in_parallel(40, guess)
    assert outcomes == {"401": accounts.MAX_FAILURES, "429": 40 - accounts.MAX_FAILURES}
    right = clients[0].post("/login", data={"username": "wangge01", "password": STREET_PASSWORD,
                                            "csrf_token": tokens[0], "next": "/"})
    assert right.status_code == 429
    for c in clients:
        c.close()


def test_a_right_password_forgives_earlier_failures(loaded: Couch) -> None:
    for i in range(accounts.MAX_FAILURES - 1):
        assert accounts.authenticate(loaded.accounts, "worker1", f"typo-{i}", NOW) is None
    assert accounts.authenticate(loaded.accounts, "worker1", PASSWORD, NOW)
    assert loaded.accounts.get("throttle:worker1")["failures"] == []


def test_an_unknown_username_costs_a_hash_of_the_hashers_own_cost() -> None:
    """A guess at a username that does not exist is verified against the written-out dummy hash: it must have the
    parameters the hasher uses for real ones, or its timing tells which usernames exist."""
    assert not accounts._hasher.check_needs_rehash(accounts._DUMMY_HASH)
    assert accounts._hasher.verify(accounts._DUMMY_HASH, "linli-no-such-user")
    default = PasswordHasher()  # the cost outside the suite (LINLI_TEST_PASSWORD_HASH unset), written out
    assert not default.check_needs_rehash(accounts.DUMMY_HASH_AT_DEFAULT_COST)
    assert default.verify(accounts.DUMMY_HASH_AT_DEFAULT_COST, "linli-no-such-user")


def test_passwords_are_hashed_at_the_recommended_cost_unless_the_suite_says_otherwise() -> None:
    """The suite's least cost (tests/__init__.py) is its own: a `linli` process without the variable hashes at
    argon2-cffi's recommended cost (64 MiB, 3 passes, 4 lanes); `linli serve` warns when it is set (test_serve)."""
    probe = "from server.security import accounts as a; print(a._hasher.memory_cost, a._hasher.time_cost)"
    environment = {k: v for k, v in os.environ.items() if k != "LINLI_TEST_PASSWORD_HASH"}
    outside = subprocess.run([sys.executable, "-c", probe], env=environment, capture_output=True, text=True,
                             check=True)
    assert outside.stdout.split() == ["65536", "3"]
    inside = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert inside.stdout.split() == ["8", "1"]


def _wrong_code(i: int) -> activation.Activation:
    return activation.Activation(code=f"{i:08d}", username=f"guesser{i:03d}", password=PASSWORD,
                                 password_again=PASSWORD)


def test_parallel_activation_guesses_from_many_addresses_stop_at_the_overall_limit(loaded: Couch) -> None:
    key = activation.code_key("test-secret")

    def guess(i: int) -> str:
        activation.redeem(loaded, key, _wrong_code(i), client=f"10.0.{i}.1", now=NOW)
        return "activated"

    outcomes = _in_parallel(44, guess)
    assert outcomes == {"ActivationError": activation.OVERALL_LIMIT, "LoginLocked": 44 - activation.OVERALL_LIMIT}


def test_parallel_activation_guesses_from_one_address_stop_at_its_limit(loaded: Couch) -> None:
    key = activation.code_key("test-secret")

    def guess(i: int) -> str:
        activation.redeem(loaded, key, _wrong_code(i), client="10.9.9.9", now=NOW)
        return "activated"

    outcomes = _in_parallel(20, guess)
    assert outcomes == {"ActivationError": activation.CLIENT_LIMIT, "LoginLocked": 20 - activation.CLIENT_LIMIT}
    # The refused ones were released from the overall count: only the checked guesses hold it.
    everyone = loaded.accounts.get(f"throttle:{activation.OVERALL}")["failures"]
    assert len(everyone) == activation.CLIENT_LIMIT
