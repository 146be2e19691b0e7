"""Alert fixtures: a migrated database (SQLite and PostgreSQL), a small organisation, and
``AlertJobs`` driven with a frozen clock (every run passes ``now=``)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlmodel import Session

from config import load_settings
from jobs.runner import AlertJobs
from storage.db import async_engine, sync_engine
from storage.migrate import upgrade
from storage.models import Chat, Customer, Deal, Identity, Invoice, Setting, Team, User

# 10:00 in Asia/Shanghai: outside the default quiet hours (21:00–08:00)
NOW = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
SECRET = b"alerts-test-secret"


def days_ago(n: float, now: datetime = NOW) -> datetime:
    return now - timedelta(days=n)


class Env:
    def __init__(self, url: str, tmp_path):
        upgrade(url)
        self.url = url
        self.sync = sync_engine(url)
        self.engine = async_engine(url)
        self.settings = load_settings(database_url=url, data_dir=tmp_path)
        self.jobs = AlertJobs(self.engine, self.settings, SECRET)
        self.ids: dict[str, int] = {}

    # -- seeding ------------------------------------------------------------------------
    def add(self, *objs):
        with Session(self.sync, expire_on_commit=False) as s:
            for o in objs:
                s.add(o)
            s.commit()
            for o in objs:
                s.refresh(o)
        return objs[0] if len(objs) == 1 else objs

    def org(self) -> None:
        """Team 华东 with a group chat; manager 王经理 → rep 张三; finance 李会计."""
        chat = self.add(Chat(platform="wecom", app_id="corp1", external_id="chat-east",
                             title="华东销售群"))
        team = self.add(Team(name="华东", region="华东", chat_id=chat.id))
        mgr = self.add(User(name="王经理", role="manager", team_id=team.id))
        rep = self.add(User(name="张三", role="rep", team_id=team.id, manager_id=mgr.id))
        rep2 = self.add(User(name="赵六", role="rep", team_id=team.id, manager_id=mgr.id))
        fin = self.add(User(name="李会计", role="finance", team_id=team.id))
        with Session(self.sync) as s:
            s.get(Team, team.id).manager_id = mgr.id
            s.commit()
        for u, ext in ((mgr, "wangjl"), (rep, "zhangsan"), (rep2, "zhaoliu"), (fin, "likj")):
            self.add(Identity(user_id=u.id, platform="wecom", app_id="corp1", external_id=ext))
        self.ids.update(chat=chat.id, team=team.id, mgr=mgr.id, rep=rep.id, rep2=rep2.id,
                        fin=fin.id)

    def customer(self, name="华为", owner="rep", last: datetime | None = None, **kw) -> int:
        c = self.add(Customer(name=name, owner_id=self.ids[owner], region="华东",
                              last_activity_at=last or NOW, created_at=days_ago(400), **kw))
        return c.id

    def deal(self, idle_days: float, stage="proposal", owner="rep", customer=None,
             title="数据中心项目", amount=500000.0, now: datetime = NOW) -> int:
        cid = customer or self.customer(f"客户{len(self.ids)}")
        self.ids[f"_c{len(self.ids)}"] = cid
        d = self.add(Deal(customer_id=cid, owner_id=self.ids[owner], title=title, stage=stage,
                          amount=amount, last_activity_at=days_ago(idle_days, now),
                          created_at=days_ago(idle_days + 5, now)))
        return d.id

    def invoice(self, due: date, amount=100000.0, paid=0.0, paid_at=None, customer=None,
                number="INV-1") -> int:
        cid = customer or self.customer(f"客户{len(self.ids)}")
        self.ids[f"_c{len(self.ids)}"] = cid
        return self.add(Invoice(customer_id=cid, number=number, amount=amount, paid_amount=paid,
                                due_date=due, paid_at=paid_at)).id

    def rules(self, value: dict, version: int = 1) -> None:
        self.add(Setting(key="alerts", version=version, value=value))

    # -- reading ------------------------------------------------------------------------
    def sql(self, q: str, **p) -> list:
        with self.sync.connect() as c:
            return c.execute(text(q), p).all()

    def outbox(self, prefix: str = "alert:") -> list[dict]:
        rows = self.sql("SELECT idem_key, target, message, next_at FROM outbox "
                        "WHERE idem_key LIKE :p ORDER BY id", p=prefix + "%")
        return [{"key": k, "target": _j(t), "card": _j(m)["card"], "next_at": n}
                for k, t, m, n in rows]

    async def close(self) -> None:
        await self.engine.dispose()
        self.sync.dispose()


def _j(v):
    return json.loads(v) if isinstance(v, str) else v


def to_ids(rows: list[dict]) -> list[str]:
    return sorted(r["target"]["id"] for r in rows)


@pytest.fixture
async def env(db_url, tmp_path):
    e = Env(db_url, tmp_path)
    e.org()
    yield e
    await e.close()
