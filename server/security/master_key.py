"""Which master key belongs to the database: its check value, checked before anything is written.

The accounts database holds one `master_key_check:installation` document (never replicated to phones):

    check           crypto.keys.master_key_check(current master key): a MAC under a derived key, never the key
    master_id       the key's short public name, as key rings record it (crypto/keyring.py master_id)
    previous_check  the check value of the key before the last rotation, if there was one
    rotating        true while `linli keys rotate-master` re-wraps the key rings

Every process that loads the master key calls `establish` right after connecting: a key that is not the
database's is refused, and a key is generated only for a database with no key material at all. A rotation
switches `check` to the new key in one document write before it re-wraps anything and clears `rotating`
in one write at the end, so a rotation interrupted anywhere is resumed by running it again with both keys,
and a process still holding the old key notices (`refusal` no longer passes) and stops.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pycouchdb.exceptions import Conflict

from crypto import filing_log
from crypto.keyring import TierKeys, master_id
from crypto.keys import MASTER_CHECK_ALGORITHM, KeyMaterialError, is_master_key_of, master_key_check
from server.domain.declaration import validate
from server.store.config import Settings, generate_master_key, master_key_file
from server.store.couch import Couch, get_or_none

CHECK_ID = "master_key_check:installation"
# How often a running `linli serve` re-reads the check value, and how long a rotation waits after switching it:
# long enough for every server still holding the old key to notice and stop (requests under way finish), so
# none of them wraps a key ring or signs a checkpoint with the old key after the rotation re-wrapped and re-signed.
WATCH_SECONDS = 2.0
SETTLE_SECONDS = 2 * WATCH_SECONDS + 1


class MasterKeyRefused(RuntimeError):
    """The configured master key is missing or not the database's; the message says what to do."""


def where(couch: Couch) -> str:
    """The database a check was made against, for people: URL without credentials, and the db name."""
    parts = urlsplit(couch.server.base_url)
    return f"{urlunsplit(parts._replace(netloc=parts.netloc.rsplit('@', 1)[-1]))} ({couch.accounts.name})"


def establish(settings: Settings, couch: Couch, *, starting_rotation: bool = False) -> tuple[Settings, str | None]:
    """The settings to run with (a new installation's generated key added) and a note for the operator, if any.

    Raises MasterKeyRefused, having written nothing, if the key is missing or belongs elsewhere.
    `starting_rotation`: also accept a new key with the database's key as the previous one.
    """
    doc = get_or_none(couch.accounts, CHECK_ID)
    if doc is not None:
        problem = refusal(settings, doc, starting_rotation=starting_rotation)
        if problem:
            raise MasterKeyRefused(f"{problem} (checked against {where(couch)}). Nothing was written.")
        return settings, None
    material = _key_material(couch)
    if material is None:  # a new installation: the only case where a key may be made
        note = None
        if not settings.master_keys:
            settings = generate_master_key(settings)
            note = (f"new installation: generated its master key into {master_key_file(settings.data_dir)}; back it "
                    "up apart from the database")
        return settings, _record(settings, couch, _check_doc(settings.master_keys[0])) or note
    return settings, _migrate(settings, couch, material)


def refusal(settings: Settings, doc: dict[str, Any], *, starting_rotation: bool = False) -> str | None:
    """Why the settings' keys may not be used with the database whose check document is doc (None: they may)."""
    source = settings.master_key_source
    if not settings.master_keys:
        return (f"no master key: {source}, but this database belongs to an installation that has one. Set "
                "LINLI_MASTER_KEY or LINLI_MASTER_KEY_FILE to its key, or LINLI_DATA_DIR to its data folder")
    current, previous = settings.master_keys[0], settings.master_keys[1:2]
    if is_master_key_of(current, doc["check"]):
        if doc.get("rotating") and not (previous and is_master_key_of(previous[0], doc.get("previous_check"))):
            return ("a master-key rotation is under way and unfinished: run `linli keys rotate-master` again with "
                    "LINLI_MASTER_KEY_PREVIOUS set to the old key to finish it")
        if previous and not is_master_key_of(previous[0], doc.get("previous_check")):
            return "LINLI_MASTER_KEY_PREVIOUS is not this database's previous master key: unset it"
        return None
    if previous and is_master_key_of(previous[0], doc["check"]) and not doc.get("rotating"):
        if starting_rotation:
            return None
        return (f"the master key from {source} is not yet this database's: LINLI_MASTER_KEY_PREVIOUS is. Run "
                "`linli keys rotate-master` to rotate to it, or unset LINLI_MASTER_KEY_PREVIOUS")
    if is_master_key_of(current, doc.get("previous_check")):
        return (f"the master key from {source} was rotated away (now generation {doc['generation']}, key id "
                f"{doc['master_id']}): set LINLI_MASTER_KEY or LINLI_MASTER_KEY_FILE to the new key")
    return (f"the master key from {source} does not belong to this database (its key id is {doc['master_id']}, "
            f"generation {doc['generation']}); refusing to use it. Use the installation's own master key")


def _key_material(couch: Couch) -> str | None:
    """What the database holds that only its master key could have made, in words (None: nothing, a new
    installation): key rings, data keys wrapped under them, filing-log checkpoints signed with it."""
    found = [what for what, db, prefix in (("key rings", couch.accounts, "keyring:"),
                                           ("data keys", couch.main, "data_key:"),
                                           ("signed filing-log checkpoints", couch.main, "audit_checkpoint:"))
             if _ids(db, prefix, limit=1)]
    return ", ".join(found) or None


def _ids(db: Any, prefix: str, limit: int | None = None) -> list[str]:
    rows = db.all(startkey=prefix, endkey=prefix + "\ufff0", include_docs="false", as_list=True,
                  **({"limit": limit} if limit else {}))
    return [row["id"] for row in rows]


def _migrate(settings: Settings, couch: Couch, material: str) -> str | None:
    """An installation from before check values: the key must open every key ring and have signed the first
    checkpoint; then its check value is recorded."""
    source = settings.master_key_source
    if not settings.master_keys:
        raise MasterKeyRefused(f"no master key: {source}, but the database {where(couch)} already holds "
                               f"{material}. Set LINLI_MASTER_KEY or LINLI_MASTER_KEY_FILE to its key, or "
                               "LINLI_DATA_DIR to its data folder. Nothing was written.")
    rings = [couch.accounts.get(ring_id) for ring_id in _ids(couch.accounts, "keyring:")]
    checkpoints = [couch.main.get(i) for i in _ids(couch.main, "audit_checkpoint:", limit=1)]
    if not rings and not checkpoints:
        raise MasterKeyRefused(f"the database {where(couch)} holds data keys but no key ring to check the master "
                               "key against; refusing to guess. Nothing was written.")
    if _made(settings.master_keys[:1], rings, checkpoints):
        doc = _check_doc(settings.master_keys[0])
    elif len(settings.master_keys) > 1 and _made(settings.master_keys, rings, checkpoints):
        # Interrupted mid-rotation by a version without check values: both keys are needed until it is finished.
        doc = {**_check_doc(settings.master_keys[0]), "rotating": True,
               "previous_check": master_key_check(settings.master_keys[1])}
    else:
        raise MasterKeyRefused(f"the master key from {source} does not open the key rings or verify the filing "
                               f"log of {where(couch)}: it is not this installation's key. Nothing was written.")
    return _record(settings, couch, doc) or (f"recorded the master key's check value in {where(couch)} (an "
                                             f"installation from before check values; the key opens its "
                                             f"{len(rings)} key rings)")


def _made(masters: tuple[bytes, ...], rings: list[dict[str, Any]], checkpoints: list[dict[str, Any]]) -> bool:
    """Whether these master keys open every ring and signed every checkpoint given."""
    try:
        for ring in rings:
            TierKeys.unwrap_ring(masters, ring)
    except KeyMaterialError:
        return False
    signers = [filing_log.signing_key(m).public_key() for m in masters]
    return all(any(filing_log.is_signed_by(s, c["community"], c) for s in signers) for c in checkpoints)


def _check_doc(master: bytes, generation: int = 1) -> dict[str, Any]:
    return {"_id": CHECK_ID, "type": "master_key_check", "check": master_key_check(master),
            "master_id": master_id(master), "algorithm": MASTER_CHECK_ALGORITHM, "generation": generation,
            "created_at": dt.datetime.now(dt.UTC).isoformat(), "rotating": False}


def _record(settings: Settings, couch: Couch, doc: dict[str, Any]) -> str | None:
    """Save the first check document; if another process saved one first, the key must pass theirs."""
    validate(doc)
    try:
        couch.accounts.save(doc)
        return None
    except Conflict:
        problem = refusal(settings, couch.accounts.get(CHECK_ID))
        if problem:
            raise MasterKeyRefused(f"{problem} (checked against {where(couch)})") from None
        return None


def begin_rotation(master_keys: tuple[bytes, ...], couch: Couch) -> bool:
    """Name the new key (master_keys[0]) current and the old one previous, marked unfinished: one write.
    False if an interrupted rotation had done so already.

    From here on only a process with both keys passes `establish`, until `finish_rotation`; a running server
    with the old key alone stops within SETTLE_SECONDS, which the caller waits before re-wrapping anything.
    """
    doc = couch.accounts.get(CHECK_ID)
    new, old = master_keys[:2]
    if is_master_key_of(new, doc["check"]):  # resuming an interrupted rotation
        return False
    doc.update(check=master_key_check(new), master_id=master_id(new), previous_check=master_key_check(old),
               rotating=True, generation=doc["generation"] + 1, rotated_at=dt.datetime.now(dt.UTC).isoformat())
    validate(doc)
    couch.accounts.save(doc)
    return True


def finish_rotation(couch: Couch) -> None:
    """Every ring is re-wrapped and every checkpoint re-signed: processes with the new key alone may run."""
    doc = couch.accounts.get(CHECK_ID)
    if doc["rotating"]:
        couch.accounts.save({**doc, "rotating": False})
