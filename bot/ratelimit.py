"""Per-destination send limits at the platforms' documented rates.

The platforms count sends in a window ("30 per minute to one user"), so a classic token bucket
— which lets a full bucket burst and then refills — can put up to twice the rate into one
window and earn a 45009/Throttling answer. This keeps, per destination, the times of the last
``rate`` sends and grants a send only when the oldest is at least ``per`` seconds old.
"""

from __future__ import annotations

import time
from collections import deque

MAX_KEYS = 10_000


class TokenBuckets:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._sent: dict[str, tuple[deque, float]] = {}  # key -> (send times, per)

    def take(self, key: str, rate: int, per: float) -> float:
        """Take a slot; return 0 if granted, else the seconds to wait for one."""
        now = self._clock()
        entry = self._sent.get(key)
        if entry is None:
            if len(self._sent) >= MAX_KEYS:
                self._prune(now)
            entry = self._sent[key] = (deque(), per)
        times = entry[0]
        while times and now - times[0] >= per:
            times.popleft()
        if len(times) < max(1, rate):
            times.append(now)
            return 0.0
        return max(per - (now - times[0]), 1e-3)

    def _prune(self, now: float) -> None:
        for key, (times, per) in list(self._sent.items()):
            if not times or now - times[-1] >= per:
                del self._sent[key]
