"""``/metrics`` after an end-to-end run shows what happened: N callbacks accepted, a duplicate,
refusals by status, M replies through the platform API, 0 dead letters; and who may read it."""

from __future__ import annotations

import re

import aiohttp

from tests.dingtalk.conftest import start_env


def _value(text: str, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pat = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)"
    m = re.search(r"^" + pat + r"$", text, re.M)
    assert m, f"{name}{{{want}}} not in /metrics"
    return float(m.group(1))


async def test_metrics_after_an_end_to_end_run(db_url, tmp_path):
    env, sim_server = await start_env(db_url, tmp_path, dingtalk_card_callbacks="http")
    try:
        for i in range(5):
            status, _ = await env.sim.send_text(env.url, f"m{i}", f"你好 {i}", msg_id=f"mx-{i}")
            assert status == 200
        await env.sim.send_text(env.url, "m0", "你好 0", msg_id="mx-0")  # a platform retry
        forged = dict(env.sim.sign_robot(), sign="AAAA")
        status, _ = await env.sim.post_robot(env.url, b"{}", headers=forged)
        assert status == 401
        await env.wait_sent(5)
        await env.wait_idle()
        async with aiohttp.ClientSession() as s, s.get(env.bot.make_url("/metrics")) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()
    finally:
        await env.bot.close()
        await sim_server.close()
    assert _value(text, "fieldbot_callbacks_total", platform="dingtalk", outcome="accepted") == 5
    assert _value(text, "fieldbot_callbacks_total", platform="dingtalk",
                  outcome="duplicate") == 1
    assert _value(text, "fieldbot_callbacks_refused_total", platform="dingtalk",
                  status="401") == 1
    assert _value(text, "fieldbot_outbox_sent_process") == 5
    sends = _value(text, "fieldbot_platform_api_seconds_count", platform="dingtalk",
                   status="200")
    assert sends >= 6  # 5 sends + the token
    assert _value(text, "fieldbot_inbox_pending") == 0
    assert "fieldbot_outbox_dead{" not in text  # no dead letters
    assert "fieldbot_config_errors{" not in text


async def test_metrics_token_or_loopback(db_url, tmp_path):
    env, sim_server = await start_env(db_url, tmp_path, metrics_token="scrape-me",
                                      dingtalk_card_callbacks="http")
    try:
        url = env.bot.make_url("/metrics")
        async with aiohttp.ClientSession() as s:
            async with s.get(url) as r:
                assert r.status == 403  # a token is set: loopback alone is not enough
            async with s.get(url, headers={"Authorization": "Bearer wrong"}) as r:
                assert r.status == 403
            async with s.get(url, headers={"Authorization": "Bearer scrape-me"}) as r:
                assert r.status == 200 and "fieldbot_inbox_pending" in await r.text()
    finally:
        await env.bot.close()
        await sim_server.close()


def test_json_log_lines_carry_the_ids():
    import json
    import logging

    from bot.logformat import JsonFormatter, event_id, request_id

    rec = logging.LogRecord("fieldbot.x", logging.WARNING, __file__, 1, "bad 签名 %s", ("x",),
                            None)
    t1, t2 = request_id.set("req-1"), event_id.set("dingtalk:msg-9")
    try:
        line = json.loads(JsonFormatter().format(rec))
    finally:
        request_id.reset(t1)
        event_id.reset(t2)
    assert line["msg"] == "bad 签名 x" and line["level"] == "WARNING"
    assert line["request_id"] == "req-1" and line["event_id"] == "dingtalk:msg-9"
    assert "event_id" not in json.loads(JsonFormatter().format(rec))


async def test_deploy_rules_and_dashboard_use_real_series(db_url, tmp_path):
    """Every series the alert rules and the Grafana dashboard query is one /metrics serves."""
    import json
    from pathlib import Path

    import yaml

    env, sim_server = await start_env(db_url, tmp_path, dingtalk_card_callbacks="http")
    try:
        async with aiohttp.ClientSession() as s, s.get(env.bot.make_url("/metrics")) as r:
            text = await r.text()
    finally:
        await env.bot.close()
        await sim_server.close()
    served = set(re.findall(r"^# TYPE (\w+) (\w+)", text, re.M))
    names = set()
    for name, kind in served:
        names.add(name)
        if kind == "counter":
            names.add(name + "_total")
        if kind == "histogram":
            names.update(name + s for s in ("_bucket", "_count", "_sum"))
    deploy = Path(__file__).resolve().parents[2] / "deploy"
    rules = yaml.safe_load((deploy / "prometheus-alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dash = json.loads((deploy / "grafana-dashboard.json").read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {n for e in exprs for n in re.findall(r"\b(fieldbot_\w+)", e)}
    assert used and used <= names, used - names
