"""Feishu API client and adapter delivery against the fake API (no database needed)."""

from __future__ import annotations

import json

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.event import OutMessage, Target
from bot.platform import PermanentError, RateLimited, TransientError
from cards import Button, Card
from config import load_settings
from integrations.feishu.adapter import Adapter
from integrations.feishu.client import FeishuClient, feishu_uuid
from simulator.core import Recorder
from simulator.feishu import FeishuSim
from tests.conftest import free_port


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
async def api():
    rec = Recorder()
    sim = FeishuSim(rec, "cli_a", "sec", "vt", "ek")
    app = web.Application()
    sim.add_routes(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        yield sim, rec, str(server.make_url("")).rstrip("/"), http
    await server.close()


async def test_token_cached_until_expiry_minus_margin(api):
    sim, rec, base, http = api
    clock = Clock()
    client = FeishuClient(base, "cli_a", "sec", http, clock=clock)
    sim.clock = clock  # tokens on the fake expire by the same clock
    for _ in range(3):
        await client.send("open_id", "ou_1", "text", {"text": "x"})
    assert len(rec.of("feishu", "token")) == 1
    clock.t += 7200 - 300 + 1  # inside the margin: refresh before Feishu would refuse it
    await client.send("open_id", "ou_2", "text", {"text": "y"})
    assert len(rec.of("feishu", "token")) == 2
    assert rec.of("feishu", "rejected") == []


async def test_error_mapping(api):
    sim, rec, base, http = api
    client = FeishuClient(base, "cli_a", "sec", http)
    sim.faults.server_error = 1
    with pytest.raises(TransientError):
        await client.send("open_id", "ou_1", "text", {"text": "x"})
    sim.faults.rate_limited = 1
    with pytest.raises(RateLimited) as exc:
        await client.send("open_id", "ou_1", "text", {"text": "x"})
    assert exc.value.code == 99991400 and exc.value.retry_after == 1.0
    with pytest.raises(PermanentError):
        await client.send("bogus_id", "ou_1", "text", {"text": "x"})
    with pytest.raises(PermanentError):
        await FeishuClient(base, "cli_a", "wrong-secret", http).send(
            "open_id", "ou_1", "text", {"text": "x"})
    dead = FeishuClient(f"http://127.0.0.1:{free_port()}", "cli_a", "sec", http)
    with pytest.raises(TransientError):
        await dead.send("open_id", "ou_1", "text", {"text": "x"})


async def test_uuid_dedupe_and_length(api):
    sim, rec, base, http = api
    client = FeishuClient(base, "cli_a", "sec", http)
    long_key = "in:123456789:" + "x" * 80
    assert len(feishu_uuid(long_key)) <= 50 and feishu_uuid("in:1:1") == "in:1:1"
    a = await client.send("open_id", "ou_1", "text", {"text": "x"}, long_key)
    b = await client.send("open_id", "ou_1", "text", {"text": "x"}, long_key)
    assert a == b and len(sim.delivered("ou_1")) == 1
    assert len(rec.of("feishu", "send_dup")) == 1


async def test_adapter_update_card_token_then_patch_fallback(api, tmp_path):
    sim, rec, base, http = api
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", data_dir=tmp_path,
                             feishu_app_id="cli_a", feishu_app_secret="sec",
                             feishu_verification_token="vt", feishu_encrypt_key="ek",
                             feishu_api_base=base)
    adapter = Adapter(settings, ingress=None)
    await adapter.start(http)
    target = Target(platform="feishu", app_id="cli_a", kind="user", id="ou_1")
    card = Card(title="T", buttons=[Button(text="B", action="tok")])
    sent = await adapter.deliver(target, OutMessage(kind="card", card=card.model_dump()), "k1")
    mid = sent["message_id"]
    sim.issue_card_token("c-1", mid)
    done = Card(title="T", status="done").model_dump()
    ref = {"token": "c-1", "open_message_id": mid}
    for _ in range(2):  # the delayed-update token works twice …
        r = await adapter.deliver(target, OutMessage(kind="update_card", card=done,
                                                     card_ref=ref), "k2")
        assert r == {"updated": "token"}
    # … then is refused, and the adapter patches the message instead
    r = await adapter.deliver(target, OutMessage(kind="update_card", card=done, card_ref=ref),
                              "k3")
    assert r["updated"] == "patch"
    assert "done" in json.dumps(sim.messages[mid].content)
    with pytest.raises(PermanentError):
        await adapter.deliver(target, OutMessage(kind="update_card", card=done,
                                                 card_ref={"token": "c-unknown"}), "k4")
    md = await adapter.deliver(target, OutMessage(kind="markdown", text="**b**"), "k5")
    assert sim.messages[md["message_id"]].msg_type == "post"
    chat = await adapter.deliver(target.model_copy(update={"extra": {"chat_id": "oc_1"}}),
                                 OutMessage(kind="text", text="hi"), "k6")
    assert sim.messages[chat["message_id"]].receive_id_type == "chat_id"
    assert adapter.rate_limit(target) == (5, 1.0)


async def test_per_receiver_limit_and_oversized_card(api, tmp_path):
    """230020 (5 QPS per receiver) is a rate limit; a card over 30 KB — which Feishu refuses
    with 230025, losing the message — goes out as text instead."""
    sim, rec, base, http = api
    client = FeishuClient(base, "cli_a", "sec", http)
    sim.limit.n = 1
    await client.send("open_id", "ou_9", "text", {"text": "1"})
    with pytest.raises(RateLimited) as exc:
        await client.send("open_id", "ou_9", "text", {"text": "2"})
    assert exc.value.code == 230020
    sim.limit.n = 10**6
    big = {"elements": [{"tag": "div", "text": {"tag": "plain_text", "content": "字" * 12000}}]}
    with pytest.raises(PermanentError) as exc:  # the platform's own refusal, as a reference
        await client.send("open_id", "ou_9", "interactive", big)
    assert exc.value.code == 230025
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", data_dir=tmp_path,
                             feishu_app_id="cli_a", feishu_app_secret="sec",
                             feishu_verification_token="vt", feishu_encrypt_key="ek",
                             feishu_api_base=base)
    adapter = Adapter(settings, ingress=None)
    await adapter.start(http)
    target = Target(platform="feishu", app_id="cli_a", kind="user", id="ou_9")
    card = Card(title="客户清单", text="很长的内容" * 3000, buttons=[Button(text="B", action="t")])
    sent = await adapter.deliver(target, OutMessage(kind="card", card=card.model_dump()), "k9")
    msg = sim.messages[sent["message_id"]]
    assert msg.msg_type == "text" and msg.content["text"].startswith("【客户清单】")
    assert "已转为文字" in msg.content["text"]
    small = Card(title="小卡片", buttons=[Button(text="B", action="t")])
    sent = await adapter.deliver(target, OutMessage(kind="card", card=small.model_dump()), "k10")
    assert sim.messages[sent["message_id"]].msg_type == "interactive"


async def test_patch_only_within_14_days_then_sent_anew(api, tmp_path):
    """Feishu PATCHes a card for 14 days; an update to an older one (no tap token) goes out
    as a new card instead of failing."""
    import time as _time

    sim, rec, base, http = api
    clock = Clock()
    sim.clock = clock
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", data_dir=tmp_path,
                             feishu_app_id="cli_a", feishu_app_secret="sec",
                             feishu_verification_token="vt", feishu_encrypt_key="ek",
                             feishu_api_base=base)
    adapter = Adapter(settings, ingress=None)
    await adapter.start(http)
    target = Target(platform="feishu", app_id="cli_a", kind="user", id="ou_old")
    card = Card(title="告警", buttons=[Button(text="已跟进", action="tok")])
    sent = await adapter.deliver(target, OutMessage(kind="card", card=card.model_dump()), "s1")
    assert set(sent) == {"message_id", "sent_at"}
    done = Card(title="告警", status="已跟进 ✓").model_dump()
    ref = dict(sent, open_message_id=sent["message_id"])
    r = await adapter.deliver(target, OutMessage(kind="update_card", card=done, card_ref=ref),
                              "u1")
    assert r["updated"] == "patch"
    clock.t += 15 * 86400  # the fake refuses a PATCH of a message this old
    client = adapter.client
    with pytest.raises(PermanentError) as exc:
        await client.patch_message(sent["message_id"], {"elements": []})
    assert exc.value.code == 230031
    old_ref = dict(ref, sent_at=int(_time.time()) - 15 * 86400)
    r = await adapter.deliver(target, OutMessage(kind="update_card", card=done,
                                                 card_ref=old_ref), "u2")
    assert r["message_id"] != sent["message_id"]  # a new card, showing the new state
    assert "已跟进" in json.dumps(sim.messages[r["message_id"]].content, ensure_ascii=False)
