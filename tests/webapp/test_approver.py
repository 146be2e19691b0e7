"""Approver pages against the running demo stack: a request filed in the chat is decided on the
page and the cards follow (the approver's card updated in place, the next approver's card, the
requester told); a tap in the chat shows on the page; who may act or look; double submits,
stale pages and CSRF-less posts change nothing."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import date, timedelta

import aiohttp
import pytest

from tests.webapp.conftest import person

pytestmark = pytest.mark.dates  # expectations relative to today: see tests/conftest.py

PLATFORMS = ["wecom", "dingtalk", "feishu"]


def need(web, platform: str) -> None:
    if platform not in (web.sim.bot_platforms or []):
        pytest.skip(f"{platform} not mounted")


async def demo(web, method: str, path: str, **kw):
    async with aiohttp.ClientSession(web.sim.url) as http, \
            http.request(method, path, **kw) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def bot_msgs(web, platform: str, user: str) -> list[dict]:
    data = await demo(web, "GET", "/demo/api/messages",
                      params={"platform": platform, "user": user})
    return [m for m in data["messages"] if m["from"] == "bot"]


async def wait_for(web, platform: str, user: str, pred, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        found = pred(await bot_msgs(web, platform, user))
        if found:
            return found
        if time.monotonic() > deadline:
            msgs = await bot_msgs(web, platform, user)
            raise AssertionError(f"timed out; {user} has {[str(m)[:200] for m in msgs]}")
        await asyncio.sleep(0.05)


def approver_card(msgs):
    return next((m for m in reversed(msgs) if m.get("card")
                 and "报价审批" in m["card"]["title"]
                 and [b["text"][:2] for b in m["card"]["buttons"]] == ["同意", "驳回"]), None)


def shows(*parts):
    return lambda msgs: next((m for m in reversed(msgs)
                              if all(p in str(m.get("card") or "") + (m.get("text") or "")
                                     for p in parts)), None)


async def file_quote(web, platform: str, amount: int = 86000) -> int:
    """张三 asks for a quote approval in the chat and taps Submit; the request id."""
    await demo(web, "POST", "/demo/api/say", json={
        "platform": platform, "user": "zhangsan", "text": f"报价 华东精密 {amount} 备注 年度框架"})
    confirm = await wait_for(web, platform, "zhangsan", shows("确认报价", "提交"))
    await demo(web, "POST", "/demo/api/tap", json={"platform": platform, "user": "zhangsan",
                                                    "card": confirm["id"], "button": 0})
    await wait_for(web, platform, "zhangsan", shows("已提交", "等待 李经理"))
    (rid,) = web.sql("SELECT max(id) FROM approval_requests")[0]
    return rid


async def card_says(web, platform: str, user: str, card: dict, text: str) -> None:
    """The card ``user`` got was updated in place to show ``text``."""
    if platform == "wecom":  # the update uses the response_code the card's send answered
        code = card["card"]["ref"]["response_code"]
        deadline = time.monotonic() + 10
        while not any(c.body.get("response_code") == code and text in str(c.body)
                      for c in web.sim.wecom.updates()):
            assert time.monotonic() < deadline, [c.body for c in web.sim.wecom.updates()]
            await asyncio.sleep(0.05)
    await wait_for(web, platform, user, lambda ms: [m for m in ms if m["id"] == card["id"]
                                                    and text in str(m["card"])])


def audit(web, rid: int, action: str):
    return web.sql("SELECT actor_id, platform FROM audit_log WHERE entity = 'approval_request'"
                   " AND entity_id = :r AND action = :a", r=str(rid), a=action)


def uid(web, key: str) -> int:
    return web.sql("SELECT id FROM users WHERE name = :n", n=person(key).name)[0][0]


def flash(body: str) -> str:
    m = re.search(r'<p class="flash[^"]*"[^>]*>([^<]*)</p>', body)
    return m.group(1) if m else ""


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_decide_on_page_updates_cards(web, platform):
    need(web, platform)
    rid = await file_quote(web, platform)
    mgr_card = await wait_for(web, platform, "lijingli", approver_card)

    mgr = await web.client().login("lijingli")
    page = await mgr.page("/app/approvals")
    assert f'data-request="{rid}"' in page.split('id="done"')[0]  # under 待我审批
    r = await mgr.post(f"/app/approvals/{rid}/approve", {"seq": "1", "next": "/app/approvals"})
    assert r.status == 200 and r.url.path == "/app/approvals"
    assert "已同意" in flash(await r.text())
    assert audit(web, rid, "approval.approved") == [(uid(web, "lijingli"), "web")]

    # exactly what a tap does: the manager's card, the VP's new card, the requester told
    await card_says(web, platform, "lijingli", mgr_card, "已同意 by 李经理")
    vp_card = await wait_for(web, platform, "wangzong", approver_card)
    assert "李经理（经理）✅" in str(vp_card["card"])
    await wait_for(web, platform, "zhangsan", shows("等待 王总 审批"))

    # the same form again (a stale page): politely nothing
    r = await mgr.post(f"/app/approvals/{rid}/approve", {"seq": "1"})
    assert r.status == 200 and "已处理" in flash(await r.text())
    assert len(audit(web, rid, "approval.approved")) == 1

    # the VP rejects with a reason on the page
    vp = await web.client().login("wangzong")
    r = await vp.post(f"/app/approvals/{rid}/reject", {"seq": "2"})  # no reason: refused
    assert "驳回原因" in flash(await r.text())
    assert web.sql("SELECT state FROM approval_requests WHERE id = :r", r=rid) == [("pending",)]
    r = await vp.post(f"/app/approvals/{rid}/reject",
                      {"seq": "2", "reason": "1", "reason_text": "请重新报价"})
    assert "已驳回" in flash(await r.text())
    assert web.sql("SELECT state FROM approval_requests WHERE id = :r", r=rid) == [("rejected",)]
    assert web.sql("SELECT reason FROM approval_steps WHERE request_id = :r AND seq = 2",
                   r=rid) == [("折扣过大：请重新报价",)]
    await card_says(web, platform, "wangzong", vp_card, "已驳回 by 王总")
    await wait_for(web, platform, "zhangsan", shows("你的报价申请", "已驳回", "请重新报价"))

    # the requester's detail page: steps, reasons and the audit trail (via web)
    rep = await web.client().login("zhangsan")
    detail = await rep.page(f"/app/approvals/{rid}")
    assert "折扣过大：请重新报价" in detail and "approval.rejected" in detail
    assert "<td>web</td>" in detail and "华东精密" in detail
    history = await mgr.page("/app/approvals/history")
    assert f'data-request="{rid}"' in history


async def test_card_tap_shows_on_page(web):
    platform = "feishu" if "feishu" in (web.sim.bot_platforms or []) else "dingtalk"
    need(web, platform)
    rid = await file_quote(web, platform)
    card = await wait_for(web, platform, "lijingli", approver_card)
    mgr = await web.client().login("lijingli")
    assert f'data-request="{rid}"' in (await mgr.page("/app/approvals")).split('id="done"')[0]
    await demo(web, "POST", "/demo/api/tap", json={"platform": platform, "user": "lijingli",
                                                    "card": card["id"], "button": 0})
    await card_says(web, platform, "lijingli", card, "已同意 by 李经理")
    page = await mgr.page("/app/approvals")
    assert f'data-request="{rid}"' not in page.split('id="done"')[0]  # no longer pending
    assert f'data-request="{rid}"' in page.split('id="done"')[1].split('id="mine"')[0]
    vp = await web.client().login("wangzong")
    assert f'data-request="{rid}"' in (await vp.page("/app/approvals")).split('id="done"')[0]
    detail = await vp.page(f"/app/approvals/{rid}")
    assert "approval.approved" in detail and f"<td>{platform}</td>" in detail
    # the manager acts on the page they loaded before the tap: already handled
    r = await mgr.post(f"/app/approvals/{rid}/approve", {"seq": "1"})
    assert "已处理" in flash(await r.text())
    assert len(audit(web, rid, "approval.approved")) == 1


async def test_who_may_act_and_look(web):
    platform = next(p for p in PLATFORMS if p in (web.sim.bot_platforms or []))
    rid = await file_quote(web, platform)
    other_rep = await web.client().login("lisi")
    r = await other_rep.post(f"/app/approvals/{rid}/approve", {"seq": "1"})
    assert r.status == 403
    await other_rep.page(f"/app/approvals/{rid}", status=403)  # not involved
    own = await web.client().login("zhangsan")
    assert (await own.post(f"/app/approvals/{rid}/approve", {"seq": "1"})).status == 403
    vp = await web.client().login("wangzong")  # step 2 is not their turn yet
    assert (await vp.post(f"/app/approvals/{rid}/approve", {"seq": "1"})).status == 403
    await vp.page(f"/app/approvals/{rid}")  # but a VP may look
    mgr = await web.client().login("lijingli")
    await mgr.page("/app/approvals")
    r = await mgr.post(f"/app/approvals/{rid}/approve", {"seq": "1"}, csrf=False)
    assert r.status == 403
    assert (await mgr.post(f"/app/approvals/{rid}/approve", {"seq": "x"})).status == 400
    await mgr.page("/app/approvals/99999", status=404)
    await mgr.page("/app/approvals/abc", status=404)
    assert web.sql("SELECT state FROM approval_steps WHERE request_id = :r ORDER BY seq",
                   r=rid) == [("pending",), ("waiting",)]
    refused = web.sql("SELECT count(*) FROM audit_log WHERE entity_id = :r AND action = "
                      "'approval.refused' AND platform = 'web'", r=str(rid))
    assert refused == [(3,)]  # every refused attempt is on the record

    # a double submit (two clicks at once): one decision
    results = await asyncio.gather(*(mgr.post(f"/app/approvals/{rid}/approve", {"seq": "1"})
                                     for _ in range(2)))
    flashes = sorted([flash(await x.text()) for x in results])
    assert len(audit(web, rid, "approval.approved")) == 1
    assert any("已同意" in f for f in flashes) and any("已处理" in f for f in flashes), flashes


async def test_delegate_decides_on_page(web):
    """pending_for includes delegations: 李经理 delegated to 陈经理 in the chat, so 陈经理's page
    lists the request and her decision is recorded on 李经理's behalf; both cards close."""
    platform = "feishu" if "feishu" in (web.sim.bot_platforms or []) else "dingtalk"
    need(web, platform)
    until = (date.today() + timedelta(days=10)).isoformat()
    await demo(web, "POST", "/demo/api/say", json={"platform": platform, "user": "lijingli",
                                                    "text": f"委托 陈经理 至 {until}"})
    await wait_for(web, platform, "lijingli", shows("已设置委托"))
    rid = await file_quote(web, platform)
    mgr_card = await wait_for(web, platform, "lijingli", approver_card)
    copy = await wait_for(web, platform, "chenjingli", approver_card)

    delegate = await web.client().login("chenjingli")
    page = await delegate.page("/app/approvals")
    pending = page.split('id="done"')[0]
    assert f'data-request="{rid}"' in pending and "代 李经理 审批" in pending
    await delegate.page(f"/app/approvals/{rid}")  # a delegate may open it
    r = await delegate.post(f"/app/approvals/{rid}/approve", {"seq": "1"})
    assert "已同意" in flash(await r.text())
    assert audit(web, rid, "approval.approved") == [(uid(web, "chenjingli"), "web")]
    (detail,) = web.sql("SELECT detail FROM audit_log WHERE entity_id = :r AND action = "
                        "'approval.approved'", r=str(rid))[0]
    assert json.loads(detail)["on_behalf"] == uid(web, "lijingli")
    await card_says(web, platform, "lijingli", mgr_card, "已同意 by 陈经理")
    await card_says(web, platform, "chenjingli", copy, "（代 李经理）")

    # history: newest first, paged; nonsense page numbers are page 1, never a 500
    hist = await delegate.page("/app/approvals/history")
    assert f'data-request="{rid}"' not in hist  # still pending on the VP: not history yet
    for q in ("?page=abc", "?page=0", "?page=-1", "?page=99999999999"):
        await delegate.page("/app/approvals/history" + q)
    rep = await web.client().login("zhangsan")
    assert f'data-request="{rid}"' not in await rep.page("/app/approvals/history?page=2")
