"""Figures with their targets, and the table `python -m bench` prints."""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """One measured number; `limit` and `higher_is_better` make it a target, None: no target."""

    scenario: str
    name: str
    value: float | None
    unit: str
    limit: float | None = None
    higher_is_better: bool = False
    inclusive: bool = False
    digits: int = 1
    note: str = ""

    @property
    def target(self) -> str:
        if self.limit is None:
            return "-"
        if self.higher_is_better:
            sign = ">=" if self.inclusive else ">"
        else:
            sign = "<=" if self.inclusive else "<"
        return f"{sign} {self.limit:g}{_space(self.unit)}{self.unit}"

    @property
    def passed(self) -> bool | None:
        if self.limit is None:
            return None
        if self.value is None or math.isnan(self.value):
            return False
        if self.higher_is_better:
            return self.value >= self.limit if self.inclusive else self.value > self.limit
        return self.value <= self.limit if self.inclusive else self.value < self.limit

    @property
    def measured(self) -> str:
        if self.value is None:
            return "n/a"
        return f"{self.value:,.{self.digits}f}{_space(self.unit)}{self.unit}"

    @property
    def result(self) -> str:
        return {True: "pass", False: "MISS", None: ""}[self.passed]


def _space(unit: str) -> str:
    return "" if unit in ("", "%", "×") else " "


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (the value below which `fraction` of the values lie)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(math.ceil(fraction * len(ordered)) - 1, 0)
    return ordered[rank]


def table(figures: Sequence[Figure]) -> str:
    """A plain-text table (also valid Markdown): figure, measured, target, result, note."""
    header = ("scenario", "figure", "measured", "target", "result", "note")
    rows = [(f.scenario, f.name, f.measured, f.target, f.result, f.note) for f in figures]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def machine() -> str:
    """CPU count, load averages and how fast this process runs plain Python right now, for the
    record: other work on the machine, and a shared VM's own swings (seen here: the same turns
    costing 5 ms of CPU in one run and 8 ms a few minutes later), skew the figures."""
    one, five, fifteen = os.getloadavg()
    return (
        f"{os.cpu_count()} CPUs, load average {one:.2f} {five:.2f} {fifteen:.2f}, "
        f"Python speed {python_speed():.1f} µs"
    )


def python_speed(rounds: int = 200) -> float:
    """Microseconds for a fixed piece of plain Python (summing a dict's values 100 times), the
    median of `rounds`: lower is a faster machine at the moment."""
    table = {i: i for i in range(100)}
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        sum(table[i] for i in range(100))
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1e6
