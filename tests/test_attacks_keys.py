"""Issue 13, findings 1 and 2, as an attacker would try them: every public key anything seals to is
authenticated, and every key handed to a phone is filed as exposure.

Finding 1: a grid worker swapped a device's write key for their own, and the BLE gateway sealed the
resident's readings to them. Now the sync gateway refuses the swap (the fields are server-only), and a
gateway that is handed a swapped key anyway (written past the sync gateway, straight into CouchDB) refuses
to seal to it: only the installation key it pinned vouches for a resident's write key.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.testclient import TestClient

from ble_gateway.credentials import SecretError, installation_key
from crypto import key_statements
from crypto.envelope import EnvelopeError, FieldContext, WriteKey, b64url
from crypto.fields import open_fields
from server.domain.access import Principal
from server.domain.i18n import translator
from server.security import audit_report, filing, grants
from server.security.firewall import Firewall
from server.security.keystore import KeyStore, data_key_id
from server.store.config import LOCAL_TZ, Settings
from server.store.couch import Couch
from server.store.embedded_couch import EmbeddedCouch
from tests.sync_harness import Street, login, street_fixture  # noqa: F401 - the fixture
from tests.test_ble_sync import BAND, BIND_KEY, OTHER_GRID_RESIDENT, RESIDENT, gateway_on, prepare

from .ble_virtual import VirtualRadio, until
from .browser import DEMO_RESIDENT, PHONE, DemoSite, demo_site, sign_in
from .street import C1, csrf_of, logout, post_form
from .street import login as web_login
from .test_firewall_cli import run as run_linli
from .test_grants import open_on_phone, phone

BAND_DEVICE = "device:" + BAND.replace(":", "").lower()
NOW = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
G1_RESIDENTS = {f"resident:c1-g01-{n:04d}-1" for n in (1, 2, 3)}  # tests/street.py
C1_RESIDENT = "resident:c1-g01-0001-1"
RAW_POINT = (Encoding.X962, PublicFormat.UncompressedPoint)


def _sync_client(street: Street, username: str) -> httpx2.Client:
    cookie, csrf = login(street.served.url, username)
    return httpx2.Client(base_url=street.served.sync_url + "/", timeout=30,
                         headers={"Cookie": cookie, "X-CSRF-Token": csrf, "Accept": "application/json"})


def test_a_grid_worker_cannot_swap_a_devices_write_key_or_resident_through_the_sync_gateway(
        street: Street, firewall: Firewall) -> None:
    prepare(street, firewall)
    device = street.couch.main.get(BAND_DEVICE)
    other = street.couch.main.get(data_key_id(OTHER_GRID_RESIDENT))
    attacker = WriteKey.generate(device["write_key_version"])
    swaps = {
        "own key": {"write_public": b64url(attacker.public_raw)},
        "own key, statement dropped": {"write_public": b64url(attacker.public_raw), "write_signature": None},
        # Another resident's genuine, vouched-for key: the readings would be filed under them.
        "another resident": {"resident": OTHER_GRID_RESIDENT, "write_public": other["write_public"],
                             "write_signature": other["write_signature"]},
    }
    with _sync_client(street, "wangge01") as worker:  # grid 1's worker: may write the device's grid
        for what, change in swaps.items():
            answer = worker.post("_bulk_docs", json={"docs": [{**device, **change}]})
            assert answer.status_code == 201, what
            assert answer.json()[0]["error"] == "forbidden", what
            assert "set by the server only" in answer.json()[0]["reason"], what
        # Nor may a client create a device that names a key at all.
        fresh = {k: v for k, v in device.items() if k != "_rev"} | {"_id": "device:a4c138000099",
                                                                   "mac": "A4:C1:38:00:00:99"}
        answer = worker.post("_bulk_docs", json={"docs": [fresh]}).json()
        assert answer[0]["error"] == "forbidden"
        # What the server set is still there, and still vouched for.
        unchanged = worker.post("_bulk_docs", json={"docs": [{**device, "model": "换了电池"}]}).json()
        assert unchanged[0].get("ok"), unchanged
    stored = street.couch.main.get(BAND_DEVICE)
    assert (stored["write_public"], stored["resident"]) == (device["write_public"], RESIDENT)


def test_a_gateway_refuses_to_seal_to_a_key_the_installation_does_not_vouch_for(
        street: Street, firewall: Firewall, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    token = prepare(street, firewall)
    genuine = street.couch.main.get(BAND_DEVICE)
    other = street.couch.main.get(data_key_id(OTHER_GRID_RESIDENT))
    attacker = WriteKey.generate(genuine["write_key_version"])
    attacker_public = b64url(attacker.public_raw)
    forger = key_statements.new_installation_key()  # an installation key of the attacker's own making
    forgeries = {
        "no statement": {"write_public": attacker_public, "write_signature": None},
        "a statement by another key": {"write_public": attacker_public, "write_signature": key_statements.vouch(
            forger, RESIDENT, genuine["write_key_version"], attacker_public)},
        "another resident's statement": {"write_public": other["write_public"],
                                         "write_signature": other["write_signature"]},
    }

    async def scenario() -> tuple[list[str], list[dict]]:
        radio = VirtualRadio()
        await radio.start()
        band = await radio.add(BAND, BIND_KEY, wristband=True)
        problems = []
        async with gateway_on(street, token, tmp_path, radio, "scan") as gateway:
            assert gateway.registry.get(BAND_DEVICE) is not None  # the vouched registration
            for change in forgeries.values():
                # Past the sync gateway, straight into CouchDB (a process on the host, or a bug elsewhere).
                current = street.couch.main.get(BAND_DEVICE)
                street.couch.main.save({**current, **change})
                await gateway.refresh_config()
                problems.append(gateway.registry.problems.get(BAND_DEVICE, ""))
                kept = gateway.registry.get(BAND_DEVICE)
                assert kept is not None and b64url(kept.write_key.public_bytes(*RAW_POINT)) == genuine["write_public"]
            before = gateway.advertisements
            await band.emit(band.buttons(sos=1))
            await until(lambda: gateway.outbox.counts()["pending"] > 0 and gateway.advertisements > before,
                        "the SOS heard and waiting in the outbox")
            await gateway.push()
        return problems, [r["doc"] for r in street.couch.main.all(startkey="alert:", endkey="alert:\ufff0",
                                                                    as_list=True)]

    # In a thread of its own: once a test here used this module's Chromium (`site`, Playwright's sync API), an event
    # loop runs in this thread until the module ends (seeds 34 and 35: "asyncio.run() cannot be called from a
    # running event loop").
    with ThreadPoolExecutor(max_workers=1) as thread:
        problems, alerts = thread.submit(asyncio.run, scenario()).result()
    for what, problem in zip(forgeries, problems, strict=True):
        assert "refusing to seal readings to it" in problem, what
    assert "refusing to seal readings to it" in caplog.text  # the gateway's log says so
    (alert,) = alerts
    # Sealed to the resident's own key: it opens with their keys, not with the attacker's.
    opened = open_fields(alert, firewall.keystore.data_keys(RESIDENT), ["detail"])
    assert opened == {"detail": "SOS key pressed (press)"}
    with pytest.raises(EnvelopeError, match="does not open: wrong key"):
        attacker.open(FieldContext(alert["_id"], "detail", "core"), alert["detail"])


def test_a_gateway_without_its_pinned_installation_key_does_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LINLI_GATEWAY_INSTALLATION_KEY", raising=False)
    monkeypatch.delenv("LINLI_GATEWAY_INSTALLATION_KEY_FILE", raising=False)
    with pytest.raises(SecretError, match="LINLI_GATEWAY_INSTALLATION_KEY"):
        installation_key()
    monkeypatch.setenv("LINLI_GATEWAY_INSTALLATION_KEY", "bm90IGEga2V5")
    with pytest.raises(SecretError, match="not a base64url P-256 public key"):
        installation_key()


def test_every_new_write_key_is_vouched_for_and_rotate_master_keeps_the_installation_key(
        street: Street, firewall: Firewall) -> None:
    prepare(street, firewall)
    pinned = key_statements.load_pinned(firewall.keystore.installation_public())
    before = street.couch.main.get(data_key_id(RESIDENT))
    firewall.rekey(RESIDENT)
    after = street.couch.main.get(data_key_id(RESIDENT))
    device = street.couch.main.get(BAND_DEVICE)
    assert after["write_public"] != before["write_public"]
    key_statements.check(pinned, RESIDENT, after["core"]["version"], after["write_public"], after["write_signature"])
    assert (device["write_public"], device["write_signature"]) == (after["write_public"], after["write_signature"])
    with pytest.raises(key_statements.UnvouchedKey, match="is not the one the installation vouches for"):  # old one
        key_statements.check(pinned, RESIDENT, after["core"]["version"], after["write_public"],
                             before["write_signature"])
    # An installation from before statements: `linli serve` vouches for its keys once at start.
    old_style = {k: v for k, v in street.couch.main.get(BAND_DEVICE).items() if k != "write_signature"}
    street.couch.main.save(old_style)
    street.couch.main.save({k: v for k, v in street.couch.main.get(data_key_id(OTHER_GRID_RESIDENT)).items()
                            if k != "write_signature"})
    marker = street.couch.accounts.get("installation_key:signing")  # set by this street's `linli serve` at start
    street.couch.accounts.save({k: v for k, v in marker.items() if k != "statements_complete"})
    assert firewall.vouch_for_existing_keys() == 2
    key_statements.check(pinned, RESIDENT, old_style["write_key_version"], old_style["write_public"],
                         street.couch.main.get(BAND_DEVICE)["write_signature"])
    assert street.couch.main.get(data_key_id(OTHER_GRID_RESIDENT))["write_signature"]
    assert firewall.vouch_for_existing_keys() == 0  # done once, nothing read again
    # A master-key rotation re-wraps the installation key; what gateways and phones pinned stays valid.
    new_master = bytes(range(32))
    KeyStore(street.couch, (new_master, *firewall.keystore.master_keys)).rotate_master()
    assert KeyStore(street.couch, (new_master,)).installation_public() == firewall.keystore.installation_public()


def test_a_phone_refused_a_key_is_told_why_in_its_users_language(client: TestClient, loaded: Couch) -> None:
    """The sixth phone of an account gets no key: the answer names the rule for scripts and logs, and carries the
    message the app's sync bar shows in Chinese or English; a body that is not the expected JSON says so."""
    web_login(client, "worker1")
    token = csrf_of(client, "/requests")
    answers = [client.post("/phone-keys", json={"public_key": phone()[1], "label": f"手机 {n}"},
                           headers={"X-CSRF-Token": token}) for n in range(grants.MAX_PHONES + 1)]
    assert [a.status_code for a in answers] == [201] * grants.MAX_PHONES + [400]
    refused = answers[-1].json()
    assert refused == {"error": "bad_request", "reason": "at most 5 phones per account; remove one first",
                       "key": "err_phone_keys_full", "params": {"max": 5}}
    assert "5 部手机" in translator("zh")(refused["key"], refused["params"])
    assert "on 5 phones" in translator("en")(refused["key"], refused["params"])
    not_json = client.post("/phone-keys", content=b"[1, 2]", headers={"X-CSRF-Token": token})
    assert (not_json.status_code, not_json.json()) == (400, {"error": "bad_request",
                                                             "reason": "send JSON {public_key, label}"})
    logout(client)


# ---------------------------------------------------------------- finding 2: exposure is filed

def _exposure_entries(couch: Couch, community: str = C1) -> list[dict]:
    return [e for e in filing.iter_entries(couch, community) if e["action"] in (grants.KEYS_ISSUED,
                                                                                 grants.KEYS_WITHDRAWN)]


def test_a_scripted_phone_enrolment_is_filed_shown_to_the_secretary_and_revocable(
        client: TestClient, loaded: Couch, firewall: Firewall) -> None:
    # A script, not the app: its own P-256 key, registered with the worker's session.
    web_login(client, "worker1")
    private, public = phone()
    answer = client.post("/phone-keys", json={"public_key": public, "label": "脚本"},
                         headers={"X-CSRF-Token": csrf_of(client, "/requests")})
    assert answer.status_code == 201
    phone_key = answer.json()["phone_key"]
    held = grants.grants_of(loaded, "user:worker1")
    assert {g["resident"] for g in held} == G1_RESIDENTS
    # What a modified client can do: open every contact detail its grants cover, offline, reporting nothing …
    resident = loaded.main.get(C1_RESIDENT)
    grant = next(g for g in held if g["resident"] == C1_RESIDENT)
    assert open_on_phone(private, grant, resident, "phone", "contact")
    # … and what the log still proves: which keys that phone got, when, why; one entry, not one per resident.
    (issued,) = _exposure_entries(loaded)
    assert (issued["action"], issued["actor"], issued["target"], issued["purpose"]) == (
        grants.KEYS_ISSUED, "user:worker1", phone_key, grants.PHONE_ENROLLED)
    assert issued["keys"] == sorted(f"{r}/contact" for r in G1_RESIDENTS)
    (span,) = audit_report.exposure_of(loaded, C1, C1_RESIDENT)
    assert (span.actor, span.phone, span.tier, span.end) == ("user:worker1", phone_key, "contact", None)
    logout(client)

    web_login(client, "secretary1")
    page = client.get("/phones")
    assert page.status_code == 200 and "张网格" in page.text and "脚本" in page.text
    assert "web testclient" in page.text  # where it was enrolled from, as the server saw it (not the label)
    assert f'name="phone_key" value="{phone_key}"' in page.text  # a revoke button for it
    # A phone of another community's worker is not this secretary's to see or revoke.
    other_phone = grants.register_phone(loaded, loaded.accounts.get("user:worker3"), phone()[1], "c2", NOW)
    assert other_phone["_id"] not in page.text
    assert post_form(client, "/phones", {"phone_key": other_phone["_id"]}).status_code == 404
    for nonsense in ("", "user:worker1", "phone_key:../_all_docs", "phone_key:%00?x=1", "phone_key:" + "x" * 500):
        assert post_form(client, "/phones", {"phone_key": nonsense}).status_code == 404, nonsense
    revoked = post_form(client, "/phones", {"phone_key": phone_key})
    assert revoked.status_code == 200 and "已撤销 张网格" in revoked.text
    assert post_form(client, "/phones", {"phone_key": phone_key}).status_code == 409  # once
    stored = loaded.accounts.get(phone_key)
    assert stored["revoked"] and stored["revoked_by"] == "user:secretary1"
    assert grants.grants_of(loaded, "user:worker1") == []
    withdrawn = _exposure_entries(loaded)[-1]
    assert (withdrawn["action"], withdrawn["purpose"], withdrawn["keys"]) == (
        grants.KEYS_WITHDRAWN, grants.PHONE_REVOKED, issued["keys"])
    (span,) = audit_report.exposure_of(loaded, C1, C1_RESIDENT)
    assert span.end == withdrawn["at"]  # from enrolment until the revocation
    assert grants.sync_user(firewall, loaded.accounts.get("user:worker1"), NOW) == (0, 0)  # no keys for it again
    assert filing.verify(loaded, firewall.signer, C1).ok
    audit_page = client.get("/audit")
    assert "手机获得 3 把居民密钥" in audit_page.text and "手机的 3 把居民密钥被收回" in audit_page.text


def test_many_keys_are_filed_a_batch_at_a_time_and_an_ended_approval_files_its_end(
        loaded: Couch, firewall: Firewall, settings: Settings, couch_server: EmbeddedCouch,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grants, "KEYS_PER_ENTRY", 2)  # 3 residents: 2 entries (700 would be 4 at 200)
    user = loaded.accounts.get("user:worker1")
    grants.register_phone(loaded, user, phone()[1], "", NOW)
    grants.sync_user(firewall, user, NOW)
    assert [len(e["keys"]) for e in _exposure_entries(loaded)] == [2, 1]
    worker = Principal.of(user)
    secretary = Principal.of(loaded.accounts.get("user:secretary1"))
    request = firewall.request_access(worker, loaded.main.get(C1_RESIDENT), ["health"], "随访", 2, NOW)
    firewall.decide(secretary, request["_id"], approve=True, note="", now=NOW)
    grants.sync_user(firewall, user, NOW)
    assert grants.expire(firewall, NOW + dt.timedelta(hours=3)) == 1
    spans = {s.tier: s for s in audit_report.exposure_of(loaded, C1, C1_RESIDENT)}
    assert spans["core"].start == NOW.isoformat() and spans["core"].end == (NOW + dt.timedelta(hours=3)).isoformat()
    assert spans["contact"].end is None
    ended = _exposure_entries(loaded)[-1]
    assert (ended["action"], ended["purpose"], ended["keys"]) == (grants.KEYS_WITHDRAWN, grants.APPROVAL_ENDED,
                                                                  [f"{C1_RESIDENT}/core"])
    # The audit report counts keys apart from openings: none of this is an opening.
    report = audit_report.for_community(loaded, firewall.signer.anchor, C1, NOW.date(), NOW.date(), LOCAL_TZ)
    assert report.entries == 0 and report.keys_issued["user:worker1"] == 4 and not report.findings
    # As an operator asks it: whose phones held this resident's keys, from when to when.
    printed = run_linli(settings, couch_server.url, "audit", "report", "--from", NOW.date().isoformat(), "--to",
                        NOW.date().isoformat(), "--community", C1, "--resident", C1_RESIDENT)
    assert printed.returncode == 0, printed.stderr
    assert f"Keys of {C1_RESIDENT} on phones: 2" in printed.stdout and "still held" in printed.stdout
    assert f"{NOW.isoformat()} → {(NOW + dt.timedelta(hours=3)).isoformat()}" in printed.stdout


# ---------------------------------------------------------------- the phone seals only to vouched keys

@pytest.fixture(scope="module")
def site(couch_server: EmbeddedCouch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSite]:
    with demo_site(couch_server.url, tmp_path_factory.mktemp("keys"), lambda couch, firewall: None) as prepared:
        yield prepared


SEAL_ON_THE_PHONE = """async ([user, resident, context, swap]) => {
    const { sealForResident, pinInstallationKey } = await import('/pwa/offline/keys.js');
    for (const src of ['/pwa/vendor/pouchdb.min.js', '/pwa/vendor/pouchdb.indexeddb.min.js']) {
        if (!document.querySelector(`script[src='${src}']`)) {
            await new Promise((ok) => { const s = document.createElement('script'); s.src = src; s.onload = ok;
                                         document.head.append(s); });
        }
    }
    const db = new PouchDB(`linli-${user}`, { adapter: 'indexeddb' });  // the service worker's replica
    if (swap) {  // a key slipped into the replica: by a script on the phone, or a document forged upstream
        const record = await db.get(`data_key:${resident.split(':')[1]}`);
        await db.put({ ...record, ...swap });
    }
    let changed = null;
    try { await pinInstallationKey('BOgus'); } catch (error) { changed = error.message; }
    try {
        return { sealed: await sealForResident(db, resident, context, '150/95'), changed };
    } catch (error) {
        return { refused: `${error.name}: ${error.message}`, changed };
    }
}"""


def test_a_phone_pins_the_installation_key_and_seals_only_to_a_vouched_write_key(site: DemoSite) -> None:
    phone = site.browser.new_context(viewport=PHONE)
    page = sign_in(phone, site.url, "wangge01")
    page.wait_for_function("() => document.querySelector('#sync-state')?.dataset.lastSynced", timeout=60_000)
    context = {"doc_id": "visit:keys-test", "field": "blood_pressure", "tier": "core"}
    sealed = page.evaluate(SEAL_ON_THE_PHONE, ["user:wangge01", DEMO_RESIDENT, context, None])
    assert "sealed" in sealed, sealed
    assert "not the one this phone pinned" in sealed["changed"]  # another server's key is refused
    keys = site.firewall.keystore.data_keys(DEMO_RESIDENT)
    opened = open_fields({"_id": "visit:keys-test", "type": "visit", "blood_pressure": sealed["sealed"]}, keys,
                         ["blood_pressure"])
    assert opened == {"blood_pressure": "150/95"}  # the resident's key opens it
    attacker = b64url(WriteKey.generate(1).public_raw)
    refused = page.evaluate(SEAL_ON_THE_PHONE, ["user:wangge01", DEMO_RESIDENT, context,
                                                {"write_public": attacker}])
    assert refused.get("refused", "").startswith("UnvouchedKey"), refused
    phone.close()
