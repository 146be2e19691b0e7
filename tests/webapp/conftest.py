"""Mini-app fixtures: the demo stack (bot + simulator + seeded org) on a fresh database, an
HTTP client that signs in like a browser (cookies, CSRF tokens from the pages), and a real
headless Chromium driven by Playwright.

Seeded people (``simulator/seed.py`` PEOPLE): wangzong 王总 (vp); lijingli 李经理 (manager,
华东区), chenjingli 陈经理 (manager, 华南区); reps zhangsan 张三 and lisi 李四 (华东区),
wangwu 王五 and zhaoliu 赵六 (华南区); qiancaiwu 钱财务 (finance); admin 系统管理员 (admin).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text

from simulator.demo import start_demo
from simulator.seed import PEOPLE
from storage.db import sync_engine

ARTIFACTS = Path(os.environ.get("FIELDBOT_ARTIFACTS", "build/test-artifacts"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_CSRF = re.compile(r'name="_csrf" value="([^"]+)"')


def person(key: str):
    """The seeded person with this key (e.g. "zhangsan"): ``.name``, ``.role``."""
    return next(p for p in PEOPLE if p.key == key)


class WebClient:
    """A browser-like client of one signed-in (or anonymous) user."""

    def __init__(self, base: str):
        self.base = base
        self.http = aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def close(self) -> None:
        await self.http.close()

    async def page(self, path: str, status: int = 200, **kw) -> str:
        async with self.http.get(path, **kw) as r:
            body = await r.text()
            assert r.status == status, f"GET {path}: {r.status}\n{body[:2000]}"
        m = _CSRF.search(body)
        if m:
            self.csrf = m.group(1)
        return body

    async def login(self, key: str) -> WebClient:
        """Sign in through the demo picker as the seeded person ``key``."""
        body = await self.page("/app/login")
        name = person(key).name
        m = re.search(r'value="(\d+)" data-user="' + re.escape(name) + '"', body)
        assert m, f"{name} not on the sign-in page"
        async with self.http.post("/app/login", data={"_csrf": self.csrf, "user_id": m.group(1),
                                                      "next": "/app/"}) as r:
            assert r.status == 200 and r.url.path == "/app/", (r.status, r.url)
            m2 = _CSRF.search(await r.text())
            assert m2, "no CSRF token on the home page"
            self.csrf = m2.group(1)
        return self

    async def post(self, path: str, data: dict | None = None, *, csrf: bool = True,
                   **kw) -> aiohttp.ClientResponse:
        """POST a form (with the page's CSRF token unless ``csrf=False``); the response is
        read before returning (``.status``, ``await .text()`` still work)."""
        form = dict(data or {})
        if csrf:
            form.setdefault("_csrf", self.csrf)
        async with self.http.post(path, data=form, **kw) as r:
            await r.read()
            return r

    async def post_json(self, path: str, body: dict, *, csrf: bool = True
                        ) -> aiohttp.ClientResponse:
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        async with self.http.post(path, json=body, headers=headers) as r:
            await r.read()
            return r


@pytest.fixture(params=["sqlite"])
async def web(request, tmp_path):
    """The running demo stack on SQLite. ``web.client()`` makes a new WebClient;
    ``web.sql(q)`` reads the database; ``web.sim`` is the platform simulator (its
    ``recorder`` holds every API call the bot made)."""
    stack = await start_demo("127.0.0.1", 0, tmp_path / "demo")
    engine = sync_engine(stack.database_url)
    clients: list[WebClient] = []

    def client() -> WebClient:
        c = WebClient(stack.bot_url)
        clients.append(c)
        return c

    def sql(q: str, **params):
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(q), params)]

    def write_sync(fn):
        with engine.begin() as conn:
            patient(conn)
            return fn(conn)

    async def write(fn):
        """Run ``fn(conn)`` in one write transaction, in a thread: the app shares this event
        loop, and a blocking write here would wait for a transaction the app can only finish
        when the loop runs (a deadlock until SQLite's busy timeout)."""
        return await asyncio.to_thread(write_sync, fn)

    stack.client = client
    stack.sql = sql
    stack.write = write
    yield stack
    for c in clients:
        await c.close()
    engine.dispose()
    await stack.stop()


@pytest.fixture
async def browser():
    """Headless Debian Chromium through Playwright (no browser download). Under CI a missing
    Chromium is a failure, not a skip."""
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (apt install chromium)")
        pytest.skip("chromium not installed")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"])
        try:
            yield b
        finally:
            await b.close()


async def shot(page, name: str) -> Path:
    """Save a screenshot as a test artifact (``build/test-artifacts/NAME.png``)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def browser_login(browser, base: str, key: str, viewport=(390, 844)):
    """A new browser page signed in as ``key`` through the demo picker (phone-sized)."""
    ctx = await browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                    locale="zh-CN")
    page = await ctx.new_page()
    await page.goto(base + "/app/login")
    await page.click(f'button[data-user="{person(key).name}"]')
    await page.wait_for_url(base + "/app/")
    return page


def patient(conn) -> None:
    """A test writing beside the running app on SQLite waits for the app's writer instead of
    failing after the default 10 s busy timeout (a loaded 2-core CI box)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA busy_timeout=60000")
