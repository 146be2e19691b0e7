"""Crash safety: ``kill -9`` the real bot repeatedly while a platform-like client keeps sending.

RELIABILITY.md §5 test 1 (+ the outbound half of test 2): ≥ 2,000 unique WeCom text callbacks
from a client that re-signs and re-sends on connection errors / non-200 answers (and, like the
platform, sometimes re-sends an event it already got a 200 for), while the bot subprocess
(``python -m bot.cli serve``) is killed with SIGKILL at random moments ≥ 5 times and restarted.
At the end, once the outbox has drained:

* every acknowledged callback is exactly one inbox row (nothing lost, nothing twice);
* every message got exactly one reply *as WeCom delivers them*, "收到文字：<text>".

A crash between WeCom accepting a send and the outbox marking it sent makes the bot send again
after the restart; the real client passes ``enable_duplicate_check`` (1800 s), and the fake
WeCom (``simulator.wecom.WeComSim``) drops a repeat of the same content to the same user inside
that interval exactly as WeCom does. Those raw re-sends are counted and printed.

The outbox lease (``FIELDBOT_OUTBOX_LEASE_S``, 60 s) decides how long a row claimed by a killed
process waits before another process may send it; the bot here runs with a 5 s lease so the
test finishes in well under a minute per database (the only setting changed for the test).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from simulator.core import Recorder
from simulator.wecom import WeComSim
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
N = int(os.environ.get("FIELDBOT_CRASH_MESSAGES", "2000"))
KILLS = int(os.environ.get("FIELDBOT_CRASH_KILLS", "6"))
LEASE_S = 5
USERS = 200  # ≤ 10 replies per user: below WeCom's 30/min per member (adapter limit)
CONCURRENCY = 32
DUP_RATE = 0.1  # share of acked callbacks the "platform" sends once more
LOAD_DEADLINE_S = 70
DRAIN_DEADLINE_S = 60

CORP_ID, AGENT_ID, SECRET = "wwcrash0000000001", "1000002", "crash-secret"
TOKEN, AES_KEY = "crashToken", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

# The real command: a web process and its worker process (killed with it: PDEATHSIG).
BOT_CMD = [sys.executable, "-m", "bot.cli", "--log-level", "WARNING", "serve"]

pytestmark = pytest.mark.slow


class Bot:
    """The bot as a subprocess that can be SIGKILLed and restarted."""

    def __init__(self, env: dict, port: int, log: Path):
        self.env, self.port, self.log_path = env, port, log
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.kills = 0

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            env = {**self.env, "FIELDBOT_OUTBOX_LEASE_S": str(LEASE_S)}
            self.proc = subprocess.Popen(BOT_CMD, env=env, cwd=ROOT, stdout=log,
                                         stderr=subprocess.STDOUT)
        self.starts += 1

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()

    async def healthy(self, session: aiohttp.ClientSession, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                return False
            try:
                async with session.get(f"http://127.0.0.1:{self.port}/healthz",
                                       timeout=aiohttp.ClientTimeout(total=1)) as r:
                    if r.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
        return False

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def db_snapshot(db_url: str) -> dict:
    from sqlalchemy import text

    from storage.db import sync_engine

    eng = sync_engine(db_url)
    try:
        with eng.connect() as c:
            keys = [r[0] for r in c.execute(text(
                "SELECT dedupe_key FROM inbox_events WHERE platform='wecom'"))]
            inbox = dict(c.execute(text(
                "SELECT status, count(*) FROM inbox_events GROUP BY status")).all())
            outbox = dict(c.execute(text(
                "SELECT status, count(*) FROM outbox GROUP BY status")).all())
        return {"keys": keys, "inbox": inbox, "outbox": outbox}
    except Exception as exc:  # noqa: BLE001 - tables may not exist before the first start
        return {"keys": [], "inbox": {}, "outbox": {}, "error": repr(exc)}
    finally:
        eng.dispose()


def attempt_histograms(db_url: str) -> dict:
    from sqlalchemy import text

    from storage.db import sync_engine

    eng = sync_engine(db_url)
    try:
        with eng.connect() as c:
            return {t: dict(c.execute(text(
                f"SELECT attempts, count(*) FROM {t} GROUP BY attempts ORDER BY attempts")).all())
                for t in ("inbox_events", "outbox")}
    finally:
        eng.dispose()


async def test_kill9_acked_means_stored_and_replied_once(db_url, tmp_path):
    rnd = random.Random()
    recorder = Recorder()
    sim = WeComSim(recorder, CORP_ID, AGENT_ID, SECRET, TOKEN, AES_KEY,
                   per_member=(10**9, 60.0))  # rate limits are not under test here
    api = web.Application()
    sim.add_routes(api)
    api_server = TestServer(api, host="127.0.0.1", port=free_port())
    await api_server.start_server()

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDBOT_")}
    env.update({
        "FIELDBOT_DATABASE_URL": db_url, "FIELDBOT_HOST": "127.0.0.1",
        "FIELDBOT_PORT": str(port), "FIELDBOT_DATA_DIR": str(tmp_path / "data"),
        "FIELDBOT_SECRET_KEY": "crash-test-secret-key-0123456789",
        "FIELDBOT_WECOM_CORP_ID": CORP_ID, "FIELDBOT_WECOM_AGENT_ID": AGENT_ID,
        "FIELDBOT_WECOM_SECRET": SECRET, "FIELDBOT_WECOM_TOKEN": TOKEN,
        "FIELDBOT_WECOM_AES_KEY": AES_KEY,
        "FIELDBOT_WECOM_API_BASE": str(api_server.make_url("")).rstrip("/"),
        "PYTHONUNBUFFERED": "1",
    })
    bot = Bot(env, port, tmp_path / "bot.log")
    url = f"http://127.0.0.1:{port}/webhooks/wecom"

    run = f"{rnd.randrange(16**6):06x}"
    base_id = 7_000_000_000_000_000_000 + rnd.randrange(10**12) * 10**5
    msgs = [(str(base_id + i), f"crash-{run}-{i:05d}", f"crash.user{i % USERS:03d}")
            for i in range(N)]
    acked: set[str] = set()
    stats = Counter()
    t_end = time.monotonic() + LOAD_DEADLINE_S
    sem = asyncio.Semaphore(CONCURRENCY)

    async def post(session: aiohttp.ClientSession, msg_id: str, text: str, user: str) -> int:
        inner = sim.message_xml(user, "text", {"Content": text, "MsgId": msg_id})
        query, body = sim.sign_callback(inner)  # the platform signs every (re)send afresh
        stats["attempts"] += 1
        async with session.post(url, params=query, data=body,
                                headers={"Content-Type": "text/xml"},
                                timeout=aiohttp.ClientTimeout(total=5)) as r:
            await r.read()
            return r.status

    async def deliver(session: aiohttp.ClientSession, msg_id: str, text: str, user: str):
        async with sem:
            delay = 0.05
            while time.monotonic() < t_end:
                try:
                    status = await post(session, msg_id, text, user)
                except (aiohttp.ClientError, TimeoutError, ConnectionError):
                    stats["conn_err"] += 1
                else:
                    if status == 200:
                        acked.add(msg_id)
                        if rnd.random() < DUP_RATE:  # platform re-sends an acked event
                            stats["dup_sends"] += 1
                            try:
                                await post(session, msg_id, text, user)
                            except (aiohttp.ClientError, TimeoutError, ConnectionError):
                                pass
                        return
                    stats[f"http_{status}"] += 1
                await asyncio.sleep(delay * (0.5 + rnd.random()))
                delay = min(delay * 2, 1.0)
            stats["gave_up"] += 1

    async def killer(session: aiohttp.ClientSession):
        while bot.kills < KILLS and time.monotonic() < t_end:
            await asyncio.sleep(rnd.uniform(0.3, 2.0))  # a random moment of uptime
            bot.kill9()
            await asyncio.sleep(rnd.uniform(0.05, 0.4))
            bot.start()
            assert await bot.healthy(session, 60), "bot did not restart:\n" + bot.log_tail()

    t0 = time.monotonic()
    try:
        bot.start()
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:
            assert await bot.healthy(session, 60), "bot did not start:\n" + bot.log_tail()
            kill_task = asyncio.create_task(killer(session))
            await asyncio.gather(*(deliver(session, *m) for m in msgs))
            load_s = time.monotonic() - t0
            await kill_task  # kills left over after the load hit dispatch / outbox drain
            if bot.proc is None or bot.proc.poll() is not None:
                bot.start()
            assert await bot.healthy(session, 60), "bot did not come back:\n" + bot.log_tail()
        kills_s = time.monotonic() - t0 - load_s
        at_restart = await asyncio.to_thread(db_snapshot, db_url)
        delivered_at_restart = len(sim.sent())

        # drain: every inbox row handled, every outbox row sent, N replies delivered
        deadline = time.monotonic() + DRAIN_DEADLINE_S
        while True:
            snap = await asyncio.to_thread(db_snapshot, db_url)
            pending_in = sum(v for k, v in snap["inbox"].items() if k != "done")
            pending_out = snap["outbox"].get("pending", 0)
            if (snap["inbox"] and not pending_in and not pending_out
                    and len(sim.sent()) >= len(acked)):
                break
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        drain_s = time.monotonic() - t0 - load_s - kills_s
        hist = await asyncio.to_thread(attempt_histograms, db_url)
    finally:
        bot.stop()
        await api_server.close()

    delivered = sim.sent()
    deduped = recorder.of("wecom", "send_duplicate")
    by_text = Counter()
    unexpected = []
    for call in delivered:
        content = ((call.body or {}).get("text") or {}).get("content", "")
        m = re.search(r"收到文字：(crash-[0-9a-f]{6}-\d{5})", content)
        if m:
            by_text[(call.dest, m.group(1))] += 1
        else:
            unexpected.append(content[:80])
    want = {(user, text) for msg_id, text, user in msgs if msg_id in acked}
    lost_replies = [k for k in want if by_text[k] == 0]
    dup_replies = {k: v for k, v in by_text.items() if v > 1}

    stored = Counter(k.rsplit(":", 1)[1] for k in snap["keys"])
    ids = {m[0] for m in msgs}
    acked_missing = acked - set(stored)
    dup_rows = {k: v for k, v in stored.items() if v > 1}
    stray_rows = set(stored) - ids

    print(f"\n[crash/{db_url.split(':')[0]}] messages={N} kills={bot.kills} "
          f"starts={bot.starts} load={load_s:.1f}s remaining-kills={kills_s:.1f}s "
          f"drain={drain_s:.1f}s client={dict(stats)}")
    print(f"  after the last restart: inbox={at_restart['inbox']} outbox={at_restart['outbox']} "
          f"delivered so far={delivered_at_restart}")
    print(f"  attempts histogram: inbox={hist['inbox_events']} outbox={hist['outbox']}")
    print(f"  acked={len(acked)} inbox_rows={len(snap['keys'])} inbox={snap['inbox']} "
          f"outbox={snap['outbox']}")
    print(f"  replies delivered={len(delivered)} raw re-sends deduped by WeCom duplicate check="
          f"{len(deduped)} lost={len(lost_replies)} duplicates={len(dup_replies)} "
          f"unexpected={len(unexpected)}")

    tail = "\n" + bot.log_tail()
    assert bot.kills >= 5, f"only {bot.kills} kills happened"
    assert stats["gave_up"] == 0 and len(acked) == N, f"client gave up: {dict(stats)}"
    assert not acked_missing, f"{len(acked_missing)} acknowledged callbacks not stored" + tail
    assert not dup_rows and not stray_rows
    assert len(snap["keys"]) == N
    assert snap["inbox"] == {"done": N}, snap["inbox"]
    assert snap["outbox"] == {"sent": N}, snap["outbox"]
    assert not lost_replies, f"{len(lost_replies)} messages got no reply, e.g. " \
        f"{lost_replies[:3]}" + tail
    assert not dup_replies, f"duplicate replies delivered: {list(dup_replies.items())[:3]}"
    assert not unexpected, unexpected[:5]
    assert len(delivered) == N
