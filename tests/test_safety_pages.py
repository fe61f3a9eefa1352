"""Elderly safety on screen (issue 14, item 6): a resident's safety page within the firewall's tiers, the care plan
edited by the grid worker, and device pairing from the console with the command line's own functions."""

from __future__ import annotations

import datetime as dt
import re

from starlette.testclient import TestClient

from server.domain.access import Principal
from server.security.firewall import Firewall
from server.services import devices
from server.store.couch import Couch, get_or_none

from .street import C1, G1, STREET, login, logout, post_form

RESIDENT, HOUSEHOLD = "resident:c1-g01-0001-1", "household:c1-g01-0001"
GATEWAY = "gateway:c1-hall"
BAND, METER = "A4:C1:38:00:00:07", "A4:C1:38:00:00:08"


def _gateway(couch: Couch) -> None:
    couch.main.save({"_id": GATEWAY, "type": "gateway", "street": STREET, "community": C1, "name": "活动室网关"})


def _reading(firewall: Firewall, device: str, metric: str, value: float, ago: dt.timedelta) -> None:
    at = dt.datetime.now(dt.UTC) - ago
    doc = {"_id": f"reading:{device.split(':')[1]}-{int(at.timestamp())}-{metric}", "type": "reading",
           "street": STREET, "community": C1, "grid": G1, "household": HOUSEHOLD, "resident": RESIDENT,
           "device": device, "measured_at": at.isoformat(), "metric": metric, "value": value}
    firewall.couch.main.save(firewall.seal_for_storage([doc])[-1])


def _heard(couch: Couch, device: str, battery: int) -> None:
    now = dt.datetime.now(dt.UTC).isoformat()
    couch.main.save({"_id": f"device_health:{device.split(':')[1]}", "type": "device_health", "street": STREET,
                     "community": C1, "grid": G1, "household": HOUSEHOLD, "resident": RESIDENT, "device": device,
                     "gateway": GATEWAY, "last_seen_at": now, "battery": battery, "updated_at": now})


def test_secretary_pairs_from_the_console_exactly_as_the_command_line_does_and_unpairs(
        client: TestClient, loaded: Couch, firewall: Firewall) -> None:
    _gateway(loaded)
    login(client, "secretary1")
    page = client.get(f"/devices?resident={RESIDENT}")
    assert page.status_code == 200 and "活动室网关" in page.text and "暂无设备" in page.text
    paired = post_form(client, "/devices", {"resident": RESIDENT, "kind": "wristband", "mac": BAND.lower(),
                                             "gateway": GATEWAY, "encrypted": "on", "model": "安康手环"})
    assert paired.status_code == 200 and f"已配对 {BAND}" in paired.text and "解除配对" in paired.text
    console = loaded.main.get(devices.device_id(BAND))
    # What `linli device register` makes of the same pairing (it calls devices.register): the same document.
    devices.unregister(loaded, BAND)
    cli = devices.register(firewall, resident=RESIDENT, gateway=GATEWAY, kind="wristband", mac=BAND,
                           encrypted=True, model="安康手环", now=dt.datetime.now(dt.UTC))
    volatile = ("_rev", "registered_at")
    assert {k: v for k, v in console.items() if k not in volatile} == {
        k: v for k, v in loaded.main.get(cli["_id"]).items() if k not in volatile}
    assert console["write_public"] and console["write_signature"] and console["gateway"] == GATEWAY

    unpaired = post_form(client, f"/devices?resident={RESIDENT}", {"action": "unpair", "device": cli["_id"]})
    assert unpaired.status_code == 200 and f"已解除配对 {BAND}" in unpaired.text
    tombstone = loaded.main.get(cli["_id"], revs="true", open_revs="all")[0]["ok"]
    assert tombstone["_deleted"] and tombstone["gateway"] == GATEWAY  # the deletion reaches the gateway
    assert get_or_none(loaded.main, cli["_id"]) is None


def test_pairing_is_the_secretarys_of_their_own_community_and_bad_input_is_told(
        client: TestClient, loaded: Couch) -> None:
    _gateway(loaded)
    login(client, "worker1")
    assert client.get("/devices").status_code == 403
    logout(client)
    login(client, "secretary1")
    for form, expected in (({"resident": "resident:c2-g01-0001-1", "mac": BAND}, "找不到该居民"),  # another community
                           ({"resident": "nonsense", "mac": BAND}, "找不到该居民"),
                           ({"resident": RESIDENT, "mac": "not a mac"}, "AA:BB:CC:DD:EE:FF"),
                           ({"resident": RESIDENT, "mac": BAND, "gateway": "gateway:nowhere"}, "请选择读取它的网关"),
                           ({"resident": RESIDENT, "mac": BAND, "kind": "toaster"}, "请选择设备类型")):
        answer = post_form(client, "/devices", {"kind": "wristband", "gateway": GATEWAY, **form})
        assert answer.status_code == 400 and expected in answer.text, form
    assert post_form(client, "/devices", {"action": "unpair", "device": "device:nothing"}).status_code == 404
    # a wristband already on another resident stays theirs until un-paired there
    other = "resident:c1-g01-0002-1"
    assert post_form(client, "/devices", {"resident": RESIDENT, "kind": "wristband", "gateway": GATEWAY,
                                          "mac": BAND}).status_code == 200
    taken = post_form(client, "/devices", {"resident": other, "kind": "wristband", "gateway": GATEWAY, "mac": BAND})
    assert taken.status_code == 400 and f"{BAND} 已配对给另一位居民" in taken.text


def test_safety_page_shows_devices_status_and_alerts_within_the_tiers(
        client: TestClient, loaded: Couch, firewall: Firewall) -> None:
    _gateway(loaded)
    now = dt.datetime.now(dt.UTC)
    band = devices.register(firewall, resident=RESIDENT, gateway=GATEWAY, kind="wristband", mac=BAND, encrypted=True,
                            model=None, now=now)["_id"]
    meter = devices.register(firewall, resident=RESIDENT, gateway=GATEWAY, kind="water_meter", mac=METER,
                             encrypted=False, model=None, now=now)["_id"]
    _heard(loaded, band, 64)
    _heard(loaded, meter, 90)
    _reading(firewall, meter, "water", 1200.0, dt.timedelta(hours=13))  # no water for 13 h: the rule's 12 passed
    _reading(firewall, band, "heart_rate", 173.0, dt.timedelta(minutes=4))
    loaded.main.save({"_id": "alert:x-sos-1", "type": "alert", "street": STREET, "community": C1, "grid": G1,
                      "household": HOUSEHOLD, "resident": RESIDENT, "kind": "sos", "status": "resolved",
                      "device": band, "raised_at": (now - dt.timedelta(days=3)).isoformat()})

    login(client, "worker1")  # no core approval: when the heart rate was measured, not what it was
    page = client.get(f"/residents/{RESIDENT}/safety")
    assert page.status_code == 200
    assert "已 13 小时未用水" in page.text and "智能手环" in page.text and "64%" in page.text and "90%" in page.text
    # Not the number anywhere, but not inside a revision, an id or a token either (a revision once held "…1733…").
    assert "需书记批准后查看" in page.text and not re.search(r"(?<![\w-])173(?![\w-])", page.text)
    assert "紧急求助（SOS）" in page.text and "已解决" in page.text
    assert not [e for e in _filed(loaded) if "heart_rate" in e["fields"]]
    logout(client)

    login(client, "secretary1")  # entitled to health data: the value, and the rule it breaks; the opening filed
    page = client.get(f"/residents/{RESIDENT}/safety")
    assert "173 次/分" in page.text and "心率 173 次/分，超出 40–150" in page.text
    filed = [e for e in _filed(loaded) if "heart_rate" in e["fields"]]
    assert len(filed) == 1 and filed[0]["actor"] == "user:secretary1" and filed[0]["purpose"] == "safety_status"
    logout(client)

    # the grid worker with the secretary's approval for health data: the value, filed with the approval's purpose
    worker = Principal.of(loaded.accounts.get("user:worker1"))
    asked = firewall.request_access(worker, loaded.main.get(RESIDENT), ["health"], "心率异常随访", 24, now)
    firewall.decide(Principal.of(loaded.accounts.get("user:secretary1")), asked["_id"], approve=True, note="",
                    now=now)
    login(client, "worker1")
    assert "173 次/分" in client.get(f"/residents/{RESIDENT}/safety").text
    assert [e["purpose"] for e in _filed(loaded) if e["actor"] == "user:worker1"] == ["心率异常随访"]


def _filed(couch: Couch) -> list[dict]:
    return [r["doc"] for r in couch.main.all(startkey="audit_entry:", endkey="audit_entry:\ufff0", as_list=True)]


def test_grid_worker_sets_care_level_and_plan_the_health_part_sealed(client: TestClient, loaded: Couch) -> None:
    login(client, "worker1")
    rev = loaded.main.get(RESIDENT)["_rev"]
    saved = post_form(client, f"/residents/{RESIDENT}/care", {
        "_rev": rev, "elderly_care_level": "semi_disabled", "care_plan": "每周上门两次，助餐",
        "care_plan_health": "胰岛素每日两次"})
    assert saved.status_code == 303
    stored = loaded.main.get(RESIDENT)
    assert stored["elderly_care_level"] == "semi_disabled" and stored["care_plan"] == "每周上门两次，助餐"
    assert stored["care_plan_health"].startswith("enc:")  # core: sealed, and not on the page
    page = client.get(f"/residents/{RESIDENT}/safety?saved=1")
    assert "照护计划已保存" in page.text and "半失能" in page.text and "每周上门两次，助餐" in page.text
    assert "胰岛素" not in page.text
    # an empty health part keeps the sealed one; a stale form is told, not saved over
    kept = post_form(client, f"/residents/{RESIDENT}/care", {
        "_rev": stored["_rev"], "elderly_care_level": "disabled", "care_plan": "每日上门", "care_plan_health": ""})
    assert kept.status_code == 303 and loaded.main.get(RESIDENT)["care_plan_health"] == stored["care_plan_health"]
    stale = post_form(client, f"/residents/{RESIDENT}/care", {"_rev": rev, "elderly_care_level": "none"})
    assert stale.status_code == 409 and "刚被别人修改过" in stale.text
    bad = post_form(client, f"/residents/{RESIDENT}/care", {"_rev": rev, "elderly_care_level": "immortal"})
    assert bad.status_code == 400
    logout(client)
    login(client, "volunteer1")  # a volunteer never sees a resident record: not found
    assert client.get(f"/residents/{RESIDENT}/safety").status_code == 404
    assert post_form(client, f"/residents/{RESIDENT}/care", {"elderly_care_level": "none"}).status_code == 404
