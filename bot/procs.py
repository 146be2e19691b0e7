"""Process layout of ``fieldbot serve``: one web process, N worker processes.

The web process only verifies, commits and acknowledges (card taps also run inline, for the
toast in the HTTP answer); workers run handlers, deliver the outbox, and run jobs. On two
cores this keeps acknowledgements fast while a backlog is worked off, and the inbox/outbox
tables are the queues between them, so any process may die at any time. Workers die with
their parent (``PR_SET_PDEATHSIG``), so a killed web process never leaves orphans.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from contextlib import suppress

from config import Settings

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
WORKER_NICE = 5
RECYCLED = 75  # a worker's exit code after its memory ceiling (the supervisor replaces it)


def settle_heap() -> None:
    """Move everything loaded at start-up out of the collector's sight (``gc.freeze``).

    The bot imports ~440k long-lived objects (the platform SDKs, SQLAlchemy, pydantic); each
    full collection walked them all — 0.2–0.4 s with the loop stopped, every few seconds under
    load, which was the acknowledgement's p99 (bench/webhook.py). Call it once the app is
    built, before serving."""
    import gc

    gc.collect()
    gc.freeze()


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn_workers(n: int, config: str | None) -> list[subprocess.Popen]:
    cmd = [sys.executable, "-m", "bot.cli", "worker"]
    if config:
        cmd += ["--config", config]
    procs = []
    for _ in range(n):
        procs.append(subprocess.Popen(cmd, preexec_fn=_die_with_parent,  # noqa: S603
                                      env=dict(os.environ)))
    return procs


class Supervisor:
    """Keeps ``n`` worker processes alive: one that exits (its memory ceiling, a crash, an
    OOM kill) is replaced after a short pause, until ``stop``."""

    def __init__(self, procs: list[subprocess.Popen], config: str | None,
                 pause_s: float = 1.0, spawn=None):
        self.procs, self.config, self.pause_s = procs, config, pause_s
        self.spawn = spawn or spawn_workers
        self.respawned = 0
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor",
                                        daemon=True)

    def start(self) -> Supervisor:
        if self.procs:
            self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(self.pause_s):
            for i, p in enumerate(self.procs):
                code = p.poll()
                if code is None or self._stop.is_set():
                    continue
                why = "passed its memory ceiling" if code == RECYCLED else f"exited ({code})"
                log.warning("worker %s %s: starting a fresh one", p.pid, why)
                self.procs[i] = self.spawn(1, self.config)[0]
                self.respawned += 1
        # PR_SET_PDEATHSIG follows the forking *thread*: this one stays until its children
        # have been stopped gracefully
        self._stopped.wait()

    def stop(self) -> None:
        self._stop.set()
        stop_workers(self.procs)
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        with suppress(ProcessLookupError):
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


async def run_worker(settings: Settings) -> int:
    """Start the app's lifecycle without an HTTP site and wait for SIGTERM/SIGINT."""
    from aiohttp import web

    from bot.app import create_app

    # Acknowledging callbacks is what has a deadline; background work may lag behind it.
    with suppress(OSError):
        os.nice(WORKER_NICE)
    app = create_app(settings, migrate=False, role="worker")
    settle_heap()
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    from jobs.worker import JOB_WORKER

    recycled = False

    def recycle() -> None:  # the job worker passed its memory ceiling and went idle
        nonlocal recycled
        recycled = True
        stop.set()

    app[JOB_WORKER].on_recycle = recycle
    log.info("FieldBot worker %s running", os.getpid())
    await stop.wait()
    await runner.cleanup()
    return RECYCLED if recycled else 0
