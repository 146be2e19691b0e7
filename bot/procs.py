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
from contextlib import suppress

from config import Settings

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
WORKER_NICE = 5


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


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        with suppress(ProcessLookupError):
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


async def run_worker(settings: Settings) -> None:
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
    log.info("FieldBot worker %s running", os.getpid())
    await stop.wait()
    await runner.cleanup()
