"""The funnel read from stage history (``sales.funnel``): reached/conversion count where deals
have been (a lost deal counts up to where it was lost), time in stage is the gap between
transitions, and a won deal closes on the date of its transition — not on its last update."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from sales.funnel import closed, reach, time_in_stage
from sales.stage_history import change_deal
from storage.models import Deal

T0 = datetime(2027, 1, 1, tzinfo=UTC)


async def walk(db, org, owner: int, path: list[tuple[int, str]], amount: float = 1000) -> Deal:
    """A deal created on day path[0][0] in stage path[0][1], then moved on each later day."""
    deal = Deal(customer_id=org.customer, title=f"deal {path}")
    for i, (day, stage) in enumerate(path):
        with time_machine.travel(T0 + timedelta(days=day), tick=False):
            extra = {"amount": amount, "owner_id": owner} if i == 0 else {}
            await change_deal(db, deal, who=owner, source="chat", stage=stage, **extra)
            deal.last_activity_at = datetime.now(UTC)
            await db.commit()
    return deal


@pytest.fixture
async def deals(db, org):
    a, b = org.reps
    # won: lead 0 → qualified 10 → proposal 20 → negotiation 25 → won 30 (2027-01-31)
    won = await walk(db, org, a, [(0, "lead"), (10, "qualified"), (20, "proposal"),
                                  (25, "negotiation"), (30, "won")], amount=5000)
    # lost after reaching proposal (2027-02-28 → lost on 2027-03-31)
    await walk(db, org, a, [(0, "lead"), (58, "proposal"), (89, "lost")], amount=700)
    await walk(db, org, b, [(5, "lead"), (15, "qualified")])  # still open
    await walk(db, org, b, [(59, "lead")])  # created in March: after a February cut-off
    return won


async def test_reach_counts_the_stages_deals_passed_through(db, org, deals):
    everyone = {r.stage: (r.reached, r.conversion) for r in
                await reach(db, None, datetime(2027, 4, 1, tzinfo=UTC))}
    assert everyone["lead"] == (4, None)
    assert everyone["qualified"] == (3, 3 / 4)  # won, lost (skipped through), open
    assert everyone["proposal"] == (2, 2 / 3)
    assert everyone["negotiation"] == (1, 1 / 2)
    assert everyone["won"] == (1, 1.0)
    # as of 2027-02-01 the March deal did not exist and the lost one was still at lead
    feb = {r.stage: r.reached for r in await reach(db, None, datetime(2027, 2, 1, tzinfo=UTC))}
    assert feb == {"lead": 3, "qualified": 2, "proposal": 1, "negotiation": 1, "won": 1}
    only_b = {r.stage: r.reached for r in await reach(db, [org.reps[1]],
                                                       datetime(2027, 4, 1, tzinfo=UTC))}
    assert only_b == {"lead": 2, "qualified": 1, "proposal": 0, "negotiation": 0, "won": 0}
    assert all(r.reached == 0 for r in await reach(db, [], datetime(2027, 4, 1, tzinfo=UTC)))


async def test_time_in_stage_is_the_gap_to_the_next_transition(db, org, deals):
    q1 = await time_in_stage(db, None, T0, datetime(2027, 4, 1, tzinfo=UTC))
    assert q1["lead"][0] == 3  # left lead: won deal (10 d), lost deal (58 d), open deal (10 d)
    assert q1["lead"][1] == pytest.approx((10 + 58 + 10) / 3)
    assert q1["proposal"] == (2, pytest.approx((5 + 31) / 2))
    assert q1["negotiation"] == (1, pytest.approx(5))
    assert "won" not in q1 and "lost" not in q1  # never left
    jan = await time_in_stage(db, None, T0, datetime(2027, 2, 1, tzinfo=UTC))
    assert jan["lead"] == (2, pytest.approx(10))  # the lost deal left lead only in February


async def test_won_and_lost_close_on_the_transition_date(db, org, deals):
    # the won deal's last update moves to March; it still closed in January
    deals.last_activity_at = datetime(2027, 3, 15, tzinfo=UTC)
    db.add(deals)
    await db.commit()
    jan = await closed(db, None, T0, datetime(2027, 2, 1, tzinfo=UTC))
    assert (jan.won, jan.won_amount, jan.lost) == (1, 5000, 0)
    assert jan.cycle_days == pytest.approx(30)
    # the last day of the quarter (2027-03-31) belongs to the quarter
    march = await closed(db, None, datetime(2027, 3, 1, tzinfo=UTC),
                         datetime(2027, 4, 1, tzinfo=UTC))
    assert (march.won, march.lost, march.lost_amount, march.cycle_days) == (0, 1, 700, None)
    assert (await closed(db, [org.reps[1]], T0, datetime(2028, 1, 1, tzinfo=UTC))).won == 0
