"""Reminders and escalation with a frozen clock: working hours, quiet hours, exactly once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlmodel import col, select

from config import load_settings
from config.rules import load_rules
from jobs.approvals import scan
from storage.models import AuditLog, OutboxMessage
from tests.approvals.helpers import T0, new_request, state, tap

pytestmark = pytest.mark.dates  # expectations relative to today: see tests/conftest.py

SECRET = b"test-secret"


async def outbox(sf) -> list[OutboxMessage]:
    async with sf() as s:
        return list((await s.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)))).all())


def to_user(rows, key: str) -> list[OutboxMessage]:
    return [r for r in rows if r.target["id"] == key]


async def test_remind_then_escalate_in_working_hours(org, engine, session_factory, tmp_path):
    sf = session_factory
    settings = load_settings(data_dir=tmp_path)
    rid, _ = await new_request(sf, org, amount=10_000)  # Monday 09:00 → 李经理

    # 2 working hours: nothing yet
    assert (await scan(engine, settings, SECRET, T0 + timedelta(hours=2)))["outbox"] == 0
    # 14:00 (5 working hours): a reminder with the card, once, even with two schedulers
    t = T0 + timedelta(hours=5)
    a, b = await asyncio.gather(scan(engine, settings, SECRET, t),
                                scan(engine, settings, SECRET, t))
    assert a["reminded"] + b["reminded"] == 1
    rows = to_user(await outbox(sf), "lijingli")
    assert [r.message["kind"] for r in rows] == ["text", "card"]
    assert "提醒" in rows[0].message["text"]
    assert (await scan(engine, settings, SECRET, t + timedelta(minutes=30)))["reminded"] == 0

    # 23:00 the same day is quiet: nothing even though 9 working hours passed
    quiet = await scan(engine, settings, SECRET, T0 + timedelta(hours=14))
    assert quiet["skipped_quiet"] == 1 and quiet["outbox"] == 0

    # Tuesday 09:00 (9 working hours ≥ 8): escalated to the manager's manager
    t2 = T0 + timedelta(days=1)
    res = await scan(engine, settings, SECRET, t2)
    assert res["escalated"] == 1
    _, steps = await state(sf, rid)
    assert steps[0].approver_id == org["wangzong"] and steps[0].state == "pending"
    rows = await outbox(sf)
    assert [r.message["kind"] for r in to_user(rows, "wangzong")] == ["card"]
    assert any("转交" in r.message["text"] for r in to_user(rows, "zhangsan"))
    assert any("转交" in r.message["text"] for r in to_user(rows, "lijingli"))
    async with sf() as s:
        acts = (await s.exec(select(AuditLog.action).where(
            AuditLog.entity_id == str(rid)))).all()
    assert "approval.escalated" in acts and "approval.reminded" in acts

    # the old approver's card is stale now; the new approver decides
    assert (await tap(sf, org, rid, 1, "lijingli", expected=org["lijingli"])).code == "stale"
    assert (await tap(sf, org, rid, 1, "wangzong", expected=org["wangzong"])).ok
    assert (await scan(engine, settings, SECRET, t2 + timedelta(days=3)))["outbox"] == 0


async def test_escalation_prefers_a_delegate_and_is_bounded(org, engine, session_factory,
                                                           tmp_path):
    from storage import approvals as sm
    from tests.approvals.helpers import actor

    sf = session_factory
    settings = load_settings(data_dir=tmp_path, rules={"approvals": {"max_escalations": 1}})
    async with sf() as s:
        mgr, lisi = await sm.get_user(s, org["lijingli"]), await sm.get_user(s, org["lisi"])
        await sm.set_delegation(s, mgr, lisi, T0 + timedelta(days=30), actor(org, "lijingli"),
                                T0)
        await s.commit()
    rules = load_rules({"max_escalations": 1})  # the request keeps the rules it started with
    rid, _ = await new_request(sf, org, who="wangwu", amount=10_000, rules=rules)  # 陈经理
    await new_request(sf, org, amount=10_000, rules=rules)  # 李经理, delegated to 李四
    t = T0 + timedelta(days=1, hours=1)
    res = await scan(engine, settings, SECRET, t)
    assert res["escalated"] == 2
    async with sf() as s:
        pend = await sm.pending_for(s, org["lisi"], t)
        assert len(pend) == 1  # the east request now waits for the delegate
    _, steps = await state(sf, rid)
    assert steps[0].approver_id == org["wangzong"]  # south: 陈经理's manager
    # bounded: a second period does not escalate again
    res = await scan(engine, settings, SECRET, t + timedelta(days=2))
    assert res["escalated"] == 0
