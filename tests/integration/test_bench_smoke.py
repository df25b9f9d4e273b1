"""`python -m bench` runs every scenario and prints its table (tiny sizes, a few seconds each).

Benchmarks are not tests: this only keeps the command from rotting. The timed figures are not
judged, only that each scenario runs, its replies complete and every figure is printed with its
target (and a failed reply is counted as one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "turns": [
        *("--latency-turns", "5", "--throughput-turns", "20", "--in-flight", "4"),
        *("--channels", "4", "--users", "4"),
    ],
    "streaming": ["--rates", "50,100", "--stream-tokens", "20"],
    "crowd": ["--crowd", "4", "--crowd-tokens", "10", "--crowd-rate", "50"],
    "history": [
        *("--history-sizes", "600,1_200", "--history-channels", "20", "--history-reads", "20"),
    ],
    "startup": ["--startup-rounds", "1"],
}
FAILURES = {  # per scenario, the figure that counts failed replies
    "turns": "failed turns",
    "streaming": "failed replies",
    "crowd": "failed replies and 429s",
    "startup": "failed first replies",
}


SHOWN_AS = {  # the scenario column of each scenario's rows
    "turns": "chat turn",
    "streaming": "streaming",
    "crowd": "4 at once",
    "history": "history",
    "startup": "start-up",
}
FAILING_STREAM = ["--rates", "100", "--stream-tokens", "20", "--stream-error-after", "3"]


def run_of(*scenarios: str) -> list[str]:
    return [",".join(scenarios), *(arg for name in scenarios for arg in TINY[name])]


RUNS = {  # at once: every scenario over two runs, and a streaming run whose replies all fail
    "quick ones": run_of("turns", "streaming", "history"),
    "slow ones": run_of("crowd", "startup"),
    "failing": ["streaming", *FAILING_STREAM],
}
Tables = dict[str, dict[str, dict[str, list[str]]]]
"""Run -> scenario -> figure -> [measured, target, result, note]."""


@pytest.fixture(scope="module")
def tables() -> Tables:
    """Each run's table. The runs go at once (their figures are not judged)."""
    started = {
        name: subprocess.Popen(
            [sys.executable, "-m", "bench", "--only", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in RUNS.items()
    }
    found = {name: rows(process) for name, process in started.items()}
    return {
        "all": found["quick ones"] | found["slow ones"],
        "failing": found["failing"],
    }


def rows(process: subprocess.Popen[str]) -> dict[str, dict[str, list[str]]]:
    try:
        out, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode == 0, err
    lines = out.splitlines()
    assert any("load average" in line for line in lines)
    assert lines[-1].endswith("targets missed.")
    found: dict[str, dict[str, list[str]]] = {}
    for line in lines:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 6 and cells[0] != "scenario":
            scenario, figure, measured, target, result, note = cells
            assert result in (("",) if target == "-" else ("pass", "MISS")), line
            found.setdefault(scenario, {})[figure] = [measured, target, result, note]
    assert found, out
    return found


def test_every_scenario_prints_its_figures(tables: Tables) -> None:
    assert set(tables["all"]) == set(SHOWN_AS.values())


@pytest.mark.parametrize("scenario", ["turns", "streaming", "crowd", "startup"])
def test_each_scenario_runs_and_its_replies_complete(tables: Tables, scenario: str) -> None:
    measured, target, result, note = tables["all"][SHOWN_AS[scenario]][FAILURES[scenario]]
    assert (measured, target, result) == ("0", "<= 0", "pass"), note


def test_the_streaming_bench_counts_a_reply_that_ended_in_a_warning_as_failed(
    tables: Tables,
) -> None:
    rows = tables["failing"]["streaming"]
    assert rows["failed replies"][:3] == ["1", "<= 0", "MISS"]
    ratio = rows["wall time through the bot / raw, 100 tokens/s"]
    assert ratio[0] == "n/a" and ratio[2] == "MISS"


def test_the_bench_reports_idle_and_busy_memory_with_targets(
    tables: Tables,
) -> None:
    idle = tables["all"]["start-up"]["resident memory, idle"]
    assert idle[0].endswith(" MiB") and float(idle[0].removesuffix(" MiB")) > 10
    assert idle[1] == "< 80 MiB"
    busy = tables["all"]["4 at once"]["resident memory, busy (peak)"]
    assert busy[1] == "< 200 MiB" and busy[0].endswith(" MiB")


def test_the_crowd_lag_target_covers_arrivals_and_endings(
    tables: Tables,
) -> None:
    lag = tables["all"]["4 at once"]["event-loop lag p99, arrivals to endings (worst second)"]
    assert lag[1] == "< 50 ms"
    assert "all 4 asked at once, all end together" in lag[3]


def test_the_history_scenario_prints_its_figures_with_targets(
    tables: Tables,
) -> None:
    rows = tables["all"]["history"]
    assert len(rows) == 4  # two sizes: the context read and the full 400-turn read
    measured, target, result, note = rows["context read at 1,200 turns, p99"]
    assert measured.endswith(" ms") and float(measured.removesuffix(" ms")) > 0
    assert target == "< 5 ms"
    assert result in ("pass", "MISS")
    assert "turns read on average; 20 channels of ~60 turns" in note


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
