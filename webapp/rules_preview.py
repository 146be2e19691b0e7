"""Dry-run of edited (unsaved) rules: what the real jobs would do now, and where sample
approval requests would go — next to what the current rules do.

The alert scans are the jobs' own code (``jobs.alerts``) on a ``RunCtx`` over the live
database. ``scan_stale``/``scan_overdue`` only read; the dormant and health jobs write (tags,
alert state, scores, outbox rows), so each run happens inside a transaction that is always
rolled back: nothing is delivered and no state changes, whatever the rules say.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession as SAAsyncSession

from config.alert_rules import AlertRules
from config.rules import ApprovalRules
from jobs.alerts import RunCtx, run_dormant, run_health, scan_overdue, scan_stale
from jobs.targets import load_org
from storage import approvals as sm
from storage.alert_models import AlertState, CustomerHealth
from storage.models import Customer, User

SHOW = 8  # first items listed per alert type
SAMPLES: tuple[tuple[str, str, float, float | None], ...] = (
    ("报价 ¥30,000", "quote", 30_000, None),
    ("报价 ¥86,000", "quote", 86_000, None),
    ("报价 ¥200,000", "quote", 200_000, None),
    ("折扣 10%（¥100,000）", "discount", 100_000, 10),
    ("折扣 20%（¥100,000）", "discount", 100_000, 20),
    ("合同 ¥200,000", "contract", 200_000, None),
)
ALERT_NAMES = {"stale": "停滞商机 stale", "overdue": "逾期回款 overdue",
               "dormant": "休眠客户 dormant", "health": "健康度下降 health"}


@dataclass
class Scan:
    counts: dict[str, int] = field(default_factory=dict)
    items: dict[str, list[str]] = field(default_factory=dict)
    grades: dict[str, int] = field(default_factory=dict)


async def scan_all(engine, rules: AlertRules, now: datetime, secret: bytes) -> Scan:
    """The four scans under ``rules``; the transaction is rolled back whatever happens."""
    out = Scan()
    async with SAAsyncSession(engine, expire_on_commit=False) as session:
        try:
            org = await load_org(session)
            rc = RunCtx(session=session, rules=rules, now=now, secret=secret,
                        dialect=engine.dialect.name, org=org)
            for name, scan in (("stale", scan_stale), ("overdue", scan_overdue)):
                items = await scan(rc)
                items.sort(key=lambda i: (-i.sort, i.entity_id))
                out.counts[name] = len(items)
                out.items[name] = [i.line for i in items[:SHOW]]
            stats = await run_dormant(rc)
            out.counts["dormant"] = int(stats.get("tagged", 0))
            rows = (await session.execute(
                select(Customer.name).join(AlertState, AlertState.entity_id == Customer.id)
                .where(AlertState.rule == "dormant", AlertState.active.is_(True),
                       AlertState.updated_at == now).order_by(Customer.name)
                .limit(SHOW))).scalars().all()
            out.items["dormant"] = [f"😴 {n}" for n in rows]
            rc.stats.clear()
            stats = await run_health(rc)
            out.counts["health"] = int(stats.get("alerts", 0))
            out.grades = dict(Counter((await session.execute(
                select(CustomerHealth.grade))).scalars().all()))
            out.items["health"] = []
        finally:
            await session.rollback()
    return out


async def alert_preview(engine, current: AlertRules, candidate: AlertRules, now: datetime,
                        secret: bytes) -> dict[str, Any]:
    cur = await scan_all(engine, current, now, secret)
    new = await scan_all(engine, candidate, now, secret)
    rows = [{"rule": k, "name": label, "before": cur.counts.get(k, 0),
             "after": new.counts.get(k, 0), "items": new.items.get(k, []),
             "changed": cur.counts.get(k, 0) != new.counts.get(k, 0)}
            for k, label in ALERT_NAMES.items()]
    grades = [{"grade": g, "before": cur.grades.get(g, 0), "after": new.grades.get(g, 0)}
              for g in ("A", "B", "C")]
    return {"kind": "alerts", "rows": rows, "grades": grades}


async def approval_preview(session, current: ApprovalRules, candidate: ApprovalRules,
                           requester: User) -> dict[str, Any]:
    """For each sample request: the roles each rule set picks and who those people are."""
    people: dict[int, User] = {}

    async def names(roles: list[str]) -> list[str]:
        chain = await sm.resolve_chain(session, requester, roles)
        ids = [uid for _r, uid in chain if uid is not None and uid not in people]
        people.update(await sm.users_by_id(session, ids))
        return [f"{people[uid].name}（{role}）" if uid in people else f"无人（{role}）"
                for role, uid in chain]

    rows = []
    for label, kind, amount, pct in SAMPLES:
        before = await names(current.chain_for(kind, amount, pct))
        after = await names(candidate.chain_for(kind, amount, pct))
        rows.append({"label": label, "before": before, "after": after,
                     "changed": before != after})
    return {"kind": "approvals", "rows": rows, "requester": requester.name}
