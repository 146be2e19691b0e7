"""From a committed inbox row to handler effects, exactly once.

``Ingress.submit`` commits the row (group commit), then the dispatcher runs it at once in a
tracked task with bounded concurrency (a row waits for a free slot, up to ``max_queued``);
rows past that bound, and rows a crash left behind, are picked up by the sweeper. One
transaction holds the handler's writes, its outbox rows and the ``status='done'`` update
guarded by ``WHERE status='pending'``: whoever commits first wins, any concurrent run rolls
back.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import timedelta

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.ctx import Ctx
from bot.event import Event, Toast, utcnow
from bot.inbox import Inbox, InboxUnavailable
from bot.logformat import event_id as log_event_id
from bot.router import Handler, Router
from cards import ForgedAction
from config import Settings
from storage import chat_buffer

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
SWEEP_CLAIM_PG = ("UPDATE inbox_events SET claimed_until=:until WHERE id IN ("
                  "SELECT id FROM inbox_events WHERE status='pending' AND received_at <= :old"
                  " AND (claimed_until IS NULL OR claimed_until < :now)"
                  " ORDER BY id LIMIT :lim FOR UPDATE SKIP LOCKED) RETURNING id, payload")
# SQLite's lease (see Dispatcher._claim_sqlite): each statement answers in one row
SWEEP_PICK = ("SELECT json_group_array(id) FROM (SELECT id FROM inbox_events"
              " WHERE status='pending' AND (claimed_until IS NULL OR claimed_until < :now)"
              " AND received_at <= :old ORDER BY id LIMIT :lim)")
SWEEP_LEASE = ("UPDATE inbox_events SET claimed_until=:until"
               " WHERE id IN (SELECT value FROM json_each(:ids)) AND status='pending'"
               " AND (claimed_until IS NULL OR claimed_until < :now)")
SWEEP_MINE = ("SELECT json_group_array(id) FROM inbox_events"
              " WHERE id IN (SELECT value FROM json_each(:ids)) AND claimed_until=:until")
SWEEP_LOAD = ("SELECT json_group_array(json_array(id, payload)) FROM inbox_events"
              " WHERE id IN (SELECT value FROM json_each(:ids))")
DONE_GUARD = ("INSERT INTO inbox_done (dedupe_key, done_at) VALUES (:k, :t)"
              " ON CONFLICT (dedupe_key) DO NOTHING")
MARK_DONE = ("UPDATE inbox_events SET status='done', done_at=:t, attempts=attempts+1"
             " WHERE id=:id AND status='pending'")
INLINE_LEASE_S = 10.0  # a tap run inline is this process's for that long, then anyone's
# An inline answer waits this long for its run to *start* (a free slot): under a burst, a tap
# queued behind others is acknowledged at once and finished through the outbox instead.
INLINE_START_S = 0.03
FAILURE_TEXT = ("抱歉，处理这条消息时出错了，请稍后再试。"
                "/ Sorry, something went wrong; please retry.")


class Dispatcher:
    def __init__(self, settings: Settings, secret: bytes, engine, routers: list[Router],
                 on_outbox: Callable[[], None] = lambda: None, clock=utcnow,
                 concurrency: int = 32):
        self.settings = settings
        self.secret = secret
        self.engine = engine  # AsyncEngine
        self.routers = routers
        self.on_outbox = on_outbox
        self.clock = clock
        self._sem = asyncio.Semaphore(concurrency)
        self.concurrency = concurrency
        self.max_queued = 64 * concurrency  # runs in flight or waiting for a slot
        self._inflight: set[int] = set()
        self._tasks: set[asyncio.Task] = set()
        self._waiters: dict[int, asyncio.Future] = {}
        self._started: set[int] = set()  # inline runs that got a slot
        self._chats: dict[tuple, list] = {}  # chat → [lock, users]: see _in_order
        # False in the web process of a split deployment: messages are left to the worker
        # process and only card taps (whose toast rides in the HTTP answer) run inline.
        self.inline_messages = True
        # platforms that show a toast inline; elsewhere a toast becomes a short message
        self.inline_toast: set[str] = set()
        self.postgres = False
        self.inbox: Inbox | None = None  # this process's inbox writer, for "done" marks

    # -- routing ----------------------------------------------------------------------------
    def resolve(self, ctx: Ctx) -> Handler | None:
        ev = ctx.event
        if ev.kind == "card_action":
            try:
                name = ctx.action.name
            except ForgedAction:
                return _forged
            for r in self.routers:
                if name in r.actions:
                    return r.actions[name]
            return None
        if ev.kind == "message":
            if ev.msg_type == "text" and ev.text.strip():
                word = ev.text.strip().split()[0].lower()
                for r in self.routers:
                    if word in r.commands:
                        return r.commands[word]
            for r in self.routers:
                if ev.msg_type in r.msg_types:
                    return r.msg_types[ev.msg_type]
            for r in self.routers:
                if r.fallbacks:
                    return r.fallbacks[0]
        return None

    # -- running ----------------------------------------------------------------------------
    def kick(self, inbox_id: int, event: Event, want_toast: bool = False) -> asyncio.Future | None:
        """Run a just-committed event now if there is room; else the sweeper will."""
        if inbox_id in self._inflight:
            return None
        # Busy slots do not send a row to the sweeper (which only looks every few seconds at
        # rows a few seconds old): it queues for a slot, up to a bound; past that the sweeper
        # takes it, as it takes rows of another process or left by a crash.
        if not want_toast and (len(self._inflight) >= self.max_queued
                               or not self.inline_messages):
            return None
        fut: asyncio.Future | None = None
        if want_toast:
            fut = asyncio.get_running_loop().create_future()
            self._waiters[inbox_id] = fut
        self._inflight.add(inbox_id)
        task = asyncio.create_task(self._guarded(inbox_id, event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return fut

    async def _guarded(self, inbox_id: int, event: Event) -> None:
        try:
            async with self._in_order(event), self._sem:
                self._started.add(inbox_id)
                toast = await self.run(inbox_id, event)
        except Exception:  # noqa: BLE001 - a crash here must never kill the loop
            log.exception("dispatch of inbox %s failed", inbox_id)
            toast = None
        finally:
            self._inflight.discard(inbox_id)
            self._started.discard(inbox_id)
        fut = self._waiters.pop(inbox_id, None)
        if fut is not None and not fut.done():
            fut.set_result(toast)

    async def run(self, inbox_id: int, event: Event) -> Toast | None:
        log_event_id.set(f"{event.platform}:{event.event_id}")  # in JSON log lines
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            ctx = Ctx(event, session, self.settings, self.secret, key_prefix=f"in:{inbox_id}",
                      clock=self.clock)
            try:
                await ctx.load_user()
                if event.kind == "message":
                    await _buffer(session, event)
                handler = self.resolve(ctx)
                if handler is None:
                    log.info("no handler for %s %s/%s", event.platform, event.kind,
                             event.msg_type)
                else:
                    await handler(ctx)
                # The guard goes first and without an autoflush: a concurrent run of the same
                # event waits here for the winner's commit, then finds nothing to do — instead
                # of colliding on the outbox idem_key and logging a bogus failure. It sits
                # with the business tables (the inbox may be another SQLite file), so the
                # handler's writes and their "done" are one atomic commit.
                now = self.clock()
                res = await _sql(session, DONE_GUARD, {"k": event.dedupe_key, "t": now})
                if res.rowcount != 1:
                    await session.rollback()
                    await self._mark_done(inbox_id)
                    return None
                # no toast on this platform, or nobody waits to show it (the inline answer
                # went out without it: late, or a sweep): a warning/error (无权限, 已处理)
                # still reaches the user as a short message; a success toast is already
                # shown by the card update
                inline = event.platform in self.inline_toast and inbox_id in self._waiters
                if (ctx.toast_reply and not inline
                        and ctx.toast_reply.kind in ("warning", "error")):
                    await ctx.reply(ctx.toast_reply.text)
                for row in ctx.outbox:
                    session.add(row)
                await session.commit()
            except Exception as exc:  # noqa: BLE001
                await session.rollback()
                if await self._finished_elsewhere(inbox_id):
                    log.info("inbox %s was completed by a concurrent run", inbox_id)
                    return None
                log.exception("handler failed for %s", event.dedupe_key)
                await self._record_failure(inbox_id, event, exc)
                return Toast(kind="error", text="处理失败，请重试")
        # The inline answer takes the toast if it still waits; one that went out without it
        # (its budget ran out while this commit waited for the lock) never waits for it: a
        # warning/error (无权限, 已处理) then follows as a message.
        if inline and not self._hand_toast(inbox_id, ctx.toast_reply) and ctx.toast_reply \
                and ctx.toast_reply.kind in ("warning", "error"):
            await self._late_toast(inbox_id, event, ctx.toast_reply)
        # The row's status is bookkeeping after the commit (the guard above is what counts; a
        # crash before this line leaves a pending row whose next run only marks it done).
        await self._mark_done(inbox_id)
        if ctx.outbox:
            self.on_outbox()
            later = max((r.next_at - self.clock()).total_seconds() for r in ctx.outbox)
            if later > 0:  # a held-back row (card update after a tap): wake the sender then
                asyncio.get_running_loop().call_later(later + 0.02, self.on_outbox)
        return ctx.toast_reply

    @asynccontextmanager
    async def _in_order(self, event: Event):
        """Messages of one chat run one at a time, in the order they were committed: "今天
        拜访了华东精密" must be in the chat buffer before the "同步" sent right after it runs.
        (Kicks and sweeps start runs in inbox-id order; the lock is FIFO.) Taps are not held
        back: their answer has a deadline."""
        if event.kind != "message":
            yield
            return
        key = (event.platform, event.app_id, event.chat.id or event.sender)
        entry = self._chats.get(key)
        if entry is None:
            entry = self._chats[key] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._chats.pop(key, None)

    def started(self, inbox_id: int) -> bool:
        """The run holds a slot, or will take a free one as soon as the loop schedules it
        (a busy loop may not have run the new task yet: that is no reason to give up)."""
        return inbox_id in self._started or not self._sem.locked()

    def backlogged(self) -> bool:
        """Every slot is taken and runs wait for one (a new run would start last)."""
        return len(self._inflight) > self.concurrency

    def give_up(self, inbox_id: int) -> None:
        """The inline answer goes out now, without a toast (the run sends a warning or an
        error as a message instead, see ``_hand_toast``)."""
        self._waiters.pop(inbox_id, None)

    def _hand_toast(self, inbox_id: int, toast: Toast | None) -> bool:
        """Give the committed run's toast to the inline answer if it still waits."""
        fut = self._waiters.pop(inbox_id, None)
        if fut is None or fut.done():
            return False
        fut.set_result(toast)
        return True

    async def _late_toast(self, inbox_id: int, event: Event, toast: Toast) -> None:
        """A toast the inline answer could not carry, as a short message (its own small
        transaction; the outbox key makes a repeat harmless)."""
        try:
            async with AsyncSession(self.engine, expire_on_commit=False) as session:
                ctx = Ctx(event, session, self.settings, self.secret,
                          key_prefix=f"in:{inbox_id}:toast", clock=self.clock)
                await ctx.reply(toast.text)
                for row in ctx.outbox:
                    session.add(row)
                await session.commit()
            self.on_outbox()
        except Exception:  # noqa: BLE001 - the card update still shows the outcome
            log.warning("could not send the late toast of inbox %s", inbox_id, exc_info=True)

    async def _finished_elsewhere(self, inbox_id: int) -> bool:
        async with AsyncSession(self.engine) as session:
            row = (await _sql(session, "SELECT status, dedupe_key FROM inbox_events WHERE id=:id",
                              {"id": inbox_id})).first()
            if row is None or row[0] != "pending":
                return row is not None
            done = (await _sql(session, "SELECT 1 FROM inbox_done WHERE dedupe_key=:k",
                               {"k": row[1]})).first()
        if done is not None:
            await self._mark_done(inbox_id)
        return done is not None

    async def _mark_done(self, inbox_id: int) -> None:
        """Bookkeeping for a row whose guard key is taken (its effects committed): through
        this process's inbox writer when it runs one, else directly."""
        try:
            if self.inbox is not None and self.inbox.running:
                await self.inbox.mark_done(inbox_id)
                return
            async with AsyncSession(self.engine) as session:
                await _sql(session, MARK_DONE, {"id": inbox_id, "t": self.clock()})
                await session.commit()
        except Exception:  # noqa: BLE001 - the sweeper retries; the guard keeps it harmless
            log.warning("could not mark inbox %s done", inbox_id, exc_info=True)

    async def _record_failure(self, inbox_id: int, event: Event, exc: Exception) -> None:
        """Count the attempt; after the last one tell the user instead of failing silently."""
        async with AsyncSession(self.engine) as session:
            row = (await _sql(session, "SELECT attempts FROM inbox_events WHERE id=:id",
                              {"id": inbox_id})).first()
            attempts = (row[0] if row else 0) + 1
            final = attempts >= MAX_ATTEMPTS
            ctx = Ctx(event, session, self.settings, self.secret,
                      key_prefix=f"in:{inbox_id}:fail", clock=self.clock)
            if final and event.kind in ("message", "card_action"):
                await ctx.reply(FAILURE_TEXT)
                for r in ctx.outbox:
                    session.add(r)
                await session.flush()  # main file first, inbox last: the order run() takes
            await _sql(
                session,
                "UPDATE inbox_events SET attempts=:a, error=:e, status=:s, claimed_until=:c"
                " WHERE id=:id AND status='pending'",
                {"a": attempts, "e": repr(exc)[:500], "s": "failed" if final else "pending",
                 "c": self.clock() + timedelta(seconds=5 * attempts), "id": inbox_id})
            await session.commit()
        if final:
            self.on_outbox()

    # -- sweeper ------------------------------------------------------------------------------
    async def sweep(self, min_age_s: float = 2.0, limit: int = 200,
                    lease_s: float = 60.0) -> int:
        """Run pending rows nobody is running (left by a crash, skipped under load, or left
        to this worker process). Rows are leased in one statement (``SKIP LOCKED`` on
        PostgreSQL) so several processes never pick the same row, then run concurrently."""
        now = self.clock()
        params = {"old": now - timedelta(seconds=min_age_s), "now": now, "lim": limit,
                  "until": now + timedelta(seconds=lease_s)}
        if self.postgres:
            async with AsyncSession(self.engine) as session:
                rows = (await _sql(session, SWEEP_CLAIM_PG, params)).all()
                await session.commit()
        else:
            rows = await self._claim_sqlite(params)
        rows = sorted(r for r in rows if r[0] not in self._inflight)

        async def one(inbox_id: int, payload: str) -> bool:
            try:
                event = Event.model_validate_json(payload)
            except ValueError:
                log.error("inbox %s holds an unreadable payload; marking failed", inbox_id)
                async with AsyncSession(self.engine) as session:
                    await _sql(session, "UPDATE inbox_events SET status='failed' WHERE id=:id",
                               {"id": inbox_id})
                    await session.commit()
                return False
            self._inflight.add(inbox_id)
            try:
                async with self._in_order(event), self._sem:
                    await self.run(inbox_id, event)
            except Exception:  # noqa: BLE001 - one bad row must not stop the sweep
                log.exception("sweep of inbox %s failed", inbox_id)
            finally:
                self._inflight.discard(inbox_id)
            return True

        return sum(await asyncio.gather(*(one(i, p) for i, p in rows)))

    async def _claim_sqlite(self, params: dict) -> list[tuple[int, str]]:
        """The SQLite lease, in single-row statements: stepping one row per claimed event
        while holding the inbox file's write lock (``RETURNING``) kept the lock for as many
        GIL hand-overs as rows, and acknowledgements waited behind it."""
        async with AsyncSession(self.engine) as session:
            ids = (await _sql(session, SWEEP_PICK, params)).scalar_one()
            if ids == "[]":
                return []
            res = await _sql(session, SWEEP_LEASE, {**params, "ids": ids})
            if res.rowcount != len(json.loads(ids)):  # another process took some meanwhile
                ids = (await _sql(session, SWEEP_MINE, {**params, "ids": ids})).scalar_one()
            await session.commit()
            got = (await _sql(session, SWEEP_LOAD, {"ids": ids})).scalar_one()
            await session.commit()
        return [tuple(r) for r in json.loads(got)]

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def _sql(session: AsyncSession, sql: str, params: dict):
    """Plain SQL on the session's own connection and transaction (no autoflush)."""
    return await (await session.connection()).execute(text(sql), params)


async def _buffer(session: AsyncSession, event: Event) -> None:
    """Keep every message for one-tap sync (same transaction as the handler's writes)."""
    media_text = event.media.recognition or "" if event.media else ""
    await chat_buffer.record(
        session, platform=event.platform, app_id=event.app_id,
        chat_id=event.chat.id or event.sender, message_id=event.message_id or event.event_id,
        sender=event.sender, sender_name=event.sender_name, msg_type=event.msg_type,
        text=event.text or media_text, sent_at=event.created_at)
    if event.chat.type == "group" and event.chat.id:
        await chat_buffer.remember_chat(session, platform=event.platform, app_id=event.app_id,
                                        external_id=event.chat.id, title=event.chat.title)


async def _forged(ctx: Ctx) -> None:
    ctx.audit("card.forged_action", detail_value=(ctx.event.action.value if ctx.event.action
                                                  else "")[:200])
    ctx.toast("无效的操作 / invalid action", "error")


class Ingress:
    """The webhook's one entry into the core: commit, then dispatch."""

    def __init__(self, inbox: Inbox, dispatcher: Dispatcher):
        self.inbox = inbox
        self.dispatcher = dispatcher
        self.metrics = None  # bot.metrics.Metrics, set by the app

    async def submit(self, event: Event, toast_wait: float = 0.0) -> tuple[bool, Toast | None]:
        """Commit the event; return (was it new, the inline toast if ready within the wait).

        Raises ``InboxUnavailable`` when the row could not be committed (answer 503)."""
        inline = toast_wait > 0
        log_event_id.set(f"{event.platform}:{event.event_id}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + toast_wait  # the budget includes the commit of the row
        inbox_id = await self.inbox.accept(event.dedupe_key, event.platform,
                                           event.model_dump_json(),
                                           lease_s=INLINE_LEASE_S if inline else 0.0)
        if self.metrics is not None:
            self.metrics.accepted(event.platform, inbox_id is not None)
        if inbox_id is None:
            return False, None
        fut = self.dispatcher.kick(inbox_id, event, want_toast=toast_wait > 0)
        if fut is None:
            return True, None
        # Wait for the toast within the budget, but only while the run is going: one still
        # queued for a slot after INLINE_START_S (at once if others already queue) is
        # acknowledged now, its card update and any warning following through the outbox, so
        # a burst never holds acks behind the handlers.
        left = max(0.0, deadline - loop.time())
        first = 0.0 if self.dispatcher.backlogged() else min(left, INLINE_START_S)
        try:
            return True, await asyncio.wait_for(asyncio.shield(fut), first)
        except TimeoutError:
            pass
        if self.dispatcher.started(inbox_id):
            try:
                return True, await asyncio.wait_for(asyncio.shield(fut),
                                                    max(0.0, deadline - loop.time()))
            except TimeoutError:
                pass
        if fut.done():  # handed over just as the wait ran out
            return True, fut.result()
        self.dispatcher.give_up(inbox_id)
        return True, None


__all__ = ["Dispatcher", "Ingress", "InboxUnavailable"]
