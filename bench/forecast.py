"""Targets, attainment and the forecast at scale (issue 17): the manager's dashboard queries
with and without the new panels, and one manager's weekly forecast figures, on SQLite and
PostgreSQL, through the project's real code.

    python bench/forecast.py                          # 1M deals, 10M history rows, both dbs
    python bench/forecast.py --deals 100000 --db sqlite
    python bench/forecast.py --db postgresql --history-per-deal 10

Data (schema from the Alembic migrations, bulk loaded with executemany / COPY): 200 reps in 20
teams with a manager each; N/10 customers; deals 40 % open (expected close uniform in the 30
days before to 120 days after today, categories 20 % commit / 20 % best case / 50 % pipeline /
10 % omitted), 35 % won and 25 % lost (closed over the last two years). Every deal walks the
stage ladder in its history (one row per stage entered, then won/lost), and the rest of its
``--history-per-deal`` rows are amount and expected-close changes; a month and quarter target
for every rep and team.

Cases, per database (warm cache; p50/p95 over ``--repeat`` runs, each in its own session):
- ``dashboard_base``: the dashboard's figures before issue 17 (funnel, collections, stale,
  per rep, grades) for a manager's team — the baseline, measured in the same run;
- ``dashboard_full``: the same plus the attainment panel (month and quarter, freshness, time in
  stage, cycle) and the forecast panel (this month and next: learned probabilities, weighted,
  categories per rep and team) — target p95 < 300 ms on PostgreSQL;
- ``weekly_card``: one manager's weekly forecast figures (this month's forecast and attainment
  of the team) — target < 100 ms.
The last lines are one JSON object per (db, case) with ``p50_s``, ``p95_s``, ``baseline_p95_s``
(dashboard_base), ``ratio`` = p95 ÷ baseline p95, the target and whether it holds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402
from sqlmodel import select  # noqa: E402
from sqlmodel.ext.asyncio.session import AsyncSession  # noqa: E402

from config import load_settings  # noqa: E402
from sales.attainment import attainment  # noqa: E402
from sales.forecast import company_forecast  # noqa: E402
from sales.periods import Period  # noqa: E402
from storage.db import async_engine, sync_engine  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import User  # noqa: E402
from webapp import dashboard_targets  # noqa: E402
from webapp import metrics as m  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2027, 3, 10, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, a Wednesday
TODAY = NOW.astimezone(TZ).date()
LADDER = ("lead", "qualified", "proposal", "negotiation")
STEP = {"lead": 0.55, "qualified": 0.6, "proposal": 0.65, "negotiation": 0.7}
CATS = ["commit"] * 2 + ["best_case"] * 2 + ["pipeline"] * 5 + ["omitted"]
TEAMS, REPS_PER_TEAM = 20, 10
CHUNK = 200_000


def _ts(db: str, dt: datetime):
    if db == "sqlite":  # SQLAlchemy's SQLite DateTime layout (naive UTC)
        return dt.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ",
                                                                timespec="microseconds")
    return dt


def _d(db: str, d: date):
    return d.isoformat() if db == "sqlite" else d


def people(db: str):
    teams = [(t, f"团队{t}", "华东") for t in range(1, TEAMS + 1)]
    users = [(t, f"经理{t}", "manager", t, None, True, _ts(db, NOW)) for t in range(1, TEAMS + 1)]
    for k in range(TEAMS * REPS_PER_TEAM):
        uid = TEAMS + 1 + k
        users.append((uid, f"销售{uid}", "rep", 1 + k // REPS_PER_TEAM, 1 + k // REPS_PER_TEAM,
                      True, _ts(db, NOW)))
    return teams, users


def deals_and_history(db: str, n: int, per_deal: int, seed: int = 11):
    """Yields (deal rows, history rows) in chunks of ``CHUNK`` deals."""
    rnd = random.Random(seed)
    reps = TEAMS * REPS_PER_TEAM
    n_cust = max(1, n // 10)
    hid = 0
    deals, hist = [], []
    for i in range(1, n + 1):
        cust = 1 + (i % n_cust)
        owner = TEAMS + 1 + (cust % reps)
        start = NOW - timedelta(days=rnd.uniform(5, 730))
        walked = ["lead"]
        r = rnd.random()
        if r < 0.4:  # open: somewhere on the ladder
            for s in LADDER[1:]:
                if rnd.random() < 0.5:
                    break
                walked.append(s)
            final = walked[-1]
        else:
            while walked[-1] != "won" and rnd.random() < STEP[walked[-1]]:
                walked.append(LADDER[LADDER.index(walked[-1]) + 1]
                              if walked[-1] != "negotiation" else "won")
            final = "won" if walked[-1] == "won" else "lost"
            if final == "lost":
                walked.append("lost")
        span = (NOW - start) / (len(walked) + 1)
        amount = round(rnd.uniform(1e3, 1e6), 2)
        close = (NOW + timedelta(days=rnd.uniform(-30, 120))).astimezone(TZ).date()
        last = start + span * len(walked)
        deals.append((i, cust, owner, f"项目{i}", final, amount, _ts(db, last), _ts(db, start),
                      _d(db, close) if final in LADDER else None,
                      rnd.choice(CATS) if final in LADDER else "pipeline"))
        prev = None
        rows = []
        for j, s in enumerate(walked):
            rows.append(("stage", prev, s, start + span * j))
            prev = s
        for j in range(max(0, per_deal - len(rows))):
            at = start + span * rnd.uniform(0, len(walked))
            if j % 2:
                rows.append(("amount", str(amount * 0.9), str(amount), at))
            else:
                rows.append(("expected_close", None, close.isoformat(), at))
        for field, old, new, at in rows:
            hid += 1
            hist.append((hid, i, field, old, new, str(owner), "import", _ts(db, at)))
        if len(deals) >= CHUNK:
            yield deals, hist
            deals, hist = [], []
    if deals:
        yield deals, hist


COLS = {
    "teams": "id, name, region",
    "users": "id, name, role, team_id, manager_id, active, created_at",
    "customers": "id, name, short_name, region, owner_id, tags, strategic_rating,"
                 " last_activity_at, created_at",
    "deals": "id, customer_id, owner_id, title, stage, amount, last_activity_at, created_at,"
             " expected_close, forecast_category",
    "deal_history": "id, deal_id, field, old, new, who, source, at",
    "sales_targets": "scope, scope_id, period_kind, period_start, metric, value, version,"
                     " created_at",
}


def _write(cur, db: str, table: str, rows) -> None:
    cols = COLS[table]
    if db == "sqlite":
        marks = ",".join("?" * len(cols.split(",")))
        cur.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)
    else:
        with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)


def load(url: str, db: str, n: int, per_deal: int) -> tuple[float, int]:
    eng = sync_engine(url)
    t0 = time.perf_counter()
    teams, users = people(db)
    rnd = random.Random(3)
    n_cust = max(1, n // 10)
    reps = TEAMS * REPS_PER_TEAM
    customers = [(i, f"客户{i}", "", "华东", TEAMS + 1 + (i % reps), "[]", 3,
                  _ts(db, NOW - timedelta(days=rnd.uniform(0, 200))),
                  _ts(db, NOW - timedelta(days=800))) for i in range(1, n_cust + 1)]
    targets = []
    for kind in ("month", "quarter"):
        for p in (Period.of(kind, TODAY), Period.of(kind, TODAY).previous()):
            scale = 3 if kind == "quarter" else 1
            targets += [("user", u[0], kind, _d(db, p.start), metric, 2e6 * scale, 1,
                         _ts(db, NOW)) for u in users[TEAMS:] for metric in ("won", "collected")]
    raw = eng.raw_connection()
    hist_rows = 0
    try:
        cur = raw.cursor()
        for table, rows in (("teams", teams), ("users", users), ("customers", customers),
                            ("sales_targets", targets)):
            _write(cur, db, table, rows)
        raw.commit()
        for deals, hist in deals_and_history(db, n, per_deal):
            _write(cur, db, "deals", deals)
            _write(cur, db, "deal_history", hist)
            hist_rows += len(hist)
            raw.commit()
            print(f"[{db}] … {deals[-1][0]:,} deals, {hist_rows:,} history rows "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        cur.execute("UPDATE teams SET manager_id = id")
        if db != "sqlite":
            cur.execute("SELECT setval('deal_history_id_seq', (SELECT max(id) FROM "
                        "deal_history))")
        raw.commit()
    finally:
        raw.close()
    with eng.begin() as c:
        c.execute(text("ANALYZE"))
    eng.dispose()
    return time.perf_counter() - t0, hist_rows


async def measure(url: str, repeat: int) -> dict[str, list[float]]:
    eng = async_engine(url)
    settings = load_settings(database_url=url)
    out: dict[str, list[float]] = {"dashboard_base": [], "dashboard_full": [],
                                   "weekly_card": []}
    try:
        async with AsyncSession(eng) as db:
            manager = (await db.exec(select(User).where(User.role == "manager")
                                     .order_by(User.id))).first()
            rules = await m.load_rules(db, settings)
            scope = await m.resolve_scope(db, manager, None)
            period = m.parse_period({}, TODAY, rules.tz)

        async def base(db):
            await m.funnel(db, scope, period)
            coll = await m.collections(db, scope, period, TODAY, rules)
            await m.stale(db, scope, rules, NOW)
            await m.per_rep(db, scope, period, rules, NOW, coll.received_source)
            await m.grades(db, scope)

        async def full(db):
            await base(db)
            await dashboard_targets.panel(db, scope.owners, scope.team_id, TODAY, rules.tz,
                                          NOW, period.t0, period.t1)
            month = Period.of("month", TODAY)
            for p in (month, Period("month", month.next_start)):
                await company_forecast(db, p, TODAY, rules.tz, owners=scope.owners)

        async def weekly(db):
            month = Period.of("month", TODAY)
            fc = await company_forecast(db, month, TODAY, rules.tz, owners=scope.owners)
            await attainment(db, sorted(fc.people), month, TODAY, rules.tz)

        cases = {"dashboard_base": base, "dashboard_full": full, "weekly_card": weekly}
        for _ in range(repeat + 1):  # the first round warms the cache and is not counted
            for name, fn in cases.items():
                async with AsyncSession(eng) as db:
                    t0 = time.perf_counter()
                    await fn(db)
                    out[name].append(time.perf_counter() - t0)
        for name in out:
            out[name] = out[name][1:]
    finally:
        await eng.dispose()
    return out


def p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


TARGETS = {"dashboard_full": 0.300, "weekly_card": 0.100}


def bench_db(db: str, n: int, per_deal: int, repeat: int, pg_admin: str, keep: bool
             ) -> list[dict]:
    tmp = None
    if db == "sqlite":
        tmp = tempfile.mkdtemp(prefix="fb_forecast_")
        url = f"sqlite:///{tmp}/forecast.db"
    else:
        import psycopg

        name = f"fb_forecast_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = pg_admin.rsplit("/", 1)[0] + "/" + name
    try:
        upgrade(url)
        load_s, hist = load(url, db, n, per_deal)
        print(f"[{db}] loaded {n:,} deals + {hist:,} history rows in {load_s:.0f} s",
              flush=True)
        res = asyncio.run(measure(url, repeat))
        base95 = p95(res["dashboard_base"])
        records = []
        for case, xs in res.items():
            target = TARGETS.get(case)
            records.append({
                "db": db, "deals": n, "history_rows": hist, "case": case,
                "p50_s": round(statistics.median(xs), 4), "p95_s": round(p95(xs), 4),
                "baseline_p95_s": round(base95, 4),
                "ratio": round(p95(xs) / base95, 2) if base95 else None,
                "target_s": target, "ok": None if target is None else p95(xs) < target,
                "runs": len(xs), "load_s": round(load_s, 1)})
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
    ap.add_argument("--deals", type=int, default=1_000_000)
    ap.add_argument("--history-per-deal", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--pg-admin", default=os.environ.get(
        "FIELDBOT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    a = ap.parse_args()
    dbs = ["sqlite", "postgresql"] if a.db == "both" else [a.db]
    records = []
    for db in dbs:
        records += bench_db(db, a.deals, a.history_per_deal, a.repeat, a.pg_admin, a.keep)
    for r in records:
        print(json.dumps(r, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
