"""The loop-lag monitor reports how late the event loop ran."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import pytest

from bot.diagnostics import LoopLagMonitor, percentile

LINE = re.compile(r"p50 ([\d.]+) ms, p99 ([\d.]+) ms, max ([\d.]+) ms \((\d+) samples\)")


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0


async def test_a_blocked_loop_shows_up_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.diagnostics")
    monitor = LoopLagMonitor(0.3, period=0.01)
    monitor.start()
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.12)  # noqa: ASYNC251 (blocking on purpose: the loop stalls)
        while not any(LINE.search(r.getMessage()) for r in caplog.records):
            await asyncio.sleep(0.05)
    finally:
        await monitor.stop()
    found = LINE.search(next(r.getMessage() for r in caplog.records if LINE.search(r.getMessage())))
    assert found is not None
    worst, samples = float(found.group(3)), int(found.group(4))
    assert worst >= 100  # the 120 ms block, less at most one sampling period
    assert samples >= 2


async def test_stopping_ends_the_sampling() -> None:
    monitor = LoopLagMonitor(10)
    monitor.start()
    await asyncio.sleep(0.02)
    await monitor.stop()
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "loop-lag-monitor"]
