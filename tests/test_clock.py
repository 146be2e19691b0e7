"""The suite's clock: ``dates`` tests see FIELDBOT_TEST_NOW (or the default), not the wall
clock, and it ticks (timeouts and backoffs still progress)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from tests.conftest import test_now

pytestmark = pytest.mark.dates


def test_dates_tests_run_at_the_given_instant():
    at = test_now()
    assert abs((datetime.now(UTC) - at).total_seconds()) < 60
    assert datetime.now(at.tzinfo).date() == at.date()  # (23:59:30 leaves 30 s)
    assert abs(time.time() - at.timestamp()) < 60


async def test_the_frozen_clock_ticks_and_the_loop_still_runs():
    t0 = time.time()
    await asyncio.sleep(0.05)  # the loop's monotonic clock is not travelled
    assert time.time() > t0
