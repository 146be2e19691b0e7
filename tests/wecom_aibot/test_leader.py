"""Two bots on one PostgreSQL database and one AI bot: only the advisory-lock leader holds the
connection (WeCom allows one; a second would kick the first), the other waits in ``standby``
and takes over when the leader stops, or when the leader's lock connection dies."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import text

from bot.app import ADAPTERS
from tests.wecom_aibot.conftest import start_bot, start_env, wait_for


@pytest.fixture
def pg_url(db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("the leader lock is PostgreSQL's; on SQLite one instance always connects")
    return db_url


def _transport(server):
    return server.app[ADAPTERS]["wecom_aibot"].transport


async def test_one_connection_at_a_time_and_a_hand_over(pg_url, tmp_path):
    env = await start_env(pg_url, tmp_path)  # the first instance leads and connects
    second = await start_bot(pg_url, tmp_path / "b", env.ws_url)
    try:
        standby = _transport(second)
        await wait_for(lambda: standby.state == "standby")
        assert env.transport.state == "connected"
        assert len(env.sim.subscribes) == 1 and env.sim.kicks == 0

        await env.bot.close()  # the leader stops: the standby takes the bot over
        await wait_for(lambda: standby.state == "connected" and env.sim.connected)
        assert len(env.sim.subscribes) == 2 and env.sim.kicks == 0
        req_id = await env.sim.push_text("zhangsan", "帮助")
        await wait_for(lambda: [c for c in env.sim.ok("aibot_respond_msg")
                                if c.result["req_id"] == req_id])
    finally:
        await second.close()
        await env.api.close()


async def test_a_leader_whose_lock_connection_dies_steps_down(pg_url, tmp_path):
    env = await start_env(pg_url, tmp_path)
    second = await start_bot(pg_url, tmp_path / "b", env.ws_url)
    try:
        standby = _transport(second)
        await wait_for(lambda: standby.state == "standby")
        leader = env.transport.leader
        pid = (await leader._conn.execute(text("SELECT pg_backend_pid()"))).scalar()
        async with env.app[ADAPTERS]["wecom_aibot"].transport.leader._engine.connect() as c:
            await c.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        # the old leader drops its WeCom connection before anyone else subscribes: no kick
        await wait_for(lambda: env.transport.state == "standby" or standby.state == "connected"
                       and env.transport.state != "connected")
        await wait_for(lambda: env.sim.connected and len(env.sim.subscribes) == 2)
        assert env.sim.kicks == 0
        assert [env.transport.state, standby.state].count("connected") == 1
    finally:
        await second.close()
        await env.stop()


async def test_one_host_several_processes_share_a_file_lock(db_url, tmp_path):
    """On SQLite (one host, maybe several worker processes sharing a data dir) a file lock
    plays the leader: the second bot waits, then takes over when the first stops."""
    if not db_url.startswith("sqlite"):
        pytest.skip("the file lock is for one host on SQLite")
    env = await start_env(db_url, tmp_path)
    second = await start_bot(db_url, tmp_path / "data", env.ws_url)  # the same data dir
    try:
        standby = _transport(second)
        await wait_for(lambda: standby.state == "standby")
        assert env.transport.state == "connected" and env.sim.kicks == 0
        await env.bot.close()
        await wait_for(lambda: standby.state == "connected" and env.sim.connected)
        assert len(env.sim.subscribes) == 2 and env.sim.kicks == 0
    finally:
        await second.close()
        await env.api.close()


async def test_split_deployment_the_worker_holds_the_connection(db_url, tmp_path):
    """``serve`` with worker processes: the AI bot's replies go back over its socket, so the
    process that delivers (a worker), not the web process, holds it — and answers in-band."""
    import asyncio

    from aiohttp.test_utils import TestServer

    from bot.app import create_app
    from config import load_settings
    from simulator.seed import seed
    from tests.wecom_aibot.conftest import BOT_ID, PING_S, SECRET, start_sim

    sim, _recorder, api, ws_url = await start_sim()
    await asyncio.to_thread(seed, db_url, {"wecom_aibot": BOT_ID})
    env = SimpleNamespace(sim=sim, api=api, ws_url=ws_url)
    base = dict(database_url=db_url, data_dir=tmp_path / "split", wecom_aibot_bot_id=BOT_ID,
                wecom_aibot_secret=SECRET, wecom_aibot_ws_url=env.ws_url,
                longconn_ping_s=PING_S)
    web = TestServer(create_app(load_settings(**base), role="web"), host="127.0.0.1")
    worker = TestServer(create_app(load_settings(**base), role="worker", migrate=False),
                        host="127.0.0.1")
    await web.start_server()
    await worker.start_server()
    try:
        await wait_for(lambda: env.sim.connected)
        assert _transport(web).state == "stopped"  # never started in the web process
        assert _transport(worker).state == "connected"
        req_id = await env.sim.push_text("zhangsan", "帮助")
        # answered by the worker: in-band, or — if a busy loop let the watchdog replace the
        # connection meanwhile, so the req_id died with it — proactively to the same user
        await wait_for(lambda: [c for c in env.sim.ok("aibot_respond_msg")
                                if c.result["req_id"] == req_id]
                       or [c for c in env.sim.ok("aibot_send_msg") if c.dest == "zhangsan"],
                       timeout=20)
    finally:
        await worker.close()
        await web.close()
        await env.api.close()
