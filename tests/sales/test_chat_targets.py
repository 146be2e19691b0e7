"""``目标`` / ``target`` in chat, through the real dispatcher: a rep sees their own won vs
target and the pace on the first day of the month (the dispatcher's clock is frozen at
2026-06-01 10:00 local); a rep without targets is told so. And a deal handed to another rep
from an alert card records one owner transition (source card, who = the manager)."""

from __future__ import annotations

import json
from datetime import date, timedelta

from bot.app import INGRESS
from bot.event import ChatRef, Event
from storage.models import Deal
from storage.sales_models import SalesTarget
from tests.alerts.conftest import NOW, env  # noqa: F401 - the fixture
from tests.alerts.test_actions import app, buttons  # noqa: F401 - the fixture


async def say(app, sender: str, text: str, n: int) -> None:  # noqa: F811
    ev = Event(platform="wecom", app_id="corp1", event_id=f"say{n}", sender=sender,
               chat=ChatRef(id=sender, type="p2p"), text=text)
    new, _ = await app.app[INGRESS].submit(ev)
    assert new
    await app.dispatcher.drain()


def replies(env, to: str) -> list[dict]:  # noqa: F811
    rows = env.sql("SELECT target, message FROM outbox WHERE idem_key LIKE 'in:%' ORDER BY id")
    out = []
    for target, message in rows:
        t = json.loads(target) if isinstance(target, str) else target
        m = json.loads(message) if isinstance(message, str) else message
        if t["id"] == to:
            out.append(m)
    return out


async def test_target_command_shows_own_attainment_and_pace(env, app):  # noqa: F811
    rep = env.ids["rep"]
    cid = env.customer()
    env.add(SalesTarget(scope="user", scope_id=rep, period_kind="month",
                        period_start=date(2026, 6, 1), metric="won", value=100_000),
            # another rep's deal and target: not in 张三's figures
            SalesTarget(scope="user", scope_id=env.ids["rep2"], period_kind="month",
                        period_start=date(2026, 6, 1), metric="won", value=1))
    at = NOW - timedelta(hours=1)  # 09:00 local on June 1st
    env.add(Deal(customer_id=cid, owner_id=rep, title="A", stage="won", amount=62_000,
                 created_at=at, last_activity_at=at),
            Deal(customer_id=cid, owner_id=env.ids["rep2"], title="B", stage="won",
                 amount=5, created_at=at, last_activity_at=at),
            Deal(customer_id=cid, owner_id=rep, title="C", stage="won", amount=999,
                 created_at=NOW - timedelta(days=3), last_activity_at=at))  # May
    await say(app, "zhangsan", "目标", 1)
    card = replies(env, "zhangsan")[-1]["card"]
    fields = {f["label"]: f["value"] for f in card["fields"]}
    assert fields["本月 This month 赢单 Won"] == "¥6.2万 / ¥10.0万"
    assert fields["本月 This month 达成 Pace"] == \
        "达成 62 %，本月已过 3 % / 62 % at 3 % of the month"
    # the quarter: May's deal too; its target is the sum of its months' (June's only)
    assert fields["本季度 This quarter 赢单 Won"] == "¥6.3万 / ¥10.0万"
    await say(app, "zhaoliu", "target", 2)  # English word; a rep with only a tiny target
    other = replies(env, "zhaoliu")[-1]["card"]
    assert {f["label"]: f["value"] for f in other["fields"]}["本月 This month 赢单 Won"] == \
        "¥5 / ¥1"


async def test_target_command_without_targets(env, app):  # noqa: F811
    await say(app, "wangjl", "目标", 1)
    card = replies(env, "wangjl")[-1]["card"]
    assert "还没有为你设定目标" in card["text"]


async def test_reassign_from_an_alert_card_records_one_owner_transition(env, app):  # noqa: F811
    did = env.deal(idle_days=31)
    await env.jobs.run("stale", now=NOW)
    mgr_card = next(o for o in env.outbox() if o["target"]["id"] == "wangjl")["card"]
    await app.tap("wangjl", buttons(mgr_card, app.secret)["转给…"])
    picker = [json.loads(m) if isinstance(m, str) else m for (m,) in env.sql(
        "SELECT message FROM outbox WHERE idem_key LIKE 'in:%' ORDER BY id")][-1]["card"]
    names = {b["text"]: b["action"] for b in picker["buttons"]}
    assert (await app.tap("wangjl", names["赵六"])).kind == "success"
    assert env.sql("SELECT field, old, new, who, source FROM deal_history WHERE deal_id = :d "
                   "AND field = 'owner'", d=did) == [
        ("owner", str(env.ids["rep"]), str(env.ids["rep2"]), str(env.ids["mgr"]), "card")]
