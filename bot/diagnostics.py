"""Opt-in self-measurement: how late the event loop runs, logged at INFO.

A late event loop is what users feel as a stalled stream or a slow reply; benchmarks (bench/)
read these lines from the bot's output. Off unless `loop_lag_log_interval` is set."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time

log = logging.getLogger(__name__)

SAMPLE_PERIOD = 0.01
"""Seconds between samples: 100 timer wake-ups a second, a few microseconds of CPU each."""


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of `values` (which must not be empty)."""
    ordered = sorted(values)
    rank = max(math.ceil(fraction * len(ordered)) - 1, 0)
    return ordered[rank]


class LoopLagMonitor:
    """Sleeps `period` seconds at a time and records how much later than asked it woke: the
    time the loop spent on other work it could not interrupt. Every `log_interval` seconds it
    logs the median, 99th percentile and worst lag of that window, then starts a new one."""

    def __init__(self, log_interval: float, *, period: float = SAMPLE_PERIOD) -> None:
        self._log_interval = log_interval
        self._period = period
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="loop-lag-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        # perf_counter, not loop.time(): uvloop's clock moves in whole milliseconds.
        samples: list[float] = []
        window_end = time.perf_counter() + self._log_interval
        while True:
            asked = time.perf_counter() + self._period
            await asyncio.sleep(self._period)
            now = time.perf_counter()
            samples.append(max(now - asked, 0.0))
            if now >= window_end:
                log.info(
                    "event loop lag: p50 %.2f ms, p99 %.2f ms, max %.2f ms (%d samples)",
                    percentile(samples, 0.5) * 1000,
                    percentile(samples, 0.99) * 1000,
                    max(samples) * 1000,
                    len(samples),
                )
                samples = []
                window_end = now + self._log_interval
