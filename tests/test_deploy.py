"""The deployment example (server/deploy/): the systemd unit passes `systemd-analyze verify`, the front sends to
the processes the units start and checks the route that says a process is ready, and the CouchDB cluster's
settings are the ones the README's scale-out section states (issue 24 item 4)."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "server" / "deploy"
UNIT = DEPLOY / "two-processes" / "linli@.service"
PORTS = (8001, 8002)  # the instances the README enables: linli@8001, linli@8002


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    unit.read_string(UNIT.read_text())
    return unit


def test_the_unit_runs_linli_serve_on_its_instances_port() -> None:
    service = _unit()["Service"]
    assert service["ExecStart"].split()[-2:] == ["linli", "serve"] or service["ExecStart"].endswith("linli serve")
    assert "LINLI_PORT=%i" in UNIT.read_text() and service["KillSignal"] == "SIGINT"
    assert service["EnvironmentFile"].endswith("linli.env")
    readme = (ROOT / "README.md").read_text()
    assert all(f"linli@{port}" in readme for port in PORTS)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    """Verified as instance 8001, with this checkout's linli and the example environment file in its places."""
    text = UNIT.read_text().replace("/opt/linli/.venv/bin/linli", str(ROOT / ".venv" / "bin" / "linli")).replace(
        "/etc/linli/linli.env", str(DEPLOY / "linli.env.example"))
    unit = tmp_path / "linli@8001.service"
    unit.write_text(text)
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and unit.name not in done.stderr, done.stderr  # a bad line is a warning naming it


def test_the_front_balances_the_units_and_checks_readiness() -> None:
    config = (DEPLOY / "two-processes" / "haproxy.cfg").read_text()
    backend = config.split("backend linli_processes", 1)[1]
    assert sorted(int(p) for p in re.findall(r"server \S+ 127\.0\.0\.1:(\d+) check", backend)) == list(PORTS)
    assert "option httpchk GET /readyz" in backend
    assert re.search(r"timeout server (\d+)h", config)  # sync feeds are long polls
    app = (ROOT / "server" / "web" / "app.py").read_text()
    assert 'Route("/readyz"' in app


def test_the_cluster_settings_are_the_ones_the_readme_states() -> None:
    ini = configparser.ConfigParser(strict=False, interpolation=None, inline_comment_prefixes=(";",))
    ini.read(DEPLOY / "couchdb-cluster" / "local.ini")
    n, q = int(ini["cluster"]["n"]), int(ini["cluster"]["q"])
    readme = (ROOT / "README.md").read_text()
    stated = re.search(r"`n=(\d+)`, `q=(\d+)`, `r=(\d+)`, `w=(\d+)`", readme)
    assert stated, "the README's scale-out section states n, q, r and w"
    assert (int(stated[1]), int(stated[2])) == (n, q)
    assert int(stated[3]) + int(stated[4]) > n  # a read quorum meets every write quorum
