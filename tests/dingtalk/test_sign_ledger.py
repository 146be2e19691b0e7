"""The DingTalk HTTP robot's (timestamp, sign) pairs are bound to their first body across
instances (issue 18): several web processes behind one URL share the database's ledger, so a
pair captured on one and replayed with another body on the other is refused, while the same
request re-delivered to either is still accepted (deduped later on msgId). Old pairs are
purged past twice the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from integrations.dingtalk.webhook import SignLedger
from storage.db import async_engine, sync_engine
from storage.migrate import upgrade
from storage.sign_ledger import bind, purge

NOW = datetime(2027, 3, 1, 9, 30, tzinfo=UTC)


async def test_two_instances_share_the_ledger_and_old_pairs_go(db_url):
    upgrade(db_url)
    eng = sync_engine(db_url)

    def shared(pair: str, digest: str) -> bool:
        return bind(eng, pair, digest, NOW)

    a, b = SignLedger(300, shared=shared), SignLedger(300, shared=shared)
    genuine, forged = b'{"senderStaffId": "zhangsan"}', b'{"senderStaffId": "lijingli"}'
    t = NOW.timestamp()
    assert await a.bind("1772357400000", "sig-1", genuine, t)
    assert await b.bind("1772357400000", "sig-1", genuine, t)  # re-delivered to the other one
    assert not await b.bind("1772357400000", "sig-1", forged, t)  # replayed with another body
    assert not await a.bind("1772357400000", "sig-1", forged, t)
    assert await b.bind("1772357400001", "sig-2", forged, t)  # a new pair is its own
    # without the shared ledger the second instance would have taken the forgery
    assert await SignLedger(300).bind("1772357400000", "sig-1", forged, t)
    with eng.connect() as c:
        keys = [r[0] for r in c.execute(text(
            "SELECT dedupe_key FROM inbox_done WHERE dedupe_key LIKE 'dtsign:%'"))]
    assert len(keys) == 4  # two pairs, each with its body's digest
    aeng = async_engine(db_url)
    assert await purge(aeng, NOW + timedelta(seconds=599), 300) == 0
    assert await purge(aeng, NOW + timedelta(seconds=601), 300) == 4
    await aeng.dispose()
    eng.dispose()
