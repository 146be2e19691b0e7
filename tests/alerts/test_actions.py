"""Card buttons on alerts, through the real dispatcher: 已跟进 resets the stale clock,
延后 7 天 snoozes, 转给… is for managers only, 催款 records a chase and tells finance."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from bot.app import DISPATCHER, ENGINE, INBOX, INGRESS, create_app
from bot.event import CardAction, ChatRef, Event
from cards import unpack_action
from config import load_settings
from jobs.runner import AlertJobs
from tests.alerts.conftest import NOW, Env

pytestmark = pytest.mark.dates  # expectations relative to today: see tests/conftest.py


class App:
    def __init__(self, env: Env, tmp_path):
        settings = load_settings(database_url=env.url, data_dir=tmp_path, secret_key="k" * 40)
        self.app = create_app(settings)
        self.app[INBOX].start()
        self.dispatcher = self.app[DISPATCHER]
        self.dispatcher.clock = lambda: NOW
        self.secret = self.dispatcher.secret
        env.jobs = AlertJobs(env.engine, settings, self.secret)
        self.n = 0

    async def tap(self, sender: str, token: str):
        self.n += 1
        ev = Event(platform="wecom", app_id="corp1", event_id=f"tap{self.n}", kind="card_action",
                   msg_type="", sender=sender, chat=ChatRef(id=sender, type="p2p"),
                   action=CardAction(value=token, card_ref={"response_code": f"rc{self.n}"}))
        new, toast = await self.app[INGRESS].submit(ev, toast_wait=5)
        assert new
        return toast

    async def close(self):
        await self.dispatcher.drain()
        self.app[INBOX].stop()
        self.app[INBOX].engine.dispose()
        await self.app[ENGINE].dispose()


@pytest.fixture
async def app(env, tmp_path):
    a = App(env, tmp_path)
    yield a
    await a.close()


def buttons(card: dict, secret: bytes) -> dict[str, str]:
    return {b["text"]: b["action"] for b in card["buttons"]}


async def test_follow_up_resets_the_stale_clock(env, app):
    did = env.deal(idle_days=25)
    await env.jobs.run("stale", now=NOW)
    (row,) = env.outbox()
    btn = buttons(row["card"], app.secret)
    args = unpack_action(app.secret, btn["已跟进"]).args
    assert {k: v for k, v in args.items() if k != "c"} == {"r": "stale", "k": "deal", "e": did}
    assert args["c"] == env.outbox()[0]["card"]["card_id"]  # the card a tap redraws

    toast = await app.tap("zhangsan", btn["已跟进"])
    assert toast.kind == "success" and "已记录跟进" in toast.text
    assert env.sql("SELECT source, deal_id FROM visits") == [("alert", did)]
    assert ("alert.follow_up", "deal", str(did)) in env.sql(
        "SELECT action, entity, entity_id FROM audit_log")

    for n, fired in ((19, 0), (20, 1)):  # the clock restarted at the tap
        r = await env.jobs.run("stale", now=NOW + timedelta(days=n))
        assert r["cards"] == fired, n
    assert "20 天无进展" in env.outbox()[-1]["card"]["text"]


async def test_snooze_7_days(env, app):
    env.deal(idle_days=20)
    await env.jobs.run("stale", now=NOW)
    toast = await app.tap("zhangsan", buttons(env.outbox()[0]["card"], app.secret)["延后7天"])
    assert toast.kind == "success"
    for n, fired in ((3, 0), (6, 0), (11, 2)):  # at 31 days it is red, snooze is over
        r = await env.jobs.run("stale", now=NOW + timedelta(days=n))
        assert r["cards"] == fired, n


async def test_strangers_and_reps_cannot_act_on_others_alerts(env, app):
    env.deal(idle_days=20)
    await env.jobs.run("stale", now=NOW)
    btn = buttons(env.outbox()[0]["card"], app.secret)
    toast = await app.tap("zhaoliu", btn["已跟进"])  # another rep
    assert toast.kind == "error"
    toast = await app.tap("nobody", btn["延后7天"])  # unknown user
    assert toast.kind == "error"
    assert env.sql("SELECT count(*) FROM visits") == [(0,)]
    toast = await app.tap("wangjl", btn["已跟进"])  # the manager may
    assert toast.kind == "success"


async def test_reassign_managers_only(env, app):
    did = env.deal(idle_days=31)
    await env.jobs.run("stale", now=NOW)
    mgr_card = next(o for o in env.outbox() if o["target"]["id"] == "wangjl")["card"]
    token = buttons(mgr_card, app.secret)["转给…"]
    toast = await app.tap("zhangsan", token)  # a rep tapping the manager's button
    assert toast.kind == "error"
    await app.tap("wangjl", token)
    picker = [json.loads(m) if isinstance(m, str) else m for (m,) in env.sql(
        "SELECT message FROM outbox WHERE idem_key LIKE 'in:%' ORDER BY id")][-1]["card"]
    assert picker["title"] == "转给…"
    names = {b["text"]: b["action"] for b in picker["buttons"]}
    assert "赵六" in names and "张三" not in names  # the current owner is not offered
    toast = await app.tap("wangjl", names["赵六"])
    assert toast.kind == "success"
    assert env.sql("SELECT owner_id FROM deals WHERE id=:i", i=did) == [(env.ids["rep2"],)]
    texts = [json.loads(m) if isinstance(m, str) else m for (m,) in env.sql(
        "SELECT message FROM outbox WHERE idem_key LIKE 'in:%' ORDER BY id")]
    assert any(t["kind"] == "text" and "转交给你" in t["text"] for t in texts)
    assert any(t["kind"] == "update_card" for t in texts)


async def test_chase_records_and_notifies_finance(env, app):
    iid = env.invoice(due=NOW.date() - timedelta(days=8), amount=90000, paid=10000,
                      number="INV-77")
    await env.jobs.run("overdue", now=NOW)
    toast = await app.tap("zhangsan", buttons(env.outbox()[0]["card"], app.secret)["催款"])
    assert toast.kind == "success" and "通知财务" in toast.text
    assert ("invoice.chase", str(iid)) in env.sql("SELECT action, entity_id FROM audit_log")
    sent = [(json.loads(t) if isinstance(t, str) else t,
             json.loads(m) if isinstance(m, str) else m) for t, m in env.sql(
        "SELECT target, message FROM outbox WHERE idem_key LIKE 'in:%'")]
    (target, message), = [(t, m) for t, m in sent if m["kind"] == "text"]
    (redraw,) = [m for _t, m in sent if m["kind"] == "update_card"]  # the card, in place
    assert "✓ 已催款" in redraw["card"]["text"]
    assert target["id"] == "likj" and "INV-77 逾期 8 天，未收 ¥80,000.00" in message["text"]


async def test_follow_up_untags_a_dormant_customer(env, app):
    from tests.alerts.conftest import days_ago

    cid = env.customer("沉睡公司", last=days_ago(100))
    await env.jobs.run("dormant", now=NOW)
    toast = await app.tap("zhangsan", buttons(env.outbox()[0]["card"], app.secret)["已跟进"])
    assert toast.kind == "success"
    (tags,), = env.sql("SELECT tags FROM customers WHERE id=:i", i=cid)
    assert "休眠客户" not in (json.loads(tags) if isinstance(tags, str) else tags)

