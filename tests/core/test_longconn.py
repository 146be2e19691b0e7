"""The shared long-connection loop: jittered exponential backoff 1 s → 60 s, reset after a
connection that came up, no retry after refused credentials, the watchdog."""

from __future__ import annotations

import asyncio

from integrations.longconn import BACKOFF_MAX_S, AuthFailed, LongConnection


class Flaky(LongConnection):
    transport = "test"

    def __init__(self, outcomes, **kw):
        super().__init__(ping_interval=1.0, rng=lambda: 1.0, **kw)
        self.outcomes = list(outcomes)
        self.delays: list[float] = []

    async def session(self) -> None:
        what = self.outcomes.pop(0) if self.outcomes else "stop"
        if what == "stop":
            self._stopping = True
            return
        if what == "auth":
            raise AuthFailed("refused")
        if what == "up":
            self.connected(_FakeWs())
            return  # the server closed it: reconnect at once
        raise ConnectionError("refused")


class _FakeWs:
    closed = False


def test_backoff_doubles_to_the_cap_with_jitter():
    c = Flaky([])
    got = []
    for attempt in range(9):
        c.attempt = attempt
        got.append(c.backoff())
    assert got[:7] == [1, 2, 4, 8, 16, 32, 60] and got[8] == BACKOFF_MAX_S
    c.rng = lambda: 0.0
    c.attempt = 3
    assert c.backoff() == 4.0  # jitter: between half and all of the step


async def test_failures_back_off_a_connection_resets_and_auth_ends_it(monkeypatch):
    c = Flaky(["fail", "fail", "up", "fail", "auth", "fail"])
    slept: list[float] = []

    async def no_sleep(s):
        slept.append(s)

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    await c.run()
    # two failures (1 s, 2 s), a connection that came up and closed (at once, attempt reset),
    # a failure (1 s again), then refused credentials: the loop ends, the last one never runs
    assert slept == [1.0, 2.0, 1.0]
    assert c.state == "failed" and c.outcomes == ["fail"] and "refused" in c.last_error
