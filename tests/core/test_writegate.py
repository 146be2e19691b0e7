"""The in-process SQLite write gate: FIFO hand-over, the inbox writer first, a timeout that
falls back to ungated, cancellation that never strands the gate, and wiring on a real
SQLite engine (writes from many sessions all land; the gate is free afterwards)."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from bot.writegate import WriteGate
from storage.db import async_engine


async def test_fifo_hand_over_from_the_loop():
    gate = WriteGate(timeout=2)
    assert await gate.acquire()
    order: list[int] = []

    async def writer(n: int) -> None:
        assert await gate.acquire()
        order.append(n)
        await asyncio.sleep(0.01)
        gate.release()

    tasks = [asyncio.create_task(writer(n)) for n in range(5)]
    await asyncio.sleep(0.05)
    assert order == []  # all wait while the gate is held
    gate.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert await gate.acquire()  # free again
    gate.release()


async def test_a_waiter_past_its_timeout_goes_ungated_and_the_queue_moves_on():
    gate = WriteGate(timeout=0.2)
    assert await gate.acquire()
    late = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0.3)  # the holder keeps it past the waiter's timeout
    assert late.done() and late.result() is False  # goes ahead without the gate
    nxt = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0.02)
    gate.release()  # handed to the next waiter, not to the one that gave up
    assert await nxt is True
    gate.release()
    assert await gate.acquire()  # free again
    gate.release()


async def test_a_cancelled_waiter_never_strands_the_gate():
    gate = WriteGate(timeout=5)
    assert await gate.acquire()
    waiter = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0.02)
    waiter.cancel()
    gate.release()
    try:
        await waiter
    except asyncio.CancelledError:
        pass
    assert await asyncio.wait_for(gate.acquire(), 1)  # nobody holds it
    gate.release()


async def test_gated_engine_serialises_writes_and_frees_the_gate(tmp_path):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    engine = async_engine(url)
    gate = WriteGate(timeout=5)
    gate.install(engine)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (n INTEGER)"))

        async def write(n: int) -> None:
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
                await asyncio.sleep(0.005)  # hold the transaction across an await

        await asyncio.gather(*(write(n) for n in range(40)))
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 40
        assert await asyncio.wait_for(gate.acquire(), 1)  # every writer gave it back
        gate.release()
    finally:
        await engine.dispose()
