"""``fieldbot demo --transport stream`` end to end, on all three platforms: nothing comes in by
HTTP (no webhook route is mounted); a visit note → a 记为拜访 draft that one tap saves;
``提醒`` → alert cards, whose 已跟进 redraws the card (WeCom: the AI bot's update in-band)."""

from __future__ import annotations

import pytest

from simulator.demo import start_demo
from tests.approvals.test_e2e import card_with, say, shows, tap, wait_for

pytestmark = pytest.mark.dates  # the seed's stale deals and overdue invoices, on any day

PLATFORMS = ["wecom", "dingtalk", "feishu"]


@pytest.fixture
async def stack(tmp_path):
    import aiohttp

    s = await start_demo("127.0.0.1", 0, tmp_path / "demo", transport="stream")
    async with aiohttp.ClientSession(s.sim.url) as http:
        s.http = http
        yield s
    await s.stop()


async def test_no_inbound_http_and_every_transport_up(stack):
    routes = [r.resource.canonical for r in stack.runner.app.router.routes()
              if r.resource is not None]
    assert not [r for r in routes if r.startswith("/webhooks")], routes
    async with stack.http.get(stack.bot_url + "/healthz") as r:
        health = await r.json()
    assert {p: t["state"] for p, t in health["transports"].items()} == {
        "dingtalk": "connected", "feishu": "connected", "wecom_aibot": "connected"}


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_note_to_visit_and_alerts_over_the_long_connection(stack, platform):
    await say(stack, platform, "zhangsan", "拜访了华东精密，谈了秋季订货")
    draft = await wait_for(stack, platform, "zhangsan", card_with("记为拜访"))
    await tap(stack, platform, "zhangsan", draft, 0)
    await wait_for(stack, platform, "zhangsan", shows("已保存"))

    await say(stack, platform, "zhangsan", "提醒")
    alert = await wait_for(stack, platform, "zhangsan", card_with("商机停滞提醒"))
    names = [b["text"] for b in alert["card"]["buttons"]]
    done = next(i for i, n in enumerate(names) if "已跟进" in n)
    await tap(stack, platform, "zhangsan", alert, done)
    await wait_for(stack, platform, "zhangsan",
                   lambda ms: [m for m in ms if m["id"] == alert["id"] and m.get("updated")
                               and names[done] not in [b["text"] for b in
                                                       m["card"].get("buttons", [])]])
