"""Accessibility of the main pages as people use them, on a phone (390 × 844), in headless Chromium:

- axe-core (node_modules/axe-core) finds no violation of impact "serious" or "critical";
- every touch target is at least 44 × 44 CSS px (the handbook's rule, WCAG 2.5.5), with WCAG's exemptions:
  a link inside a sentence ("inline": its height is the line's), and a checkbox or radio button inside its label
  ("equivalent": the label, itself checked, is the target);
- nothing scrolls sideways (WCAG 1.4.10; wide tables scroll inside their own box);

in the default display and with the header's "large text" and "high contrast" both on, in Chinese and (one page)
in English. Full-page screenshots go to test-output/screens/<page>-<mode>.png (git-ignored) for a person to
look at. One `linli serve` (tests/sync_harness.py) and one browser for the whole module.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import Browser, BrowserContext
from starlette.testclient import TestClient

from server.domain.access import Principal
from server.domain.declaration import validate
from server.security import accounts
from server.security.firewall import Firewall
from server.services import deliberation, demo, meetings
from server.services import service_requests as sr
from server.store.config import PROJECT_ROOT
from server.store.couch import Couch
from server.store.embedded_couch import EmbeddedCouch
from server.web import resident_needs
from tests.browser import DEMO_RESIDENT, PHONE, demo_site, screenshot, sign_in
from tests.street import TINY_PNG, csrf_of

AXE = PROJECT_ROOT / "node_modules" / "axe-core" / "axe.min.js"
SCREENS = PROJECT_ROOT / "test-output" / "screens"
MODES = {"default": "", "large-contrast": "large.contrast"}  # the `display` cookie (server/web/display.py)
ROUTING = ("street", "community", "grid", "household")
RESIDENT = DEMO_RESIDENT


@dataclass(frozen=True)
class Screen:
    name: str
    user: str | None  # None: not logged in
    path: str  # may name {grid}, {household}, {request}
    lang: str = "zh"


SCREENS_CHECKED = [
    Screen("login", None, "/login"),
    Screen("grid", "wangge01", "/grids/{grid}"),
    Screen("household", "wangge01", "/households/{household}"),
    Screen("household-en", "wangge01", "/households/{household}", lang="en"),
    Screen("visit-new-en", "wangge01", "/households/{household}/visits/new", lang="en"),  # a long back button
    Screen("requests", "wangge01", "/requests"),
    Screen("request-new", "wangge01", "/requests/new"),
    Screen("request", "wangge01", "/requests/{request}"),
    Screen("approvals", "shuji1", "/approvals"),
    Screen("communities", "shuji1", "/communities"),
    Screen("today", "shuji1", "/today"),
    Screen("need", "wangge01", "/needs/{need}"),
    Screen("dashboard", "shuji1", "/dashboard"),
    Screen("workbench", "bumen_urban_management", "/workbench"),
    Screen("request-department", "bumen_urban_management", "/requests/{request}"),
    Screen("my-record", "jumin1", "/"),
    Screen("alerts", "wangge01", "/alerts"),
    Screen("conflicts", "wangge01", "/conflicts"),
    Screen("staff", "shuji1", "/staff"),
    Screen("audit", "shuji1", "/audit"),
    Screen("accounts", "admin", "/accounts"),
    Screen("activate", None, "/activate"),
    Screen("resident-safety", "wangge01", "/residents/{resident}/safety"),  # elderly safety (issue 14, item 6)
    Screen("devices", "shuji1", "/devices?resident={resident}"),
    Screen("tasks-volunteer", "zhiyuan01a", "/tasks"),
    Screen("task-volunteer", "zhiyuan01a", "/tasks/{task}"),
    Screen("task-new", "wangge01", "/tasks/new?household={household}"),
    Screen("matter-vote", "jumin1", "/matters/{matter}"),  # issue 15: the ballot form
    Screen("matter-new", "shuji1", "/matters/new"),
    Screen("matter-count", "shuji1", "/matters/{matter}"),
    Screen("matter-result", None, "/matters/{result}/result"),
    Screen("offers", "zhiyuan01a", "/offers"),  # issue 17: offering help, the form
    Screen("matches", "zhiyuan01a", "/matches"),  # the demo's proposal waiting for them, its factors
    Screen("matching", "shuji1", "/matching"),  # unmatched needs with their reasons
    Screen("meetings", "jumin1", "/meetings"),  # issue 15 item 8: hearings and meetings
    Screen("meeting-new", "shuji1", "/meetings/new"),
    Screen("meeting-hearing", "shuji1", "/meetings/{hearing}"),  # opinions, attendance, envelopes, minutes' form
    Screen("meeting-resident", "jumin1", "/meetings/{hearing}"),
    Screen("meeting-minutes", "jumin1", "/meetings/{held}/minutes"),
    Screen("figures-published", None, "/figures"),  # issue 18: the published months
    Screen("survey-results", None, "/survey/results"),  # the survey's months, response rates, intervals
    Screen("survey-sample", "shuji1", "/survey/sample"),
    Screen("mediations", "wangge01", "/mediations"),
    Screen("projects", "shuji1", "/projects"),
]

# Touch targets under 44 × 44 CSS px, with the exemptions of WCAG 2.5.5 named in the module's docstring.
SMALL_TARGETS = """() => {
  const MIN = 44;
  const shown = (el) => {
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && getComputedStyle(el).visibility !== "hidden"
      && !el.closest(".visually-hidden");
  };
  const inSentence = (el) => el.tagName === "A" && el.parentElement.textContent.trim() !== el.textContent.trim();
  const choice = (el) => el && el.matches("input[type=checkbox], input[type=radio]");
  const targets = [...document.querySelectorAll("a[href], button, select, textarea, input:not([type=hidden]), label")]
    .filter((el) => el.tagName !== "LABEL" || choice(el.control))
    .filter((el) => !(choice(el) && el.labels.length))
    .filter((el) => shown(el) && !inSentence(el));
  return targets.map((el) => [el, el.getBoundingClientRect()])
    .filter(([, box]) => box.width < MIN - 0.5 || box.height < MIN - 0.5)
    .map(([el, box]) => `${el.outerHTML.slice(0, 120)}: ${box.width.toFixed(1)} × ${box.height.toFixed(1)}`);
}"""


# Signed-in pages have a sync bar that pwa/app.js shows once the service worker reports its state. Service
# workers are blocked here (pages come from the server, at once, and no replica syncs in the background; the
# offline app has its own tests), so the bar is shown with its first words, for axe and the screenshots.
SHOW_SYNC_BAR = """() => {
  const bar = document.getElementById("sync-state");
  if (bar) {
    bar.querySelector("[data-sync-text]").textContent = `${bar.dataset.online} · ${bar.dataset.never}`;
    bar.hidden = false;
  }
}"""


@dataclass
class Site:
    url: str  # ends in "/"
    places: dict[str, str]
    browser: Browser
    contexts: dict[str | None, BrowserContext] = field(default_factory=dict)

    def context(self, username: str | None) -> BrowserContext:
        """One browser context per user, logged in through the login page once."""
        if username not in self.contexts:
            # axe-core goes in as an inline script, which the pages' CSP refuses (tests/test_csp_browser.py checks
            # the pages under it); this audit is about accessibility only.
            context = self.browser.new_context(viewport=PHONE, service_workers="block", bypass_csp=True)
            if username:
                sign_in(context, self.url, username).close()
            self.contexts[username] = context
        return self.contexts[username]

    def cookies(self, context: BrowserContext, **values: str) -> None:
        """Set (or, with "", remove) cookies of the site in a context."""
        for name, value in values.items():
            context.clear_cookies(name=name)
            if value:
                context.add_cookies([{"name": name, "value": value, "url": self.url}])


def _meetings(couch: Couch, firewall: Firewall, secretary: Principal, resident: dict, matter: dict,
              now: dt.datetime) -> tuple[str, str]:
    """A hearing on the open vote with an opinion, a hidden one, attendance and envelopes that do not reconcile; a
    meeting with its minutes published. Their keys."""
    made = []
    for title in ("加装电梯听证会", "十一月联席会议"):
        new = meetings.NewMeeting(resident["community"], "hearing", title, now + dt.timedelta(days=3), "社区活动室",
                                  (("", deliberation.key_of(matter["_id"])), ("其他事项", "")))
        made.append(meetings.publish(couch, secretary, meetings.schedule(couch, secretary, new, now), now))
    jumin1 = couch.accounts.get(accounts.user_id("jumin1"))
    for text in ("支持加装，希望尽快施工", "广告：低价装修"):
        meetings.post_opinion(couch, Principal.of(jumin1), jumin1, resident, made[0], text, now)
    spam = [o for o in meetings.opinions(couch, made[0]) if "广告" in o["text"]][0]
    meetings.hide_opinion(couch, firewall.signer, secretary, made[0], spam["_id"], "与议题无关的广告", now)
    meetings.mark_present(couch, secretary, made[0], RESIDENT, True, now)
    meetings.set_envelopes(couch, secretary, couch.main.get(made[0]["_id"]), matter["_id"], 2)
    meetings.mark_present(couch, secretary, made[1], RESIDENT, True, now)
    meetings.publish_minutes(couch, secretary, couch.main.get(made[1]["_id"]), "听取意见，形成决定。",
                             ["同意加装，提交户表决", "无"], now)
    return meetings.key_of(made[0]["_id"]), meetings.key_of(made[1]["_id"])


def _prepare(couch: Couch, firewall: Firewall) -> dict[str, str]:
    """One service request, two alerts and one pending core-access request; the places the screens name."""
    now = dt.datetime.now(dt.UTC)
    resident = couch.main.get(RESIDENT)
    request = sr.create(couch, accounts.user_id("jumin1"),
                        sr.NewRequest(street=demo.STREET_ID, category="street_lamp",
                                      description="楼下路灯不亮，晚上很黑",
                                      address="幸福路3号", grid=resident["grid"],
                                      photos=(sr.Photo(TINY_PNG, "image/png"),)), now)
    for kind in ("sos", "no_water"):  # an urgent alert and an ordinary one, for the inbox's styles
        alert = {"_id": f"alert:a11y-{kind}", "type": "alert", **{k: resident[k] for k in ROUTING},
                 "resident": RESIDENT, "kind": kind, "status": "raised", "raised_at": now.isoformat(),
                 "visibility": "grid_staff"}
        validate(alert)
        couch.main.save(alert)
    worker = Principal.of(couch.accounts.get(accounts.user_id("wangge01")))
    firewall.request_access(worker, resident, ["health"], "高血压老人上门随访", 24, now)
    task = {"_id": "task:a11y", "type": "task", **{k: resident[k] for k in ROUTING}, "household": resident["household"],
            "address": couch.main.get(resident["household"])["address"], "resident": RESIDENT,
            "resident_name": resident["name"], "kind": "accompany", "due_on": now.date().isoformat(),
            "notes": "陪同去社区卫生服务中心复诊", "assigned_to": accounts.user_id("zhiyuan01a"), "status": "assigned",
            "created_by": worker.user_id, "created_at": now.isoformat()}
    validate(task)
    couch.main.save(task)
    need = resident_needs.create(couch, Principal.of(couch.accounts.get(accounts.user_id("jumin1"))), resident,
                                 "shopping", "腿脚不便，需要有人帮忙买菜", now)
    # A vote open for the resident, and one closed with its result published.
    secretary = Principal.of(couch.accounts.get(accounts.user_id("shuji1")))
    matters = [deliberation.open_matter(couch, firewall.keystore, secretary, deliberation.NewMatter(
        resident["community"], title, "", "household_assembly", "household", "households_three_quarters", (),
        now - dt.timedelta(hours=1), now + dt.timedelta(days=7)), now) for title in ("加装电梯", "楼道照明")]
    deliberation.close(couch, firewall.keystore, firewall.signer, secretary, matters[1], now)
    hearing, held = _meetings(couch, firewall, secretary, resident, matters[0], now)
    return {"hearing": hearing, "held": held,
            "grid": resident["grid"], "household": resident["household"], "resident": RESIDENT,
            "request": request["_id"].removeprefix("service_request:"), "task": "a11y",
            "need": need["_id"].removeprefix("need:"),
            "matter": deliberation.key_of(matters[0]["_id"]), "result": deliberation.key_of(matters[1]["_id"])}


@pytest.fixture(scope="module")
def site(couch_server: EmbeddedCouch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The small demo street with a resident account (tests/browser.py demo_site), its year of history (the pages
    as full as people see them: lists, charts, the demo's match proposal) and what _prepare adds."""
    places: dict[str, str] = {}
    with demo_site(couch_server.url, tmp_path_factory.mktemp("a11y"),
                   lambda couch, firewall: places.update(_prepare(couch, firewall)), history=True) as prepared:
        yield Site(prepared.url, places, prepared.browser)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("screen", SCREENS_CHECKED, ids=lambda s: s.name)
def test_page_is_accessible(site: Site, screen: Screen, mode: str) -> None:
    context = site.context(screen.user)
    site.cookies(context, display=MODES[mode], lang="" if screen.lang == "zh" else screen.lang)
    page = context.new_page()
    try:
        answer = page.goto(site.url + screen.path.format(**site.places).lstrip("/"))
        assert answer is not None and answer.status == 200, f"{screen.path}: HTTP {answer and answer.status}"
        assert page.evaluate("document.documentElement.className") == MODES[mode].replace(".", " ")
        page.evaluate(SHOW_SYNC_BAR)
        screenshot(page, SCREENS / f"{screen.name}-{mode}.png")
        page.add_script_tag(path=AXE)
        found = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
        serious = [v for v in found["violations"] if v["impact"] in ("serious", "critical")]
        assert not serious, f"{screen.name} ({mode}): axe-core finds\n" + "\n".join(
            f"- {v['id']} ({v['impact']}): {v['help']}\n" + "\n".join(
                f"    {n['target']} {n['html'][:160]}\n      {n['failureSummary']}" for n in v["nodes"][:5])
            for v in serious)
        small = page.evaluate(SMALL_TARGETS)
        assert not small, f"{screen.name} ({mode}): touch targets under 44 × 44 px:\n" + "\n".join(small)
        sideways = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert sideways <= 0, f"{screen.name} ({mode}): the page scrolls {sideways} px sideways"
    finally:
        page.close()


def test_the_header_switches_large_text_and_high_contrast_without_javascript(site: Site) -> None:
    """The two buttons are plain forms: on, both on, one off again, kept across pages (a cookie)."""
    context = site.browser.new_context(viewport=PHONE, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(site.url + "login")

        def state() -> tuple[str, str, list[str | None]]:
            buttons = page.locator("form[action='/display'] button")
            pressed = [buttons.nth(i).get_attribute("aria-pressed") for i in range(buttons.count())]
            html = page.locator("html")
            return html.get_attribute("class") or "", html.evaluate("e => getComputedStyle(e).fontSize"), pressed

        def toggle(option: str) -> None:
            with page.expect_navigation():
                page.click(f"button[value={option}]")

        assert state() == ("", "20px", ["false", "false"])
        toggle("large")
        assert state() == ("large", "24px", ["true", "false"])
        assert page.url.endswith("/login")  # back on the page the button was on
        toggle("contrast")
        assert state() == ("large contrast", "24px", ["true", "true"])
        assert page.locator("body").evaluate("e => getComputedStyle(e).color") == "rgb(0, 0, 0)"
        toggle("large")
        assert state() == ("contrast", "20px", ["false", "true"])
        assert [c["value"] for c in context.cookies() if c["name"] == "display"] == ["contrast"]
        toggle("contrast")
        assert state() == ("", "20px", ["false", "false"])
        assert not [c for c in context.cookies() if c["name"] == "display"]
    finally:
        context.close()


def test_display_preferences_are_validated(client: TestClient) -> None:
    token = csrf_of(client)
    refused = client.post("/display", data={"toggle": "huge", "csrf_token": token})
    assert refused.status_code == 400 and "“huge”不是可选项" in refused.text  # in the page's language
    assert client.post("/display", data={"toggle": "large"}).status_code == 403  # no CSRF token
    on = client.post("/display", data={"toggle": "large", "csrf_token": token},
                     headers={"referer": "http://evil.example/x"})
    assert on.status_code == 303 and on.headers["location"] == "/"  # no open redirect
    assert on.cookies["display"] == "large"
    # A hand-made cookie: only known options reach the page, in a fixed order (commas tolerated).
    client.cookies.delete("display")
    client.cookies.set("display", "contrast,<script>,large")
    page = client.get("/login").text
    assert re.search(r'<html lang="zh-CN" class="large contrast">', page)
    assert 'value="large" aria-pressed="true"' in page
