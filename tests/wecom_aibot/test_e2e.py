"""End to end over the AI bot's long connection: create_app with only ``wecom_aibot``, the fake
openws endpoint, the seeded org. Replies in-band on the callback's req_id, card taps answered
with ``aibot_respond_update_msg``, proactive sends, duplicates, media, /healthz."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
from sqlalchemy import text

from bot.app import ENGINE
from tests.wecom_aibot.conftest import BOT_ID, wait_for


def _content(call) -> str:
    body = call.body
    if body.get("msgtype") == "stream":
        return body["stream"]["content"]
    if body.get("msgtype") == "markdown":
        return body["markdown"]["content"]
    return json.dumps(body.get("template_card") or {}, ensure_ascii=False)


async def test_healthz_shows_the_connection(aibot):
    async with aiohttp.ClientSession() as http:
        async with http.get(aibot.bot.make_url("/healthz")) as r:
            data = await r.json()
    t = data["transports"]["wecom_aibot"]
    assert data["platforms"] == ["wecom_aibot"]
    assert t["state"] == "connected" and t["transport"] == "wecom_aibot"
    assert t["connected_since"] and t["last_error"] == ""
    assert "secret" not in json.dumps(data) and "aibot-secret-value" not in json.dumps(data)


async def test_text_reply_arrives_in_band_on_the_callback_req_id(aibot):
    req_id = await aibot.sim.push_text("zhangsan", "帮助")
    replies = await wait_for(lambda: aibot.sim.ok("aibot_respond_msg"))
    first = replies[0]
    assert first.result["req_id"] == req_id
    assert first.body["msgtype"] in ("stream", "template_card")
    if first.body["msgtype"] == "stream":
        assert first.body["stream"]["finish"] is True and first.body["stream"]["content"]
    # nothing was refused, and the secret never travelled anywhere but the subscribe frame
    assert all(c.result["errcode"] == 0 for c in aibot.sim.frames())
    assert aibot.sim.subscribes == [{"bot_id": BOT_ID, "errcode": 0}]


async def test_group_mention_is_answered_in_the_group(aibot):
    req_id = await aibot.sim.push_text("zhangsan", "帮助", chat="wrgroup001")
    replies = await wait_for(lambda: [c for c in aibot.sim.ok("aibot_respond_msg")
                                      if c.result["req_id"] == req_id])
    assert replies
    async with aibot.app[ENGINE].connect() as conn:
        row = (await conn.execute(text("SELECT payload FROM inbox_events"))).scalar_one()
    ev = json.loads(row)
    assert ev["chat"] == {"id": "wrgroup001", "type": "group", "title": ""}
    assert ev["text"] == "帮助"  # the @-mention is cut off


async def test_duplicate_push_is_one_inbox_row_and_one_answer(aibot):
    aibot.sim.duplicate_push = 1
    req_id = await aibot.sim.push_text("zhangsan", "帮助")
    await wait_for(lambda: aibot.sim.ok("aibot_respond_msg"))
    assert await aibot.inbox_rows() == 1
    answered = {c.result["req_id"] for c in aibot.sim.ok("aibot_respond_msg")}
    assert answered == {req_id}  # the re-push (another req_id) got no second answer


async def test_voice_is_wecoms_transcript_as_a_note(aibot):
    await aibot.sim.push_voice("zhangsan", "帮助")
    await wait_for(lambda: aibot.sim.ok("aibot_respond_msg"))
    async with aibot.app[ENGINE].connect() as conn:
        ev = json.loads((await conn.execute(text("SELECT payload FROM inbox_events")))
                        .scalar_one())
    assert ev["msg_type"] == "text" and ev["text"] == "帮助"
    assert ev["platform"] == "wecom_aibot" and ev["app_id"] == BOT_ID


async def test_late_reply_falls_back_to_a_proactive_send(aibot):
    """A req_id WeCom no longer accepts (here: never pushed) → aibot_send_msg to the chat."""
    from bot.event import OutMessage, Target

    target = Target(platform="wecom_aibot", app_id=BOT_ID, kind="user", id="zhangsan",
                    extra={"req_id": "gone", "at": time.time()})
    out = await aibot.adapter.deliver(target, OutMessage(kind="text", text="晚到的回复"), "k1")
    assert out["in_band"] is False
    refused = aibot.sim.frames("aibot_respond_msg")
    assert refused and refused[0].result["errcode"] != 0
    sent = aibot.sim.ok("aibot_send_msg")
    assert sent[0].body["chatid"] == "zhangsan" and _content(sent[0]) == "晚到的回复"


async def test_a_burst_of_pushes_with_re_pushes_is_stored_exactly_once(aibot):
    n = 1000
    rows = 0
    for i in range(n):
        if i % 10 == 0:
            aibot.sim.duplicate_push = 1
        await aibot.sim.push_text(f"user{i % 50}", f"记录 {i}")

    async def count():
        nonlocal rows
        rows = await aibot.inbox_rows()
        return rows

    deadline = time.monotonic() + 60
    while await count() < n and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert rows == n
    assert aibot.transport.connects == 1
