from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import select

from config.rules import ApprovalRules
from storage import approvals as sm
from storage.models import AuditLog

T0 = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)  # Monday 09:00 Asia/Shanghai


def actor(org, key: str, platform: str = "wecom") -> sm.Actor:
    return sm.Actor(org[key], platform, f"{platform}:{key}")


async def new_request(sf, org, who: str = "zhangsan", kind: str = "quote",
                      amount: float = 86_000, pct: float | None = None,
                      rules: ApprovalRules | None = None, now: datetime = T0):
    async with sf() as s:
        u = await sm.get_user(s, org[who])
        req = await sm.create_draft(s, requester=u, kind=kind, amount=amount, discount_pct=pct,
                                    subject="华东精密", customer_id=org.customer_id,
                                    deal_id=org.deal_id, actor=actor(org, who), now=now)
        out = await sm.submit(s, req.id, actor(org, who), rules or ApprovalRules(), now)
        await s.commit()
    return req.id, out


async def tap(sf, org, rid: int, seq: int, who: str, approve: bool = True, now=T0,
              expected: int | None = None, reason: str = ""):
    async with sf() as s:
        out = await sm.decide(s, rid, seq, actor(org, who), approve, now, reason=reason,
                              shown={"seq": seq}, expected_approver=expected)
        await s.commit()
    return out


async def audits(sf, rid: int) -> list[AuditLog]:
    async with sf() as s:
        return list((await s.exec(select(AuditLog).where(
            AuditLog.entity == "approval_request", AuditLog.entity_id == str(rid))
            .order_by(AuditLog.id))).all())


async def state(sf, rid: int):
    async with sf() as s:
        return await sm.get_request(s, rid), await sm.get_steps(s, rid)
