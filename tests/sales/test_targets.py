"""Targets (``sales.targets``, ``sales.periods``): periods and their elapsed share across
month, quarter and year ends and a leap day; versioned, audited changes; a team's target
defaulting to its members' sum with an explicit one winning; even splits that sum exactly;
copying last quarter across a year end."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import time_machine
from sqlmodel import select

from sales.periods import Period
from sales.targets import (
    Actor,
    copy_last_quarter,
    even_split,
    explicit,
    set_target,
    split_quarter,
    team_target,
    user_targets,
)
from storage.models import AuditLog
from storage.sales_models import SalesTarget

ADMIN = Actor(None, "admin-test")


@pytest.mark.parametrize(("today", "kind", "start", "end", "share"), [
    (date(2027, 1, 31), "month", date(2027, 1, 1), date(2027, 1, 31), 1.0),
    (date(2027, 1, 31), "quarter", date(2027, 1, 1), date(2027, 3, 31), 31 / 90),
    (date(2027, 3, 31), "quarter", date(2027, 1, 1), date(2027, 3, 31), 1.0),
    (date(2027, 12, 31), "year", date(2027, 1, 1), date(2027, 12, 31), 1.0),
    (date(2027, 12, 31), "quarter", date(2027, 10, 1), date(2027, 12, 31), 1.0),
    (date(2028, 2, 29), "month", date(2028, 2, 1), date(2028, 2, 29), 1.0),
    (date(2028, 2, 29), "quarter", date(2028, 1, 1), date(2028, 3, 31), 60 / 91),
    (date(2028, 2, 29), "year", date(2028, 1, 1), date(2028, 12, 31), 60 / 366),
    (date(2027, 1, 1), "month", date(2027, 1, 1), date(2027, 1, 31), 1 / 31),
    (date(2027, 4, 1), "quarter", date(2027, 4, 1), date(2027, 6, 30), 1 / 91),
    (date(2028, 1, 1), "year", date(2028, 1, 1), date(2028, 12, 31), 1 / 366),
])
def test_periods_and_elapsed_share_at_period_edges(today, kind, start, end, share):
    with time_machine.travel(datetime(2030, 6, 15, tzinfo=UTC), tick=False):  # clock unused
        p = Period.of(kind, today)
        assert (p.start, p.end) == (start, end)
        assert p.elapsed_share(today) == pytest.approx(share)
        assert p.elapsed_share(start.replace(year=start.year - 1)) == 0
        assert p.elapsed_share(p.next_start) == 1


def test_a_period_must_start_on_its_first_day():
    with pytest.raises(ValueError):
        Period("quarter", date(2027, 2, 1))
    assert Period("quarter", date(2027, 10, 1)).previous() == Period("quarter", date(2027, 7, 1))
    assert Period("quarter", date(2028, 1, 1)).previous().start == date(2027, 10, 1)


@pytest.mark.parametrize(("total", "n"), [(100_000.01, 9), (1, 3), (0, 4), (99.99, 7)])
def test_even_split_sums_exactly(total, n):
    parts = even_split(total, n)
    assert len(parts) == n
    assert round(sum(parts), 2) == round(total, 2)
    assert max(parts) - min(parts) <= 0.01 + 1e-9


async def test_changes_are_versioned_and_audited_and_the_latest_wins(db, org):
    rep = org.reps[0]
    jan = Period("month", date(2027, 1, 1))
    for value in (50_000, 60_000, 60_000):
        await set_target(db, scope="user", scope_id=rep, period=jan, metric="won", value=value,
                         actor=Actor(org.manager))
        await db.commit()
    versions = (await db.exec(select(SalesTarget.version, SalesTarget.value).where(
        SalesTarget.scope_id == rep).order_by(SalesTarget.version))).all()
    assert [tuple(v) for v in versions] == [(1, 50_000), (2, 60_000)]  # the repeat: no row
    assert await user_targets(db, [rep], jan, "won") == {rep: 60_000}
    audits = (await db.exec(select(AuditLog).where(AuditLog.action == "target.set"))).all()
    assert [(a.actor_id, a.detail["old"], a.detail["new"]) for a in audits] == [
        (org.manager, None, 50_000), (org.manager, 50_000, 60_000)]
    with pytest.raises(ValueError):
        await set_target(db, scope="user", scope_id=rep, period=jan, metric="won", value=-1,
                         actor=ADMIN)


async def test_team_target_defaults_to_members_sum_and_explicit_wins(db, org):
    a, b = org.reps
    q1 = Period("quarter", date(2027, 1, 1))
    # a: a quarter target; b: only monthly targets (rolled up); the manager: none
    await set_target(db, scope="user", scope_id=a, period=q1, metric="won", value=90_000,
                     actor=ADMIN)
    for m, v in zip(q1.months(), (10_000, 20_000, 30_000), strict=True):
        await set_target(db, scope="user", scope_id=b, period=Period("month", m),
                         metric="won", value=v, actor=ADMIN)
    await db.commit()
    t = await team_target(db, org.team, q1, "won")
    assert (t.explicit, t.members, t.value, t.gap) == (None, 150_000, 150_000, None)
    await set_target(db, scope="team", scope_id=org.team, period=q1, metric="won",
                     value=200_000, actor=ADMIN)
    await db.commit()
    t = await team_target(db, org.team, q1, "won")
    assert (t.explicit, t.members, t.value, t.gap) == (200_000, 150_000, 200_000, 50_000)
    # a year rolls up from its quarters; other metrics are separate
    year = await team_target(db, org.team, Period("year", date(2027, 1, 1)), "won")
    assert (year.explicit, year.members) == (200_000, 150_000)
    assert (await team_target(db, org.team, q1, "collected")).value is None


async def test_split_the_team_quarter_over_people_and_months(db, org):
    q4 = Period("quarter", date(2027, 10, 1))
    await set_target(db, scope="team", scope_id=org.team, period=q4, metric="collected",
                     value=300_000.02, actor=ADMIN)
    await db.commit()
    assert await split_quarter(db, org.team, q4, "collected", ADMIN, over="grid") == 9
    await db.commit()
    people = [org.manager, *org.reps]
    found = await explicit(db, "user", people, "collected", q4.start, q4.end)
    assert len(found) == 9 and {k[1] for k in found} == {"month"}
    assert round(sum(found.values()), 2) == 300_000.02
    t = await team_target(db, org.team, q4, "collected")
    assert round(t.members, 2) == 300_000.02 and abs(t.gap) < 0.005
    assert await split_quarter(db, org.team, q4, "collected", ADMIN, over="grid") == 0  # same
    assert await split_quarter(db, org.team, q4, "collected", ADMIN, over="months") == 3
    await db.commit()
    months = await explicit(db, "team", [org.team], "collected", q4.start, q4.end)
    assert sorted(k[2] for k in months if k[1] == "month") == q4.months()
    with pytest.raises(ValueError):
        await split_quarter(db, org.team, Period("quarter", date(2028, 1, 1)), "won", ADMIN)


async def test_copy_last_quarter_across_the_year_end(db, org):
    q4, q1 = Period("quarter", date(2027, 10, 1)), Period("quarter", date(2028, 1, 1))
    rep = org.reps[0]
    await set_target(db, scope="team", scope_id=org.team, period=q4, metric="won",
                     value=120_000, actor=ADMIN)
    await set_target(db, scope="user", scope_id=rep, period=Period("month", date(2027, 12, 1)),
                     metric="won", value=7_000, actor=ADMIN)
    await db.commit()
    assert await copy_last_quarter(db, org.team, q1, "won", ADMIN) == 2
    await db.commit()
    assert (await team_target(db, org.team, q1, "won")).explicit == 120_000
    assert await user_targets(db, [rep], Period("month", date(2028, 3, 1)), "won") == {
        rep: 7_000}
    assert await copy_last_quarter(db, org.team, q1, "won", ADMIN) == 0  # idempotent
