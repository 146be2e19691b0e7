"""Demo data: a small sales org on all three platforms, customers, deals and invoices.

Idempotent: every row is found by its natural key (team name, user name, identity triple,
customer name, alias, contact, deal title, invoice number) and only created when missing, so
``seed`` can run on every demo start. Dates are relative to the first run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from storage.db import sync_engine
from storage.migrate import upgrade
from storage.models import (
    Contact,
    Customer,
    CustomerAlias,
    Deal,
    Identity,
    Invoice,
    Team,
    User,
)

PLATFORMS = ("wecom", "dingtalk", "feishu")
ORG_TZ = ZoneInfo("Asia/Shanghai")  # AlertRules' default timezone


@dataclass(frozen=True)
class Person:
    key: str  # the WeCom userid; DingTalk staff id is "ding_<key>", Feishu open_id "ou_<key>"
    name: str
    role: str  # rep | manager | vp | finance | admin
    team: str = ""  # team name, "" for org-wide roles

    def external_id(self, platform: str) -> str:
        return {"wecom": self.key, "dingtalk": f"ding_{self.key}",
                "feishu": f"ou_{self.key}",
                "wecom_aibot": self.key}[platform]  # the AI bot sees the corp's userids


TEAMS = (("华东区", "east"), ("华南区", "south"))

PEOPLE: tuple[Person, ...] = (
    Person("wangzong", "王总", "vp"),
    Person("lijingli", "李经理", "manager", "华东区"),
    Person("chenjingli", "陈经理", "manager", "华南区"),
    Person("zhangsan", "张三", "rep", "华东区"),
    Person("lisi", "李四", "rep", "华东区"),
    Person("wangwu", "王五", "rep", "华南区"),
    Person("zhaoliu", "赵六", "rep", "华南区"),
    Person("qiancaiwu", "钱财务", "finance"),
    Person("admin", "系统管理员", "admin"),
)

# name, aliases, region, owner key, rating, tags, contacts [(name, title, phone)]
CUSTOMERS: tuple[tuple[str, tuple[str, ...], str, str, int, tuple[str, ...],
                       tuple[tuple[str, str, str], ...]], ...] = (
    ("华东精密零部件有限公司", ("华东精密",), "华东区", "zhangsan", 5, ("制造", "重点"),
     (("周工", "采购经理", "13800000001"), ("吴总", "总经理", "13800000002"))),
    ("上海浦江机电设备有限公司", ("浦江机电", "浦江"), "华东区", "zhangsan", 4, ("制造",),
     (("郑经理", "设备部经理", "13800000003"),)),
    ("杭州西子智能科技有限公司", ("西子智能", "西子"), "华东区", "zhangsan", 3, ("科技",),
     (("孙女士", "行政主管", "13800000004"),)),
    ("苏州工业园区恒信电子有限公司", ("恒信电子",), "华东区", "lisi", 4, ("电子",),
     (("钱工", "技术总监", "13800000005"),)),
    ("南京金陵化工集团", ("金陵化工",), "华东区", "lisi", 5, ("化工", "重点"),
     (("冯总", "副总经理", "13800000006"), ("陈工", "采购专员", "13800000007"))),
    ("宁波港城物流有限公司", ("港城物流",), "华东区", "lisi", 2, ("物流",),
     (("褚经理", "运营经理", "13800000008"),)),
    ("深圳南山创新科技有限公司", ("南山创新", "南山科技"), "华南区", "wangwu", 4, ("科技",),
     (("卫总", "CTO", "13800000009"),)),
    ("广州珠江食品有限公司", ("珠江食品",), "华南区", "wangwu", 3, ("食品",),
     (("蒋经理", "采购经理", "13800000010"),)),
    ("东莞松湖精工制造有限公司", ("松湖精工",), "华南区", "wangwu", 5, ("制造", "重点"),
     (("沈工", "生产总监", "13800000011"),)),
    ("佛山顺德家电配件厂", ("顺德家电", "顺德配件"), "华南区", "zhaoliu", 3, ("家电",),
     (("韩厂长", "厂长", "13800000012"),)),
    ("厦门鹭岛医疗器械有限公司", ("鹭岛医疗",), "华南区", "zhaoliu", 4, ("医疗",),
     (("杨主任", "设备科主任", "13800000013"),)),
    ("珠海横琴新能源有限公司", ("横琴新能源", "横琴能源"), "华南区", "zhaoliu", 2, ("能源",),
     (("朱经理", "项目经理", "13800000014"),)),
)

# customer alias, title, stage, amount (CNY), days since last activity
DEALS: tuple[tuple[str, str, str, float, int], ...] = (
    ("华东精密", "数控机床配件年度框架", "negotiation", 1_200_000, 3),
    ("华东精密", "自动化产线改造", "proposal", 680_000, 16),
    ("浦江机电", "设备维保续约", "won", 150_000, 1),
    ("西子智能", "智能仓储试点", "qualified", 320_000, 25),
    ("恒信电子", "SMT 产线扩容", "proposal", 540_000, 9),
    ("金陵化工", "防爆设备采购", "negotiation", 2_100_000, 35),
    ("港城物流", "叉车租赁", "lead", 90_000, 48),
    ("南山创新", "研发测试平台", "proposal", 760_000, 5),
    ("珠江食品", "包装线升级", "lost", 260_000, 60),
    ("松湖精工", "精密模具年度采购", "negotiation", 1_500_000, 14),
    ("顺德家电", "配件集采", "qualified", 180_000, 21),
    ("鹭岛医疗", "洁净车间设备", "lead", 450_000, 2),
    ("横琴新能源", "储能柜试产线", "qualified", 980_000, 40),
)

# number, customer alias, deal title (or ""), amount, paid, days from today until due (<0 overdue)
INVOICES: tuple[tuple[str, str, str, float, float, int], ...] = (
    ("INV-2024-0001", "浦江机电", "设备维保续约", 150_000, 150_000, -20),
    ("INV-2024-0002", "华东精密", "数控机床配件年度框架", 400_000, 100_000, -45),
    ("INV-2024-0003", "金陵化工", "", 220_000, 0, -75),
    ("INV-2024-0004", "南山创新", "", 120_000, 0, 10),
    ("INV-2024-0005", "松湖精工", "", 300_000, 300_000, -5),
    ("INV-2024-0006", "顺德家电", "", 60_000, 20_000, -12),
    ("INV-2024-0007", "鹭岛医疗", "", 88_000, 0, 30),
    ("INV-2024-0008", "恒信电子", "", 135_000, 0, -3),
)


def people_json(app_ids: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The people of the demo org, as the web chat page lists them."""
    return [{"key": p.key, "name": p.name, "role": p.role, "team": p.team,
             "ids": {pl: p.external_id(pl) for pl in PLATFORMS}} for p in PEOPLE]


def find_person(key_or_id: str) -> Person | None:
    for p in PEOPLE:
        if key_or_id == p.key or key_or_id in (p.external_id(pl) for pl in PLATFORMS):
            return p
    return None


def _get_or_add(session: Session, model, where: dict[str, Any], **values: Any):
    q = select(model)
    for k, v in where.items():
        q = q.where(getattr(model, k) == v)
    row = session.exec(q).first()
    if row is None:
        row = model(**where, **values)
        session.add(row)
        session.flush()
    return row


def seed(url: str, app_ids: dict[str, str], migrate: bool = True) -> dict[str, int]:
    """Create the demo org on ``url`` (idempotent); ``app_ids``: platform → the app id its
    events carry (WeCom corp id, DingTalk app key, Feishu app id). Returns row counts."""
    if migrate:
        upgrade(url)
    engine = sync_engine(url)
    now = datetime.now(UTC)
    today = now.astimezone(ORG_TZ).date()  # the org's day, as the digest and dashboard count
    try:
        with Session(engine) as s:
            teams = {name: _get_or_add(s, Team, {"name": name}, region=region)
                     for name, region in TEAMS}
            users: dict[str, User] = {}
            for p in PEOPLE:
                team = teams.get(p.team)
                users[p.key] = _get_or_add(s, User, {"name": p.name}, role=p.role,
                                           team_id=team.id if team else None)
            vp = users["wangzong"]
            for p in PEOPLE:
                u = users[p.key]
                if p.role == "manager":
                    teams[p.team].manager_id = teams[p.team].manager_id or u.id
                    u.manager_id = u.manager_id or vp.id
                elif p.role == "rep":
                    mgr = next(q for q in PEOPLE if q.role == "manager" and q.team == p.team)
                    u.manager_id = u.manager_id or users[mgr.key].id
                for platform, app_id in app_ids.items():
                    if not app_id:
                        continue
                    _get_or_add(s, Identity, {"platform": platform, "app_id": app_id,
                                              "external_id": p.external_id(platform)},
                                user_id=u.id, display_name=p.name)
            by_alias: dict[str, Customer] = {}
            for name, aliases, region, owner, rating, tags, contacts in CUSTOMERS:
                c = _get_or_add(s, Customer, {"name": name}, short_name=aliases[0],
                                region=region, owner_id=users[owner].id,
                                strategic_rating=rating, tags=list(tags),
                                last_activity_at=now - timedelta(days=_idle_days(aliases)))
                for alias in aliases:
                    _get_or_add(s, CustomerAlias, {"customer_id": c.id, "alias": alias})
                    by_alias[alias] = c
                for cname, title, phone in contacts:
                    _get_or_add(s, Contact, {"customer_id": c.id, "name": cname},
                                title=title, phone=phone)
            deals: dict[str, Deal] = {}
            for alias, title, stage, amount, idle_days in DEALS:
                c = by_alias[alias]
                at = now - timedelta(days=idle_days)
                deals[title] = _get_or_add(s, Deal, {"customer_id": c.id, "title": title},
                                           owner_id=c.owner_id, stage=stage, amount=amount,
                                           last_activity_at=at, created_at=at)
            for number, alias, deal_title, amount, paid, due_in in INVOICES:
                due: date = today + timedelta(days=due_in)
                deal = deals.get(deal_title)
                _get_or_add(s, Invoice, {"number": number}, customer_id=by_alias[alias].id,
                            deal_id=deal.id if deal else None, amount=amount,
                            paid_amount=paid, due_date=due,
                            paid_at=now if paid >= amount else None)
            s.commit()
            return {m.__tablename__: len(s.exec(select(m)).all())
                    for m in (Team, User, Identity, Customer, CustomerAlias, Contact, Deal,
                              Invoice)}
    finally:
        engine.dispose()


def _idle_days(aliases: tuple[str, ...]) -> int:
    """Days since the customer's most recent deal activity (90 when it has no deal)."""
    return min((d[4] for d in DEALS if d[0] in aliases), default=90)
