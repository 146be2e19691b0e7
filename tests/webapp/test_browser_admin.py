"""In a real browser, as the admin: change the stale threshold, preview the dry run and see
the numbers change, save, and find the "rules.update" row in the audit log."""

from __future__ import annotations

from tests.webapp.conftest import browser_login, shot


async def test_admin_changes_a_threshold_previews_saves_and_audits(web, browser):
    base = web.bot_url
    page = await browser_login(browser, base, "admin")
    await page.goto(base + "/app/admin")
    await page.click("text=提醒规则 Alert rules")
    await page.wait_for_url(base + "/app/admin/rules/alerts")
    assert await page.input_value("#f-stale-yellow_days") == "20"
    await shot(page, "admin-rules")

    await page.fill("#f-stale-yellow_days", "10")
    await page.click("#preview-form")
    await page.wait_for_selector("#preview")
    stale = page.locator('#preview tr[data-rule="stale"]')
    assert await stale.locator("td.before").inner_text() == "5"
    assert await stale.locator("td.after b").inner_text() == "7"
    assert "stale: 5 → 7" in await stale.inner_text()
    assert await page.input_value("#f-stale-yellow_days") == "10"  # still the edit
    assert web.sql("SELECT count(*) FROM rules") == [(0,)]  # a preview saves nothing
    await shot(page, "admin-rules-preview")

    await page.click("#save-form")
    await page.wait_for_url(base + "/app/admin/rules/alerts?saved=1")
    assert "已保存为版本 1" in await page.inner_text("main")
    assert await page.inner_text("#current-version") == "1"
    assert web.sql("SELECT key, version FROM rules") == [("alerts", 1)]

    await page.goto(base + "/app/admin/audit?action=rules.")
    row = page.locator('#audit tr[data-action="rules.update"]')
    assert await row.count() == 1
    text = await row.inner_text()
    assert "系统管理员" in text and "stale.yellow_days: 20 → 10" in text
    await shot(page, "admin-audit")

    # a bad value is explained on the page, next to nothing saved
    await page.goto(base + "/app/admin/rules/alerts")
    await page.fill("#f-stale-red_days", "8")
    await page.click("#save-form")
    await page.wait_for_selector("#errors")
    assert "停滞红色阈值必须大于黄色阈值" in await page.inner_text("#errors")
    assert web.sql("SELECT count(*) FROM rules") == [(1,)]
    await shot(page, "admin-rules-error")

    # approval rules: raise the VP boundary and see where an 86k quote would go
    await page.goto(base + "/app/admin/rules/approvals")
    await page.fill("#f-chains-0-when-amount_lt", "100000")
    await page.fill("#f-chains-1-when-amount_gte", "100000")
    await page.select_option("#requester-form", label="张三（rep）")
    await page.click("#preview-form")
    await page.wait_for_selector("#preview")
    row = page.locator("#preview tr", has_text="报价 ¥86,000")
    assert "王总" in await row.locator("td.before").inner_text()
    assert "王总" not in await row.locator("td.after").inner_text()
    await shot(page, "admin-approvals-preview")

    await page.goto(base + "/app/admin/users")
    assert await page.locator('#users tr[data-user="张三"]').count() == 1
    await shot(page, "admin-users")
