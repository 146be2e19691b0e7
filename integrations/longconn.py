"""What every long connection (DingTalk Stream, Feishu 长连接, WeCom AI bot) shares.

``LongConnection.run`` keeps one outbound WebSocket alive: it calls the platform's
``session()`` (open → connect → read frames until the socket ends), and when that ends it
reconnects — at once after a clean server-side disconnect, else after a jittered exponential
backoff (1 s → 60 s). A credentials failure (``AuthFailed``) is logged once and ends the loop:
no reconnect storm against a wrong secret. ``ConnectionLimit`` (too many connections for the
app) waits the maximum backoff. The watchdog closes a socket on which nothing has arrived for
``watchdog_intervals`` ping intervals (a silently dead connection, as in
dingtalk-stream-sdk-python#65), which makes ``session()`` return and a fresh connection replace
it. ``status()`` is what ``/healthz`` shows per transport.

Frames are handled concurrently (``spawn``), at most ``max_in_flight`` at a time, so the inbox's
group commit sees many rows at once; each frame is acknowledged by its handler after its row is
committed. Sends on one socket go through ``send_lock``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0


class AuthFailed(Exception):
    """The platform refused the credentials: the operator must fix the settings."""


class ConnectionLimit(Exception):
    """The app has too many open connections (Feishu: 50 per app)."""


class Reconnect(Exception):
    """The server asked us to reconnect (DingTalk ``disconnect``, WeCom kick): no backoff."""


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else None


class LongConnection:
    """Subclasses implement ``session()``; everything else is here."""

    transport = "longconn"

    def __init__(self, *, ping_interval: float, watchdog_intervals: int = 3,
                 max_in_flight: int = 256, rng: Callable[[], float] = random.random):
        self.ping_interval = ping_interval
        self.watchdog_intervals = watchdog_intervals
        self.rng = rng
        self.state = "stopped"
        self.connected_since: float | None = None
        self.last_frame: float | None = None  # wall clock, for /healthz
        self._last_frame_mono = 0.0
        self.reconnects = 0
        self.connects = 0
        self.frames = 0
        self.last_error = ""
        self.attempt = 0
        self.send_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task] = set()
        self._runner: asyncio.Task | None = None
        self._stopping = False
        self._ws: Any = None

    # -- to implement ---------------------------------------------------------------------
    async def session(self) -> None:
        """Open one connection and serve it until it ends (return) or fails (raise)."""
        raise NotImplementedError

    # -- helpers for session() --------------------------------------------------------------
    def connected(self, ws: Any) -> None:
        self._ws = ws
        self.state = "connected"
        self.connects += 1
        self.connected_since = time.time()
        self.seen()
        log.info("%s: connected", self.transport)

    def seen(self) -> None:
        """Something arrived on the socket (a frame, a pong): it is alive."""
        self.frames += 1
        self.last_frame = time.time()
        self._last_frame_mono = time.monotonic()

    async def messages(self, ws: Any):
        """The data messages of ``ws`` (connect it with ``autoping=False``): WebSocket pings are
        answered here and pongs count as signs of life for the watchdog."""
        import aiohttp

        async for msg in ws:
            self.seen()
            if msg.type == aiohttp.WSMsgType.PING:
                with suppress(ConnectionError, RuntimeError):
                    await ws.pong(msg.data)
                continue
            if msg.type == aiohttp.WSMsgType.PONG:
                continue
            if msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE,
                            aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                return
            yield msg

    def why_closed(self, ws: Any) -> str:
        """One line for /healthz on how a socket ended."""
        exc = ws.exception()
        if exc is not None:
            text = str(exc) or exc.__class__.__name__
            return f"connection lost: {text}"[:300]
        return f"socket closed (code {ws.close_code})"

    async def spawn(self, coro: Awaitable[None]) -> None:
        """Run a frame's handler concurrently; waits for a slot when ``max_in_flight`` run."""
        await self._slots.acquire()
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("%s: frame handler failed: %s: %s", self.transport,
                      exc.__class__.__name__, exc)

    async def send(self, ws: Any, data: str | bytes) -> bool:
        """Send on ``ws`` if it is still open; False when it closed meanwhile (no ack goes
        out: the platform re-pushes what was not acknowledged)."""
        async with self.send_lock:
            if ws.closed:
                return False
            try:
                if isinstance(data, bytes):
                    await ws.send_bytes(data)
                else:
                    await ws.send_str(data)
            except (ConnectionError, RuntimeError):
                return False
        return True

    async def watchdog(self, ws: Any) -> None:
        """Close ``ws`` when nothing arrived for ``watchdog_intervals`` ping intervals."""
        while not ws.closed:
            # re-read each round: the server may change the interval (Feishu's pong)
            limit = self.ping_interval * self.watchdog_intervals
            await asyncio.sleep(min(self.ping_interval, limit) / 2)
            quiet = time.monotonic() - self._last_frame_mono
            if quiet > limit:
                self.last_error = f"no frame for {quiet:.1f} s: connection replaced"
                log.warning("%s: %s", self.transport, self.last_error)
                await ws.close()
                return

    # -- the loop ---------------------------------------------------------------------------
    def backoff(self) -> float:
        base = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** self.attempt)
        return base * (0.5 + self.rng() / 2)

    async def run(self) -> None:
        while not self._stopping:
            self.state = "connecting"
            delay = 0.0
            try:
                await self.session()
                delay = 0.0 if self._was_up() else self.backoff()
            except asyncio.CancelledError:
                raise
            except AuthFailed as exc:
                self.state = "failed"
                self.last_error = str(exc)
                log.error("%s: credentials refused, not reconnecting: %s", self.transport, exc)
                return
            except Reconnect as exc:
                log.info("%s: server asked to reconnect: %s", self.transport, exc)
            except ConnectionLimit as exc:
                self.last_error = str(exc)
                log.error("%s: %s", self.transport, exc)
                delay = BACKOFF_MAX_S * (0.5 + self.rng() / 2)
            except Exception as exc:  # noqa: BLE001 - any failure means: reconnect later
                self.last_error = f"{exc.__class__.__name__}: {exc}"[:300]
                delay = self.backoff() if not self._was_up() else BACKOFF_FIRST_S * self.rng()
                log.warning("%s: connection failed (%s); retry in %.1f s", self.transport,
                            self.last_error, delay)
            finally:
                self._ws = None
            if self._stopping:
                break
            self.attempt = 0 if self._was_up() else self.attempt + 1
            self.connected_since = None
            self.reconnects += 1
            self.state = "backoff" if delay else "connecting"
            if delay:
                await asyncio.sleep(delay)
        self.state = "stopped"

    def _was_up(self) -> bool:
        """The last session got connected (a fresh start is due, not a backoff)."""
        up = self.connected_since is not None
        return up

    async def start(self) -> None:
        if self._runner is None:
            self._stopping = False
            self._runner = asyncio.create_task(self.run(), name=f"{self.transport}-connection")

    async def stop(self) -> None:
        self._stopping = True
        runner, self._runner = self._runner, None
        if self._ws is not None and not self._ws.closed:
            with suppress(Exception):
                await self._ws.close()
        if runner is not None:
            runner.cancel()
            with suppress(asyncio.CancelledError):
                await runner
        if self._tasks:  # frames being committed: let them finish (their acks may not go)
            await asyncio.wait(set(self._tasks), timeout=5)
        self.state = "stopped"

    def status(self) -> dict:
        return {"transport": self.transport, "state": self.state,
                "connected_since": _iso(self.connected_since), "last_frame": _iso(self.last_frame),
                "last_frame_ts": self.last_frame,
                "reconnects": self.reconnects, "frames": self.frames,
                "last_error": self.last_error}
