"""Keys for phones, so that a grid worker opens their residents' fields offline and nothing more.

A phone makes a P-256 key pair whose private half never leaves its browser (WebCrypto, non-extractable)
and registers the public half (a phone key, `phone_key:<user>.<id>`, accounts database). For each registered phone
the server wraps the data keys its user is entitled to (`crypto.keys.wrap_for_phone`, bound to the
grant's id): contact keys of the residents whose contact details they may open (`firewall.entitlement`),
core keys for approved, unexpired access requests. No phone gets a blind-index key: it finds a resident by number
offline by opening the numbers these grants open (server/security/number_index.py). Grants are routed to their user
only (server/domain/access.py).

Grants follow entitlement: `sync_user` re-derives one user's grants (after a phone registers its key, an
approval is decided or revoked, a worker moves), `resync_resident` those touching one resident (after a
privacy change or a re-key), `expire` deletes core grants whose approval ran out (every minute). A
deleted grant is deleted on the phone at its next sync; until then an offline phone can still open what
that grant covered (crypto/README.md, "What a phone can read offline").

Exposure is filed, not only openings: a modified client can open whatever its grants hold without reporting
it, so every key handed to a phone is filed in the community's filing log before it is handed out
(`keys_issued`) and every key taken back after it is (`keys_withdrawn`): one entry per phone, community and
issuance naming the keys ("<resident>/<tier>", at most KEYS_PER_ENTRY an entry), so that the log answers
"who could open resident X's contact details, from when to when" (`audit_report.exposure`).
"""

from __future__ import annotations

import binascii
import datetime as dt
import secrets
from collections.abc import Iterable, Iterator
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from crypto.envelope import unb64url
from crypto.keys import wrap_for_phone
from server.domain.access import Principal, deletion
from server.domain.declaration import Role, validate
from server.domain.entitlement import approval_is_active, entitlement, privacy_choices
from server.security import filing
from server.security.firewall import Firewall
from server.store.couch import Couch, Database, bulk_save, docs_of_type, get_many, get_or_none, iter_view_docs

Doc = dict[str, Any]
MAX_PHONES = 5  # phone keys a user may register at once
KEYS_ISSUED, KEYS_WITHDRAWN = "keys_issued", "keys_withdrawn"  # the filing log's exposure actions
KEYS_PER_ENTRY = 200  # a list field's limit (declaration): a worker's 700 residents are 4 entries, not 700
# Why keys were issued or withdrawn, as filed (purposes the audit page translates).
PHONE_ENROLLED, PHONE_REVOKED, ENTITLEMENT_CHANGED, APPROVAL_ENDED = (
    "phone_enrolled", "phone_revoked", "entitlement_changed", "approval_ended")


class PhoneKeyError(ValueError):
    """A phone's key refused: the message says why in English (scripts, logs); `key` and `params` say it in the
    person's language (i18n.MESSAGES), as the phone's sync bar shows it."""

    def __init__(self, message: str, key: str, **params: object) -> None:
        super().__init__(message)
        self.key, self.params = key, params


def _user_key(user_id: str) -> str:
    return user_id.split(":", 1)[1]


def register_phone(couch: Couch, user: Doc, public_b64: str, label: str, now: dt.datetime, *,
                   enrolled_from: str = "") -> Doc:
    """Store a phone's public key for this user; the message of a PhoneKeyError says what is wrong.
    `enrolled_from`: the browser and address the request came from, as the server saw them (the label is the
    client's own word), for the secretary's page of phones."""
    try:
        raw = unb64url(public_b64)
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except (binascii.Error, ValueError):
        raise PhoneKeyError("public_key must be an uncompressed P-256 point, base64url",
                            "err_phone_key_shape") from None
    if len(phones_of(couch, user["_id"])) >= MAX_PHONES:
        raise PhoneKeyError(f"at most {MAX_PHONES} phones per account; remove one first", "err_phone_keys_full",
                            max=MAX_PHONES)
    doc = {"_id": f"phone_key:{_user_key(user['_id'])}.{secrets.token_hex(6)}", "type": "phone_key",
           "street": user["street"], "user": user["_id"], "public": public_b64, "label": label.strip()[:100],
           "created_at": now.isoformat(), "revoked": False,
           **({"enrolled_from": enrolled_from[:100]} if enrolled_from else {})}
    validate(doc)
    return couch.accounts.save(doc)


def unregister_phone(firewall: Firewall, user: Doc, phone_key_id: str, now: dt.datetime, *,
                     by: str | None = None) -> bool:
    """Revoke one of the user's phone keys and delete its grants (filed); False if the user has no such phone.
    `by`: who revoked it, if not the user (a secretary, /phones)."""
    phone = get_or_none(firewall.couch.accounts, phone_key_id)
    if phone is None or phone.get("type") != "phone_key" or phone["user"] != user["_id"] or phone["revoked"]:
        return False
    firewall.couch.accounts.save({**phone, "revoked": True, "revoked_at": now.isoformat(),
                                  "revoked_by": by or user["_id"]})
    sync_user(firewall, user, now, reason=PHONE_REVOKED)
    return True


def phones_of(couch: Couch, user_id: str) -> list[Doc]:
    """The user's registered, unrevoked phone keys."""
    prefix = f"phone_key:{_user_key(user_id)}."
    rows = couch.accounts.all(startkey=prefix, endkey=prefix + "\ufff0", as_list=True)
    return [r["doc"] for r in rows if not r["doc"]["revoked"]]


def grant_id(phone_key: str, resident: str, tier: str) -> str:
    return f"key_grant:{phone_key.split(':', 1)[1]}:{resident.split(':', 1)[1]}:{tier}"


def grants_of(couch: Couch, user_id: str) -> list[Doc]:
    """The user's grants, each with its `_conflicts` (revisions other processes issued at once: `_withdrawals`)."""
    prefix = f"key_grant:{_user_key(user_id)}."
    return [r["doc"] for r in couch.main.all(startkey=prefix, endkey=prefix + "\ufff0", as_list=True,
                                             conflicts="true")]


def _withdrawals(grant: Doc) -> list[Doc]:
    """A grant's deletion, of every revision: two processes issuing it at once on a cluster leave two, and deleting
    only CouchDB's winner would make the other the grant again (ARCHITECTURE.md section 6). Needs `_conflicts`."""
    return [deletion({**grant, "_rev": rev}) for rev in (grant["_rev"], *grant.get("_conflicts", ()))]


def phones_carry_keys(p: Principal) -> bool:
    """Whether this user's phones get key grants: for grid work; secretaries open protected fields online."""
    return p.has(Role.GRID_WORKER)


def _residents_placed(main: Database, grid: str) -> Iterator[Doc]:
    """The grid's residents as far as entitlement and a grant read them: their id and place, from their row under
    the grid in `linli/by_place` (it holds their place), never their sealed records."""
    for row in main.query("linli/by_place", key=[grid, "resident"], reduce="false"):
        street, community, household = row["value"]
        yield {"_id": row["id"], "type": "resident", "street": street, "community": community, "grid": grid,
               "household": household}


def _entitled(firewall: Firewall, p: Principal, now: dt.datetime) -> dict[tuple[str, str], dict[str, Any]]:
    """(resident, tier) → {resident (id and place: `_residents_placed`), expires_at, access_request} for every key
    this user may hold on a phone."""
    wanted: dict[tuple[str, str], dict[str, Any]] = {}
    if not phones_carry_keys(p):
        return wanted
    main = firewall.couch.main
    for grid in sorted(p.grids):
        # Three reads for the whole grid rather than two for each of its residents; none of a sealed record.
        privacies = {d["resident"]: d for d in iter_view_docs(main, "linli/by_place", [grid, "privacy"])}
        access_requests: dict[str, list[Doc]] = {}
        for access_request in iter_view_docs(main, "linli/by_place", [grid, "access_request"]):
            if access_request["requester"] == p.user_id:
                access_requests.setdefault(access_request["resident"], []).append(access_request)
        for resident in _residents_placed(main, grid):
            privacy, mine = privacy_choices(privacies.get(resident["_id"])), access_requests.get(resident["_id"], [])
            if entitlement(p, resident, "contact", privacy, mine, now).allowed:
                wanted[(resident["_id"], "contact")] = {"resident": resident}
            for approval in mine:
                if approval_is_active(approval, now) and any(
                        entitlement(p, resident, c, privacy, mine, now).allowed for c in approval["categories"]):
                    wanted[(resident["_id"], "core")] = {"resident": resident, "expires_at": approval["expires_at"],
                                                         "access_request": approval["_id"]}
    return wanted


def sync_user(firewall: Firewall, user: Doc, now: dt.datetime, *,
              reason: str = ENTITLEMENT_CHANGED) -> tuple[int, int]:
    """Issue the grants this user's phones should hold and delete the others, each filed as exposure (`reason`:
    why, as the log says it); returns (issued, deleted), counting also the grants of other users re-issued because a
    deletion rotated keys they hold (`_sync_and_follow`)."""
    return _sync_and_follow(firewall, [user], now, reason)


def _sync_and_follow(firewall: Firewall, users: Iterable[Doc], now: dt.datetime,
                     reason: str = ENTITLEMENT_CHANGED) -> tuple[int, int]:
    """Sync these users' grants (filed with `reason`). A deleted grant rotates the keys it carried
    (`Firewall.end_exposure`): then everyone else holding a grant for those residents is synced too, to get the new
    versions (filed as an entitlement change)."""
    queue, issued, deleted = [(u, reason) for u in users], 0, 0
    while queue:
        user, why = queue.pop(0)
        written, gone, rotated = _sync_grants(firewall, user, now, why)
        issued, deleted = issued + written, deleted + gone
        if rotated:
            waiting = {u["_id"] for u, _ in queue} | {user["_id"]}
            queue += [(u, ENTITLEMENT_CHANGED) for u in
                      get_many(firewall.couch.accounts, _holders(firewall, rotated) - waiting).values()]
    return issued, deleted


def _holders(firewall: Firewall, residents: dict[str, str]) -> set[str]:
    """Users holding a grant for any of these residents (resident → grid): one read per grid."""
    return {g["user"] for grid in set(residents.values())
            for g in iter_view_docs(firewall.couch.main, "linli/by_place", [grid, "key_grant"])
            if g["resident"] in residents}


def _sync_grants(firewall: Firewall, user: Doc, now: dt.datetime, reason: str) -> tuple[int, int, dict[str, str]]:
    """One user's grants: (issued, deleted, residents whose keys the deletions rotated → their grid)."""
    p = Principal.of(user)
    phones = phones_of(firewall.couch, user["_id"]) if user.get("active") else []
    wanted = _entitled(firewall, p, now) if phones else {}
    have = {g["_id"]: g for g in grants_of(firewall.couch, user["_id"])}
    wanted_ids = {grant_id(phone["_id"], resident, tier) for phone in phones for resident, tier in wanted}
    ending = [g for doc_id, g in have.items() if doc_id not in wanted_ids]
    # Before anything is issued: the user's remaining grants, and everyone's from now on, carry the new versions.
    rotated = firewall.end_exposure((g["resident"], g["tier"], g["key_version"]) for g in ending)
    keys = firewall.keystore.raw_data_keys(wanted)
    writes: list[Doc] = []
    for phone in phones:
        public = unb64url(phone["public"])
        for (resident_id, tier), want in wanted.items():
            if (resident_id, tier) not in keys:  # erased: nothing to grant
                continue
            doc_id = grant_id(phone["_id"], resident_id, tier)
            key = keys[(resident_id, tier)]
            current = have.pop(doc_id, None)
            if current and current["key_version"] == key.version and current.get("expires_at") == want.get(
                    "expires_at"):
                continue
            resident = want["resident"]
            doc = {"_id": doc_id, "type": "key_grant", **{k: resident[k] for k in ("street", "community", "grid",
                                                                                   "household")},
                   "user": user["_id"], "phone_key": phone["_id"], "resident": resident_id, "tier": tier,
                   "key_version": key.version, **wrap_for_phone(public, doc_id, key.raw, older=key.older),
                   **{k: want[k] for k in ("expires_at", "access_request") if k in want}}
            if current:
                doc["_rev"] = current["_rev"]
            validate(doc)
            writes.append(doc)
    # Filed before the keys are handed out: a failure after this over-reports exposure rather than hiding it.
    file_exposure(firewall, user["_id"], KEYS_ISSUED, writes, reason, now)
    deletions = [d for g in have.values() for d in _withdrawals(g)]
    results = bulk_save(firewall.couch.main, writes + deletions)
    withdrawn = {r.id for r in results if not r.error}
    file_exposure(firewall, user["_id"], KEYS_WITHDRAWN, [g for g in have.values() if g["_id"] in withdrawn],
                  reason, now)
    failed = [r for r in results if r.error]
    if failed:
        raise RuntimeError(f"key grant {failed[0].id}: {failed[0].error}; run it again")
    return len(writes), len(have), {g["resident"]: g["grid"] for g in ending if g["resident"] in rotated}


def key_item(resident: str, tier: str) -> str:
    """How an exposure entry names one key: whose, which tier."""
    return f"{resident}/{tier}"


def file_exposure(firewall: Firewall, user_id: str, action: str, grants: list[Doc], reason: str,
                  now: dt.datetime) -> int:
    """File key grants given to (KEYS_ISSUED) or taken from (KEYS_WITHDRAWN) a user's phones: one entry per
    phone and community, naming the keys; returns the entries filed."""
    by_phone: dict[tuple[str, str, str], list[Doc]] = {}
    for grant in grants:
        by_phone.setdefault((grant["phone_key"], grant["street"], grant["community"]), []).append(grant)
    filed = 0
    for (phone, street, community), held in sorted(by_phone.items()):
        items = sorted(key_item(g["resident"], g["tier"]) for g in held)
        for start in range(0, len(items), KEYS_PER_ENTRY):
            chunk = items[start:start + KEYS_PER_ENTRY]
            filing.append(firewall.couch, firewall.signer, street=street, community=community, actor=user_id,
                          action=action, target=phone, fields=sorted({i.rsplit("/", 1)[1] for i in chunk}),
                          purpose=reason, device=phone, at=now, keys=chunk)
            filed += 1
    return filed


def resync_resident(firewall: Firewall, resident: str, now: dt.datetime) -> int:
    """Re-derive the grants of every user holding one for this resident (privacy change, re-key)."""
    doc = get_or_none(firewall.couch.main, resident)
    if doc is None:
        return 0
    holders = {g["user"] for g in iter_view_docs(firewall.couch.main, "linli/by_place",
                                                  [doc["household"], "key_grant"]) if g["resident"] == resident}
    return sum(_sync_and_follow(firewall, get_many(firewall.couch.accounts, holders).values(), now))


def expire(firewall: Firewall, now: dt.datetime) -> int:
    """Delete core grants whose approval has expired or was revoked (run every minute by the server), rotating
    the core keys they carried; the other holders of those residents' grants get the new versions.

    Reads the street's access requests (a few) rather than every grant (one per resident per phone).
    """
    main = firewall.couch.main
    ended = [r for r in docs_of_type(main, "access_request")
             if r["status"] in ("approved", "revoked") and not approval_is_active(r, now)]
    phones = {user: phones_of(firewall.couch, user) for user in {r["requester"] for r in ended}}
    candidates = {grant_id(k["_id"], r["resident"], "core"): r["_id"] for r in ended for k in phones[r["requester"]]}
    # A grant of the same phone and resident may come from a newer, still active access request: only its own one's.
    rows = main.all(keys=list(candidates), as_list=True, conflicts="true") if candidates else []
    found = [r["doc"] for r in rows if r.get("doc")]
    gone = [g for g in found if g.get("access_request") == candidates[g["_id"]]]
    rotated = firewall.end_exposure((g["resident"], g["tier"], g["key_version"]) for g in gone)
    # Another process's minute clock may delete the same grants: each withdrawal is filed by whoever made it.
    withdrawn = {r.id for r in bulk_save(main, [d for g in gone for d in _withdrawals(g)]) if not r.error}
    for user in sorted({g["user"] for g in gone}):
        file_exposure(firewall, user, KEYS_WITHDRAWN, [g for g in gone if g["user"] == user and g["_id"] in withdrawn],
                      APPROVAL_ENDED, now)
    if rotated:
        holders = _holders(firewall, {g["resident"]: g["grid"] for g in gone if g["resident"] in rotated})
        _sync_and_follow(firewall, get_many(firewall.couch.accounts, holders).values(), now)
    return len(withdrawn)
