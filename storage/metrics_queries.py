"""Read-only figures for ``/metrics``: queue depths, lag, dead letters, jobs, sessions.

Each is one cheap aggregate over an indexed status column; run at scrape time (every 15–60 s).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

_CODE = re.compile(r"errcode (-?\d+)|HTTP \d{3} ([A-Za-z][\w.]+)|HTTP (\d{3})|code[=: ]+(\w+)")


def error_code(error: str) -> str:
    """The platform's code in an outbox error line ("60020", "Forbidden.AccessDenied…")."""
    m = _CODE.search(error or "")
    if not m:
        return "other"
    return next(g for g in m.groups() if g)[:60]


def _age_s(oldest: Any, now: datetime) -> float:
    if oldest is None:
        return 0.0
    if isinstance(oldest, str):
        oldest = datetime.fromisoformat(oldest)
    if oldest.tzinfo is None:
        now = now.replace(tzinfo=None)
    return max(0.0, (now - oldest).total_seconds())


async def snapshot(engine, now: datetime) -> dict[str, Any]:
    async with engine.connect() as conn:
        inbox = (await conn.execute(text(
            "SELECT count(*), min(received_at) FROM inbox_events WHERE status='pending'"))).one()
        failed = (await conn.execute(text(
            "SELECT count(*) FROM inbox_events WHERE status='failed'"))).scalar_one()
        outbox = (await conn.execute(text(
            "SELECT platform, count(*), min(created_at) FROM outbox WHERE status='pending'"
            " GROUP BY platform"))).all()
        dead = (await conn.execute(text(
            "SELECT platform, last_error FROM outbox WHERE status='dead'"))).all()
        jobs = (await conn.execute(text(
            "SELECT name, status, count(*), min(created_at) FROM jobs"
            " WHERE status IN ('pending', 'failed') GROUP BY name, status"))).all()
        runs = (await conn.execute(text(
            "SELECT r.name, c.n, r.started_at, r.finished_at FROM job_runs r JOIN ("
            "SELECT name, count(*) AS n, max(id) AS last_id FROM job_runs"
            " WHERE finished_at IS NOT NULL GROUP BY name) c ON r.id = c.last_id"))).all()
        durations = (await conn.execute(text(
            "SELECT name, count(*), avg(run_ms), max(run_ms) FROM jobs"
            " WHERE status IN ('done', 'failed') AND next_at > :since AND run_ms IS NOT NULL"
            " GROUP BY name"),
            {"since": now - timedelta(hours=1)})).all()
        sessions = (await conn.execute(text(
            "SELECT count(*) FROM web_sessions WHERE revoked_at IS NULL AND expires_at > :n"),
            {"n": now})).scalar_one()
    dead_by: dict[tuple[str, str], int] = {}
    for platform, err in dead:
        key = (platform, error_code(err))
        dead_by[key] = dead_by.get(key, 0) + 1
    return {
        "inbox_pending": inbox[0], "inbox_lag_s": _age_s(inbox[1], now),
        "inbox_failed": failed,
        "outbox_pending": {p: n for p, n, _o in outbox},
        "outbox_lag_s": {p: _age_s(o, now) for p, _n, o in outbox},
        "outbox_dead": dead_by,
        "jobs": {(name, status): n for name, status, n, _o in jobs},
        "jobs_lag_s": {name: _age_s(o, now) for name, status, _n, o in jobs
                       if status == "pending"},
        "sessions": sessions,
        "scheduled_runs": {name: n for name, n, _s, _f in runs},
        "scheduled_last_s": {name: _span_s(s0, f) for name, _n, s0, f in runs},
        "job_runs_1h": {name: n for name, n, _a, _m in durations},
        "job_avg_s": {name: float(a or 0) / 1000 for name, _n, a, _m in durations},
        "job_max_s": {name: float(m or 0) / 1000 for name, _n, _a, m in durations},
    }


def _span_s(start: Any, end: Any) -> float:
    if isinstance(start, str):
        start = datetime.fromisoformat(start)
    if isinstance(end, str):
        end = datetime.fromisoformat(end)
    if start is None or end is None:
        return 0.0
    if (start.tzinfo is None) != (end.tzinfo is None):
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    return max(0.0, (end - start).total_seconds())
