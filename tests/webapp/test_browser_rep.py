"""A rep files a visit with a photo in a real (headless Chromium) phone-sized browser: the
sign is OCR'd, the customer is suggested, the visit is saved and listed."""

from __future__ import annotations

import json
from pathlib import Path

from tests.webapp.conftest import browser_login, shot

FIXTURES = Path(__file__).parent.parent / "media" / "fixtures"
SIGN = "sign_gps_rotated.jpg"
CUSTOMER = json.loads((FIXTURES / "signs.json").read_text(encoding="utf-8"))[SIGN]


async def test_rep_files_visit_with_photo(web, browser):
    page = await browser_login(browser, web.bot_url, "zhangsan")
    await page.goto(web.bot_url + "/app/visits/new")
    await shot(page, "rep-visit-form")
    await page.set_input_files("#photo", str(FIXTURES / SIGN))
    # progress while the OCR runs (the first call also loads the models), then the suggestion
    suggestion = page.locator("#suggested")
    await suggestion.wait_for(timeout=60_000)
    assert CUSTOMER in await suggestion.inner_text()
    assert await page.input_value("#customer_name") == CUSTOMER
    assert len(await page.input_value("#photo_ref")) == 64
    await shot(page, "rep-visit-photo-recognised")
    await page.fill("#note", "门头签到，周工在，聊了交期")
    await page.click("#save")
    await page.wait_for_url(web.bot_url + "/app/visits?saved=1")
    assert "已保存 ✓" in await page.inner_text("main")
    row = page.locator("#visits tbody tr").first
    assert CUSTOMER in await row.inner_text() and "照片" in await row.inner_text()
    await shot(page, "rep-visits-list")
    [(source, summary, evidence, user)] = web.sql(
        "SELECT v.source, v.summary, v.evidence, u.name FROM visits v "
        "JOIN users u ON u.id = v.user_id")
    assert (source, summary, user) == ("photo", "门头签到，周工在，聊了交期", "张三")
    ev = json.loads(evidence)
    assert len(ev["photo_sha256"]) == 64 and ev["ocr_text"]


async def test_rep_syncs_chat_on_the_page(web, browser):
    from tests.webapp.test_rep import say, tomorrow, wait_buffered

    text = "今天拜访了浦江机电，郑经理说明天再确认"
    await say(web, "zhangsan", text)
    await wait_buffered(web, text)
    page = await browser_login(browser, web.bot_url, "zhangsan")
    await page.goto(web.bot_url + "/app/sync")
    chat = page.locator(".sync-chat").first
    assert text in await chat.inner_text()
    assert "上海浦江机电设备有限公司" in await chat.inner_text()
    await shot(page, "rep-sync")
    await chat.locator("button[type=submit]").click()
    await page.wait_for_url(web.bot_url + "/app/visits?saved=1")
    assert "聊天同步" in await page.inner_text("#visits")
    [(source, name, follow)] = web.sql(
        "SELECT v.source, c.name, v.follow_up_on FROM visits v "
        "JOIN customers c ON c.id = v.customer_id")
    assert (source, name) == ("chat_sync", "上海浦江机电设备有限公司")
    # "明天" was offered as the follow-up date, ticked, and became a task
    assert str(follow) == tomorrow() and web.sql("SELECT due_on FROM tasks") == [(tomorrow(),)]
    await page.goto(web.bot_url + "/app/deals")
    assert "停滞" in await page.inner_text("main")  # 智能仓储试点 has been idle 25 days
    await shot(page, "rep-deals")
