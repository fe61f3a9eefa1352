"""The dashboard from aggregates (issue 18 items 1, 2, 8), on the small demo street: the secretary's scope, the
KPI catalogue printed with formula, denominator, period and target, charts with their tables and CSV in Chinese
with names, nothing of another community, bad input a page; and the preparing page while the index is built."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from starlette.testclient import TestClient

from server.domain import i18n
from server.domain.figures import KPIS, MIN_CASES_TO_RANK
from server.domain.i18n import translator
from server.security import filing
from server.security.firewall import Firewall
from server.services import figures, figures_cells, snapshots
from server.services.demo import STREET_ID
from server.store import couch as store
from server.store.couch import Couch, build_views

from .street import as_user, csrf_of

ZH = translator("zh")
DEMO_PASSWORD = "demo-password"


def _request(couch: Couch, n: int, grid: str, *, closed: bool, department: str = "urban_management",
             category: str = "street_lamp") -> None:
    made = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    doc = {"_id": f"service_request:fig{grid}{category}{n}", "type": "service_request", "street": STREET_ID,
           "community": grid.split("-")[0].replace("grid", "community"), "grid": grid, "category": category,
           "department": f"department:{department}", "description": "x", "status": "received",
           "created_at": made.isoformat(), "due_respond": (made + dt.timedelta(days=1)).isoformat(),
           "due_close": (made + dt.timedelta(days=3)).isoformat()}
    if closed:
        doc.update(status="closed", acknowledged_at=(made + dt.timedelta(hours=5)).isoformat(),
                   resolved_at=(made + dt.timedelta(hours=30)).isoformat(), rating=5)
    couch.main.save(doc)


def test_the_secretary_reads_kpis_with_formula_and_target_charts_and_csv(web: TestClient,
                                                                         demo_loaded: Couch) -> None:
    for n in range(MIN_CASES_TO_RANK * 3 // 2):  # one grid with enough closed to rank (30), the other with one
        _request(demo_loaded, n, "grid:c1-g01", closed=n % 3 != 0)
    _request(demo_loaded, 99, "grid:c1-g02", closed=True)
    _request(demo_loaded, 0, "grid:c2-g01", closed=False)  # another community's: never on her page
    as_user(web, "shuji1", DEMO_PASSWORD)
    page = web.get("/dashboard").text
    for kpi in KPIS:  # every indicator with its formula and target, figured or said to be not recorded yet
        row = page.split(f'id="kpi-{kpi.code}"')[1].split("</tr>")[0]
        assert ZH(f"kpi_{kpi.code}") in row and ZH(f"kpi_{kpi.code}_formula") in row and "%" in row
    on_time = page.split('id="kpi-on_time"')[1].split("</tr>")[0]
    assert "<td>100.0%</td>" in on_time and "<td>31</td>" in on_time  # 30 + 1 closed, all on time
    assert ZH("fig_no_data") in page.split('id="kpi-mediation_success"')[1].split("</tr>")[0]  # no case yet
    for n, status in enumerate(("kept", "broken", "agreement", "withdrawn")):  # the evaluation's cases, linked
        demo_loaded.main.save({"_id": f"mediation:fig{n}", "type": "mediation", "street": STREET_ID,
                               "community": "community:c1", "grid": "grid:c1-g01", "status": status,
                               "created_at": dt.datetime.now(dt.UTC).isoformat()})
    mediated = web.get("/dashboard").text.split('id="kpi-mediation_success"')[1].split("</tr>")[0]
    assert "<td>66.7%</td>" in mediated and "<td>3</td>" in mediated, mediated  # kept + agreement of 3 concluded
    assert "90.0%（起点 76.0%）" in page  # satisfaction: the plan's target beside where it starts
    # Times as the bucket they lie in, with the bound stated; four charts, each an image with a title.
    assert ZH("fig_time_bound", low="4", high="6") in page and ZH("fig_bound_note") in page
    assert page.count('<svg class="chart"') == 4 and page.count('role="img"') == 4
    # Ranked only with 30 cases or more: grid 1 ranked, grid 2 listed apart.
    ranking = page.split('id="fig-ranking"')[1].split("</section>")[0]
    assert re.search(r"<ol>\s*<li>[^<]*1[^<]*：100.0%（30）</li>", ranking), ranking
    assert "不排名（1）" in ranking.split('id="fig-unranked"')[1]
    trend = web.get("/dashboard.csv", params={"table": "trend"})
    assert trend.headers["content-type"].startswith("text/csv")
    header, *months = trend.text.lstrip("\ufeff").strip().splitlines()
    assert header.startswith("月份,诉求数,已办结,按时办结") and len(months) == 12
    assert [sum(int(m.split(",")[i]) for m in months) for i in (1, 2)] == [46, 31], months
    backlog = web.get("/dashboard.csv", params={"table": "backlog"}).text.lstrip("\ufeff")
    assert backlog.splitlines()[0] == "部门,未办结" and "department:" not in backlog and ",15" in backlog


def test_a_kpi_is_explained_in_the_words_of_its_one_definition() -> None:
    """Mediation success counts cases by the month they were opened, confirmed closure over every closed request:
    the figures' messages once said "concluded in the period" and "asked about", and silently won over the right
    words, until a key said twice in other words became an error."""
    assert "按登记月份" in ZH("kpi_mediation_success_formula") and "登记" in ZH("kpi_mediation_success_of")
    assert "询问" not in ZH("kpi_confirmed_closure_formula") + ZH("kpi_confirmed_closure_of")
    with pytest.raises(ValueError, match="kpi_confirmed_closure"):
        i18n._add({"zh": {"kpi_confirmed_closure": "另一种说法"}, "en": {}})
    assert ZH("kpi_confirmed_closure") == "居民确认解决率"  # the refused table changed nothing


def test_another_communitys_area_and_bad_input_give_her_own_figures_never_an_error(web: TestClient,
                                                                                   demo_loaded: Couch) -> None:
    _request(demo_loaded, 0, "grid:c2-g01", closed=False)
    as_user(web, "shuji1", DEMO_PASSWORD)
    for params in ({"area": "community:c2"}, {"area": "grid:c2-g01"}, {"from": "garbage", "to": "2026-13"},
                   {"from": "2030-01", "to": "1999-12", "facet": "category:nope"}, {"area": "x" * 5000}):
        page = web.get("/dashboard", params=params)
        assert page.status_code == 200 and "community:c2" not in page.text, params
        assert 'value="community:c1" selected' in page.text or '<option value="community:c1">' in page.text
        assert web.get("/dashboard.csv", params={**params, "table": "backlog"}).text.count("\n") == 1  # header
    as_user(web, "admin", DEMO_PASSWORD)  # the street, and both communities, one ranking
    street = web.get("/dashboard").text
    assert f'<option value="{STREET_ID}" selected>' in street and "community:c2" in street
    as_user(web, "wangge01", DEMO_PASSWORD)
    assert web.get("/dashboard").status_code == 403


FACETS_OF = {"bumen_urban_management": ["department:department:urban_management", "category:garbage",
                                        "category:noise", "category:road_damage", "category:street_lamp"],
             "bumen_health": ["department:department:health", "category:home_medical"]}


def test_department_staff_read_their_own_departments_figures(web: TestClient, demo_loaded: Couch) -> None:
    """bumen_<department>: the street's places, their department and its categories only (no "all", no other
    department, asked or not), the backlog of their department alone."""
    for n in range(2):
        _request(demo_loaded, n, "grid:c1-g01", closed=False)  # urban management's
    _request(demo_loaded, 0, "grid:c2-g01", closed=False, department="health", category="home_medical")
    for username, requests in (("bumen_urban_management", 2), ("bumen_health", 1)):
        as_user(web, username, DEMO_PASSWORD)
        for params in ({}, {"facet": ""}, {"facet": "department:department:civil_affairs"}):
            page = web.get("/dashboard", params=params)
            assert page.status_code == 200 and ZH("fig_all") not in page.text, (username, params)
            options = re.findall(r'<option value="((?:department|category):[^"]*)"', page.text)
            assert options == FACETS_OF[username], options
            trend = web.get("/dashboard.csv", params={**params, "table": "trend"}).text.lstrip("\ufeff")
            assert sum(int(m.split(",")[1]) for m in trend.strip().splitlines()[1:]) == requests, trend
            backlog = web.get("/dashboard.csv", params={**params, "table": "backlog"}).text.lstrip("\ufeff")
            assert backlog.strip().splitlines()[1:] == [f"{'城管中队' if requests == 2 else '卫健办'},{requests}"]
        assert 'href="/dashboard"' in page.text  # in their menu


def test_a_page_whose_index_is_still_building_says_preparing_and_reloads(web: TestClient, demo_loaded: Couch,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    as_user(web, "shuji1", DEMO_PASSWORD)
    demo_loaded.main.save({"_id": "service_request:new", "type": "service_request", "street": STREET_ID,
                           "community": "community:c1", "grid": "grid:c1-g01", "category": "street_lamp",
                           "description": "x", "status": "received", "created_at": "2026-09-01T00:00:00+00:00"})
    store._view_builds.clear()  # as after a start: nobody has asked for the index yet
    monkeypatch.setattr(store, "INDEX_WAIT_SECONDS", 0)  # an index is never built in no time
    waiting = web.get("/dashboard", params={"area": "community:c1"})
    assert waiting.status_code == 202 and ZH("preparing_title") in waiting.text
    assert '<meta http-equiv="refresh" content="5">' in waiting.text and 'href="/dashboard?area=community%3Ac1"' in (
        waiting.text)
    build_views(demo_loaded)  # the figures' index, and the others the clearing above forgot were built
    figures_cells.caught_up(demo_loaded).result(timeout=60)
    monkeypatch.setattr(store, "INDEX_WAIT_SECONDS", 5.0)  # a catch-up of nothing new is quick, not instant
    assert web.get("/dashboard").status_code == 200
    assert csrf_of(web)  # still signed in, nothing else touched


def test_the_audit_log_says_preparing_while_its_index_builds(web: TestClient, demo_loaded: Couch,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    as_user(web, "shuji1", DEMO_PASSWORD)
    secretary = demo_loaded.accounts.get("user:shuji1")
    demo_loaded.accounts.save({**secretary, "display_name": secretary["display_name"] + " "})  # work for the index
    store._view_builds.clear()  # as after a start: nobody has asked for the index yet
    monkeypatch.setattr(store, "INDEX_WAIT_SECONDS", 0)
    waiting = web.get("/audit", params={"actor": "user:shuji1"})
    assert waiting.status_code == 202 and ZH("preparing_title") in waiting.text
    assert 'href="/audit?actor=user%3Ashuji1"' in waiting.text
    build_views(demo_loaded)
    assert web.get("/audit").status_code == 200


def _open_request_in(couch: Couch, month: str, request_id: str) -> tuple[dict, dt.datetime]:
    """A street-lamp request of community 1 made on the 10th of `month`, not closed: stored, and when it was made."""
    made = dt.datetime.strptime(month + "-10", "%Y-%m-%d").replace(tzinfo=dt.UTC)
    doc = {"_id": request_id, "type": "service_request", "street": STREET_ID,
           "community": "community:c1", "grid": "grid:c1-g01", "category": "street_lamp", "description": "x",
           "status": "received", "created_at": made.isoformat(), "due_close": (made + dt.timedelta(days=3)).isoformat()}
    couch.main.save(doc)
    return doc, made


def test_a_month_is_frozen_signed_and_filed_and_a_later_change_is_published_as_a_correction(
        web: TestClient, demo_loaded: Couch, firewall: Firewall) -> None:
    signer = firewall.signer
    now = dt.datetime.now(dt.UTC)
    last_month = figures.months(*figures.default_range(now, 2))[0]
    doc, made = _open_request_in(demo_loaded, last_month, "service_request:snap1")
    # Another process's hourly clock claimed the month a moment ago (issue 24): this one leaves it; a claim whose
    # process died (older than CLAIM_LAPSES) is taken over. Either way the month is filed once.
    claim_id = snapshots.snapshot_id("community:c1", last_month, 1)
    demo_loaded.main.save({"_id": claim_id, "type": "figures_snapshot", "street": STREET_ID,
                           "community": "community:c1", "month": last_month, "version": 1, "counts": {},
                           "published_at": now.isoformat(), "hash": "0" * 64, "filing_claimed_at": now.isoformat()})
    assert snapshots.freeze_due(demo_loaded, signer, now) == 0 and snapshots.load(demo_loaded, claim_id) is None
    now += filing.CLAIM_LAPSES
    assert snapshots.freeze_due(demo_loaded, signer, now) == 1  # community 1's month; community 2 had nothing
    assert snapshots.freeze_due(demo_loaded, signer, now) == 0  # unchanged: nothing published twice
    assert [e["target"] for e in filing.iter_entries(demo_loaded, "community:c1")
            if e["action"] == "figures_published"] == [claim_id]
    first, = snapshots.versions(demo_loaded, "community:c1", last_month)
    assert first["counts"]["open"] == 1 and snapshots.signed(signer.key.public_key(), first)
    entry = demo_loaded.main.get(f"audit_entry:c1:{first['filed_seq']:012d}")
    assert entry["action"] == "figures_published" and entry["purpose"] == f"sha256:{first['hash']}"
    # Closed late: the month's figures change, and a new version says it corrects the first.
    stored = demo_loaded.main.get(doc["_id"])
    demo_loaded.main.save({**stored, "status": "closed", "resolved_at": (made + dt.timedelta(days=9)).isoformat()})
    assert snapshots.freeze_due(demo_loaded, signer, now) == 1
    _, second = snapshots.versions(demo_loaded, "community:c1", last_month)
    assert second["corrects"] == first["_id"] and second["version"] == 2 and second["counts"]["closed"] == 1
    assert demo_loaded.main.get(first["_id"])["hash"] == first["hash"]  # the first version kept as it was
    tampered = {**second, "counts": {**second["counts"], "closed_on_time": 1}}
    assert not snapshots.signed(signer.key.public_key(), tampered)
    web.cookies.clear()  # public: nobody signed in
    page = web.get("/figures")
    assert page.status_code == 200
    row = page.text.split(f'id="{second["_id"].replace(":", "-")}"')[1].split("</tr>")[0]
    assert "更正</strong> 更正第 1 版" in row and "已办结 0 → 1" in row and "未办结 1 → 0" in row
    published = web.get("/figures.json").json()
    assert [s["version"] for s in published["snapshots"]] == [2, 1] and published["signed_by"]


def test_the_supervision_figures_are_frozen_signed_and_added_to_a_month_published_without_them(
        web: TestClient, demo_loaded: Couch, firewall: Firewall) -> None:
    """Closures confirmed fixed, mediation success and the survey's response go into each month's snapshot, under
    its hash and signature; a month published before they were (counts only) gets a version that adds them, which
    the public page says is no correction."""
    signer, now = firewall.signer, dt.datetime.now(dt.UTC)
    before, last = figures.months(*figures.default_range(now, 3))[:2]
    for month, request_id in ((before, "service_request:sup1"), (last, "service_request:sup2")):
        _open_request_in(demo_loaded, month, request_id)
    figures_cells.catch_up(demo_loaded)
    c1 = demo_loaded.main.get("community:c1")
    first = snapshots.freeze(demo_loaded, signer, c1, last, now)
    assert first is not None and set(first["supervision"]) == {
        "kpi_confirmed_closure", "kpi_mediation_success", "kpi_survey_response_rate"}
    assert snapshots.signed(signer.key.public_key(), first)
    for key in first["supervision"]:  # a figure changed after signing breaks it
        n, d = first["supervision"][key]
        assert not snapshots.signed(signer.key.public_key(), {**first, "supervision": {
            **first["supervision"], key: [n + 1, d + 1]}}), key
    # A month as published before: counts only, their hash filed and signed.
    counts = figures.totals(demo_loaded, figures.Scope("community:c1", "", before, before)).counts
    digest = snapshots.content_hash("community:c1", before, counts)
    old = {"_id": snapshots.snapshot_id("community:c1", before, 1), "type": "figures_snapshot", "street": STREET_ID,
           "community": "community:c1", "month": before, "version": 1, "counts": counts, "hash": digest,
           "published_at": now.isoformat()}
    old["filed_seq"], old["signature"] = filing.file_published(
        demo_loaded, signer, action=filing.FIGURES_PUBLISHED, street=STREET_ID, community="community:c1",
        actor=snapshots.ACTOR, target=old["_id"], content_hash=digest, at=now)
    demo_loaded.main.save(old)
    assert snapshots.signed(signer.key.public_key(), old)  # as it was signed
    added = snapshots.freeze(demo_loaded, signer, c1, before, now)
    assert added is not None and added["adds_supervision"] and added["corrects"] == old["_id"]
    assert added["counts"] == counts and snapshots.signed(signer.key.public_key(), added)
    assert snapshots.freeze(demo_loaded, signer, c1, before, now) is None  # and then nothing twice
    web.cookies.clear()
    row = web.get("/figures").text.split(f'id="{added["_id"].replace(":", "-")}"')[1].split("</tr>")[0]
    assert "补充公示第 1 版的监督指标" in row and "更正</strong>" not in row and "居民确认解决率" in row
    old_row = web.get("/figures").text.split(f'id="{old["_id"].replace(":", "-")}"')[1].split("</tr>")[0]
    assert "当时未公示" in old_row
    assert {s["_id"]: s.get("supervision") for s in web.get("/figures.json").json()["snapshots"]}[
        added["_id"]] == added["supervision"]


def test_a_change_to_a_month_published_long_ago_is_published_as_a_correction(demo_loaded: Couch,
                                                                                firewall: Firewall) -> None:
    """However old the month (here seven months back, beyond the months looked at again though unpublished)."""
    now = dt.datetime.now(dt.UTC)
    old_month = figures.months(*figures.default_range(now, 8))[0]
    doc, made = _open_request_in(demo_loaded, old_month, "service_request:old1")
    figures_cells.catch_up(demo_loaded)
    first = snapshots.freeze(demo_loaded, firewall.signer, demo_loaded.main.get("community:c1"), old_month, now)
    assert first is not None and first["counts"]["open"] == 1
    assert snapshots.freeze_due(demo_loaded, firewall.signer, now) == 0  # unchanged
    stored = demo_loaded.main.get(doc["_id"])
    demo_loaded.main.save({**stored, "status": "closed", "resolved_at": (made + dt.timedelta(days=2)).isoformat()})
    assert snapshots.freeze_due(demo_loaded, firewall.signer, now) == 1
    _, second = snapshots.versions(demo_loaded, "community:c1", old_month)
    assert second["corrects"] == first["_id"] and second["counts"]["closed"] == 1
