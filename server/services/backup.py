"""Backup and restore of an installation through CouchDB's own HTTP API (so it works on Apache CouchDB as on the
embedded server): `linli backup` and `linli restore` (server/cli/backup_admin.py).

A backup is one tar file:

    manifest.json        format, when, the master key's public name, per database its file, count and SHA-256,
                         the filing log's anchor file and its SHA-256
    manifest.mac         HMAC of manifest.json under a key derived from the master key (crypto/backup.py)
    main.jsonl.gz        one document per line: every live document with its attachments and its conflicting
    accounts.jsonl.gz    leaves, revisions kept (`_rev`), so phones that hold them re-sync as before
    filing_anchor.json   the filing log's head kept outside the database (server/security/filing_anchor.py)

It never holds the master key (`linli backup --key` exports that apart, under a passphrase). Consistency: the
documents are read page by page, then everything that changed since the read began is read again and appended;
restore stores every line with `new_edits=false`, so a later line's revision extends the earlier one, and the
result is the database as it was when the backup ended. Restore refuses a file cut short, altered, or made with
another master key before it writes anything, and a non-empty installation unless told to merge into it.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pycouchdb

from crypto.backup import manifest_is_authentic, manifest_mac
from crypto.keyring import master_id
from server.store.couch import Couch

FORMAT = "linli-backup/1"
PAGE = 500
DATABASES = ("main", "accounts")
ANCHOR_MEMBER = "filing_anchor.json"

Progress = Callable[[str, int, int], None]  # (what, done, total)


class BackupError(ValueError):
    """A backup that cannot be written or restored; the message says why and that nothing was overwritten."""


@dataclass(frozen=True)
class Restored:
    documents: dict[str, int]  # per database
    anchor_written: bool
    manifest: dict[str, Any]


def write_backup(couch: Couch, master: bytes, anchor: Path, out: Path, progress: Progress) -> dict[str, Any]:
    """Write the backup to `out` (through a temporary file renamed at the end: never half a file under its name);
    returns its manifest."""
    manifest: dict[str, Any] = {"format": FORMAT, "created_at": dt.datetime.now(dt.UTC).isoformat(),
                                "master_id": master_id(master), "databases": {}, "anchor": None}
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w") as tar:
        for logical in DATABASES:
            buffer = io.BytesIO()
            with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:
                count = sum(gz.write(json.dumps(doc, ensure_ascii=False).encode() + b"\n") > 0
                            for doc in _documents(couch.db(logical), lambda done, total, what=logical:
                                                  progress(f"backup {what}", done, total)))
            data = buffer.getvalue()
            name = f"{logical}.jsonl.gz"
            _add(tar, name, data)
            manifest["databases"][logical] = {"file": name, "documents": count,
                                              "sha256": hashlib.sha256(data).hexdigest()}
        if anchor.exists():
            data = anchor.read_bytes()
            _add(tar, ANCHOR_MEMBER, data)
            manifest["anchor"] = {"file": ANCHOR_MEMBER, "sha256": hashlib.sha256(data).hexdigest()}
        text = json.dumps(manifest, indent=1, sort_keys=True).encode()
        _add(tar, "manifest.json", text)
        _add(tar, "manifest.mac", manifest_mac(master, text).encode())
    partial.replace(out)
    return manifest


def restore(couch: Couch, master: bytes, backup: Path, anchor: Path, progress: Progress, *,
            merge: bool = False) -> Restored:
    """Check the whole backup first (manifest's MAC, every file's checksum, the target empty unless `merge`), then
    store its documents as they were (`new_edits=false`) and its filing-log anchor if the folder has none."""
    manifest, members = read_backup(backup, master)
    if not merge:
        filled = [couch.db(logical).name for logical in DATABASES if _holds_documents(couch.db(logical))]
        if filled:
            raise BackupError(f"the installation is not empty ({', '.join(filled)} hold documents); nothing was "
                              "written. Restore into a new data folder or database prefix, or pass --merge to add "
                              "the backup's revisions to it")
    counts = {}
    for logical in DATABASES:
        lines = gzip.decompress(members[manifest["databases"][logical]["file"]]).splitlines()
        db, done = couch.db(logical), 0
        for start in range(0, len(lines), PAGE):
            page = [json.loads(line) for line in lines[start:start + PAGE]]
            _store_as_they_were(db, page)
            done += len(page)
            progress(f"restore {logical}", done, len(lines))
        counts[logical] = len(lines)
    anchor_written = False
    if manifest["anchor"] and not anchor.exists():
        anchor.parent.mkdir(parents=True, exist_ok=True)
        anchor.write_bytes(members[ANCHOR_MEMBER])
        anchor.chmod(0o600)
        anchor_written = True
    return Restored(counts, anchor_written, manifest)


def read_backup(backup: Path, master: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest and every member's bytes, each checked; BackupError naming the first problem."""
    try:
        with tarfile.open(backup, "r:") as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()  # type: ignore[union-attr]
                       if m.isfile()}
    except (tarfile.TarError, EOFError, OSError) as error:
        raise BackupError(f"{backup} is not a whole backup (cut short or not one: {error}); nothing was written") \
            from None
    text, mac = members.get("manifest.json"), members.get("manifest.mac")
    if text is None or mac is None:
        raise BackupError(f"{backup} has no manifest (cut short, or not a Linli backup); nothing was written")
    if not manifest_is_authentic(master, text, mac.decode(errors="replace")):
        raise BackupError(f"{backup} was not made with this installation's master key (another installation's "
                          "backup, or its manifest was altered); nothing was written")
    manifest = json.loads(text)
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{backup} is in format {manifest.get('format')!r}, not {FORMAT}; nothing was written")
    files = [*manifest["databases"].values(), *([manifest["anchor"]] if manifest["anchor"] else [])]
    for entry in files:
        data = members.get(entry["file"])
        if data is None or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise BackupError(f"{backup}: {entry['file']} is missing or does not match its checksum (altered or cut "
                              "short); nothing was written")
    return manifest, members


# ---------------------------------------------------------------- CouchDB's side

def _documents(db: pycouchdb.client.Database, progress: Callable[[int, int], None]) -> Iterator[dict[str, Any]]:
    """Every live document (winner and conflicting leaves, attachments inline), then those changed meanwhile."""
    info = db.config()
    since, total, done = info["update_seq"], info["doc_count"], 0
    start: str | None = None
    while True:
        params = {"include_docs": "true", "conflicts": "true", "attachments": "true", "limit": str(PAGE + 1)}
        if start is not None:
            params["startkey"] = json.dumps(start)
        rows = db.resource.get("_all_docs", params=params)[1]["rows"]
        page, start = rows[:PAGE], rows[PAGE]["id"] if len(rows) > PAGE else None
        for row in page:
            yield from _with_conflicts(db, row["doc"])
        done += len(page)
        progress(done, total)
        if start is None:
            break
    changed = db.resource.get("_changes", params={"since": str(since), "style": "all_docs"})[1]["results"]
    for change in changed:
        if not change.get("deleted"):
            _, doc = db.resource.get(_doc_path(change["id"]), params={"conflicts": "true", "attachments": "true"})
            yield from _with_conflicts(db, doc)


def _with_conflicts(db: pycouchdb.client.Database, doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    conflicts = doc.pop("_conflicts", [])
    yield doc
    for rev in conflicts:  # kept: a conflict is shown to a person, never dropped by a backup
        yield db.resource.get(_doc_path(doc["_id"]), params={"rev": rev, "attachments": "true"})[1]


def _doc_path(doc_id: str) -> list[str]:
    return doc_id.split("/", 1) if doc_id.startswith("_design/") else [doc_id]


def _store_as_they_were(db: pycouchdb.client.Database, docs: list[dict[str, Any]]) -> None:
    response, results = db.resource._request_response(  # as bulk_save, with new_edits=false
        "POST", "_bulk_docs", data=json.dumps({"docs": docs, "new_edits": False}).encode(),
        headers={"Content-Type": "application/json"})
    if response.status_code >= 400:
        raise BackupError(f"CouchDB refused the restored documents (HTTP {response.status_code}: {results})")
    failed = [r for r in results or [] if isinstance(r, dict) and r.get("error")]
    if failed:
        raise BackupError(f"CouchDB refused {len(failed)} restored documents, e.g. {failed[0]}")


def _holds_documents(db: pycouchdb.client.Database) -> bool:
    """Documents other than design documents (a new installation has its views already)."""
    rows = db.resource.get("_all_docs", params={"limit": "20"})[1]["rows"]
    return any(not r["id"].startswith("_design/") for r in rows)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o600
    tar.addfile(info, io.BytesIO(data))

