"""Issue 16: kill the server mid-sync and restart it → still exactly three visits.

The demo runs as its own process (``python -m app.cli demo``, SQLite in a temp dir); a phone
(headless Chromium) files three visits offline — the middle one with a camera photo — and
comes back online. While the queue syncs, the server is SIGKILLed right after it filed the
second visit and before the phone heard the answer; the third upload meets a dead server.
The phone keeps both in its queue and retries; the server comes back on the same port and
data. At the end: three visits, three distinct client keys, one photo job, and the phone
shows every item done (the second one answered "already filed").
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text

from storage.db import sync_engine
from tests.conftest import free_port
from tests.webapp.test_browser_capture import big_photo, capture_page, compose, until

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


class Demo:
    """The demo stack as a process that can be SIGKILLed and started again."""

    def __init__(self, port: int, data: Path, log: Path):
        self.port, self.data, self.log = port, data, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "app.cli", "demo", "--port", str(self.port),
                 "--data-dir", str(self.data)], cwd=ROOT, env=env, stdout=out,
                stderr=subprocess.STDOUT)

    def kill9(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, self.tail()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    async def healthy(self, timeout: float = 90.0) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                assert self.proc is not None and self.proc.poll() is None, self.tail()
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz",
                                        timeout=aiohttp.ClientTimeout(total=1)) as r:
                        if r.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                assert loop.time() < end, "the demo did not come up:\n" + self.tail()
                await asyncio.sleep(0.2)

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def rows(db: Path, q: str) -> list[tuple]:
    eng = sync_engine(f"sqlite:///{db}")
    try:
        with eng.connect() as conn:
            return [tuple(r) for r in conn.execute(text(q))]
    finally:
        eng.dispose()


async def test_kill_9_mid_sync_then_restart_files_each_visit_once(browser, tmp_path):
    port = free_port()
    demo = Demo(port, tmp_path / "demo", tmp_path / "demo.log")
    demo.start()
    try:
        await demo.healthy()
        base = f"http://127.0.0.1:{port}"
        db = tmp_path / "demo" / "fieldbot.db"
        ctx, page = await capture_page(browser, base)
        await ctx.set_offline(True)
        await compose(page, "断电测试一：聊了交期")
        await page.set_input_files("#c-photo", str(big_photo(tmp_path)))
        await page.get_by_text("照片 ✓").wait_for()
        await compose(page, "断电测试二：门头照片")
        await compose(page, "断电测试三：下周送样")
        assert "3 条待上传" in await page.inner_text("#queue-count")

        posts: list[int] = []
        killed = asyncio.Event()

        async def kill_after_second_is_filed(route):
            posts.append(1)
            if len(posts) == 2:
                await route.fetch()  # the server files the visit with its photo …
                demo.kill9()  # … and dies before the phone hears the answer
                killed.set()
                await route.abort("connectionreset")
                return
            try:
                await route.continue_()
            except Exception:  # noqa: BLE001 - the page is closing
                pass

        await page.route("**/app/api/capture", kill_after_second_is_filed)
        await ctx.set_offline(False)  # "online": the queue syncs by itself
        await asyncio.wait_for(killed.wait(), 60)
        await until(page, "[...document.querySelectorAll('#queue li')].filter(li => li.dataset"
                          ".state === 'done').length === 1 && document.querySelectorAll("
                          "'#queue li[data-state=waiting]').length === 2", timeout=30)
        filed = rows(db, "SELECT summary FROM visits ORDER BY id")
        assert len(filed) == 2, filed  # the killed one was committed before the kill
        assert "断电测试二" in filed[1][0]

        await asyncio.sleep(2.5)  # a retry or two against the dead server: still queued
        assert "2 条待上传" in await page.inner_text("#queue-count")
        demo.start()
        await demo.healthy()
        await until(page, "document.querySelectorAll('#queue li').length === 3 && "
                          "[...document.querySelectorAll('#queue li')].every(li => li.dataset"
                          ".state === 'done')", timeout=60)
        assert "0 条待上传" in await page.inner_text("#queue-count")
        answers = await page.evaluate("""new Promise(ok => indexedDB.open('fieldbot-capture')
          .onsuccess = e => e.target.result.transaction('queue').objectStore('queue').getAll()
          .onsuccess = r => ok(r.target.result.map(i => i.result.status)))""")
        assert sorted(answers) == ["duplicate", "filed", "filed"], answers
        visits = rows(db, "SELECT summary, client_key FROM visits ORDER BY id")
        assert len(visits) == 3, visits
        assert len({v[1] for v in visits}) == 3
        assert sorted(v[0][:5] for v in visits) == ["断电测试一", "断电测试三", "断电测试二"]
        jobs = rows(db, "SELECT name FROM jobs WHERE idem_key LIKE 'capture:%'")
        assert jobs == [("web.photo",)], jobs
        assert rows(db, "SELECT count(*) FROM audit_log WHERE action = 'visit.create'") == [(3,)]
        await ctx.close()
    finally:
        demo.stop()
