"""Sign-in from the three workbenches against the simulator: WeCom OAuth2 ``code`` → userid,
DingTalk H5 免登 ``authCode`` → staff id, Feishu H5 ``code`` → open_id; each mapped through
``identities`` to our user, with an audit row. Reused codes, strangers, missing codes and
expired sessions are refused."""

from __future__ import annotations

import time

import pytest

from bot.app import SETTINGS
from tests.webapp.conftest import person
from webapp import session as ws

PLATFORMS = ["wecom", "dingtalk", "feishu"]
PARAM = {"wecom": "code", "dingtalk": "authCode", "feishu": "code"}


def need(web, platform: str):
    if platform not in (web.sim.bot_platforms or []):
        pytest.skip(f"{platform} not mounted")
    return web.sim.fakes[platform]


async def signin(client, platform: str, code: str, **extra):
    """GET the workbench entry without following the redirect: (status, Location, body)."""
    params = {PARAM[platform]: code, **extra}
    async with client.http.get(f"/app/auth/{platform}", params=params,
                               allow_redirects=False) as r:
        return r.status, r.headers.get("Location", ""), await r.text()


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_platform_signin(web, platform):
    fake = need(web, platform)
    who = person("zhangsan")
    code = fake.issue_web_code(who.external_id(platform))
    c = web.client()
    status, location, _ = await signin(c, platform, code, state="/app/approvals")
    assert status == 302 and location == "/app/approvals", (status, location)
    home = await c.page("/app/")
    assert who.name in home and "退出" in home  # signed in as 张三
    uid = web.sql("SELECT id FROM users WHERE name = :n", n=who.name)[0][0]
    assert web.sql("SELECT actor_id, platform FROM audit_log WHERE action = 'web.signin'"
                   ) == [(uid, platform)]
    # the platform was really asked, once, for exactly this code
    asked = [x for x in web.sim.recorder.of(platform, "oauth")
             if (x.body or {}).get("code") == code]
    assert len(asked) == 1

    # the same code again: the platform refuses it (single use) → 401, no session
    again = web.client()
    status, _, body = await signin(again, platform, code)
    assert status == 401 and "登录失败" in body
    async with again.http.get("/app/", allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"].startswith("/app/login")

    # a code nobody issued
    status, _, _ = await signin(web.client(), platform, "not-a-real-code")
    assert status == 401

    # a real platform user we have no identity for → 403 (not set up)
    stranger = fake.issue_web_code({"wecom": "nobody", "dingtalk": "ding_nobody",
                                    "feishu": "ou_nobody"}[platform])
    status, _, body = await signin(web.client(), platform, stranger)
    assert status == 403 and "尚未开通" in body

    # an empty code is refused; the bare URL starts the platform's own sign-in (redirect to
    # its OAuth page / the DingTalk container page) and signs nobody in
    async with web.client().http.get(f"/app/auth/{platform}", params={PARAM[platform]: ""},
                                     allow_redirects=False) as r:
        assert r.status == 400
    bare = web.client()
    async with bare.http.get(f"/app/auth/{platform}", allow_redirects=False) as r:
        assert r.status in (200, 302)
    async with bare.http.get("/app/", allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"].startswith("/app/login")
    assert web.sql("SELECT count(*) FROM audit_log WHERE action = 'web.signin'") == [(1,)]


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_token_expired_mid_signin_is_refreshed(web, platform):
    """The app token the client cached is refused once: refreshed, the sign-in still works."""
    fake = need(web, platform)
    first = fake.issue_web_code(person("lisi").external_id(platform))
    assert (await signin(web.client(), platform, first))[0] == 302  # token now cached
    tokens = len(web.sim.recorder.of(platform, "token"))
    fake.faults.token_invalid = 1
    code = fake.issue_web_code(person("lisi").external_id(platform))
    status, location, _ = await signin(web.client(), platform, code)
    assert (status, location) == (302, "/app/")
    assert len(web.sim.recorder.of(platform, "token")) == tokens + 1
    assert not fake.faults.token_invalid


async def test_wecom_non_member_refused(web):
    fake = need(web, "wecom")
    code = fake.issue_web_code("zhangsan", member=False)  # WeCom answers an openid only
    status, _, _ = await signin(web.client(), "wecom", code)
    assert status == 401


async def test_expired_code_refused(web):
    fake = need(web, "dingtalk")
    code = fake.issue_web_code("ding_zhangsan", ttl_s=-1)
    status, _, _ = await signin(web.client(), "dingtalk", code)
    assert status == 401


async def test_expired_session_goes_to_login(web):
    settings = web.runner.app[SETTINGS]
    secret = settings.secret()
    uid = web.sql("SELECT id FROM users WHERE name = :n", n=person("lijingli").name)[0][0]
    fresh = web.client()
    fresh.http.cookie_jar.update_cookies({ws.COOKIE: ws.issue(secret, uid, "wecom")})
    assert person("lijingli").name in await fresh.page("/app/")  # the right secret
    old = time.time() - settings.web_session_hours * 3600 - 60
    stale = web.client()
    stale.http.cookie_jar.update_cookies({ws.COOKIE: ws.issue(secret, uid, "wecom", now=old)})
    async with stale.http.get("/app/approvals", allow_redirects=False) as r:
        assert r.status == 302
        assert r.headers["Location"].startswith("/app/login?next=/app/approvals")


async def test_no_public_url_means_no_signin_and_says_so(tmp_path, caplog):
    """Outside the demo, without FIELDBOT_WEB_PUBLIC_URL, start-up says sign-in is off and the
    sign-in entry answers 503 with the reason — never a redirect_uri built from Host."""
    import logging

    import aiohttp
    from aiohttp.test_utils import TestServer

    from bot.app import create_app
    from config import load_settings

    caplog.set_level(logging.WARNING)
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", data_dir=tmp_path,
                             secret_key="k", feishu_app_id="cli_x", feishu_app_secret="s",
                             feishu_verification_token="v", feishu_encrypt_key="e")
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        assert "FIELDBOT_WEB_PUBLIC_URL" in caplog.text and "sign-in is off" in caplog.text
        async with aiohttp.ClientSession() as s, s.get(
                server.make_url("/app/auth/feishu"), allow_redirects=False,
                headers={"Host": "evil.example"}) as r:
            body = await r.text()
            assert r.status == 503 and "FIELDBOT_WEB_PUBLIC_URL" in body
            assert "evil.example" not in body and "Location" not in r.headers
    finally:
        await server.close()
