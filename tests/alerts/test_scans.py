"""Each alert fires at its threshold and not before; cooldown, snooze, quiet hours and
routing hold; dormant customers are tagged and untagged. Frozen clock, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from jobs.runner import DONE
from tests.alerts.conftest import NOW, days_ago, to_ids

pytestmark = pytest.mark.dates  # expectations relative to today: see tests/conftest.py


def day(n: int) -> datetime:
    return NOW + timedelta(days=n)


async def test_stale_deal_yellow_at_20_red_at_30_with_cooldown(env):
    env.deal(idle_days=19)
    r = await env.jobs.run("stale", now=NOW)
    assert r["cards"] == 0 and env.outbox() == []  # 19 days: not yet

    r = await env.jobs.run("stale", now=day(1))  # 20 days
    assert r["alerts"] == 1 and r["cards"] == 1
    (row,) = env.outbox()
    assert row["target"]["id"] == "zhangsan"  # yellow → owner only
    assert "20 天无进展" in row["card"]["text"] and row["card"]["color"] == "orange"
    assert row["key"].startswith(f"alert:stale:user:{env.ids['rep']}:2026-06-02:")

    for n in (2, 3):  # within the 3-day cooldown, still yellow: quiet
        r = await env.jobs.run("stale", now=day(n))
        assert r["cards"] == 0 and r["suppressed"] == 1
    r = await env.jobs.run("stale", now=day(4))  # cooldown over: reminded, new content
    assert r["cards"] == 1
    texts = [o["card"]["text"] for o in env.outbox()]
    assert "23 天无进展" in texts[1] and texts[0] != texts[1]

    r = await env.jobs.run("stale", now=day(5))
    assert r["cards"] == 0
    r = await env.jobs.run("stale", now=day(11))  # 30 days: red, worse → at once
    assert r["cards"] == 2
    red = env.outbox()[-2:]
    assert to_ids(red) == ["wangjl", "zhangsan"]  # red → owner + manager
    assert all("🔴" in o["card"]["text"] and o["card"]["color"] == "red" for o in red)
    mgr_card = next(o for o in red if o["target"]["id"] == "wangjl")["card"]
    assert any("转给" in b["text"] for b in mgr_card["buttons"])  # managers may reassign
    owner_card = next(o for o in red if o["target"]["id"] == "zhangsan")["card"]
    assert not any("转给" in b["text"] for b in owner_card["buttons"])


async def test_closed_and_fresh_deals_never_alert_and_per_stage_thresholds(env):
    env.deal(idle_days=200, stage="won")
    env.deal(idle_days=200, stage="lost")
    env.deal(idle_days=5)
    env.deal(idle_days=11, stage="negotiation", title="谈判中")
    env.rules({"stale": {"per_stage": {"negotiation": {"yellow_days": 10, "red_days": 15}}}})
    r = await env.jobs.run("stale", now=NOW)
    assert r["alerts"] == 1
    (row,) = env.outbox()
    assert "谈判中" in row["card"]["text"] and "11 天" in row["card"]["text"]


async def test_one_card_per_destination_per_run(env):
    for i in range(25):
        env.deal(idle_days=20 + i, title=f"项目{i}")
    r = await env.jobs.run("stale", now=NOW)
    assert r["alerts"] == 25
    rows = env.outbox()
    # owner gets one card with all 25 (10 shown + "另有"), manager one with the red ones
    assert to_ids(rows) == ["wangjl", "zhangsan"] and r["cards"] == 2
    owner = next(o for o in rows if o["target"]["id"] == "zhangsan")["card"]
    assert owner["title"] == "商机停滞提醒 · 25 个"
    assert "…另有 15 项" in owner["text"]
    assert owner["text"].index("44 天") < owner["text"].index("35 天")  # worst first
    assert 0 < len(owner["buttons"]) <= 6


async def test_rerun_and_second_run_same_day_never_enqueue_twice(env):
    env.deal(idle_days=25)
    r1 = await env.jobs.run("stale", now=NOW)
    assert r1["cards"] == 1
    assert await env.jobs.run("stale", now=NOW + timedelta(hours=1)) == DONE
    # even if the run record and state were lost, the outbox key stops a duplicate
    with env.sync.begin() as c:
        c.execute(text("DELETE FROM job_runs"))
        c.execute(text("DELETE FROM alert_state"))
    r2 = await env.jobs.run("stale", now=NOW + timedelta(hours=2))
    assert r2["alerts"] == 1 and r2["cards"] == 0
    assert len(env.outbox()) == 1


async def test_overdue_ladder_1_7_30_with_outstanding_amount(env):
    today = NOW.date()
    env.invoice(due=today, amount=80000, paid=20000, number="INV-9")
    r = await env.jobs.run("overdue", now=NOW)
    assert r["alerts"] == 0  # due today: not overdue yet
    env.invoice(due=today - timedelta(days=40), amount=50000, paid_at=NOW, number="PAID")

    seen = []
    for n in range(1, 32):
        r = await env.jobs.run("overdue", now=day(n))
        if r["cards"]:
            seen.append((n, sorted(o["target"]["id"] for o in env.outbox()
                                   if f"{day(n).date()}" in o["key"])))
    assert seen == [(1, ["zhangsan"]), (7, ["zhangsan"]), (14, ["zhangsan"]),
                    (21, ["zhangsan"]), (28, ["zhangsan"]),
                    (30, ["likj", "wangjl", "zhangsan"])]
    texts = [o["card"]["text"] for o in env.outbox()]
    assert "逾期 1 天" in texts[0] and "未收 ¥6.0万" in texts[0]
    assert "逾期 7 天" in texts[1] and "逾期 30 天" in texts[-1]
    assert all("PAID" not in t for t in texts)
    assert any("催款" in b["text"] for b in env.outbox()[0]["card"]["buttons"])


async def test_fully_paid_invoice_is_not_overdue(env):
    today = NOW.date()
    env.invoice(due=today - timedelta(days=10), amount=1000, paid=1000)
    r = await env.jobs.run("overdue", now=NOW)
    assert r["alerts"] == 0


async def test_snooze_holds_then_expires(env):
    did = env.deal(idle_days=20)
    until = NOW + timedelta(days=7)
    with env.sync.begin() as c:
        c.execute(text("INSERT INTO alert_state (rule, entity_id, level, value, active,"
                       " snoozed_until, updated_at) VALUES ('stale', :e, 0, 0, false, :u, :n)"),
                  {"e": did, "u": until.isoformat(sep=" ") if "sqlite" in env.url else until,
                   "n": NOW.isoformat(sep=" ") if "sqlite" in env.url else NOW})
    for n in range(0, 7):
        r = await env.jobs.run("stale", now=day(n))
        assert r["cards"] == 0, n
    r = await env.jobs.run("stale", now=day(7))
    assert r["cards"] == 1


async def test_quiet_hours_delay_delivery_to_morning(env):
    env.deal(idle_days=20)
    late = datetime(2026, 6, 1, 14, 30, tzinfo=UTC)  # 22:30 in Shanghai
    r = await env.jobs.run("stale", now=late)
    assert r["cards"] == 1
    (row,) = env.outbox()
    next_at = row["next_at"]
    if isinstance(next_at, str):
        next_at = datetime.fromisoformat(next_at)
    if next_at.tzinfo is None:
        next_at = next_at.replace(tzinfo=UTC)
    assert next_at == datetime(2026, 6, 2, 0, 0, tzinfo=UTC)  # 08:00 local next morning


async def test_routing_rules_team_chat_and_by_region(env):
    env.rules({"routes": [
        {"alert": "stale", "region": "华北", "to": ["owner"]},
        {"alert": "stale", "team_id": env.ids["team"], "to": ["team_chat"]},
    ]})
    env.deal(idle_days=21)
    r = await env.jobs.run("stale", now=NOW)
    (row,) = env.outbox()
    assert row["target"] == {"platform": "wecom", "app_id": "corp1", "kind": "chat",
                             "id": "chat-east", "extra": {}}
    assert r["cards"] == 1


async def test_dormant_customer_tagged_then_untagged(env):
    cid = env.customer("沉睡公司", last=days_ago(89))
    r = await env.jobs.run("dormant", now=NOW)
    assert r["tagged"] == 0
    r = await env.jobs.run("dormant", now=day(1))
    assert r["tagged"] == 1 and r["cards"] == 1
    (row,) = env.outbox()
    assert row["target"]["id"] == "zhangsan" and "沉睡公司 已 90 天无互动" in row["card"]["text"]
    tags = env.sql("SELECT tags FROM customers WHERE id=:i", i=cid)[0][0]
    assert "休眠客户" in (tags if isinstance(tags, list) else __import__("json").loads(tags))
    r = await env.jobs.run("dormant", now=day(2))  # stays tagged, owner not told again
    assert r["tagged"] == 0 and r["cards"] == 0
    with env.sync.begin() as c:  # a visit brings it back
        c.execute(text("UPDATE customers SET last_activity_at=:t WHERE id=:i"),
                  {"t": day(2).isoformat(sep=" ") if "sqlite" in env.url else day(2), "i": cid})
    r = await env.jobs.run("dormant", now=day(3))
    assert r["untagged"] == 1
    tags = env.sql("SELECT tags FROM customers WHERE id=:i", i=cid)[0][0]
    assert "休眠客户" not in (tags if isinstance(tags, list) else __import__("json").loads(tags))


async def test_health_score_grades_and_drop_alerts_manager(env):
    from config.alert_rules import default_rules
    from jobs.alerts import health_score

    rules = default_rules()
    score, comp = health_score(rules, won_12m=1_000_000, invoices_due=4, on_time=4,
                               days_since_activity=3, months_active=12, monthly_cv=0.0,
                               strategic_rating=5)
    assert score == 100 and rules.health.grade(score) == "A"
    score, comp = health_score(rules, won_12m=0, invoices_due=4, on_time=1,
                               days_since_activity=60, months_active=2, monthly_cv=1.0,
                               strategic_rating=3)
    assert score < 70 and rules.health.grade(score) == "C"
    assert comp["timeliness"]["why"] == "1/4 张发票按期付款" and comp["volume"]["weight"] == 0.3
    assert rules.health.grade(84.9) == "B" and rules.health.grade(85) == "A"

    cid = env.customer("健康公司", last=days_ago(1), strategic_rating=5)
    env.deal(idle_days=10, stage="won", customer=cid, amount=2_000_000)
    r = await env.jobs.run("health", now=NOW)
    assert r["scored"] == 1 and r["cards"] == 0  # first score: no drop
    (score1, grade1), = env.sql("SELECT score, grade FROM customer_health WHERE customer_id=:i",
                                i=cid)
    assert score1 >= 70
    with env.sync.begin() as c:  # the deal is gone, the customer went quiet
        c.execute(text("DELETE FROM deals"))
        c.execute(text("UPDATE customers SET strategic_rating=1"))
    r = await env.jobs.run("health", now=day(1))
    (row,) = env.outbox()
    assert row["target"]["id"] == "wangjl"  # the owner's manager
    assert "健康公司 健康度" in row["card"]["text"] and "主要失分" in row["card"]["text"]


async def test_digest_one_card_per_manager(env):
    for i in range(12):
        env.deal(idle_days=i * 3, stage=["lead", "proposal", "negotiation"][i % 3],
                 owner="rep" if i % 2 else "rep2", amount=10000 * (i + 1))
    env.deal(idle_days=3, stage="won", amount=300000)
    env.deal(idle_days=4, stage="lost")
    env.invoice(due=NOW.date() - timedelta(days=10), amount=50000, number="X")
    r = await env.jobs.run("digest", now=NOW)
    assert r["digests"] == 1
    (row,) = env.outbox()
    card = row["card"]
    assert row["target"]["id"] == "wangjl" and card["title"] == "团队日报 · 2026-06-01"
    assert "转化率 50%" in card["text"] and "张三：" in card["text"] and "赵六：" in card["text"]
    fields = {f["label"]: f["value"] for f in card["fields"]}
    assert fields["停滞商机"].startswith("5 个") and fields["逾期未收"] == "¥5.0万（1 笔）"
    assert await env.jobs.run("digest", now=NOW) == DONE


async def test_scan_plans_use_partial_indexes(env):
    """The stale and overdue scans read through the partial indexes (RELIABILITY.md §2)."""
    from jobs.alerts import overdue_query, stale_query

    def plan(stmt) -> str:
        sql = str(stmt.compile(env.sync, compile_kwargs={"literal_binds": True}))
        with env.sync.connect() as c:
            if "sqlite" in env.url:
                return " | ".join(r[-1] for r in c.execute(text("EXPLAIN QUERY PLAN " + sql)))
            c.execute(text("SET enable_seqscan = off"))  # tiny tables: make usability visible
            return " | ".join(r[0] for r in c.execute(text("EXPLAIN " + sql)))

    assert "ix_deals_open_activity" in plan(stale_query(NOW - timedelta(days=20)))
    assert "ix_invoices_unpaid_due" in plan(overdue_query(NOW.date()))
