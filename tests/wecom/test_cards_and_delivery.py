"""Cards on WeCom end to end, and the client's token refresh / rate-limit / media paths."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from bot.app import ADAPTERS
from bot.event import MediaRef
from bot.platform import MediaError
from tests.wecom.conftest import Env


async def _help_card(env: Env, user: str):
    status, _ = await env.sim.send_text(env.url, user, "help")
    assert status == 200
    sent = await env.wait_sent(1, user=user)
    call = sent[0]
    assert call.body["msgtype"] == "template_card"
    return call


async def test_help_card_tap_updates_the_card(env: Env):
    call = await _help_card(env, "zhangsan")
    tpl = call.body["template_card"]
    assert tpl["card_type"] == "button_interaction"
    assert tpl["main_title"]["title"] == "拜访助手 FieldBot · 帮助"
    for example in ("同步", "报价 华东精密 86000", "审批规则", "提醒"):  # the generated list
        assert example in tpl["sub_title_text"]
    button = tpl["button_list"][0]
    assert button["style"] == 1 and len(button["key"].encode()) <= 1024
    code = call.result["response_code"]
    # the outbox kept what later updates need
    await env.wait_for(lambda: env.count("outbox", "status='sent'") == 1, what="marked sent")
    result = env.sql("SELECT result FROM outbox")[0][0]
    assert code in str(result) and tpl["task_id"] in str(result)

    status, body = await env.sim.tap_card(env.url, "zhangsan", button["key"], tpl["task_id"],
                                          response_code=code)
    assert (status, body) == (200, "")
    updates = await env.wait_for(env.sim.updates, what="card update")
    up = updates[0].body
    assert up["response_code"] == code
    assert up["userids"] == ["zhangsan"] and up["agentid"] == 218
    card = up["template_card"]  # the whole card redrawn: the outcome shown, no buttons
    assert card["emphasis_content"]["title"] == "已读 ✓" and "button_list" not in card
    assert card["task_id"] == tpl["task_id"]
    assert env.sim.response_codes[code]["used"] is True
    await env.wait_idle()
    assert env.count("audit_log", "action='help.ack'") == 1
    # tapping the same button again is a new callback; the spent code cannot update twice
    await env.sim.tap_card(env.url, "zhangsan", button["key"], tpl["task_id"],
                           response_code=code)
    await env.wait_idle()
    assert len(env.sim.updates()) == 1


async def test_forged_event_key_is_refused(env: Env):
    call = await _help_card(env, "lisi")
    tpl = call.body["template_card"]
    key = tpl["button_list"][0]["key"]
    body, mac = key.split(".")
    forged_keys = [body + "." + ("A" if mac[0] != "A" else "B") + mac[1:],
                   "eyJuIjoiaGVscC5hY2sifQ.AAAAAAAAAAAAAAAAAAAAAA", "help.ack", ""]
    for forged in forged_keys:
        status, _ = await env.sim.tap_card(env.url, "lisi", forged, tpl["task_id"])
        assert status == 200  # acknowledged, but refused inside
    await env.wait_idle()
    assert env.sim.updates() == []
    assert env.count("audit_log", "action='help.ack'") == 0
    assert env.count("audit_log", "action='card.forged_action'") == len(forged_keys)
    assert env.count("outbox", "status='pending'") == 0
    # the card itself, then one refusal per forged tap (WeCom has no toast)
    sent = env.sim.sent("lisi")
    assert len(sent) == 1 + len(forged_keys)
    assert all("无效的操作" in c.body["text"]["content"] for c in sent[1:])


async def test_token_refresh_on_42001(env: Env):
    await env.sim.send_text(env.url, "wangwu", "first")
    await env.wait_sent(1, user="wangwu")
    assert len(env.recorder.of("wecom", "token")) == 1
    env.sim.faults.token_invalid = 1
    await env.sim.send_text(env.url, "wangwu", "second")
    sent = await env.wait_sent(2, user="wangwu")
    assert sent[1].body["text"]["content"].startswith("收到文字：second")
    assert len(env.recorder.of("wecom", "token")) == 2
    rejected = [c for c in env.recorder.of("wecom", "send") if c.result.get("errcode") == 42001]
    assert len(rejected) == 1


async def test_rate_limited_answer_is_retried_and_delivered(env: Env):
    env.sim.faults.rate_limited = 1
    await env.sim.send_text(env.url, "zhaoliu", "busy")
    sent = await env.wait_sent(1, user="zhaoliu", timeout=15)
    assert sent[0].body["text"]["content"].startswith("收到文字：busy")
    limited = [c for c in env.recorder.of("wecom", "send") if c.result.get("errcode") == 45033]
    assert len(limited) == 1
    await env.wait_idle(timeout=15)
    row = env.sql("SELECT status, attempts FROM outbox")[0]
    assert row[0] == "sent" and row[1] == 1  # a refusal to slow down is not a failed attempt


async def test_server_error_is_retried(env: Env):
    env.sim.faults.server_error = 1
    await env.sim.send_text(env.url, "sunqi", "oops")
    await env.wait_sent(1, user="sunqi", timeout=15)
    await env.wait_idle(timeout=15)
    assert env.sql("SELECT status FROM outbox")[0][0] == "sent"


async def test_media_download_with_cap(env: Env):
    adapter = env.app[ADAPTERS]["wecom"]
    env.sim.add_media("MID1", b"#!AMR\n" + b"\x00" * 2000)
    data = await adapter.download_media(MediaRef(kind="voice", key="MID1"), 10_000)
    assert data.startswith(b"#!AMR")
    with pytest.raises(MediaError):
        await adapter.download_media(MediaRef(kind="voice", key="MID1"), 1000)
    with pytest.raises(MediaError):
        await adapter.download_media(MediaRef(kind="voice", key="nope"), 1000)


async def test_system_busy_comes_with_http_200(env: Env):
    env.sim.faults.server_error = 1
    await env.sim.send_text(env.url, "sunqi", "busy?")
    await env.wait_sent(1, user="sunqi", timeout=15)
    busy = [c for c in env.recorder.of("wecom", "send") if c.result.get("errcode") == -1]
    assert len(busy) == 1  # answered 200 with errcode -1, retried as transient


async def test_untrusted_ip_is_a_configuration_error_not_40_minutes_of_retries(env: Env):
    """60020: the server's IP is not in 企业可信IP. The message is kept (not dead, attempts not
    used up), /healthz names the IP to add; once it is added the message goes out."""
    import aiohttp

    from bot.app import OUTBOX

    env.sim.untrusted_ip = True
    await env.sim.send_text(env.url, "zhouba", "可信IP？")
    outbox = env.app[OUTBOX]
    deadline = asyncio.get_running_loop().time() + 10
    while "wecom" not in outbox.problems:
        assert asyncio.get_running_loop().time() < deadline, "no configuration error"
        await asyncio.sleep(0.05)
    async with aiohttp.ClientSession() as s, s.get(env.bot.make_url("/healthz")) as r:
        problem = (await r.json())["config_errors"]["wecom"]
    assert problem["code"] == "60020" and "127.0.0.1" in problem["hint"]
    assert "企业可信IP" in problem["hint"]
    row = env.sql("SELECT status, attempts FROM outbox")[0]
    assert row == ("pending", 0)
    assert len(env.recorder.of("wecom", "send")) == 1  # not hammered meanwhile
    env.sim.untrusted_ip = False
    env.execute("UPDATE outbox SET next_at = :t", t=datetime(2000, 1, 1))
    outbox.wake()
    await env.wait_sent(1, user="zhouba", timeout=15)
    await env.wait_idle(timeout=15)
    assert "wecom" not in outbox.problems


async def test_daily_quota_waits_for_midnight(env: Env):
    from bot.app import OUTBOX

    env.sim.daily_quota_left = 0
    await env.sim.send_text(env.url, "wujiu", "配额？")
    outbox = env.app[OUTBOX]
    deadline = asyncio.get_running_loop().time() + 10
    while "wecom" not in outbox.problems:
        assert asyncio.get_running_loop().time() < deadline, "no configuration error"
        await asyncio.sleep(0.05)
    assert "midnight" in outbox.problems["wecom"]["hint"]
    # the row is pushed back (its UPDATE follows the problem's record by a moment), not dead
    while True:
        next_at, created, status = env.sql("SELECT next_at, created_at, status FROM outbox")[0]
        if _dt(next_at) > _dt(created):
            break
        assert asyncio.get_running_loop().time() < deadline, "not pushed back"
        await asyncio.sleep(0.05)
    assert status == "pending"


def _dt(value):
    """Naive UTC, whichever way the database hands it back."""
    from datetime import UTC

    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return dt.astimezone(UTC).replace(tzinfo=None) if dt.tzinfo else dt
