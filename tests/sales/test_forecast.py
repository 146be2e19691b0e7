"""The forecast (issue 17 §4): stage probabilities learned from a generated history whose true
probabilities are known, the weighted and category forecasts, Monday snapshots and the
accuracy of a closed period — all on a ``today`` passed in, never the clock."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select

from sales.forecast import (
    DEFAULT_PROBABILITIES,
    MIN_CLOSED,
    accuracy,
    company_forecast,
    learn,
    parse_category,
    take_snapshot,
)
from sales.periods import Period
from storage.models import Deal
from storage.sales_models import DealHistory, ForecastSnapshot

TZ = ZoneInfo("Asia/Shanghai")
TODAY = date(2027, 3, 10)
STEP = {"lead": 0.5, "qualified": 0.6, "proposal": 0.7, "negotiation": 0.8}  # → next stage
LADDER = ("lead", "qualified", "proposal", "negotiation", "won")


def truth() -> dict[str, float]:
    """p(won | reached stage) = the product of the step odds from that stage on."""
    out = {}
    for i, s in enumerate(LADDER[:-1]):
        p = 1.0
        for t in LADDER[i:-1]:
            p *= STEP[t]
        out[s] = p
    return out


def at(d: date, hour: int = 10) -> datetime:
    return datetime.combine(d, time(hour), tzinfo=TZ).astimezone(UTC)


async def closed_history(db, owner: int, customer: int, n: int, today: date, seed: int = 7):
    """``n`` deals closed in the last 12 months, each walking the ladder with ``STEP``'s odds
    and lost where it stops."""
    rnd = random.Random(seed)
    conn = await db.connection()
    first = (await conn.execute(select(Deal.id).order_by(Deal.id.desc()).limit(1))).scalar()
    deals, hist = [], []
    for k in range(n):
        start = today - timedelta(days=rnd.randint(30, 330))
        stages = ["lead"]
        while stages[-1] != "won" and rnd.random() < STEP[stages[-1]]:
            stages.append(LADDER[LADDER.index(stages[-1]) + 1])
        final = "won" if stages[-1] == "won" else "lost"
        if final == "lost":
            stages.append("lost")
        did = (first or 0) + k + 1
        deals.append({"id": did, "customer_id": customer, "owner_id": owner,
                      "title": f"deal {did}", "stage": final, "amount": 1000.0,
                      "last_activity_at": at(start + timedelta(days=len(stages))),
                      "created_at": at(start), "forecast_category": "pipeline"})
        prev = None
        for j, s in enumerate(stages):
            hist.append({"deal_id": did, "field": "stage", "old": prev, "new": s, "who": "",
                         "source": "import", "at": at(start + timedelta(days=j))})
            prev = s
    await conn.execute(insert(Deal.__table__), deals)
    await conn.execute(insert(DealHistory.__table__), hist)
    await db.commit()


async def test_learned_probabilities_come_within_five_points_of_the_truth(db, org):
    await closed_history(db, org.reps[0], org.customer, 2000, TODAY)
    p = await learn(db, [org.reps[0]], TODAY, TZ)
    assert p.basis == "learned" and p.closed == 2000
    for stage, true_p in truth().items():
        assert abs(p.by_stage[stage] - true_p) <= 0.05, (stage, p.by_stage[stage], true_p)
    assert "2000" in p.label


async def test_few_closed_deals_fall_back_to_the_defaults_and_say_so(db, org):
    await closed_history(db, org.reps[0], org.customer, 10, TODAY)
    p = await learn(db, [org.reps[0]], TODAY, TZ)
    assert p.basis == "default" and p.closed == 10 < MIN_CLOSED
    assert p.by_stage == DEFAULT_PROBABILITIES
    assert "默认" in p.label and "default" in p.label


async def test_deals_closed_over_a_year_ago_are_not_learned_from(db, org):
    await closed_history(db, org.reps[0], org.customer, 40, TODAY - timedelta(days=400))
    p = await learn(db, [org.reps[0]], TODAY, TZ)
    assert p.closed == 0 and p.basis == "default"


def _deal(org, owner, stage, amount, close, cat="pipeline"):
    return Deal(customer_id=org.customer, owner_id=owner, title=f"{stage} {amount}",
                stage=stage, amount=amount, expected_close=close, forecast_category=cat)


@pytest.mark.parametrize("today,inside,outside", [
    (date(2027, 1, 31), date(2027, 1, 31), date(2027, 2, 1)),    # a month's last day
    (date(2027, 3, 1), date(2027, 3, 1), date(2027, 2, 28)),     # the first
    (date(2028, 2, 29), date(2028, 2, 29), date(2028, 3, 1)),    # a leap day
    (date(2026, 12, 31), date(2026, 12, 31), date(2027, 1, 1)),  # the year's end
])
async def test_weighted_and_category_forecast_of_a_month(db, org, today, inside, outside):
    a, b = org.reps
    db.add_all([_deal(org, a, "negotiation", 10_000, inside, "commit"),
                _deal(org, a, "proposal", 4_000, inside, "best_case"),
                _deal(org, a, "lead", 2_000, inside),
                _deal(org, a, "qualified", 8_000, inside, "omitted"),
                _deal(org, a, "negotiation", 50_000, outside, "commit"),  # another month
                _deal(org, b, "proposal", 6_000, inside, "commit")])
    won = _deal(org, b, "won", 3_000, inside)
    won.created_at = at(inside)  # the history row the hook writes: won that day
    db.add(won)
    await db.commit()
    fc = await company_forecast(db, Period.of("month", today), today, TZ)
    pa, pb = fc.people[a], fc.people[b]
    d = DEFAULT_PROBABILITIES  # this team has no closed history
    assert pa.basis == "default"
    assert pa.won == 0 and pa.weighted == pytest.approx(
        10_000 * d["negotiation"] + 4_000 * d["proposal"] + 2_000 * d["lead"])
    assert (pa.commit, pa.best_case, pa.pipeline) == (10_000, 14_000, 16_000)
    assert pb.won == 3_000 and pb.commit == 9_000
    assert pb.weighted == pytest.approx(3_000 + 6_000 * d["proposal"])
    team = fc.teams[org.team]
    assert team.weighted == pytest.approx(pa.weighted + pb.weighted)
    assert fc.total.commit == team.commit == 19_000


async def test_monday_snapshot_then_the_closed_months_accuracy(db, org):
    a, b = org.reps
    monday = date(2027, 3, 1)
    d = DEFAULT_PROBABILITIES
    n1 = _deal(org, a, "negotiation", 10_000, date(2027, 3, 20), "commit")
    p1 = _deal(org, b, "proposal", 20_000, date(2027, 3, 25), "best_case")
    db.add_all([n1, p1])
    await db.commit()
    wrote = await take_snapshot(db, monday, TZ, kinds=("month",))
    await db.commit()
    assert wrote and await take_snapshot(db, monday, TZ, kinds=("month",)) == 0
    # during March: the negotiation deal is won for 12,000, the proposal lost
    for deal, stage, amount in ((n1, "won", 12_000), (p1, "lost", 20_000)):
        deal.stage, deal.amount = stage, amount
        db.add(DealHistory(deal_id=deal.id, field="stage", old="x", new=stage, who="",
                           source="web", at=at(date(2027, 3, 22))))
        db.add(deal)
    await db.commit()
    march = Period("month", monday)
    assert await accuracy(db, march, date(2027, 3, 31), TZ, "team", {org.team: org.reps}) == []
    got = {r.method: r for r in await accuracy(db, march, date(2027, 4, 1), TZ, "team",
                                               {org.team: org.reps})}
    weighted = 10_000 * d["negotiation"] + 20_000 * d["proposal"]  # 17,500
    assert got["weighted"].actual == 12_000 and got["weighted"].snapshots == 1
    assert got["weighted"].accuracy == pytest.approx(1 - abs(weighted - 12_000) / 12_000)
    assert got["commit"].accuracy == pytest.approx(1 - 2_000 / 12_000)
    assert got["best_case"].accuracy == pytest.approx(max(0, 1 - 18_000 / 12_000))
    rows = (await db.exec(select(ForecastSnapshot.scope, ForecastSnapshot.period_start)
                          .where(ForecastSnapshot.method == "weighted"))).all()
    assert {(s, p) for s, p in rows} >= {("company", date(2027, 3, 1)),
                                         ("company", date(2027, 4, 1)),
                                         ("team", date(2027, 3, 1))}


def test_category_words():
    assert parse_category("commit") == parse_category("承诺") == "commit"
    assert parse_category("Best case") == parse_category("best-case") == "best_case"
    assert parse_category("排除") == "omitted" and parse_category("maybe") is None
