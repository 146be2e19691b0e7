"""Parsing callback frames, and the per-req_id serialisation of in-band answers."""

from __future__ import annotations

import asyncio

import pytest

from bot.event import OutMessage, Target
from bot.platform import TransientError
from integrations.wecom_aibot.parse import ParseError, parse
from integrations.wecom_aibot.ws import AckError
from tests.wecom_aibot.conftest import BOT_ID, wait_for

NOW = 1_700_000_000.0


def _frame(body: dict, cmd: str = "aibot_msg_callback", req_id: str = "r1") -> dict:
    base = {"msgid": "m1", "aibotid": BOT_ID, "chattype": "single",
            "from": {"userid": "zhangsan"}, "create_time": 1700000000}
    return {"cmd": cmd, "headers": {"req_id": req_id}, "body": {**base, **body}}


def test_text_single_and_group():
    ev = parse(_frame({"msgtype": "text", "text": {"content": " 报价 华东精密 1 "}}), BOT_ID,
               now=NOW)
    assert (ev.platform, ev.app_id, ev.event_id, ev.kind) == ("wecom_aibot", BOT_ID, "m1",
                                                               "message")
    assert ev.text == "报价 华东精密 1" and ev.chat.type == "p2p" and ev.chat.id == "zhangsan"
    assert ev.reply_hint == {"req_id": "r1", "at": NOW}
    assert ev.reply_target().extra == {"req_id": "r1", "at": NOW}
    g = parse(_frame({"msgtype": "text", "chattype": "group", "chatid": "wr1",
                      "text": {"content": "@拜访助手 帮助 @张三"}}), BOT_ID)
    assert g.text == "帮助 @张三" and g.chat.type == "group" and g.reply_target().id == "wr1"


def test_media_and_mixed_and_voice():
    img = parse(_frame({"msgtype": "image", "image": {"url": "https://x/1", "aeskey": "k"}}),
                BOT_ID)
    assert img.msg_type == "image" and img.media.key == "https://x/1"
    assert img.media.extra == {"aeskey": "k"} and img.media.message_id == "m1"
    f = parse(_frame({"msgtype": "file", "file": {"url": "https://x/2", "aeskey": "k2"}}), BOT_ID)
    assert f.msg_type == "file" and f.media.kind == "file"
    mixed = parse(_frame({"msgtype": "mixed", "mixed": {"msg_item": [
        {"msgtype": "text", "text": {"content": "门头"}},
        {"msgtype": "image", "image": {"url": "https://x/3", "aeskey": "k3"}}]}}), BOT_ID)
    assert mixed.msg_type == "image" and mixed.text == "门头" and mixed.media.key.endswith("/3")
    only_text = parse(_frame({"msgtype": "mixed", "mixed": {"msg_item": [
        {"msgtype": "text", "text": {"content": "a"}}, {"msgtype": "text",
                                                         "text": {"content": "b"}}]}}), BOT_ID)
    assert only_text.msg_type == "text" and only_text.text == "a b"
    voice = parse(_frame({"msgtype": "voice", "voice": {"content": "拜访了华东精密"}}), BOT_ID)
    assert voice.msg_type == "text" and voice.text == "拜访了华东精密"
    audio = parse(_frame({"msgtype": "voice", "voice": {"content": "嗯", "url": "https://x/4",
                                                         "aeskey": "k4"}}), BOT_ID)
    assert audio.msg_type == "voice" and audio.media.recognition == "嗯"
    assert parse(_frame({"msgtype": "sticker"}), BOT_ID) is None


def test_card_taps_nested_or_flat_with_options_and_selections():
    nested = parse(_frame({"msgtype": "event", "event": {
        "eventtype": "template_card_event", "template_card_event": {
            "card_type": "button_interaction", "event_key": "TOKEN|reason=%E4%BB%B7",
            "task_id": "t1", "selected_items": {"selected_item": [
                {"question_key": "q", "option_ids": {"option_id": ["o1"]}}]}}}},
        cmd="aibot_event_callback", req_id="r9"), BOT_ID, now=NOW)
    assert nested.kind == "card_action" and nested.action.value == "TOKEN"
    assert nested.action.form == {"reason": "价", "q": "o1"}
    assert nested.action.card_ref == {"req_id": "r9", "at": NOW, "task_id": "t1",
                                      "card_type": "button_interaction"}
    flat = parse(_frame({"msgtype": "event", "event": {
        "eventtype": "template_card_event", "event_key": "TOK", "task_id": "t2"}},
        cmd="aibot_event_callback"), BOT_ID)
    assert flat.action.value == "TOK" and flat.action.card_ref["task_id"] == "t2"
    enter = parse(_frame({"msgtype": "event", "event": {"eventtype": "enter_chat"}},
                         cmd="aibot_event_callback"), BOT_ID)
    assert enter.kind == "system" and enter.msg_type == "enter_chat"


@pytest.mark.parametrize("frame", [
    {"cmd": "aibot_msg_callback", "headers": {"req_id": "r"}},
    {"cmd": "aibot_msg_callback", "headers": {}, "body": {"msgid": "m"}},
    {"cmd": "aibot_msg_callback", "headers": {"req_id": "r"}, "body": {"msgid": "m"}},
    {"cmd": "other", "headers": {"req_id": "r"}, "body": {"msgid": "m",
                                                           "from": {"userid": "u"}}},
])
def test_bad_frames_raise_parse_error(frame):
    with pytest.raises(ParseError):
        parse(frame, BOT_ID)


async def test_answers_on_one_req_id_wait_for_each_ack(aibot):
    sim, conn = aibot.sim, aibot.transport
    sim.ack_delay_s = 0.2
    req_id = await sim.push_text("zhangsan", "x")  # a real req_id of this connection
    body = {"msgtype": "stream", "stream": {"id": "s", "finish": True, "content": "1"}}
    await asyncio.gather(conn.request("aibot_respond_msg", req_id, body),
                         conn.request("aibot_respond_msg", req_id, body),
                         conn.request("aibot_send_msg", "other-req",
                                      {"chatid": "lisi", "msgtype": "markdown",
                                       "markdown": {"content": "y"}}))
    mine = [step for step, r in sim.timeline if r == req_id]
    assert mine == ["recv", "ack", "recv", "ack"]  # never two in flight on one req_id
    order = [(step, r) for step, r in sim.timeline if step == "recv"]
    assert order.index(("recv", "other-req")) < 2  # other req_ids are not held up


async def test_no_ack_in_time_is_transient_and_a_refusal_is_an_ack_error(aibot):
    aibot.sim.ack_delay_s = 1.0
    aibot.transport.ack_timeout = 0.2
    target = Target(platform="wecom_aibot", app_id=BOT_ID, kind="user", id="zhangsan")
    with pytest.raises(TransientError, match="no ack"):
        await aibot.adapter.deliver(target, OutMessage(kind="text", text="t"), "k")
    aibot.sim.ack_delay_s = 0
    aibot.transport.ack_timeout = 5.0
    with pytest.raises(AckError):
        await aibot.transport.request("aibot_respond_msg", "never-pushed", {"msgtype": "stream"})
    await wait_for(lambda: aibot.transport.state == "connected")
