"""Cards (deliver → tap → update), forged taps, and delivery errors: rate limit, 5xx, token."""

from __future__ import annotations

import json

from cards import pack_action
from tests.dingtalk.conftest import SECRET_KEY, Env


# -- cards ------------------------------------------------------------------------------------
async def test_help_card_tap_updates_card(env: Env):
    await env.sim.send_text(env.url, "sunqi", "help")
    await env.wait_for(lambda: env.sim.card_calls(), what="card delivered")
    call = env.sim.card_calls()[0]
    body = call.body
    assert body["openSpaceId"] == "dtv1.card//IM_ROBOT.sunqi"
    assert body["callbackType"] == "HTTP"
    assert body["cardTemplateId"] == "fieldbot.general"
    assert body["imRobotOpenDeliverModel"]["spaceType"] == "IM_ROBOT"
    params = body["cardData"]["cardParamMap"]
    assert all(isinstance(v, str) for v in params.values())
    card = json.loads(params["card"])
    button = card["buttons"][0]
    track = body["outTrackId"]

    status, text = await env.sim.tap_card(env.events_url, "sunqi", track,
                                          button["params"]["action"], button["actionId"])
    assert status == 200 and env.sim.open_answer(text) == "success"
    await env.wait_for(lambda: env.sim.updates(), what="card updated")
    upd = env.sim.updates()[0]
    assert upd.body["outTrackId"] == track
    assert upd.body["cardUpdateOptions"] == {"updateCardDataByKey": True}
    assert env.sim.cards[track]["params"]["status"] == "已读 ✓"
    assert json.loads(env.sim.cards[track]["params"]["card"])["buttons"] == []
    # the platform re-pushes the same tap: one row, one update
    await env.sim.tap_card(env.events_url, "sunqi", track, button["params"]["action"],
                           button["actionId"])
    await env.wait_idle()
    assert len(env.sim.updates()) == 1
    assert env.count("audit_log", "action='help.ack'") == 1


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
                 if c.result and c.result.get("status") == 429]
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
