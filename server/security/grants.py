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
"""

from __future__ import annotations

import binascii
import datetime as dt
import secrets
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from crypto.envelope import unb64url
from crypto.keys import wrap_for_phone
from server.domain.access import Principal, deletion
from server.domain.declaration import Role, validate
from server.domain.entitlement import approval_is_active, entitlement, privacy_choices
from server.security.firewall import Firewall
from server.store.couch import Couch, bulk_save, docs_of_type, get_many, get_or_none, iter_view_docs

Doc = dict[str, Any]
MAX_PHONES = 5  # phone keys a user may register at once


class PhoneKeyError(ValueError):
    pass


def _user_key(user_id: str) -> str:
    return user_id.split(":", 1)[1]


def register_phone(couch: Couch, user: Doc, public_b64: str, label: str, now: dt.datetime) -> Doc:
    """Store a phone's public key for this user; the message of a PhoneKeyError says what is wrong."""
    try:
        raw = unb64url(public_b64)
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except (binascii.Error, ValueError):
        raise PhoneKeyError("public_key must be an uncompressed P-256 point, base64url") from None
    if len(phones_of(couch, user["_id"])) >= MAX_PHONES:
        raise PhoneKeyError(f"at most {MAX_PHONES} phones per account; remove one first")
    doc = {"_id": f"phone_key:{_user_key(user['_id'])}.{secrets.token_hex(6)}", "type": "phone_key",
           "street": user["street"], "user": user["_id"], "public": public_b64, "label": label.strip()[:100],
           "created_at": now.isoformat(), "revoked": False}
    validate(doc)
    return couch.accounts.save(doc)


def unregister_phone(firewall: Firewall, user: Doc, phone_key_id: str, now: dt.datetime) -> bool:
    """Revoke one of the user's phone keys and delete its grants; False if the user has no such phone."""
    phone = get_or_none(firewall.couch.accounts, phone_key_id)
    if phone is None or phone.get("type") != "phone_key" or phone["user"] != user["_id"] or phone["revoked"]:
        return False
    firewall.couch.accounts.save({**phone, "revoked": True})
    sync_user(firewall, user, now)
    return True


def phones_of(couch: Couch, user_id: str) -> list[Doc]:
    """The user's registered, unrevoked phone keys."""
    prefix = f"phone_key:{_user_key(user_id)}."
    rows = couch.accounts.all(startkey=prefix, endkey=prefix + "\ufff0", as_list=True)
    return [r["doc"] for r in rows if not r["doc"]["revoked"]]


def grant_id(phone_key: str, resident: str, tier: str) -> str:
    return f"key_grant:{phone_key.split(':', 1)[1]}:{resident.split(':', 1)[1]}:{tier}"


def grants_of(couch: Couch, user_id: str) -> list[Doc]:
    prefix = f"key_grant:{_user_key(user_id)}."
    return [r["doc"] for r in couch.main.all(startkey=prefix, endkey=prefix + "\ufff0", as_list=True)]


def phones_carry_keys(p: Principal) -> bool:
    """Whether this user's phones get key grants: for grid work; secretaries open protected fields online."""
    return p.has(Role.GRID_WORKER)


def _entitled(firewall: Firewall, p: Principal, now: dt.datetime) -> dict[tuple[str, str], dict[str, Any]]:
    """(resident, tier) → {resident doc, expires_at, access_request} for every key this user may hold on a phone."""
    wanted: dict[tuple[str, str], dict[str, Any]] = {}
    if not phones_carry_keys(p):
        return wanted
    main = firewall.couch.main
    for grid in sorted(p.grids):
        # Three reads for the whole grid rather than two for each of its residents.
        privacies = {d["resident"]: d for d in iter_view_docs(main, "linli/by_place", [grid, "privacy"])}
        access_requests: dict[str, list[Doc]] = {}
        for access_request in iter_view_docs(main, "linli/by_place", [grid, "access_request"]):
            if access_request["requester"] == p.user_id:
                access_requests.setdefault(access_request["resident"], []).append(access_request)
        for resident in iter_view_docs(main, "linli/by_place", [grid, "resident"]):
            privacy, mine = privacy_choices(privacies.get(resident["_id"])), access_requests.get(resident["_id"], [])
            if entitlement(p, resident, "contact", privacy, mine, now).allowed:
                wanted[(resident["_id"], "contact")] = {"resident": resident}
            for approval in mine:
                if approval_is_active(approval, now) and any(
                        entitlement(p, resident, c, privacy, mine, now).allowed for c in approval["categories"]):
                    wanted[(resident["_id"], "core")] = {"resident": resident, "expires_at": approval["expires_at"],
                                                         "access_request": approval["_id"]}
    return wanted


def sync_user(firewall: Firewall, user: Doc, now: dt.datetime) -> tuple[int, int]:
    """Issue the grants this user's phones should hold and delete the others; returns (issued, deleted)."""
    p = Principal.of(user)
    phones = phones_of(firewall.couch, user["_id"]) if user.get("active") else []
    wanted = _entitled(firewall, p, now) if phones else {}
    have = {g["_id"]: g for g in grants_of(firewall.couch, user["_id"])}
    keys = firewall.keystore.raw_data_keys(wanted)
    writes: list[Doc] = []
    for phone in phones:
        public = unb64url(phone["public"])
        for (resident_id, tier), want in wanted.items():
            if (resident_id, tier) not in keys:  # erased: nothing to grant
                continue
            doc_id = grant_id(phone["_id"], resident_id, tier)
            raw, version = keys[(resident_id, tier)]
            current = have.pop(doc_id, None)
            if current and current["key_version"] == version and current.get("expires_at") == want.get("expires_at"):
                continue
            resident = want["resident"]
            doc = {"_id": doc_id, "type": "key_grant", **{k: resident[k] for k in ("street", "community", "grid",
                                                                                   "household")},
                   "user": user["_id"], "phone_key": phone["_id"], "resident": resident_id, "tier": tier,
                   "key_version": version, **wrap_for_phone(public, doc_id, raw),
                   **{k: want[k] for k in ("expires_at", "access_request") if k in want}}
            if current:
                doc["_rev"] = current["_rev"]
            validate(doc)
            writes.append(doc)
    deletions = [deletion(g) for g in have.values()]
    failed = [r for r in bulk_save(firewall.couch.main, writes + deletions) if r.error]
    if failed:
        raise RuntimeError(f"key grant {failed[0].id}: {failed[0].error}; run it again")
    return len(writes), len(deletions)


def resync_resident(firewall: Firewall, resident: str, now: dt.datetime) -> int:
    """Re-derive the grants of every user holding one for this resident (privacy change, re-key)."""
    doc = get_or_none(firewall.couch.main, resident)
    if doc is None:
        return 0
    holders = {g["user"] for g in iter_view_docs(firewall.couch.main, "linli/by_place",
                                                  [doc["household"], "key_grant"]) if g["resident"] == resident}
    users = get_many(firewall.couch.accounts, holders)
    return sum(sum(sync_user(firewall, u, now)) for u in users.values())


def expire(firewall: Firewall, now: dt.datetime) -> int:
    """Delete core grants whose approval has expired or was revoked (run every minute by the server).

    Reads the street's access requests (a few) rather than every grant (one per resident per phone).
    """
    main = firewall.couch.main
    ended = [r for r in docs_of_type(main, "access_request")
             if r["status"] in ("approved", "revoked") and not approval_is_active(r, now)]
    phones = {user: phones_of(firewall.couch, user) for user in {r["requester"] for r in ended}}
    candidates = {grant_id(k["_id"], r["resident"], "core"): r["_id"] for r in ended for k in phones[r["requester"]]}
    # A grant of the same phone and resident may come from a newer, still active access request: only its own one's.
    gone = [g for g in get_many(main, candidates).values() if g.get("access_request") == candidates[g["_id"]]]
    bulk_save(main, [deletion(g) for g in gone])
    return len(gone)
