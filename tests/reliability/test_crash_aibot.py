"""Crash safety over the WeCom AI bot's long connection (issue 14): ``kill -9`` the real bot
while 2,000 messages arrive, the server dropping the connection every 100 frames.

The AI bot protocol has no acknowledgement frame: the bot's answer *is* the in-band reply on
the callback's req_id. WeCom documents that the same msgid may be pushed again; how soon, and
whether an unanswered message is pushed again at all, is not published [?]. The simulator here
plays the platform as the protocol allows: a message with no reply within ``REPUSH_S`` is pushed
again (same msgid, new req_id) to whichever connection is up. At the end: every message is
exactly one inbox row, handled once, and got its reply — in-band, or, when its req_id died with
the connection, as a proactive ``aibot_send_msg``.
"""

from __future__ import annotations

import asyncio
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
from simulator.wecom_aibot import WS_PATH, WeComAibotSim
from tests.conftest import free_port
from tests.reliability.test_crash import Bot, attempt_histograms
from tests.reliability.test_crash_stream import snapshot

N = int(os.environ.get("FIELDBOT_CRASH_MESSAGES", "2000"))
KILLS = int(os.environ.get("FIELDBOT_CRASH_KILLS", "6"))
USERS = 400
CONCURRENCY = 32
REPUSH_S = 3.0
LOAD_DEADLINE_S = 120
DRAIN_DEADLINE_S = 60
BOT_ID, SECRET = "aib_crash_bot", "aibot-crash-secret"

pytestmark = pytest.mark.slow


class Replies:
    """The bot's accepted replies per message text, read incrementally from the recorder."""

    def __init__(self, sim: WeComAibotSim):
        self.sim, self.seen, self.by_text = sim, 0, Counter()

    def __call__(self) -> Counter:
        calls = self.sim.recorder.calls
        for call in calls[self.seen:]:
            if (call.platform == "wecom_aibot" and call.result and call.result["errcode"] == 0
                    and call.api in ("aibot_respond_msg", "aibot_send_msg")):
                m = re.search(r"收到文字：(crash-[0-9a-f]{6}-\d{5})", str(call.body))
                if m:
                    self.by_text[m.group(1)] += 1
        self.seen = len(calls)
        return self.by_text


async def test_kill9_over_the_aibot_connection(db_url, tmp_path):
    rnd = random.Random()
    sim = WeComAibotSim(Recorder(), BOT_ID, SECRET)
    api = web.Application()
    sim.add_routes(api)
    server = TestServer(api, host="127.0.0.1", port=free_port())
    await server.start_server()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDBOT_")}
    env.update({
        "FIELDBOT_DATABASE_URL": db_url, "FIELDBOT_HOST": "127.0.0.1",
        "FIELDBOT_PORT": str(port), "FIELDBOT_DATA_DIR": str(tmp_path / "data"),
        "FIELDBOT_SECRET_KEY": "crash-test-secret-key-0123456789",
        "FIELDBOT_WECOM_AIBOT_BOT_ID": BOT_ID, "FIELDBOT_WECOM_AIBOT_SECRET": SECRET,
        "FIELDBOT_WECOM_AIBOT_WS_URL": str(server.make_url(WS_PATH)).replace("http", "ws", 1),
        "FIELDBOT_LONGCONN_PING_S": "2", "FIELDBOT_WORKERS": "0", "PYTHONUNBUFFERED": "1",
    })
    bot = Bot(env, port, tmp_path / "bot.log")
    replies_by_text = Replies(sim)
    run = f"{rnd.randrange(16**6):06x}"
    msgs = [(f"crash-{run}-{i:05d}", f"crash.user{i % USERS:03d}") for i in range(N)]
    stats = Counter()
    t_end = time.monotonic() + LOAD_DEADLINE_S
    sem = asyncio.Semaphore(CONCURRENCY)
    frames = 0

    async def deliver(i: int, text: str, user: str) -> None:
        nonlocal frames
        body = sim._body(user, "text", {"text": {"content": text}})  # one msgid throughout
        async with sem:
            while time.monotonic() < t_end:
                if not sim.connected:
                    await asyncio.sleep(0.05)
                    continue
                try:
                    await sim.push("aibot_msg_callback", body)
                except (RuntimeError, ConnectionError):
                    await asyncio.sleep(0.05)  # the connection is going: never spin the loop
                    continue
                stats["pushes"] += 1
                frames += 1
                if frames % 100 == 0:
                    stats["drops"] += 1
                    await sim.drop()  # the server drops the connection every 100 frames
                deadline = time.monotonic() + REPUSH_S
                while time.monotonic() < deadline:
                    if replies_by_text()[text]:
                        return
                    await asyncio.sleep(0.1)
                stats["repushes"] += 1
            stats["gave_up"] += 1

    async def killer(session: aiohttp.ClientSession) -> None:
        while bot.kills < KILLS and time.monotonic() < t_end:
            await asyncio.sleep(rnd.uniform(1.0, 3.0))
            bot.kill9()
            await asyncio.sleep(rnd.uniform(0.05, 0.4))
            bot.start()
            assert await bot.healthy(session, 60), "bot did not restart:\n" + bot.log_tail()

    try:
        bot.start()
        async with aiohttp.ClientSession() as session:
            assert await bot.healthy(session, 60), "bot did not start:\n" + bot.log_tail()
            await sim.wait_connected(timeout=30)
            kill_task = asyncio.create_task(killer(session))
            await asyncio.gather(*(deliver(i, t, u) for i, (t, u) in enumerate(msgs)))
            await kill_task
            if bot.proc is None or bot.proc.poll() is not None:
                bot.start()
            assert await bot.healthy(session, 60), "bot did not come back:\n" + bot.log_tail()
        deadline = time.monotonic() + DRAIN_DEADLINE_S
        while True:
            snap = await asyncio.to_thread(snapshot, db_url, "wecom_aibot")
            pending = sum(v for k, v in snap["inbox"].items() if k != "done")
            if snap["inbox"] and not pending and not snap["outbox"].get("pending", 0):
                break
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        hist = await asyncio.to_thread(attempt_histograms, db_url)
    finally:
        bot.stop()
        await server.close()
    by_text = replies_by_text()
    lost = [t for t, _u in msgs if by_text[t] == 0]
    resent = sum(v - 1 for v in by_text.values() if v > 1)
    stored = Counter(snap["keys"])
    print(f"\n[crash-aibot/{db_url.split(':')[0]}] messages={N} kills={bot.kills} "
          f"starts={bot.starts} pushes={dict(stats)} subscribes={len(sim.subscribes)}")
    print(f"  attempts histogram: inbox={hist['inbox_events']} outbox={hist['outbox']}")
    print(f"  inbox_rows={len(snap['keys'])} inbox={snap['inbox']} outbox={snap['outbox']}"
          f" lost={len(lost)} raw re-sends={resent}")
    tail = "\n" + bot.log_tail()
    assert bot.kills >= 5 and stats["drops"] >= 10, (bot.kills, dict(stats))
    assert stats["gave_up"] == 0, dict(stats)
    assert len(snap["keys"]) == N and not [k for k, v in stored.items() if v > 1]
    assert snap["inbox"] == {"done": N}, snap["inbox"]
    assert not lost, f"{len(lost)} messages got no reply, e.g. {lost[:3]}" + tail
    assert resent <= bot.kills * CONCURRENCY + stats["drops"] * CONCURRENCY, resent
