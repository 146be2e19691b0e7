"""The official Python SDK (PyPI ``wecom-aibot-sdk`` 1.0.8, the port of WecomTeam/aibot-node-sdk)
against the simulator, endpoint overridden (``ws_url``) and nothing else patched: it subscribes,
receives pushes, its replies / card updates are acked, it decrypts the simulator's media, and a
second client with the same bot id kicks the first (``disconnected_event``) — proof the fake
speaks the real dialect. A test-only package: skipped when it is not installed."""

from __future__ import annotations

import asyncio
import os

import pytest

from tests.wecom_aibot.conftest import BOT_ID, SECRET, start_sim, wait_for

sdk = pytest.importorskip("wecom_aibot_sdk", reason="wecom-aibot-sdk not installed (test-only: "
                          "pip install wecom-aibot-sdk==1.0.8)")


class _Quiet:
    def debug(self, *a):
        pass

    info = warn = warning = error = debug


def _client(url: str, secret: str = SECRET, **kw):
    return sdk.WSClient(BOT_ID, secret, ws_url=url, heartbeat_interval=200,
                        reconnect_interval=100, max_reconnect_attempts=1,
                        max_auth_failure_attempts=1, logger=_Quiet(), **kw)


async def test_the_official_sdk_talks_to_the_simulator():
    sim, _rec, api, url = await start_sim()
    client = _client(url)
    got: dict[str, list] = {"text": [], "tap": [], "image": [], "kicked": []}

    async def on_text(frame):
        got["text"].append(frame)
        await client.reply_stream(frame, "s1", "收到：" + frame["body"]["text"]["content"],
                                  finish=True)

    async def on_tap(frame):
        got["tap"].append(frame)
        await client.update_template_card(frame, {"card_type": "text_notice",
                                                  "main_title": {"title": "已处理"},
                                                  "task_id": "task-1"})

    async def on_image(frame):
        img = frame["body"]["image"]
        got["image"].append((await client.download_file(img["url"], img["aeskey"]))["buffer"])

    client.on("message.text", on_text)
    client.on("event.template_card_event", on_tap)
    client.on("message.image", on_image)
    client.on("event.disconnected_event", lambda frame: got["kicked"].append(frame))
    try:
        await client.connect()
        await sim.wait_connected()
        req_id = await sim.push_text("zhangsan", "你好")
        (ack,) = await wait_for(lambda: sim.ok("aibot_respond_msg"))
        assert ack.result["req_id"] == req_id and ack.body["stream"]["content"] == "收到：你好"

        tap = await sim.push_tap("zhangsan", "approve", "task-1")
        await wait_for(lambda: sim.ok("aibot_respond_update_msg"))
        assert sim.ok("aibot_respond_update_msg")[0].result["req_id"] == tap
        assert got["tap"][0]["body"]["event"]["template_card_event"]["event_key"] == "approve"

        data = os.urandom(3000)
        await sim.push_image("zhangsan", data)
        await wait_for(lambda: got["image"])
        assert got["image"][0] == data  # the SDK's own decryptFile agrees with our encryption

        await sim.wait_connected()
        second = _client(url)
        await second.connect()
        await wait_for(lambda: got["kicked"])
        await asyncio.sleep(0.5)
        assert sim.kicks == 1 and len(sim.subscribes) == 2  # the kicked SDK does not return
        await second.disconnect()
    finally:
        await client.disconnect()
        await api.close()


async def test_the_official_sdk_is_refused_a_wrong_secret():
    sim, _rec, api, url = await start_sim()
    client = _client(url, secret="wrong")
    errors: list = []
    client.on("error", lambda exc: errors.append(exc))
    try:
        await client.connect()
        await wait_for(lambda: any("853000" in str(e) for e in errors))
        assert sim.subscribes[0]["errcode"] == 853000 and not sim.connected
    finally:
        await client.disconnect()
        await api.close()
