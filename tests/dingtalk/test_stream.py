"""DingTalk Stream mode (issue 14): the bot with no inbound HTTP at all, against the simulator's
gateway — open with a ticket, frames, acks after the commit, pings, reconnects, faults."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest

from simulator.dingtalk_stream import CARD_TOPIC, ROBOT_TOPIC
from tests.dingtalk.conftest import Env, start_env

PING = 0.3


@pytest.fixture
async def senv(db_url, tmp_path):
    # stream mode needs no token/AES key: none are given
    e, sim_server = await start_env(db_url, tmp_path, dingtalk_mode="stream",
                                    dingtalk_token="", dingtalk_aes_key="",
                                    longconn_ping_s=PING)
    yield e
    await e.bot.close()
    await sim_server.close()


def transport(env: Env):
    from bot.app import ADAPTERS

    return env.app[ADAPTERS]["dingtalk"].transport


async def test_no_webhook_routes_and_text_answered(senv: Env):
    env = senv
    # nothing listens for callbacks: the robot endpoint is not mounted
    payload = env.sim.robot_payload("zhangsan", "text", {"text": {"content": "你好"}})
    status, _ = await env.sim.post_robot(env.url, json.dumps(payload).encode(),
                                         headers=env.sim.sign_robot())
    assert status == 404
    await env.sim.stream.wait_connected()
    opened = env.recorder.of("dingtalk", "stream_open")[0].body
    assert opened["clientId"] == env.sim.app_key
    assert {"type": "CALLBACK", "topic": ROBOT_TOPIC} in opened["subscriptions"]
    assert {"type": "CALLBACK", "topic": CARD_TOPIC} in opened["subscriptions"]
    ack = await env.sim.stream_text("zhangsan", "你好", msg_id="m-s1")
    assert ack is not None and ack["code"] == 200
    assert json.loads(ack["data"]) == {"response": None}
    # acked only after the commit: the row is there when the ack arrives
    assert env.count("inbox_events", "dedupe_key LIKE '%m-s1%'") == 1
    await env.wait_sent(1, dest="zhangsan")
    assert env.sim.texts("zhangsan")[0].startswith("收到文字：你好")
    # a re-push of the same msgId: acknowledged, one row, one reply
    again = await env.sim.stream_text("zhangsan", "你好", msg_id="m-s1")
    assert again is not None and again["code"] == 200
    await env.wait_idle()
    assert env.count("inbox_events") == 1 and len(env.sim.sent("zhangsan")) == 1


async def test_healthz_shows_the_transport(senv: Env):
    env = senv
    await env.sim.stream.wait_connected()
    await env.sim.stream_text("lisi", "在吗")
    async with aiohttp.ClientSession() as s, s.get(env.bot.make_url("/healthz")) as resp:
        health = await resp.json()
    t = health["transports"]["dingtalk"]
    assert t["transport"] == "dingtalk-stream" and t["state"] == "connected"
    assert t["connected_since"] and t["last_frame"] and t["last_error"] == ""


async def test_card_created_for_stream_and_tap_updates_it(senv: Env):
    env = senv
    await env.sim.stream.wait_connected()
    await env.sim.stream_text("sunqi", "help")
    await env.wait_for(lambda: env.sim.card_calls(), what="card delivered")
    body = env.sim.card_calls()[0].body
    assert body["callbackType"] == "STREAM"
    button = json.loads(body["cardData"]["cardParamMap"]["card"])["buttons"][0]
    track = body["outTrackId"]
    ack = await env.sim.stream_tap("sunqi", track, button["params"]["action"],
                                   button["actionId"])
    assert ack is not None and ack["code"] == 200
    await env.wait_for(lambda: env.sim.updates(), what="card updated")
    assert env.sim.cards[track]["params"]["status"] == "已读 ✓"
    await env.sim.stream_tap("sunqi", track, button["params"]["action"], button["actionId"])
    await env.wait_idle()
    assert len(env.sim.updates()) == 1
    assert env.count("audit_log", "action='help.ack'") == 1


async def test_system_ping_is_echoed(senv: Env):
    env = senv
    conn = (await env.sim.stream.wait_connected())[0]
    ack = await env.sim.stream.ping(conn)
    assert ack is not None and ack["code"] == 200
    assert json.loads(ack["data"])["opaque"] == ack["headers"]["messageId"]


async def test_disconnect_frame_means_a_new_ticket(senv: Env):
    env = senv
    first = (await env.sim.stream.wait_connected())[0]
    opens = env.sim.stream.opens
    closing = asyncio.create_task(env.sim.stream.disconnect(first, grace_s=5))
    await env.wait_for(lambda: [c for c in env.sim.stream.live() if c.id != first.id],
                       timeout=5, what="a second connection")
    assert first.id not in env.sim.stream.conns  # the bot left without waiting for the close
    closing.cancel()
    assert env.sim.stream.opens == opens + 1  # a fresh ticket, not the used one
    ack = await env.sim.stream_text("wangwu", "还在吗")
    assert ack is not None and ack["code"] == 200
    assert transport(env).reconnects >= 1


async def test_stalled_pongs_replace_the_connection(senv: Env):
    env = senv
    first = (await env.sim.stream.wait_connected())[0]
    env.sim.stream.stall_pongs = True
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await env.wait_for(lambda: first.id not in env.sim.stream.conns, timeout=3 * PING + 2,
                       what="old socket closed")
    env.sim.stream.stall_pongs = False
    await env.wait_for(lambda: env.sim.stream.live(), timeout=5, what="reconnected")
    assert loop.time() - t0 < 3 * PING + 1.5
    ack = await env.sim.stream_text("zhaoliu", "ping?")
    assert ack is not None and ack["code"] == 200
    assert "PONG" in transport(env).status()["last_error"]


async def test_wrong_secret_is_one_clear_error_and_no_storm(db_url, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    env, sim_server = await start_env(db_url, tmp_path, dingtalk_mode="stream",
                                      dingtalk_token="", dingtalk_aes_key="",
                                      dingtalk_app_secret="wrong", longconn_ping_s=PING)
    try:
        await env.wait_for(lambda: transport(env).state == "failed", timeout=5,
                           what="transport failed")
        await asyncio.sleep(1.5)  # a storm would have tried again by now
        assert env.sim.stream.refused_opens == 1
        status = transport(env).status()
        assert "authFailed" in status["last_error"]
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR
                  and "dingtalk-stream" in r.getMessage()]
        assert len(errors) == 1
        assert "wrong" not in caplog.text  # the secret is never logged
    finally:
        await env.bot.close()
        await sim_server.close()


async def test_drop_every_50_frames_loses_nothing_and_handles_once(senv: Env):
    env = senv
    await env.sim.stream.wait_connected()
    env.sim.stream.drop_every = 50
    env.sim.stream.duplicate_push = True
    acked = 0
    for i in range(300):
        for _attempt in range(20):  # the platform's retry of an unacked push
            ack = await env.sim.stream_text(f"u{i}", f"消息 {i}", msg_id=f"d-{i}",
                                            timeout=1)
            if ack is not None:
                acked += 1
                break
            await env.sim.stream.wait_connected(timeout=10)
    assert acked == 300
    await env.wait_for(lambda: env.count("inbox_events", "status='done'") == 300, timeout=60,
                       what="all 300 handled")
    assert env.count("inbox_events") == 300
    await env.wait_sent(300, timeout=60)
    assert len(env.sim.sent()) == 300  # one reply each: none handled twice
    assert transport(env).reconnects >= 5


async def test_malformed_frames_do_not_break_the_connection(senv: Env):
    env = senv
    conn = (await env.sim.stream.wait_connected())[0]
    await conn.ws.send_str("{not json")
    await conn.ws.send_str(json.dumps({"type": "CALLBACK", "headers": {
        "topic": ROBOT_TOPIC, "messageId": "bad-1"}, "data": "{\"msgtype\": 5}"}))
    await conn.ws.send_str(json.dumps({"type": "EVENT", "headers": {
        "topic": "chat_update", "messageId": "ev-1"}, "data": "{}"}))
    await env.wait_for(lambda: "ev-1" in env.sim.stream.acks and "bad-1" in env.sim.stream.acks,
                       timeout=5, what="acks")
    assert json.loads(env.sim.stream.acks["ev-1"]["data"])["status"] == "SUCCESS"
    assert env.sim.stream.acks["bad-1"]["code"] == 400
    ack = await env.sim.stream_text("qianba", "还好吗")
    assert ack is not None and ack["code"] == 200 and not conn.ws.closed


async def test_deeply_nested_frames_do_not_end_the_connection(senv: Env, caplog):
    """A frame (or a frame's ``data``) nested past json's recursion limit raised
    RecursionError out of ``on_frame``: the connection died and reconnected per frame (the
    fuzz, tests/reliability/test_fuzz_frames.py). Now: dropped / a 400 ack, one warning."""
    env = senv
    conn = (await env.sim.stream.wait_connected())[0]
    await conn.ws.send_str("[" * 5000 + "]" * 5000)
    await conn.ws.send_str(json.dumps({"type": "CALLBACK", "headers": {
        "topic": ROBOT_TOPIC, "messageId": "deep-1"}, "data": "[" * 5000 + "]" * 5000}))
    await env.wait_for(lambda: "deep-1" in env.sim.stream.acks, timeout=5, what="the ack")
    assert env.sim.stream.acks["deep-1"]["code"] == 400
    ack = await env.sim.stream_text("qianba", "还在吗")
    assert ack is not None and ack["code"] == 200 and not conn.ws.closed
    assert transport(env).connects == 1
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text


async def test_infinite_duration_over_stream_is_acknowledged(senv: Env):
    """``"duration": Infinity`` in a pushed voice note: ``int(inf)`` raised OverflowError in the
    frame task, so the callback was never acknowledged and DingTalk pushed it again and again
    (the fuzz, tests/reliability/test_fuzz_frames.py). Now the duration is unknown."""
    env = senv
    await env.sim.stream.wait_connected()
    ack = await env.sim.stream_robot("qianba", "audio", {"content": {
        "downloadCode": "dl-inf", "duration": float("inf")}}, msg_id="m-inf-stream")
    assert ack is not None and ack["code"] == 200
    await env.wait_for(lambda: env.count("inbox_events", "payload LIKE '%m-inf-stream%'") == 1,
                       what="the stored message")


async def test_two_instances_share_the_stream_each_event_once(db_url, tmp_path):
    """DingTalk gives each push to one random connection of the app: two instances on one
    PostgreSQL database, both connected, handle every message exactly once between them."""
    if not db_url.startswith("postgresql"):
        pytest.skip("several instances share PostgreSQL")
    from aiohttp.test_utils import TestServer

    from bot.app import create_app
    from config import load_settings

    first, sim_server = await start_env(db_url, tmp_path / "a", dingtalk_mode="stream",
                                        dingtalk_token="", dingtalk_aes_key="")
    base = str(sim_server.make_url("")).rstrip("/")
    settings = load_settings(database_url=db_url, data_dir=tmp_path / "b",
                             secret_key="test-secret-key", dingtalk_mode="stream",
                             dingtalk_app_key=first.sim.app_key,
                             dingtalk_app_secret=first.sim.app_secret,
                             dingtalk_robot_code=first.sim.robot_code, dingtalk_api_base=base)
    second = TestServer(create_app(settings), host="127.0.0.1")
    await second.start_server()
    try:
        conns = await first.sim.stream.wait_connected(2)
        for i in range(300):
            ack = await first.sim.stream_text(f"u{i}", f"两实例 {i}", msg_id=f"two-{i}")
            assert ack is not None and ack["code"] == 200
        per_conn = [len(c.acks) for c in conns]
        assert all(n > 50 for n in per_conn), per_conn  # both took a share
        # 300 replies at DingTalk's 20 calls/s take ≥ 15 s; room for a loaded CI machine
        await first.wait_for(lambda: first.count("inbox_events", "status='done'") == 300,
                             timeout=90, what="all handled")
        await first.wait_sent(300, timeout=90)
        assert first.count("inbox_events") == 300 and len(first.sim.sent()) == 300
    finally:
        await second.close()
        await first.bot.close()
        await sim_server.close()
