"""A small sales org for approval tests: two regions, reps, managers, a VP, finance, admin."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlmodel import Session

from storage.db import async_engine, sync_engine
from storage.migrate import upgrade
from storage.models import Customer, CustomerAlias, Deal, Identity, Team, User

# key, name, role, team ("" = org-wide)
PEOPLE = (
    ("wangzong", "王总", "vp", ""),
    ("lijingli", "李经理", "manager", "east"),
    ("chenjingli", "陈经理", "manager", "south"),
    ("zhangsan", "张三", "rep", "east"),
    ("lisi", "李四", "rep", "east"),
    ("wangwu", "王五", "rep", "south"),
    ("qiancaiwu", "钱财务", "finance", ""),
    ("admin", "管理员", "admin", ""),
)
APP_IDS = {"wecom": "wwtest", "dingtalk": "dingtest", "feishu": "cli_test"}


def ext_id(platform: str, key: str) -> str:
    return {"wecom": key, "dingtalk": f"ding_{key}", "feishu": f"ou_{key}"}[platform]


@dataclass
class Org:
    url: str
    ids: dict[str, int] = field(default_factory=dict)  # key → users.id
    customer_id: int = 0
    deal_id: int = 0

    def __getitem__(self, key: str) -> int:
        return self.ids[key]

    def engine(self):
        return async_engine(self.url)


def build_org(url: str, app_ids: dict[str, str] | None = None, migrate: bool = True) -> Org:
    if migrate:
        upgrade(url)
    app_ids = app_ids or APP_IDS
    org = Org(url)
    eng = sync_engine(url)
    with Session(eng) as s:
        teams = {k: Team(name=k) for k in ("east", "south")}
        for t in teams.values():
            s.add(t)
        s.flush()
        users: dict[str, User] = {}
        for key, name, role, team in PEOPLE:
            u = User(name=name, role=role, team_id=teams[team].id if team else None)
            s.add(u)
            s.flush()
            users[key] = u
            for p, app in app_ids.items():
                s.add(Identity(user_id=u.id, platform=p, app_id=app,
                               external_id=ext_id(p, key), display_name=name))
        teams["east"].manager_id = users["lijingli"].id
        teams["south"].manager_id = users["chenjingli"].id
        for key, _n, role, team in PEOPLE:
            if role == "rep":
                users[key].manager_id = users["lijingli" if team == "east" else "chenjingli"].id
            elif role == "manager":
                users[key].manager_id = users["wangzong"].id
        c = Customer(name="华东精密零部件有限公司", short_name="华东精密",
                     owner_id=users["zhangsan"].id)
        s.add(c)
        s.flush()
        s.add(CustomerAlias(customer_id=c.id, alias="华东精密"))
        d = Deal(customer_id=c.id, owner_id=users["zhangsan"].id, title="年度框架",
                 stage="proposal", amount=200_000, last_activity_at=datetime.now(UTC))
        s.add(d)
        s.commit()
        org.ids = {k: u.id for k, u in users.items()}
        org.customer_id, org.deal_id = c.id, d.id
    eng.dispose()
    return org
