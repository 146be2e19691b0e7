"""A running bot (real HTTP, real storage) wired to a running DingTalk simulator, both loopback.

The event-subscription token/AES key are the official sample's (PROTOCOLS §8); the app key is
the sample's suite key, so the published vector and the simulator's own callbacks go through the
same endpoint with the same owner key.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import text

from bot.app import create_app
from config import load_settings
from simulator.core import Recorder
from simulator.dingtalk import DingTalkSim
from storage.db import sync_engine

TOKEN = "123456"
AES_KEY = "4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij"
APP_KEY = "suite4xxxxxxxxxxxxxxx"
APP_SECRET = "sim-app-secret"
ROBOT_CODE = "dingrobotsim"
SECRET_KEY = "test-secret-key"


@dataclass
class Env:
    sim: DingTalkSim
    recorder: Recorder
    bot: TestServer
    app: web.Application
    db_url: str

    @property
    def url(self) -> str:
        return str(self.bot.make_url("/webhooks/dingtalk"))

    @property
    def events_url(self) -> str:
        return str(self.bot.make_url("/webhooks/dingtalk/events"))

    def sql(self, query: str, **params):
        eng = sync_engine(self.db_url)
        try:
            with eng.connect() as conn:
                return conn.execute(text(query), params).all()
        finally:
            eng.dispose()

    def execute(self, query: str, **params) -> None:
        eng = sync_engine(self.db_url)
        try:
            with eng.begin() as conn:
                conn.execute(text(query), params)
        finally:
            eng.dispose()

    def count(self, table: str, where: str = "1=1", **params) -> int:
        return self.sql(f"SELECT count(*) FROM {table} WHERE {where}", **params)[0][0]

    async def wait_for(self, pred, timeout: float = 10.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while True:
            value = pred()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)

    async def wait_sent(self, n: int = 1, dest: str | None = None, timeout: float = 10.0):
        return await self.wait_for(lambda: (s := self.sim.sent(dest)) and len(s) >= n and s,
                                   timeout, f"{n} message(s) sent")

    async def wait_idle(self, timeout: float = 10.0):
        await self.wait_for(lambda: self.count("inbox_events", "status='pending'") == 0
                            and self.count("outbox", "status='pending'") == 0,
                            timeout, "inbox and outbox idle")


async def start_env(db_url: str, tmp_path, **overrides) -> tuple[Env, TestServer]:
    recorder = Recorder()
    sim = DingTalkSim(recorder, APP_KEY, APP_SECRET, ROBOT_CODE, TOKEN, AES_KEY)
    sim_app = web.Application()
    sim.add_routes(sim_app)
    sim_server = TestServer(sim_app, host="127.0.0.1")
    await sim_server.start_server()
    opts = dict(database_url=db_url, data_dir=tmp_path, secret_key=SECRET_KEY,
                dingtalk_app_key=APP_KEY, dingtalk_app_secret=APP_SECRET,
                dingtalk_robot_code=ROBOT_CODE, dingtalk_token=TOKEN, dingtalk_aes_key=AES_KEY,
                dingtalk_api_base=str(sim_server.make_url("")).rstrip("/"))
    opts.update(overrides)
    settings = load_settings(**opts)
    app = create_app(settings)
    bot = TestServer(app, host="127.0.0.1")
    await bot.start_server()
    return Env(sim, recorder, bot, app, db_url), sim_server


@pytest.fixture
async def env(db_url, tmp_path):
    e, sim_server = await start_env(db_url, tmp_path)
    yield e
    await e.bot.close()
    await sim_server.close()


@pytest.fixture
async def env_noreplay(db_url, tmp_path):
    e, sim_server = await start_env(db_url, tmp_path, replay_window_s=0)
    yield e
    await e.bot.close()
    await sim_server.close()
