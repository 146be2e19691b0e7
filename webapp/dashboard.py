"""Manager dashboard: funnel by stage with conversion, collections, stale deals, per-rep output,
customer health grades; server-drawn SVG charts, filters by team and period, drill-down.

Who: managers (their teams), VPs and admins (everyone). Finance is not let in: its view of
collections is company-wide and belongs to its own pages; a rep or finance gets 403.
Every bar links to ``/app/dashboard/list?metric=…&value=…&team=…&from=…&to=…``, the rows behind
it, checked against the same scope (another team's id → 403, a malformed filter → 400).
The numbers come from ``webapp.metrics`` (SQL aggregates); this module only reads the filters,
builds the charts and renders.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import and_, func, or_
from sqlmodel import select

from config.alert_rules import AlertRules
from jobs.alerts import STAGE_NAMES
from sales import checkin_report
from sales.checkin import DEFAULT_RADIUS_M, check_in_at
from storage.alert_models import CustomerHealth
from storage.models import Customer, Deal, Invoice, User, Visit
from webapp import dashboard_forecast, dashboard_targets
from webapp import metrics as m
from webapp.auth import require
from webapp.charts import Bar, bar_chart
from webapp.core import MANAGERS, current_user, web_ctx
from webapp.render import error_page, money, render
from webapp.rep_capture import radius_m

routes = web.RouteTableDef()
LIST_LIMIT = 500  # rows shown on a drill-down page (the total is always counted)
STAGE_LABELS = {s: f"{STAGE_NAMES.get(s, s)} {s}" for s in m.ALL_STAGES}


@dataclass
class Filters:
    user: User
    rules: AlertRules
    now: datetime
    today: date
    period: m.Period
    scope: m.Scope
    radius: float = DEFAULT_RADIUS_M  # the check-in radius (FIELDBOT_CHECKIN_RADIUS_M)

    def query(self, **extra: str) -> str:
        q = dict(extra)
        q.update(self.scope.query())
        if self.period.key != "custom":
            q["period"] = self.period.key
        q.update(self.period.query())
        return urlencode(q)

    def link(self, metric: str, value: object = "") -> str:
        return "/app/dashboard/list?" + self.query(metric=metric, value=str(value))

    @property
    def back(self) -> str:
        return "/app/dashboard?" + self.query()


async def read_filters(request: web.Request, db) -> Filters:
    ctx = web_ctx(request)
    user = current_user(request)
    rules = await m.load_rules(db, ctx.settings)
    now = datetime.now(UTC)
    today = now.astimezone(rules.tz).date()
    period = m.parse_period(request.query, today, rules.tz)
    scope = await m.resolve_scope(db, user, request.query.get("team"))
    return Filters(user, rules, now, today, period, scope, radius_m(ctx.settings))


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


# -- the dashboard ----------------------------------------------------------------------------
@routes.get("/app/dashboard")
@require(*MANAGERS)
async def dashboard(request: web.Request) -> web.StreamResponse:
    async with web_ctx(request).session() as db:
        try:
            f = await read_filters(request, db)
        except m.FilterError as e:
            return error_page(request, e.status, e.message)
        funnel = await m.funnel(db, f.scope, f.period)
        coll = await m.collections(db, f.scope, f.period, f.today, f.rules)
        stale = await m.stale(db, f.scope, f.rules, f.now)
        reps = await m.per_rep(db, f.scope, f.period, f.rules, f.now, coll.received_source)
        grades = await m.grades(db, f.scope)
        checkins = await checkin_report.checkins(db, f.scope.owners, f.period.t0,
                                                 f.period.t1, f.radius)
        targets = await dashboard_targets.panel(db, f.scope.owners, f.scope.team_id, f.today,
                                                f.rules.tz, f.now, f.period.t0, f.period.t1)
        forecast = await dashboard_forecast.panel(
            db, f.scope.owners, f.scope.team_id, {t.id: t.name for t in f.scope.teams},
            f.today, f.rules.tz)
    charts = {
        "funnel": bar_chart(
            [Bar(STAGE_LABELS.get(r.stage, r.stage), r.count,
                 f"{r.count} · {money(r.amount)}", f.link("stage", r.stage),
                 "ok" if r.stage == "won" else "bad" if r.stage == "lost" else "")
             for r in funnel.rows],
            "销售漏斗 Funnel by stage", "每个阶段的商机数与金额 / deals and amount per stage"),
        "collections": bar_chart(
            [Bar("应收 Due", coll.due, money(coll.due), f.link("due")),
             Bar("已回款 Received", coll.received, money(coll.received), f.link("due"), "ok"),
             Bar("逾期未收 Overdue", coll.overdue, money(coll.overdue), f.link("overdue"),
                 "bad")],
            "回款 Collections", "期间内应收、已回款与当前逾期未收金额"),
        "overdue": bar_chart(
            [Bar(f"逾期 ≥{d} 天", n, f"{n} 笔 · {money(a)}", f.link("overdue", d),
                 "bad" if d >= f.rules.overdue.red_from else "warn")
             for d, n, a in coll.buckets],
            "逾期账龄 Overdue by age", "按提醒阶梯分组的逾期发票数与未收金额"),
        "stale": bar_chart(
            [Bar("黄色 Yellow", stale.yellow, f"{stale.yellow} 个", f.link("stale", "yellow"),
                 "warn"),
             Bar("红色 Red", stale.red, f"{stale.red} 个", f.link("stale", "red"), "bad")],
            "停滞商机 Stale deals", "按停滞程度的在途商机数"),
        "reps": bar_chart(
            [Bar(r.name, r.won_amount, f"{r.won} 单 · {money(r.won_amount)}",
                 f.link("rep", r.user_id), "ok") for r in reps],
            "个人赢单 Won per rep", "期间内每人赢单数与金额"),
        "grades": bar_chart(
            [Bar(f"{g} 级", grades.counts.get(g, 0), f"{grades.counts.get(g, 0)} 个",
                 f.link("grade", g), g) for g in m.GRADES],
            "客户健康度 Customer health", "A/B/C 各级客户数"),
    }
    return render(request, "dashboard.html", f=f, funnel=funnel, coll=coll, stale=stale,
                  reps=reps, grades=grades, charts=charts, periods=m.PERIODS, pct=_pct,
                  stage_labels=STAGE_LABELS, targets=targets, forecast=forecast,
                  checkins=checkins,
                  fpct=dashboard_forecast.pct)


# -- drill-down -------------------------------------------------------------------------------
@dataclass
class Section:
    kind: str  # deals | invoices | customers | visits
    title: str
    rows: list
    total: int


def _deals_q(*where):
    cols = (Deal.id, Deal.title, Deal.stage, Deal.amount, Deal.last_activity_at,
            Deal.created_at, Customer.id, Customer.name, Deal.owner_id, User.name)
    return (select(*cols).select_from(Deal).join(Customer, Customer.id == Deal.customer_id)
            .outerjoin(User, User.id == Deal.owner_id).where(*where))


async def _deals(db, f: Filters, title: str, *where) -> Section:
    total = (await db.exec(select(func.count()).select_from(Deal).where(*where))).one()
    rows = []
    for (did, t, stage, amount, last, created, cid, cname, oid, oname) in (await db.exec(
            _deals_q(*where).order_by(Deal.last_activity_at, Deal.id)
            .limit(LIST_LIMIT))).all():
        days = m.days_since(f.now, last)
        open_ = stage not in ("won", "lost")
        rows.append({"id": did, "title": t, "stage": stage,
                     "stage_label": STAGE_LABELS.get(stage, stage), "amount": amount,
                     "last": last, "created": created, "days": days,
                     "severity": m.severity(f.rules, stage, days or 0) if open_ else "",
                     "customer": (cid, cname, f.link("customer", cid)),
                     "owner": (oid, oname or "—", f.link("rep", oid) if oid else None)})
    return Section("deals", title, rows, int(total))


async def _invoices(db, f: Filters, title: str, *where) -> Section:
    owner = m.invoice_owner()
    total = (await db.exec(m.invoice_select(func.count()).where(*where))).one()
    q = (m.invoice_select(Invoice.id, Invoice.number, Invoice.amount, Invoice.paid_amount,
                     Invoice.due_date, Invoice.paid_at, Customer.id, Customer.name, owner,
                     User.name).outerjoin(User, User.id == owner)
         .where(*where).order_by(Invoice.due_date, Invoice.id).limit(LIST_LIMIT))
    rows = []
    for iid, number, amount, paid, due, paid_at, cid, cname, oid, oname in (
            await db.exec(q)).all():
        outstanding = float(amount) - float(paid or 0)
        late = (f.today - due).days if paid_at is None and outstanding > 0 else 0
        rows.append({"id": iid, "number": number or f"#{iid}", "amount": amount,
                     "paid": paid, "outstanding": outstanding, "due": due,
                     "days_overdue": late if late > 0 else 0,
                     "customer": (cid, cname, f.link("customer", cid)),
                     "owner": (oid, oname or "—", f.link("rep", oid) if oid else None)})
    return Section("invoices", title, rows, int(total))


async def _customers(db, f: Filters, title: str, *where) -> Section:
    base = (select(func.count()).select_from(CustomerHealth)
            .join(Customer, Customer.id == CustomerHealth.customer_id).where(*where))
    total = (await db.exec(base)).one()
    q = (select(Customer.id, Customer.name, Customer.owner_id, User.name, CustomerHealth.score,
                CustomerHealth.grade, CustomerHealth.computed_at)
         .select_from(CustomerHealth).join(Customer, Customer.id == CustomerHealth.customer_id)
         .outerjoin(User, User.id == Customer.owner_id).where(*where)
         .order_by(CustomerHealth.score, Customer.id).limit(LIST_LIMIT))
    rows = [{"id": cid, "name": name, "score": score, "grade": grade, "computed_at": at,
             "link": f.link("customer", cid),
             "owner": (oid, oname or "—", f.link("rep", oid) if oid else None)}
            for cid, name, oid, oname, score, grade, at in (await db.exec(q)).all()]
    return Section("customers", title, rows, int(total))


async def _visits(db, f: Filters, title: str, *where) -> Section:
    total = (await db.exec(select(func.count()).select_from(Visit).where(*where))).one()
    q = (select(Visit.id, Visit.created_at, Visit.source, Visit.summary, Customer.id,
                Customer.name, Visit.lat, Visit.lng, Visit.coord_system, Customer.lat,
                Customer.lng, Customer.coord_system).select_from(Visit)
         .outerjoin(Customer, Customer.id == Visit.customer_id).where(*where)
         .order_by(Visit.created_at.desc()).limit(LIST_LIMIT))
    rows = []
    for (vid, at, src, summary, cid, cname, vlat, vlng, vsys, clat, clng, csys) in (
            await db.exec(q)).all():
        ci = check_in_at(vlat, vlng, vsys, clat, clng, csys, f.radius)
        rows.append({"id": vid, "at": at, "source": src, "summary": (summary or "")[:120],
                     "positioned": vlat is not None, "checkin": ci,
                     "customer": (cid, cname or "—", f.link("customer", cid) if cid else None)})
    return Section("visits", title, rows, int(total))


async def _drill(db, f: Filters, metric: str, value: str) -> tuple[str, list[Section]]:
    p, scope = f.period, f.scope
    period_txt = f"{p.start.isoformat()} — {p.end.isoformat()}"
    if metric == "stage":
        if value not in m.ALL_STAGES:
            raise m.FilterError(400, "未知的阶段 / Unknown stage.")
        label = STAGE_LABELS[value]
        when = f"（{period_txt} 结单）" if value in ("won", "lost") else "（当前在途）"
        return f"阶段：{label}{when}", [await _deals(
            db, f, f"商机 Deals · {label}", m.owned(Deal.owner_id, scope),
            m.stage_filter(value, p))]
    if metric == "due":
        return "期间应收 Invoices due in the period", [await _invoices(
            db, f, "到期发票 Invoices due", m.owned(m.invoice_owner(), scope), m.due_in(p))]
    if metric == "overdue":
        where = [m.owned(m.invoice_owner(), scope), m.overdue_filter(f.today)]
        title = "逾期未收 Overdue"
        if value:
            rung = m.parse_id(value, "value")
            if rung != 0 and rung not in f.rules.overdue.ladder:
                raise m.FilterError(400, "未知的逾期阶梯 / Unknown overdue rung.")
            where.append(m.rung_range(f.rules.overdue.ladder, rung, f.today))
            title += f" · ≥{rung} 天"
        return title + "（截至今天）", [await _invoices(db, f, "逾期发票 Overdue invoices",
                                                      *where)]
    if metric == "stale":
        if value not in ("", "yellow", "red"):
            raise m.FilterError(400, "未知的停滞等级 / Unknown stale level.")
        cond, red = m.stale_conditions(f.rules, f.now)
        where = [m.owned(Deal.owner_id, scope), cond]
        if value == "red":
            where.append(red)
        elif value == "yellow":
            where.append(~red)
        names = {"yellow": "黄色 Yellow", "red": "红色 Red", "": ""}
        return f"停滞商机 Stale {names[value]}", [await _deals(
            db, f, "停滞商机 Stale deals", *where)]
    if metric == "grade":
        if value not in m.GRADES:
            raise m.FilterError(400, "未知的等级 / Unknown grade.")
        return f"健康度 {value} 级客户", [await _customers(
            db, f, f"{value} 级客户", m.owned(Customer.owner_id, scope),
            CustomerHealth.grade == value)]
    if metric == "rep":
        uid = m.parse_id(value, "value")
        person = await db.get(User, uid)
        if person is None:
            raise m.FilterError(404, "没有这个人 / No such person.")
        if not m.may_see_owner(scope, uid):
            raise m.FilterError(403, "你不能查看这个人的数据 / You may not see their data.")
        in_p = and_(Deal.created_at >= p.t0, Deal.created_at < p.t1)
        return f"个人 Rep：{person.name}", [
            await _deals(db, f, "期间新增或赢单 New or won in the period", Deal.owner_id == uid,
                         or_(in_p, m.stage_filter("won", p))),
            await _visits(db, f, "期间拜访 Visits in the period", Visit.user_id == uid,
                          Visit.created_at >= p.t0, Visit.created_at < p.t1)]
    if metric == "checkins":  # the period's visits that carry a position, farthest first
        report = await checkin_report.checkins(db, scope.owners, p.t0, p.t1, f.radius)
        ids = [r.visit_id for r in report.rows[:LIST_LIMIT]]
        if value == "far":
            ids = [r.visit_id for r in report.rows if r.checkin.far][:LIST_LIMIT]
        elif value:
            raise m.FilterError(400, "未知的签到筛选 / Unknown check-in filter.")
        rank = {vid: i for i, vid in enumerate(ids)}
        section = await _visits(db, f, "签到 Check-ins", Visit.id.in_(ids or [-1]))
        section.rows.sort(key=lambda r: rank[r["id"]])
        far = "（超出范围 / beyond the radius）" if value == "far" else ""
        return f"签到 Check-ins{far}：{p.start.isoformat()} — {p.end.isoformat()}", [section]
    if metric == "customer":
        cid = m.parse_id(value, "value")
        cust = await db.get(Customer, cid)
        if cust is None:
            raise m.FilterError(404, "没有这个客户 / No such customer.")
        if not m.may_see_owner(scope, cust.owner_id):
            raise m.FilterError(403, "你不能查看这个客户 / You may not see this customer.")
        return f"客户：{cust.name}", [
            await _deals(db, f, "商机 Deals", Deal.customer_id == cid,
                         m.owned(Deal.owner_id, scope)),
            await _invoices(db, f, "发票 Invoices", Invoice.customer_id == cid,
                            m.owned(m.invoice_owner(), scope))]
    raise m.FilterError(400, "未知的指标 / Unknown metric.")


@routes.get("/app/dashboard/list")
@require(*MANAGERS)
async def drill_down(request: web.Request) -> web.StreamResponse:
    metric = request.query.get("metric", "")
    value = request.query.get("value", "").strip()
    async with web_ctx(request).session() as db:
        try:
            f = await read_filters(request, db)
            title, sections = await _drill(db, f, metric, value)
        except m.FilterError as e:
            return error_page(request, e.status, e.message)
    return render(request, "dashboard_list.html", f=f, title=title, sections=sections,
                  limit=LIST_LIMIT)
