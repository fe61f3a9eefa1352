"""The rules of key grants (server/security/grants.py), each test one rule: who gets a grant, when it is rotated,
expired and revoked and by whom, which residents a phone may hold, that a revoked phone gets nothing new, and how
exposure is filed. The grants module is called directly, on the small street of tests/street.py stored in the
session's real pouchdb-server, with a second grid worker of grid c1-g01 (worker2) so that another holder is there
to follow a rotation. In-process and quick, so that mutation testing runs them once per mutant
(tests/mutation/modules/server.security.grants.toml); test_grants.py covers the same module on the demo street."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from crypto.envelope import DataKey, FieldContext, b64url
from crypto.keys import unwrap_on_phone
from server.domain.access import Principal
from server.domain.declaration import validate
from server.security import accounts, filing, grants
from server.security.firewall import Firewall
from server.security.keystore import data_key_id
from server.store.couch import Couch, bulk_save, get_or_none

from . import street
from .cluster import WINS, made_on_another_node
from .street import C1, C2, G1, G2, G3, STREET
from .test_grants import open_on_phone, phone

Doc = dict[str, Any]
NOW = dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
W1, W2 = "user:worker1", "user:worker2"  # both grid workers of G1 (worker2 added by the fixture)
SECRETARY = "user:secretary1"
G1_RESIDENTS = ("resident:c1-g01-0001-1", "resident:c1-g01-0002-1", "resident:c1-g01-0003-1")
R1 = G1_RESIDENTS[0]
G2_RESIDENT, G3_RESIDENT = "resident:c1-g02-0001-1", "resident:c2-g01-0001-1"


@dataclasses.dataclass(frozen=True)
class Site:
    couch: Couch
    firewall: Firewall

    def user(self, user_id: str) -> Doc:
        return self.couch.accounts.get(user_id)

    def enrol(self, user_id: str, now: dt.datetime = NOW) -> tuple[ec.EllipticCurvePrivateKey, str]:
        private, public = phone()
        return private, grants.register_phone(self.couch, self.user(user_id), public, "", now)["_id"]

    def sync(self, user_id: str, now: dt.datetime = NOW, **reason: str) -> tuple[int, int]:
        return grants.sync_user(self.firewall, self.user(user_id), now, **reason)

    def held(self, user_id: str) -> dict[str, Doc]:
        return {g["_id"]: g for g in grants.grants_of(self.couch, user_id)}

    def version(self, resident: str, tier: str) -> int:
        """The resident's current data-key version of the tier."""
        return self.couch.main.get(data_key_id(resident))[tier]["version"]

    def approve(self, user_id: str, resident: str, hours: int, now: dt.datetime = NOW,
                categories: tuple[str, ...] = ("health",)) -> Doc:
        """user_id's access request for the resident's core data, approved by the community's secretary."""
        asked = self.firewall.request_access(Principal.of(self.user(user_id)), self.couch.main.get(resident),
                                             list(categories), "随访", hours, now)
        return self.firewall.decide(Principal.of(self.user(SECRETARY)), asked["_id"], approve=True, note="", now=now)

    def stored_approval(self, user_id: str, resident: str, decided: dt.datetime, hours: int, key: str) -> Doc:
        """An approved access request to the resident's health data, stored as `decide` stores one but under the id
        `access_request:<key>`: the grid's listing gives approvals in the order of their ids."""
        doc = {"_id": f"access_request:{key}", "type": "access_request",
               **{k: v for k, v in self.couch.main.get(resident).items() if k in ("street", "community", "grid",
                                                                                  "household")},
               "resident": resident, "requester": user_id, "categories": ["health"], "purpose": "随访", "hours": hours,
               "status": "approved", "created_by": user_id, "created_at": decided.isoformat(),
               "decided_by": SECRETARY, "decided_at": decided.isoformat(), "decision_note": "",
               "expires_at": (decided + dt.timedelta(hours=hours)).isoformat()}
        validate(doc)
        return self.couch.main.save(doc)

    def move(self, user_id: str, communities: list[str], grids: list[str]) -> None:
        self.couch.accounts.save({**self.user(user_id), "communities": communities, "grids": grids})

    def exposure(self, community: str = C1) -> list[Doc]:
        """The filing log's exposure entries (keys issued and withdrawn), oldest first."""
        return [e for e in filing.iter_entries(self.couch, community)
                if e["action"] in (grants.KEYS_ISSUED, grants.KEYS_WITHDRAWN)]


@pytest.fixture
def site(loaded: Couch, firewall: Firewall) -> Site:
    worker1 = loaded.accounts.get(W1)
    loaded.accounts.save(accounts.make_user("worker2", "孙网格", [accounts.Role.GRID_WORKER], STREET,
                                            worker1["password_hash"], communities=[C1], grids=[G1]))
    return Site(loaded, firewall)


def entry_of(entry: Doc) -> tuple[str, str, str, str, list[str]]:
    return entry["action"], entry["actor"], entry["target"], entry["purpose"], entry["keys"]


# ---------------------------------------------------------------- who gets a grant, for which residents

def test_a_grid_workers_phone_gets_a_contact_key_for_each_resident_of_their_grid_and_no_other(site: Site) -> None:
    private, phone_key = site.enrol(W1)
    assert site.sync(W1) == (3, 0)
    held = site.held(W1)
    assert sorted(held) == sorted(grants.grant_id(phone_key, r, "contact") for r in G1_RESIDENTS)
    for grant in held.values():
        resident = site.couch.main.get(grant["resident"])
        routed = {k: resident[k] for k in ("street", "community", "grid", "household")}
        assert {k: grant[k] for k in (*routed, "type", "user", "phone_key", "tier", "key_version")} == {
            **routed, "type": "key_grant", "user": W1, "phone_key": phone_key, "tier": "contact",
            "key_version": site.version(resident["_id"], "contact")}
        assert "expires_at" not in grant and "access_request" not in grant  # a contact key does not run out
        assert open_on_phone(private, grant, resident, "phone", "contact") == "10012345678"
    assert site.sync(W1) == (0, 0)  # nothing changed, nothing rewritten


def test_each_resident_gets_a_grant_of_its_own_whatever_its_id_holds_after_its_type(site: Site) -> None:
    """An id is its type, a colon and a key (declaration.validate): keys holding colons or slashes, alike before or
    after them, are still other residents, with grants of their own, each filed under its own name."""
    plain = next(d for d in street.community_docs() if d["_id"] == R1)
    alike = ["resident:c1-g01:9", "resident:c1-g01:8", "resident:c1-g01-x:9", "resident:c1-g01/9"]
    stored = site.firewall.seal_for_storage([{**plain, "_id": resident} for resident in alike])
    assert not [r for r in bulk_save(site.couch.main, stored) if r.error]
    _, phone_key = site.enrol(W1)
    assert site.sync(W1, reason=grants.PHONE_ENROLLED) == (3 + 4, 0)
    held = site.held(W1)
    assert all(held[grants.grant_id(phone_key, resident, "contact")]["resident"] == resident for resident in alike)
    (issued,) = site.exposure()
    assert (issued["keys"], issued["fields"]) == (sorted(f"{r}/contact" for r in (*G1_RESIDENTS, *alike)), ["contact"])


def test_a_worker_of_two_grids_in_two_communities_holds_the_residents_of_both(site: Site) -> None:
    site.move(W1, [C1, C2], [G1, G3])
    _, phone_key = site.enrol(W1)
    assert site.sync(W1) == (4, 0)
    assert {g["resident"]: g["community"] for g in site.held(W1).values()} == {
        **{r: C1 for r in G1_RESIDENTS}, G3_RESIDENT: C2}


def test_only_an_active_grid_workers_phones_carry_keys(site: Site) -> None:
    for user_id in ("user:volunteer1", SECRETARY):
        site.enrol(user_id)
        assert site.sync(user_id) == (0, 0) and site.held(user_id) == {}
    site.enrol(W1)
    assert site.sync(W1) == (3, 0)
    site.couch.accounts.save({**site.user(W1), "active": False})  # the account switched off
    assert site.sync(W1) == (0, 3) and site.held(W1) == {}


def test_a_contact_key_follows_the_residents_privacy_choice_on_every_holders_phone(site: Site) -> None:
    for user_id in (W1, W2):
        site.enrol(user_id)
        site.sync(user_id)
    site.firewall.set_privacy(Principal.of(site.user(SECRETARY)), site.couch.main.get(R1),
                              {"contact": "secretary_only"}, NOW)
    assert grants.resync_resident(site.firewall, R1, NOW) == 2  # one grant withdrawn from each
    for user_id in (W1, W2):
        assert sorted(g["resident"] for g in site.held(user_id).values()) == sorted(G1_RESIDENTS[1:])


def test_a_core_key_comes_only_with_the_workers_own_active_approval(site: Site) -> None:
    private, phone_key = site.enrol(W1)
    site.enrol(W2)
    worker = Principal.of(site.user(W1))
    site.firewall.request_access(worker, site.couch.main.get(R1), ["health"], "随访", 2, NOW)  # pending
    refused = site.firewall.request_access(worker, site.couch.main.get(G1_RESIDENTS[1]), ["health"], "随访", 2, NOW)
    site.firewall.decide(Principal.of(site.user(SECRETARY)), refused["_id"], approve=False, note="", now=NOW)
    assert site.sync(W1) == (3, 0)  # contact keys only
    approval = site.approve(W1, R1, 2)
    assert site.sync(W1) == (1, 0)
    core = site.couch.main.get(grants.grant_id(phone_key, R1, "core"))
    assert (core["tier"], core["expires_at"], core["access_request"], core["key_version"]) == (
        "core", (NOW + 2 * HOUR).isoformat(), approval["_id"], site.version(R1, "core"))
    assert open_on_phone(private, core, site.couch.main.get(R1), "chronic_conditions", "core") == ["高血压"]
    assert site.sync(W1) == (0, 0)  # the same approval, the same grant: nothing rewritten
    assert site.sync(W2) == (3, 0)  # another worker of the grid: W1's approval opens nothing for them
    assert all(g["tier"] == "contact" for g in site.held(W2).values())
    assert site.sync(W1, NOW + 3 * HOUR) == (0, 1)  # the approval ran out: the core key goes at the next sync
    assert all(g["tier"] == "contact" for g in site.held(W1).values())


def test_a_core_key_stays_while_one_approved_category_is_still_open_to_the_worker(site: Site) -> None:
    _, phone_key = site.enrol(W1)
    site.approve(W1, R1, 2, categories=("health", "finance"))
    site.sync(W1)
    secretary, resident = Principal.of(site.user(SECRETARY)), site.couch.main.get(R1)
    site.firewall.set_privacy(secretary, resident, {"health": "secretary_only"}, NOW)
    assert grants.resync_resident(site.firewall, R1, NOW) == 0  # finance is still open with the approval
    assert grants.grant_id(phone_key, R1, "core") in site.held(W1)
    site.firewall.set_privacy(secretary, resident, {"finance": "secretary_only"}, NOW)
    assert grants.resync_resident(site.firewall, R1, NOW) == 1
    assert grants.grant_id(phone_key, R1, "core") not in site.held(W1)


def test_an_erased_resident_is_granted_to_no_phone(site: Site) -> None:
    _, phone_key = site.enrol(W1)
    site.sync(W1)
    site.firewall.shred(R1)
    assert site.sync(W1) == (0, 1)
    assert sorted(g["resident"] for g in site.held(W1).values()) == sorted(G1_RESIDENTS[1:])


# ---------------------------------------------------------------- rotated

def test_a_worker_moved_off_a_grid_loses_its_keys_which_are_rotated_for_the_grids_other_workers(site: Site) -> None:
    site.enrol(W1)
    site.enrol(W2)
    site.sync(W1)
    site.sync(W2)
    before = {r: site.version(r, "contact") for r in G1_RESIDENTS}
    site.move(W1, [C1], [G2])
    assert site.sync(W1) == (1 + 3, 3)  # G2's resident for W1, G1's new versions for W2; W1's three withdrawn
    assert [g["resident"] for g in site.held(W1).values()] == [G2_RESIDENT]
    assert {g["resident"]: g["key_version"] for g in site.held(W2).values()} == {
        r: v + 1 for r, v in before.items()} == {r: site.version(r, "contact") for r in G1_RESIDENTS}
    issued_to_w2 = [e for e in site.exposure() if e["actor"] == W2][-1]
    assert (issued_to_w2["action"], issued_to_w2["purpose"]) == (grants.KEYS_ISSUED, grants.ENTITLEMENT_CHANGED)


def test_a_rekey_or_a_privacy_change_reaches_every_holder_of_that_resident_only(site: Site) -> None:
    site.enrol(W1)
    site.enrol(W2)
    site.sync(W1)
    site.sync(W2)
    assert grants.resync_resident(site.firewall, "resident:c1-g01-9999-1", NOW) == 0  # no such resident
    others = {r: site.version(r, "contact") for r in G1_RESIDENTS[1:]}
    site.firewall.rekey(R1)
    assert grants.resync_resident(site.firewall, R1, NOW) == 2  # each worker's phone, the new version
    for user_id in (W1, W2):
        assert {g["resident"]: g["key_version"] for g in site.held(user_id).values()} == {
            R1: site.version(R1, "contact"), **others}


# ---------------------------------------------------------------- expired

def test_an_ended_approval_withdraws_its_own_core_key_and_the_other_holders_get_the_new_version(site: Site) -> None:
    _, phone1 = site.enrol(W1)
    _, phone2 = site.enrol(W2)
    site.approve(W1, R1, 2)
    site.approve(W2, R1, 5)
    site.sync(W1)
    site.sync(W2)
    version = site.version(R1, "core")
    assert grants.expire(site.firewall, NOW + HOUR) == 0  # both still running
    assert grants.expire(site.firewall, NOW + 3 * HOUR) == 1  # W1's ran out
    assert grants.grant_id(phone1, R1, "core") not in site.held(W1)
    assert len(site.held(W1)) == 3  # the contact keys stay
    assert site.version(R1, "core") == version + 1  # what is sealed from now on, W1's phone cannot open
    assert site.held(W2)[grants.grant_id(phone2, R1, "core")]["key_version"] == version + 1
    withdrawn, reissued = site.exposure()[-2:]
    assert entry_of(withdrawn) == (grants.KEYS_WITHDRAWN, W1, phone1, grants.APPROVAL_ENDED, [f"{R1}/core"])
    assert entry_of(reissued) == (grants.KEYS_ISSUED, W2, phone2, grants.ENTITLEMENT_CHANGED, [f"{R1}/core"])
    assert withdrawn["at"] == (NOW + 3 * HOUR).isoformat()
    assert grants.expire(site.firewall, NOW + 3 * HOUR) == 0  # nothing left to take back


def test_approvals_ending_in_the_same_minute_are_each_filed_under_their_own_worker(site: Site) -> None:
    _, phone1 = site.enrol(W1)
    _, phone2 = site.enrol(W2)
    for user_id in (W1, W2):
        site.approve(user_id, R1, 2)
        site.sync(user_id)
    filed = len(site.exposure())
    assert grants.expire(site.firewall, NOW + 3 * HOUR) == 2
    assert all(g["tier"] == "contact" for user_id in (W1, W2) for g in site.held(user_id).values())
    assert [entry_of(e) for e in site.exposure()[filed:]] == [
        (grants.KEYS_WITHDRAWN, W1, phone1, grants.APPROVAL_ENDED, [f"{R1}/core"]),
        (grants.KEYS_WITHDRAWN, W2, phone2, grants.APPROVAL_ENDED, [f"{R1}/core"])]


def test_a_revoked_approval_withdraws_its_core_key_at_the_next_minute(site: Site) -> None:
    _, phone_key = site.enrol(W1)
    approval = site.approve(W1, R1, 5)
    site.sync(W1)
    site.firewall.revoke(Principal.of(site.user(SECRETARY)), approval["_id"], NOW + HOUR)
    assert grants.expire(site.firewall, NOW + HOUR) == 1
    assert grants.grant_id(phone_key, R1, "core") not in site.held(W1)


def test_an_ended_approval_leaves_the_grant_a_newer_approval_gave(site: Site) -> None:
    _, phone_key = site.enrol(W1)
    first = site.stored_approval(W1, R1, NOW, 2, "zz-first")  # listed after the renewal: its id sorts last
    site.sync(W1)
    core_id = grants.grant_id(phone_key, R1, "core")
    assert site.held(W1)[core_id]["access_request"] == first["_id"]
    later = NOW + 3 * HOUR  # the first approval ran out; before the minute's expiry, a new one
    renewed = site.stored_approval(W1, R1, later, 2, "aa-renewed")
    assert site.sync(W1, later) == (1, 0)  # the same grant, rewritten with the new approval's end
    core = site.held(W1)[core_id]
    assert (core["expires_at"], core["access_request"]) == ((later + 2 * HOUR).isoformat(), renewed["_id"])
    assert core["_rev"].startswith("2-")
    assert grants.expire(site.firewall, later) == 0  # the first approval ended, but this grant is the new one's
    assert core_id in site.held(W1)


def test_a_core_grant_issued_twice_on_a_cluster_expires_whole(site: Site) -> None:
    _, phone_key = site.enrol(W1)
    site.approve(W1, R1, 2)
    site.sync(W1)
    made_on_another_node(site.couch, site.held(W1)[grants.grant_id(phone_key, R1, "core")], WINS)
    site.firewall.rekey(R1)  # the grant's version is no longer current: no rotation, so no sync follows the expiry
    assert grants.expire(site.firewall, NOW + 3 * HOUR) == 1
    assert get_or_none(site.couch.main, grants.grant_id(phone_key, R1, "core")) is None  # no revision left


# ---------------------------------------------------------------- revoked, and by whom

def test_a_revoked_phone_loses_its_grants_by_whoever_revoked_it_and_gets_nothing_new(site: Site) -> None:
    _, phone_a = site.enrol(W1)
    _, phone_b = site.enrol(W1)
    private_w2, phone_w2 = site.enrol(W2)
    site.sync(W1, reason=grants.PHONE_ENROLLED)
    site.sync(W2)
    before = {r: site.version(r, "contact") for r in G1_RESIDENTS}
    worker = site.user(W1)
    assert not grants.unregister_phone(site.firewall, site.user(W2), phone_a, NOW)  # not W2's phone
    assert not grants.unregister_phone(site.firewall, worker, "phone_key:worker1.000000000000", NOW)  # none such
    assert not grants.unregister_phone(site.firewall, worker, W1, NOW)  # a document, but not a phone key
    revoked_at = NOW + HOUR
    assert grants.unregister_phone(site.firewall, worker, phone_a, revoked_at, by=SECRETARY)
    stored = site.couch.accounts.get(phone_a)
    assert (stored["revoked"], stored["revoked_at"], stored["revoked_by"]) == (True, revoked_at.isoformat(), SECRETARY)
    assert [p["_id"] for p in grants.phones_of(site.couch, W1)] == [phone_b]
    rotated = {r: v + 1 for r, v in before.items()}
    for user_id, phone_key in ((W1, phone_b), (W2, phone_w2)):  # the revoked phone's keys are rotated for all
        assert {g["phone_key"] for g in site.held(user_id).values()} == {phone_key}
        assert {g["resident"]: g["key_version"] for g in site.held(user_id).values()} == rotated
    # The new version opens what is sealed from now on; what was sealed before opens with the older one it carries.
    grant, old = site.held(W2)[grants.grant_id(phone_w2, R1, "contact")], before[R1]
    older = DataKey(unwrap_on_phone(private_w2, grant["_id"], grant, version=old), old)
    assert older.open(FieldContext(R1, "phone", "contact"), site.couch.main.get(R1)["phone"]) == "10012345678"
    keys = sorted(f"{r}/contact" for r in G1_RESIDENTS)
    assert [entry_of(e) for e in site.exposure()[-3:]] == [
        (grants.KEYS_ISSUED, W1, phone_b, grants.PHONE_REVOKED, keys),
        (grants.KEYS_WITHDRAWN, W1, phone_a, grants.PHONE_REVOKED, keys),
        (grants.KEYS_ISSUED, W2, phone_w2, grants.ENTITLEMENT_CHANGED, keys)]
    assert not grants.unregister_phone(site.firewall, worker, phone_a, NOW + 2 * HOUR)  # once
    assert site.sync(W1) == (0, 0)  # nothing new for the revoked phone
    assert grants.unregister_phone(site.firewall, site.user(W1), phone_b, NOW + 2 * HOUR)  # by the user themself
    assert site.couch.accounts.get(phone_b)["revoked_by"] == W1
    assert site.held(W1) == {}


def test_a_grant_issued_twice_on_a_cluster_goes_whole_with_its_phone(site: Site) -> None:
    _, phone_key = site.enrol(W1)
    site.sync(W1)
    made_on_another_node(site.couch, site.held(W1)[grants.grant_id(phone_key, R1, "contact")], WINS)
    assert grants.unregister_phone(site.firewall, site.user(W1), phone_key, NOW)
    assert get_or_none(site.couch.main, grants.grant_id(phone_key, R1, "contact")) is None  # no revision left


class AnotherSyncFirst:
    """The keystore, as a sync that loses a race sees it: just before this sync reads the keys it will wrap, another
    process syncing the same user rewrites one of the grants (two syncs of one user at once)."""

    def __init__(self, keystore: Any, couch: Couch, grant: str) -> None:
        self.keystore, self.couch, self.grant = keystore, couch, grant

    def raw_data_keys(self, wanted: Any) -> Any:
        self.couch.main.save(self.couch.main.get(self.grant))  # the other process's revision
        return self.keystore.raw_data_keys(wanted)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.keystore, name)


def test_a_sync_that_loses_a_race_for_a_grant_says_so_and_still_files_what_it_withdrew(site: Site) -> None:
    _, phone_key = site.enrol(W1)
    site.sync(W1)
    site.firewall.rekey(R1)  # R1's grant is to be rewritten, R2's withdrawn
    site.firewall.set_privacy(Principal.of(site.user(SECRETARY)), site.couch.main.get(G1_RESIDENTS[1]),
                              {"contact": "secretary_only"}, NOW)
    raced = grants.grant_id(phone_key, R1, "contact")
    racing = Firewall(site.couch, AnotherSyncFirst(site.firewall.keystore, site.couch, raced), site.firewall.signer)
    with pytest.raises(RuntimeError, match=f"^key grant {raced}: conflict; run it again$"):
        grants.sync_user(racing, site.user(W1), NOW)
    withdrawn = site.exposure()[-1]  # the withdrawal went through: filed, although the sync stopped
    assert entry_of(withdrawn) == (grants.KEYS_WITHDRAWN, W1, phone_key, grants.ENTITLEMENT_CHANGED,
                                   [f"{G1_RESIDENTS[1]}/contact"])
    assert site.sync(W1) == (1, 0)  # run again: R1's new version
    assert site.held(W1)[raced]["key_version"] == site.version(R1, "contact")


# ---------------------------------------------------------------- phones

def test_a_phone_is_registered_to_its_user_with_a_tidy_label_and_where_it_enrolled_from(site: Site) -> None:
    _, public = phone()
    doc = grants.register_phone(site.couch, site.user(W1), public, "  工作手机 " + "x" * 200, NOW,
                                enrolled_from="Chromium 131 · 10.0.0.7 " + "y" * 200)
    prefix, suffix = doc["_id"].rsplit(".", 1)
    assert (prefix, len(suffix), int(suffix, 16) >= 0) == ("phone_key:worker1", 12, True)
    assert {k: doc[k] for k in ("type", "street", "user", "public", "created_at", "revoked")} == {
        "type": "phone_key", "street": STREET, "user": W1, "public": public, "created_at": NOW.isoformat(),
        "revoked": False}
    assert doc["label"] == ("工作手机 " + "x" * 200)[:100]
    assert doc["enrolled_from"] == ("Chromium 131 · 10.0.0.7 " + "y" * 200)[:100]
    assert site.couch.accounts.get(doc["_id"])["label"] == doc["label"]  # stored as returned
    unsaid = grants.register_phone(site.couch, site.user(W1), phone()[1], "", NOW)
    assert "enrolled_from" not in unsaid


def test_a_user_registers_at_most_five_phones_at_once_and_a_revoked_one_frees_its_place(site: Site) -> None:
    for bad in ("", "not base64!", "BAEB", b64url(b"\x04" + b"\x01" * 64)):  # the last: not a point on P-256
        with pytest.raises(grants.PhoneKeyError,
                           match="^public_key must be an uncompressed P-256 point, base64url$") as malformed:
            grants.register_phone(site.couch, site.user(W1), bad, "", NOW)
        assert (malformed.value.key, malformed.value.params) == ("err_phone_key_shape", {})
    enrolled = [site.enrol(W1)[1] for _ in range(grants.MAX_PHONES)]
    site.enrol(W2)  # another user's phones do not count
    with pytest.raises(grants.PhoneKeyError, match="^at most 5 phones per account; remove one first$") as full:
        site.enrol(W1)
    assert (full.value.key, full.value.params) == ("err_phone_keys_full", {"max": 5})  # the sync bar's words
    assert grants.unregister_phone(site.firewall, site.user(W1), enrolled[0], NOW)
    assert site.enrol(W1)[1] not in enrolled
    assert len(grants.phones_of(site.couch, W1)) == grants.MAX_PHONES


def test_a_phone_whose_id_sorts_last_among_its_users_is_found_and_granted(site: Site) -> None:
    """phones_of and grants_of read the user's id range: a phone id ending in f… is the last of it."""
    _, public = phone()
    registered = grants.register_phone(site.couch, site.user(W1), public, "", NOW)
    last = site.couch.accounts.save({k: v for k, v in registered.items() if k != "_rev"} | {
        "_id": "phone_key:worker1.ffffffffffff"})
    site.couch.accounts.save({**registered, "revoked": True})
    assert [p["_id"] for p in grants.phones_of(site.couch, W1)] == [last["_id"]]
    assert site.sync(W1) == (3, 0)
    assert {g["phone_key"] for g in site.held(W1).values()} == {last["_id"]}


# ---------------------------------------------------------------- filed

def test_exposure_is_filed_per_phone_and_community_a_batch_of_keys_at_a_time(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grants, "KEYS_PER_ENTRY", 2)
    site.move(W1, [C1, C2], [G1, G3])
    phone_a, phone_b = sorted(site.enrol(W1)[1] for _ in range(2))  # entries are filed in the phones' order
    assert site.sync(W1, reason=grants.PHONE_ENROLLED) == (8, 0)
    first, rest = sorted(f"{r}/contact" for r in G1_RESIDENTS)[:2], [f"{G1_RESIDENTS[2]}/contact"]
    in_c1 = site.exposure(C1)
    assert [(e["target"], e["keys"]) for e in in_c1] == [
        (phone_a, first), (phone_a, rest), (phone_b, first), (phone_b, rest)]
    assert [(e["target"], e["keys"]) for e in site.exposure(C2)] == [
        (phone_a, [f"{G3_RESIDENT}/contact"]), (phone_b, [f"{G3_RESIDENT}/contact"])]
    for entry in in_c1:
        assert (entry["action"], entry["actor"], entry["device"], entry["purpose"], entry["fields"], entry["at"]) == (
            grants.KEYS_ISSUED, W1, entry["target"], grants.PHONE_ENROLLED, ["contact"], NOW.isoformat())
    held = [g for g in site.held(W1).values() if g["phone_key"] == phone_a]
    assert grants.file_exposure(site.firewall, W1, grants.KEYS_WITHDRAWN, held, grants.PHONE_REVOKED, NOW) == 3
    assert grants.file_exposure(site.firewall, W1, grants.KEYS_WITHDRAWN, [], grants.PHONE_REVOKED, NOW) == 0
    assert filing.verify(site.couch, site.firewall.signer, C1).ok


def test_syncing_without_a_reason_files_it_as_an_entitlement_change(site: Site) -> None:
    _, phone_key = site.enrol(W1)
    site.sync(W1)
    (issued,) = site.exposure()
    assert entry_of(issued) == (grants.KEYS_ISSUED, W1, phone_key, grants.ENTITLEMENT_CHANGED,
                                sorted(f"{r}/contact" for r in G1_RESIDENTS))
