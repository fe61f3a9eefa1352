"""The data-security firewall (plan §5.1) on the server: the I/O around the rules.

Who may open which category of whose record is decided by `server.domain.entitlement` (pure, and shared with
the phones' key grants and the BLE gateway); this module reads the documents those rules need, opens values
with the key hierarchy (`keystore`), and files every opening in the filing log before the values leave it.
It also takes access requests and their approvals, privacy choices, blind-index search, re-keying and
crypto-shredding.

Writing is separate from reading: a grid worker may record a core value (a
blood-pressure reading) that the server seals with the resident's data key,
without being able to open it afterwards.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

import pycouchdb.exceptions

from crypto.blind_index import normalise
from crypto.fields import (
    fields_not_opening,
    is_sealed,
    key_owner,
    open_fields,
    protected_fields,
    seal_document,
)
from crypto.keyring import WRITE_KEY_TIER, ResidentKeys, most_older_versions
from server.domain.access import Principal, deletion
from server.domain.declaration import (
    CORE_CATEGORIES,
    DOC_TYPES,
    ID_CARD_PATTERN,
    MAX_GRANT_HOURS,
    MAX_KEY_VERSIONS,
    PHONE_PATTERN,
    PRIVACY_CHOICES,
    Role,
    validate,
)
from server.domain.entitlement import (
    CATEGORY_FIELDS,
    PROTECTED_CATEGORIES,
    Entitlement,
    entitlement,
    privacy_choices,
    privacy_id,
)
from server.domain.errors import FieldError, UserError
from server.domain.safety import SAFETY_PURPOSE
from server.security import filing, number_index
from server.security.keystore import INSTALLATION_KEY_ID, KeyStore, ShreddedError, data_key_id
from server.store import queries
from server.store.config import Settings
from server.store.couch import Couch, bulk_save, docs_of_type, get_many, get_or_none, iter_view_docs

Doc = dict[str, Any]

# The filing log's purpose for opening a mediation case's parties and dispute (its page: i18n purpose_mediation).
MEDIATION_PURPOSE = "mediation"


class AccessDenied(PermissionError):
    """Refused by the firewall; `reason` is a UI text key saying why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class AccessRequestError(UserError):
    """A malformed access request or decision: the field, a message key (i18n) and its params."""

    def __init__(self, field: str, key: str, **params: str | int) -> None:
        super().__init__([FieldError(field, key, params)])


class CiphertextRefused(UserError):
    """Protected fields given already sealed whose values do not open under the resident's keys for their
    document, field and tier (issue 13, finding 12). Names the fields, never the values."""

    def __init__(self, doc_id: str, fields: list[str]) -> None:
        self.doc_id = doc_id
        super().__init__([FieldError(name, "err_sync_refused") for name in fields])


class PrivacyChoiceError(UserError):
    """A privacy choice that is not one (server/domain/declaration.py PRIVACY_CHOICES)."""

    def __init__(self, category: str, value: str) -> None:
        super().__init__([FieldError(category, "err_privacy_choice", {"value": value})])


def number_field(text: str) -> str | None:
    """Which searchable field a typed number is ("phone", "id_card"), or None if it is neither."""
    compact = normalise(text)
    return "id_card" if ID_CARD_PATTERN.fullmatch(compact) else "phone" if PHONE_PATTERN.fullmatch(compact) else None


class Firewall:
    def __init__(self, couch: Couch, keystore: KeyStore, signer: filing.Signer) -> None:
        self.couch = couch
        self.keystore = keystore
        self.signer = signer

    @classmethod
    def open(cls, settings: Settings, couch: Couch) -> Firewall:
        """The firewall with the configured master keys (the filing log is signed with a key derived from the first)."""
        return cls(couch, KeyStore(couch, settings.master_keys), filing.Signer.of(settings))

    # ------------------------------------------------------------ storing

    def seal_for_storage(self, docs: list[Doc]) -> list[Doc]:
        """Docs ready to store: protected fields sealed; a new resident gets data keys (listed before it). A value
        given already sealed must open under the resident's keys for its document, field and tier
        (CiphertextRefused otherwise).

        One request fetches every data key the batch needs, so sealing a bulk load costs no extra round trips.
        The residents' phone and ID card numbers are indexed for search here, server-only (number_index.py).
        """
        owners = {o for o in (key_owner(d) for d in docs) if o}
        records = {r["resident"]: r for r in get_many(self.couch.main, map(data_key_id, owners)).values()}
        prepared: list[Doc] = []
        for doc in docs:
            owner = key_owner(doc)
            if owner is None:
                prepared.append(doc)
                continue
            if owner not in records:
                if doc["type"] != "resident":
                    raise ShreddedError(f"{doc['_id']}: {owner} has no data keys to seal it with")
                records[owner] = self.keystore.new_data_key_doc(doc)
                prepared.append(records[owner])
            sealed = [name for name in protected_fields(doc["type"]) if is_sealed(doc.get(name))]
            keys = self.keystore.open_record(records[owner])
            refused = fields_not_opening(doc, keys, sealed)  # given already sealed: must open where it is
            if refused:
                raise CiphertextRefused(doc["_id"], refused)
            prepared.append(seal_document(doc, keys.current))
        # Before the residents are stored: an index without its resident finds nothing.
        number_index.index(self.couch, self.keystore,
                           [(d, number_index.plain_numbers(d)) for d in docs if d["type"] == "resident"])
        return prepared

    def index_numbers(self, residents: list[Doc]) -> None:
        """Index these stored residents' numbers again, opening them (a conflict resolved with another number)."""
        number_index.index(self.couch, self.keystore, number_index.opened_numbers(self.couch, self.keystore, residents))

    def find_by_number(self, p: Principal, grid: Doc, number: str, *, device: str, now: dt.datetime) -> list[Doc]:
        """Residents of the grid whose phone or ID card number is `number` and whose contact details p may open
        (privacy choices included): candidates by blind index, server-only (number_index.py), each confirmed by
        decryption (an index is 32 bits and may collide) and each confirmed match filed as a search."""
        compact = normalise(number)
        field = number_field(compact)
        if field is None:
            return []
        ids = number_index.candidates(self.couch, self.keystore, grid["community"], grid["street"], field, compact)
        # One read whatever the number, also with no candidate: the candidates and their privacy choices, all that
        # contact entitlement needs. How long a search takes must not tell someone that a resident they may not
        # open has this number (the work beyond this read is done only for what they may open).
        rows = self.couch.main.all(keys=[*ids, *map(privacy_id, ids)] or [grid["_id"]], as_list=True)
        docs = {row["id"]: row["doc"] for row in rows if row.get("doc")}
        found = []
        for resident in (docs[i] for i in sorted(ids) if i in docs and docs[i]["grid"] == grid["_id"]):
            privacy = privacy_choices(docs.get(privacy_id(resident["_id"])))
            if not entitlement(p, resident, "contact", privacy, [], now).allowed:
                continue
            try:
                keys = self.keystore.data_keys(resident["_id"], ("contact",))
            except ShreddedError:
                continue
            if normalise(str(open_fields(resident, keys, [field]).get(field, ""))) != compact:
                continue  # an index collision, not this number
            filing.append(self.couch, self.signer, street=grid["street"], community=grid["community"],
                          actor=p.user_id, action="search", target=resident["_id"], fields=[field],
                          purpose="search_by_number", device=device[:100], at=now)
            found.append(resident)
        return found

    # ------------------------------------------------------------ reading

    def privacy_of(self, resident: str) -> dict[str, str]:
        return privacy_choices(get_or_none(self.couch.main, privacy_id(resident)))

    def context(self, p: Principal, resident: Doc) -> tuple[dict[str, str], list[Doc]]:
        """The resident's privacy choices and p's access requests for them."""
        return self.privacy_of(resident["_id"]), self.access_requests_for(resident, requester=p.user_id)

    def entitlements(self, p: Principal, resident: Doc, now: dt.datetime) -> list[Entitlement]:
        privacy, access_requests = self.context(p, resident)
        return [entitlement(p, resident, c, privacy, access_requests, now) for c in PROTECTED_CATEGORIES]

    def reveal(self, p: Principal, resident: Doc, category: str, *, purpose: str, device: str,
               now: dt.datetime) -> dict[str, Any]:
        """Open one category of a resident's record for p, filing the access first; AccessDenied if not entitled."""
        if category not in CATEGORY_FIELDS:
            raise AccessDenied("fw_unknown_category")
        privacy, access_requests = self.context(p, resident)
        allowed = entitlement(p, resident, category, privacy, access_requests, now)
        if not allowed.allowed:
            raise AccessDenied(allowed.reason)
        purpose = (allowed.approval or {}).get("purpose") or purpose.strip()
        if not purpose:
            raise AccessDenied("fw_purpose_required")
        fields = CATEGORY_FIELDS[category]
        tier = DOC_TYPES["resident"].fields[fields[0]].effective_tier.value
        keys = self.keystore.data_keys(resident["_id"], (tier,))
        values = open_fields(resident, keys, fields)  # before filing: a broken ciphertext files nothing
        filing.append(self.couch, self.signer, street=resident["street"], community=resident["community"],
                      actor=p.user_id, action="open", target=resident["_id"], fields=fields, purpose=purpose[:500],
                      device=device[:100], at=now)
        return values

    def open_heart_rate(self, p: Principal, resident: Doc, reading: Doc, *, device: str,
                        now: dt.datetime) -> float | None:
        """The value of one of the resident's heart-rate readings (health data, core tier) for their safety page,
        filed first; None if p may not open health data (then the page shows when it was measured, not what)."""
        privacy, access_requests = self.context(p, resident)
        allowed = entitlement(p, resident, "health", privacy, access_requests, now)
        if not allowed.allowed or reading.get("resident") != resident["_id"]:
            return None
        value = open_fields(reading, self.keystore.data_keys(resident["_id"], ("core",)), ["value"]).get("value")
        filing.append(self.couch, self.signer, street=resident["street"], community=resident["community"],
                      actor=p.user_id, action="open", target=resident["_id"], fields=["heart_rate"],
                      purpose=(allowed.approval or {}).get("purpose") or SAFETY_PURPOSE, device=device[:100], at=now)
        return value

    def openings_of(self, p: Principal, resident: Doc, limit: int = 100) -> list[Doc]:
        """Who opened this resident's protected data, newest first: for the resident themselves (privacy view)."""
        if p.resident != resident["_id"]:
            raise AccessDenied("fw_not_yours")
        return queries.openings_about(self.couch, resident["_id"], limit)

    # ------------------------------------------------------------ approvals

    def access_requests_for(self, resident: Doc, requester: str | None = None) -> list[Doc]:
        docs = iter_view_docs(self.couch.main, "linli/by_place", [resident["household"], "access_request"])
        return [d for d in docs if d["resident"] == resident["_id"] and requester in (None, d["requester"])]

    def request_access(self, p: Principal, resident: Doc, categories: list[str], purpose: str, hours: int,
                       now: dt.datetime) -> Doc:
        """A grid worker asks the secretary for core access to one resident, for a purpose and a time."""
        if not (p.has(Role.GRID_WORKER) and resident["grid"] in p.grids):
            raise AccessDenied("fw_no_role")
        if not categories or not set(categories) <= set(CORE_CATEGORIES):
            raise AccessRequestError("category", "err_categories")
        if not purpose.strip():
            raise AccessRequestError("purpose", "err_required")
        if not 1 <= hours <= MAX_GRANT_HOURS:
            raise AccessRequestError("hours", "err_hours_range", max=MAX_GRANT_HOURS)
        doc = {"_id": f"access_request:{uuid.uuid4().hex}", "type": "access_request",
               **{k: resident[k] for k in ("street", "community", "grid", "household")}, "resident": resident["_id"],
               "requester": p.user_id, "categories": sorted(set(categories)), "purpose": purpose.strip(),
               "hours": hours, "status": "pending", "created_by": p.user_id, "created_at": now.isoformat()}
        validate(doc)
        return self.couch.main.save(doc)

    def decide(self, p: Principal, access_request_id: str, *, approve: bool, note: str, now: dt.datetime) -> Doc:
        """The community's secretary approves (for the requested hours from now) or refuses a pending access
        request."""
        access_request = self._access_request(p, access_request_id)
        if access_request["status"] != "pending":
            raise AccessRequestError("access_request", "err_access_request_decided", status=access_request["status"])
        privacy = self.privacy_of(access_request["resident"])
        if approve and any(privacy[c] == "secretary_only" for c in access_request["categories"]):
            raise AccessDenied("fw_privacy_secretary_only")
        access_request.update(status="approved" if approve else "refused", decided_by=p.user_id,
                              decided_at=now.isoformat(), decision_note=note.strip()[:500])
        if approve:
            access_request["expires_at"] = (now + dt.timedelta(hours=access_request["hours"])).isoformat()
        validate(access_request)
        return self.couch.main.save(access_request)

    def revoke(self, p: Principal, access_request_id: str, now: dt.datetime) -> Doc:
        access_request = self._access_request(p, access_request_id)
        if access_request["status"] != "approved":
            raise AccessRequestError("access_request", "err_revoke_approved_only", status=access_request["status"])
        access_request.update(status="revoked", decided_by=p.user_id, decided_at=now.isoformat())
        return self.couch.main.save(access_request)

    def _access_request(self, p: Principal, access_request_id: str) -> Doc:
        access_request = get_or_none(self.couch.main, access_request_id)
        if access_request is None or access_request.get("type") != "access_request":
            raise AccessRequestError("access_request", "err_no_access_request", id=access_request_id)
        if not (p.has(Role.SECRETARY) and access_request["community"] in p.communities):
            raise AccessDenied("fw_not_secretary")
        return access_request

    def pending_access_requests(self, p: Principal) -> list[Doc]:
        return [d for c in sorted(p.communities) if p.has(Role.SECRETARY)
                for d in iter_view_docs(self.couch.main, "linli/by_place", [c, "access_request"])
                if d["status"] == "pending"]

    # ------------------------------------------------------------ privacy mode

    def set_privacy(self, p: Principal, resident: Doc, choices: dict[str, str], now: dt.datetime) -> Doc:
        """The resident records their choices, or the community's secretary on their behalf (a resident
        without a smartphone, at the human window). Not the grid worker: the choices limit what they see."""
        if not (p.resident == resident["_id"] or (p.has(Role.SECRETARY) and resident["community"] in p.communities)):
            raise AccessDenied("fw_no_role")
        for category, value in choices.items():
            if category not in PRIVACY_CHOICES or value not in PRIVACY_CHOICES[category]:
                raise PrivacyChoiceError(category, value)
        doc = get_or_none(self.couch.main, privacy_id(resident["_id"])) or {
            "_id": privacy_id(resident["_id"]), "type": "privacy", "resident": resident["_id"],
            **{k: resident[k] for k in ("street", "community", "grid", "household")}}
        doc.update(privacy_choices({**doc, **choices}), updated_by=p.user_id, updated_at=now.isoformat())
        validate(doc)
        saved = self.couch.main.save(doc)
        self.refresh_device_copies(resident["_id"])
        return saved

    def refresh_device_copies(self, resident: str) -> int:
        """Bring the copies on the resident's device documents (write key with the installation's statement,
        utility-alert choice, see server/services/devices.py) up to date, so their BLE gateway seals with the
        current key and routes alerts as the resident now chooses. Whatever gives a resident a new write key calls
        this after storing it. Returns how many devices changed."""
        household = self.couch.main.get(resident)["household"]
        wanted = {**self.keystore.write_key_copy(resident),
                  "utility_alerts": self.privacy_of(resident)["utility_alerts"]}
        stale = [{**d, **wanted} for d in iter_view_docs(self.couch.main, "linli/by_place", [household, "device"])
                 if d.get("resident") == resident and "write_public" in d
                 and any(d.get(k) != v for k, v in wanted.items())]
        failed = [r for r in bulk_save(self.couch.main, stale) if r.error]
        if failed:
            raise RuntimeError(f"refreshing {failed[0].id} failed: {failed[0].error}; run it again")
        return len(stale)

    def vouch_for_existing_keys(self) -> int:
        """An installation from before statements (crypto/key_statements.py): vouch for every write key that has
        none, on data_key records and on device copies, so that gateways and phones keep sealing after the
        upgrade. Run by `linli serve` at start; once it has run through, the installation key's document says
        so and later starts read nothing more. Returns the residents vouched for."""
        self.keystore.installation_key()  # made now if there is none yet
        marker = self.couch.accounts.get(INSTALLATION_KEY_ID)
        if marker.get("statements_complete"):
            return 0
        residents = {d["resident"] for d in docs_of_type(self.couch.main, "device")
                     if d.get("write_public") and not d.get("write_signature") and d.get("resident")}
        unvouched = [self.keystore.vouched(r) for r in docs_of_type(self.couch.main, "data_key")
                     if not r.get("write_signature")]
        failed = [r for r in bulk_save(self.couch.main, unvouched) if r.error]
        if failed:
            raise RuntimeError(f"vouching for {failed[0].id} failed: {failed[0].error}; start again")
        for resident in sorted(residents):
            self.refresh_device_copies(resident)
        self.couch.accounts.save({**marker, "statements_complete": True})
        return len(residents | {r["resident"] for r in unvouched})

    # ------------------------------------------------------------ erasure and re-keying

    def shred(self, resident: str) -> None:
        """Crypto-shredding: destroy the resident's data keys, so that none of their ciphertext opens again.

        The resident's blind indexes are deleted; the data_key document is deleted, then purged where the server
        supports it (CouchDB 3) and the database compacted, so that no earlier revision keeps the wrapped keys either.
        """
        number_index.forget(self.couch, resident)
        doc = get_or_none(self.couch.main, data_key_id(resident))
        if doc is None:
            return
        revs = [doc["_rev"]]
        # The tombstone keeps the routing fields, so the deletion also reaches the phones that held the keys.
        deleted = self.couch.main.save(deletion(doc))
        revs.append(deleted["_rev"])
        resource = self.couch.main.resource
        try:
            resource.post("_purge", json={doc["_id"]: revs})
        except pycouchdb.exceptions.Error:  # pouchdb-server has no _purge: compaction drops old revision bodies
            resource.post("_compact", json={})

    def rekey(self, resident: str) -> int:
        """New data keys for a resident, re-encrypting every document of theirs; returns documents re-sealed."""
        household = self.couch.main.get(resident)["household"]
        docs = [d for d in iter_view_docs(self.couch.main, "linli/by_place", [household])
                if protected_fields(d["type"]) and resident in (d["_id"], d.get("resident"))]

        def reseal(keys: ResidentKeys) -> int:
            plain = []
            for doc in docs:
                opened = open_fields(doc, keys)
                plain.append(seal_document({**doc, **opened}, keys.current))
            failed = [r for r in bulk_save(self.couch.main, plain) if r.error]
            if failed:
                raise RuntimeError(f"re-sealing {failed[0].id} failed: {failed[0].error}; run the re-key again")
            return len(plain)

        resealed = self.keystore.rekey(resident, reseal)
        self.refresh_device_copies(resident)
        return resealed

    def end_exposure(self, exposed: Iterable[tuple[str, str, int]]) -> set[str]:
        """Someone held these data keys (resident, tier, version) and has lost the right to them: rotate each
        that is still the resident's current version, so what is sealed from now on opens only under keys they
        never had (finding 3 of issue 13). The replaced versions stay, wrapped, to open what they sealed; the
        resident's devices get the new write key. A resident whose record could keep no more older versions is
        re-keyed instead (every ciphertext re-sealed, the older versions forgotten). Returns who was rotated.
        """
        exposed = list(exposed)
        if not exposed:
            return set()
        records = get_many(self.couch.main, {data_key_id(resident) for resident, _, _ in exposed})
        tiers_of: dict[str, set[str]] = {}
        for resident, tier, version in exposed:
            record = records.get(data_key_id(resident))
            if record is not None and not record.get("_deleted") and record[tier]["version"] == version:
                tiers_of.setdefault(resident, set()).add(tier)
        # A re-key's own rotation must still fit: one older version fewer than a record may keep.
        crowded = {r for r in tiers_of if most_older_versions(records[data_key_id(r)]) >= MAX_KEY_VERSIONS - 1}
        rotated = set(self.keystore.rotate({r: t for r, t in tiers_of.items() if r not in crowded}))
        for resident in crowded:
            self.rekey(resident)
        for resident in rotated:
            if WRITE_KEY_TIER in tiers_of[resident]:
                self.refresh_device_copies(resident)  # the write key changed
        return rotated | crowded

    def open_mediation(self, p: Principal, resident: Doc, case: Doc, *, device: str,
                       now: dt.datetime) -> dict[str, Any]:
        """The parties, the dispute and the minutes of a mediation case (sealed like contact data under the keys of
        the resident who brought it), for whoever may open that resident's contact data; the opening is filed."""
        fields = ["parties", "dispute", *(["minutes"] if case.get("minutes") else [])]
        return self._open_mediation_fields(p, resident, case, fields, device=device, now=now)

    def with_minutes(self, p: Principal, resident: Doc, case: Doc, entry: str, *, device: str,
                     now: dt.datetime) -> Doc:
        """The case with `entry` (a session's note) appended to its minutes, sealed, ready to store: for whoever may
        open the resident's contact data. The minutes so far are opened to append to (filed as an opening)."""
        if case.get("minutes"):
            so_far = self._open_mediation_fields(p, resident, case, ["minutes"], device=device, now=now)["minutes"]
        else:
            self._may_open_mediation(p, resident, case, now)
            so_far = ""
        updated = {**case, "minutes": f"{so_far}\n{entry}" if so_far else entry}
        validate(updated)  # the minutes' length, in plaintext (ValidationError: too long)
        return self.seal_for_storage([updated])[0]

    def _may_open_mediation(self, p: Principal, resident: Doc, case: Doc, now: dt.datetime) -> None:
        allowed = entitlement(p, resident, "contact", *self.context(p, resident), now)
        if not allowed.allowed or case.get("resident") != resident["_id"]:
            raise AccessDenied(allowed.reason if not allowed.allowed else "fw_not_yours")

    def _open_mediation_fields(self, p: Principal, resident: Doc, case: Doc, fields: list[str], *, device: str,
                               now: dt.datetime) -> dict[str, Any]:
        self._may_open_mediation(p, resident, case, now)
        values = open_fields(case, self.keystore.data_keys(resident["_id"], ("contact",)), fields)
        filing.append(self.couch, self.signer, street=resident["street"], community=resident["community"],
                      actor=p.user_id, action="open", target=resident["_id"], fields=fields, purpose=MEDIATION_PURPOSE,
                      device=device[:100], at=now)
        return values


def device_label(user_agent: str, client: str) -> str:
    """How the filing log names the device an access came from (web pages: browser and address)."""
    return f"web {client} {user_agent}"[:100]

