"""In a real browser (headless Chromium, phone-sized): 李经理 opens the approvals page, taps
Approve on a request 张三 filed in the chat, sees it leave 待我审批 — and the card in the
simulated chat says 已同意 by 李经理; then 王总 rejects with a reason and 张三 is told."""

from __future__ import annotations

from tests.webapp.conftest import browser_login, shot
from tests.webapp.test_approver import approver_card, card_says, file_quote, shows, wait_for


async def test_approve_from_the_page(web, browser):
    platform = next(p for p in ("feishu", "dingtalk", "wecom")
                    if p in (web.sim.bot_platforms or []))
    rid = await file_quote(web, platform)
    card = await wait_for(web, platform, "lijingli", approver_card)

    page = await browser_login(browser, web.bot_url, "lijingli")
    await page.goto(web.bot_url + "/app/approvals")
    row = page.locator(f'#pending li[data-request="{rid}"]')
    await row.wait_for()
    assert "华东精密" in await row.inner_text()
    await shot(page, "approver-pending")

    await row.locator('button[data-action="approve"]').click()
    await page.wait_for_url(web.bot_url + "/app/approvals?flash=approved")
    assert "已同意" in await page.locator(".flash").inner_text()
    assert await page.locator(f'#pending li[data-request="{rid}"]').count() == 0
    done = page.locator(f'#done li[data-request="{rid}"]')  # moved to 我已处理
    assert "已同意" in await done.inner_text() and "审批中" in await done.inner_text()
    await shot(page, "approver-done")

    await page.goto(web.bot_url + f"/app/approvals/{rid}")
    first = page.locator("#steps tbody tr").first
    assert "approved" in await first.inner_text() and "李经理" in await first.inner_text()
    await shot(page, "approver-detail")

    # the manager's card in the chat was updated in place, the VP got theirs
    await card_says(web, platform, "lijingli", card, "已同意 by 李经理")
    await wait_for(web, platform, "wangzong", approver_card)
    assert web.sql("SELECT state FROM approval_steps WHERE request_id = :r ORDER BY seq",
                   r=rid) == [("approved",), ("pending",)]
    await page.context.close()

    # 王总 rejects on the page: the form opens, a reason is picked, 张三 is told why
    vp = await browser_login(browser, web.bot_url, "wangzong")
    await vp.goto(web.bot_url + "/app/approvals")
    row = vp.locator(f'#pending li[data-request="{rid}"]')
    await row.locator('[data-action="reject-open"]').click()
    await row.locator('select[name="reason"]').select_option(label="价格过低 / price too low")
    await row.locator('input[name="reason_text"]').fill("请重新核价")
    await shot(vp, "approver-reject-form")
    await row.locator('button[data-action="reject"]').click()
    await vp.wait_for_url(web.bot_url + "/app/approvals?flash=rejected")
    assert web.sql("SELECT state FROM approval_requests WHERE id = :r", r=rid) == [("rejected",)]
    await wait_for(web, platform, "zhangsan", shows("已驳回", "价格过低：请重新核价"))
    await vp.context.close()
