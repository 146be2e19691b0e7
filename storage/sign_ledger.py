"""The DingTalk HTTP robot's (timestamp, sign) pairs, shared by every web instance.

A robot callback's ``sign`` covers only its timestamp, so a captured pair could carry another
body (another sender) inside the replay window. Each pair is bound to the first body seen with
it. One web process keeps that in memory (``integrations/dingtalk/webhook.SignLedger``);
several instances behind one URL (PostgreSQL) also keep it here, with the dedupe keys in
``inbox_done``: ``dtsign:<pair>`` and ``dtsign:<pair>:<body digest>``, purged once past twice
the window.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text

PREFIX = "dtsign:"
_INSERT = ("INSERT INTO inbox_done (dedupe_key, done_at) VALUES (:k, :t)"
           " ON CONFLICT (dedupe_key) DO NOTHING")
_SEEN = "SELECT 1 FROM inbox_done WHERE dedupe_key = :k"


def bind(engine, pair: str, digest: str, now: datetime) -> bool:
    """True when ``pair`` is new (now bound to ``digest``) or already bound to ``digest``; a
    blocking call (run it in a thread). A racing twin's insert waits for the first commit,
    which holds both keys, so the answer is the same on every instance."""
    with engine.begin() as conn:
        if conn.execute(text(_INSERT), {"k": PREFIX + pair, "t": now}).rowcount == 1:
            conn.execute(text(_INSERT), {"k": f"{PREFIX}{pair}:{digest}", "t": now})
            return True
        return conn.execute(text(_SEEN), {"k": f"{PREFIX}{pair}:{digest}"}).first() is not None


async def purge(engine, now: datetime, window_s: int) -> int:
    """Drop pairs older than twice the window (the timestamp check refuses them anyway)."""
    async with engine.begin() as conn:
        res = await conn.execute(text(
            "DELETE FROM inbox_done WHERE dedupe_key >= :lo AND dedupe_key < :hi"
            " AND done_at < :cut"),
            {"lo": PREFIX, "hi": PREFIX[:-1] + ";", "cut": now - timedelta(seconds=2 * window_s)})
        return res.rowcount or 0
