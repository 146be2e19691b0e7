"""Retention: the inbox and the outbox lose what is finished and old (an hourly job).

**Inbox.** Every acknowledged callback leaves an ``inbox_events`` row (its unique key is what
turns a platform retry into a no-op) and, once handled, an ``inbox_done`` guard row. Both are
only needed while a platform may still retry (minutes to hours; Feishu's last retry comes
about 7 hours after the first try), so handled rows received more than
``FIELDBOT_INBOX_KEEP_DAYS`` ago go with their guards. Pending and failed rows stay: the
sweeper's and an operator's.

**Outbox.** Sent messages older than ``FIELDBOT_OUTBOX_KEEP_DAYS`` go, except those an open
approval card still needs: its platform handle (message id, response code) for the next card
update is in its outbox row's ``result``. Dead (undeliverable) rows stay for an operator.

A purge never holds a write lock for long (on SQLite the inbox file's lock is the
acknowledgement path's): a binary search over ids finds the first row inside the window (the
time column grows with the id), then chunks are read first and deleted each in its own short
transaction. Several processes may run it at once: every delete is guarded by status and id.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, text
from sqlalchemy.sql.elements import TextClause

from storage.models import UTCDateTime

CHUNK = 2000


@dataclass(frozen=True)
class _Table:
    bounds: TextClause  # SELECT min(id), max(id)
    first: TextClause  # the time (it grows with the id) of the first row with id >= :m, as t
    pick: TextClause  # SELECT id, key … WHERE id < :f AND (time) < :cut … LIMIT :n
    drop: TextClause  # DELETE … WHERE id IN :ids (still guarded by status)
    guards: TextClause | None = None  # DELETE keyed by the picked keys, a second transaction


def _table(bounds: str, first: str, pick: str, drop: str, guards: str = "") -> _Table:
    """The statements, compiled once; times bound and read as UTC on both engines."""
    return _Table(
        text(bounds), text(first).columns(t=UTCDateTime()),
        text(pick).bindparams(bindparam("cut", type_=UTCDateTime())),
        text(drop).bindparams(bindparam("ids", expanding=True)),
        text(guards).bindparams(bindparam("keys", expanding=True)) if guards else None)


INBOX = _table(
    "SELECT min(id), max(id) FROM inbox_events",
    "SELECT received_at AS t FROM inbox_events WHERE id >= :m ORDER BY id LIMIT 1",
    "SELECT id, dedupe_key FROM inbox_events WHERE status='done' AND id < :f"
    " AND received_at < :cut ORDER BY id LIMIT :n",
    "DELETE FROM inbox_events WHERE id IN :ids AND status='done'",
    # the rows first: a guard left behind only blocks a run that cannot happen any more
    "DELETE FROM inbox_done WHERE dedupe_key IN :keys")
OUTBOX = _table(
    "SELECT min(id), max(id) FROM outbox",
    "SELECT created_at AS t FROM outbox WHERE id >= :m ORDER BY id LIMIT 1",
    "SELECT id, idem_key FROM outbox WHERE status='sent' AND id < :f AND created_at < :cut"
    " AND NOT EXISTS (SELECT 1 FROM approval_cards c WHERE c.outbox_key = outbox.idem_key"
    " AND NOT c.closed) ORDER BY id LIMIT :n",
    "DELETE FROM outbox WHERE id IN :ids AND status='sent'")


async def purge_inbox(engine, now: datetime, days: int, chunk: int = CHUNK) -> int:
    """Delete handled callbacks received before ``now - days`` and their guards; returns how
    many callbacks went. ``days`` <= 0 keeps everything."""
    return await _purge(engine, INBOX, now, days, chunk)


async def purge_outbox(engine, now: datetime, days: int, chunk: int = CHUNK) -> int:
    """Delete messages sent before ``now - days`` that no open approval card refers to;
    returns how many went. ``days`` <= 0 keeps everything."""
    return await _purge(engine, OUTBOX, now, days, chunk)


async def _purge(engine, table: _Table, now: datetime, days: int, chunk: int) -> int:
    if days <= 0:
        return 0
    cut = now - timedelta(days=days)
    async with engine.connect() as conn:
        frontier = await _frontier(conn, table, cut)
    total = 0
    while frontier is not None:
        async with engine.connect() as conn:  # read first: no write lock while it scans
            rows = (await conn.execute(table.pick, {"f": frontier, "cut": cut, "n": chunk})).all()
        if not rows:
            break
        async with engine.begin() as conn:
            res = await conn.execute(table.drop, {"ids": [r[0] for r in rows]})
            total += int(res.rowcount or 0)
        if table.guards is not None:
            async with engine.begin() as conn:
                await conn.execute(table.guards, {"keys": [r[1] for r in rows]})
        if len(rows) < chunk:
            break
        await asyncio.sleep(0)  # let other writers in between chunks
    return total


async def _frontier(conn, table: _Table, cut: datetime) -> int | None:
    """The smallest id whose row (or the next one after it) was made at or after ``cut``;
    None when the table is empty. A dozen point reads for millions of rows."""
    lo, hi = (await conn.execute(table.bounds)).one()
    if lo is None:
        return None
    hi += 1  # past the last row: everything may go
    while lo < hi:
        mid = (lo + hi) // 2
        got = (await conn.execute(table.first, {"m": mid})).scalar()
        if got is None or got >= cut:
            hi = mid
        else:
            lo = mid + 1
    return lo

