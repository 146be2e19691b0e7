"""The WeCom endpoint over real HTTP: retries, storms, forged and hostile input."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from tests.wecom.conftest import Env


async def post(env: Env, query: dict, body: bytes, session=None) -> tuple[int, str]:
    return await env.sim.post(env.url, query, body, session=session)


# -- (b) simulator round trips, retries, hostile input ---------------------------------------
async def test_text_answered_once_even_when_retried(env: Env):
    status, _ = await env.sim.send_text(env.url, "zhangsan", "你好", msg_id="1001")
    assert status == 200
    sent = await env.wait_sent(1, user="zhangsan")
    assert sent[0].body["text"]["content"].startswith("收到文字：你好")
    # the platform retries the same message (fresh signature, same MsgId)
    status, _ = await env.sim.send_text(env.url, "zhangsan", "你好", msg_id="1001")
    assert status == 200
    await env.wait_idle()
    assert env.count("inbox_events") == 1
    assert env.count("outbox") == 1
    assert len(env.sim.sent("zhangsan")) == 1


async def test_same_event_50x_concurrently(env: Env):
    xml = env.sim.message_xml("lisi", "text", {"Content": "storm", "MsgId": "777"})
    query, body = env.sim.sign_callback(xml)
    async with aiohttp.ClientSession() as s:
        results = await asyncio.gather(*(post(env, query, body, s) for _ in range(50)))
    assert all(r == (200, "") for r in results), results
    await env.wait_sent(1, user="lisi")
    await env.wait_idle()
    assert env.count("inbox_events") == 1
    assert env.count("outbox") == 1
    assert len(env.sim.sent("lisi")) == 1


async def test_forged_signature_is_401_and_not_stored(env: Env):
    xml = env.sim.message_xml("mallory", "text", {"Content": "x", "MsgId": "9"})
    query, body = env.sim.sign_callback(xml)
    query["msg_signature"] = ("0" if query["msg_signature"][0] != "0" else "1") + \
        query["msg_signature"][1:]
    assert (await post(env, query, body))[0] == 401
    assert (await post(env, {k: v for k, v in query.items() if k != "msg_signature"},
                       body))[0] == 401
    assert env.count("inbox_events") == 0


async def test_stale_timestamp_is_401_and_not_stored(env: Env):
    xml = env.sim.message_xml("mallory", "text", {"Content": "x", "MsgId": "10"})
    for ts in (int(time.time()) - 3600, int(time.time()) + 3600):
        query, body = env.sim.sign_callback(xml, timestamp=ts)
        assert (await post(env, query, body))[0] == 401
    query, body = env.sim.sign_callback(xml, timestamp="not-a-number")
    assert (await post(env, query, body))[0] == 401
    assert env.count("inbox_events") == 0


async def test_xml_with_dtd_or_entities_is_400_fast(env_sqlite: Env):
    env = env_sqlite  # rejected before storage
    query, _ = env.sim.sign_callback("<xml/>")
    laughs = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">'
              + "".join(f'<!ENTITY a{i} "{"&a;" * 10 if i == 0 else f"&a{i - 1};" * 10}">'
                        for i in range(9))
              + "]><xml><Encrypt>&a8;</Encrypt></xml>").encode()
    external = (b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                b"<xml><Encrypt>&x;</Encrypt></xml>")
    dtd_only = b'<!DOCTYPE xml><xml><Encrypt>abc</Encrypt></xml>'
    for body in (laughs, external, dtd_only):
        t0 = time.monotonic()
        status, _ = await post(env, query, body)
        assert status == 400
        assert time.monotonic() - t0 < 2.0  # (an expanded bomb takes far longer, or never ends)
    assert env.count("inbox_events") == 0


async def test_deeply_nested_xml_is_400_without_a_traceback(env_sqlite: Env, caplog):
    """5,000 nested elements (34 KB, unsigned): a clear 400, one short log line at most —
    not a RecursionError escaping as a 500 with a 3,000-line traceback."""
    env = env_sqlite
    query, _ = env.sim.sign_callback("<xml/>")
    body = b"<xml>" + b"<a>" * 5000 + b"x" + b"</a>" * 5000 + b"</xml>"
    status, _ = await post(env, query, body)
    assert status == 400
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text
    assert len(caplog.text) < 2000
    assert env.count("inbox_events") == 0


async def test_body_over_64k_is_413(env_sqlite: Env):
    env = env_sqlite  # rejected before storage
    query, _ = env.sim.sign_callback("<xml/>")
    body = b"<xml><Encrypt>" + b"A" * (70 * 1024) + b"</Encrypt></xml>"
    status, _ = await post(env, query, body)
    assert status == 413
    assert env.count("inbox_events") == 0


async def test_malformed_is_400(env: Env):
    from wechatpy.crypto import _get_signature

    query, _ = env.sim.sign_callback("<xml/>")
    assert (await post(env, query, b"not xml at all"))[0] == 400
    assert (await post(env, query, b"<xml><NoEncrypt/></xml>"))[0] == 400
    # correctly signed but not base64 / not whole blocks
    for enc in ("!!!notbase64!!!", "QUJD"):
        q = dict(query, msg_signature=_get_signature(env.sim.token, query["timestamp"],
                                                     query["nonce"], enc))
        body = f"<xml><Encrypt><![CDATA[{enc}]]></Encrypt></xml>".encode()
        assert (await post(env, q, body))[0] == 400
    # signed and encrypted for another corp (receive id mismatch)
    from simulator.wecom import WeComSim

    other = WeComSim(env.recorder, "wwOTHERCORP", "218", "s", env.sim.token, env.sim.aes_key)
    q, body = other.sign_callback(other.message_xml("u", "text", {"Content": "x",
                                                                  "MsgId": "1"}))
    assert (await post(env, q, body))[0] == 400
    # decrypts, but the inner document is not XML / lacks the required fields
    for inner in ("plain text", "<xml><Content>x</Content></xml>",
                  env.sim.message_xml("u", "text", {"Content": "no msg id"})):
        q, body = env.sim.sign_callback(inner)
        assert (await post(env, q, body))[0] == 400
    assert env.count("inbox_events") == 0


async def test_unknown_event_and_message_type_are_acked(env: Env):
    status, body = await env.sim.send_event(env.url, "wangwu", "some_future_event", "k")
    assert (status, body) == (200, "")
    xml = env.sim.message_xml("wangwu", "hologram", {"MsgId": "55"})
    status, _ = await env.sim.send_xml(env.url, xml)
    assert status == 200
    assert env.count("inbox_events") == 0


async def test_enter_agent_is_a_system_event(env: Env):
    status, _ = await env.sim.send_event(env.url, "wangwu", "enter_agent")
    assert status == 200
    await env.wait_idle()
    rows = env.sql("SELECT payload FROM inbox_events")
    assert len(rows) == 1 and '"kind":"system"' in rows[0][0]
    assert env.count("outbox") == 0


async def test_voice_image_location(env: Env):
    await env.sim.send_voice(env.url, "zhaoliu", "MEDIA_V1")
    await env.sim.send_image(env.url, "zhaoliu", "MEDIA_I1")
    await env.sim.send_location(env.url, "zhaoliu", 31.2304, 121.4737, "上海市人民广场")
    # the acknowledgements; the media jobs answer later on their own ("无法下载…": the
    # simulator holds no such media), in any order relative to these
    def acks():
        firsts = [c.body["text"]["content"].split("\n")[0] for c in env.sim.sent("zhaoliu")]
        found = [t for t in firsts if t.startswith("收到")]
        return len(found) >= 3 and found

    texts = sorted(await env.wait_for(acks, 10.0, "3 acknowledgements"))
    assert texts == ["收到位置：上海市人民广场 (31.23040, 121.47370)", "收到图片", "收到语音"]
    # (WeCom's voice callback has no duration: no "0 秒")
    payloads = [r[0] for r in env.sql("SELECT payload FROM inbox_events ORDER BY id")]
    assert '"key":"MEDIA_V1"' in payloads[0] and '"format":"amr"' in payloads[0]
    assert '"key":"MEDIA_I1"' in payloads[1] and "pic_url" in payloads[1]
