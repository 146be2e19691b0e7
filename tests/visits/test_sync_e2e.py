"""One-tap sync end to end on each platform: the simulator posts real signed callbacks, the
bot answers through the fake platform APIs, taps come back as real card callbacks."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from sqlalchemy import text

from simulator.demo import start_demo
from storage.db import sync_engine

pytestmark = pytest.mark.dates  # expectations relative to today: see tests/conftest.py

PLATFORMS = ["wecom", "dingtalk", "feishu"]


@pytest.fixture
async def stack(tmp_path):
    s = await start_demo("127.0.0.1", 0, tmp_path / "demo")
    async with aiohttp.ClientSession(s.sim.url) as http:
        s.http = http
        yield s
    await s.stop()


async def post(stack, path, body):
    async with stack.http.post(path, json=body) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def wait_for(stack, platform, user, pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        async with stack.http.get("/demo/api/messages",
                                  params={"platform": platform, "user": user}) as r:
            msgs = (await r.json())["messages"]
        found = pred([m for m in msgs if m["from"] == "bot"])
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; messages: {msgs}")
        await asyncio.sleep(0.05)


def visits(stack) -> list[tuple]:
    eng = sync_engine(stack.database_url)
    try:
        with eng.connect() as conn:
            return conn.execute(text(
                "SELECT v.source, c.name, v.deal_id FROM visits v"
                " JOIN customers c ON c.id = v.customer_id")).all()
    finally:
        eng.dispose()


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_chat_sync_save(stack, platform):
    if platform not in (stack.sim.bot_platforms or []):
        pytest.skip(f"{platform} not available")
    user = "zhangsan"
    for line in ("今天拜访了华东精密，周工在", "聊了年度框架，下周二再去", "同步"):
        res = await post(stack, "/demo/api/say", {"platform": platform, "user": user,
                                                   "text": line})
        assert res["status"] == 200, res

    def draft(bot):
        return [m for m in bot if m["kind"] == "card" and "华东精密零部件有限公司" in str(m)
                and "聊天同步" in str(m)]  # (each note also got its "记为拜访？" card)

    (card,) = await wait_for(stack, platform, user, draft)
    assert "今天拜访了华东精密" in str(card["card"])
    assert card["card"]["buttons"][0]["text"].startswith("保存")
    original = dict(card["card"])

    tap = await post(stack, "/demo/api/tap", {"platform": platform, "user": user,
                                               "card": card["id"], "button": 0})
    assert tap["status"] == 200, tap
    if platform == "feishu":
        assert "已保存" in tap["toast"]["text"], tap

    def saved(bot):
        return [m for m in bot if m["id"] == card["id"] and m["updated"]
                and "已保存" in str(m["card"])]

    await wait_for(stack, platform, user, saved)
    assert visits(stack) == [("chat_sync", "华东精密零部件有限公司", visits(stack)[0][2])]
    assert visits(stack)[0][2] is not None  # linked to the open deal

    # the same Save again (a double tap on the original card): answered, nothing written
    view = stack.sim.view
    fake, ext = view._who(platform, user)
    status, _body, toast = await view.send_tap(platform, fake, stack.bot_url, ext, card["id"],
                                               original, original["buttons"][0])
    assert status == 200
    if platform == "feishu":
        assert toast and "已处理" in toast["text"], toast
    await asyncio.sleep(0.3)
    assert len(visits(stack)) == 1


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_sync_without_customer(stack, platform):
    if platform not in (stack.sim.bot_platforms or []):
        pytest.skip(f"{platform} not available")
    for line in ("今天天气不错", "sync"):
        await post(stack, "/demo/api/say", {"platform": platform, "user": "lisi", "text": line})
    await wait_for(stack, platform, "lisi",
                   lambda bot: [m for m in bot if "没有提到客户" in m["text"]])
    assert visits(stack) == []
