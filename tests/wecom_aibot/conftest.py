"""A running bot (create_app, only the WeCom AI bot configured) on a running fake
``openws.work.weixin.qq.com``, both on loopback; the demo org seeded for the AI bot."""

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
from simulator.seed import seed
from simulator.wecom_aibot import WS_PATH, WeComAibotSim

BOT_ID = "aib_test_bot"
SECRET = "aibot-secret-value"
PING_S = 0.3


@dataclass
class Env:
    sim: WeComAibotSim
    recorder: Recorder
    bot: TestServer
    api: TestServer
    ws_url: str
    db_url: str

    @property
    def app(self) -> web.Application:
        return self.bot.app

    @property
    def adapter(self):
        return self.app[ADAPTERS]["wecom_aibot"]

    @property
    def transport(self):
        return self.adapter.transport

    async def inbox_rows(self) -> int:
        async with self.app[ENGINE].connect() as conn:
            return (await conn.execute(text("SELECT count(*) FROM inbox_events"))).scalar_one()

    async def stop(self) -> None:
        await self.bot.close()
        await self.api.close()


async def wait_for(pred, timeout: float = 10.0, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:.1f}s")
        await asyncio.sleep(every)


async def start_sim(secret: str = SECRET) -> tuple[WeComAibotSim, Recorder, TestServer, str]:
    recorder = Recorder()
    sim = WeComAibotSim(recorder, BOT_ID, secret)
    app = web.Application()
    sim.add_routes(app)
    api = TestServer(app, host="127.0.0.1")
    await api.start_server()
    return sim, recorder, api, str(api.make_url(WS_PATH)).replace("http://", "ws://")


async def start_bot(db_url: str, data_dir, ws_url: str, secret: str = SECRET,
                    **overrides) -> TestServer:
    settings = load_settings(database_url=db_url, data_dir=data_dir,
                             wecom_aibot_bot_id=BOT_ID, wecom_aibot_secret=secret,
                             wecom_aibot_ws_url=ws_url, longconn_ping_s=PING_S, **overrides)
    bot = TestServer(create_app(settings), host="127.0.0.1")
    await bot.start_server()
    return bot


async def start_env(db_url: str, tmp_path, secret: str = SECRET, wait: bool = True,
                    **overrides) -> Env:
    sim, recorder, api, ws_url = await start_sim()
    await asyncio.to_thread(seed, db_url, {"wecom_aibot": BOT_ID})
    bot = await start_bot(db_url, tmp_path / "data", ws_url, secret, **overrides)
    env = Env(sim, recorder, bot, api, ws_url, db_url)
    if wait:
        await sim.wait_connected()
    return env


@pytest.fixture
async def aibot(db_url, tmp_path):
    env = await start_env(db_url, tmp_path)
    yield env
    await env.stop()
