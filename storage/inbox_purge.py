"""Retention of the inbox: handled callbacks older than the window are deleted.

Every acknowledged callback leaves an ``inbox_events`` row (its unique key is what turns a
platform retry into a no-op) and, once handled, an ``inbox_done`` guard row. Both are only
needed while a platform may still retry (minutes to hours; Feishu's last retry comes after
about 7 hours), so rows received more than ``FIELDBOT_INBOX_KEEP_DAYS`` ago that are done are
deleted; pending and failed rows are kept for the sweeper and for an operator to read.

The purge never holds a write lock for long (on SQLite that lock is the acknowledgement
path's): it finds the first row inside the window with a binary search over ids (received_at
grows with the id), then deletes in chunks, each in its own short transaction, reading the
chunk before the write. Safe to run on several processes at once: every delete is guarded by
``status='done'`` and by id.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import DateTime, bindparam, text

CHUNK = 2000
_FIRST_FROM = text("SELECT received_at FROM inbox_events WHERE id >= :m ORDER BY id LIMIT 1")
_BOUNDS = text("SELECT min(id), max(id) FROM inbox_events")
_PICK = text("SELECT id, dedupe_key FROM inbox_events WHERE status='done' AND id < :f"
             " AND received_at < :cut ORDER BY id LIMIT :n").bindparams(
    bindparam("cut", type_=DateTime(timezone=True)))
_DROP_ROWS = text("DELETE FROM inbox_events WHERE id IN :ids AND status='done'").bindparams(
    bindparam("ids", expanding=True))
_DROP_GUARDS = text("DELETE FROM inbox_done WHERE dedupe_key IN :keys").bindparams(
    bindparam("keys", expanding=True))


async def purge_inbox(engine, now: datetime, days: int, chunk: int = CHUNK) -> int:
    """Delete handled callbacks received before ``now - days``; returns how many went.
    ``days`` <= 0 keeps everything."""
    if days <= 0:
        return 0
    cut = now - timedelta(days=days)
    async with engine.connect() as conn:
        frontier = await _frontier(conn, cut)
    total = 0
    while frontier is not None:
        async with engine.connect() as conn:  # read first: no write lock while it scans
            rows = (await conn.execute(_PICK, {"f": frontier, "cut": cut, "n": chunk})).all()
        if not rows:
            break
        # the rows first: a guard left behind only blocks a run that cannot happen any more
        async with engine.begin() as conn:
            res = await conn.execute(_DROP_ROWS, {"ids": [r[0] for r in rows]})
            total += int(res.rowcount or 0)
        async with engine.begin() as conn:
            await conn.execute(_DROP_GUARDS, {"keys": [r[1] for r in rows]})
        if len(rows) < chunk:
            break
        await asyncio.sleep(0)  # let acknowledgements in between chunks
    return total


async def _frontier(conn, cut: datetime) -> int | None:
    """The smallest id whose row (or the next one after it) was received at or after
    ``cut``; None when the table is empty. A dozen point reads for millions of rows."""
    lo, hi = (await conn.execute(_BOUNDS)).one()
    if lo is None:
        return None
    hi += 1  # past the last row: everything may go
    while lo < hi:
        mid = (lo + hi) // 2
        got = (await conn.execute(_FIRST_FROM, {"m": mid})).scalar()
        if got is None or _as_dt(got) >= cut:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _as_dt(value) -> datetime:
    """A timestamp as read back: PostgreSQL gives datetimes, SQLite the stored text."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)

