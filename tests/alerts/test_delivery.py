"""Delivery through the simulator: 10,000 stale-deal alerts over 50 team chats become one
card per chat per run (plus one digest each), under the simulator's Feishu limit (5 QPS per
chat), with injected rate-limit and 5xx answers, and the bot killed mid-delivery and
restarted: every chat gets its cards, zero lost, zero duplicated."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import insert, text

from bot.app import OUTBOX, create_app
from bot.event import utcnow
from config import load_settings
from jobs.scheduler import SCHEDULER
from storage.models import Chat, Customer, Deal, Identity, Setting, Team, User
from tests.alerts.conftest import Env

CHATS, DEALS_PER_CHAT = 50, 200


def seed(env: Env, app_id: str, now) -> None:
    with env.sync.begin() as c:
        c.execute(insert(Chat), [dict(id=i, platform="feishu", app_id=app_id,
                                      external_id=f"oc_team{i:03d}", type="group", title=f"群{i}",
                                      webhook_url="") for i in range(1, CHATS + 1)])
        c.execute(insert(Team), [dict(id=i, name=f"团队{i}", region="华东", chat_id=i)
                                 for i in range(1, CHATS + 1)])
        c.execute(insert(User), [dict(id=i, name=f"经理{i}", role="manager", team_id=i,
                                      active=True, created_at=now) for i in range(1, CHATS + 1)]
                  + [dict(id=1000 + i, name=f"销售{i}", role="rep", team_id=i, manager_id=i,
                          active=True, created_at=now) for i in range(1, CHATS + 1)])
        c.execute(text("UPDATE teams SET manager_id = id"))
        c.execute(insert(Identity), [dict(user_id=u, platform="feishu", app_id=app_id,
                                          external_id=f"ou_{u}", display_name="")
                                     for u in [*range(1, CHATS + 1),
                                               *range(1001, 1001 + CHATS)]])
        c.execute(insert(Customer), [dict(id=i, name=f"客户{i}", short_name="", region="华东",
                                          owner_id=1000 + i, tags=[], strategic_rating=3,
                                          last_activity_at=now, created_at=now)
                                     for i in range(1, CHATS + 1)])
        c.execute(insert(Deal), [dict(customer_id=i, owner_id=1000 + i, title=f"项目{i}-{k}",
                                      stage="proposal", amount=1000.0 * k,
                                      last_activity_at=now - timedelta(days=20 + k % 30),
                                      created_at=now - timedelta(days=60))
                                 for i in range(1, CHATS + 1) for k in range(DEALS_PER_CHAT)])
        c.execute(insert(Setting), [dict(key="alerts", version=1, created_at=now, value={
            "quiet_hours": None,
            "routes": [{"alert": "stale", "to": ["team_chat"]},
                       {"alert": "digest", "to": ["team_chat"]}]})])


async def wait_for(cond, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


async def test_10000_alerts_50_chats_exactly_once_through_limits_and_a_restart(db_url, tmp_path):
    from simulator.server import Simulator

    sim = Simulator(platforms=("feishu",))
    await sim.start()
    env = Env(db_url, tmp_path)
    now = utcnow()
    seed(env, sim.app_ids()["feishu"], now)
    fake = sim.feishu
    fake.faults.rate_limited = 20
    fake.faults.server_error = 5
    settings = load_settings(database_url=db_url, data_dir=tmp_path, secret_key="s" * 40,
                             **sim.settings_overrides())
    servers = []
    try:
        app = create_app(settings)
        jobs = app[SCHEDULER].jobs  # the day's runs, enqueued before the sender starts
        stale = await jobs.run("stale", now=now)
        assert stale["alerts"] == CHATS * DEALS_PER_CHAT and stale["cards"] == CHATS
        digest = await jobs.run("digest", now=now)
        assert digest["digests"] == CHATS
        total = 2 * CHATS
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)

        # kill the sender mid-delivery: in-flight rows stay claimed, unmarked
        await wait_for(lambda: len(fake.delivered()) >= 30)
        app[OUTBOX]._task.cancel()
        await server.close()
        servers.pop()
        sent_before = len(fake.delivered())
        assert sent_before < total

        # a new instance: re-running today's jobs adds nothing; the outbox resumes (its clock
        # is past the dead instance's leases) and the platform drops any resend by uuid
        app2 = create_app(settings)
        app2[OUTBOX].clock = lambda: utcnow() + timedelta(seconds=61)
        server2 = TestServer(app2, host="127.0.0.1")
        await server2.start_server()
        servers.append(server2)
        assert await app2[SCHEDULER].jobs.run("stale", now=now) == "done"
        assert await app2[SCHEDULER].jobs.run("digest", now=now) == "done"
        await wait_for(lambda: env.sql("SELECT count(*) FROM outbox WHERE status='sent'")
                       == [(total,)], timeout=25)

        delivered = fake.delivered()
        assert len(delivered) == total  # zero lost, zero duplicated
        assert len({m.uuid for m in delivered}) == total
        by_chat: dict[str, list] = {}
        for m in delivered:
            by_chat.setdefault(m.receive_id, []).append(m)
        assert len(by_chat) == CHATS and all(len(v) == 2 for v in by_chat.values())
        # only the injected faults were refused: the bot never tripped the 5 QPS limit
        rejected = sim.recorder.of("feishu", "rejected")
        assert len([c for c in rejected if c.dest == "send"]) == 25
        assert env.sql("SELECT count(*) FROM outbox WHERE status <> 'sent'") == [(0,)]
    finally:
        for s in servers:
            await s.close()
        await sim.stop()
        await env.close()


pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.dates]
