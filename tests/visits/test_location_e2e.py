"""A location message in chat checks the rep's visit in, end to end: the simulator sends the
platform's real location callback (WeCom XML ``Location_X``/``Location_Y``, Feishu
``message_type: location`` with string coordinates, both GCJ-02), the bot puts it on the visit
filed minutes before and answers with the distance; "set as the customer's position" works
from the card. DingTalk's robot receives no location messages (the demo API says so)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from sqlalchemy import text

from sales.checkin import wgs84_to_gcj02
from simulator.demo import start_demo
from storage.db import sync_engine

SPOT = (31.2304, 121.4737)  # WGS-84


@pytest.fixture
async def stack(tmp_path):
    s = await start_demo("127.0.0.1", 0, tmp_path / "demo")
    async with aiohttp.ClientSession(s.sim.url) as http:
        s.http = http
        yield s
    await s.stop()


def sql(stack, q: str, **kw):
    eng = sync_engine(stack.database_url)
    try:
        with eng.begin() as conn:
            res = conn.execute(text(q), kw)
            return res.all() if res.returns_rows else None
    finally:
        eng.dispose()


async def bot_messages(stack, platform, user, pred, timeout=10.0):
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


def _visit_minutes_ago(stack, customer: str, user: str, minutes: int) -> int:
    (cid,), = sql(stack, "SELECT id FROM customers WHERE name = :n", n=customer)
    (uid,), = sql(stack, "SELECT u.id FROM users u JOIN identities i ON i.user_id = u.id "
                         "WHERE i.external_id LIKE :e LIMIT 1", e=f"%{user}%")
    at = datetime.now(UTC) - timedelta(minutes=minutes)
    sql(stack, "INSERT INTO visits (user_id, customer_id, source, summary, evidence, "
               "created_at, coord_system) VALUES (:u, :c, 'chat', '拜访', '{}', :at, '')",
        u=uid, c=cid, at=at)
    return cid


@pytest.mark.parametrize("platform", ["wecom", "feishu"])
async def test_location_message_checks_the_visit_in(stack, platform):
    if platform not in (stack.sim.bot_platforms or []):
        pytest.skip(f"{platform} not available")
    cid = _visit_minutes_ago(stack, "华东精密零部件有限公司", "zhangsan", 5)
    lat, lng = wgs84_to_gcj02(SPOT[0] + 120 / 111_195.0, SPOT[1])  # 120 m north, as GCJ-02
    async with stack.http.post("/demo/api/say", json={
            "platform": platform, "user": "zhangsan", "kind": "location", "lat": lat,
            "lng": lng, "label": "上海市人民广场"}) as r:
        assert r.status == 200 and (await r.json())["status"] == 200
    (card,) = await bot_messages(stack, platform, "zhangsan", lambda bot: [
        m for m in bot if "已签到" in str(m)])
    assert "客户还没有坐标" in str(card)  # the seed's customers have none yet
    (row,) = sql(stack, "SELECT lat, lng, coord_system FROM visits WHERE customer_id = :c "
                        "AND lat IS NOT NULL", c=cid)
    assert tuple(row) == (pytest.approx(lat), pytest.approx(lng), "gcj02")
    # "set as the customer's position": the customer now has the check-in's coordinates
    async with stack.http.post("/demo/api/tap", json={"platform": platform, "user": "zhangsan",
                                                      "card": card["id"], "button": 0}) as r:
        assert r.status == 200
    await bot_messages(stack, platform, "zhangsan", lambda bot: [
        m for m in bot if m["id"] == card["id"] and "已设为客户位置" in str(m)])
    assert sql(stack, "SELECT coord_system FROM customers WHERE id = :c", c=cid) == [("gcj02",)]
    # the next visit there, 120 m from the (now set) position: the distance is shown
    _visit_minutes_ago(stack, "华东精密零部件有限公司", "zhangsan", 1)
    lat2, lng2 = wgs84_to_gcj02(SPOT[0], SPOT[1])
    async with stack.http.post("/demo/api/say", json={
            "platform": platform, "user": "zhangsan", "kind": "location", "lat": lat2,
            "lng": lng2, "label": "门口"}) as r:
        assert (await r.json())["status"] == 200
    await bot_messages(stack, platform, "zhangsan", lambda bot: [
        m for m in bot if "距客户 120 m" in str(m)])


async def test_dingtalk_has_no_location_messages(stack):
    async with stack.http.post("/demo/api/say", json={
            "platform": "dingtalk", "user": "zhangsan", "kind": "location", "lat": 31.2,
            "lng": 121.4}) as r:
        assert r.status == 400 and "no location" in await r.text()
