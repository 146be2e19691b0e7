"""Cards (deliver → tap → update), forged taps, and delivery errors: rate limit, 5xx, token."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

from bot.app import OUTBOX
from cards import pack_action
from simulator.dingtalk_stream import CARD_TOPIC, ROBOT_TOPIC
from tests.dingtalk.conftest import SECRET_KEY, Env, start_env


# -- cards ------------------------------------------------------------------------------------
async def test_help_card_tap_updates_card(env: Env):
    """Webhook mode: robot messages by HTTP, card taps over a Stream connection that subscribes
    to card callbacks only (cards created with callbackType STREAM; PROTOCOLS §9.1)."""
    await env.sim.stream.wait_connected(topic=CARD_TOPIC)
    assert env.sim.stream.live(topic=ROBOT_TOPIC) == []  # messages keep coming by HTTP
    await env.sim.send_text(env.url, "sunqi", "help")
    await env.wait_for(lambda: env.sim.card_calls(), what="card delivered")
    call = env.sim.card_calls()[0]
    body = call.body
    assert body["openSpaceId"] == "dtv1.card//IM_ROBOT.sunqi"
    assert body["callbackType"] == "STREAM"
    assert body["cardTemplateId"] == "fieldbot.general"
    assert body["imRobotOpenDeliverModel"]["spaceType"] == "IM_ROBOT"
    params = body["cardData"]["cardParamMap"]
    assert all(isinstance(v, str) for v in params.values())
    card = json.loads(params["card"])
    button = card["buttons"][0]
    track = body["outTrackId"]

    ack = await env.sim.stream_tap("sunqi", track, button["params"]["action"],
                                   button["actionId"])
    assert ack is not None and ack["code"] == 200
    await env.wait_for(lambda: env.sim.updates(), what="card updated")
    upd = env.sim.updates()[0]
    assert upd.body["outTrackId"] == track
    assert upd.body["cardUpdateOptions"] == {"updateCardDataByKey": True}
    assert env.sim.cards[track]["params"]["status"] == "已读 ✓"
    assert json.loads(env.sim.cards[track]["params"]["card"])["buttons"] == []
    # the platform re-pushes the same tap: one row, one update
    await env.sim.stream_tap("sunqi", track, button["params"]["action"], button["actionId"])
    await env.wait_idle()
    assert len(env.sim.updates()) == 1
    assert env.count("audit_log", "action='help.ack'") == 1


async def test_http_card_callbacks_when_chosen(db_url, tmp_path):
    """FIELDBOT_DINGTALK_CARD_CALLBACKS=http: callbackType HTTP, no Stream connection, taps
    through the encrypted event endpoint."""
    env, sim_server = await start_env(db_url, tmp_path, dingtalk_card_callbacks="http")
    try:
        await env.sim.send_text(env.url, "sunqi", "help")
        await env.wait_for(lambda: env.sim.card_calls(), what="card delivered")
        body = env.sim.card_calls()[0].body
        assert body["callbackType"] == "HTTP"
        assert env.sim.stream.opens == 0
        button = json.loads(body["cardData"]["cardParamMap"]["card"])["buttons"][0]
        status, text = await env.sim.tap_card(env.events_url, "sunqi", body["outTrackId"],
                                              button["params"]["action"], button["actionId"])
        assert status == 200 and env.sim.open_answer(text) == "success"
        await env.wait_for(lambda: env.sim.updates(), what="card updated")
    finally:
        await env.bot.close()
        await sim_server.close()


async def test_forged_card_token_is_refused(env: Env):
    forged = pack_action(b"another-deployment", "help.ack")
    status, _ = await env.sim.tap_card(env.events_url, "mallory", "fb-unknown", forged)
    assert status == 200
    tampered = pack_action(SECRET_KEY.encode(), "help.ack")[:-2] + "AA"
    await env.sim.tap_card(env.events_url, "mallory", "fb-unknown2", tampered)
    await env.wait_idle()
    assert env.count("audit_log", "action='card.forged_action'") == 2
    assert env.count("audit_log", "action='help.ack'") == 0
    assert env.sim.updates() == []


# -- delivery errors --------------------------------------------------------------------------
async def test_rate_limited_then_delivered(env: Env):
    env.sim.faults.rate_limited = 2
    await env.sim.send_text(env.url, "qianba", "慢一点")
    sent = await env.wait_sent(1, dest="qianba", timeout=15)
    assert env.sim.texts("qianba")[0].startswith("收到文字：慢一点")
    throttled = [c for c in env.recorder.of("dingtalk", "send")
                 if c.result and c.result.get("status") == 403
                 and c.result.get("code") == "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"]
    assert len(throttled) == 2
    assert len(sent) == 1
    await env.wait_idle()
    assert env.count("outbox", "status='sent'") == 1


async def test_server_error_is_retried(env: Env):
    env.sim.faults.server_error = 1
    await env.sim.send_text(env.url, "zhoujiu", "hi")
    await env.wait_sent(1, dest="zhoujiu", timeout=15)
    await env.wait_idle()
    assert env.count("outbox", "status='sent'") == 1


async def test_token_refresh_on_invalid_token(env: Env):
    await env.sim.send_text(env.url, "wushi", "one")
    await env.wait_sent(1, dest="wushi")
    assert len(env.recorder.of("dingtalk", "token")) == 1
    env.sim.faults.token_invalid = 1
    await env.sim.send_text(env.url, "wushi", "two")
    await env.wait_sent(2, dest="wushi")
    assert len(env.recorder.of("dingtalk", "token")) == 2
    await env.wait_idle()
    assert env.count("outbox", "status='sent'") == 2


async def test_group_help_card_goes_to_group_space(env: Env):
    await env.sim.send_text(env.url, "lisi", "help", group="cidGRP")
    await env.wait_for(lambda: env.sim.card_calls(), what="card delivered")
    body = env.sim.card_calls()[0].body
    assert body["openSpaceId"] == "dtv1.card//IM_GROUP.cidGRP"
    assert body["imGroupOpenDeliverModel"] == {"robotCode": env.sim.robot_code}
    button = json.loads(body["cardData"]["cardParamMap"]["card"])["buttons"][0]
    await env.sim.tap_card(env.events_url, "lisi", body["outTrackId"],
                           button["params"]["action"])
    await env.wait_for(lambda: env.sim.updates(), what="card updated")
    assert env.sim.updates()[0].dest == "cidGRP"


async def test_missing_scope_is_a_configuration_error_on_healthz(env: Env):
    """403 AccessTokenPermissionDenied names the scope, is not taken for a bad token (no
    refresh), keeps the message and shows on /healthz; granted, the message goes out."""
    import aiohttp

    env.sim.missing_scope = "qyapi_robot_sendmsg"
    await env.sim.send_text(env.url, "zhouba", "权限？")
    await env.wait_for(lambda: env.recorder.of("dingtalk", "send"), what="a send tried")
    async with aiohttp.ClientSession() as s:
        for _ in range(100):
            async with s.get(env.bot.make_url("/healthz")) as r:
                health = await r.json()
            if health["config_errors"]:
                break
            await asyncio.sleep(0.05)
    problem = health["config_errors"]["dingtalk"]
    assert "qyapi_robot_sendmsg" in problem["error"] and "权限管理" in problem["hint"]
    assert len(env.recorder.of("dingtalk", "token")) == 1  # no refresh for a missing scope
    assert env.count("outbox", "status='pending'") == 1  # kept, not dead
    env.sim.missing_scope = None
    env.execute("UPDATE outbox SET next_at = :t", t=datetime(2000, 1, 1))  # retry now
    env.app[OUTBOX].wake()
    await env.wait_sent(1, dest="zhouba")
    await env.wait_for(lambda: not env.app[OUTBOX].problems, what="problem cleared")


async def test_monthly_quota_is_a_configuration_error(env: Env):
    env.sim.org_quota = 0
    await env.sim.send_text(env.url, "wujiu", "配额？")
    await env.wait_for(lambda: env.app[OUTBOX].problems.get("dingtalk"), what="quota error")
    assert "monthly API quota" in env.app[OUTBOX].problems["dingtalk"]["error"]
    assert env.count("outbox", "status='dead'") == 0
