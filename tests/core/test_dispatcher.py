"""From a committed inbox row to handler effects, exactly once: the app is built with
``create_app`` and no platform, events go in through ``app[INGRESS].submit``."""

from __future__ import annotations

import asyncio
import gc
import json
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import text

from bot.app import DISPATCHER, ENGINE, INBOX, INGRESS, create_app
from bot.dispatcher import FAILURE_TEXT, MAX_ATTEMPTS
from bot.event import CardAction, ChatRef, Event, utcnow
from bot.router import Router
from cards import pack_action, unpack_action
from config import load_settings
from handlers import ROUTERS
from storage.db import sync_engine

SLOW_COMMIT_S = 3.0  # a commit queued behind another writer


def make_event(event_id: str = "m1", text_: str = "help", **kw) -> Event:
    base = dict(platform="wecom", app_id="corp1", event_id=event_id, sender="zhangsan",
                sender_name="张三", chat=ChatRef(id="zhangsan", type="p2p"), text=text_)
    base.update(kw)
    return Event(**base)


def tap(event_id: str, value: str) -> Event:
    return make_event(event_id, "", kind="card_action", msg_type="",
                      action=CardAction(value=value, card_ref={"response_code": "rc1"}))


class Core:
    def __init__(self, app, url):
        self.app = app
        self.url = url
        self.ingress = app[INGRESS]
        self.dispatcher = app[DISPATCHER]
        self.inbox = app[INBOX]
        self._eng = sync_engine(url)

    def sql(self, query: str, **params) -> list:
        with self._eng.connect() as conn:
            return conn.execute(text(query), params).all()

    def outbox(self) -> list[dict]:
        return [{"idem_key": r[0], "target": _j(r[1]), "message": _j(r[2]), "status": r[3]}
                for r in self.sql("SELECT idem_key, target, message, status FROM outbox"
                                  " ORDER BY id")]

    def inbox_row(self, inbox_id: int):
        return self.sql("SELECT status, attempts, error FROM inbox_events WHERE id=:i",
                        i=inbox_id)[0]

    def audit(self) -> list[tuple]:
        return self.sql("SELECT action, actor_ref, entity_id FROM audit_log ORDER BY id")

    def skew(self, seconds: float) -> None:
        """Move the dispatcher's clock forward (past retry leases) without sleeping."""
        self.dispatcher.clock = lambda: utcnow() + timedelta(seconds=seconds)


def _j(v):
    return json.loads(v) if isinstance(v, str) else v


async def build(db_url, tmp_path, routers=None) -> Core:
    settings = load_settings(database_url=db_url, data_dir=tmp_path)
    assert settings.enabled_platforms() == []
    app = create_app(settings, routers=routers)
    # The inbox writer is all we start: the outbox sender and the periodic sweeper stay off,
    # so each test drives delivery and sweeping itself, deterministically.
    app[INBOX].start()
    return Core(app, db_url)


@pytest.fixture
async def core(db_url, tmp_path):
    c = await build(db_url, tmp_path)
    yield c
    await close(c)


async def close(c: Core) -> None:
    await c.dispatcher.drain()
    c.inbox.stop()
    c.inbox.engine.dispose()
    await c.app[ENGINE].dispose()
    c._eng.dispose()


async def test_help_queues_one_card_and_duplicate_is_ignored(core):
    new, toast = await core.ingress.submit(make_event("m1", "help"), toast_wait=5)
    assert new is True and toast is None
    out = core.outbox()
    assert len(out) == 1
    row = out[0]
    assert row["message"]["kind"] == "card"
    assert row["message"]["card"]["title"] == "拜访助手 FieldBot · 帮助"
    assert row["target"] == {"platform": "wecom", "app_id": "corp1", "kind": "user",
                             "id": "zhangsan", "extra": {}}
    assert row["idem_key"].startswith("in:")
    # the button carries a token signed with this deployment's key
    button = row["message"]["card"]["buttons"][0]["action"]
    assert unpack_action(core.dispatcher.secret, button).name == "help.ack"
    assert core.sql("SELECT status, attempts FROM inbox_events") == [("done", 1)]

    new, toast = await core.ingress.submit(make_event("m1", "help"), toast_wait=1)
    assert (new, toast) == (False, None)
    await core.dispatcher.drain()
    assert len(core.outbox()) == 1
    assert await core.dispatcher.sweep(min_age_s=0) == 0


async def test_text_fallback_reply(core):
    await core.ingress.submit(make_event("m2", "明天拜访华为"), toast_wait=5)
    (row,) = core.outbox()
    assert row["message"]["kind"] == "text"
    assert row["message"]["text"].startswith("收到文字：明天拜访华为")


async def test_failing_handler_retried_then_reported(db_url, tmp_path):
    calls = []
    r = Router("boom")

    @r.command("boom", help="失败 / fails")
    async def boom(ctx):
        calls.append(ctx.event.event_id)
        await ctx.reply("half-done")  # must be rolled back with the failure
        ctx.audit("boom.tried")
        raise RuntimeError("kaput")

    c = await build(db_url, tmp_path, routers=[r, *ROUTERS])
    try:
        new, toast = await c.ingress.submit(make_event("b1", "boom"), toast_wait=5)
        assert new and toast is not None and toast.kind == "error"
        (inbox_id,) = [row[0] for row in c.sql("SELECT id FROM inbox_events")]
        assert c.inbox_row(inbox_id)[:2] == ("pending", 1)
        assert c.outbox() == [] and c.audit() == []  # rolled back

        assert await c.dispatcher.sweep(min_age_s=0) == 0  # backing off: not yet
        for attempt in range(2, MAX_ATTEMPTS + 1):
            c.skew(60 * attempt)
            assert await c.dispatcher.sweep(min_age_s=0) == 1
            assert c.inbox_row(inbox_id)[1] == attempt
        assert len(calls) == MAX_ATTEMPTS
        status, attempts, error = c.inbox_row(inbox_id)
        assert (status, attempts) == ("failed", MAX_ATTEMPTS)
        assert "kaput" in error
        out = c.outbox()
        assert len(out) == 1, "only the failure notice; never the rolled-back reply"
        assert out[0]["message"] == {"kind": "text", "text": FAILURE_TEXT, "card": None,
                                     "card_ref": {}}
        assert out[0]["target"]["id"] == "zhangsan"
        c.skew(3600)
        assert await c.dispatcher.sweep(min_age_s=0) == 0  # failed rows stay failed
        assert len(calls) == MAX_ATTEMPTS
    finally:
        await close(c)


async def test_concurrent_runs_of_one_row_commit_once(db_url, tmp_path):
    started = asyncio.Event()
    r = Router("slow")

    @r.command("slow", help="慢 / slow")
    async def slow(ctx):
        await ctx.reply("one")
        await ctx.reply("two")
        started.set()
        await asyncio.sleep(0.05)

    c = await build(db_url, tmp_path, routers=[r])
    try:
        ev = make_event("s1", "slow")
        inbox_id = await c.inbox.accept(ev.dedupe_key, ev.platform, ev.model_dump_json())
        results = await asyncio.gather(c.dispatcher.run(inbox_id, ev),
                                       c.dispatcher.run(inbox_id, ev),
                                       return_exceptions=True)
        assert not any(isinstance(x, BaseException) for x in results), results
        # the loser finds the row done and backs off quietly: no failure toast, no retry
        assert not any(x is not None and x.kind == "error" for x in results), results
        out = c.outbox()
        assert [o["message"]["text"] for o in out] == ["one", "two"]
        assert len({o["idem_key"] for o in out}) == 2
        assert c.inbox_row(inbox_id)[0] == "done"
    finally:
        await close(c)


async def test_pending_row_left_by_crash_is_swept(core):
    ev = make_event("c1", "帮助")
    inbox_id = await core.inbox.accept(ev.dedupe_key, ev.platform, ev.model_dump_json())
    assert core.outbox() == []
    # too young: the live path may still be running it
    assert await core.dispatcher.sweep() == 0
    assert await core.dispatcher.sweep(min_age_s=0) == 1
    assert core.inbox_row(inbox_id)[0] == "done"
    (row,) = core.outbox()
    assert row["message"]["kind"] == "card"
    assert await core.dispatcher.sweep(min_age_s=0) == 0


async def test_unreadable_payload_is_marked_failed(core):
    inbox_id = await core.inbox.accept("wecom:corp1:junk", "wecom", "{not json")
    assert await core.dispatcher.sweep(min_age_s=0) == 0
    assert core.inbox_row(inbox_id)[0] == "failed"


async def test_forged_card_action(core):
    other = pack_action(b"another deployment's key", "help.ack")
    for i, value in enumerate(["garbage", other, ""]):
        new, toast = await core.ingress.submit(tap(f"f{i}", value), toast_wait=5)
        assert new and toast is not None and toast.kind == "error"
    assert [a[0] for a in core.audit()] == ["card.forged_action"] * 3
    assert core.audit()[0][1] == "wecom:zhangsan"
    # no card update; WeCom shows no toast, so the refusal arrives as a short message
    rows = core.outbox()
    assert [r["message"]["kind"] for r in rows] == ["text"] * 3
    assert all("无效的操作" in r["message"]["text"] for r in rows)


async def test_valid_card_action_routes_to_handler(core):
    token = pack_action(core.dispatcher.secret, "help.ack")
    new, toast = await core.ingress.submit(tap("t1", token), toast_wait=5)
    assert new
    assert toast is not None and (toast.kind, toast.text) == ("success", "👍")
    (row,) = core.outbox()
    assert row["message"]["kind"] == "update_card"
    assert row["message"]["card_ref"] == {"response_code": "rc1"}
    assert row["message"]["card"]["status"] == "已读 ✓"
    assert core.audit() == [("help.ack", "wecom:zhangsan", "t1")]
    # a replayed tap is acknowledged and ignored
    assert await core.ingress.submit(tap("t1", token), toast_wait=1) == (False, None)
    assert len(core.outbox()) == 1


async def test_unknown_action_name_is_ignored(core):
    token = pack_action(core.dispatcher.secret, "no.such.action")
    new, toast = await core.ingress.submit(tap("u1", token), toast_wait=5)
    assert new and toast is None
    assert core.outbox() == [] and core.audit() == []
    assert core.sql("SELECT status FROM inbox_events") == [("done",)]


async def test_app_lifecycle_without_platforms(db_url, tmp_path):
    """The whole app starts and stops cleanly with no platform configured."""
    settings = load_settings(database_url=db_url, data_dir=tmp_path)
    app = create_app(settings)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.get("/healthz")
        assert resp.status == 200
        assert (await resp.json())["platforms"] == []
        new, _ = await app[INGRESS].submit(make_event("l1", "help"), toast_wait=5)
        assert new
        # the inbox's group commit is visible to operators
        inbox = (await (await client.get("/healthz")).json())["inbox"]
        assert inbox["writes"] == 2 and inbox["commits"] >= 1  # the row, then its done mark


async def test_inline_toast_never_holds_the_answer_past_its_budget(db_url, tmp_path,
                                                                    monkeypatch):
    """Issue 4: a tap whose commit is slower than the inline budget (its transaction queued
    behind another writer) is answered at the budget without its toast; the warning then
    follows as a short message (never lost, never both). A fast one carries its toast inline
    and sends no message."""
    from bot import dispatcher as dispatcher_module

    warn = Router("warn")

    @warn.action("t.warn")
    async def _warn(ctx):
        ctx.toast("已处理 / already handled", "warning")

    real_commit = dispatcher_module.AsyncSession.commit
    slow = {"on": True}

    async def slow_commit(self):
        if slow["on"]:
            await asyncio.sleep(SLOW_COMMIT_S)
        return await real_commit(self)

    monkeypatch.setattr(dispatcher_module.AsyncSession, "commit", slow_commit)
    c = await build(db_url, tmp_path, routers=[warn])
    try:
        c.dispatcher.inline_toast = {"feishu"}
        token = pack_action(c.dispatcher.secret, "t.warn")

        def ftap(eid):
            return tap(eid, token).model_copy(update={"platform": "feishu"})

        loop = asyncio.get_running_loop()
        gc.collect()  # (a full collection of the suite's heap can stall the loop ~0.5 s)
        t0 = loop.time()
        new, toast = await c.ingress.submit(ftap("s1"), toast_wait=0.1)
        waited = loop.time() - t0
        assert new and toast is None
        # the budget is 0.1 s; a dispatcher that held the answer for the commit waits 3 s
        assert waited < SLOW_COMMIT_S / 2, f"the answer waited {waited:.2f} s for a slow commit"
        await c.dispatcher.drain()
        rows = c.outbox()
        assert [r["message"]["kind"] for r in rows] == ["text"]
        assert "已处理" in rows[0]["message"]["text"]
        assert rows[0]["target"]["platform"] == "feishu"

        slow["on"] = False
        new, toast = await c.ingress.submit(ftap("f1"), toast_wait=2)
        assert new and toast is not None and toast.kind == "warning"
        await c.dispatcher.drain()
        assert len(c.outbox()) == 1  # no message besides the inline toast
    finally:
        await close(c)


async def test_messages_of_one_chat_run_in_order_other_chats_in_parallel(db_url, tmp_path):
    """A "同步" sent right after "今天拜访了…" must see it: one chat's messages run one at a
    time in commit order; another chat's are not held back."""
    log: list[str] = []
    r = Router("order")

    @r.fallback()
    async def _record(ctx):
        log.append(f"start {ctx.event.text}")
        await asyncio.sleep(0.05 if ctx.event.text.endswith("1") else 0.01)
        log.append(f"end {ctx.event.text}")

    c = await build(db_url, tmp_path, routers=[r])
    try:
        other = ChatRef(id="lisi", type="p2p")
        await asyncio.gather(*(c.ingress.submit(make_event(f"o{i}", f"a{i}"))
                               for i in (1, 2, 3)),
                             c.ingress.submit(make_event("x1", "b1", sender="lisi",
                                                         chat=other)))
        await c.dispatcher.drain()
        mine = [e for e in log if " a" in e]
        assert mine == ["start a1", "end a1", "start a2", "end a2", "start a3", "end a3"]
        if not db_url.startswith("sqlite"):  # (SQLite's one write lock serialises anyway)
            # the other chat started while a1 was still running
            assert log.index("start b1") < log.index("end a1")
        assert c.dispatcher._chats == {}
    finally:
        await close(c)
