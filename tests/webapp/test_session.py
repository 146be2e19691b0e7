"""Sessions and CSRF: the signed cookie, its expiry, forged cookies, CSRF-less posts."""

from __future__ import annotations

import time

import pytest

from webapp import session as ws

KEY = b"k" * 32


def test_cookie_round_trip_and_tamper():
    c = ws.issue(KEY, 7, "wecom")
    s = ws.read(KEY, c, 3600)
    assert s is not None and s.user_id == 7 and s.via == "wecom"
    body, sig = c.rsplit(".", 1)
    forged = ws.issue(b"other" * 8, 1, "demo")
    assert ws.read(KEY, forged, 3600) is None  # signed with another key
    assert ws.read(KEY, body + "." + sig[:-2] + "AA", 3600) is None
    assert ws.read(KEY, "garbage", 3600) is None and ws.read(KEY, None, 3600) is None
    assert ws.read(KEY, "a.b.c", 3600) is None


def test_cookie_expires():
    c = ws.issue(KEY, 7, "demo", now=time.time() - 7200)
    assert ws.read(KEY, c, 3600) is None
    assert ws.read(KEY, c, 3 * 3600) is not None


def test_csrf_bound_to_session():
    a = ws.read(KEY, ws.issue(KEY, 1, "demo"), 60)
    b = ws.read(KEY, ws.issue(KEY, 1, "demo"), 60)
    tok = ws.csrf_token(KEY, a.nonce)
    assert ws.csrf_ok(KEY, a.nonce, tok)
    assert not ws.csrf_ok(KEY, b.nonce, tok)
    assert not ws.csrf_ok(KEY, a.nonce, "") and not ws.csrf_ok(KEY, a.nonce, None)


async def test_sign_in_pages_and_csrf(web):
    anon = web.client()
    await anon.page("/app/login")
    async with anon.http.get("/app/", allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"].startswith("/app/login")
    rep = await web.client().login("zhangsan")
    home = await rep.page("/app/")
    assert "张三" in home
    assert (await rep.post("/app/logout", csrf=False)).status == 403  # CSRF-less → refused
    forged = web.client()
    forged.http.cookie_jar.update_cookies({ws.COOKIE: ws.issue(b"x" * 32, 1, "demo")})
    async with forged.http.get("/app/", allow_redirects=False) as r:
        assert r.status == 302  # a forged cookie is no session
    assert web.sql("SELECT count(*) FROM audit_log WHERE action = 'web.signin'") == [(1,)]


async def test_bare_workbench_url_starts_each_platforms_sign_in(web):
    from urllib.parse import parse_qs, urlsplit

    c = web.client()
    async with c.http.get("/app/auth/wecom", allow_redirects=False) as r:
        assert r.status == 302
        loc = urlsplit(r.headers["Location"])
        assert loc.netloc == "open.weixin.qq.com" and loc.fragment == "wechat_redirect"
        q = parse_qs(loc.query)
        assert q["redirect_uri"] == [web.bot_url + "/app/auth/wecom"]
        assert q["scope"] == ["snsapi_base"] and q["state"] == ["/app/"]
    async with c.http.get("/app/auth/feishu?next=/app/approvals", allow_redirects=False) as r:
        assert r.status == 302
        loc = urlsplit(r.headers["Location"])
        assert loc.path == "/open-apis/authen/v1/authorize"
        assert parse_qs(loc.query)["state"] == ["/app/approvals"]
    body = await c.page("/app/auth/dingtalk")
    assert "dingtalk-jsapi-3.2.9.min.js" in body and 'id="dingtalk-signin"' in body
    async with c.http.get("/app/static/vendor/dingtalk-jsapi-3.2.9.min.js") as r:
        assert r.status == 200 and "requestAuthCode" in await r.text()
    async with c.http.get("/app/auth/wecom?code=", allow_redirects=False) as r:
        assert r.status == 400  # an empty code is a broken redirect, not a new sign-in
    async with c.http.get("/app/auth/telegram", allow_redirects=False) as r:
        assert r.status == 404


@pytest.mark.parametrize("platform", ["wecom", "dingtalk", "feishu"])
async def test_demo_workbench_signs_in_through_the_platform(web, platform):
    """The demo's "open the mini-app" link: the simulated workbench mints a one-time code
    and the bot exchanges it with the (simulated) platform API for the person."""
    c = web.client()
    async with c.http.get(f"{web.sim.url}/demo/workbench",
                          params={"platform": platform, "user": "lijingli"}) as r:
        assert r.status == 200 and r.url.path == "/app/", r.url
        assert "李经理" in await r.text()
    assert web.sim.recorder.of(platform, "oauth")


async def test_feishu_bare_url_round_trips_through_the_consent_page(web):
    c = web.client()
    async with c.http.get("/app/auth/feishu", params={"next": "/app/approvals"},
                          allow_redirects=False) as r:
        loc = r.headers["Location"]
    assert loc.startswith(web.sim.url)
    async with c.http.get(loc + "&user=wangzong") as r:
        assert r.status == 200 and r.url.path == "/app/approvals", r.url
        assert "王总" in await r.text()
