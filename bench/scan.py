"""Alert scans at scale: stale deals, overdue invoices and the digest build, with and without
the issue-5 partial indexes, on SQLite and PostgreSQL, through the project's real code.

    python bench/scan.py                       # 1M deals + 1M invoices, SQLite and PostgreSQL
    python bench/scan.py --rows 100000 --db sqlite
    python bench/scan.py --db postgresql --pg-admin postgresql://postgres@127.0.0.1:5432/test

The schema comes from the Alembic migrations (``storage.migrate.upgrade``); rows are bulk
loaded (executemany / COPY). Data: 200 reps in 20 teams, N/10 customers; deals 40 % open
(8 % of those idle 20–365 days: ~3 % stale), 35 % won, 25 % lost; invoices 5 % unpaid with due
dates uniform in [-180, +60] days (~3.7 % unpaid and past due).

Cases (warm cache, best of --repeat):
- ``stale_count`` / ``overdue_count``: the scan predicate alone (``SELECT count(*)``), which is
  what the index changes;
- ``stale_scan`` = ``jobs.alerts.scan_stale`` (query + per-deal decision), ``overdue_scan`` =
  ``scan_overdue``, ``digest_build`` = ``build_digest`` for one manager (10 reps);
- ``stale_run``: a full stale run (decisions, one card per destination, alert state for every
  alerted deal) in a rolled-back transaction.
Baseline = the same with the partial indexes dropped (the schema before issue 5). The last
lines are one JSON object per (db, case): ``indexed_s``, ``baseline_s``, ``ratio`` = baseline /
indexed, ``matches`` and the query plan.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select, text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession  # noqa: E402

from config.alert_rules import default_rules  # noqa: E402
from jobs import alerts  # noqa: E402
from jobs.targets import load_org  # noqa: E402
from storage.db import async_engine, sync_engine  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import Deal, Invoice  # noqa: E402

NOW = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
STAGES_OPEN = ["lead", "qualified", "proposal", "negotiation"]
INDEXES = {
    "ix_deals_open_activity": "CREATE INDEX ix_deals_open_activity ON deals (last_activity_at)"
                              " WHERE stage NOT IN ('won', 'lost')",
    "ix_invoices_unpaid_due": "CREATE INDEX ix_invoices_unpaid_due ON invoices (due_date)"
                              " WHERE paid_at IS NULL",
}
TEAMS, REPS_PER_TEAM = 20, 10


def _ts(db: str, dt: datetime):
    if db == "sqlite":  # SQLAlchemy's SQLite DateTime layout (naive UTC)
        return dt.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ",
                                                                timespec="microseconds")
    return dt


def _d(db: str, d):
    return d.isoformat() if db == "sqlite" else d


def gen(n: int, seed: int = 5):
    rnd = random.Random(seed)
    reps = TEAMS * REPS_PER_TEAM
    n_cust = max(1, n // 10)
    customers = []
    for i in range(1, n_cust + 1):
        owner = TEAMS + 1 + (i % reps)
        customers.append((i, f"客户{i}", "", "华东", owner, "[]", 3,
                          NOW - timedelta(days=rnd.uniform(0, 200)), NOW - timedelta(days=400)))
    deals, invoices = [], []
    for i in range(1, n + 1):
        r = rnd.random()
        stage = (STAGES_OPEN[int(r / 0.1)] if r < 0.4 else "won" if r < 0.75 else "lost")
        if stage in STAGES_OPEN and rnd.random() < 0.92:
            age = rnd.uniform(0, 19.9)
        else:
            age = rnd.uniform(20, 365)
        cust = 1 + (i % n_cust)
        owner = customers[cust - 1][4]
        deals.append((i, cust, owner, f"项目{i}", stage, round(rnd.uniform(1e3, 1e6), 2),
                      NOW - timedelta(days=age), NOW - timedelta(days=age + 10)))
        due = (NOW - timedelta(days=rnd.uniform(-60, 180))).date()
        amount = round(rnd.uniform(1e3, 1e6), 2)
        if rnd.random() < 0.05:
            paid, paid_at = round(amount * rnd.choice([0, 0, 0.5]), 2), None
        else:
            paid, paid_at = amount, NOW - timedelta(days=rnd.uniform(0, 200))
        invoices.append((i, cust, i, f"INV-{i}", amount, paid, due, paid_at))
    return customers, deals, invoices


ORG_COLS = {
    "teams": "id, name, region",
    "users": "id, name, role, team_id, manager_id, active, created_at",
    "customers": "id, name, short_name, region, owner_id, tags, strategic_rating,"
                 " last_activity_at, created_at",
    "identities": "id, user_id, platform, app_id, external_id, display_name",
    "deals": "id, customer_id, owner_id, title, stage, amount, last_activity_at, created_at",
    "invoices": "id, customer_id, deal_id, number, amount, paid_amount, due_date, paid_at",
}


def load(url: str, db: str, n: int) -> float:
    eng = sync_engine(url)
    t0 = time.perf_counter()
    customers, deals, invoices = gen(n)
    teams = [(t, f"团队{t}", "华东") for t in range(1, TEAMS + 1)]
    users = [(t, f"经理{t}", "manager", t, None, True, NOW) for t in range(1, TEAMS + 1)]
    for k in range(TEAMS * REPS_PER_TEAM):
        uid = TEAMS + 1 + k
        team = 1 + k // REPS_PER_TEAM
        users.append((uid, f"销售{uid}", "rep", team, team, True, NOW))
    conv = {
        "customers": lambda r: (*r[:7], _ts(db, r[7]), _ts(db, r[8])),
        "deals": lambda r: (*r[:6], _ts(db, r[6]), _ts(db, r[7])),
        "invoices": lambda r: (*r[:6], _d(db, r[6]), _ts(db, r[7]) if r[7] else None),
        "users": lambda r: (*r[:6], _ts(db, r[6])),
        "teams": lambda r: r,
        "identities": lambda r: r,
    }
    identities = [(u[0], u[0], "wecom", "corp1", f"u{u[0]}", u[1]) for u in users]
    raw = eng.raw_connection()
    try:
        cur = raw.cursor()
        for table, rows in (("teams", teams), ("users", users), ("identities", identities),
                            ("customers", customers),
                            ("deals", deals), ("invoices", invoices)):
            cols = ORG_COLS[table]
            if db == "sqlite":
                marks = ",".join("?" * len(cols.split(",")))
                for i in range(0, len(rows), 100_000):
                    cur.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})",
                                    [conv[table](r) for r in rows[i:i + 100_000]])
            else:
                with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as cp:
                    for r in rows:
                        cp.write_row(conv[table](r))
            raw.commit()
        cur.execute("UPDATE teams SET manager_id = id")
        raw.commit()
    finally:
        raw.close()
    with eng.begin() as c:
        c.execute(text("ANALYZE"))
    eng.dispose()
    return time.perf_counter() - t0


def set_indexes(url: str, on: bool) -> None:
    eng = sync_engine(url)
    with eng.begin() as c:
        for name, ddl in INDEXES.items():
            c.execute(text(f"DROP INDEX IF EXISTS {name}"))
            if on:
                c.execute(text(ddl))
        c.execute(text("ANALYZE"))
    eng.dispose()


def plan(url: str, db: str, stmt) -> str:
    eng = sync_engine(url)
    try:
        sql = str(stmt.compile(eng, compile_kwargs={"literal_binds": True}))
        with eng.connect() as c:
            if db == "sqlite":
                return " | ".join(r[-1] for r in c.execute(text("EXPLAIN QUERY PLAN " + sql)))
            rows = [r[0].strip() for r in c.execute(text("EXPLAIN " + sql))]
            return " | ".join(r for r in rows if "Scan" in r or "Join" in r)[:300]
    finally:
        eng.dispose()


async def measure(url: str, db: str, repeat: int) -> dict:
    eng = async_engine(url)
    rules = default_rules()
    out: dict = {}
    try:
        async with AsyncSession(eng) as session:
            org = await load_org(session)
        manager = min(org.managers())

        async def timed(case: str, fn):
            best, result = float("inf"), None
            for _ in range(repeat):
                async with AsyncSession(eng) as session:
                    async with session.begin():
                        rc = alerts.RunCtx(session=session, rules=rules, now=NOW, secret=b"x",
                                           dialect=db, org=org)
                        t0 = time.perf_counter()
                        result = await fn(rc)
                        best = min(best, time.perf_counter() - t0)
                        await session.rollback()
            out[case] = (best, result)

        cut = NOW - timedelta(days=rules.stale.min_days)
        due = NOW.date() - timedelta(days=rules.overdue.ladder[0])

        async def stale_count(rc):
            return (await rc.session.execute(select(func.count()).select_from(Deal).where(
                alerts.OPEN_DEALS, Deal.last_activity_at <= cut))).scalar()

        async def overdue_count(rc):
            return (await rc.session.execute(select(func.count()).select_from(Invoice).where(
                alerts.UNPAID, Invoice.due_date <= due,
                Invoice.paid_amount < Invoice.amount))).scalar()

        await timed("stale_count", stale_count)
        await timed("overdue_count", overdue_count)
        await timed("stale_scan", lambda rc: alerts.scan_stale(rc))
        await timed("overdue_scan", lambda rc: alerts.scan_overdue(rc))
        await timed("digest_build", lambda rc: alerts.build_digest(rc, manager))
        await timed("stale_run", lambda rc: alerts.run_stale(rc))
    finally:
        await eng.dispose()
    return out


def count(case: str, result) -> int:
    if isinstance(result, int):
        return result
    if isinstance(result, list):
        return len(result)
    if isinstance(result, dict):
        return int(result.get("alerts", 0))
    return 1 if result is not None else 0


def bench_db(db: str, n: int, repeat: int, pg_admin: str, keep: bool) -> list[dict]:
    tmp = None
    if db == "sqlite":
        tmp = tempfile.mkdtemp(prefix="fb_scan_")
        url = f"sqlite:///{tmp}/scan.db"
    else:
        import psycopg

        name = f"fb_scan_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = pg_admin.rsplit("/", 1)[0] + "/" + name
    try:
        upgrade(url)
        load_s = load(url, db, n)
        print(f"[{db}] loaded {n:,} deals + {n:,} invoices in {load_s:.1f} s", flush=True)
        res = {}
        for indexed in (True, False):
            set_indexes(url, indexed)
            res[indexed] = asyncio.run(measure(url, db, repeat))
            print(f"[{db}] indexed={indexed}: " + ", ".join(
                f"{k} {v[0] * 1000:.0f} ms" for k, v in res[indexed].items()), flush=True)
        set_indexes(url, True)
        plans = {"stale_scan": plan(url, db, alerts.stale_query(
                     NOW - timedelta(days=default_rules().stale.min_days))),
                 "overdue_scan": plan(url, db, alerts.overdue_query(NOW.date()))}
        records = []
        for case in res[True]:
            ix, base = res[True][case][0], res[False][case][0]
            records.append({"db": db, "rows": n, "case": case, "indexed_s": round(ix, 4),
                            "baseline_s": round(base, 4),
                            "ratio": round(base / ix, 2) if ix else None,
                            "matches": count(case, res[True][case][1]),
                            "target_s": 2.0, "ok": ix < 2.0, "load_s": round(load_s, 1),
                            "plan": plans.get(case, "")})
        return records
    finally:
        if not keep:
            if db == "sqlite" and tmp:
                for f in Path(tmp).iterdir():
                    f.unlink()
                os.rmdir(tmp)
            elif db != "sqlite":
                import psycopg

                with psycopg.connect(pg_admin, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}"'
                                 " WITH (FORCE)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--rows", type=int, default=1_000_000, help="deals (and invoices)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pg-admin", default=os.environ.get(
        "FIELDBOT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    a = ap.parse_args()
    if a.rows > 5_000_000:
        ap.error("--rows is capped at 5,000,000 (memory)")
    dbs = ["sqlite", "postgresql"] if a.db == "both" else [a.db]
    records = []
    for db in dbs:
        records += bench_db(db, a.rows, a.repeat, a.pg_admin, a.keep)
    for r in records:
        print(json.dumps(r, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
