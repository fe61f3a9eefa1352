"""Issue 21: a master key that does not belong to the database is refused, never silently generated.

Real `linli` processes against the session's pouchdb-server (COUCHDB_URL), as an operator runs them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path

import httpx2
import pytest

from crypto import filing_log
from crypto.envelope import b64url, unb64url
from crypto.keys import is_master_key_of, new_key
from server.security import filing, master_key
from server.security.firewall import Firewall
from server.store.config import PROJECT_ROOT, Settings
from server.store.couch import Couch, connect

from .test_firewall import NOW, SECRETARY, _resident_with
from .test_serve import LINLI, NEW_PASSWORD, start_serve


def run(settings: Settings, couch_url: str, *args: str, data_dir: Path | None = None, **key_env: str):
    """`linli ARGS` on the test's databases with exactly the master-key variables given (none: none)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINLI_MASTER_KEY")}
    env.update(COUCHDB_URL=couch_url, LINLI_DB_PREFIX=settings.db_prefix, LINLI_NEW_PASSWORD=NEW_PASSWORD,
               LINLI_DATA_DIR=str(data_dir or settings.data_dir), **key_env)
    return subprocess.run([LINLI, *args], env=env, capture_output=True, text=True, timeout=120)


def key_env(*masters: bytes) -> dict[str, str]:
    return {"LINLI_MASTER_KEY": b64url(masters[0]), **({"LINLI_MASTER_KEY_PREVIOUS": b64url(masters[1])}
                                                      if len(masters) > 1 else {})}


def snapshot(couch_url: str, settings: Settings) -> dict[str, tuple[object, bytes]]:
    """Both databases as a thief would copy them: update sequence and every document with its revision, as bytes
    (the filing log, entries and checkpoints, included)."""
    result = {}
    for logical in ("main", "accounts"):
        url = couch_url + settings.db_name(logical)
        docs = httpx2.get(url + "/_all_docs", params={"include_docs": "true"}).content
        result[logical] = (httpx2.get(url).json()["update_seq"], docs)
    return result


@pytest.fixture
def installation(demo_loaded: Couch, firewall: Firewall, settings: Settings) -> Couch:
    """An installation from before check values: key rings, data keys and a signed filing-log checkpoint."""
    resident = _resident_with(demo_loaded, "phone")
    firewall.reveal(SECRETARY, resident, "contact", purpose="routine_visit", device="d", now=NOW)
    assert filing.checkpoint(demo_loaded, firewall.signer, resident["street"], "community:c1", NOW)
    return demo_loaded


def assert_refused(result: subprocess.CompletedProcess[str], *said: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Nothing was written" in result.stderr, result.stderr
    for text in said:
        assert text in result.stderr, result.stderr


def test_a_foreign_or_missing_master_key_is_refused_and_writes_nothing(
        installation: Couch, settings: Settings, couch_server, tmp_path: Path) -> None:
    url, accounts_db = couch_server.url, settings.db_name("accounts")
    where = f"{couch_server.location} ({accounts_db})"  # messages name the database, never its password
    before = snapshot(url, settings)
    elsewhere = tmp_path / "elsewhere"  # another data folder: no key in it (the issue's `audit verify`)
    elsewhere.mkdir()
    foreign_file = tmp_path / "foreign_key"
    foreign_file.write_text(b64url(new_key()))
    # An installation without a check value yet: a wrong key is refused before it is recorded.
    assert_refused(run(settings, url, "audit", "verify", **key_env(new_key())),
                   "LINLI_MASTER_KEY does not open the key rings", where)
    assert_refused(run(settings, url, "audit", "verify", data_dir=elsewhere),
                   f"no master key: none (LINLI_MASTER_KEY and LINLI_MASTER_KEY_FILE are unset, no "
                   f"{elsewhere / 'master_key'})", where)
    assert snapshot(url, settings) == before
    # Its own key is checked against the key rings and the checkpoint, and its check value recorded once.
    migrated = run(settings, url, "audit", "verify", **key_env(*settings.master_keys))
    assert migrated.returncode == 0 and "intact" in migrated.stdout, migrated.stderr
    assert "recorded the master key's check value" in migrated.stderr
    check = installation.accounts.get(master_key.CHECK_ID)
    assert is_master_key_of(settings.master_keys[0], check["check"]) and not check["rotating"]
    assert b64url(settings.master_keys[0]) not in str(check)
    before = snapshot(url, settings)
    again = run(settings, url, "audit", "verify", **key_env(*settings.master_keys))
    assert again.returncode == 0 and "recorded" not in again.stderr
    assert snapshot(url, settings) == before  # a checked key writes no second check value

    refusals = [
        (dict(LINLI_MASTER_KEY=b64url(new_key())), "the master key from LINLI_MASTER_KEY does not belong"),
        (dict(LINLI_MASTER_KEY_FILE=str(foreign_file)),
         f"the master key from LINLI_MASTER_KEY_FILE={foreign_file} does not belong"),
        ({}, "no master key: none (LINLI_MASTER_KEY"),
    ]
    for env, said in refusals:
        for command in (("audit", "verify"), ("resident", "erase", "resident:c1-g01-0001-1", "--yes"),
                        ("user", "add", "newcomer", "--display-name", "N", "--role", "volunteer",
                         "--street", "street:hongshan")):
            result = run(settings, url, *command, data_dir=elsewhere, **env)
            assert_refused(result, said, where, f"key id is {check['master_id']}" if env else "")
            first = f"linli: data folder {elsewhere}, CouchDB {couch_server.location} ("
            assert result.stderr.startswith(first), result.stderr
            assert "BROKEN" not in result.stdout  # never a false tampering alarm
    assert snapshot(url, settings) == before
    assert sorted(p.name for p in elsewhere.iterdir()) == []  # no master key, no session key made


def test_a_new_installation_generates_its_key_once(couch_server, settings: Settings) -> None:
    url = couch_server.url
    first = run(settings, url, "device-token", "issue", "nobody")
    assert first.returncode == 2 and "no active user" in first.stderr, first.stderr  # it ran, after the check
    key_file = settings.data_dir / "master_key"
    assert f"new installation: generated its master key into {key_file}; back it up" in first.stderr
    assert key_file.stat().st_mode & 0o077 == 0
    generated = key_file.read_text()
    couch = connect(settings, url)
    check = couch.accounts.get(master_key.CHECK_ID)
    assert is_master_key_of(unb64url(generated), check["check"])
    second = run(settings, url, "device-token", "issue", "nobody")
    assert second.returncode == 2 and "generated" not in second.stderr and key_file.read_text() == generated
    key_file.unlink()  # the key is lost: the installation is not new any more, nothing is generated
    lost = run(settings, url, "device-token", "issue", "nobody")
    assert lost.returncode == 2 and "no master key" in lost.stderr and not key_file.exists()


def test_the_first_line_names_folder_and_database_quiet_aside(couch_server, settings: Settings) -> None:
    from server.cli.main import banner

    shown = run(settings, couch_server.url, "device-token", "issue", "nobody")
    assert shown.stderr.splitlines()[0] == (f"linli: data folder {settings.data_dir}, CouchDB {couch_server.location} "
                                            f"({settings.db_prefix}main, {settings.db_prefix}accounts)")
    quiet = run(settings, couch_server.url, "--quiet", "device-token", "issue", "nobody")
    assert "data folder" not in quiet.stderr and "no active user" in quiet.stderr
    with_password = dataclasses.replace(settings, couchdb_url="https://linli:hunter2@couch.example:6984/")
    assert "hunter2" not in banner(with_password) and "https://couch.example:6984/" in banner(with_password)
    # Run from anywhere, a command uses the project's data folder, as `linli serve` does (not the current one).
    default = dataclasses.replace(settings, data_dir=PROJECT_ROOT / "data")
    assert banner(default).startswith(f"linli: data folder {PROJECT_ROOT / 'data'}")


def test_rotation_stops_a_server_holding_the_old_key_and_can_resume(
        installation: Couch, settings: Settings, couch_server, tmp_path: Path) -> None:
    url = couch_server.url
    old, new = settings.master_keys[0], new_key()
    old_file = tmp_path / "old_key"
    old_file.write_text(b64url(old))
    server_env = dict(COUCHDB_URL=url, LINLI_DB_PREFIX=settings.db_prefix, LINLI_MASTER_KEY_FILE=str(old_file))
    served = start_serve(tmp_path / "serve-data", "--no-demo", **server_env)
    # A rotation interrupted just after its first write: only both keys together may go on.
    master_key.begin_rotation((new, old), installation)
    assert_refused(run(settings, url, "audit", "verify", **key_env(new)), "rotation is under way")
    assert_refused(run(settings, url, "audit", "verify", **key_env(old)), "was rotated away")
    # The running server notices within seconds and stops, saying why.
    rest = served.ended(timeout=30)
    assert served.process.returncode == 1, rest
    assert re.search(rf"linli: stopped: the master key from LINLI_MASTER_KEY_FILE={old_file} was rotated away",
                     rest), rest
    # ... and had re-signed the one checkpoint before it stopped: running it again resumes from there.
    (row,) = installation.main.all(startkey="audit_checkpoint:", endkey="audit_checkpoint:\ufff0", as_list=True)
    checkpoint = row["doc"]
    installation.main.save({**checkpoint, "signature": filing_log.sign_checkpoint(
        filing_log.signing_key(new), "community:c1", checkpoint["seq"], checkpoint["hash"])})
    resumed = run(settings, url, "keys", "rotate-master", **key_env(new, old))
    assert resumed.returncode == 0 and "re-signed 0 filing-log checkpoints" in resumed.stdout, resumed.stderr
    check = installation.accounts.get(master_key.CHECK_ID)
    assert is_master_key_of(new, check["check"]) and check["generation"] == 2 and not check["rotating"]
    verified = run(settings, url, "audit", "verify", **key_env(new))
    assert verified.returncode == 0 and "intact" in verified.stdout, verified.stderr
    assert_refused(run(settings, url, "audit", "verify", **key_env(old)), "was rotated away")
    # Restarted with the new key, the server runs; the next rotation has it stopped before it re-wraps anything.
    new_file = tmp_path / "new_key"
    new_file.write_text(b64url(new))
    restarted = start_serve(tmp_path / "serve-data", "--no-demo", **{**server_env, "LINLI_MASTER_KEY_FILE":
                                                                      str(new_file)})
    assert httpx2.get(restarted.url + "healthz").status_code == 200
    third = new_key()
    rotated = run(settings, url, "keys", "rotate-master", **key_env(third, new))
    assert rotated.returncode == 0 and "waiting 5 s for servers" in rotated.stderr, rotated.stderr
    assert restarted.process.poll() == 1  # already stopped when the rotation re-wrapped the rings
    assert "was rotated away" in restarted.ended(timeout=10)
    opened = Firewall.open(dataclasses.replace(settings, master_keys=(third,)), installation)
    resident = _resident_with(installation, "phone")
    assert opened.reveal(SECRETARY, resident, "contact", purpose="x", device="d", now=NOW)["phone"]
