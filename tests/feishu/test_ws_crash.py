"""Crash safety over the Feishu 长连接 (issue 14): ``kill -9`` the real bot while the fake
Feishu pushes 2,000 messages, and drops the connection every 100 frames.

The bot (``python -m bot.cli serve`` with ``FIELDBOT_FEISHU_MODE=ws``, no webhook) is
SIGKILLed at random moments ≥ 5 times and restarted. The fake plays the platform: a message
whose ack did not come within the deadline is pushed again, to whichever connection is up, and
10 % of acknowledged ones are pushed once more. At the end: every acknowledged event is
exactly one inbox row and got exactly one reply (Feishu dedupes sends by ``uuid``, so a reply
re-sent after a kill shows up as a ``send_dup`` call, never a second message).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
from collections import Counter

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from simulator.core import Recorder
from simulator.feishu import FeishuSim
from tests.conftest import free_port
from tests.reliability.test_crash import Bot

N = int(os.environ.get("FIELDBOT_CRASH_MESSAGES", "2000"))
KILLS = int(os.environ.get("FIELDBOT_CRASH_KILLS", "6"))
USERS = 400
CONCURRENCY = 32
DUP_RATE = 0.1
LOAD_DEADLINE_S = 90
DRAIN_DEADLINE_S = 60
APP_ID, APP_SECRET = "cli_crash_ws", "crash-feishu-secret"

pytestmark = pytest.mark.slow


def snapshot(db_url: str) -> dict:
    from sqlalchemy import text

    from storage.db import sync_engine

    eng = sync_engine(db_url)
    try:
        with eng.connect() as c:
            keys = [r[0] for r in c.execute(text(
                "SELECT dedupe_key FROM inbox_events WHERE platform='feishu'"))]
            inbox = dict(c.execute(text(
                "SELECT status, count(*) FROM inbox_events GROUP BY status")).all())
            outbox = dict(c.execute(text(
                "SELECT status, count(*) FROM outbox GROUP BY status")).all())
        return {"keys": keys, "inbox": inbox, "outbox": outbox}
    except Exception as exc:  # noqa: BLE001 - tables may not exist before the first start
        return {"keys": [], "inbox": {}, "outbox": {}, "error": repr(exc)}
    finally:
        eng.dispose()


async def test_kill9_over_ws_loses_nothing_handles_once(db_url, tmp_path):
    rnd = random.Random()  # noqa: S311
    sim = FeishuSim(Recorder(), APP_ID, APP_SECRET, "vt", "ek", qps=10**9)
    sim.ws.drop_every_n = 100
    sim.ws.max_attempts = 1  # the loop below pushes again, like Feishu
    sim.ws.ack_deadline_s = 1.5
    api = web.Application(client_max_size=4 * 1024 * 1024)
    sim.add_routes(api)
    api_server = TestServer(api, host="127.0.0.1", port=free_port())
    await api_server.start_server()

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDBOT_")}
    env.update({
        "FIELDBOT_DATABASE_URL": db_url, "FIELDBOT_HOST": "127.0.0.1",
        "FIELDBOT_PORT": str(port), "FIELDBOT_DATA_DIR": str(tmp_path / "data"),
        "FIELDBOT_SECRET_KEY": "crash-test-secret-key-0123456789",
        "FIELDBOT_FEISHU_MODE": "ws", "FIELDBOT_FEISHU_APP_ID": APP_ID,
        "FIELDBOT_FEISHU_APP_SECRET": APP_SECRET,
        "FIELDBOT_FEISHU_API_BASE": str(api_server.make_url("")).rstrip("/"),
        "FIELDBOT_LONGCONN_PING_S": "2", "PYTHONUNBUFFERED": "1",
    })
    bot = Bot(env, port, tmp_path / "bot.log")
    run = f"{rnd.randrange(16**6):06x}"
    msgs = [(f"fcrash-{run}-{i:05d}", f"crash-{run}-{i:05d}", f"ou_crash{i % USERS:03d}")
            for i in range(N)]
    acked: set[str] = set()
    stats = Counter()
    t_end = time.monotonic() + LOAD_DEADLINE_S
    sem = asyncio.Semaphore(CONCURRENCY)

    async def deliver(event_id: str, text: str, user: str) -> None:
        async with sem:
            while time.monotonic() < t_end:
                stats["pushes"] += 1
                if await sim.ws.push_message(user, text, event_id=event_id) is not None:
                    acked.add(event_id)
                    if rnd.random() < DUP_RATE:
                        stats["dup_pushes"] += 1
                        await sim.ws.push_message(user, text, event_id=event_id)
                    return
                stats["unacked"] += 1
                await asyncio.sleep(0.05 + 0.1 * rnd.random())
            stats["gave_up"] += 1

    async def killer(session: aiohttp.ClientSession) -> None:
        while bot.kills < KILLS and time.monotonic() < t_end:
            await asyncio.sleep(rnd.uniform(0.5, 2.5))
            bot.kill9()
            await asyncio.sleep(rnd.uniform(0.05, 0.4))
            bot.start()
            assert await bot.healthy(session, 60), "bot did not restart:\n" + bot.log_tail()

    t0 = time.monotonic()
    try:
        bot.start()
        async with aiohttp.ClientSession() as session:
            assert await bot.healthy(session, 60), "bot did not start:\n" + bot.log_tail()
            await sim.ws.wait_connected(timeout=30)
            kill_task = asyncio.create_task(killer(session))
            await asyncio.gather(*(deliver(*m) for m in msgs))
            load_s = time.monotonic() - t0
            await kill_task
            if bot.proc is None or bot.proc.poll() is not None:
                bot.start()
            assert await bot.healthy(session, 60), "bot did not come back:\n" + bot.log_tail()
        deadline = time.monotonic() + DRAIN_DEADLINE_S
        while True:
            snap = await asyncio.to_thread(snapshot, db_url)
            pending_in = sum(v for k, v in snap["inbox"].items() if k != "done")
            if (snap["inbox"] and not pending_in and not snap["outbox"].get("pending", 0)
                    and len(sim.delivered()) >= len(acked)):
                break
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
    finally:
        bot.stop()
        await api_server.close()

    by_text = Counter()
    for m in sim.delivered():
        found = re.search(r"收到文字：(crash-[0-9a-f]{6}-\d{5})",
                          json.dumps(m.content, ensure_ascii=False))
        if found:
            by_text[found.group(1)] += 1
    want = {text for event_id, text, _u in msgs if event_id in acked}
    lost = [t for t in want if by_text[t] == 0]
    twice = {t: v for t, v in by_text.items() if v > 1}
    stored = Counter(k.rsplit(":", 1)[1] for k in snap["keys"])
    print(f"\n[crash-ws/{db_url.split(':')[0]}] messages={N} kills={bot.kills} "
          f"starts={bot.starts} load={load_s:.1f}s pushes={dict(stats)} "
          f"repushed={sim.ws.repushed} endpoint_calls={len(sim.ws.endpoint_calls)}")
    print(f"  acked={len(acked)} inbox_rows={len(snap['keys'])} inbox={snap['inbox']} "
          f"outbox={snap['outbox']} replies={len(sim.delivered())} "
          f"send_dups={len(sim.recorder.of('feishu', 'send_dup'))} lost={len(lost)}")
    tail = "\n" + bot.log_tail()
    assert bot.kills >= 5, f"only {bot.kills} kills happened"
    assert stats["gave_up"] == 0 and len(acked) == N, f"gave up: {dict(stats)}" + tail
    assert acked <= set(stored), "acknowledged events not stored" + tail
    assert not {k: v for k, v in stored.items() if v > 1}, "an event stored twice"
    assert snap["inbox"] == {"done": N}, f"inbox not drained: {snap['inbox']}" + tail
    assert not lost, f"{len(lost)} acknowledged events got no reply" + tail
    assert not twice, f"replies delivered twice: {list(twice)[:5]}"
