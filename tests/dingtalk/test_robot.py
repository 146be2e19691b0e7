"""Robot messages over real HTTP: round trips through the simulator API, retries, hostile input."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from tests.dingtalk.conftest import APP_KEY, Env


# -- robot messages ---------------------------------------------------------------------------
async def test_text_answered_through_api_once_even_when_retried(env: Env):
    status, body = await env.sim.send_text(env.url, "zhangsan", "你好", msg_id="m-1001")
    assert (status, json.loads(body)) == (200, {})
    sent = await env.wait_sent(1, dest="zhangsan")
    assert sent[0].path == "/v1.0/robot/oToMessages/batchSend"
    assert sent[0].body["robotCode"] == env.sim.robot_code
    assert sent[0].body["msgKey"] == "sampleText"
    assert env.sim.texts("zhangsan")[0].startswith("收到文字：你好")
    status, _ = await env.sim.send_text(env.url, "zhangsan", "你好", msg_id="m-1001")
    assert status == 200
    await env.wait_idle()
    assert env.count("inbox_events") == 1
    assert env.count("outbox") == 1
    assert len(env.sim.sent("zhangsan")) == 1
    payload = json.loads(env.sql("SELECT payload FROM inbox_events")[0][0])
    assert payload["app_id"] == APP_KEY and payload["event_id"] == "m-1001"
    assert payload["chat"] == {"id": "zhangsan", "type": "p2p", "title": ""}
    assert set(payload["reply_hint"]) == {"session_webhook", "expires_at"}


async def test_group_text_goes_to_group_api(env: Env):
    status, _ = await env.sim.send_text(env.url, "lisi", " 早上好", group="cidGROUP1==")
    assert status == 200
    sent = await env.wait_sent(1, dest="cidGROUP1==")
    assert sent[0].path == "/v1.0/robot/groupMessages/send"
    assert sent[0].body["openConversationId"] == "cidGROUP1=="
    assert env.sim.texts("cidGROUP1==")[0].startswith("收到文字：早上好")


async def test_audio_with_recognition_and_picture(env: Env):
    await env.sim.send_audio(env.url, "wangwu", "dl-voice-1", duration_ms=4200,
                             recognition="明天拜访客户")
    await env.sim.send_picture(env.url, "wangwu", "dl-pic-1")
    await env.wait_sent(2, dest="wangwu")
    texts = env.sim.texts("wangwu")
    assert any(t.startswith("收到语音 4 秒（平台识别：明天拜访客户）") for t in texts), texts
    assert any(t.startswith("收到图片") for t in texts), texts


async def test_same_msg_50x_concurrently(env: Env):
    payload = env.sim.robot_payload("zhaoliu", "text", {"text": {"content": "storm"}},
                                    msg_id="m-storm")
    headers = env.sim.sign_robot()
    async with aiohttp.ClientSession() as s:
        results = await asyncio.gather(*(env.sim.post_robot(env.url, payload, headers, s)
                                         for _ in range(50)))
    assert all(r[0] == 200 for r in results), results
    await env.wait_sent(1, dest="zhaoliu")
    await env.wait_idle()
    assert env.count("inbox_events") == 1
    assert env.count("outbox") == 1
    assert len(env.sim.sent("zhaoliu")) == 1


async def test_forged_sign_is_401_and_not_stored(env: Env):
    payload = env.sim.robot_payload("mallory", "text", {"text": {"content": "x"}})
    headers = env.sim.sign_robot(secret="not-the-secret")
    assert (await env.sim.post_robot(env.url, payload, headers))[0] == 401
    good = env.sim.sign_robot()
    assert (await env.sim.post_robot(env.url, payload, {"timestamp": good["timestamp"]}))[0] \
        == 401
    assert (await env.sim.post_robot(env.url, payload, {}))[0] == 401
    assert env.count("inbox_events") == 0


async def test_stale_timestamp_is_401_and_not_stored(env: Env):
    payload = env.sim.robot_payload("mallory", "text", {"text": {"content": "x"}})
    now = int(time.time() * 1000)
    for ts in (now - 3600_000, now + 3600_000, "not-a-number"):
        assert (await env.sim.post_robot(env.url, payload, env.sim.sign_robot(ts)))[0] == 401
    assert env.count("inbox_events") == 0


async def test_malformed_json_is_400(env: Env):
    assert (await env.sim.post_robot(env.url, b"{not json"))[0] == 400
    assert (await env.sim.post_robot(env.url, b"[1,2]"))[0] == 400
    assert (await env.sim.post_robot(env.url, {"msgtype": "text"}))[0] == 400
    assert env.count("inbox_events") == 0


async def test_body_over_64k_is_413(env: Env):
    payload = env.sim.robot_payload("big", "text", {"text": {"content": "A" * 70_000}})
    assert (await env.sim.post_robot(env.url, payload))[0] == 413
    query, _ = env.sim.seal_event({"EventType": "check_url"})
    body = json.dumps({"encrypt": "A" * 70_000}).encode()
    assert (await env.sim.post_event(env.events_url, query, body))[0] == 413
    assert env.count("inbox_events") == 0


async def test_unknown_msgtype_is_acked(env: Env):
    payload = env.sim.robot_payload("u", "hologram", {"content": {"x": 1}})
    status, body = await env.sim.post_robot(env.url, payload)
    assert (status, json.loads(body)) == (200, {})
    assert env.count("inbox_events") == 0




async def test_inbox_down_is_503(env: Env):
    from bot.app import INBOX

    env.app[INBOX].stop()
    status, _ = await env.sim.send_text(env.url, "u503", "hello")
    assert status == 503
    status, _ = await env.sim.tap_card(env.events_url, "u503", "fb-x", "t.m")
    assert status == 503
    assert env.count("inbox_events") == 0


async def test_captured_sign_with_another_body_is_refused(env: Env):
    """The robot's sign covers only the timestamp: a captured (timestamp, sign) pair replayed
    with a body claiming another sender (a manager) is refused, nothing stored or sent; the
    same request delivered twice is still a duplicate, answered once."""
    genuine = env.sim.robot_payload("zhangsan", "text", {"text": {"content": "你好"}},
                                    msg_id="m-cap-1")
    headers = env.sim.sign_robot()
    assert (await env.sim.post_robot(env.url, genuine, headers))[0] == 200
    assert (await env.sim.post_robot(env.url, genuine, headers))[0] == 200  # a re-delivery
    forged = env.sim.robot_payload("lijingli", "text", {"text": {"content": "审批规则 {}"}},
                                   msg_id="m-cap-2")
    assert (await env.sim.post_robot(env.url, forged, headers))[0] == 401
    await env.wait_sent(1, dest="zhangsan")
    await env.wait_idle()
    assert env.count("inbox_events") == 1
    assert env.sim.sent("lijingli") == []


async def test_deeply_nested_json_is_400_not_500(env: Env, caplog):
    """30,000 nested arrays (signed, under the size cap): json raises RecursionError — a 400
    like any malformed body, one log line, no traceback."""
    body = b"[" * 30_000 + b"]" * 30_000
    status, _ = await env.sim.post_robot(env.url, body, env.sim.sign_robot())
    assert status == 400
    assert "Traceback" not in caplog.text
    assert env.count("inbox_events") == 0


async def test_infinite_numbers_are_no_500(env: Env, caplog):
    """JSON's ``Infinity`` in a number field (a voice note's duration): ``int(inf)`` raised
    OverflowError, which escaped the webhook as a 500 with a traceback (the fuzz,
    tests/reliability/test_fuzz_http.py). Now the duration is unknown; the message is stored."""
    payload = env.sim.robot_payload("zhangsan", "audio", {"content": {
        "downloadCode": "dl-inf", "duration": float("inf")}}, msg_id="m-inf")
    body = json.dumps(payload).encode()
    assert b"Infinity" in body
    status, text = await env.sim.post_robot(env.url, body, env.sim.sign_robot())
    assert (status, json.loads(text)) == (200, {})
    assert "Traceback" not in caplog.text and "OverflowError" not in caplog.text
    payload = json.loads(env.sql("SELECT payload FROM inbox_events")[0][0])
    assert payload["event_id"] == "m-inf" and payload["media"]["duration_ms"] is None
