"""The figures, read in Chromium against `linli serve` on the demo (issue 18 items 1, 2, 7, 8; PRODUCT.md: the
plan's targets as live, explained, published figures). Read-only: other journeys write meanwhile, so every
assertion is about what the figures say of themselves (their scope, formulas, targets, the months asked for).

The secretary of community 3 opens the dashboard for a range of months and a department, reads the on-time KPI
with its formula and the satisfaction target beside its baseline, looks at the trend charts and downloads the trend
CSV (Chinese headers, one row per month asked for); anyone, signed in or not, reads the published months.
Screenshots: test-output/journeys/figures/1-dashboard, 2-trends, 3-published.
"""

from __future__ import annotations

import re
import time

from playwright.sync_api import Browser, expect

from tests.browser import screenshot
from tests.journeys import JOURNEYS, Person
from tests.test_serve import Served


def test_the_secretary_reads_a_kpi_its_formula_and_target_a_trend_and_its_csv(
    journey_browser: Browser, journey_served: Served
) -> None:
    secretary = Person(journey_browser, journey_served, "shuji3", role="figures")
    secretary.go("dashboard")
    page = secretary.page
    expect(page.locator("h1")).to_have_text("服务统计")
    page.select_option("#fig-area", "community:c3")
    page.select_option("#fig-facet", label="城管中队")
    page.fill("#fig-from", "2026-03")
    page.fill("#fig-to", "2026-08")
    secretary.act("查看")
    assert re.search(r"area=community%3Ac3&facet=department%3A[^&]*urban_management&from=2026-03&to=2026-08",
                     page.url)
    expect(page.locator("#fig-period")).to_contain_text("2026-03 至 2026-08")
    expect(page.locator("#fig-period")).to_contain_text("城管中队")  # the department by name
    on_time = page.locator("#kpi-on_time")
    expect(on_time).to_contain_text("按时办结率")
    expect(on_time).to_contain_text("在办结时限内办结的诉求数 ÷ 已办结的诉求数")  # the formula
    expect(on_time).to_contain_text("期间提交并已办结的诉求")  # the denominator
    expect(on_time.locator("td").nth(0)).to_have_text(re.compile(r"^\d+\.\d%$"))  # the demo's months have cases
    expect(page.locator("#kpi-satisfaction")).to_contain_text("90.0%（起点 76.0%）")  # the plan's target
    # Counted by place alone: a department's view says so, never left blank.
    expect(page.locator("#kpi-mediation_success")).to_contain_text("按地点（街道、社区、网格）统计，不分部门或类别")
    expect(page.locator("#fig-times")).to_contain_text("真实值一定在所示区间之内")  # the percentiles' bound
    secretary.shot("1-dashboard")

    trends = page.locator("#fig-trends")
    expect(trends.locator("svg.chart")).to_have_count(3)
    expect(trends.locator("svg.chart title").first).to_have_text("每月诉求数")
    expect(trends.locator("tbody tr")).to_have_count(6)  # March to August, one row each
    trends.locator("svg.chart").nth(1).scroll_into_view_if_needed()
    secretary.shot("2-trends")
    with page.expect_download() as download:
        page.click("#trend-csv")
    text = open(download.value.path(), encoding="utf-8-sig").read()  # noqa: SIM115 - read once
    header, *months = text.strip().splitlines()
    assert header == "月份,诉求数,已办结,按时办结,按时办结率,有评价,满意率,平均评分"
    assert [m.split(",")[0] for m in months] == [f"2026-{n:02d}" for n in range(3, 9)]
    secretary.close()


def test_anyone_reads_the_published_months(journey_browser: Browser, journey_served: Served) -> None:
    context = journey_browser.new_context(locale="zh-CN")
    page = context.new_page()
    page.goto(journey_served.url + "figures")
    expect(page.locator("h1")).to_have_text("每月统计公示")
    # `linli serve` freezes the months just over once its indexes are built, a few minutes after it starts.
    deadline = time.monotonic() + 600
    while not page.locator("#snapshots").count() and time.monotonic() < deadline:
        page.reload()
    rows = page.locator("#snapshots tbody tr")
    expect(rows.first).to_be_visible()
    expect(page.locator("#snapshots")).to_contain_text("幸福社区")
    expect(rows.first.locator("td").last).to_contain_text(re.compile(r"第 \d+ 条"))  # its filing-log entry
    expect(page.locator("main")).to_contain_text("签名公钥")
    (JOURNEYS / "figures").mkdir(parents=True, exist_ok=True)
    screenshot(page, JOURNEYS / "figures" / "3-published.png")
    context.close()
