"""Scheduled warnings: stale deals, overdue invoices, dormant customers, health score, digest.

Each ``run_<rule>(rc)`` scans with the indexed query (``storage.alert_models``), decides per
entity with the cooldown/snooze state (``should_alert``), groups what is left by destination
and writes **one card per destination per run** to the outbox, in the caller's transaction
(``jobs.runner.run_exclusive`` holds it, with the PostgreSQL advisory lock and the
``job_runs`` row). Outbox keys are ``alert:<rule>:<dest>:<local day>:<hash of the items>``:
re-running the same scan the same day produces the same key and the unique index drops it,
while new items the same day get a new key and are not lost. Every card names the day and
counts/days overdue, so no two warnings have identical content (DingTalk drops those).
"""

from __future__ import annotations

import hashlib
import logging
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, text, update
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from bot.event import OutMessage
from cards import KV, Button, Card, pack_action, unpack_action
from config.alert_rules import SEVERITY_RANK, AlertRules
from jobs.targets import MANAGER_ROLES, Org, dests_for
from storage.alert_models import OPEN_DEAL_SQL, UNPAID_SQL, AlertState, CustomerHealth
from storage.models import Customer, Deal, Invoice, OutboxMessage, Payment, Visit

log = logging.getLogger(__name__)

S = AlertState.__table__
OPEN_DEALS = text("deals." + OPEN_DEAL_SQL)
UNPAID = text("invoices." + UNPAID_SQL)
NUMS = "①②③④⑤⑥⑦⑧⑨⑩"
STAGE_NAMES = {"lead": "线索", "qualified": "已确认", "proposal": "方案", "negotiation": "谈判",
               "won": "赢单", "lost": "输单"}
FUNNEL = ["lead", "qualified", "proposal", "negotiation"]
MAX_BUTTONS = 6


@dataclass
class RunCtx:
    session: Any  # AsyncSession inside the run's transaction
    rules: AlertRules
    now: datetime
    secret: bytes
    dialect: str
    org: Org
    stats: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    on_demand: bool = False  # someone asked (``提醒``): every qualifying item, cooldown or not

    @property
    def day(self) -> str:
        return self.rules.local_day(self.now)

    @property
    def today(self) -> date:
        return self.now.astimezone(self.rules.tz).date()


@dataclass
class Item:
    rule: str
    kind: str  # deal | invoice | customer
    entity_id: int
    severity: str
    level: int
    value: float
    owner_id: int | None
    region: str
    line: str
    sort: float
    amount: float = 0


# -- decisions ------------------------------------------------------------------------------
def should_alert(now: datetime, level: int, state_level: int | None,
                 last_alerted_at: datetime | None, snoozed_until: datetime | None,
                 cooldown_days: int) -> bool:
    """Not while snoozed; then: first time, worse than last time, or the cooldown is over."""
    if snoozed_until is not None and _aware(snoozed_until) > now:
        return False
    if state_level is None or last_alerted_at is None:
        return True
    if level > state_level:
        return True
    return now - _aware(last_alerted_at) >= timedelta(days=cooldown_days)


def _aware(dt: datetime) -> datetime:
    from datetime import UTC

    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def money(x: float) -> str:
    return f"¥{x / 10000:.1f}万" if abs(x) >= 10000 else f"¥{x:,.0f}"


# -- stale deals ------------------------------------------------------------------------------
def stale_query(cutoff: datetime):
    return (select(Deal.id, Deal.title, Deal.stage, Deal.amount, Deal.owner_id,
                   Deal.last_activity_at, Customer.name, Customer.region, S.c.level,
                   S.c.last_alerted_at, S.c.snoozed_until)
            .select_from(Deal).join(Customer, Customer.id == Deal.customer_id)
            .outerjoin(S, and_(S.c.rule == "stale", S.c.entity_id == Deal.id))
            .where(OPEN_DEALS, Deal.last_activity_at <= cutoff))


async def scan_stale(rc: RunCtx) -> list[Item]:
    r = rc.rules.stale
    rows = (await rc.session.execute(stale_query(rc.now - timedelta(days=r.min_days)))).all()
    items = []
    for (did, title, stage, amount, owner, last, cname, region, s_level, s_last,
         s_snooze) in rows:
        days = int((rc.now - _aware(last)) / timedelta(days=1))
        th = r.thresholds(stage)
        if days < th.yellow_days:
            continue
        sev = "red" if days >= th.red_days else "yellow"
        level = SEVERITY_RANK[sev]
        if not should_alert(rc.now, level, s_level, s_last, s_snooze,
                            0 if rc.on_demand else r.cooldown_days):
            rc.stats["suppressed"] += 1
            continue
        dot = "🔴" if sev == "red" else "🟡"
        items.append(Item("stale", "deal", did, sev, level, days, owner, region or "",
                          f"{dot} {cname} · {title}（{STAGE_NAMES.get(stage, stage)}）"
                          f"{days} 天无进展 · {money(amount or 0)}",
                          sort=days + (10_000 if sev == "red" else 0), amount=amount or 0))
    return items


async def run_stale(rc: RunCtx) -> dict:
    items = await scan_stale(rc)
    await deliver(rc, "stale", items, stale_card)
    return dict(rc.stats)


def stale_card(rc: RunCtx, dest: str, items: list[Item]) -> Card:
    red = sum(1 for i in items if i.severity == "red")
    r = rc.rules.stale
    return _card(rc, dest, items,
                 title=f"商机停滞提醒 · {len(items)} 个",
                 color="red" if red else "orange",
                 fields=[KV(label=f"红色（≥{r.red_days}天）", value=str(red)),
                         KV(label=f"黄色（≥{r.yellow_days}天）",
                            value=str(len(items) - red)),
                         KV(label="最长", value=f"{int(max(i.value for i in items))} 天")],
                 footer="点「已跟进」记录跟进并重新计时；「延后 7 天」暂停提醒")


# -- overdue invoices -------------------------------------------------------------------------
def overdue_query(cutoff: date):
    return (select(Invoice.id, Invoice.number, Invoice.amount, Invoice.paid_amount,
                   Invoice.due_date, Customer.name, Customer.region,
                   func.coalesce(Deal.owner_id, Customer.owner_id), S.c.level,
                   S.c.last_alerted_at, S.c.snoozed_until)
            .select_from(Invoice).join(Customer, Customer.id == Invoice.customer_id)
            .outerjoin(Deal, Deal.id == Invoice.deal_id)
            .outerjoin(S, and_(S.c.rule == "overdue", S.c.entity_id == Invoice.id))
            .where(UNPAID, Invoice.due_date <= cutoff, Invoice.paid_amount < Invoice.amount))


async def scan_overdue(rc: RunCtx) -> list[Item]:
    r = rc.rules.overdue
    today = rc.today
    rows = (await rc.session.execute(
        overdue_query(today - timedelta(days=r.ladder[0])))).all()
    items = []
    for (iid, number, amount, paid, due, cname, region, owner, s_level, s_last,
         s_snooze) in rows:
        days = (today - due).days
        rung = r.rung(days)
        if rung == 0:
            continue
        sev = "red" if rung >= r.red_from else "yellow"
        if not should_alert(rc.now, rung, s_level, s_last, s_snooze,
                            0 if rc.on_demand else r.cooldown_days):
            rc.stats["suppressed"] += 1
            continue
        outstanding = float(amount) - float(paid or 0)
        dot = "🔴" if sev == "red" else "🟡"
        items.append(Item("overdue", "invoice", iid, sev, rung, days, owner, region or "",
                          f"{dot} {cname} · 发票 {number or iid} 逾期 {days} 天，"
                          f"未收 {money(outstanding)}（共 {money(float(amount))}）",
                          sort=outstanding + days * 1e9 * (sev == "red"),
                          amount=outstanding))
    return items


async def run_overdue(rc: RunCtx) -> dict:
    items = await scan_overdue(rc)
    await deliver(rc, "overdue", items, overdue_card)
    return dict(rc.stats)


def overdue_card(rc: RunCtx, dest: str, items: list[Item]) -> Card:
    total = sum(i.amount for i in items)
    return _card(rc, dest, items, title=f"逾期回款提醒 · {len(items)} 笔 · 未收 {money(total)}",
                 color="red" if any(i.severity == "red" for i in items) else "orange",
                 fields=[KV(label="未收合计", value=money(total)),
                         KV(label="最长逾期", value=f"{int(max(i.value for i in items))} 天")],
                 footer="阶梯：" + " / ".join(f"{d} 天" for d in rc.rules.overdue.ladder)
                 + "；点「催款」记录催收并通知财务")


# -- dormant customers ------------------------------------------------------------------------
async def run_dormant(rc: RunCtx) -> dict:
    r = rc.rules.dormant
    cutoff = rc.now - timedelta(days=r.days)
    session = rc.session
    # returning customers first: untag those with activity after the cutoff
    back = (await session.execute(
        select(Customer.id, Customer.tags).join(S, and_(S.c.rule == "dormant",
                                                        S.c.entity_id == Customer.id))
        .where(S.c.active.is_(True), Customer.last_activity_at > cutoff))).all()
    for cid, tags in back:
        await session.execute(update(Customer).where(Customer.id == cid).values(
            tags=[t for t in (tags or []) if t != r.tag]))
    for ids in _chunks([b[0] for b in back]):
        await session.execute(update(AlertState).where(
            AlertState.rule == "dormant", AlertState.entity_id.in_(ids))
            .values(active=False, level=0, updated_at=rc.now))
    rc.stats["untagged"] = len(back)

    rows = (await session.execute(
        select(Customer.id, Customer.name, Customer.owner_id, Customer.region, Customer.tags,
               Customer.last_activity_at, Customer.created_at, S.c.snoozed_until)
        .outerjoin(S, and_(S.c.rule == "dormant", S.c.entity_id == Customer.id))
        .where(or_(Customer.last_activity_at <= cutoff,
                   and_(Customer.last_activity_at.is_(None), Customer.created_at <= cutoff)),
               or_(S.c.active.is_(None), S.c.active.is_(False))))).all()
    items, tagged = [], []
    for cid, name, owner, region, tags, last, created, snooze in rows:
        since = _aware(last or created)
        days = int((rc.now - since) / timedelta(days=1))
        tags = list(tags or [])
        if r.tag not in tags:
            await session.execute(update(Customer).where(Customer.id == cid).values(
                tags=tags + [r.tag]))
        tagged.append(cid)
        if snooze is not None and _aware(snooze) > rc.now:
            continue
        items.append(Item("dormant", "customer", cid, "yellow", 1, days, owner, region or "",
                          f"😴 {name} 已 {days} 天无互动，已标记「{r.tag}」", sort=days))
    rc.stats["tagged"] = len(tagged)
    await _upsert_state(rc, "dormant", [(cid, 1, 0.0, None) for cid in tagged], active=True)
    await deliver(rc, "dormant", items, _dormant_card, mark=False)
    return dict(rc.stats)


def _dormant_card(rc: RunCtx, dest: str, items: list[Item]) -> Card:
    return _card(rc, dest, items, title=f"休眠客户提醒 · {len(items)} 个", color="grey",
                 fields=[KV(label="规则", value=f"{rc.rules.dormant.days} 天无互动")],
                 footer="有新的拜访或跟进后自动取消「休眠客户」标签")


# -- health score -----------------------------------------------------------------------------
COMPONENT_NAMES = {"volume": "交易规模", "timeliness": "付款及时性", "response": "响应速度",
                   "stability": "需求稳定性", "strategic": "战略评级"}


def health_score(rules: AlertRules, *, won_12m: float, invoices_due: int, on_time: int,
                 days_since_activity: int | None, months_active: int, monthly_cv: float | None,
                 strategic_rating: int) -> tuple[float, dict[str, dict]]:
    """Weighted score 0–100 and each component with its inputs (explainable)."""
    h = rules.health
    comp: dict[str, dict] = {}
    comp["volume"] = {"score": min(100.0, 100.0 * won_12m / h.volume_full_score),
                      "why": f"近12个月赢单 {money(won_12m)}"}
    comp["timeliness"] = {"score": 100.0 * on_time / invoices_due if invoices_due else 100.0,
                          "why": f"{on_time}/{invoices_due} 张发票按期付款"}
    if days_since_activity is None:
        resp = 0.0
    else:
        span = max(1, h.response_zero_days - h.response_full_days)
        resp = 100.0 * min(1.0, max(0.0, (h.response_zero_days - days_since_activity) / span))
    comp["response"] = {"score": resp, "why": (f"{days_since_activity} 天前最近互动"
                                               if days_since_activity is not None
                                               else "无互动记录")}
    cv_penalty = min(1.0, monthly_cv) if monthly_cv is not None else 1.0
    comp["stability"] = {"score": 100.0 * months_active / 12 * (1 - 0.5 * cv_penalty),
                         "why": f"12个月中 {months_active} 个月有需求"}
    comp["strategic"] = {"score": max(0.0, min(100.0, strategic_rating * 20.0)),
                         "why": f"战略评级 {strategic_rating}/5"}
    total_w = sum(h.weights.values())
    score = sum(comp[k]["score"] * h.weights.get(k, 0) for k in comp) / total_w
    for k in comp:
        comp[k]["score"] = round(comp[k]["score"], 1)
        comp[k]["weight"] = h.weights.get(k, 0)
    return round(score, 1), comp


async def run_health(rc: RunCtx) -> dict:
    session, now, today = rc.session, rc.now, rc.today
    year_ago = now - timedelta(days=365)
    won = dict((await session.execute(
        select(Deal.customer_id, func.sum(Deal.amount)).where(
            Deal.stage == "won", Deal.last_activity_at >= year_ago)
        .group_by(Deal.customer_id))).all())
    inv: dict[int, list] = defaultdict(list)
    for cid, due, amount, paid_at in (await session.execute(
            select(Invoice.customer_id, Invoice.due_date, Invoice.amount, Invoice.paid_at)
            .where(Invoice.due_date >= today - timedelta(days=365),
                   Invoice.due_date <= today))).all():
        inv[cid].append((due, amount, paid_at))
    prev = {c: (s, g) for c, s, g in (await session.execute(
        select(CustomerHealth.customer_id, CustomerHealth.score, CustomerHealth.grade))).all()}
    customers = (await session.execute(
        select(Customer.id, Customer.name, Customer.owner_id, Customer.region,
               Customer.strategic_rating, Customer.last_activity_at)
        .where(Customer.owner_id.is_not(None)))).all()
    items, upserts = [], []
    for cid, name, owner, region, rating, last in customers:
        rows = inv.get(cid, [])
        on_time = sum(1 for due, _a, paid in rows
                      if paid is not None and _aware(paid).astimezone(rc.rules.tz).date() <= due)
        months: dict[tuple, float] = defaultdict(float)
        for due, amount, _p in rows:
            months[(due.year, due.month)] += float(amount)
        cv = (statistics.pstdev(months.values()) / statistics.mean(months.values())
              if len(months) >= 2 else None)
        score, comp = health_score(
            rc.rules, won_12m=float(won.get(cid) or 0), invoices_due=len(rows), on_time=on_time,
            days_since_activity=(int((now - _aware(last)) / timedelta(days=1))
                                 if last else None),
            months_active=len(months), monthly_cv=cv, strategic_rating=rating or 0)
        grade = rc.rules.health.grade(score)
        upserts.append({"customer_id": cid, "score": score, "grade": grade,
                        "components": comp, "computed_at": now})
        old = prev.get(cid)
        if old is not None and old[0] >= rc.rules.health.alert_below > score:
            worst = min(comp, key=lambda k: comp[k]["score"] * comp[k]["weight"]
                        - 100 * comp[k]["weight"])
            items.append(Item("health", "customer", cid, "yellow", 1, score, owner, region or "",
                              f"📉 {name} 健康度 {old[0]:.0f}→{score:.0f}（{grade}级）；"
                              f"主要失分：{COMPONENT_NAMES[worst]}（{comp[worst]['why']}）",
                              sort=old[0] - score))
    if upserts:
        ins = _insert(rc.dialect, CustomerHealth.__table__)
        stmt = ins.on_conflict_do_update(
            index_elements=["customer_id"],
            set_={k: ins.excluded[k] for k in ("score", "grade", "components", "computed_at")})
        await session.execute(stmt, upserts)
    rc.stats["scored"] = len(upserts)
    await deliver(rc, "health", items, _health_card, mark=False)
    return dict(rc.stats)


def _health_card(rc: RunCtx, dest: str, items: list[Item]) -> Card:
    h = rc.rules.health
    return _card(rc, dest, items, title=f"客户健康度下降 · {len(items)} 个", color="orange",
                 fields=[KV(label="预警线", value=f"{h.alert_below:.0f} 分")],
                 footer=f"A ≥ {h.grade_a:.0f}，B ≥ {h.grade_b:.0f}，C 以下")


# -- daily digest -----------------------------------------------------------------------------
async def build_digest(rc: RunCtx, manager_id: int) -> Card | None:
    """The team's funnel, conversion, new and stale deals, collections and per-rep output."""
    org, session, now = rc.org, rc.session, rc.now
    team = [manager_id] + org.reports_of(manager_id)
    if len(team) == 1:
        return None
    day_ago, month_ago = now - timedelta(days=1), now - timedelta(days=30)
    today = rc.today
    month_start = today.replace(day=1)
    owner_in = Deal.owner_id.in_(team)
    funnel = {s: (n, a or 0) for s, n, a in (await session.execute(
        select(Deal.stage, func.count(), func.sum(Deal.amount)).where(owner_in, OPEN_DEALS)
        .group_by(Deal.stage))).all()}
    closed = {s: n for s, n in (await session.execute(
        select(Deal.stage, func.count()).where(owner_in, Deal.stage.in_(["won", "lost"]),
                                               Deal.last_activity_at >= month_ago)
        .group_by(Deal.stage))).all()}
    new_n, new_amt = (await session.execute(
        select(func.count(), func.sum(Deal.amount)).where(owner_in,
                                                          Deal.created_at >= day_ago))).one()
    stale_cut = now - timedelta(days=rc.rules.stale.yellow_days)
    red_cut = now - timedelta(days=rc.rules.stale.red_days)
    stale_n, red_n = (await session.execute(
        select(func.count(), func.sum(case((Deal.last_activity_at <= red_cut, 1), else_=0)))
        .where(owner_in, OPEN_DEALS, Deal.last_activity_at <= stale_cut))).one()
    inv_owner = func.coalesce(Deal.owner_id, Customer.owner_id)
    base = (select().select_from(Invoice).join(Customer, Customer.id == Invoice.customer_id)
            .outerjoin(Deal, Deal.id == Invoice.deal_id).where(inv_owner.in_(team)))
    due_m, paid_m = (await session.execute(base.add_columns(
        func.sum(Invoice.amount), func.sum(Invoice.paid_amount)).where(
        Invoice.due_date >= month_start, Invoice.due_date <= today))).one()
    overdue_amt, overdue_n = (await session.execute(base.add_columns(
        func.sum(Invoice.amount - Invoice.paid_amount), func.count()).where(
        UNPAID, Invoice.due_date < today, Invoice.paid_amount < Invoice.amount))).one()
    received = (await session.execute(
        select(func.sum(Payment.amount)).select_from(Payment)
        .join(Invoice, Invoice.id == Payment.invoice_id)
        .join(Customer, Customer.id == Invoice.customer_id)
        .outerjoin(Deal, Deal.id == Invoice.deal_id)
        .where(inv_owner.in_(team), Payment.paid_at >= datetime.combine(
            month_start, datetime.min.time(), tzinfo=rc.rules.tz)))).scalar()
    received = float(received if received is not None else (paid_m or 0))
    visits = dict((await session.execute(
        select(Visit.user_id, func.count()).where(Visit.user_id.in_(team),
                                                  Visit.created_at >= day_ago)
        .group_by(Visit.user_id))).all())
    new_by = dict((await session.execute(
        select(Deal.owner_id, func.count()).where(owner_in, Deal.created_at >= day_ago)
        .group_by(Deal.owner_id))).all())
    won_by = dict((await session.execute(
        select(Deal.owner_id, func.sum(Deal.amount)).where(
            owner_in, Deal.stage == "won", Deal.last_activity_at >= month_ago)
        .group_by(Deal.owner_id))).all())
    stale_by = dict((await session.execute(
        select(Deal.owner_id, func.count()).where(owner_in, OPEN_DEALS,
                                                  Deal.last_activity_at <= stale_cut)
        .group_by(Deal.owner_id))).all())

    top = max([n for n, _a in funnel.values()] or [1])
    lines = ["**漏斗（在途）**"]
    for s in FUNNEL + sorted(set(funnel) - set(FUNNEL)):
        n, a = funnel.get(s, (0, 0))
        bar = "█" * max(0, round(10 * n / top)) if n else "·"
        lines.append(f"{STAGE_NAMES.get(s, s)} {bar} {n} · {money(float(a))}")
    won_n, lost_n = closed.get("won", 0), closed.get("lost", 0)
    conv = f"{100 * won_n / (won_n + lost_n):.0f}%" if won_n + lost_n else "—"
    lines.append(f"近30天 赢单 {won_n} / 输单 {lost_n}，转化率 {conv}")
    lines.append("**个人产出（24小时拜访 / 新商机 / 30天赢单 / 停滞）**")
    for uid in team:
        u = org.users.get(uid)
        if u is None:
            continue
        lines.append(f"{u.name}：{visits.get(uid, 0)} / {new_by.get(uid, 0)} / "
                     f"{money(float(won_by.get(uid) or 0))} / {stale_by.get(uid, 0)}")
    due_m = float(due_m or 0)
    rate = f"{100 * received / due_m:.0f}%" if due_m else "—"
    return Card(
        title=f"团队日报 · {rc.day}", subtitle=org.users[manager_id].name, color="blue",
        fields=[KV(label="新增商机", value=f"{new_n} 个 · {money(float(new_amt or 0))}"),
                KV(label="停滞商机", value=f"{stale_n} 个（红 {int(red_n or 0)}）"),
                KV(label="本月应收", value=money(due_m)),
                KV(label="本月已回款", value=money(received)),
                KV(label="逾期未收", value=f"{money(float(overdue_amt or 0))}（{overdue_n} 笔）"),
                KV(label="回款率", value=rate)],
        text="\n".join(lines[:40]), footer=f"{len(team)} 人 · 每日 {rc.rules.digest.time}",
        card_id=_short(f"digest:{manager_id}:{rc.day}"))


async def run_digest(rc: RunCtx) -> dict:
    rows = []
    for mid in rc.org.managers():
        team = rc.org.teams.get(rc.org.users[mid].team_id or -1)
        managed = [t for t in rc.org.teams.values() if t.manager_id == mid]
        chat_team = managed[0] if managed else team
        recips = rc.rules.recipients("digest", "info", chat_team.id if chat_team else None,
                                     chat_team.region if chat_team else "")
        dests = []
        for r in recips:
            if r in ("manager", "owner"):
                dests.append(f"user:{mid}")
            elif r == "team_chat" and chat_team is not None and chat_team.chat_id:
                dests.append(f"chat:{chat_team.chat_id}")
        if not dests:
            continue
        card = await build_digest(rc, mid)
        if card is None:
            continue
        for dest in dict.fromkeys(dests):
            target = rc.org.dest_target(dest)
            if target is None:
                rc.stats["unroutable"] += 1
                continue
            rows.append(_outbox_row(rc, f"alert:digest:{dest}:m{mid}:{rc.day}", target, card,
                                    rc.rules.quiet_until(rc.now, "info") or rc.now))
    rc.stats["digests"] = await _enqueue(rc, rows)
    return dict(rc.stats)


# -- delivery -------------------------------------------------------------------------------
def _short(s: str) -> str:
    return hashlib.sha1(s.encode()).hexdigest()[:20]  # noqa: S324 - an id, not security


def _card(rc: RunCtx, dest: str, items: list[Item], *, title: str, color: str,
          fields: list[KV], footer: str) -> Card:
    n_max = rc.rules.max_items_per_card
    shown = items[:n_max]
    numbered = len(items) > 1
    lines = [(NUMS[i] + " " if numbered and i < len(NUMS) else "") + it.line
             for i, it in enumerate(shown)]
    if len(items) > n_max:
        lines.append(f"…另有 {len(items) - n_max} 项")
    dest_user = rc.org.users.get(int(dest[5:])) if dest.startswith("user:") else None
    is_manager = dest_user is not None and dest_user.role in MANAGER_ROLES
    buttons: list[Button] = []
    for i, it in enumerate(shown):
        prefix = NUMS[i] if numbered else ""
        acts = [("已跟进", "alert.done", "primary")]
        if it.rule == "overdue":
            acts.append(("催款", "alert.chase", "danger"))
        acts.append(("延后7天", "alert.snooze", "default"))
        if is_manager and it.kind in ("deal", "customer"):
            acts.append(("转给…", "alert.reassign", "default"))
        if len(buttons) + len(acts) > MAX_BUTTONS:
            break
        for label, name, style in acts:
            buttons.append(Button(text=prefix + label, style=style,
                                  action=pack_action(rc.secret, name, r=it.rule, k=it.kind,
                                                     e=it.entity_id)))
    return Card(title=title, subtitle=rc.day, color=color, fields=fields,
                text="\n".join(lines), buttons=buttons, footer=footer)


def bind_card(card: Card, card_id: str, secret: bytes) -> Card:
    """The card with its id, and each button's signed action naming it (``c``): a tap then
    finds the card's current state (its latest outbox row) to redraw it in place."""
    buttons = []
    for b in card.buttons:
        a = unpack_action(secret, b.action)
        buttons.append(b.model_copy(update={"action": pack_action(secret, a.name,
                                                                  **{**a.args, "c": card_id})}))
    return card.model_copy(update={"card_id": card_id, "buttons": buttons})


def _outbox_row(rc: RunCtx, key: str, target, card: Card, next_at: datetime) -> dict:
    card = bind_card(card, card.card_id or _short(key), rc.secret)
    return {"idem_key": key, "platform": target.platform, "target": target.model_dump(mode="json"),
            "message": OutMessage(kind="card", card=card.model_dump(mode="json"))
            .model_dump(mode="json"),
            "status": "pending", "attempts": 0, "next_at": next_at, "claimed_until": None,
            "last_error": "", "result": {}, "created_at": rc.now, "sent_at": None}


async def deliver(rc: RunCtx, rule: str, items: list[Item], build, mark: bool = True) -> int:
    """Group by destination, one card each, into the outbox; record what was alerted."""
    by_dest: dict[str, list[Item]] = defaultdict(list)
    routed: dict[int, Item] = {}
    for it in items:
        team = rc.org.team_of(it.owner_id)
        recips = rc.rules.recipients(rule, it.severity, team.id if team else None,
                                     it.region or (team.region if team else ""))
        for dest in dests_for(rc.org, recips, it.owner_id):
            if rc.org.dest_target(dest) is None:
                rc.stats["unroutable"] += 1
                continue
            by_dest[dest].append(it)
            routed[it.entity_id] = it
    rows = []
    for dest, its in sorted(by_dest.items()):
        its.sort(key=lambda i: (-i.sort, i.entity_id))
        h = _short(",".join(f"{i.entity_id}/{i.level}" for i in sorted(
            its, key=lambda i: i.entity_id)))
        worst = max(its, key=lambda i: SEVERITY_RANK[i.severity]).severity
        rows.append(_outbox_row(rc, f"alert:{rule}:{dest}:{rc.day}:{h}",
                                rc.org.dest_target(dest), build(rc, dest, its),
                                rc.rules.quiet_until(rc.now, worst) or rc.now))
    rc.stats["alerts"] += len(routed)
    rc.stats["cards"] += await _enqueue(rc, rows)
    if mark:
        await _upsert_state(rc, rule, [(i.entity_id, i.level, float(i.value), rc.now)
                                       for i in routed.values()], active=True)
    elif routed:  # the job keeps its own state (dormant, health): stamp when we told
        missing = set(routed)
        for ids in _chunks(list(routed)):
            await rc.session.execute(update(AlertState).where(
                AlertState.rule == rule, AlertState.entity_id.in_(ids))
                .values(last_alerted_at=rc.now))
            missing -= set((await rc.session.execute(select(AlertState.entity_id).where(
                AlertState.rule == rule, AlertState.entity_id.in_(ids)))).scalars())
        await _upsert_state(rc, rule, [(e, routed[e].level, float(routed[e].value), rc.now)
                                       for e in sorted(missing)], active=False)
    return len(rows)


def _chunks(ids: list, n: int = 500):
    for i in range(0, len(ids), n):
        yield ids[i:i + n]


def _insert(dialect: str, table):
    return (pg_dialect.insert if dialect == "postgresql" else sqlite_dialect.insert)(table)


async def _enqueue(rc: RunCtx, rows: list[dict]) -> int:
    if not rows:
        return 0
    stmt = _insert(rc.dialect, OutboxMessage.__table__).on_conflict_do_nothing(
        index_elements=["idem_key"])
    n = 0
    for row in rows:  # one by one: rowcount tells what was new
        res = await rc.session.execute(stmt, row)
        n += max(0, res.rowcount or 0)
    return n


async def _upsert_state(rc: RunCtx, rule: str, entries: list[tuple], active: bool) -> None:
    """entries: (entity_id, level, value, last_alerted_at)."""
    if not entries:
        return
    ins = _insert(rc.dialect, S)
    stmt = ins.on_conflict_do_update(
        index_elements=["rule", "entity_id"],
        set_={"level": ins.excluded.level, "value": ins.excluded.value,
              "active": ins.excluded.active, "updated_at": ins.excluded.updated_at,
              "last_alerted_at": func.coalesce(ins.excluded.last_alerted_at,
                                               S.c.last_alerted_at)})
    rows = [{"rule": rule, "entity_id": e, "level": lv, "value": v, "active": active,
             "last_alerted_at": at, "snoozed_until": None, "updated_at": rc.now}
            for e, lv, v, at in entries]
    for i in range(0, len(rows), 1000):
        await rc.session.execute(stmt, rows[i:i + 1000])


# the forecast jobs (issue 17 §5) live in jobs.forecast_card, which builds on this module:
# imported when they run, not at import time
async def run_forecast(rc: RunCtx) -> dict:
    from jobs.forecast_card import run_forecast as run

    return await run(rc)


async def run_close_dates(rc: RunCtx) -> dict:
    from jobs.forecast_card import run_close_dates as run

    return await run(rc)


JOBS = {"stale": run_stale, "overdue": run_overdue, "dormant": run_dormant,
        "health": run_health, "digest": run_digest, "forecast": run_forecast,
        "close_dates": run_close_dates}
