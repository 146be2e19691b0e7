"""Feishu's delayed card update must follow the tap's answer, never race it.

The token of a ``card.action.trigger`` updates the card (30 min, twice) — but only after the
tap's HTTP answer (or long-connection ack) went out: "并行执行或提前执行会出现更新失败或更新后立即
复原" (doc uMDO1YjLzgTN24yM4UjN). The handler's card update is queued while the answer is still
being written, so the outbox could win the race. ``TapAnswers`` closes it: the webhook (or the
long connection) calls ``expect(token)`` when a tap arrives and ``answered(token)`` once its
answer is written; the adapter's update ``wait``s for that (at most ``WAIT_S``). A token this
process never saw (a worker process delivers it) waits until ``MIN_AFTER_TAP_S`` after the
tap's arrival instead, which the tap's ``card_ref["tap_at"]`` carries.
"""

from __future__ import annotations

import asyncio
import time

WAIT_S = 3.0  # Feishu's own deadline for the answer
MIN_AFTER_TAP_S = 0.5  # the answer leaves ≤ 60 ms after arrival (webhook.TOAST_WAIT_S)
KEEP_S = 60.0


class TapAnswers:
    def __init__(self) -> None:
        self._events: dict[str, tuple[float, asyncio.Event]] = {}

    def expect(self, token: str) -> None:
        if not token:
            return
        now = time.monotonic()
        for key in [k for k, (at, _e) in self._events.items() if now - at > KEEP_S]:
            del self._events[key]
        self._events.setdefault(token, (now, asyncio.Event()))

    def answered(self, token: str) -> None:
        got = self._events.get(token)
        if got is not None:
            got[1].set()

    async def wait(self, token: str, tap_at: float | None = None) -> None:
        got = self._events.get(token)
        if got is not None:
            if not got[1].is_set():
                try:
                    await asyncio.wait_for(got[1].wait(), WAIT_S)
                except TimeoutError:
                    pass
            return
        if tap_at:
            left = tap_at + MIN_AFTER_TAP_S - time.time()
            if left > 0:
                await asyncio.sleep(min(left, MIN_AFTER_TAP_S))
