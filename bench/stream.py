"""Long connection vs webhook (issue 14): events/s and arrival → ack latency, same run.

For each platform with a long connection and each database, the real bot
(``python -m bot.cli serve``, acknowledgement path only — the handlers switched off as in
``bench/webhook.py --mode ack``) runs twice on a fresh database against the simulator in this
process: once in webhook mode, driven by signed HTTP callbacks, once over the long connection,
driven by the simulator pushing frames. Both drive the same ``--n`` unique messages with the
same ``--concurrency`` in flight: throughput is messages / elapsed (and ``saturated_p50_ms``
the latency at that load, mostly queueing). Then ``--latency-n`` messages at ``--rate`` per
second, open loop: ``ack_p50_ms``/``ack_p99_ms`` are what the platform sees there — request
→ HTTP answer, or frame sent → ack received. The baseline of each case is its
own webhook run; the ratio printed is stream / webhook.

  python bench/stream.py                          # dingtalk and feishu × sqlite, postgresql
  python bench/stream.py --cases dingtalk/sqlite --n 2000

The last lines printed are one JSON object per case. Everything binds to 127.0.0.1; every
process started here is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import aiohttp
import webhook as wh  # bench/webhook.py: processes, ports, databases
from aiohttp import web

ROOT = wh.ROOT
sys.path.insert(0, str(ROOT))

from simulator.core import Recorder  # noqa: E402
from simulator.dingtalk import DingTalkSim  # noqa: E402
from simulator.feishu import FeishuSim  # noqa: E402

STREAM_MODE = {"dingtalk": ("FIELDBOT_DINGTALK_MODE", "stream"),
               "feishu": ("FIELDBOT_FEISHU_MODE", "ws")}


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else 0.0


async def pace(start: float, i: int, rate: float) -> None:
    """Open loop: message ``i`` leaves at ``start + i / rate`` (no pacing when rate is 0)."""
    if rate > 0:
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)


class Case:
    def __init__(self, platform: str, db: str, args, work: Path):
        self.platform, self.db, self.args, self.work = platform, db, args, work
        self.runs = 0

    async def start_sim(self):
        c = wh.CREDS[self.platform]
        rec = Recorder()
        if self.platform == "dingtalk":
            self.sim = DingTalkSim(rec, c["app_key"], c["app_secret"], c["robot_code"],
                                   c["token"], c["aes_key"])
        else:
            self.sim = FeishuSim(rec, c["app_id"], c["app_secret"], c["verification_token"],
                                 c["encrypt_key"])
        app = web.Application(client_max_size=8 * 1024 * 1024)
        self.sim.add_routes(app)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        self.sim_port = wh.free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.sim_port).start()
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"

    def start_bot(self, mode: str) -> tuple[wh.Proc, str, str]:
        db_url = (wh.pg_create() if self.db == "postgresql"
                  else f"sqlite:///{self.work / f'{self.platform}-{mode}.db'}")
        port = wh.free_port()
        data = self.work / f"{self.platform}-{mode}"
        data.mkdir(parents=True, exist_ok=True)
        env = wh.bot_env(self.platform, db_url, data, port, self.sim_url)
        if mode == "stream":
            key, value = STREAM_MODE[self.platform]
            env[key] = value
        elif self.platform == "dingtalk":
            env["FIELDBOT_DINGTALK_CARD_CALLBACKS"] = "http"  # no connection in webhook mode
        env["FIELDBOT_LOG_LEVEL"] = "WARNING"
        argv = [sys.executable, "-c", wh.ACK_ONLY_MAIN, "serve", "--workers", "0"]
        proc = wh.Proc(argv, env=env, log=self.work / f"{self.platform}-{mode}.log")
        url = f"http://127.0.0.1:{port}"
        if not wh.wait_http(url + "/healthz", 60):
            proc.stop()
            raise SystemExit(f"bot did not start: see {self.work}")
        return proc, url, db_url

    # -- the two drivers ------------------------------------------------------------------------
    async def drive_webhook(self, url: str, prefix: str, n: int, conc: int,
                            rate: float = 0.0) -> tuple[float, list[float]]:
        lat: list[float] = []
        sem = asyncio.Semaphore(conc)
        base_ms = int(time.time() * 1000) + 100_000 * self.runs  # a (timestamp, sign) each
        self.runs += 1
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as s:
            async def one(i: int) -> None:
                if self.platform == "dingtalk":
                    payload = self.sim.robot_payload(f"u{i % 500}", "text",
                                                     {"text": {"content": f"{wh.FILLER} {i}"}},
                                                     msg_id=f"{prefix}{i}")
                    body = json.dumps(payload, ensure_ascii=False).encode()
                    headers = self.sim.sign_robot(base_ms + i)
                    path = "/webhooks/dingtalk"
                else:
                    body, headers = self.sim.message_callback(
                        f"ou_{i % 500}", f"{wh.FILLER} {i}", event_id=f"{prefix}{i}")
                    path = "/webhooks/feishu"
                await pace(start, i, rate)
                async with sem:
                    t0 = time.perf_counter()
                    async with s.post(url + path, data=body, headers=headers) as r:
                        await r.read()
                        ok = r.status == 200
                    if ok:
                        lat.append(time.perf_counter() - t0)
            start = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(n)))
            return time.perf_counter() - start, lat

    async def drive_stream(self, prefix: str, n: int, conc: int,
                           rate: float = 0.0) -> tuple[float, list[float]]:
        lat: list[float] = []
        sem = asyncio.Semaphore(conc)

        async def one(i: int) -> None:
            await pace(start, i, rate)
            async with sem:
                t0 = time.perf_counter()
                if self.platform == "dingtalk":
                    ack = await self.sim.stream_text(f"u{i % 500}", f"{wh.FILLER} {i}",
                                                     msg_id=f"{prefix}{i}", timeout=10)
                else:
                    ack = await self.sim.ws.push_message(f"ou_{i % 500}", f"{wh.FILLER} {i}",
                                                         event_id=f"{prefix}{i}")
                if ack is not None:
                    lat.append(time.perf_counter() - t0)

        if self.platform == "dingtalk":
            await self.sim.stream.wait_connected(timeout=30)
        else:
            await self.sim.ws.wait_connected(timeout=30)
        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return time.perf_counter() - start, lat

    async def run(self) -> dict:
        await self.start_sim()
        out: dict = {"case": f"{self.platform}/{self.db}", "n": self.args.n,
                     "concurrency": self.args.concurrency}
        try:
            for mode in ("webhook", "stream"):
                proc, url, db_url = self.start_bot(mode)
                try:
                    drive = (functools.partial(self.drive_webhook, url)
                             if mode == "webhook" else self.drive_stream)
                    tag = f"{mode[0]}{os.getpid()}"
                    a = self.args
                    await drive(f"warm-{tag}-", 300, a.concurrency)  # not counted
                    elapsed, lat = await drive(f"tput-{tag}-", a.n, a.concurrency)
                    _e, paced = await drive(f"lat-{tag}-", a.latency_n, a.concurrency,
                                            rate=a.rate)
                    stored = len(wh.stored_keys(db_url, f"%tput-{tag}-%"))
                finally:
                    proc.stop()
                    if self.db == "postgresql":
                        wh.pg_drop(db_url)
                out[mode] = {
                    "events_per_s": round(len(lat) / elapsed, 1), "acked": len(lat),
                    "stored": stored,
                    "saturated_p50_ms": round(median(lat) * 1000, 2) if lat else None,
                    "ack_p50_ms": round(median(paced) * 1000, 2) if paced else None,
                    "ack_p99_ms": round(pct(paced, 99) * 1000, 2) if paced else None}
        finally:
            await self.runner.cleanup()
        w, s = out["webhook"], out["stream"]
        out["throughput_ratio"] = round(s["events_per_s"] / max(w["events_per_s"], 1e-9), 2)
        out["ok"] = (s["acked"] == s["stored"] == self.args.n
                     and out["throughput_ratio"] >= 1.0 and (s["ack_p99_ms"] or 1e9) < 25)
        return out


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="dingtalk/sqlite,dingtalk/postgresql,"
                                       "feishu/sqlite,feishu/postgresql")
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rate", type=float, default=200.0,
                    help="messages/s of the latency run (open loop)")
    ap.add_argument("--latency-n", type=int, default=1000)
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="fb-bench-stream-") as tmp:
        for spec in args.cases.split(","):
            platform, db = spec.strip().split("/")
            res = await Case(platform, db, args, Path(tmp)).run()
            w, s = res["webhook"], res["stream"]
            print(f"{res['case']}: webhook {w['events_per_s']}/s p99 {w['ack_p99_ms']} ms ·"
                  f" stream {s['events_per_s']}/s p99 {s['ack_p99_ms']} ms ·"
                  f" ratio {res['throughput_ratio']}×", flush=True)
            results.append(res)
    for res in results:
        print(json.dumps(res, ensure_ascii=False))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
