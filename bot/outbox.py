"""Outbox sender: rows are written before sending and marked sent after.

A restart resends what was not marked sent; the row's ``idem_key`` goes to the platform as its
idempotency key where it has one (Feishu ``uuid``, WeCom duplicate check), so a resend after a
crash between send and mark is dropped by the platform rather than shown twice. Rate limits are
kept per destination; transient and rate-limit errors back off exponentially with jitter.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from datetime import timedelta

from sqlalchemy import text

from bot.event import OutMessage, Target, utcnow
from bot.platform import (
    ConfigurationError,
    DeliveryError,
    NotReady,
    PlatformAdapter,
    RateLimited,
)
from bot.ratelimit import TokenBuckets

log = logging.getLogger(__name__)

LEASE_S = 60
CLAIM = ("UPDATE outbox SET claimed_until=:u, claims=claims+1"
         " WHERE status='pending' AND next_at <= :now"
         " AND (claimed_until IS NULL OR claimed_until < :now)"
         " AND id IN (SELECT id FROM outbox WHERE status='pending' AND next_at <= :now"
         " AND (claimed_until IS NULL OR claimed_until < :now) ORDER BY id LIMIT :lim{lock})"
         " RETURNING id, idem_key, target, message, attempts, claims")
PROBE = ("SELECT 1 FROM outbox WHERE status='pending' AND next_at <= :now"
         " AND (claimed_until IS NULL OR claimed_until < :now) LIMIT 1")
FINISH = ("UPDATE outbox SET status=:s, last_error=:e, result=:r, sent_at=:t,"
          " attempts=COALESCE(:a, attempts), claimed_until=NULL WHERE id=:id")
CLAIM_PG = CLAIM.format(lock=" FOR UPDATE SKIP LOCKED")
CLAIM_SQLITE = CLAIM.format(lock="")


def _now_iso() -> str:
    return utcnow().isoformat(timespec="seconds")


class OutboxSender:
    def __init__(self, engine, adapters: dict[str, PlatformAdapter], max_attempts: int = 12,
                 clock=utcnow, concurrency: int = 16, postgres: bool = False):
        self.engine = engine
        self.adapters = adapters
        self.max_attempts = max_attempts
        self.clock = clock
        self.buckets = TokenBuckets()
        self.concurrency = concurrency
        self.postgres = postgres
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False
        self.sent = 0
        # platform → the configuration error its last send hit (shown on /healthz)
        self.problems: dict[str, dict] = {}
        self.lease_s = LEASE_S
        self.idle_s = 1.0
        self.batch_s = 0.02  # pause between passes while rows keep coming

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="outbox-sender")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before the pass: a wake during it is not lost
            try:
                n = await self.run_once()
            except Exception:  # noqa: BLE001 - keep the sender alive through DB hiccups
                log.exception("outbox pass failed")
                n = 0
            if n == 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.idle_s)
                except TimeoutError:
                    pass
            elif self.batch_s:
                # busy: let the next rows gather so one claim and one mark serve many
                # (each is a write transaction; on SQLite a turn of the one write lock)
                await asyncio.sleep(self.batch_s)

    async def claim(self, limit: int = 100) -> list[tuple]:
        """Lease up to ``limit`` due rows to this sender, in id order."""
        now = self.clock()
        sql = CLAIM_PG if self.postgres else CLAIM_SQLITE
        async with self.engine.begin() as conn:
            # a read first: an idle pass then writes nothing (no write lock on SQLite)
            if (await conn.execute(text(PROBE), {"now": now})).first() is None:
                return []
            until = now + timedelta(seconds=self.lease_s)
            rows = (await conn.execute(text(sql), {"now": now, "lim": limit,
                                                   "u": until})).all()
        return sorted(rows, key=lambda r: r[0])

    async def run_once(self) -> int:
        rows = await self.claim()
        if not rows:
            return 0
        by_dest: dict[str, list] = {}
        for row in rows:
            target = Target.model_validate(_json(row[2]))
            by_dest.setdefault(target.key, []).append((row, target))
        sem = asyncio.Semaphore(self.concurrency)

        async def run_dest(items):
            async with sem:
                held: float | None = None
                for row, target in items:  # keep order within one destination
                    if held is not None:
                        # an earlier message to this destination must go first
                        await self._retry_later(row[0], row[4], held,
                                                "behind an earlier message", count=False)
                        continue
                    held = await self._send_one(row, target, marks)

        marks: list[dict] = []
        try:
            await asyncio.gather(*(run_dest(v) for v in by_dest.values()))
        finally:
            await self._mark_sent(marks)
        return len(rows)

    async def _mark_sent(self, marks: list[dict]) -> None:
        """One transaction marks every row this pass delivered (instead of one per row: on
        SQLite each is a turn of the single write lock that taps and the inbox wait for).
        A crash before it resends those rows with their idempotency key, as before."""
        if marks:
            async with self.engine.begin() as conn:
                await conn.execute(text(FINISH), marks)

    async def _send_one(self, row, target: Target, marks: list[dict]) -> float | None:
        """Send one row; return the delay if it was pushed back (later rows must wait)."""
        row_id, idem_key, _t, message, attempts, claims = row
        adapter = self.adapters.get(target.platform)
        if adapter is None:
            await self._finish(row_id, "dead", error=f"platform {target.platform} not mounted")
            return None
        rate, per = adapter.rate_limit(target)
        wait = self.buckets.take(target.key, rate, per)
        if wait > 0:
            await self._retry_later(row_id, attempts, wait, "local rate limit", count=False)
            return wait
        msg = OutMessage.model_validate(_json(message))
        try:
            # a second claim may follow a send whose "sent" mark was lost: ask the platform
            # to drop it if it already has it (WeCom duplicate check); first sends never are
            extra = {"resend": True} if claims > 1 else {}
            result = await adapter.deliver(target, msg, idem_key, **extra)
        except ConfigurationError as exc:
            self.problems[target.platform] = {
                "code": str(exc.code or ""), "error": str(exc)[:300], "hint": exc.hint,
                "since": self.problems.get(target.platform, {}).get("since") or _now_iso()}
            log.error("outbox %s: %s configuration error: %s", row_id, target.platform, exc)
            delay = exc.retry_after or 300.0
            await self._retry_later(row_id, attempts, delay, str(exc), count=False)
            return delay
        except NotReady as exc:  # a connection coming back: wait for it, attempts untouched
            delay = exc.retry_after or 2.0
            await self._retry_later(row_id, attempts, delay, str(exc), count=False)
            return delay
        except RateLimited as exc:
            # the platform refused to take it now (its QPS, e.g. two instances sharing one
            # app's 20 calls/s): not a failed attempt — retried after the platform's wait,
            # spread a little so instances do not come back in step
            delay = (exc.retry_after or 2.0) * (1 + 0.25 * random.random())
            await self._retry_later(row_id, attempts, delay, str(exc), count=False)
            return delay
        except DeliveryError as exc:
            if not exc.transient or attempts + 1 >= self.max_attempts:
                log.error("outbox %s dead after %d attempts: %s", row_id, attempts + 1, exc)
                await self._finish(row_id, "dead", error=str(exc), attempts=attempts + 1)
                return None
            backoff = exc.retry_after or min(300.0, 2.0 ** attempts) * (0.5 + random.random())
            await self._retry_later(row_id, attempts, backoff, str(exc))
            return backoff
        except Exception as exc:  # noqa: BLE001 - unknown errors are retried, not fatal
            log.exception("outbox %s delivery crashed", row_id)
            backoff = min(300.0, 2.0 ** attempts)
            await self._retry_later(row_id, attempts, backoff, repr(exc))
            return backoff
        # marked with the rest of the pass (``_mark_sent``)
        self.problems.pop(target.platform, None)
        marks.append(self._finish_params(row_id, "sent", result=result, attempts=attempts + 1))
        self.sent += 1
        return None

    def _finish_params(self, row_id, status, error="", result=None, attempts=None) -> dict:
        return {"s": status, "e": error[:500], "r": json.dumps(result or {}, ensure_ascii=False),
                "t": self.clock() if status == "sent" else None, "a": attempts, "id": row_id}

    async def _finish(self, row_id, status, error="", result=None, attempts=None) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(text(FINISH), self._finish_params(row_id, status, error, result,
                                                                 attempts))

    async def _retry_later(self, row_id, attempts, delay, error, count=True) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(text(
                "UPDATE outbox SET next_at=:n, attempts=:a, last_error=:e, claimed_until=NULL,"
                " claims=claims-:unsent WHERE id=:id"),
                {"n": self.clock() + timedelta(seconds=delay),
                 "a": attempts + 1 if count else attempts, "e": error[:500], "id": row_id,
                 "unsent": 0 if count else 1})  # held back locally: that claim sent nothing
        if delay < 1.5:
            asyncio.get_running_loop().call_later(delay, self.wake)


def _json(value):
    import json

    return json.loads(value) if isinstance(value, str | bytes) else value
