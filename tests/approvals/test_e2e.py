"""End to end through the simulator on all three platforms: chat command → confirm card →
submit → card to the manager → approve → card to the VP → approve → requester told; reject
with a reason (WeCom: reason buttons; Feishu/DingTalk: the form); duplicate taps."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from simulator.demo import STREAMED, start_demo
from simulator.server import FEISHU_PATH

pytestmark = pytest.mark.dates  # expectations relative to today: see tests/conftest.py

PLATFORMS = ["wecom", "dingtalk", "feishu"]
EXT = {"wecom": "{}", "dingtalk": "ding_{}", "feishu": "ou_{}"}


@pytest.fixture(params=["webhook", "stream"])
async def stack(tmp_path, request):
    s = await start_demo("127.0.0.1", 0, tmp_path / "demo", transport=request.param)
    async with aiohttp.ClientSession(s.sim.url) as http:
        s.http = http
        yield s
    await s.stop()


async def bot_msgs(stack, platform, user):
    async with stack.http.get("/demo/api/messages",
                              params={"platform": platform, "user": user}) as r:
        assert r.status == 200, await r.text()
        data = await r.json()
    return [m for m in data["messages"] if m["from"] == "bot"], data["toasts"]


async def wait_for(stack, platform, user, pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        msgs, _ = await bot_msgs(stack, platform, user)
        found = pred(msgs)
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; {user} has: {[_brief(m) for m in msgs]}")
        await asyncio.sleep(0.05)


def _brief(m):
    c = m.get("card") or {}
    return (m["kind"], m.get("text", "")[:80], c.get("title"), c.get("status"),
            [b["text"] for b in c.get("buttons", [])])


def card_with(title_part, *, buttons=None, status_part=None):
    def pred(msgs):
        for m in reversed(msgs):
            c = m.get("card")
            if not c or title_part not in c.get("title", ""):
                continue
            if buttons is not None and [b["text"].split(" /")[0] for b in c["buttons"]
                                        ][:len(buttons)] != buttons:
                continue
            if status_part is not None and status_part not in str(c):
                continue
            return m
        return None
    return pred


def text_with(part):
    def pred(msgs):
        return next((m for m in msgs if part in (m.get("text") or "")), None)
    return pred


def shows(*parts):
    """A message (card, or a card WeCom fell back to text for) showing every part."""
    def pred(msgs):
        return next((m for m in reversed(msgs)
                     if all(p in str(m.get("card") or "") + (m.get("text") or "")
                            for p in parts)), None)
    return pred


async def post(stack, path, body):
    async with stack.http.post(path, json=body) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def say(stack, platform, user, text):
    res = await post(stack, "/demo/api/say", {"platform": platform, "user": user, "text": text})
    assert res["status"] == 200, res


async def tap(stack, platform, user, card, button):
    res = await post(stack, "/demo/api/tap", {"platform": platform, "user": user,
                                               "card": card["id"], "button": button})
    assert res["status"] == 200, res
    return res


async def raw_tap(stack, platform, user, card, button):
    """Tap a button of a card as it *was* (an old card, a double tap, a forwarded card)."""
    ext = EXT[platform].format(user)
    return await stack.sim.view.send_tap(platform, stack.sim.fakes[platform], stack.bot_url,
                                         ext, card["id"], card["card"],
                                         card["card"]["buttons"][button])


def need(stack, platform):
    if platform not in (stack.sim.bot_platforms or []):
        pytest.skip(f"{platform} not available")
    if stack.transport == "stream" and platform not in STREAMED:
        pytest.skip(f"{platform} has no long connection in the demo")


async def submit_quote(stack, platform, amount, note="年度框架"):
    await say(stack, platform, "zhangsan", f"报价 华东精密 {amount} 备注 {note}")
    confirm = await wait_for(stack, platform, "zhangsan",
                             card_with("确认报价", buttons=["提交", "取消"]))
    assert "华东精密" in str(confirm["card"]) and "李经理" in str(confirm["card"])
    await tap(stack, platform, "zhangsan", confirm, 0)
    await wait_for(stack, platform, "zhangsan", shows("已提交", "等待 李经理"))
    return confirm


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_quote_manager_then_vp_then_requester_told(stack, platform):
    need(stack, platform)
    await submit_quote(stack, platform, 86000)

    card = await wait_for(stack, platform, "lijingli",
                          card_with("报价审批", buttons=["同意", "驳回"]))
    shown = str(card["card"])
    assert "张三" in shown and "86,000" in shown and "华东精密" in shown
    res = await tap(stack, platform, "lijingli", card, 0)
    if platform == "feishu":
        assert "已同意" in res["toast"]["text"]
    (mine,) = await wait_for(stack, platform, "lijingli",
                             lambda ms: [m for m in ms if m["id"] == card["id"]
                                         and "已同意 by 李经理" in str(m["card"])])
    # the tapped card is redrawn with the chain's true state, its buttons gone
    assert "李经理（经理）✅" in str(mine["card"]) and "⏳" in str(mine["card"])
    assert not mine["card"]["buttons"]
    await wait_for(stack, platform, "zhangsan", text_with("等待 王总 审批"))

    vp = await wait_for(stack, platform, "wangzong",
                        card_with("报价审批", buttons=["同意", "驳回"]))
    assert "李经理（经理）✅" in str(vp["card"])
    await tap(stack, platform, "wangzong", vp, 0)
    await wait_for(stack, platform, "wangzong",
                   lambda ms: [m for m in ms if m["id"] == vp["id"]
                               and "已同意 by 王总" in str(m["card"])])
    await wait_for(stack, platform, "zhangsan", shows("你的报价申请", "已批准"))

    # a second tap on the manager's old card: nothing changes, politely
    status, _body, toast = await raw_tap(stack, platform, "lijingli", card, 0)
    assert status == 200
    if platform == "feishu":
        assert "已处理" in toast["text"]

    await say(stack, platform, "zhangsan", "我的申请")
    await wait_for(stack, platform, "zhangsan", shows("我的申请", "已批准"))


async def _reject_with_form(stack, platform, user, card, form):
    """Feishu/DingTalk draw the reason form; tap its submit button with the form filled."""
    c = card["card"]
    button = next(b for b in c["buttons"] if "确认驳回" in b["text"])
    ext = EXT[platform].format(user)
    ref = c.get("ref") or {}
    if platform == "feishu":
        reply = await stack.sim.feishu.tap_card(stack.bot_url + FEISHU_PATH, ext,
                                                button["value"],
                                                ref.get("message_id", card["id"]),
                                                form_value=form)
        assert reply.status == 200
    else:
        value = button["value"]
        status, _ = await stack.sim.dingtalk.tap_card(
            stack.bot_url, ext, ref.get("out_track_id", card["id"]), value["action"],
            action_id=value.get("actionId", "btn_0"), form=form)
        assert status == 200


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_reject_with_reason(stack, platform):
    need(stack, platform)
    await submit_quote(stack, platform, 30000, note="小单")
    card = await wait_for(stack, platform, "lijingli",
                          card_with("报价审批", buttons=["同意", "驳回"]))
    await tap(stack, platform, "lijingli", card, 1)  # 驳回 → the card asks why
    form = await wait_for(stack, platform, "lijingli",
                          lambda ms: next((m for m in ms if m["id"] == card["id"]
                                           and "驳回原因" in str(m["card"])
                                           or m["id"] == card["id"]
                                           and "折扣过大" in str(m["card"])), None))
    if platform == "wecom":  # no inputs: one button per reason
        names = [b["text"] for b in form["card"]["buttons"]]
        await tap(stack, platform, "lijingli", form, names.index("折扣过大"))
        why = "折扣过大"
    else:
        await _reject_with_form(stack, platform, "lijingli", form,
                                {"reason": "0", "reason_text": "低于成本"})
        why = "价格过低：低于成本"
    await wait_for(stack, platform, "lijingli",
                   lambda ms: [m for m in ms if m["id"] == card["id"]
                               and "已驳回 by 李经理" in str(m["card"])])
    await wait_for(stack, platform, "zhangsan",
                   shows("你的报价申请", why))


@pytest.mark.parametrize("platform", ["feishu", "wecom"])
async def test_outsider_and_requester_cannot_decide(stack, platform):
    need(stack, platform)
    await submit_quote(stack, platform, 20000)
    card = await wait_for(stack, platform, "lijingli",
                          card_with("报价审批", buttons=["同意", "驳回"]))
    # 李四 presses the same button token (a forwarded card), 张三 too: refused, nothing changes
    # Feishu: the refusal rides in the tap's answer as a toast when the run beats the answer's
    # 60 ms budget (webhook.TOAST_WAIT_S); on a loaded machine it comes as a message instead
    status, _b, toast = await raw_tap(stack, platform, "lisi", card, 0)
    assert status == 200
    if platform == "feishu" and toast is not None:
        assert "不是当前审批人" in toast["text"]
    await wait_for(stack, platform, "lisi", text_with("不是这一步的审批人"))
    status, _b, toast = await raw_tap(stack, platform, "zhangsan", card, 0)
    assert status == 200
    if platform == "feishu" and toast is not None:
        assert "不能审批自己的申请" in toast["text"]
    elif platform == "feishu":
        await wait_for(stack, platform, "zhangsan", text_with("不能审批自己的申请"))
    await say(stack, platform, "lijingli", "待我审批")
    await wait_for(stack, platform, "lijingli", shows("待我审批"))


@pytest.mark.parametrize("platform", ["dingtalk"])
async def test_delegation_by_chat(stack, platform):
    need(stack, platform)
    await say(stack, platform, "lijingli", "委托 李四 至 12-31")
    await wait_for(stack, platform, "lijingli", shows("已设置委托"))
    await submit_quote(stack, platform, 20000)
    card = await wait_for(stack, platform, "lisi", card_with("报价审批", buttons=["同意"]))
    await tap(stack, platform, "lisi", card, 0)
    await wait_for(stack, platform, "zhangsan", shows("你的报价申请", "已批准"))
    mgr = await wait_for(stack, platform, "lijingli", card_with("报价审批"))
    await wait_for(stack, platform, "lijingli",
                   lambda ms: [m for m in ms if m["id"] == mgr["id"]
                               and "代 李经理" in str(m["card"])])


@pytest.mark.parametrize("platform", ["wecom", "feishu"])
async def test_escalation_after_timeout_with_frozen_clock(stack, platform):
    """No action for 8 working hours → the card moves to the manager's manager; the old card
    is closed, the requester is told (the scan runs with a frozen clock two days ahead)."""
    from datetime import UTC, datetime, timedelta

    from bot.app import ENGINE, OUTBOX, SETTINGS
    from jobs.approvals import scan

    need(stack, platform)
    await submit_quote(stack, platform, 20000)
    card = await wait_for(stack, platform, "lijingli",
                          card_with("报价审批", buttons=["同意", "驳回"]))
    await asyncio.sleep(0.3)  # let the outbox record the card's platform ref
    app = stack.runner.app
    # 11:00 Shanghai on the second work day after today: at least one whole work day
    # (9 working hours ≥ the 8 of the rules) lies between, whatever day today is
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Asia/Shanghai")
    day, n = datetime.now(UTC).astimezone(tz).date(), 0
    while n < 2:
        day += timedelta(days=1)
        n += day.weekday() < 5
    frozen = datetime(day.year, day.month, day.day, 11, 0, tzinfo=tz).astimezone(UTC)
    res = await scan(app[ENGINE], app[SETTINGS], app[SETTINGS].secret(), frozen)
    assert res["escalated"] == 1, res
    app[OUTBOX].wake()
    vp = await wait_for(stack, platform, "wangzong",
                        card_with("报价审批", buttons=["同意", "驳回"]))
    await wait_for(stack, platform, "zhangsan", text_with("已超时，转交 王总"))
    await wait_for(stack, platform, "lijingli", text_with("已转交 王总"))
    # the page cannot tie a send-time response_code to its card (the AI bot cannot update a
    # card outside a tap's 5 s: it sends the new state as a new card)
    if platform == "wecom" and stack.transport == "webhook":
        deadline = time.monotonic() + 10
        while not [c for c in stack.sim.recorder.of("wecom", "update_card")
                   if "转交" in str(c.body) and (c.result or {}).get("errcode") == 0]:
            assert time.monotonic() < deadline, "old card not updated"
            await asyncio.sleep(0.05)
    elif platform == "wecom":  # the AI bot: the card's new state as a new message
        await wait_for(stack, platform, "lijingli", text_with("【报价审批"))
    else:
        await wait_for(stack, platform, "lijingli",
                       lambda ms: [m for m in ms if m["id"] == card["id"] and m["updated"]
                                   and "转交" in str(m["card"])])
    # the old card is stale; the VP decides
    status, _b, toast = await raw_tap(stack, platform, "lijingli", card, 0)
    if platform == "feishu":
        assert "已处理" in toast["text"]
    await tap(stack, platform, "wangzong", vp, 0)
    await wait_for(stack, platform, "zhangsan", shows("你的报价申请", "已批准"))


async def test_admin_edits_rules_new_requests_follow(stack):
    platform = "feishu"
    need(stack, platform)
    await say(stack, platform, "zhangsan", '审批规则 {"remind_after_h": 1}')
    await wait_for(stack, platform, "zhangsan", text_with("只有管理员"))
    await say(stack, platform, "admin", '审批规则 {"chains": [{"steps": ["manager", "vp"]}]}')
    await wait_for(stack, platform, "admin", shows("审批规则 v1", "已保存"))
    await say(stack, platform, "admin", '审批规则 {"chains": [{"steps": ["ceo"]}]}')
    await wait_for(stack, platform, "admin", text_with("规则无效"))
    await say(stack, platform, "zhangsan", "报价 华东精密 1000")
    await wait_for(stack, platform, "zhangsan", shows("确认报价", "李经理", "王总"))


@pytest.mark.parametrize("platform", ["feishu", "wecom"])
async def test_start_from_a_card(stack, platform):
    need(stack, platform)
    await say(stack, platform, "zhangsan", "审批")
    form = await wait_for(stack, platform, "zhangsan", card_with("发起审批"))
    if platform == "feishu":  # the form is drawn: fill it in and press 下一步
        button = next(b for b in form["card"]["buttons"] if "下一步" in b["text"])
        reply = await stack.sim.feishu.tap_card(
            stack.bot_url + FEISHU_PATH, "ou_zhangsan", button["value"], form["id"],
            form_value={"kind": "quote", "customer": "华东精密", "amount": "86000",
                        "note": "来自卡片"})
        assert reply.status == 200
        await wait_for(stack, platform, "zhangsan",
                       shows("确认报价", "86,000", "来自卡片", "王总"))
    else:  # WeCom: the kinds are buttons; the tap answers with the chat syntax
        names = [b["text"] for b in form["card"]["buttons"]]
        await tap(stack, platform, "zhangsan", form, names.index("报价 / quo…")
                  if "报价 / quo…" in names else 0)
        await wait_for(stack, platform, "zhangsan", text_with("用法"))


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_discount_asks_which_deal(stack, platform):
    """华东精密 has two open deals: a discount asks which, the pick decides the amount; one
    deal needs no question; no open deal says so."""
    need(stack, platform)
    await say(stack, platform, "zhangsan", "折扣 华东精密 10% 备注 年底促销")
    which = await wait_for(stack, platform, "zhangsan", card_with("折扣哪个商机"))
    names = [b["text"] for b in which["card"]["buttons"]]
    assert len(names) == 2 and any("自动化产线改造" in n for n in names), names
    pick = next(i for i, n in enumerate(names) if "自动化产线改造" in n)
    await tap(stack, platform, "zhangsan", which, pick)
    confirm = await wait_for(stack, platform, "zhangsan", card_with("确认折扣"))
    assert "680,000" in str(confirm["card"]) and "10" in str(confirm["card"])
    assert "1,200,000" not in str(confirm["card"])
    await say(stack, platform, "zhangsan", "折扣 西子智能 5%")  # one open deal: no question
    one = await wait_for(stack, platform, "zhangsan",
                         lambda ms: [m for m in ms if m.get("card") and "确认折扣" in
                                     m["card"].get("title", "") and "320,000" in str(m["card"])])
    assert one
    await say(stack, platform, "zhangsan", "折扣 珠江食品 5%")  # its only deal was lost
    await wait_for(stack, platform, "zhangsan", text_with("没有进行中的商机"))
