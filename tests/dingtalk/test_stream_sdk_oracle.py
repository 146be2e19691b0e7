"""The official ``dingtalk-stream`` SDK (0.24.3) as an oracle for the simulator's Stream gateway.

The SDK runs in a subprocess (its open call is a blocking ``requests.post``, and its endpoint is
read from ``DINGTALK_OPENAPI_ENDPOINT`` at import), pointed at the simulator; only
``get_host_ip`` is replaced (it would open a UDP socket towards 8.8.8.8: loopback only here).
It must open a ticket, connect, receive a robot message, a card callback and a SYSTEM ping in
the simulator's frames, and answer each with an ack the simulator accepts.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from simulator.core import Recorder
from simulator.dingtalk import DingTalkSim
from simulator.dingtalk_stream import CARD_TOPIC, ROBOT_TOPIC

pytest.importorskip("dingtalk_stream")

SDK_SCRIPT = r'''
import json, sys
import dingtalk_stream
from dingtalk_stream import AckMessage, ChatbotMessage

dingtalk_stream.DingTalkStreamClient.get_host_ip = lambda self: "127.0.0.1"

class Bot(dingtalk_stream.ChatbotHandler):
    async def process(self, callback):
        msg = ChatbotMessage.from_dict(callback.data)
        print(json.dumps({"robot": msg.text.content, "sender": msg.sender_staff_id,
                          "msg_id": msg.message_id}), flush=True)
        return AckMessage.STATUS_OK, "OK"

class Card(dingtalk_stream.CallbackHandler):
    async def process(self, callback):
        print(json.dumps({"card": callback.data.get("outTrackId")}), flush=True)
        return AckMessage.STATUS_OK, {}

client = dingtalk_stream.DingTalkStreamClient(
    dingtalk_stream.Credential(sys.argv[1], sys.argv[2]))
client.register_callback_handler(ChatbotMessage.TOPIC, Bot())
client.register_callback_handler(dingtalk_stream.CallbackHandler.TOPIC_CARD_CALLBACK, Card())
client.start_forever()
'''


async def _line(proc: subprocess.Popen, timeout: float = 10.0) -> dict:
    loop = asyncio.get_running_loop()
    line = await asyncio.wait_for(loop.run_in_executor(None, proc.stdout.readline), timeout)
    return json.loads(line)


async def test_official_sdk_speaks_with_the_simulator():
    sim = DingTalkSim(Recorder(), "dingappkey", "dingsecret", "dingrobot", "t", "a" * 43)
    app = web.Application()
    sim.add_routes(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    env = dict(os.environ, DINGTALK_OPENAPI_ENDPOINT=str(server.make_url("")).rstrip("/"))
    proc = subprocess.Popen([sys.executable, "-c", SDK_SCRIPT, "dingappkey", "dingsecret"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        conn = (await sim.stream.wait_connected(timeout=20))[0]
        subs = conn.subscriptions
        assert {"type": "CALLBACK", "topic": ROBOT_TOPIC} in subs
        assert {"type": "CALLBACK", "topic": CARD_TOPIC} in subs
        ack = await sim.stream_text("zhangsan", "你好 SDK", msg_id="msg-sdk-1")
        assert ack is not None and ack["code"] == 200
        assert ack["headers"]["contentType"] == "application/json"
        assert json.loads(ack["data"]) == {"response": "OK"}
        got = await _line(proc)
        assert got == {"robot": "你好 SDK", "sender": "zhangsan", "msg_id": "msg-sdk-1"}
        card_ack = await sim.stream_tap("zhangsan", "fb-track-1", "tok")
        assert card_ack is not None and card_ack["code"] == 200
        assert await _line(proc) == {"card": "fb-track-1"}
        ping = await sim.stream.ping(conn)
        assert ping is not None and ping["code"] == 200
        assert json.loads(ping["data"])["opaque"] == ping["headers"]["messageId"]
    finally:
        proc.kill()
        proc.wait(timeout=10)
        await server.close()
