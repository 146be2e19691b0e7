"""Pure pieces (crypto, parse) and the API client against the simulator (media, SSRF, errors)."""

from __future__ import annotations

import json
import time

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.platform import MediaError, PermanentError, RateLimited
from integrations.dingtalk.client import DingTalkClient
from integrations.dingtalk.crypto import (
    CryptoError,
    EventCrypto,
    SignatureError,
    fresh_ms,
    robot_sign,
    verify_robot_sign,
)
from integrations.dingtalk.parse import parse_card_callback, parse_robot
from simulator.core import Recorder
from simulator.dingtalk import DingTalkSim
from tests.dingtalk.conftest import AES_KEY, APP_KEY, APP_SECRET, ROBOT_CODE, TOKEN


# -- crypto -----------------------------------------------------------------------------------
def test_robot_sign_regression_value():
    # PROTOCOLS §5 (self-computed): secret SECtest, ts 1700000000000
    assert robot_sign("SECtest", "1700000000000") == \
        "aZLLrriXgn05YbwaGR7knYsLeJADjr9NwLaNNKpxh4g="
    assert verify_robot_sign("SECtest", "1700000000000",
                             "aZLLrriXgn05YbwaGR7knYsLeJADjr9NwLaNNKpxh4g=")
    assert not verify_robot_sign("SECtest", "1700000000001",
                                 "aZLLrriXgn05YbwaGR7knYsLeJADjr9NwLaNNKpxh4g=")
    assert not verify_robot_sign("SECtest", "1700000000000", "")


def test_fresh_ms():
    assert fresh_ms("1700000000000", 300, 1700000000.0)
    assert fresh_ms("1700000299000", 300, 1700000000.0)
    assert not fresh_ms("1700000301000", 300, 1700000000.0)
    assert not fresh_ms("x", 300, 1700000000.0)
    assert fresh_ms("1", 0, 1700000000.0)  # 0 = off


def test_event_crypto_round_trip_and_rejections():
    c = EventCrypto(TOKEN, AES_KEY, APP_KEY)
    sim = DingTalkSim(Recorder(), APP_KEY, APP_SECRET, ROBOT_CODE, TOKEN, AES_KEY)
    q, body = sim.seal_event({"EventType": "check_url"})
    assert c.open(q["msg_signature"], q["timestamp"], q["nonce"], body) == \
        {"EventType": "check_url"}
    with pytest.raises(SignatureError):
        c.open("f" * 40, q["timestamp"], q["nonce"], body)
    with pytest.raises(CryptoError):
        c.open(q["msg_signature"], q["timestamp"], q["nonce"], b"[]")
    sealed = c.seal()
    assert sim.crypto.decrypt_encrypt_str(sealed["msg_signature"], sealed["timeStamp"],
                                          sealed["nonce"], sealed["encrypt"]) == "success"
    for bad in ("!!!", "QUJD", ""):
        with pytest.raises(CryptoError):
            c.decrypt(bad)


# -- parse ------------------------------------------------------------------------------------
def _sim() -> DingTalkSim:
    return DingTalkSim(Recorder(), APP_KEY, APP_SECRET, ROBOT_CODE, TOKEN, AES_KEY)


def test_parse_text_group_and_audio():
    sim = _sim()
    ev = parse_robot(sim.robot_payload("u1", "text", {"text": {"content": " hi "}},
                                       group="cidG", msg_id="m1"), APP_KEY)
    assert (ev.event_id, ev.text, ev.chat.type, ev.chat.id, ev.sender) == \
        ("m1", "hi", "group", "cidG", "u1")
    assert ev.reply_target().kind == "chat" and ev.reply_target().id == "cidG"
    ev = parse_robot(sim.robot_payload("u1", "audio", {"content": {
        "downloadCode": "dc", "duration": 5100, "recognition": "你好"}}), APP_KEY)
    assert ev.msg_type == "voice"
    assert (ev.media.kind, ev.media.key, ev.media.duration_ms, ev.media.recognition) == \
        ("voice", "dc", 5100, "你好")
    assert ev.chat.type == "p2p" and ev.chat.id == "u1"
    assert ev.reply_hint["session_webhook"].startswith("https://")


def test_parse_rich_text_and_unknown():
    sim = _sim()
    ev = parse_robot(sim.robot_payload("u1", "richText", {"content": {"richText": [
        {"text": "门头照"}, {"type": "picture", "downloadCode": "p1",
                             "pictureDownloadCode": "pp1"},
        {"type": "picture", "downloadCode": "p2"}, {"text": "第二行"}]}}), APP_KEY)
    assert ev.msg_type == "rich_text"
    assert ev.text == "门头照\n第二行"
    assert ev.media.kind == "image" and ev.media.key == "p1"
    assert parse_robot(sim.robot_payload("u1", "hologram", {}), APP_KEY) is None
    with pytest.raises(ValueError):
        parse_robot({"msgtype": "text"}, APP_KEY)
    with pytest.raises(ValueError):
        parse_robot(sim.robot_payload("u1", "picture", {"content": {}}), APP_KEY)


def test_parse_card_callback():
    sim = _sim()
    data = sim.card_callback("u9", "fb-1", "tok.mac", "btn_1", form={"note": "ok"})
    ev = parse_card_callback(data, APP_KEY)
    assert ev.kind == "card_action"
    assert ev.action.value == "tok.mac"
    assert ev.action.form == {"note": "ok"}
    assert ev.action.card_ref == {"out_track_id": "fb-1"}
    assert ev.event_id.startswith("card:fb-1:btn_1:u9:")
    assert parse_card_callback(data, APP_KEY).event_id == ev.event_id
    with pytest.raises(ValueError):
        parse_card_callback({"outTrackId": "x", "content": "{}"}, APP_KEY)
    bad = dict(data, content=json.dumps({"cardPrivateData": {"actionIds": "x", "params": 1}}))
    with pytest.raises(ValueError):
        parse_card_callback(bad, APP_KEY)


# -- client against the simulator -------------------------------------------------------------
@pytest.fixture
async def api():
    sim = _sim()
    app = web.Application()
    sim.add_routes(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        client = DingTalkClient(http, str(server.make_url("")).rstrip("/"), APP_KEY,
                                APP_SECRET, ROBOT_CODE)
        yield sim, client
    await server.close()


async def test_media_download_with_cap(api):
    sim, client = api
    sim.add_media("dl-1", b"\x89PNG" + b"x" * 5000, "image/png")
    assert await client.download("dl-1", 10_000) == b"\x89PNG" + b"x" * 5000
    with pytest.raises(MediaError):
        await client.download("dl-1", 100)
    with pytest.raises(MediaError):
        await client.download("no-such-code", 10_000)


async def test_media_download_refuses_foreign_hosts(api):
    _sim_, client = api
    assert client._allowed_url("https://down.dingtalk.com/x.file")
    assert client._allowed_url(f"http://{client.api_host}:1/x.file")
    for url in ("http://down.dingtalk.com/x", "https://169.254.169.254/latest",
                "https://evil.com/dingtalk.com", "https://dingtalk.com.evil.com/x",
                "file:///etc/passwd", "http://10.0.0.1/x"):
        assert not client._allowed_url(url), url


async def test_client_errors(api):
    sim, client = api
    sim.faults.rate_limited = 1
    with pytest.raises(RateLimited):
        await client.send_to_users(["u"], "sampleText", "x")
    with pytest.raises(PermanentError):
        await client.update_card("no-such-card", {"title": "t"})
    client._secret = "wrong"
    client._token = None
    with pytest.raises(PermanentError):
        await client.token()


async def test_api_qps_limit_real_403_and_client_keeps_under_it(api):
    """DingTalk allows 20 calls/s per app per API (403 QpsLimitForAppkeyAndApi past it); the
    client's own limiter keeps a burst under it, and batchSend takes ≤ 20 userIds a call."""
    sim, client = api
    tok = await client.token()
    # the burst's window is a minute here, so a loaded machine spreading the 21 calls over
    # more than a second still sees the 21st refused (DingTalk's is a second)
    sim.api_qps = type(sim.api_qps)(20, 60.0)
    body = {"robotCode": sim.robot_code, "userIds": ["busy"], "msgKey": "sampleText",
            "msgParam": json.dumps({"content": "raw"})}
    for _ in range(20):  # without the client's limiter: the 21st call in a second is refused
        await client._request("POST", "/v1.0/robot/oToMessages/batchSend", body, token=tok)
    with pytest.raises(RateLimited) as info:
        await client._request("POST", "/v1.0/robot/oToMessages/batchSend", body, token=tok)
    assert info.value.code == "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"
    sim.api_qps = type(sim.api_qps)(20, 1.0)  # a fresh second
    t0 = time.monotonic()
    for i in range(45):
        await client.send_to_users([f"u{i}"], "sampleText", f"m{i}")
    assert time.monotonic() - t0 >= 1.9  # three windows of ≤ 20 calls
    refused = [c for c in sim.recorder.of("dingtalk", "send") if c.result.get("status") == 403]
    assert len(refused) == 1  # only the raw burst's
    sim.api_qps = type(sim.api_qps)(20, 1.0)
    many = [f"m{i}" for i in range(45)]
    before = len(sim.sent())
    await client.send_to_users(many, "sampleText", "to many")
    calls = sim.sent()[before:]
    assert [len(c.body["userIds"]) for c in calls] == [20, 20, 5]
    await client.send_to_group("cidX", "sampleMarkdown", "# title\nbody")
    md = json.loads(sim.sent("cidX")[0].body["msgParam"])
    assert md == {"title": "title", "text": "# title\nbody"}
