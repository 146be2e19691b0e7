#!/usr/bin/env python3
"""Media throughput with 1 vs 2 worker processes (issue 18).

The real bot (`fieldbot serve --workers N`, SQLite) takes ``--photos`` distinct 12 Mpx photos
uploaded at once by four signed-in reps through the mini-app; the web process only queues
them, the workers read them (OCR) under the global and per-user caps. Measured per N: photos
per minute until the last answer, the web process's peak RSS, and each worker's peak RSS.
The baseline is N = 1 in the same run; ``ratio`` = photos/min ÷ the baseline's. Last lines:
one JSON object per case.

Usage: python bench/media_workers.py [--photos 24] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from tests.conftest import free_port  # noqa: E402
from tests.reliability.test_memory import SECRET, big_photo, rss_mb, seed, upload  # noqa: E402


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


async def run(workers: int, photos: list[bytes], tmp: Path) -> dict:
    url = f"sqlite:///{tmp / f'w{workers}.db'}"
    reps = await asyncio.to_thread(seed, url)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDBOT_")}
    env.update({"FIELDBOT_DATABASE_URL": url, "FIELDBOT_HOST": "127.0.0.1",
                "FIELDBOT_PORT": str(port), "FIELDBOT_DATA_DIR": str(tmp / f"data{workers}"),
                "FIELDBOT_SECRET_KEY": SECRET, "FIELDBOT_WORKERS": str(workers)})
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "--log-level", "WARNING",
                             "serve"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    web_peak, worker_peak = 0.0, 0.0
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                try:
                    async with http.get(f"{base}/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        # warm every worker's OCR model (one photo per worker), not counted
        await asyncio.gather(*(upload(base, reps[i % len(reps)], "photo", "/app/visits/photo",
                                      big_photo(), f"warm{i}.jpg", "image/jpeg")
                               for i in range(workers)))
        stop = asyncio.Event()

        async def sample() -> None:
            nonlocal web_peak, worker_peak
            while not stop.is_set():
                web_peak = max(web_peak, rss_mb(proc.pid))
                for c in children(proc.pid):
                    try:
                        worker_peak = max(worker_peak, rss_mb(c))
                    except OSError:
                        pass
                await asyncio.sleep(0.1)

        sampler = asyncio.create_task(sample())
        t0 = time.perf_counter()
        res = await asyncio.gather(*(upload(base, reps[(i // 2) % len(reps)], "photo",
                                            "/app/visits/photo", p, f"p{i}.jpg", "image/jpeg")
                                     for i, p in enumerate(photos)))
        took = time.perf_counter() - t0
        stop.set()
        await sampler
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    ok = sum(1 for s, _ in res if s == 200)
    return {"workers": workers, "photos": len(photos), "answered_200": ok,
            "seconds": round(took, 1), "photos_per_min": round(len(photos) / took * 60, 1),
            "web_peak_rss_mb": round(web_peak), "worker_peak_rss_mb": round(worker_peak)}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=24)
    ap.add_argument("--workers", default="1,2")
    a = ap.parse_args()
    counts = [int(x) for x in a.workers.split(",")]
    photos = [big_photo() for _ in range(a.photos)]
    out = []
    with tempfile.TemporaryDirectory(prefix="fieldbot-bench-") as d:
        for n in counts:
            out.append(await run(n, photos, Path(d)))
            print(f"workers={n}: {out[-1]}", flush=True)
    base = out[0]["photos_per_min"] or 1
    for r in out:
        r["case"] = f"media_workers_{r['workers']}"
        r["baseline_photos_per_min"] = base
        r["ratio"] = round(r["photos_per_min"] / base, 2)
    for r in out:
        print(json.dumps(r))


if __name__ == "__main__":
    asyncio.run(main())
