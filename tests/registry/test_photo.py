"""工商信息 after OCR, end to end through the WeCom simulator and the real RapidOCR: a
storefront photo of a company in the local registry shows its credit code, status (a warning
when 吊销) and address, and 新建客户 pre-fills the customer from it; a check-in photo asks the
fake 天眼查 API; with the registry down the card says 工商信息暂不可用 and still works."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from integrations.registry.importer import import_csv
from jobs.worker import JOB_WORKER
from simulator.registry import TOKEN, RegistrySim
from storage.db import async_engine
from storage.migrate import upgrade
from tests.conftest import free_port
from tests.media.conftest import fixture_bytes
from tests.media.test_e2e import REP, cards, seed, tap_first
from tests.wecom.conftest import Env, start_env

CSV = """企业名称,统一社会信用代码,法定代表人,地址,登记状态,注册资本
杭州云帆物流有限公司,91330106MA2H5Y3K0F,赵云帆,杭州市西湖区文三路100号,吊销，未注销,200万人民币
"""


async def started(db_url, tmp_path, rapid, **overrides) -> tuple[Env, TestServer]:
    e, sim_server = await start_env(db_url, tmp_path, **overrides)
    e.ids = seed(db_url)
    e.app[JOB_WORKER].services._ocr = rapid
    return e, sim_server


def card_dump(env: Env) -> str:
    return json.dumps(cards(env)[0].body["template_card"], ensure_ascii=False)


@pytest.fixture
async def local_env(db_url, tmp_path, rapid):
    upgrade(db_url)
    eng = async_engine(db_url)
    try:
        await import_csv(eng, CSV)
    finally:
        await eng.dispose()
    e, sim_server = await started(db_url, tmp_path, rapid, registry_provider="local")
    yield e
    await e.bot.close()
    await sim_server.close()


async def test_sign_in_the_local_registry_warns_and_prefills(local_env: Env):
    env = local_env
    env.sim.add_media("p2", fixture_bytes("sign_unknown.jpg"), "image/jpeg")
    await env.sim.send_image(env.url, REP, "p2")
    await env.wait_for(lambda: cards(env), 60, "new customer card")
    dump = card_dump(env)
    assert "新建客户" in dump and "杭州云帆物流有限公司" in dump
    assert "91330106MA2H5Y3K0F" in dump and "杭州市西湖区文三路100号" in dump
    assert "吊销" in dump and "⚠️" in dump
    await tap_first(env, cards(env)[0])
    await env.wait_for(lambda: env.count("visits") == 1, 10, "visit row")
    (tags, code, address), = env.sql("SELECT tags, credit_code, address FROM customers "
                                     "WHERE name='杭州云帆物流有限公司'")
    assert (json.loads(tags) if isinstance(tags, str) else tags) == []
    assert (code, address) == ("91330106MA2H5Y3K0F", "杭州市西湖区文三路100号")  # pre-filled
    (evidence,), = env.sql("SELECT evidence FROM visits")
    evidence = json.loads(evidence) if isinstance(evidence, str) else evidence
    assert evidence["registry"] == {"credit_code": "91330106MA2H5Y3K0F",
                                    "address": "杭州市西湖区文三路100号"[:40],
                                    "status": "吊销，未注销"}


@pytest.fixture
async def api_env(db_url, tmp_path, rapid):
    fake = RegistrySim()
    app = web.Application()
    fake.add_routes(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    e, sim_server = await started(
        db_url, tmp_path, rapid, registry_provider="tianyancha", registry_token=TOKEN,
        registry_api_base=str(server.make_url("")).rstrip("/"))
    e.fake = fake
    yield e
    await e.bot.close()
    await sim_server.close()
    await server.close()


async def test_checkin_photo_shows_the_api_answer(api_env: Env):
    env = api_env
    env.sim.add_media("p1", fixture_bytes("sign_gps_rotated.jpg"), "image/jpeg")
    await env.sim.send_image(env.url, REP, "p1")
    await env.wait_for(lambda: cards(env), 60, "check-in card")
    dump = card_dump(env)
    assert "在 华东精密零部件有限公司 签到？" in dump
    assert "91310115MA1K4F2D6R" in dump and "存续" in dump and "⚠️" not in dump
    assert env.fake.calls and "华东精密" in env.fake.calls[0]


async def test_registry_down_says_unavailable(db_url, tmp_path, rapid):
    env, sim_server = await started(
        db_url, tmp_path, rapid, registry_provider="tianyancha", registry_token="t",
        registry_api_base=f"http://127.0.0.1:{free_port()}", registry_timeout_s=1)
    try:
        env.sim.add_media("p2", fixture_bytes("sign_unknown.jpg"), "image/jpeg")
        await env.sim.send_image(env.url, REP, "p2")
        await env.wait_for(lambda: cards(env), 60, "new customer card")
        dump = card_dump(env)
        assert "工商信息暂不可用" in dump and "杭州云帆物流有限公司" in dump
        await tap_first(env, cards(env)[0])  # the card still works
        await env.wait_for(lambda: env.count("visits") == 1, 10, "visit row")
        (tags, code, address), = env.sql("SELECT tags, credit_code, address FROM customers "
                                         "WHERE name='杭州云帆物流有限公司'")
        assert (json.loads(tags) if isinstance(tags, str) else tags) == []
        assert (code, address) == ("", "")
    finally:
        await env.bot.close()
        await sim_server.close()
