"""Stage history (``sales.stage_history``): each change of stage, amount or owner is recorded
exactly once with who and from where, whichever writer makes it (the domain call, a plain ORM
write caught by the safety net, a bulk insert); the migration's backfill is idempotent."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime

import time_machine
from sqlalchemy import func, insert, text
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from sales.stage_history import change_deal, record_inserted
from storage.db import async_engine, sync_engine
from storage.models import Deal
from storage.sales_models import DealHistory

MIGRATION = importlib.import_module("storage.migrations.versions.0007_stage_history_targets")


async def history(db, deal_id: int) -> list[tuple]:
    rows = (await db.exec(select(DealHistory.field, DealHistory.old, DealHistory.new,
                                 DealHistory.who, DealHistory.source)
                          .where(DealHistory.deal_id == deal_id)
                          .order_by(DealHistory.id))).all()
    return [tuple(r) for r in rows]


async def test_a_deal_moved_across_stages_records_each_transition_once(db, org):
    rep, other = org.reps
    with time_machine.travel(datetime(2027, 1, 31, 15, 59, tzinfo=UTC), tick=False):
        deal = Deal(customer_id=org.customer, title="数控机床")
        await change_deal(db, deal, who=rep, source="chat", stage="lead", amount=100_000,
                          owner_id=rep)
        await db.commit()
    for day, stage in ((datetime(2027, 2, 1, 1, tzinfo=UTC), "qualified"),
                       (datetime(2027, 3, 31, 15, tzinfo=UTC), "proposal"),
                       (datetime(2027, 12, 31, 15, tzinfo=UTC), "won")):
        with time_machine.travel(day, tick=False):
            changed = await change_deal(db, deal, who=rep, source="card", stage=stage)
            assert list(changed) == ["stage"]
            # the same value again (a retried tap, a re-sent API call) records nothing
            assert await change_deal(db, deal, who=rep, source="card", stage=stage) == {}
            await db.commit()
    await change_deal(db, deal, who="api", source="api", amount=120_000.0, owner_id=other,
                      title="数控机床二期")
    await db.commit()
    assert await history(db, deal.id) == [
        ("stage", None, "lead", str(rep), "chat"),
        ("stage", "lead", "qualified", str(rep), "card"),
        ("stage", "qualified", "proposal", str(rep), "card"),
        ("stage", "proposal", "won", str(rep), "card"),
        ("amount", "100000", "120000", "api", "api"),
        ("owner", str(rep), str(other), "api", "api"),
    ]
    ats = (await db.exec(select(DealHistory.at).where(DealHistory.deal_id == deal.id,
                                                      DealHistory.field == "stage")
                         .order_by(DealHistory.at))).all()
    assert ats[0] == datetime(2027, 1, 31, 15, 59, tzinfo=UTC)
    assert ats[-1] == datetime(2027, 12, 31, 15, tzinfo=UTC)


async def test_an_orm_write_that_skips_the_domain_is_still_recorded_once(db, org):
    """The safety net: a writer that sets attributes directly (like the demo seed)."""
    deal = Deal(customer_id=org.customer, title="刀具", stage="proposal", amount=5000,
                owner_id=org.reps[0], created_at=datetime(2028, 2, 29, 2, tzinfo=UTC))
    db.add(deal)
    await db.commit()
    deal.stage = "negotiation"
    deal.title = "刀具（改）"  # not tracked
    await db.commit()
    deal.stage = "negotiation"  # unchanged: nothing
    await db.commit()
    assert await history(db, deal.id) == [("stage", None, "proposal", "", "system"),
                                          ("stage", "proposal", "negotiation", "", "system")]
    first = (await db.exec(select(DealHistory.at).where(DealHistory.deal_id == deal.id)
                           .order_by(DealHistory.id))).first()
    assert first == datetime(2028, 2, 29, 2, tzinfo=UTC)  # the deal's creation


async def test_bulk_insert_records_one_row_per_new_deal_and_only_once(db, org):
    conn = await db.connection()
    before = (await conn.execute(select(func.coalesce(func.max(Deal.id), 0)))).scalar_one()
    await conn.execute(insert(Deal.__table__), [
        {"customer_id": org.customer, "title": f"批量 {i}", "stage": "qualified", "amount": i,
         "owner_id": org.reps[i % 2], "last_activity_at": datetime.now(UTC),
         "created_at": datetime.now(UTC)} for i in range(50)])
    at = datetime(2027, 3, 31, 16, tzinfo=UTC)
    assert await record_inserted(conn, after_id=before, who="import", source="import",
                                 at=at) == 50
    assert await record_inserted(conn, after_id=before, who="import", source="import",
                                 at=at) == 0
    await db.commit()
    rows = (await db.exec(select(DealHistory.source, DealHistory.new, func.count(),
                                 func.count(func.distinct(DealHistory.deal_id)))
                          .group_by(DealHistory.source, DealHistory.new))).all()
    assert [tuple(r) for r in rows] == [("import", "qualified", 50, 50)]


def test_backfill_adds_one_row_per_existing_deal_and_is_idempotent(db_url):
    from alembic import command
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    from storage.db import normalize
    from storage.migrate import alembic_config

    sync, _ = normalize(db_url)
    cfg = alembic_config(sync.render_as_string(hide_password=False))
    command.upgrade(cfg, "0006")
    eng = sync_engine(db_url)
    created = datetime(2027, 12, 31, 23, tzinfo=UTC)
    try:
        with eng.begin() as conn:
            cid = conn.execute(text("INSERT INTO customers (name, short_name, region, tags, "
                                    "strategic_rating, created_at) VALUES "
                                    "('甲', '', '', '[]', 3, :c) RETURNING id"),
                               {"c": created.isoformat()}).scalar_one()
            for i, stage in enumerate(("lead", "won", "lost")):
                # plain SQL with the 0006 columns: the model has columns of later revisions
                conn.execute(text("INSERT INTO deals (customer_id, title, stage, amount, "
                                  "last_activity_at, created_at) VALUES "
                                  "(:c, :t, :s, 1, :at, :at)"),
                             {"c": cid, "t": f"d{i}", "s": stage, "at": created.isoformat()})
        command.upgrade(cfg, "0007")
        count = "SELECT count(*), count(DISTINCT deal_id) FROM deal_history WHERE source = " \
                "'migration'"
        with eng.connect() as conn:
            assert tuple(conn.execute(text(count)).one()) == (3, 3)
            news = sorted(r[0] for r in conn.execute(text("SELECT new FROM deal_history")))
            assert news == ["lead", "lost", "won"]
        with eng.begin() as conn:  # the backfill again: nothing added
            with Operations.context(MigrationContext.configure(conn)):
                MIGRATION.backfill()
        with eng.connect() as conn:
            assert tuple(conn.execute(text(count)).one()) == (3, 3)
    finally:
        eng.dispose()


async def test_sessions_on_another_engine_share_the_rows(db_url, db, org):
    """Rows written by one session are what a fresh session reads (no in-memory state)."""
    deal = Deal(customer_id=org.customer, title="x")
    await change_deal(db, deal, who=org.reps[0], source="web", stage="lead")
    await db.commit()
    engine = async_engine(db_url)
    try:
        async with AsyncSession(engine) as other:
            assert await history(other, deal.id) == [
                ("stage", None, "lead", str(org.reps[0]), "web")]
    finally:
        await engine.dispose()


async def test_a_csv_import_of_deals_records_one_row_each(db_url, db, org):
    from webapp.importer import run_import

    csv = ("customer,title,stage,amount\n" + "".join(
        f"华东精密,导入 {i},{'won' if i % 2 else 'lead'},{i * 100}\n" for i in range(30))
        ).encode()
    engine = async_engine(db_url)
    try:
        report = await run_import(engine, "deals", csv, "deals.csv", org.manager)
        assert report.ok, report.problems if hasattr(report, "problems") else report
        bad = await run_import(engine, "deals", csv + "华东精密,x,nope,1\n".encode(), "d.csv",
                               org.manager)
        assert not bad.ok
    finally:
        await engine.dispose()
    rows = (await db.exec(select(DealHistory.source, DealHistory.new, func.count())
                          .group_by(DealHistory.source, DealHistory.new)
                          .order_by(DealHistory.new))).all()
    assert [tuple(r) for r in rows] == [("import", "lead", 15), ("import", "won", 15)]
