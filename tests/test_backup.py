"""Backup and restore (issue 20, item 2) as the community's IT volunteer runs them: `linli backup`, `linli backup
--key`, and `linli restore` into a new data folder; the restored installation opens every protected field, its
filing log verifies, and a phone's waiting change based on a backed-up revision lands without a conflict. A backup
cut short, altered, of another installation, or restored over a non-empty one is refused and nothing is written."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from crypto.backup import BackupKeyError, open_under_passphrase, seal_under_passphrase
from crypto.fields import open_fields, protected_fields
from crypto.keys import new_key
from server.security import filing
from server.security.firewall import Firewall
from server.services import backup
from server.store.config import Settings, load_settings
from server.store.couch import Couch, connect, docs_of_type
from server.store.embedded_couch import EmbeddedCouch
from tests.conftest import make_settings
from tests.sync_harness import Street, serve, stop, street_fixture  # noqa: F401 - the fixture
from tests.test_serve import LINLI, linli_env

PASSPHRASE = "a passphrase long enough"


def run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LINLI, *args], env=linli_env(data_dir, LINLI_BACKUP_PASSPHRASE=PASSPHRASE),
                          capture_output=True, text=True, timeout=300)


def test_a_backup_restored_on_a_fresh_folder_opens_every_field_and_verifies(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    assert run(old, "demo", "--residents", "300").returncode == 0
    made = run(old, "backup", "--out", str(tmp_path / "b.tar"))
    assert made.returncode == 0 and "It holds no master key" in made.stdout, made.stderr
    master = (old / "master_key").read_text().strip()
    assert master.encode() not in (tmp_path / "b.tar").read_bytes()
    assert run(old, "backup", "--key", str(tmp_path / "k.json")).returncode == 0
    assert master not in (tmp_path / "k.json").read_text()

    restored = run(new, "restore", str(tmp_path / "b.tar"), "--key", str(tmp_path / "k.json"))
    assert restored.returncode == 0, restored.stderr
    assert "the filing log's anchor written" in restored.stdout
    again = run(new, "restore", str(tmp_path / "b.tar"))  # the folder now holds the installation
    assert again.returncode == 2 and "not empty" in again.stderr and "nothing was written" in again.stderr

    settings = load_settings_of(new)
    with EmbeddedCouch(new / "couch") as database:
        couch = connect(settings, database.url, designs=False)
        firewall = Firewall.open(settings, couch)
        residents = docs_of_type(couch.main, "resident")
        assert len(residents) > 100
        opened = 0
        for resident in residents:
            sealed = [name for name in protected_fields("resident") if name in resident]
            values = open_fields(resident, firewall.keystore.data_keys(resident["_id"]), sealed)
            opened += len(values)
            assert set(values) == set(sealed)
        assert opened > len(residents)  # every resident's protected fields, not one or two
        for community in filing.communities(couch, firewall.signer):
            assert filing.verify(couch, firewall.signer, community).ok, community
        # A phone held a household at the backed-up revision and changed it offline: it lands as the next one.
        household = docs_of_type(couch.main, "household")[0]
        number, digest = household["_rev"].split("-")
        changed = {**household, "note": "改了门牌", "_rev": f"{int(number) + 1}-{'a' * 32}",
                   "_revisions": {"start": int(number) + 1, "ids": ["a" * 32, digest]}}
        couch.main.resource.post("_bulk_docs", json={"docs": [changed], "new_edits": False})
        after = couch.main.resource.get(household["_id"], params={"conflicts": "true"})[1]
        assert after["_rev"] == changed["_rev"] and "_conflicts" not in after


def load_settings_of(data_dir: Path):  # noqa: ANN201 - the Settings of `linli` run on data_dir
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(linli_env(data_dir))
        return load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def made(demo_loaded: Couch, settings: Settings, tmp_path: Path) -> tuple[Path, bytes]:
    out = tmp_path / "b.tar"
    backup.write_backup(demo_loaded, settings.master_keys[0], tmp_path / "anchor.json", out, lambda *_: None)
    return out, settings.master_keys[0]


def _rewritten(path: Path, member: str, change) -> None:  # noqa: ANN001
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    members[member] = change(members[member])
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


# Why a backup is refused, as restore says it.
FOREIGN = "not made with this installation's master key"
CUT = "cut short|no manifest|does not match"
ALTERED = "main.jsonl.gz is missing or does not match its checksum"


def test_a_damaged_or_foreign_backup_is_refused_before_anything_is_written(made: tuple[Path, bytes],
                                                                        tmp_path: Path) -> None:
    path, master = made
    empty = make_settings(tmp_path, "empty_")
    with EmbeddedCouch(tmp_path / "couch") as database:
        target = connect(empty, database.url, designs=False)

        def refused(file: Path, key: bytes, why: str) -> None:
            with pytest.raises(backup.BackupError, match=why):
                backup.restore(target, key, file, tmp_path / "anchor-new.json", lambda *_: None)
            assert target.main.config()["doc_count"] == 0 and not (tmp_path / "anchor-new.json").exists()

        refused(path, new_key(), FOREIGN)
        cut = tmp_path / "cut.tar"
        cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        refused(cut, master, CUT)
        altered = tmp_path / "altered.tar"
        altered.write_bytes(path.read_bytes())
        _rewritten(altered, "main.jsonl.gz", lambda data: data[:-9] + bytes([data[-9] ^ 1]) + data[-8:])
        refused(altered, master, ALTERED)
        forged = tmp_path / "forged.tar"  # checksums rewritten too: the manifest's MAC still fails
        forged.write_bytes(path.read_bytes())
        _rewritten(forged, "manifest.json", lambda data: data.replace(b'"documents": ', b'"documents": 1'))
        refused(forged, master, FOREIGN)

        done = backup.restore(target, master, path, tmp_path / "anchor-new.json", lambda *_: None)
        assert done.documents["main"] == target.main.config()["doc_count"] > 100
        # Into an installation that holds data, even with --merge, a bad backup overwrites nothing (issue 20, 5).
        anchor, before = tmp_path / "anchor-new.json", target.main.config()["update_seq"]
        kept = anchor.read_bytes() if anchor.exists() else None
        for bad, why in ((cut, CUT), (altered, ALTERED), (forged, FOREIGN)):
            with pytest.raises(backup.BackupError, match=why):
                backup.restore(target, master, bad, anchor, lambda *_: None, merge=True)
            assert target.main.config()["update_seq"] == before, bad.name
            assert (anchor.read_bytes() if anchor.exists() else None) == kept, bad.name


def test_the_key_file_opens_only_with_its_passphrase() -> None:
    sealed = seal_under_passphrase({"master_key": "x"}, PASSPHRASE)
    assert open_under_passphrase(sealed, PASSPHRASE) == {"master_key": "x"}
    with pytest.raises(BackupKeyError, match="wrong passphrase"):
        open_under_passphrase(sealed, PASSPHRASE + "!")
    with pytest.raises(BackupKeyError, match="at least 12"):
        seal_under_passphrase({"master_key": "x"}, "short")
    with pytest.raises(BackupKeyError, match="not a linli-key-export/1 file"):
        open_under_passphrase(b"{}", PASSPHRASE)


def test_a_phone_syncs_its_waiting_change_into_the_restored_installation(street: Street, couch_server: EmbeddedCouch,
                                                                          tmp_path: Path) -> None:
    """A real PouchDB phone changes a household offline; meanwhile the installation is backed up and restored into
    new databases, and `linli serve` comes back on the same address: the waiting change lands, no conflict, and the
    phone pulls nothing it did not have (issue 20 item 2)."""
    phone = street.phone("wangge01")
    try:
        phone.call("pull")
        home = phone.call("get", id="household:c1-g1-h004")
        phone.call("put", doc={**home, "address": "幸福路4号（改）"})  # offline: not pushed yet
        out = tmp_path / "b.tar"
        backup.write_backup(street.couch, street.settings.master_keys[0], tmp_path / "anchor.json", out,
                            lambda *_: None)
        stop(street.served)
        restored = make_settings(tmp_path / "restored", f"{street.settings.db_prefix}r_",
                                 secret_key=street.settings.secret_key, master_keys=street.settings.master_keys)
        restored.data_dir.mkdir()
        couch = connect(restored, couch_server.url, designs=False)
        backup.restore(couch, restored.master_keys[0], out, restored.data_dir / "filing_anchor.json", lambda *_: None)
        street.served = serve(couch_server.url, restored, int(street.served.url.rsplit(":", 1)[1].strip("/")))
        pushed = phone.call("push")
        assert pushed["docs_written"] == 1 and pushed["doc_write_failures"] == 0, pushed
        stored = couch.main.get("household:c1-g1-h004", conflicts="true")
        assert stored["address"] == "幸福路4号（改）" and "_conflicts" not in stored
        assert stored["_rev"] == phone.call("get", id="household:c1-g1-h004")["_rev"]
        assert phone.call("pull")["docs_written"] == 0
    finally:
        phone.close()
