"""Linli's test suite (tests/README.md). Imported before any test module, so before the server's."""

import os

# Passwords hashed at argon2id's least cost in the suite and in every `linli` process it starts (they inherit the
# environment): the suite signs people in some thousand times (server/security/accounts.py says why and how).
os.environ.setdefault("LINLI_TEST_PASSWORD_HASH", "1")
