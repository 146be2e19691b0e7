"""In a real (headless Chromium) browser on a phone-sized screen: a manager opens the
dashboard, taps the "proposal" bar of the funnel chart and lands on the deals behind it."""

from __future__ import annotations

import re

from tests.webapp.conftest import browser_login, shot


async def test_manager_opens_dashboard_and_drills_down(web, browser):
    page = await browser_login(browser, web.bot_url, "lijingli")
    await page.goto(web.bot_url + "/app/dashboard")
    assert await page.locator("h1").inner_text() == "团队看板 Dashboard"
    chart = page.locator("#funnel svg.chart")
    await chart.wait_for()
    box = await chart.bounding_box()
    assert box is not None and box["width"] <= 390  # the chart fits the phone's width
    await shot(page, "dashboard")
    await page.locator('#funnel svg a[href*="value=proposal"]').click()
    await page.wait_for_url(re.compile(r"/app/dashboard/list\?metric=stage&value=proposal"))
    assert "方案 proposal" in await page.locator("#drill-title").inner_text()
    rows = page.locator("tr[data-deal]")
    assert await rows.count() == 2
    body = await page.locator("main").inner_text()
    assert "自动化产线改造" in body and "SMT 产线扩容" in body  # 华东区's proposals (seed)
    assert "研发测试平台" not in body  # 华南区's proposal is not in this manager's scope
    await shot(page, "dashboard-drilldown")
    await page.click("text=返回看板")
    await page.wait_for_url(re.compile(r"/app/dashboard\?"))
    # picking dates switches the period to custom (dashboard.js) and the filter applies
    await page.fill("#from", "2026-01-01")
    await page.dispatch_event("#from", "change")
    assert await page.input_value("#period") == "custom"
    await page.fill("#to", "2026-01-31")
    await page.click("#dash-filters button[type=submit]")
    await page.wait_for_url(re.compile(r"from=2026-01-01&to=2026-01-31"))
    assert "2026-01-01 — 2026-01-31" in await page.locator("#dash-filters").inner_text()
    await page.close()
