"""Feishu 长连接 end to end: fake Feishu (pbbp2 over WebSocket) → bot (FIELDBOT_FEISHU_MODE=ws)
→ core → outbox → fake Feishu API; and lark-oapi's own ``ws.Client`` against the fake."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from sqlalchemy import text

from bot.app import ENGINE, create_app
from config import load_settings
from tests.feishu.conftest import APP_ID, APP_SECRET, _start, wait_for
from tests.feishu.test_webhook import _card_buttons

PING_S = 0.3


@pytest.fixture
async def feishu_ws(db_url, tmp_path):
    env = await _start(db_url, tmp_path, feishu_mode="ws", longconn_ping_s=PING_S)
    try:
        await env.sim.ws.wait_connected()
        yield env
    finally:
        await env.bot.close()
        await env.api.close()


@pytest.fixture
async def feishu_ws_sqlite(sqlite_url, tmp_path):
    env = await _start(sqlite_url, tmp_path, feishu_mode="ws", longconn_ping_s=PING_S)
    try:
        await env.sim.ws.wait_connected()
        yield env
    finally:
        await env.bot.close()
        await env.api.close()


def _text(env, open_id: str, text: str, **kw) -> dict:
    return env.sim.message_payload(open_id, "text", {"text": text}, **kw)


async def _help_card(env, open_id: str) -> tuple[dict, str]:
    assert (await env.sim.ws.push(_text(env, open_id, "help"))).code == 200
    [call] = await wait_for(lambda: env.sends(open_id))
    [button] = _card_buttons(json.loads(call.body["content"]))
    return button["behaviors"][0]["value"], call.result["message_id"]


async def _healthz(env) -> dict:
    async with ClientSession() as s, s.get(env.bot.make_url("/healthz")) as resp:
        return await resp.json()


async def test_text_is_answered_and_no_webhook_route(feishu_ws):
    env = feishu_ws
    ack = await env.sim.ws.push(_text(env, "ou_alice", "你好"))
    assert ack.valid and ack.code == 200, ack
    [call] = await wait_for(lambda: env.sends("ou_alice"))
    assert json.loads(call.body["content"])["text"].startswith("收到文字：你好")
    assert await env.inbox_rows() == 1
    async with ClientSession() as s, s.post(env.url, data=b"{}") as resp:
        assert resp.status == 404  # ws mode mounts no webhook: no public URL needed
    assert env.sim.ws.pings and all(p["ok"] for p in env.sim.ws.pings)
    health = await _healthz(env)
    feishu = health["transports"]["feishu"]
    assert feishu["state"] == "connected" and feishu["connected_since"]
    assert feishu["last_error"] == ""


def _legacy(tap: dict) -> dict:
    """The same tap in the legacy card-callback shape (no header), as a card frame may bring."""
    ev = tap["event"]
    return {"open_id": ev["operator"]["open_id"], "user_id": "", "tenant_key": "tenant_sim",
            "open_message_id": ev["context"]["open_message_id"],
            "open_chat_id": ev["context"]["open_chat_id"], "token": ev["token"],
            "action": ev["action"]}


@pytest.mark.parametrize("shape", ["card-frame", "event-frame", "legacy-card-frame"])
async def test_card_tap_gets_its_toast_in_the_ack(feishu_ws, shape):
    env = feishu_ws
    value, message_id = await _help_card(env, "ou_h")
    env.sim.issue_card_token("c-tok-ws", message_id)
    tap = env.sim.tap_payload("ou_h", value, message_id, "c-tok-ws")
    if shape == "legacy-card-frame":
        tap = _legacy(tap)
    ack = await env.sim.ws.push(tap, as_card_frame=shape != "event-frame")
    assert ack.valid and ack.code == 200
    assert ack.result == {"toast": {"type": "success", "content": "👍"}}
    [upd] = await wait_for(lambda: env.recorder.of("feishu", "update_card"))
    assert upd.body["token"] == "c-tok-ws"
    assert env.recorder.of("feishu", "update_before_answer") == []  # after the ack, never before


async def test_fragments_are_reassembled(feishu_ws):
    env = feishu_ws
    env.sim.ws.fragment_size = 64
    payload = _text(env, "ou_frag", "分片" * 200)
    ack = await env.sim.ws.push(payload)
    assert ack.valid and ack.code == 200
    [call] = await wait_for(lambda: env.sends("ou_frag"))
    assert "分片分片" in json.loads(call.body["content"])["text"]
    assert await env.inbox_rows() == 1


async def test_duplicate_push_is_handled_once(feishu_ws):
    env = feishu_ws
    env.sim.ws.duplicate_push = True
    await env.sim.ws.push(_text(env, "ou_dup", "twice", event_id="ev-dup"))
    assert [a.code for a in env.sim.ws.acks] == [200, 200]  # both copies acknowledged
    await wait_for(lambda: env.sends("ou_dup"))
    await asyncio.sleep(0.3)
    assert len(env.sends("ou_dup")) == 1
    assert await env.inbox_rows() == 1


async def test_bad_payload_is_acked_with_an_error_and_the_connection_lives(feishu_ws_sqlite,
                                                                          caplog):
    env = feishu_ws_sqlite
    caplog.set_level(logging.INFO)
    ack = await env.sim.ws.push(b"{not json")
    assert ack.valid and ack.code == 400
    warnings = [r for r in caplog.records if "malformed event" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].exc_info is None
    ack = await env.sim.ws.push({"schema": "2.0", "header": {"event_id": "ev-x",
                                                             "event_type": "im.chat.unknown"},
                                 "event": {}})
    assert ack.valid and ack.code == 200 and ack.result is None  # unknown types are acked
    ack = await env.sim.ws.push(_text(env, "ou_after", "still here"))
    assert ack.code == 200
    assert env.adapter.transport.connects == 1


async def test_deeply_nested_payload_is_a_400_ack_not_a_dead_task(feishu_ws_sqlite, caplog):
    """An event payload nested past json's recursion limit raised RecursionError in the frame
    task: no ack (Feishu re-pushes) and an error log per frame (the fuzz,
    tests/reliability/test_fuzz_frames.py). Now it is acknowledged 400 like any bad JSON."""
    env = feishu_ws_sqlite
    caplog.set_level(logging.INFO)
    ack = await env.sim.ws.push(b"[" * 5000 + b"]" * 5000)
    assert ack.valid and ack.code == 400
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    ack = await env.sim.ws.push(_text(env, "ou_after", "still here"))
    assert ack.code == 200 and env.adapter.transport.connects == 1


async def test_undecodable_frames_are_dropped_with_one_warning(feishu_ws_sqlite, caplog):
    env = feishu_ws_sqlite
    caplog.set_level(logging.INFO)
    await env.sim.ws.send_raw(b"\x08")  # a truncated varint
    await env.sim.ws.send_raw("不是帧".encode())
    await wait_for(lambda: len([r for r in caplog.records
                                if "undecodable frame" in r.getMessage()]) == 2)
    assert all(r.exc_info is None for r in caplog.records)
    ack = await env.sim.ws.push(_text(env, "ou_ok", "fine"))
    assert ack.code == 200 and env.adapter.transport.connects == 1


async def test_ping_interval_follows_the_servers_client_config(sqlite_url, tmp_path):
    env = await _start(sqlite_url, tmp_path, feishu_mode="ws")  # no longconn_ping_s
    try:
        transport = env.adapter.transport
        await wait_for(lambda: env.sim.ws.conns)
        assert transport.ping_interval == 120  # from the endpoint's ClientConfig
        env.sim.ws.ping_interval_s = 1
        await transport.stop()
        await transport.start()
        await wait_for(lambda: transport.state == "connected")
        assert transport.ping_interval == 1
        env.sim.ws.ping_interval_s = 2  # a pong carries the new ClientConfig
        await wait_for(lambda: transport.ping_interval == 2, timeout=5)
    finally:
        await env.bot.close()
        await env.api.close()


async def test_inbox_down_answers_500_and_feishu_pushes_again(feishu_ws_sqlite):
    from bot.app import INBOX

    env = feishu_ws_sqlite
    env.app[INBOX].stop()
    env.sim.ws.max_attempts = 1
    ack = await env.sim.ws.push(_text(env, "ou_500", "hi", event_id="ev-500"))
    assert ack.code == 500
    env.app[INBOX].start()
    ack = await env.sim.ws.push(_text(env, "ou_500", "hi", event_id="ev-500"))
    assert ack.code == 200
    await wait_for(lambda: env.sends("ou_500"))


async def test_wrong_secret_fails_once_without_a_reconnect_storm(sqlite_url, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    env = await _start(sqlite_url, tmp_path, feishu_mode="ws", longconn_ping_s=PING_S)
    try:
        env.sim.ws.app_secret = "rotated"  # the bot still has the old one
        transport = env.adapter.transport
        await transport.stop()
        env.sim.ws.endpoint_calls.clear()
        await transport.start()
        await wait_for(lambda: transport.state == "failed")
        await asyncio.sleep(0.5)
        assert len(env.sim.ws.endpoint_calls) == 1 and transport.state == "failed"
        assert "1000040344" in transport.last_error
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "credentials refused" in errors[0].getMessage()
        assert env.sim.app_secret not in caplog.text and "feishu-app-secret" not in caplog.text
        health = await _healthz(env)
        assert health["transports"]["feishu"]["state"] == "failed"
    finally:
        await env.bot.close()
        await env.api.close()


async def test_stalled_pongs_replace_the_connection(feishu_ws_sqlite):
    env = feishu_ws_sqlite
    transport = env.adapter.transport
    env.sim.ws.stall_pongs = True
    await wait_for(lambda: transport.reconnects >= 1, timeout=5)  # 3 intervals ≈ 0.9 s
    assert "no frame for" in transport.last_error
    env.sim.ws.stall_pongs = False
    await wait_for(lambda: transport.state == "connected" and env.sim.ws.conns)
    assert await env.sim.ws.push_message("ou_back", "back") is not None


async def test_connection_limit_is_a_clear_error(feishu_ws_sqlite):
    env = feishu_ws_sqlite
    transport = env.adapter.transport
    env.sim.ws.max_conns = 1  # the running connection is the one allowed
    await transport.stop()
    env.sim.ws.max_conns = 0
    await transport.start()
    await wait_for(lambda: "too many connections" in transport.last_error)
    assert transport.state == "backoff"
    assert env.sim.ws.handshakes[-1]["auth_code"] == "1000040350"


async def test_server_drops_every_n_frames_nothing_lost_nothing_twice(feishu_ws):
    env = feishu_ws
    env.sim.ws.drop_every_n = 25
    env.sim.ws.max_attempts = 10
    n, in_flight = 300, asyncio.Semaphore(20)  # a steady stream, 20 frames un-acked at most

    async def one(i: int):
        async with in_flight:
            return await env.sim.ws.push(_text(env, f"ou_d{i}", f"m{i}",
                                               event_id=f"ev-drop-{i}"))

    acks = await asyncio.gather(*(one(i) for i in range(n)))
    bad = [a for a in acks if a is None or a.code != 200]
    assert not bad, (len(bad), bad[:3])
    assert env.sim.ws.timed_out == [] and env.sim.ws.repushed > 0  # acks were lost
    assert env.adapter.transport.reconnects >= n // 25 - 1
    assert await env.inbox_rows() == n
    await wait_for(lambda: len(env.sends()) >= n, timeout=8)
    texts = [json.loads(c.body["content"])["text"] for c in env.sends()]
    assert len(texts) == n and len({t.split("：", 1)[1] for t in texts}) == n


async def test_two_instances_each_event_handled_once(db_url, tmp_path):
    """Feishu gives each message to one random connection of the app; duplicates may land on
    the other instance: the shared inbox dedupes."""
    env = await _start(db_url, tmp_path, feishu_mode="ws", longconn_ping_s=PING_S)
    settings = load_settings(database_url=db_url, data_dir=tmp_path / "second",
                             feishu_app_id=APP_ID, feishu_app_secret=APP_SECRET,
                             feishu_mode="ws", longconn_ping_s=PING_S,
                             feishu_api_base=str(env.api.make_url("")).rstrip("/"))
    second = TestServer(create_app(settings), host="127.0.0.1")
    await second.start_server()
    try:
        await wait_for(lambda: len(env.sim.ws.conns) == 2)
        env.sim.ws.duplicate_push = True
        n = 60
        acks = await asyncio.gather(*(env.sim.ws.push(_text(env, f"ou_two{i}", f"t{i}",
                                                            event_id=f"ev-two-{i}"))
                                      for i in range(n)))
        assert all(a.code == 200 for a in acks)
        assert len({a.device_id for a in env.sim.ws.ok_acks()}) == 2  # both got events
        await wait_for(lambda: len(env.sends()) >= n)
        await asyncio.sleep(0.3)
        assert len(env.sends()) == n
        async with second.app[ENGINE].connect() as conn:
            rows = (await conn.execute(text("SELECT count(*) FROM inbox_events"))).scalar_one()
        assert rows == n
    finally:
        await second.close()
        await env.bot.close()
        await env.api.close()
