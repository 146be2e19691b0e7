"""Approval tap benchmark: tap → HTTP ack, and tap → updated card delivered, at a fixed rate.

One process, loopback only: the demo stack (simulator + real bot on SQLite, seeded org) and a
bare aiohttp hello-world baseline (read body, 200) measured in the same run with the same
client. For each platform, ``--taps`` pending requests are created through the state machine,
then their approver taps "同意" — real signed/encrypted callbacks built with the platforms' SDK
crypto by the simulator's fakes — sent open-loop at ``--rate`` taps/s (a slow answer does not
slow the sender). Measured per tap:

- ack: POST → HTTP response (Feishu's answer carries the toast, so it includes the decision
  transaction; WeCom/DingTalk ack as soon as the inbox row is committed);
- update: POST → the simulator received the card update for that request (outbox delivery).

Afterwards it checks every request was decided exactly once (``approval.approved`` audit rows).

  python bench/approvals.py                       # wecom, dingtalk, feishu; 300 taps at 100/s
  python bench/approvals.py --platforms feishu --taps 500 --rate 100

The last lines printed are one JSON object per case. Target: ack p99 < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cards import pack_action  # noqa: E402

BENCH_SECRET = b"bench-approvals-secret-key-0123456789abcdef"
PG_ADMIN = os.environ.get("FIELDBOT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))], 2)


async def create_requests(url: str, n: int, app_ids: dict[str, str], pairs: int,
                          tag: str) -> list[tuple[int, int, int, str]]:
    """n pending single-step quotes spread over ``pairs`` (rep → own manager) pairs, so the
    platforms' per-recipient rate limits are not what is measured.
    Returns (request id, approver id, version, approver key)."""
    from sqlmodel.ext.asyncio.session import AsyncSession

    from bot.event import utcnow
    from config.rules import ApprovalRules
    from storage import approvals as sm
    from storage.db import async_engine
    from storage.models import Identity, Team, User

    eng = async_engine(url)
    out = []
    now = utcnow()
    try:
        async with AsyncSession(eng, expire_on_commit=False) as s:
            reps, mgrs = [], []
            for i in range(pairs):
                team = Team(name=f"bench{tag}{i}")
                s.add(team)
                await s.flush()
                mgr = User(name=f"经理{i}", role="manager", team_id=team.id)
                s.add(mgr)
                await s.flush()
                rep = User(name=f"销售{i}", role="rep", team_id=team.id, manager_id=mgr.id)
                s.add(rep)
                await s.flush()
                team.manager_id = mgr.id
                for u, key in ((mgr, f"b{tag}mgr{i}"), (rep, f"b{tag}rep{i}")):
                    for p, app in app_ids.items():
                        ext = {"wecom": key, "dingtalk": f"ding_{key}", "feishu": f"ou_{key}"}[p]
                        s.add(Identity(user_id=u.id, platform=p, app_id=app, external_id=ext))
                reps.append(rep)
                mgrs.append(f"b{tag}mgr{i}")
            for j in range(n):
                rep = reps[j % pairs]
                req = await sm.create_draft(s, requester=rep, kind="quote", amount=12_000,
                                            subject="华东精密", actor=sm.Actor(rep.id, "bench"),
                                            now=now)
                res = await sm.submit(s, req.id, sm.Actor(rep.id, "bench"), ApprovalRules(),
                                      now)
                out.append((req.id, res.next_step.approver_id, res.request.version,
                            mgrs[j % pairs]))
            await s.commit()
    finally:
        await eng.dispose()
    return out


class Taps:
    """Pre-built tap requests per platform: (url, query, body, headers)."""

    def __init__(self, stack, secret: bytes, action: str = "approval.approve"):
        self.stack, self.secret, self.action = stack, secret, action

    def token(self, rid: int, approver: int, version: int) -> str:
        if self.action == "help.ack":  # the foundation's trivial tap: toast + card update
            return pack_action(self.secret, "help.ack")
        return pack_action(self.secret, "approval.approve", r=rid, s=1, a=approver, v=version,
                           m=12_000, p=None)

    def build(self, platform: str, rid: int, approver: int, version: int, key: str, i: int):
        fake = self.stack.sim.fakes[platform]
        bot = self.stack.bot_url
        ext = {"wecom": key, "dingtalk": f"ding_{key}", "feishu": f"ou_{key}"}[platform]
        tok = self.token(rid, approver, version)
        if platform == "feishu":
            from simulator.server import FEISHU_PATH

            mid, card_token = f"om_bench_{rid}", f"c-bench-{rid}-{i}"
            fake.issue_card_token(card_token, mid)
            body, headers = fake.build_request(fake.tap_payload(ext, tok, mid, card_token))
            return bot + FEISHU_PATH, {}, body, headers
        if platform == "wecom":
            xml, code = fake.tap_xml(ext, tok, f"task_bench_{rid}", f"rc-bench-{rid}")
            query, body = fake.sign_callback(xml)
            return fake._url(bot), query, body, {"Content-Type": "text/xml"}
        if platform == "dingtalk":
            from simulator.dingtalk import EVENTS_PATH

            track = f"bench_{rid}"
            fake.cards.setdefault(track, {"dest": ext, "group": False, "params": {},
                                          "updates": 0, "template": "fieldbot.general"})
            query, body = fake.seal_event(fake.card_callback(ext, track, tok))
            return (fake._url(bot, EVENTS_PATH), query, body,
                    {"Content-Type": "application/json"})
        raise ValueError(platform)


async def drive(http: aiohttp.ClientSession, reqs: list, rate: float) -> list[dict]:
    """Open loop: request i leaves at t0 + i/rate whatever the answers do."""
    results: list[dict] = [{} for _ in reqs]

    async def one(i: int, delay: float) -> None:
        await asyncio.sleep(delay)
        url, query, body, headers = reqs[i]
        sent = time.time()
        t = time.perf_counter()
        try:
            async with http.post(url, params=query, data=body, headers=headers) as r:
                body = await r.read()
                status = r.status
        except aiohttp.ClientError as exc:
            status, body = repr(exc), b""
        results[i] = {"sent": sent, "ack_ms": (time.perf_counter() - t) * 1000,
                      "status": status, "toast": b'"toast"' in body}

    await asyncio.gather(*[one(i, i / rate) for i in range(len(reqs))])
    return results


_REF = re.compile(r"(?:rc-bench-|c-bench-|bench_)(\d+)")


def update_times(stack, platform: str, rids: dict[int, int]) -> dict[int, float]:
    """Request id → when the simulator received the update of the tapped card (found by the
    card ref the tap carried: WeCom response_code, Feishu card token, DingTalk outTrackId)."""
    out: dict[int, float] = {}
    for call in stack.sim.recorder.of(platform):
        if call.api not in ("update_card", "patch", "update"):
            continue
        res = call.result if isinstance(call.result, dict) else {}
        if res.get("errcode", 0) != 0 or res.get("code", 0) != 0:
            continue
        m = _REF.search(json.dumps(call.body, ensure_ascii=False, default=str))
        if m and int(m.group(1)) in rids and int(m.group(1)) not in out:
            out[int(m.group(1))] = call.at
    return out


async def count_decisions(url: str, rids: list[int]) -> int:
    from sqlalchemy import text

    from storage.db import async_engine

    eng = async_engine(url)
    try:
        async with eng.connect() as c:
            rows = (await c.execute(text(
                "SELECT entity_id, COUNT(*) FROM audit_log WHERE action='approval.approved'"
                " GROUP BY entity_id"))).all()
    finally:
        await eng.dispose()
    got = {int(k): n for k, n in rows if str(k).isdigit()}
    bad = [r for r in rids if got.get(r) != 1]
    return len(rids) - len(bad)


async def hello_case(http: aiohttp.ClientSession, n: int, rate: float, size: int) -> dict:
    async def hello(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        body = b"x" * size
        reqs = [(f"http://127.0.0.1:{port}/hello", {}, body, {}) for _ in range(n)]
        res = await drive(http, reqs, rate)
    finally:
        await runner.cleanup()
    acks = [r["ack_ms"] for r in res if r.get("status") == 200]
    return {"case": "hello-world baseline", "rate": rate, "n": n, "ok": len(acks),
            "ack_p50_ms": pct(acks, 50), "ack_p99_ms": pct(acks, 99)}


async def platform_case(stack, platform: str, n: int, rate: float, secret: bytes,
                        pairs: int, action: str = "approval.approve") -> dict:
    made = await create_requests(stack.database_url, n, stack.sim.app_ids(), pairs,
                                 platform[:2] + action[:1])
    taps = Taps(stack, secret, action)
    reqs = [taps.build(platform, rid, appr, ver, key, i)
            for i, (rid, appr, ver, key) in enumerate(made)]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        res = await drive(http, reqs, rate)
    rids = {rid: i for i, (rid, _a, _v, _k) in enumerate(made)}
    deadline = time.monotonic() + 30
    while True:
        got = update_times(stack, platform, rids)
        if len(got) >= n or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    acks = [r["ack_ms"] for r in res if r.get("status") == 200]
    upd = [(got[rid] - res[i]["sent"]) * 1000 for rid, i in rids.items()
           if rid in got and res[i].get("sent")]
    decided = await count_decisions(stack.database_url, list(rids))
    label = "approve tap" if action != "help.ack" else "help.ack tap (foundation control)"
    db = "sqlite" if stack.database_url.startswith("sqlite") else "postgresql"
    return {"case": f"{platform}/{db} {label}", "rate": rate, "n": n, "ok": len(acks),
            "ack_p50_ms": pct(acks, 50), "ack_p99_ms": pct(acks, 99),
            "update_p50_ms": pct(upd, 50), "update_p99_ms": pct(upd, 99),
            "updates_seen": len(upd),
            # Feishu: answers that carried the toast (the rest were acknowledged within the
            # budget and updated through the outbox)
            "inline_toasts": sum(1 for r in res if r.get("toast")) if platform == "feishu"
            else None,
            "decided_exactly_once": decided if action != "help.ack" else None,
            "ack_target_met": bool(acks) and (pct(acks, 99) or 1e9) < 100}


class Stack:
    """Simulator + the real bot (``create_app``) on ``db_url``, seeded like the demo."""

    def __init__(self, sim, runner, bot_url: str, database_url: str):
        self.sim, self.runner, self.bot_url, self.database_url = sim, runner, bot_url, \
            database_url

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.sim.stop()


class BotProc:
    """``python -m bot.cli serve`` in its own process (stopped by its pid)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    async def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                await asyncio.to_thread(self.proc.wait, 20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def start_stack(db_url: str, data_dir: Path, workers: int) -> Stack:
    """Simulator here; the bot in its own process (``--workers`` as the operator would run
    it), so the load generator and the fake platforms do not share its CPU."""
    from simulator.seed import seed
    from simulator.server import Simulator

    sim = Simulator(host="127.0.0.1")
    await sim.start(0)
    await asyncio.to_thread(seed, db_url, sim.app_ids())
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    env = {**os.environ, **sim.env(), "FIELDBOT_DATABASE_URL": db_url,
           "FIELDBOT_DATA_DIR": str(data_dir), "FIELDBOT_PORT": str(port),
           "FIELDBOT_HOST": "127.0.0.1", "FIELDBOT_SECRET_KEY": BENCH_SECRET.decode(),
           "FIELDBOT_LOG_LEVEL": "WARNING"}
    log = open(data_dir / "bot.log", "wb")  # noqa: SIM115 - closed with the process
    prof = os.environ.get("FIELDBOT_BENCH_PROFILE")  # cProfile the bot process to a file
    cmd = [sys.executable] + (["-m", "cProfile", "-o", prof] if prof else []) + [
        "-m", "bot.cli", "serve", "--workers", str(workers)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url + "/healthz") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bot did not start; see {data_dir / 'bot.log'}")
            await asyncio.sleep(0.2)
    sim.bot_url = url
    sim.bot_platforms = list(sim.platforms)
    return Stack(sim, BotProc(proc), url, db_url)


def pg_create() -> str:
    import uuid

    import psycopg

    name = f"fb_bench_apr_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def pg_drop(url: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--platforms", default="wecom,dingtalk,feishu")
    ap.add_argument("--taps", type=int, default=300)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--pairs", type=int, default=100, help="distinct rep→manager pairs")
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--workers", type=int, default=0,
                    help="bot worker processes (bot.cli serve --workers; 0 = one process)")
    ap.add_argument("--control", action="store_true",
                    help="also run the foundation's trivial help.ack tap at the same rate")
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    results = []
    with tempfile.TemporaryDirectory(prefix="fieldbot-bench-apr-") as tmp:
        data = Path(tmp) / "demo"
        data.mkdir()
        db_url = pg_create() if args.db == "postgresql" else f"sqlite:///{data}/fieldbot.db"
        stack = await start_stack(db_url, data, args.workers)
        try:
            secret = BENCH_SECRET
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
                results.append(await hello_case(http, args.taps, args.rate, 1500))
            for p in args.platforms.split(","):
                if p not in (stack.sim.bot_platforms or []):
                    print(f"skip {p}: not available", file=sys.stderr)
                    continue
                results.append(await platform_case(stack, p, args.taps, args.rate, secret,
                                                   args.pairs))
                if args.control:
                    results.append(await platform_case(stack, p, args.taps, args.rate, secret,
                                                       args.pairs, "help.ack"))
        finally:
            await stack.stop()
            if args.db == "postgresql":
                pg_drop(db_url)
    for r in results:
        print(json.dumps(r, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
