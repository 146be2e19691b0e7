"""A migrated database and an async session on it (SQLite and PostgreSQL via ``db_url``), with
a small org: team 华东区 (manager 李经理, reps 张三 and 李四) and one customer."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.db import async_engine
from storage.migrate import upgrade
from storage.models import Customer, Team, User


@dataclass
class Org:
    team: int
    manager: int
    reps: list[int]
    customer: int


@pytest.fixture
async def db(db_url):
    upgrade(db_url)
    engine = async_engine(db_url)
    async with AsyncSession(engine, expire_on_commit=False) as s:
        yield s
    await engine.dispose()


@pytest.fixture
async def org(db) -> Org:
    team = Team(name="华东区")
    db.add(team)
    await db.flush()
    mgr = User(name="李经理", role="manager", team_id=team.id)
    reps = [User(name=n, role="rep", team_id=team.id) for n in ("张三", "李四")]
    db.add_all([mgr, *reps])
    await db.flush()
    team.manager_id = mgr.id
    cust = Customer(name="华东精密", owner_id=reps[0].id)
    db.add(cust)
    await db.commit()
    return Org(team.id, mgr.id, [r.id for r in reps], cust.id)
