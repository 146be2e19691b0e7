"""``sales.deal_forecast``: who may set a deal's forecast category and expected close date
(owner, a manager above the owner, an admin), and what the change writes (the category on the
deal; the close date as one ``deal_history`` row), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

import pytest
from sqlmodel import select

from sales.deal_forecast import may_change, open_deals_for, update_forecast
from storage.models import Customer, Deal, Team, User
from storage.sales_models import DealHistory


async def _deal(db, org, owner: int | None = None, stage="proposal", title="年度框架") -> Deal:
    d = Deal(customer_id=org.customer, owner_id=owner or org.reps[0], title=title,
             stage=stage, amount=100_000)
    db.add(d)
    await db.commit()
    return d


async def _user(db, uid: int) -> User:
    return await db.get(User, uid)


async def _history(db, deal_id: int, field: str) -> list[tuple]:
    return [(h.old, h.new, h.who, h.source) for h in (await db.exec(
        select(DealHistory).where(DealHistory.deal_id == deal_id, DealHistory.field == field)
        .order_by(DealHistory.id))).all()]


async def test_owner_sets_the_category_then_the_same_again_is_unchanged(db, org):
    deal = await _deal(db, org)
    rep = await _user(db, org.reps[0])
    res = await update_forecast(db, deal.id, rep, category="commit", source="chat")
    assert res.status == "changed" and res.ok
    assert res.changes == {"forecast_category": ["pipeline", "commit"]}
    assert res.audit_detail() == {"old": {"forecast_category": "pipeline"},
                                  "new": {"forecast_category": "commit"}}
    await db.commit()
    db.expunge_all()
    assert (await db.get(Deal, deal.id)).forecast_category == "commit"
    again = await update_forecast(db, deal.id, rep, category="commit", source="chat")
    assert again.status == "unchanged" and again.changes == {}


async def test_another_rep_is_refused_and_nothing_changes(db, org):
    deal = await _deal(db, org)
    other = await _user(db, org.reps[1])
    res = await update_forecast(db, deal.id, other, category="omitted",
                                expected_close=date(2027, 3, 20), source="web")
    assert res.status == "refused" and not res.ok and res.changes == {}
    await db.commit()
    db.expunge_all()
    row = await db.get(Deal, deal.id)
    assert (row.forecast_category, row.expected_close) == ("pipeline", None)
    assert await _history(db, deal.id, "expected_close") == []


async def test_manager_above_the_owner_and_an_admin_may_a_stranger_manager_may_not(db, org):
    deal = await _deal(db, org)
    mgr = await _user(db, org.manager)
    other_team = Team(name="华南区")
    db.add(other_team)
    await db.flush()
    stranger = User(name="南经理", role="manager", team_id=other_team.id)
    admin = User(name="管理员", role="admin")
    inactive = User(name="离职", role="admin", active=False)
    db.add_all([stranger, admin, inactive])
    await db.commit()
    assert await may_change(db, mgr, deal.owner_id)  # the owner's team's manager
    assert await may_change(db, admin, deal.owner_id)
    assert not await may_change(db, stranger, deal.owner_id)
    assert not await may_change(db, inactive, deal.owner_id)
    assert not await may_change(db, None, deal.owner_id)
    # up the chain: the VP above the team manager
    vp = User(name="王总", role="vp")
    db.add(vp)
    await db.flush()
    mgr.manager_id = vp.id
    db.add(mgr)
    await db.commit()
    assert await may_change(db, vp, deal.owner_id)
    res = await update_forecast(db, deal.id, mgr, category="best_case", source="chat")
    assert res.changes == {"forecast_category": ["pipeline", "best_case"]}


async def test_expected_close_goes_to_deal_history_once(db, org):
    deal = await _deal(db, org)
    rep = await _user(db, org.reps[0])
    when = date(2027, 3, 20)
    res = await update_forecast(db, deal.id, rep, expected_close=when, source="web")
    assert res.changes == {"expected_close": [None, when]}
    await db.commit()
    again = await update_forecast(db, deal.id, rep, expected_close=when, source="web")
    assert again.status == "unchanged"
    await db.commit()
    assert await _history(db, deal.id, "expected_close") == [
        (None, "2027-03-20", str(rep.id), "web")]
    db.expunge_all()
    assert (await db.get(Deal, deal.id)).expected_close == when


async def test_closed_deal_missing_deal_and_unknown_category(db, org):
    rep = await _user(db, org.reps[0])
    won = await _deal(db, org, stage="won")
    assert (await update_forecast(db, won.id, rep, category="commit",
                                  source="chat")).status == "closed"
    assert (await update_forecast(db, 10**9, rep, category="commit",
                                  source="chat")).status == "not_found"
    deal = await _deal(db, org)
    with pytest.raises(ValueError):
        await update_forecast(db, deal.id, rep, category="maybe", source="chat")


async def test_open_deals_for_by_customer_or_by_title(db, org):
    a = await _deal(db, org, title="数控机床配件年度框架")
    b = await _deal(db, org, title="自动化产线改造")
    await _deal(db, org, stage="lost", title="旧单")
    other = Customer(name="西子智能", owner_id=org.reps[1])
    db.add(other)
    await db.flush()
    c = Deal(customer_id=other.id, owner_id=org.reps[1], title="智能仓储试点", stage="lead")
    db.add(c)
    await db.commit()
    mine = [org.reps[0]]
    by_customer = await open_deals_for(db, "华东精密", [org.customer], mine)
    assert sorted(d.id for d, _ in by_customer) == sorted([a.id, b.id])
    assert {n for _, n in by_customer} == {"华东精密"}
    titled = await open_deals_for(db, "华东精密 自动化产线改造", [org.customer], mine)
    assert [d.id for d, _ in titled] == [b.id]
    # another rep's deal is not in my scope; anyone's (None) is searched by customer only
    assert await open_deals_for(db, "智能仓储试点", [], mine) == []
    assert [d.id for d, _ in await open_deals_for(db, "西子智能", [other.id], None)] == [c.id]
