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
    for path in ("/app/login", "/healthz", "/no/such/page"):
        async with anon.http.get(path) as r:
            assert r.headers["Server"] == "FieldBot"  # no versions for a scanner
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


async def test_unauthenticated_post_is_refused_before_its_body_is_read(web):
    """No session → 401 at once, while the client is still sending: the middleware reads no
    byte of an anonymous body (16 × 19 MB form posts used to be buffered before the check)."""
    import asyncio

    import aiohttp

    hold = asyncio.Event()

    async def endless_form():
        yield b"_csrf=x&pad=" + b"A" * 65536
        await hold.wait()  # the rest of "19 MB" never comes
        yield b""

    anon = web.client()
    try:
        async with asyncio.timeout(5):
            async with anon.http.post("/app/logout", data=endless_form(), headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Content-Length": str(19 * 1024 * 1024)}) as r:
                assert r.status == 401
    except aiohttp.ClientError:
        pytest.fail("the server did not answer before the body was sent")
    finally:
        hold.set()


async def test_malformed_multipart_is_400_not_500(web, caplog):
    rep = await web.client().login("zhangsan")
    bad = [("multipart/form-data", b"--x\r\n" + b"A" * 70000 + b"\r\n"),  # no boundary
           ("multipart/form-data; boundary=x", b"--x\r\n" + b"B" * 70000),  # line too long
           ("multipart/form-data; boundary=x", b"garbage")]
    for ctype, body in bad:
        # the CSRF token looked for in the body (the middleware parses it) …
        for path in ("/app/logout", "/app/visits/photo", "/app/data/import"):
            async with rep.http.post(path, data=body, headers={"Content-Type": ctype}) as r:
                assert r.status == 400, (path, ctype, r.status)
        # … or in the header (the upload handler parses it)
        for path in ("/app/visits/photo", "/app/visits/voice"):
            async with rep.http.post(path, data=body, headers={
                    "Content-Type": ctype, "X-CSRF-Token": rep.csrf}) as r:
                assert r.status == 400, (path, ctype, r.status)
    assert "Traceback" not in caplog.text


async def test_redirect_uri_never_comes_from_the_host_header(web):
    """Outside the demo, without FIELDBOT_WEB_PUBLIC_URL, sign-in is refused (503 with the
    setting named) rather than redirecting to ``Host: evil.example``; with it, the
    redirect_uri is the configured URL whatever the Host says."""
    from urllib.parse import parse_qs, urlsplit

    from webapp.core import WEB

    subapps = [r._app for r in web.runner.app.router.resources()
               if hasattr(r, "_app") and WEB in r._app]  # the /app sub-application
    ctx = subapps[0][WEB] if subapps else None
    assert ctx is not None
    c = web.client()
    ctx.settings = ctx.settings.model_copy(update={"web_demo_login": False,
                                                   "web_public_url": ""})
    async with c.http.get("/app/auth/wecom", headers={"Host": "evil.example"},
                          allow_redirects=False) as r:
        assert r.status == 503 and "FIELDBOT_WEB_PUBLIC_URL" in await r.text()
        assert "evil.example" not in r.headers.get("Location", "")
    ctx.settings = ctx.settings.model_copy(update={"web_public_url": "https://crm.example.cn"})
    async with c.http.get("/app/auth/wecom", headers={"Host": "evil.example"},
                          allow_redirects=False) as r:
        assert r.status == 302
        q = parse_qs(urlsplit(r.headers["Location"]).query)
        assert q["redirect_uri"] == ["https://crm.example.cn/app/auth/wecom"]


async def test_body_limits_are_per_route(web):
    """Forms and JSON are capped at 1 MB; only the upload routes take large files."""
    rep = await web.client().login("zhangsan")
    big = {"_csrf": rep.csrf, "pad": "A" * (2 * 1024 * 1024)}
    async with rep.http.post("/app/sync", data=big) as r:
        assert r.status == 413
    async with rep.http.post("/app/visits", data=big) as r:
        assert r.status == 413 and "1 MB" in await r.text()
    import aiohttp

    form = aiohttp.FormData()
    form.add_field("photo", b"\xff\xd8" + b"\0" * (2 * 1024 * 1024), filename="big.jpg",
                   content_type="image/jpeg")
    async with rep.http.post("/app/visits/photo", data=form,
                             headers={"X-CSRF-Token": rep.csrf}) as r:
        assert r.status != 413  # read (and refused as a broken image, not as too large)


async def test_sessions_end_on_logout_role_change_and_by_an_admin(web):
    """Server-side sessions: the cookie is only good while its row is."""
    from webapp import session as ws_

    async def works(c) -> bool:
        async with c.http.get("/app/", allow_redirects=False) as r:
            return r.status == 200

    def cookie_of(c) -> str:
        return next(m.value for m in c.http.cookie_jar if m.key == ws_.COOKIE)

    rep = await web.client().login("zhangsan")
    kept = cookie_of(rep)
    assert await works(rep)
    assert (await rep.post("/app/logout")).status == 200  # → the sign-in page
    replay = web.client()
    replay.http.cookie_jar.update_cookies({ws_.COOKIE: kept})
    assert not await works(replay)  # the old cookie died with the logout
    assert web.sql("SELECT count(*) FROM web_sessions WHERE revoked_at IS NOT NULL") == [(1,)]

    a, b = await web.client().login("lisi"), await web.client().login("lisi")
    admin = await web.client().login("admin")
    (lisi_id,), = web.sql("SELECT id FROM users WHERE name = '李四'")
    async with admin.http.post(f"/app/admin/users/{lisi_id}/sessions/end",
                               data={"_csrf": admin.csrf}, allow_redirects=False) as r:
        assert r.status == 303
    assert not await works(a) and not await works(b)
    assert web.sql("SELECT count(*) FROM audit_log WHERE action = 'user.sessions_end'") == [(1,)]

    c = await web.client().login("wangwu")
    (wid,), = web.sql("SELECT id FROM users WHERE name = '王五'")
    page = await admin.page(f"/app/admin/users/{wid}")
    assert "王五" in page
    async with admin.http.post(f"/app/admin/users/{wid}", data={
            "_csrf": admin.csrf, "name": "王五", "role": "manager", "active": "on"},
            allow_redirects=False) as r:
        assert r.status == 303, await r.text()
    assert not await works(c)  # a role change signs the person out
