"""The manager dashboard's attainment panel: a deal won now and a target set for this month
move the rep's row by exactly that amount; a manager sees only their team's people; the
freshness table lists the team's reps, stalest first; time in stage comes from history."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import insert

from storage.models import Deal
from storage.sales_models import DealHistory, SalesTarget
from tests.webapp.conftest import web  # noqa: F401 - the demo-stack fixture


def uid(web, name: str) -> int:  # noqa: F811
    return web.sql("SELECT id FROM users WHERE name = :n", n=name)[0][0]


def rows(html: str, kind: str) -> dict[int, tuple[float, str]]:
    return {int(u): (float(w), t) for u, w, t in re.findall(
        rf'data-att-rep="(\d+)" data-kind="{kind}" data-won="([\d.]+)" data-target="([\d.]*)"',
        html)}


async def test_panel_moves_with_a_won_deal_and_a_target(web):  # noqa: F811
    mgr = await web.client().login("lijingli")
    zhang, wang = uid(web, "张三"), uid(web, "王五")
    html = await mgr.page("/app/dashboard")
    before = rows(html, "month")
    assert zhang in before and wang not in before  # 王五 is in another team
    start = date.fromisoformat(re.search(r'data-attainment="month" data-start="([\d-]+)"',
                                         html).group(1))
    (cid,), = web.sql("SELECT min(id) FROM customers")
    now = datetime.now(UTC)

    def write(conn):
        did = conn.execute(insert(Deal).values(
            customer_id=cid, owner_id=zhang, title="刚赢的单", stage="won", amount=12_345,
            last_activity_at=now, created_at=now).returning(Deal.id)).scalar_one()
        conn.execute(insert(DealHistory), [
            {"deal_id": did, "field": "stage", "old": None, "new": "negotiation",
             "who": str(zhang), "source": "web", "at": now - timedelta(days=5)},
            {"deal_id": did, "field": "stage", "old": "negotiation", "new": "won",
             "who": str(zhang), "source": "web", "at": now}])
        conn.execute(insert(SalesTarget).values(
            scope="user", scope_id=zhang, period_kind="month", period_start=start,
            metric="won", value=100_000, version=1, created_at=now))
    await web.write(write)
    after = rows(await mgr.page("/app/dashboard"), "month")
    assert after[zhang][0] == before[zhang][0] + 12_345
    assert after[zhang][1] == "100000.00"
    html = await mgr.page("/app/dashboard")
    fresh = [int(u) for u in re.findall(r'data-fresh-rep="(\d+)"', html)]
    medians = [float(x) for x in re.findall(r'data-fresh-rep="\d+" data-median="([\d.]+)"',
                                            html)]
    assert wang not in fresh and medians == sorted(medians, reverse=True)
    # 5 days in negotiation, from the history rows (the seeded deals have one row each)
    assert 'data-stage-days="negotiation" data-value="5.0"' in html
