"""``预测`` / ``forecast`` in chat, end to end through the simulator on all three platforms
(demo stack: simulator + bot, real signed callbacks, real card taps): a rep sets a deal's
forecast category by customer name and the DB and the reply card say so; two open deals of
one customer → a card with a button per deal, and the tapped one changes; another rep's deal
is refused; an unknown category gets the usage; ``预测`` alone shows my forecast; ``预计成交``
sets the expected close date through the deal history."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from sqlalchemy import text

from simulator.demo import start_demo
from storage.db import sync_engine

PLATFORMS = ["wecom", "dingtalk", "feishu"]


@pytest.fixture
async def stack(tmp_path):
    s = await start_demo("127.0.0.1", 0, tmp_path / "demo", transport="webhook")
    async with aiohttp.ClientSession(s.sim.url) as http:
        s.http = http
        yield s
    await s.stop()


def need(stack, platform):
    if platform not in (stack.sim.bot_platforms or []):
        pytest.skip(f"{platform} not available")


async def post(stack, path, body):
    async with stack.http.post(path, json=body) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def say(stack, platform, user, words):
    res = await post(stack, "/demo/api/say", {"platform": platform, "user": user,
                                               "text": words})
    assert res["status"] == 200, res


async def bot_msgs(stack, platform, user):
    async with stack.http.get("/demo/api/messages",
                              params={"platform": platform, "user": user}) as r:
        assert r.status == 200, await r.text()
        return [m for m in (await r.json())["messages"] if m["from"] == "bot"]


def shown(m) -> str:
    return str(m.get("card") or "") + (m.get("text") or "")


async def wait_for(stack, platform, user, *parts, after=0, timeout=15.0):
    """The first bot message (after the first ``after``) showing every part."""
    deadline = time.monotonic() + timeout
    while True:
        msgs = (await bot_msgs(stack, platform, user))[after:]
        found = next((m for m in msgs if all(p in shown(m) for p in parts)), None)
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; {user} has: {[shown(m)[:200] for m in msgs]}")
        await asyncio.sleep(0.05)


def sql(stack, q: str, **p) -> list:
    eng = sync_engine(stack.database_url)
    try:
        with eng.connect() as conn:
            return conn.execute(text(q), p).all()
    finally:
        eng.dispose()


def category(stack, title: str) -> str:
    return sql(stack, "SELECT forecast_category FROM deals WHERE title = :t", t=title)[0][0]


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_forecast_command_sets_the_category(stack, platform):
    need(stack, platform)
    assert category(stack, "智能仓储试点") == "pipeline"
    await say(stack, platform, "zhangsan", "预测 西子智能 commit")
    card = await wait_for(stack, platform, "zhangsan", "预测已更新")
    assert category(stack, "智能仓储试点") == "commit"
    body = shown(card)
    assert "智能仓储试点" in body and "管道 pipeline → 承诺 commit" in body
    assert "本月预测" in body and "概率" in body
    (row,) = sql(stack, "SELECT entity, detail FROM audit_log WHERE action = 'deal.forecast'")
    assert row[0] == "deal" and "commit" in str(row[1])

    # two open deals of 华东精密: a card with a button per deal; the tapped one changes
    n = len(await bot_msgs(stack, platform, "zhangsan"))
    await say(stack, platform, "zhangsan", "forecast 华东精密 best case")
    pick = await wait_for(stack, platform, "zhangsan", "选择商机", after=n)
    labels = [b["text"] for b in pick["card"]["buttons"]]
    assert len(labels) == 2 and any("自动化产线改造" in b for b in labels)
    res = await post(stack, "/demo/api/tap", {
        "platform": platform, "user": "zhangsan", "card": pick["id"],
        "button": next(i for i, b in enumerate(labels) if "自动化产线改造" in b)})
    assert res["status"] == 200, res
    await wait_for(stack, platform, "zhangsan", "管道 pipeline → 乐观 best case", after=n)
    assert category(stack, "自动化产线改造") == "best_case"
    assert category(stack, "数控机床配件年度框架") == "pipeline"


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_refused_unknown_category_own_forecast_and_close_date(stack, platform):
    need(stack, platform)
    # 张三's customer, named by 赵六 (a rep of another team): not theirs to change
    await say(stack, platform, "zhaoliu", "预测 西子智能 承诺")
    await wait_for(stack, platform, "zhaoliu", "No open deal matches")
    assert category(stack, "智能仓储试点") == "pipeline"

    await say(stack, platform, "zhangsan", "预测 西子智能 maybe")
    await wait_for(stack, platform, "zhangsan", "Unknown category", "承诺 commit")

    await say(stack, platform, "zhangsan", "预计成交 西子智能 2027-03-20")
    await wait_for(stack, platform, "zhangsan", "— → 2027-03-20")
    assert sql(stack, "SELECT h.new, h.source FROM deal_history h JOIN deals d "
                      "ON d.id = h.deal_id WHERE d.title = '智能仓储试点' "
                      "AND h.field = 'expected_close'") == [("2027-03-20", "chat")]

    await say(stack, platform, "zhangsan", "预测")
    await wait_for(stack, platform, "zhangsan", "我的预测", "下月 Next month", "Won")
