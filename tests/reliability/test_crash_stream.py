"""Crash safety over DingTalk Stream (issue 14): ``kill -9`` the real bot while the gateway
pushes 2,000 robot messages, and the gateway drops the connection every 100 frames.

The bot (``python -m bot.cli serve`` with ``FIELDBOT_DINGTALK_MODE=stream``, its only
entrance a long connection to the simulator's gateway) is SIGKILLed at random moments ≥ 5
times and restarted. The gateway plays the platform: a message whose ack did not come is
pushed again (to whichever connection is up), and 10 % of acknowledged ones are pushed once
more. At the end: every acknowledged message is exactly one inbox row, handled (``done``),
every message got its reply. A reply whose send reached DingTalk just before a kill, before
the outbox marked it sent, is sent again after the restart — DingTalk has no idempotency key
for robot messages — so those raw re-sends are counted and bounded, not hidden.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from simulator.core import Recorder
from simulator.dingtalk import DingTalkSim
from tests.conftest import free_port
from tests.reliability.test_crash import Bot, attempt_histograms

ROOT = Path(__file__).resolve().parents[2]
N = int(os.environ.get("FIELDBOT_CRASH_MESSAGES", "2000"))
KILLS = int(os.environ.get("FIELDBOT_CRASH_KILLS", "6"))
USERS = 400
CONCURRENCY = 32
DUP_RATE = 0.1
LOAD_DEADLINE_S = 90
# the replies go out at DingTalk's 20 calls/s per API (the client keeps under it): 2,000 of
# them need 100 s, part of it during the load
DRAIN_DEADLINE_S = 150
APP_KEY, APP_SECRET, ROBOT = "dingcrashkey", "crash-dingtalk-secret", "dingcrashrobot"

pytestmark = pytest.mark.slow


def snapshot(db_url: str, platform: str = "dingtalk") -> dict:
    from sqlalchemy import text

    from storage.db import sync_engine

    eng = sync_engine(db_url)
    try:
        with eng.connect() as c:
            keys = [r[0] for r in c.execute(text(
                "SELECT dedupe_key FROM inbox_events WHERE platform=:p"), {"p": platform})]
            inbox = dict(c.execute(text(
                "SELECT status, count(*) FROM inbox_events GROUP BY status")).all())
            outbox = dict(c.execute(text(
                "SELECT status, count(*) FROM outbox GROUP BY status")).all())
        return {"keys": keys, "inbox": inbox, "outbox": outbox}
    except Exception as exc:  # noqa: BLE001 - tables may not exist before the first start
        return {"keys": [], "inbox": {}, "outbox": {}, "error": repr(exc)}
    finally:
        eng.dispose()


async def test_kill9_over_stream_loses_nothing_handles_once(db_url, tmp_path):
    rnd = random.Random()
    recorder = Recorder()
    sim = DingTalkSim(recorder, APP_KEY, APP_SECRET, ROBOT, "t", "a" * 43,
                      per_destination=(10**9, 60.0))  # rate limits are not under test here
    sim.stream.drop_every = 100
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
        "FIELDBOT_DINGTALK_MODE": "stream", "FIELDBOT_DINGTALK_APP_KEY": APP_KEY,
        "FIELDBOT_DINGTALK_APP_SECRET": APP_SECRET, "FIELDBOT_DINGTALK_ROBOT_CODE": ROBOT,
        "FIELDBOT_DINGTALK_API_BASE": str(api_server.make_url("")).rstrip("/"),
        "FIELDBOT_LONGCONN_PING_S": "2", "PYTHONUNBUFFERED": "1",
    })
    bot = Bot(env, port, tmp_path / "bot.log")
    run = f"{rnd.randrange(16**6):06x}"
    msgs = [(f"dcrash-{run}-{i:05d}", f"crash-{run}-{i:05d}", f"crash.user{i % USERS:03d}")
            for i in range(N)]
    acked: set[str] = set()
    stats = Counter()
    t_end = time.monotonic() + LOAD_DEADLINE_S
    sem = asyncio.Semaphore(CONCURRENCY)

    async def deliver(msg_id: str, text: str, user: str) -> None:
        async with sem:
            while time.monotonic() < t_end:
                stats["pushes"] += 1
                ack = await sim.stream_text(user, text, msg_id=msg_id, timeout=1.5)
                if ack is not None and ack.get("code") == 200:
                    acked.add(msg_id)
                    if rnd.random() < DUP_RATE:
                        stats["dup_pushes"] += 1
                        await sim.stream_text(user, text, msg_id=msg_id, timeout=1.5)
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
            await sim.stream.wait_connected(timeout=30)
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
                    and len(sim.sent()) >= len(acked)):
                break
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        hist = await asyncio.to_thread(attempt_histograms, db_url)
    finally:
        bot.stop()
        await api_server.close()

    by_text = Counter()
    for content in sim.texts():
        m = re.search(r"收到文字：(crash-[0-9a-f]{6}-\d{5})", content)
        if m:
            by_text[m.group(1)] += 1
    want = {text for msg_id, text, _u in msgs if msg_id in acked}
    lost_replies = [t for t in want if by_text[t] == 0]
    resent = sum(v - 1 for v in by_text.values() if v > 1)
    stored = Counter(k.rsplit(":", 1)[1] for k in snap["keys"])
    ids = {m[0] for m in msgs}
    print(f"\n[crash-stream/{db_url.split(':')[0]}] messages={N} kills={bot.kills} "
          f"starts={bot.starts} load={load_s:.1f}s pushes={dict(stats)} opens={sim.stream.opens}")
    print(f"  attempts histogram: inbox={hist['inbox_events']} outbox={hist['outbox']}")
    print(f"  acked={len(acked)} inbox_rows={len(snap['keys'])} inbox={snap['inbox']} "
          f"outbox={snap['outbox']} replies={len(sim.sent())} raw re-sends={resent}"
          f" lost={len(lost_replies)}")
    tail = "\n" + bot.log_tail()
    assert bot.kills >= 5, f"only {bot.kills} kills happened"
    assert stats["gave_up"] == 0 and len(acked) == N, f"gave up: {dict(stats)}" + tail
    assert acked <= set(stored), "acknowledged messages not stored" + tail
    assert not {k: v for k, v in stored.items() if v > 1}, "a message stored twice"
    assert set(stored) == ids
    assert snap["inbox"] == {"done": N}, snap["inbox"]
    assert snap["outbox"] == {"sent": N}, snap["outbox"]
    assert not lost_replies, f"{len(lost_replies)} messages got no reply" + tail
    # a re-send needs a kill between DingTalk's answer and the outbox's mark: a few per kill
    assert resent <= bot.kills * CONCURRENCY, resent
    assert sim.stream.opens > bot.starts  # the drops every 100 frames reconnected too
