"""``fieldbot demo``: the bot + the platform simulator + a web chat page, on one event loop.

SQLite in ``data_dir``, demo data seeded on every start (idempotent). The bot listens on
``port``, the simulator (fake platform APIs and the chat page) on ``port + 1`` (or any free
port if that one is taken). The chat page and its JSON API are mounted on both, so the URL to
open is the bot's. Ctrl-C stops both cleanly.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import sys
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from simulator.seed import seed
from simulator.server import Simulator

log = logging.getLogger(__name__)


@dataclass
class DemoStack:
    sim: Simulator
    runner: web.AppRunner
    bot_url: str
    database_url: str
    transport: str = "webhook"

    @property
    def page_url(self) -> str:
        return self.bot_url + "/"

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.sim.stop()


TRANSPORTS = ("webhook", "stream")
# --transport stream: every platform's events over its long connection (issue 14)
STREAM_SETTINGS = {"dingtalk_mode": "stream", "feishu_mode": "ws"}
# platforms whose fake pushes over the long connection (WeCom as the AI bot)
STREAMED = ("wecom", "dingtalk", "feishu")


async def start_demo(host: str = "127.0.0.1", port: int = 0, data_dir: str | Path = "data/demo",
                     sim_port: int | None = None, database_url: str | None = None,
                     transport: str = "webhook", **settings_extra) -> DemoStack:
    """Start simulator and bot (``port=0``: ephemeral ports, for tests) and seed the DB
    (``database_url``: another database than the SQLite file in ``data_dir``, for tests).
    ``transport="stream"``: the bot receives nothing by HTTP; DingTalk and Feishu push over
    their long connections, and the page's WeCom is the AI bot (智能机器人) over its own."""
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {TRANSPORTS}")
    if transport == "stream":
        for key, value in STREAM_SETTINGS.items():
            settings_extra.setdefault(key, value)
    from bot.app import create_app
    from config import load_settings

    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    url = database_url or f"sqlite:///{(data / 'fieldbot.db').as_posix()}"
    sim = Simulator(host=host, aibot=transport == "stream")
    wanted = sim_port if sim_port is not None else (port + 1 if port else 0)
    try:
        await sim.start(wanted)
    except OSError:
        log.info("port %s is taken; the simulator takes a free one", wanted)
        await sim.start(0)
    try:
        await asyncio.to_thread(seed, url, sim.app_ids())
        platforms = [p for p in sim.platforms if _integration_ready(p)]
        settings_extra.setdefault("web_demo_login", True)  # the mini-app's "sign in as…"
        # the demo asks the simulator's fake 天眼查 API for 工商信息 after OCR (a test may
        # pass its own registry_* settings)
        overrides = {**sim.registry_overrides(), **sim.settings_overrides(platforms=platforms),
                     **settings_extra}
        settings = load_settings(database_url=url, data_dir=data, host=host, port=port,
                                 **overrides)
        app = await asyncio.to_thread(create_app, settings)
        sim.view.add_routes(app)  # the chat page also on the bot's port: one URL to open
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
    except BaseException:
        await sim.stop()
        raise
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    sim.bot_url = f"http://{host}:{bound}"
    sim.bot_platforms = platforms
    return DemoStack(sim=sim, runner=runner, bot_url=sim.bot_url, database_url=url,
                     transport=transport)


def _integration_ready(platform: str) -> bool:
    """Mount a platform only when the bot has its integration (the demo runs with what is
    there rather than refusing to start)."""
    try:
        importlib.import_module(f"integrations.{platform}.adapter")
    except ImportError as exc:
        log.warning("demo: %s integration unavailable (%s); not mounted", platform, exc)
        return False
    return True


async def _run(host: str, port: int, data_dir: str | Path, transport: str = "webhook") -> None:
    stack = await start_demo(host, port, data_dir, transport=transport)
    print("", flush=True)
    how = ("long connections, no inbound callbacks" if transport == "stream"
           else f"webhooks on {stack.bot_url}")
    print(f"FieldBot demo: open {stack.page_url}  ({how},"
          f" platforms: {', '.join(stack.sim.bot_platforms or [])})")
    print(f"Workbench mini-app (sign in as anyone): {stack.bot_url}/app/")
    print("Pick a platform and a person, type `help`, tap the card's button, send a voice note"
          " or a photo. Ctrl-C stops.", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        print("stopping…", flush=True)
        await stack.stop()


def run_demo(host: str = "127.0.0.1", port: int = 8080, data_dir: str | Path = "data/demo",
             transport: str = "webhook") -> int:
    try:
        asyncio.run(_run(host, port, data_dir, transport))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"FieldBot demo could not start on {host}:{port}: {exc}"
              " (is something else listening there? try --port)", file=sys.stderr)
        return 1
    return 0
