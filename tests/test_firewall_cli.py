"""The firewall's administration commands as an operator runs them: rotation, re-keying, erasure, audit report."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from crypto.envelope import b64url
from crypto.keys import new_key
from server.security import filing, grants
from server.security.firewall import Firewall
from server.security.keystore import ShreddedError
from server.store.config import Settings
from server.store.couch import Couch

from .test_firewall import NOW, SECRETARY, WORKER, _resident_with
from .test_serve import LINLI


def run(settings: Settings, couch_url: str, *args: str, masters: tuple[bytes, ...] | None = None):
    masters = masters or settings.master_keys
    env = {**os.environ, "COUCHDB_URL": couch_url, "LINLI_DB_PREFIX": settings.db_prefix,
           "LINLI_DATA_DIR": str(settings.data_dir), "LINLI_MASTER_KEY": b64url(masters[0])}
    if len(masters) > 1:
        env["LINLI_MASTER_KEY_PREVIOUS"] = b64url(masters[1])
    return subprocess.run([LINLI, *args], env=env, capture_output=True, text=True, timeout=120)


def test_audit_report_names_people_and_night_openings(demo_loaded: Couch, firewall: Firewall, settings: Settings,
                                                      couch_server) -> None:
    resident = _resident_with(demo_loaded, "phone")
    firewall.reveal(WORKER, resident, "contact", purpose="routine_visit", device="d", now=NOW)
    night = dt.datetime(2026, 11, 25, 18, 30, tzinfo=dt.UTC)  # 02:30 in Shanghai
    firewall.reveal(WORKER, resident, "contact", purpose="alert_follow_up", device="d", now=night)
    report = run(settings, couch_server.url, "audit", "report", "--from", "2026-11-01", "--to", "2026-11-30",
                 "--community", "community:c1", "--fail-on-findings")
    assert report.returncode == 1, report.stderr
    assert "2 openings by 1 person" in report.stdout and "user:wangge01" in report.stdout
    assert "[night] user:wangge01: 1 openings" in report.stdout
    assert "outside_assignment" not in report.stdout
    # The report publishes the anchored head; the command it prints checks the log against a kept copy.
    kept = re.search(r"`linli (audit verify --head community:c1:2:[0-9a-f]{64})`", report.stdout).group(1)
    assert run(settings, couch_server.url, *kept.split()).returncode == 0
    empty = run(settings, couch_server.url, "audit", "report", "--from", "2026-10-01", "--to", "2026-10-31",
                "--community", "community:c1")
    assert empty.returncode == 0 and "0 openings" in empty.stdout and "Findings: none" in empty.stdout
    backwards = run(settings, couch_server.url, "audit", "report", "--from", "2026-12-01", "--to", "2026-11-01")
    assert backwards.returncode == 2 and "--from" in backwards.stderr


def test_rotations_and_rekey_keep_the_data_readable(demo_loaded: Couch, firewall: Firewall, settings: Settings,
                                                    couch_server) -> None:
    resident = _resident_with(demo_loaded, "phone")
    phone = firewall.reveal(SECRETARY, resident, "contact", purpose="x", device="d", now=NOW)["phone"]
    filing.checkpoint(demo_loaded, firewall.signer, resident["street"], "community:c1", NOW)
    tier = run(settings, couch_server.url, "keys", "rotate-tier", "--community", "community:c1", "--tier", "core")
    assert tier.returncode == 0 and "community:c1 core: new tier key" in tier.stdout, tier.stderr
    refused = run(settings, couch_server.url, "keys", "rotate-master")
    assert refused.returncode == 2 and "LINLI_MASTER_KEY_PREVIOUS" in refused.stderr
    new_master = new_key()
    rotated = run(settings, couch_server.url, "keys", "rotate-master", masters=(new_master, settings.master_keys[0]))
    assert rotated.returncode == 0 and "re-signed 1 filing-log checkpoints" in rotated.stdout, rotated.stderr
    verified = run(settings, couch_server.url, "audit", "verify", "--community", "community:c1",
                   masters=(new_master,))
    assert verified.returncode == 0 and "intact" in verified.stdout, verified.stdout
    rekey = run(settings, couch_server.url, "keys", "rekey", resident["_id"], masters=(new_master,))
    assert rekey.returncode == 0, rekey.stderr
    after = Firewall.open(dataclasses.replace(settings, master_keys=(new_master,)), demo_loaded)
    fresh = demo_loaded.main.get(resident["_id"])
    assert after.reveal(SECRETARY, fresh, "contact", purpose="x", device="d", now=NOW)["phone"] == phone


def test_erase_needs_confirmation_then_shreds(demo_loaded: Couch, firewall: Firewall, settings: Settings,
                                              couch_server) -> None:
    resident = _resident_with(demo_loaded, "phone")
    unconfirmed = run(settings, couch_server.url, "resident", "erase", resident["_id"])
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    assert firewall.reveal(SECRETARY, resident, "contact", purpose="x", device="d", now=NOW)
    erased = run(settings, couch_server.url, "resident", "erase", resident["_id"], "--yes")
    assert erased.returncode == 0, erased.stderr
    with pytest.raises(ShreddedError, match="has no data keys"):
        firewall.reveal(SECRETARY, resident, "contact", purpose="x", device="d", now=NOW)


def test_deactivating_a_user_withdraws_their_phones_keys_at_once(demo_loaded: Couch, firewall: Firewall,
                                                                   settings: Settings, couch_server) -> None:
    """`linli user deactivate`: not only the sessions end; the keys on their phones are withdrawn (filed), so the
    next sync deletes them, and what they held rotates (nothing written afterwards opens with it)."""
    user = demo_loaded.accounts.get("user:wangge01")
    public = b64url(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))
    grants.register_phone(demo_loaded, user, public, "wangge01 phone", NOW)
    grants.sync_user(firewall, user, NOW)
    assert grants.grants_of(demo_loaded, user["_id"])
    off = run(settings, couch_server.url, "--quiet", "user", "deactivate", "wangge01")
    assert off.returncode == 0, off.stderr
    assert grants.grants_of(demo_loaded, user["_id"]) == []
