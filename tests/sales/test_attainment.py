"""Attainment measures (``sales.attainment``) at the first and last day of a month, quarter
and year and on a leap day, in the company's time zone: 目标达成率 with the elapsed share,
回款达成率 and the collection rate, 人均单产 over the heads with a target, 数据鲜活性."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from sales.attainment import attainment, freshness, pace_label
from sales.periods import Period
from sales.stage_history import change_deal
from sales.targets import Actor, set_target
from storage.models import Customer, Deal, Invoice, Payment

TZ = ZoneInfo("Asia/Shanghai")
ADMIN = Actor(None, "test")


def local(y, m, d, hh=12, mm=0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=TZ)


async def won_deal(db, org, owner: int, amount: float, won_at: datetime) -> Deal:
    deal = Deal(customer_id=org.customer, title=f"won {won_at}")
    with time_machine.travel(won_at - timedelta(days=20), tick=False):
        await change_deal(db, deal, who=owner, source="chat", stage="proposal", amount=amount,
                          owner_id=owner)
    with time_machine.travel(won_at, tick=False):
        await change_deal(db, deal, who=owner, source="chat", stage="won")
    await db.commit()
    return deal


async def targets(db, org, period: Period, won: tuple, collected: tuple = (None, None)):
    for uid, w, c in zip(org.reps, won, collected, strict=True):
        if w is not None:
            await set_target(db, scope="user", scope_id=uid, period=period, metric="won",
                             value=w, actor=ADMIN)
        if c is not None:
            await set_target(db, scope="user", scope_id=uid, period=period,
                             metric="collected", value=c, actor=ADMIN)
    await db.commit()


@pytest.mark.parametrize("today", [date(2027, 1, 1), date(2027, 1, 31)])
async def test_month_attainment_and_pace_at_first_and_last_day(db, org, today):
    a, b = org.reps
    jan = Period("month", date(2027, 1, 1))
    await targets(db, org, jan, (100_000, 50_000))
    await won_deal(db, org, a, 62_000, local(2027, 1, 1, 0, 30))  # first minutes of January
    await won_deal(db, org, a, 9_999, local(2026, 12, 31, 23, 30))  # December, local time
    await won_deal(db, org, b, 20_000, local(2027, 1, 31, 23, 59))  # last minute of January
    await won_deal(db, org, b, 7_777, local(2027, 2, 1, 0, 1))  # February
    with time_machine.travel(datetime(2029, 5, 5, tzinfo=UTC), tick=False):  # clock unused
        att = await attainment(db, [a, b, org.manager], jan, today, TZ)
    by = {f.user_id: f for f in att.people}
    assert (by[a].won, by[a].attainment) == (62_000, 0.62)
    assert (by[b].won, by[b].attainment) == (20_000, 0.4)
    assert by[org.manager].won_target is None and by[org.manager].attainment is None
    assert att.total.won == 82_000 and att.total.won_target == 150_000
    elapsed = 1 / 31 if today.day == 1 else 1.0
    assert att.elapsed == pytest.approx(elapsed)
    assert att.pace == pytest.approx((82_000 / 150_000) / elapsed)
    assert att.heads == 2  # the manager has no target: not a head
    assert att.per_head == 41_000
    assert att.label.endswith(f"55 % at {elapsed * 100:.0f} % of the month")


async def test_an_explicit_team_target_and_quarter_and_year_edges(db, org):
    a, b = org.reps
    q1 = Period("quarter", date(2027, 1, 1))
    await targets(db, org, q1, (300_000, None))
    await won_deal(db, org, a, 150_000, local(2027, 3, 31, 23, 0))  # last day of Q1
    await won_deal(db, org, b, 50_000, local(2027, 4, 1, 0, 0))  # first instant of Q2
    att = await attainment(db, [a, b], q1, date(2027, 3, 31), TZ, won_target=400_000)
    assert att.total.won == 150_000 and att.total.attainment == 0.375
    assert att.elapsed == 1.0 and att.heads == 1 and att.per_head == 150_000
    q2 = await attainment(db, [a, b], Period("quarter", date(2027, 4, 1)), date(2027, 4, 1), TZ)
    assert q2.total.won == 50_000 and q2.total.won_target is None and q2.per_head is None
    assert q2.elapsed == pytest.approx(1 / 91)
    await won_deal(db, org, a, 1_000, local(2027, 12, 31, 23, 59))
    year = await attainment(db, [a], Period("year", date(2027, 1, 1)), date(2027, 12, 31), TZ)
    assert year.total.won == 151_000 and year.elapsed == 1.0


async def test_collections_on_a_leap_day(db, org):
    a, b = org.reps
    feb = Period("month", date(2028, 2, 1))
    await targets(db, org, feb, (None, None), (40_000, 10_000))
    deal = await won_deal(db, org, a, 1, local(2028, 1, 10))
    inv = [Invoice(customer_id=org.customer, deal_id=deal.id, number="I-1", amount=50_000,
                   due_date=date(2028, 2, 29)),
           Invoice(customer_id=org.customer, number="I-2", amount=30_000,
                   due_date=date(2028, 3, 1))]
    db.add_all(inv)
    await db.flush()
    db.add_all([Payment(invoice_id=inv[0].id, amount=30_000, paid_at=local(2028, 2, 29, 23)),
                Payment(invoice_id=inv[1].id, amount=5_000, paid_at=local(2028, 3, 1, 0, 5))])
    await db.commit()
    att = await attainment(db, [a, b], feb, date(2028, 2, 29), TZ)
    fa = next(f for f in att.people if f.user_id == a)
    assert (fa.collected, fa.collect_attainment, fa.due, fa.collection_rate) == (
        30_000, 0.75, 50_000, 0.6)
    assert att.total.collect_target == 50_000 and att.total.collect_attainment == 0.6
    assert att.elapsed == 1.0 and feb.days == 29


async def test_freshness_median_worst_first(db, org):
    a, b = org.reps
    now = datetime(2027, 3, 31, 4, tzinfo=UTC)
    cust = await db.get(Customer, org.customer)
    cust.last_activity_at = now - timedelta(days=10)  # a's active customer
    db.add(Customer(name="休眠的", owner_id=a, tags=["休眠客户"],
                    last_activity_at=now - timedelta(days=500)))  # dormant: not counted
    for owner, days, stage in ((a, 1, "lead"), (a, 3, "proposal"), (a, 99, "won"),
                               (b, 4, "lead"), (b, 8, "negotiation")):
        db.add(Deal(customer_id=org.customer, title=f"{owner}-{days}", stage=stage,
                    owner_id=owner, last_activity_at=now - timedelta(days=days)))
    await db.commit()
    got = await freshness(db, [a, b, org.manager], now)
    assert [(f.user_id, f.items, round(f.median_days, 6)) for f in got] == [
        (b, 2, 6.0), (a, 3, 3.0)]


def test_pace_label_is_bilingual():
    assert pace_label(0.62, 0.5, "month") == "达成 62 %，本月已过 50 % / 62 % at 50 % of the month"
    assert pace_label(None, 1, "quarter").startswith("达成 —，本季度已过 100 %")
