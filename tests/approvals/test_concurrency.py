"""Racing taps: 50 at once on one step from many connections → exactly one decision."""

from __future__ import annotations

import asyncio
import random

from sqlalchemy.exc import OperationalError
from sqlmodel import select

from storage import approvals as sm
from storage.models import AuditLog
from tests.approvals.helpers import T0, actor, new_request, state


async def _tap(sf, org, rid, who, approve, barrier):
    await barrier.wait()
    for _ in range(5):  # SQLite may answer "busy" to a racer; the dispatcher retries too
        try:
            async with sf() as s:
                out = await sm.decide(s, rid, 1, actor(org, who), approve, T0,
                                      reason="" if approve else "价格过低",
                                      expected_approver=org["lijingli"])
                await s.commit()
                return out.code
        except OperationalError:
            await asyncio.sleep(random.random() / 20)
    return "gave_up"


async def test_fifty_concurrent_taps_one_decision(org, session_factory):
    sf = session_factory
    rid, _ = await new_request(sf, org, amount=86_000)
    # the approver (approve and reject mixed), a delegate, and outsiders, all at once
    async with sf() as s:
        mgr, lisi = await sm.get_user(s, org["lijingli"]), await sm.get_user(s, org["lisi"])
        await sm.set_delegation(s, mgr, lisi, T0.replace(year=2027), actor(org, "lijingli"), T0)
        await s.commit()
    who = (["lijingli"] * 30 + ["lisi"] * 10 + ["chenjingli"] * 5 + ["zhangsan"] * 5)
    random.Random(4).shuffle(who)
    barrier = asyncio.Barrier(len(who))
    codes = await asyncio.gather(*[_tap(sf, org, rid, w, i % 3 != 0, barrier)
                                   for i, w in enumerate(who)])
    assert codes.count("ok") == 1, codes
    assert "gave_up" not in codes
    assert codes.count("forbidden") == 5 and codes.count("own") == 5
    req, steps = await state(sf, rid)
    assert steps[0].state in ("approved", "rejected")
    assert steps[0].decided_by in (org["lijingli"], org["lisi"])
    if steps[0].state == "approved":
        assert req.state == "pending" and steps[1].state == "pending"
    else:
        assert req.state == "rejected" and steps[1].state == "skipped"
    async with sf() as s:
        rows = (await s.exec(select(AuditLog).where(AuditLog.entity_id == str(rid)))).all()
    decisions = [a for a in rows if a.action in ("approval.approved", "approval.rejected")]
    assert len(decisions) == 1
    assert len([a for a in rows if a.action in ("approval.stale_tap", "approval.refused")]) == 49
