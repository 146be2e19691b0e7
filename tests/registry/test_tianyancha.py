"""The 天眼查 provider against the fake API (``simulator.registry``) on loopback: found, no
data, quota exhausted, token invalid, timeout, unreachable — the failures are None (and
``available`` False) with a warning that never carries the token."""

from __future__ import annotations

import logging
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from config import load_settings
from integrations.registry import build_registry
from integrations.registry.tianyancha import TianyanchaRegistry
from simulator.registry import TOKEN, RegistrySim
from tests.conftest import free_port


@pytest.fixture
async def served():
    sim = RegistrySim()
    app = web.Application()
    sim.add_routes(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield sim, str(server.make_url("")).rstrip("/")
    await server.close()


async def test_found_and_no_data(served):
    sim, base = served
    reg = TianyanchaRegistry(TOKEN, base, timeout_s=3)
    entry = await reg.lookup("杭州云帆物流有限公司")
    assert entry is not None
    assert (entry.credit_code, entry.legal_rep, entry.registered_capital) == (
        "91330106MA2H5Y3K0F", "赵云帆", "200万人民币")
    assert entry.address == "杭州市西湖区文三路100号" and entry.status_warning
    assert entry.extra["source"] == "tianyancha" and entry.extra["regNumber"]
    ok = await reg.lookup("苏州恒信电子科技有限公司")
    assert ok is not None and ok.status == "在业" and not ok.status_warning
    answer = await reg.check("不存在的公司")
    assert answer.entry is None and answer.available
    assert sim.calls == ["杭州云帆物流有限公司", "苏州恒信电子科技有限公司", "不存在的公司"]


async def test_quota_exhausted(served, caplog):
    sim, base = served
    sim.quota = 2
    reg = TianyanchaRegistry(TOKEN, base)
    assert await reg.lookup("华东精密零部件有限公司") is not None
    assert await reg.lookup("华东精密零部件有限公司") is not None
    with caplog.at_level(logging.WARNING, "integrations.registry.tianyancha"):
        answer = await reg.check("华东精密零部件有限公司")
    assert answer.entry is None and not answer.available
    assert "quota exhausted" in caplog.text and "300003" in caplog.text
    assert TOKEN not in caplog.text


async def test_token_invalid_is_logged_without_the_token(served, caplog):
    _sim, base = served
    reg = TianyanchaRegistry("wrong-secret-token", base)
    with caplog.at_level(logging.WARNING, "integrations.registry.tianyancha"):
        answer = await reg.check("华东精密零部件有限公司")
    assert answer.entry is None and not answer.available
    assert "token invalid" in caplog.text
    assert "wrong-secret-token" not in caplog.text and "wrong-secret-token" not in repr(reg)


async def test_timeout_answers_none_quickly(served, caplog):
    sim, base = served
    sim.slow_s = 5
    reg = TianyanchaRegistry(TOKEN, base, timeout_s=0.3)
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, "integrations.registry.tianyancha"):
        answer = await reg.check("华东精密零部件有限公司")
    assert time.monotonic() - t0 < 2
    assert answer.entry is None and not answer.available
    assert "timed out" in caplog.text


async def test_unreachable_and_factory(caplog):
    base = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = load_settings(registry_provider="tianyancha", registry_api_base=base,
                             registry_token="secret-xyz", registry_timeout_s=1)
    reg = build_registry(settings)
    assert isinstance(reg, TianyanchaRegistry)
    with caplog.at_level(logging.WARNING, "integrations.registry.tianyancha"):
        assert await reg.lookup("华东精密零部件有限公司") is None
    assert "request failed" in caplog.text and "secret-xyz" not in caplog.text
    assert "secret-xyz" not in repr(settings)


def test_factory_rejects_an_unknown_provider():
    from config import ConfigError

    with pytest.raises(ConfigError, match="REGISTRY_PROVIDER"):
        build_registry(load_settings(registry_provider="qichacha"))
    assert type(build_registry(load_settings())).__name__ == "NoRegistry"
