"""A running bot (create_app, Feishu only) wired to a running fake Feishu, both on loopback."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import text

from bot.app import ADAPTERS, ENGINE, create_app
from config import load_settings
from simulator.core import Recorder
from simulator.feishu import FeishuSim

APP_ID = "cli_test_app"
APP_SECRET = "feishu-app-secret"
VTOKEN = "feishu-verification-token"
ENCRYPT_KEY = "feishu-encrypt-key"


@dataclass
class Env:
    sim: FeishuSim
    recorder: Recorder
    bot: TestServer
    api: TestServer
    url: str  # the bot's /webhooks/feishu

    @property
    def app(self) -> web.Application:
        return self.bot.app

    @property
    def adapter(self):
        return self.app[ADAPTERS]["feishu"]

    async def inbox_rows(self) -> int:
        async with self.app[ENGINE].connect() as conn:
            return (await conn.execute(text("SELECT count(*) FROM inbox_events"))).scalar_one()

    def sends(self, receive_id: str | None = None) -> list:
        return [c for c in self.recorder.of("feishu", "send")
                if receive_id is None or c.dest == receive_id]


async def wait_for(pred, timeout: float = 5.0, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:.1f}s")
        await asyncio.sleep(every)


async def _start(db_url: str, tmp_path, **overrides) -> Env:
    recorder = Recorder()
    encrypt_key = overrides.pop("feishu_encrypt_key", ENCRYPT_KEY)
    sim = FeishuSim(recorder, APP_ID, APP_SECRET, VTOKEN, encrypt_key)
    api_app = web.Application()
    sim.add_routes(api_app)
    api = TestServer(api_app, host="127.0.0.1")
    await api.start_server()
    settings = load_settings(database_url=db_url, data_dir=tmp_path, feishu_app_id=APP_ID,
                             feishu_app_secret=APP_SECRET, feishu_verification_token=VTOKEN,
                             feishu_encrypt_key=encrypt_key,
                             feishu_api_base=str(api.make_url("")).rstrip("/"), **overrides)
    bot = TestServer(create_app(settings), host="127.0.0.1")
    await bot.start_server()
    return Env(sim, recorder, bot, api, str(bot.make_url("/webhooks/feishu")))


@pytest.fixture
async def feishu(db_url, tmp_path):
    env = await _start(db_url, tmp_path)
    try:
        yield env
    finally:
        await env.bot.close()
        await env.api.close()


@pytest.fixture
async def feishu_sqlite(sqlite_url, tmp_path):
    """For checks that exercise the HTTP edge only (nothing reaches storage)."""
    env = await _start(sqlite_url, tmp_path)
    try:
        yield env
    finally:
        await env.bot.close()
        await env.api.close()
