"""The long connection's faults: wrong secret, a second connection kicking the first, stalled
pings, the server dropping the socket, garbage frames."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp

from simulator.wecom_aibot import BAD_CREDENTIALS
from tests.wecom_aibot.conftest import BOT_ID, PING_S, SECRET, start_env, wait_for


async def test_wrong_secret_fails_once_without_a_reconnect_storm(db_url, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    env = await start_env(db_url, tmp_path, secret="not-the-secret", wait=False)
    try:
        await wait_for(lambda: env.transport.state == "failed")
        await asyncio.sleep(PING_S * 5)  # room for a (wrong) retry to show up
        assert env.sim.subscribes == [{"bot_id": BOT_ID, "errcode": BAD_CREDENTIALS}]
        status = env.transport.status()
        assert str(BAD_CREDENTIALS) in status["last_error"]
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR
                  and r.name.startswith("integrations")]
        assert len(errors) == 1 and "credentials refused" in errors[0].getMessage()
        assert "not-the-secret" not in caplog.text and SECRET not in caplog.text
    finally:
        await env.stop()


async def _subscribe(url: str, http: aiohttp.ClientSession):
    ws = await http.ws_connect(url)
    await ws.send_str(json.dumps({"cmd": "aibot_subscribe",
                                  "headers": {"req_id": "aibot_subscribe_1"},
                                  "body": {"bot_id": BOT_ID, "secret": SECRET}}))
    answer = json.loads((await ws.receive()).data)
    return ws, answer


async def test_a_second_connection_kicks_the_first_which_stays_down(aibot):
    async with aiohttp.ClientSession() as http:
        ws, answer = await _subscribe(aibot.ws_url, http)
        assert answer["errcode"] == 0 and answer["headers"]["req_id"] == "aibot_subscribe_1"
        await wait_for(lambda: aibot.transport.state == "superseded")
        assert aibot.sim.kicks == 1
        await asyncio.sleep(PING_S * 5)  # a reconnecting bot would kick the newcomer back
        assert len(aibot.sim.subscribes) == 2 and aibot.sim.kicks == 1
        assert "another connection" in aibot.transport.status()["last_error"]
        # the newcomer now holds the bot: pushes go to it
        await aibot.sim.push_text("zhangsan", "帮助")
        frame = json.loads((await ws.receive()).data)
        assert frame["cmd"] == "aibot_msg_callback"
        await ws.close()


async def test_stalled_pings_replace_the_connection(aibot):
    assert aibot.transport.connects == 1
    aibot.sim.stall_pings = True
    await wait_for(lambda: aibot.sim.pings >= 1)
    await wait_for(lambda: aibot.transport.connects >= 2)
    assert "no frame for" in aibot.transport.last_error
    aibot.sim.stall_pings = False
    await aibot.sim.wait_connected()
    req_id = await aibot.sim.push_text("zhangsan", "帮助")
    await wait_for(lambda: [c for c in aibot.sim.ok("aibot_respond_msg")
                            if c.result["req_id"] == req_id])


async def test_server_drop_reconnects_at_once_and_keeps_working(aibot):
    await aibot.sim.drop()
    await wait_for(lambda: aibot.transport.connects >= 2 and aibot.sim.connected)
    assert aibot.transport.status()["reconnects"] >= 1
    req_id = await aibot.sim.push_text("zhangsan", "帮助")
    await wait_for(lambda: [c for c in aibot.sim.ok("aibot_respond_msg")
                            if c.result["req_id"] == req_id])


async def test_garbage_frames_do_not_break_the_connection(aibot, caplog):
    ws = aibot.sim.live[BOT_ID].ws
    await ws.send_str("{not json")
    await ws.send_str(json.dumps({"cmd": "aibot_msg_callback", "headers": {"req_id": "r1"},
                                  "body": {"msgtype": "text"}}))  # no msgid / from
    await ws.send_str(json.dumps([1, 2, 3]))
    req_id = await aibot.sim.push_text("zhangsan", "帮助")
    await wait_for(lambda: [c for c in aibot.sim.ok("aibot_respond_msg")
                            if c.result["req_id"] == req_id])
    assert aibot.transport.connects == 1 and aibot.transport.bad_frames == 2
    assert await aibot.inbox_rows() == 1


async def test_deeply_nested_frame_is_dropped_not_a_reconnect(aibot, caplog):
    """A frame nested past json's recursion limit raised RecursionError out of the read loop:
    the connection was dropped and re-subscribed per frame (the fuzz,
    tests/reliability/test_fuzz_frames.py). Now it is an unreadable frame like any other."""
    ws = aibot.sim.live[BOT_ID].ws
    await ws.send_str("[" * 5000 + "]" * 5000)
    req_id = await aibot.sim.push_text("zhangsan", "帮助")
    await wait_for(lambda: [c for c in aibot.sim.ok("aibot_respond_msg")
                            if c.result["req_id"] == req_id])
    assert aibot.transport.connects == 1 and aibot.transport.bad_frames == 1
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text
