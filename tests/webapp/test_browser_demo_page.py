"""The demo chat page in a real browser (headless Debian Chromium), as a newcomer uses it on
each platform: the sample voice note → a visit card for the customer it names; the sample
storefront photo → a check-in there; an uploaded photo and audio file → the same; help lists
every command; 提醒 → an alert card whose 已跟进 redraws it; on Feishu, reject with a reason
from the card's own select and text box; the 审批 form filled on the card (DingTalk, Feishu)
or started from its option buttons (WeCom). Screenshots land in the test artifacts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.webapp.conftest import shot
from tests.webapp.test_browser_voice import clip_wav, mic_browser  # noqa: F401

pytestmark = pytest.mark.slow
PLATFORMS = ["wecom", "dingtalk", "feishu"]
SAMPLES = Path(__file__).resolve().parents[2] / "simulator" / "static" / "samples"
SLOW = 120_000  # ms: the first voice note loads the speech model


async def open_page(browser, web, platform: str, user: str):
    ctx = await browser.new_context(viewport={"width": 1100, "height": 1000}, locale="zh-CN")
    page = await ctx.new_page()
    await page.goto(web.page_url)
    await page.wait_for_selector("#platform option", state="attached")
    await page.select_option("#platform", platform)
    await page.select_option("#person", user)
    return page


async def as_person(page, user: str) -> None:
    await page.select_option("#person", user)


def card(page, text: str):
    return page.locator(".msg.bot .card").filter(has_text=text).last


async def say(page, text: str) -> None:
    await page.fill("#text", text)
    await page.click("#composer button[type=submit]")


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_newcomer_path(web, browser, platform):
    page = await open_page(browser, web, platform, "zhangsan")
    assert "示例语音" in await page.inner_text("#welcome")
    assert await page.locator(f".card.look-{platform}").count() == 0

    t0 = time.monotonic()
    await page.click("#sample-buttons button[data-sample=visit_huadong]")
    voice = card(page, "语音拜访草稿")
    await voice.wait_for(timeout=SLOW)
    took_voice = time.monotonic() - t0
    assert "华东精密零部件有限公司" in await voice.inner_text()
    assert f"look-{platform}" in (await voice.get_attribute("class") or "")

    t0 = time.monotonic()
    await page.click("#sample-buttons button[data-sample=sign_huadong]")
    await card(page, "在 华东精密零部件有限公司 签到").wait_for(timeout=SLOW)
    took_photo = time.monotonic() - t0
    await shot(page, f"demo-{platform}-samples")

    await page.set_input_files("#upload", str(SAMPLES / "sign_jinling.jpg"))
    await card(page, "在 南京金陵化工集团 签到").wait_for(timeout=SLOW)
    before = await page.locator(".msg.bot .card").filter(has_text="语音拜访草稿").count()
    await page.set_input_files("#upload", str(SAMPLES / "visit_huadong.ogg"))
    await page.wait_for_function(
        "n => [...document.querySelectorAll('.msg.bot .card')]"
        ".filter(c => c.textContent.includes('语音拜访草稿')).length > n", arg=before,
        timeout=SLOW)

    await say(page, "帮助")
    help_card = card(page, "拜访助手 FieldBot · 帮助")
    await help_card.wait_for(timeout=20_000)
    shown = await help_card.inner_text()
    for example in ("同步", "报价 华东精密 86000", "折扣", "合同", "新客户", "待我审批",
                    "我的申请", "委托", "取消委托", "审批规则", "我的拜访", "提醒", "日报"):
        assert example in shown, example

    await page.click("#alerts-now")
    alert = card(page, "商机停滞提醒")
    await alert.wait_for(timeout=20_000)
    buttons = alert.locator(".buttons button")
    n = await buttons.count()
    await buttons.first.click()
    await card(page, "✓ 已跟进").wait_for(timeout=20_000)
    assert await card(page, "✓ 已跟进").locator(".buttons button").count() < n
    await shot(page, f"demo-{platform}-alert-redrawn")
    print(f"\n{platform}: send → card, voice {took_voice:.1f} s, photo {took_photo:.1f} s")


async def test_feishu_reject_with_a_reason_on_the_card(web, browser):
    page = await open_page(browser, web, "feishu", "zhangsan")
    await say(page, "报价 华东精密 86000")
    confirm = card(page, "确认报价申请")
    await confirm.wait_for(timeout=20_000)
    await confirm.locator("button", has_text="提交").click()
    await as_person(page, "lijingli")
    approver = card(page, "报价审批")
    await approver.wait_for(timeout=20_000)
    await approver.locator("button", has_text="驳回").click()
    form = card(page, "请选择驳回原因")
    await form.wait_for(timeout=20_000)
    select = form.locator("select[data-name=reason]")
    options = await select.locator("option").all_inner_texts()
    assert len(options) >= 3  # a placeholder and the rules' reasons
    await select.select_option(index=1)
    await form.locator("textarea[data-name=reason_text]").fill("价格低于底价")
    await shot(page, "demo-feishu-reject-form")
    await form.locator("button", has_text="确认驳回").click()
    await card(page, "已驳回").wait_for(timeout=20_000)
    await as_person(page, "zhangsan")
    await card(page, "价格低于底价").wait_for(timeout=20_000)


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_the_request_form_completes(web, browser, platform):
    page = await open_page(browser, web, platform, "zhangsan")
    await say(page, "审批")
    form = card(page, "发起审批")
    await form.wait_for(timeout=20_000)
    if platform == "wecom":  # no text inputs on WeCom: the type as buttons, then the syntax
        await form.locator("button", has_text="报价").first.click()
        await page.locator(".msg.bot .bubble").filter(has_text="报价 客户").last.wait_for(
            timeout=20_000)
        await say(page, "报价 华东精密 86000")
    else:
        await form.locator("select[data-name=kind]").select_option("quote")
        await form.locator("input[data-name=customer]").fill("华东精密")
        await form.locator("input[data-name=amount]").fill("86000")
        await form.locator("button", has_text="下一步").click()
    confirm = card(page, "确认报价申请")
    await confirm.wait_for(timeout=20_000)
    assert "86,000" in await confirm.inner_text()
    await shot(page, f"demo-{platform}-request-form")


async def test_hold_to_talk_records_the_microphone(web, mic_browser, clip_wav):  # noqa: F811
    """🎙️ held down records Chromium's fake microphone (the Mandarin clip) with MediaRecorder;
    released, the WebM/Opus recording goes to the bot as a platform voice note and comes back
    as a transcript in a visit card."""
    import asyncio

    _, seconds = clip_wav
    ctx = await mic_browser.new_context(viewport={"width": 1100, "height": 1000},
                                        locale="zh-CN", permissions=["microphone"])
    page = await ctx.new_page()
    logs: list[str] = []
    page.on("console", lambda m: logs.append(m.text))
    await page.goto(web.page_url)
    await page.wait_for_selector("#platform option", state="attached")
    await page.select_option("#platform", "dingtalk")
    await page.select_option("#person", "zhangsan")
    talk = page.locator("#talk")
    box = await talk.bounding_box()
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await page.mouse.down()
    await page.wait_for_selector("#talk.recording", timeout=10_000)
    await asyncio.sleep(seconds + 0.5)
    await page.mouse.up()
    voice = card(page, "语音拜访草稿")
    try:
        await voice.wait_for(timeout=SLOW)
    except Exception:
        await shot(page, "demo-dingtalk-hold-to-talk-failed")
        raise AssertionError((await page.inner_text("#chat"), await page.inner_text("#toasts"),
                              logs)) from None
    text = await voice.inner_text()
    assert "华东精密" in text and "转写" in text
    await shot(page, "demo-dingtalk-hold-to-talk")
