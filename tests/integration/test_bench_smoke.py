"""`python -m bench` runs and prints its table (its smallest scenario, tiny sizes).

Benchmarks are not tests: this only keeps the command from rotting. The timed figures are not
checked, only that they were measured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_bench_command_prints_its_figures_with_targets() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--only",
            "history",
            "--history-sizes",
            "600,1_200",
            "--history-channels",
            "20",
            "--history-reads",
            "20",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    rows = [line for line in lines if line.startswith("| history")]
    assert len(rows) == 4  # two sizes: the context read and the full 400-turn read
    read = next(row for row in rows if "context read at 1,200 turns" in row)
    cells = [cell.strip() for cell in read.strip("|").split("|")]
    assert cells[2].endswith(" ms") and float(cells[2].removesuffix(" ms")) > 0
    assert cells[3] == "< 5 ms"
    assert cells[4] in ("pass", "MISS")
    assert "turns read on average; 20 channels of ~60 turns" in cells[5]
    assert any("load average" in line for line in lines)
    assert lines[-1].endswith("targets missed.")


def test_the_context_bench_counts_what_each_request_sent() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.context", "--turns", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "| num_ctx asked | 8192 |" in done.stdout
    assert "requests cut by Ollama: 0 of 3" in done.stdout
