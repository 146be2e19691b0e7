"""The long connections' frame handling under hypothesis: DingTalk Stream JSON frames, Feishu's
protobuf frames (``integrations/feishu/frames.py``) and WeCom AI bot JSON frames — arbitrary
bytes and text, hostile JSON (deep nesting, huge numbers, NaN/Infinity, wrong types in the
fields the parsers read) inside otherwise valid frames.

Each transport's frame handler is driven as its socket loop drives it, with a fake socket (the
platform edge) and an ingress that accepts every event. It must never raise (a raise ends the
connection: a reconnect per bad frame), its frame tasks must never fail, nothing may hang, an
event frame gets exactly one acknowledgement (else the platform re-pushes it forever), and
no traceback reaches the log. The codec and the parsers raise only their documented errors.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import load_settings
from integrations.dingtalk.parse import is_card_callback, parse_card_callback, parse_robot
from integrations.dingtalk.stream import CARD_TOPIC, ROBOT_TOPIC, DingTalkStream
from integrations.feishu import frames
from integrations.feishu.ws import FeishuWs
from integrations.wecom_aibot.adapter import Adapter as AibotAdapter
from integrations.wecom_aibot.parse import ParseError, parse
from tests.reliability.fuzz_inputs import deep_json, huge_numbers, json_texts, json_values

pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")

N = 3 * int(os.environ.get("FIELDBOT_FUZZ_EXAMPLES", "50"))  # as in test_fuzz_http
HANG_S = 2.0
P99_S = 0.05
SETTINGS = settings(max_examples=N, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


class FakeWS:
    """The socket: records what the transport sends; yields the given messages."""

    def __init__(self, messages=()):
        self.sent: list[Any] = []
        self.closed = False
        self.close_code = None
        self._messages = list(messages)

    async def send_str(self, data: str) -> None:
        self.sent.append(data)

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)

    def exception(self):
        return None

    def __aiter__(self):
        return self._iter()

    async def _iter(self):
        for m in self._messages:
            yield m


class AcceptAll:
    """The ingress: every event is new; no toast."""

    def __init__(self):
        self.events = []

    async def submit(self, event, toast_wait: float = 0.0):
        self.events.append(event)
        return True, None


class Driver:
    """One event loop for a test's examples; each step timed, its frame tasks awaited."""

    def __init__(self, caplog):
        self.loop = asyncio.new_event_loop()
        self.times: list[float] = []
        self.caplog = caplog

    def run(self, transport, step) -> None:
        before = len(self.caplog.records)

        async def go():
            await step()
            tasks = list(transport._tasks)
            results = await asyncio.gather(*tasks, return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            assert not failed, failed

        t0 = time.perf_counter()
        self.loop.run_until_complete(asyncio.wait_for(go(), HANG_S))
        self.times.append(time.perf_counter() - t0)
        records = [r for r in self.caplog.records[before:]
                   if "another connection subscribed" not in r.getMessage()]  # a kick frame
        assert not [r for r in records if r.exc_info or r.levelno >= logging.ERROR], \
            [r.getMessage()[:200] for r in records]

    def close(self, name: str) -> None:
        self.loop.close()
        kept = sorted(self.times[5:] or self.times)
        p99 = kept[min(len(kept) - 1, int(len(kept) * 0.99))]
        print(f"{name:20s} n={len(self.times)} p99={p99 * 1000:.1f} ms"
              f" max={kept[-1] * 1000:.1f} ms")
        assert p99 <= P99_S, f"{name}: p99 {p99 * 1000:.1f} ms"


@pytest.fixture
def driver(caplog):
    caplog.set_level(logging.INFO)
    return Driver(caplog)


# -- DingTalk Stream ---------------------------------------------------------------------------
def _ding_frame(kind: str, topic: str, data: Any) -> dict:
    return {"specVersion": "1.0", "type": kind,
            "headers": {"topic": topic, "messageId": "msg-1", "contentType": "application/json",
                        "time": "1700000000000", "appId": "ding-app"},
            "data": data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}


ROBOT = {"msgId": "m1", "msgtype": "audio", "senderStaffId": "zhangsan", "conversationType": "2",
         "conversationId": "cid==", "createAt": 1700000000000, "senderNick": "张三",
         "sessionWebhook": "http://127.0.0.1:9/x", "sessionWebhookExpiredTime": 1700000090000,
         "content": {"downloadCode": "dl", "duration": 3000, "recognition": "拜访"},
         "text": {"content": "hi"}}
CARD = {"type": "actionCallback", "outTrackId": "fb-1", "userId": "zhangsan", "corpId": "c",
        "content": json.dumps({"cardPrivateData": {"actionIds": ["btn_0"],
                                                   "params": {"action": "tok", "a": "b"}}})}
DING_FRAMES = [_ding_frame("CALLBACK", ROBOT_TOPIC, ROBOT),
               _ding_frame("CALLBACK", ROBOT_TOPIC, {**ROBOT, "msgtype": "richText",
                                                     "content": {"richText": [{"text": "a"}]}}),
               _ding_frame("CALLBACK", CARD_TOPIC, CARD),
               _ding_frame("SYSTEM", "ping", {"opaque": "x"}),
               _ding_frame("EVENT", "chat_update_title", {"a": 1})]
deep_data = st.builds(lambda kind, topic, d: json.dumps(_ding_frame(kind, topic, d.decode())),
                      st.sampled_from(["CALLBACK", "SYSTEM", "EVENT"]),
                      st.sampled_from([ROBOT_TOPIC, CARD_TOPIC, "ping"]),
                      deep_json() | huge_numbers())
ding_texts = st.one_of(json_texts(*DING_FRAMES), deep_data, st.text(max_size=300))


def _acks_expected(text: str) -> int | None:
    """1 for a readable CALLBACK / EVENT / ping frame (it must be acknowledged), else None."""
    try:
        frame = json.loads(text)
        kind, headers = frame.get("type"), frame.get("headers")
        topic = headers.get("topic") if isinstance(headers, dict) else None
    except (ValueError, RecursionError, AttributeError):
        return None
    if kind in ("CALLBACK", "EVENT") or (kind == "SYSTEM" and topic == "ping"):
        return 1 if isinstance(headers, dict) else None
    return None


def test_dingtalk_stream_frames(driver):
    transport = DingTalkStream(AcceptAll(), "http://127.0.0.1:9", "ding-app", "secret")

    @SETTINGS
    @given(ding_texts)
    def one(text):
        ws = FakeWS()
        driver.run(transport, lambda: transport.on_frame(ws, text))
        want = _acks_expected(text)
        assert len(ws.sent) == want if want is not None else len(ws.sent) <= 1, ws.sent

    try:
        one()
    finally:
        driver.close("dingtalk stream")


def _safe_loads(text: str):
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


@SETTINGS
@given(json_values | st.builds(_safe_loads, json_texts(ROBOT, CARD)))
def test_dingtalk_parsers_raise_only_what_the_stream_catches(raw):
    try:
        if isinstance(raw, dict) and is_card_callback(raw):
            parse_card_callback(raw, "ding-app")
        else:
            parse_robot(raw, "ding-app")
    except (ValueError, TypeError, AttributeError):  # on_callback's except: a 400 ack
        pass


# -- Feishu ------------------------------------------------------------------------------------
FEISHU_EVENT = {"schema": "2.0",
                "header": {"event_id": "e1", "token": "vt", "create_time": "1700000000000",
                           "event_type": "im.message.receive_v1", "tenant_key": "t",
                           "app_id": "cli_1"},
                "event": {"sender": {"sender_id": {"open_id": "ou_1"}, "sender_type": "user"},
                          "message": {"message_id": "om_1", "chat_id": "oc_1",
                                      "chat_type": "p2p", "message_type": "audio",
                                      "content": json.dumps({"file_key": "f",
                                                             "duration": 3000})}}}
LEGACY_CARD = {"open_id": "ou_1", "open_message_id": "om_1", "token": "c-1",
               "action": {"value": {"t": "tok"}, "tag": "button"}}


def _feishu_frame(method: int, kind: str, payload: bytes, extra: list) -> bytes:
    headers = [("type", kind), ("message_id", "m1"), ("trace_id", "t"), *extra]
    return frames.encode(frames.Frame(SeqID=1, LogID=2, service=3, method=method,
                                      headers=headers, payload=payload))


feishu_payloads = st.one_of(json_texts(FEISHU_EVENT, LEGACY_CARD).map(str.encode), deep_json(),
                            huge_numbers(), st.binary(max_size=200))
fragment_headers = st.lists(st.tuples(st.sampled_from(["sum", "seq", "message_id"]),
                                      st.sampled_from(["0", "1", "2", "-1", "4097", "x", ""])),
                            max_size=3)
feishu_valid = st.builds(_feishu_frame, st.sampled_from([frames.DATA, frames.DATA,
                                                         frames.CONTROL, 7]),
                         st.sampled_from(["event", "card", "pong", "ping", "other"]),
                         feishu_payloads, fragment_headers)


@st.composite
def feishu_damaged(draw) -> bytes:
    """A valid frame truncated, extended or with bytes overwritten."""
    data = bytearray(draw(feishu_valid))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        how = draw(st.sampled_from(["cut", "set", "add"]))
        if how == "cut":
            del data[at:]
        elif how == "set":
            data[at] = draw(st.integers(0, 255))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=10))
    return bytes(data)


feishu_bytes = st.one_of(feishu_valid, feishu_damaged(), st.binary(max_size=500))


@SETTINGS
@given(feishu_bytes)
def test_feishu_decode_raises_only_frame_error(data):
    t0 = time.perf_counter()
    try:
        frame = frames.decode(data)
    except frames.FrameError:
        return
    finally:
        assert time.perf_counter() - t0 < HANG_S
    assert frames.decode(frames.encode(frame)) == frame  # what it read, it can write back


def _whole(frame: frames.Frame) -> bool:
    """Not a fragment, and sum/seq readable (a frame with garbage there is dropped unacked,
    logged: the transport cannot tell what it belongs to)."""
    try:
        return int(frame.header("sum", "1") or 1) <= 1 and int(frame.header("seq", "0") or 0) > -1
    except ValueError:
        return False


def test_feishu_ws_frames(driver):
    transport = FeishuWs(api_base="http://127.0.0.1:9", app_id="cli_1", app_secret="s",
                         ingress=AcceptAll())

    @SETTINGS
    @given(feishu_bytes)
    def one(data):
        ws = FakeWS()
        driver.run(transport, lambda: transport._on_frame(ws, data))
        assert len(ws.sent) <= 1, ws.sent
        try:
            frame = frames.decode(data)
        except frames.FrameError:
            return
        if frame.method == frames.DATA and _whole(frame):  # a whole data frame is acked
            assert len(ws.sent) == 1, frame

    try:
        one()
    finally:
        driver.close("feishu ws")


# -- WeCom AI bot ------------------------------------------------------------------------------
AIBOT_MSG = {"cmd": "aibot_msg_callback", "headers": {"req_id": "r1"},
             "body": {"msgid": "m1", "aibotid": "bot", "chattype": "group", "chatid": "c1",
                      "from": {"userid": "zhangsan"}, "create_time": 1700000000,
                      "msgtype": "mixed", "mixed": {"msg_item": [
                          {"msgtype": "text", "text": {"content": "@bot hi"}},
                          {"msgtype": "image", "image": {"url": "http://x", "aeskey": "k"}}]},
                      "voice": {"content": "拜访", "url": "http://v"}}}
AIBOT_TAP = {"cmd": "aibot_event_callback", "headers": {"req_id": "r2"},
             "body": {"msgid": "m2", "from": {"userid": "zhangsan"}, "msgtype": "event",
                      "event": {"eventtype": "template_card_event", "template_card_event": {
                          "event_key": "tok|a=b", "task_id": "t1", "selected_items": {
                              "selected_item": [{"question_key": "q",
                                                 "option_ids": {"option_id": ["o1"]}}]}}}}}
aibot_texts = st.one_of(json_texts(AIBOT_MSG, AIBOT_TAP, {"headers": {"req_id": "r3"},
                                                          "errcode": 0}),
                        deep_json().map(bytes.decode), huge_numbers().map(bytes.decode),
                        st.text(max_size=300))


def test_wecom_aibot_frames(driver, tmp_path):
    settings_ = load_settings(data_dir=tmp_path, wecom_aibot_bot_id="bot",
                              wecom_aibot_secret="s", wecom_aibot_ws_url="ws://127.0.0.1:9")
    adapter = AibotAdapter(settings_, AcceptAll())
    transport = adapter.transport

    @SETTINGS
    @given(st.lists(aibot_texts | st.binary(max_size=200), min_size=1, max_size=3))
    def one(datas):
        kinds = [aiohttp.WSMsgType.BINARY if isinstance(d, bytes) else aiohttp.WSMsgType.TEXT
                 for d in datas]
        ws = FakeWS([aiohttp.WSMessage(k, d, None) for k, d in zip(kinds, datas, strict=True)])
        transport._stopping = transport.superseded = False
        driver.run(transport, lambda: transport._read(ws))

    try:
        one()
    finally:
        driver.close("wecom aibot")


@SETTINGS
@given(json_values | st.builds(_safe_loads, json_texts(AIBOT_MSG, AIBOT_TAP)))
def test_wecom_aibot_parse_raises_only_what_the_adapter_catches(frame):
    if not isinstance(frame, dict):
        return  # _decode drops it before parse
    try:
        parse(frame, "bot")
    except (ParseError, ValueError, TypeError):  # adapter.on_callback's except
        pass
