"""Documents written under an older declaration, brought up to the current one (issue 20 item 4).

A document's version is `declaration.VERSION_FIELD` (none means 1: every type started there, and documents from
before versions were declared carry none). A type whose `DocType.version` is N has one migration for each
version 1..N-1: a small pure function from a document of that version to one of the next, registered in
MIGRATIONS under (type, from-version). `upgrade` applies them in order and stamps the result.

Who upgrades: the server upgrades whatever it writes (server/store/couch.py), the sync gateway checks a phone's
older document as its upgrade and stores the upgrade right after it (sync/app.py), and `linli migrate`
(server/services/migrate.py) upgrades what is stored, in batches, while the server runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from server.domain.declaration import DOC_TYPES, VERSION_FIELD

Doc = dict[str, Any]
Migration = Callable[[Doc], Doc]


def _request_source(doc: Doc) -> Doc:
    """service_request 1 → 2: `source` always written. Pages, Open311 and the demo always wrote it; only the
    offline app did not, so a request without one came from a phone: "offline", the default the request sweep
    assumed (service_requests._dispatch)."""
    return doc if doc.get("source") else {**doc, "source": "offline"}


def _without_secret(doc: Doc) -> Doc:
    """ledger_lock 1 → 2 and venue_code 1 → 2: a secret kept in the clear is dropped. Both secrets are now derived
    from the installation's `code_key`, stored only wrapped under the master key: a resident's confirmation codes'
    (server/domain/timebank.py code_secret) and a venue's check-in codes' (server/domain/pool.py venue_secret).
    So the codes change once: the resident's page shows their new ones (a code printed before the upgrade no
    longer confirms anything); the minute clock renews a venue's code hashes from its new secret
    (server/services/pool.py renew_codes) and its keeper prints the week's sheet again."""
    return {k: v for k, v in doc.items() if k != "secret"}


def _husk_deleted(doc: Doc) -> Doc:
    """venue_code 2 → 3: deleted. Version 2 left a husk (`resource`, `created_at`) that nothing reads or writes: the
    codes' secret is derived (server/domain/pool.py venue_secret). The type lives in the accounts database, which no
    phone replicates, so the tombstone reaches nobody; kept, the husks would only say that a venue had a code record
    it no longer has. The tombstone keeps the type, so `linli migrate`'s report still names what it was."""
    return {"_id": doc["_id"], **({"_rev": doc["_rev"]} if "_rev" in doc else {}), "_deleted": True,
            "type": doc["type"]}


def _redemption_voided(doc: Doc) -> Doc:
    """redemption 1 → 2: `voided` declared (a voucher voided by its debit's reversal); every earlier redemption
    was a use, which says so by having none: nothing to add."""
    return doc


def _sample_answered(doc: Doc) -> Doc:
    """survey_sample 1 → 2: `answered` always there; an older sample lists none yet (the minute part
    survey.mark_answered fills it in from the answers)."""
    return doc if "answered" in doc else {**doc, "answered": []}


MIGRATIONS: dict[tuple[str, int], Migration] = {
    ("service_request", 1): _request_source,
    ("ledger_lock", 1): _without_secret,
    ("redemption", 1): _redemption_voided,
    ("survey_sample", 1): _sample_answered,
    ("venue_code", 1): _without_secret,
    ("venue_code", 2): _husk_deleted,
}


def version_of(doc: Doc) -> int | None:
    """The version a document says it was written under (none: 1); None for a value that is no version (0, "2",
    true), which nothing upgrades and `declaration.validate` refuses."""
    version = doc.get(VERSION_FIELD, 1)
    return version if isinstance(version, int) and not isinstance(version, bool) and version >= 1 else None


def current_version(doc: Doc) -> int | None:
    """The version the document's type is at now; None for what has no declared type (design documents,
    deletions without a body)."""
    doc_type = DOC_TYPES.get(doc.get("type")) if isinstance(doc.get("type"), str) else None
    return doc_type.version if doc_type else None


def is_behind(doc: Doc) -> bool:
    """True for a live document of a declared type written under an older version of it."""
    current, version = current_version(doc), version_of(doc)
    return current is not None and version is not None and not doc.get("_deleted") and version < current


def upgrade(doc: Doc) -> Doc:
    """The document at its type's current version, saying so in VERSION_FIELD from version 2 on (a new dict; the
    same one if there is nothing to do). A version newer than the server's is left as it is, for
    `declaration.validate` to refuse."""
    if not is_behind(doc):
        return doc
    current, since = current_version(doc), version_of(doc)
    assert current is not None and since is not None
    for version in range(since, current):
        doc = MIGRATIONS[(doc["type"], version)](doc)
    return {**doc, VERSION_FIELD: current}


def changed_fields(old: Doc, new: Doc) -> list[str]:
    """The fields an upgrade adds, changes or removes: what `linli migrate --dry-run` lists (names, never values:
    some are protected)."""
    return sorted(name for name in set(old) | set(new) if (name in old) != (name in new) or old[name] != new[name])


def _self_check() -> None:
    for name, doc_type in DOC_TYPES.items():
        for version in range(1, doc_type.version):
            assert (name, version) in MIGRATIONS, f"{name} is at version {doc_type.version}, none from {version}"
    for name, version in MIGRATIONS:
        assert name in DOC_TYPES and version < DOC_TYPES[name].version, f"migration ({name}, {version}) is never used"


_self_check()
