"""The official WeCom vectors (PROTOCOLS §8) through the real HTTP endpoint."""

from __future__ import annotations

import aiohttp

from tests.wecom.conftest import CORP_ID, Env

URL_VECTOR = {
    "msg_signature": "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
    "timestamp": "1409659589",
    "nonce": "263014780",
    "echostr": "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO"
               "+FZXvnaqQ==",
}
MSG_QUERY = {"msg_signature": "477715d11cdb4164915debcba66cb864d751f3e6",
             "timestamp": "1409659813", "nonce": "1372623149"}
MSG_ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3Qczc"
    "dCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLj"
    "vd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMn"
    "vw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k"
    "22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2Yoy"
    "yH2uyPIGHBZZIs2pDBS8R07+qN+E7Q=="
)
MSG_BODY = (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{MSG_ENCRYPT}"
            "]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>").encode()


async def post(env: Env, query: dict, body: bytes, session=None) -> tuple[int, str]:
    return await env.sim.post(env.url, query, body, session=session)


# -- (a) official vectors through the real endpoint ------------------------------------------
async def test_url_check_vector(env_sqlite_noreplay: Env):
    async with aiohttp.ClientSession() as s:
        async with s.get(env_sqlite_noreplay.url, params=URL_VECTOR) as r:
            assert r.status == 200
            assert r.content_type == "text/plain"
            assert await r.read() == b"1616140317555161061"


async def test_url_check_literal_plus_falls_back_to_raw_query(env_sqlite_noreplay: Env):
    # A literal '+' is decoded to a space by aiohttp; the handler retries on the raw query.
    qs = "&".join(f"{k}={v}" for k, v in URL_VECTOR.items())
    assert "+" in qs
    async with aiohttp.ClientSession() as s:
        async with s.get(env_sqlite_noreplay.url + "?" + qs) as r:
            assert r.status == 200
            assert await r.text() == "1616140317555161061"


async def test_url_check_bad_signature_is_401(env_sqlite_noreplay: Env):
    bad = dict(URL_VECTOR, msg_signature="0" * 40)
    async with aiohttp.ClientSession() as s:
        async with s.get(env_sqlite_noreplay.url, params=bad) as r:
            assert r.status == 401


async def test_url_check_from_simulator(env_sqlite: Env):
    env = env_sqlite
    status, body = await env.sim.url_check(env.bot.make_url(""), "echo-12345")
    assert (status, body) == (200, "echo-12345")


async def test_message_vector_is_parsed_and_answered(env_noreplay: Env):
    env = env_noreplay
    status, body = await post(env, MSG_QUERY, MSG_BODY)
    assert (status, body) == (200, "")
    rows = env.sql("SELECT dedupe_key, payload FROM inbox_events")
    assert len(rows) == 1
    assert rows[0][0] == f"wecom:{CORP_ID}:4561255354251345929"
    assert '"text":"hello"' in rows[0][1] and '"sender":"mycreate"' in rows[0][1]
    sent = await env.wait_sent(1, user="mycreate")
    assert sent[0].body["msgtype"] == "text"
    assert sent[0].body["text"]["content"].startswith("收到文字：hello")
    assert sent[0].body["agentid"] == 218
    assert "enable_duplicate_check" not in sent[0].body  # a first send is never deduped


async def test_vector_is_stale_with_replay_window(env: Env):
    status, _ = await post(env, MSG_QUERY, MSG_BODY)
    assert status == 401
    assert env.count("inbox_events") == 0
