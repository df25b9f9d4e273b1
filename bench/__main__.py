"""Measure the bot's own cost against the doubles and print every figure with its target.

    python -m bench                 # the full run (several minutes)
    python -m bench --quick         # small sizes, about a minute
    python -m bench --only turns,history --profile /tmp/prof

The doubles (FakeDiscord, FakeOllama) run in this process, the bot in a child process of its
own (`python -m tests.launcher`, the real `python -m bot run`). Scenarios: turns (overhead per
chat turn, turns per second), streaming (wall time through the bot against a raw read), crowd
(many conversations streaming at once: event-loop lag, memory), history (reading the context
from a large SQLite history), startup, capacity (requests that wait for a model to load, with
and without load-aware host choice), knowledge (retrieval latency, memory, ingest and recall).
bench/README.md explains each figure."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import capacity, crowd, history, knowledge, startup, streams, thinking, turns
from bench.harness import ROOT
from bench.profiles import summary
from bench.report import Figure, machine, table

SCENARIOS = ("turns", "streaming", "crowd", "history", "startup", "capacity", "knowledge")
EXTRA = ("thinking",)
"""Scenarios run only when named in --only (a thinking reply takes real time: 30 s + answer)."""


def numbers(kind: type) -> object:
    def parse(text: str) -> tuple[object, ...]:
        return tuple(kind(part.replace("_", "")) for part in text.split(",") if part)

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    p.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated, of: {', '.join(SCENARIOS + EXTRA)}",
    )
    p.add_argument("--profile", type=Path, help="record py-spy profiles of the bot here")
    p.add_argument("--markdown", type=Path, help="also write the results to this file")
    g = p.add_argument_group("turns")
    g.add_argument("--latency-turns", type=int, help="turns one at a time (500; quick 100)")
    g.add_argument("--throughput-turns", type=int, help="turns at once (2000; quick 300)")
    g.add_argument("--in-flight", type=int, default=32, help="turns in flight at once (32)")
    g.add_argument("--channels", type=int, default=100, help="channels the turns use (100)")
    g.add_argument("--users", type=int, default=50, help="members asking (50)")
    g = p.add_argument_group("streaming")
    g.add_argument("--rates", type=numbers(float), default=(20.0, 50.0, 100.0))
    g.add_argument("--stream-tokens", type=int, help="tokens a reply (1500; quick 300)")
    g.add_argument(
        "--stream-error-after",
        type=int,
        help="end every reply with an Ollama error after this many tokens (checks that failed "
        "replies count as failed)",
    )
    g = p.add_argument_group("crowd")
    g.add_argument("--crowd", type=int, help="conversations at once (200; quick 50)")
    g.add_argument("--crowd-tokens", type=int, help="tokens each (400; quick 100)")
    g.add_argument("--crowd-rate", type=float, default=20.0, help="tokens a second each (20)")
    g = p.add_argument_group("history")
    g.add_argument(
        "--history-sizes",
        type=numbers(int),
        help="stored turns (10_000,100_000,1_000_000; quick 10_000,100_000)",
    )
    g.add_argument("--history-channels", type=int, default=1_000)
    g.add_argument("--history-reads", type=int, help="reads timed per size (500; quick 200)")
    g = p.add_argument_group("thinking")
    g.add_argument("--thinking-seconds", type=float, help="seconds of thinking (30; quick 10)")
    g.add_argument("--answer-tokens", type=int, default=500, help="tokens of answer (500)")
    g = p.add_argument_group("startup")
    g.add_argument("--startup-rounds", type=int, help="rounds (3; quick 1)")
    g = p.add_argument_group("capacity")
    g.add_argument("--capacity-requests", type=int, help="requests (30; quick 15)")
    g.add_argument("--load-delay", type=float, default=5.0, help="seconds a load takes (5)")
    return p


def pick(value: object, full: object, quick: object, is_quick: bool) -> object:
    if value is not None:
        return value
    return quick if is_quick else full


async def measure(args: argparse.Namespace, chosen: Sequence[str]) -> list[Figure]:
    q = args.quick
    figures: list[Figure] = []
    for name in chosen:
        began = time.monotonic()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        if name == "turns":
            options = turns.TurnOptions(
                latency_turns=pick(args.latency_turns, 500, 100, q),  # type: ignore[arg-type]
                throughput_turns=pick(args.throughput_turns, 2000, 300, q),  # type: ignore[arg-type]
                in_flight=args.in_flight,
                channels=args.channels,
                users=args.users,
                warmup=10 if q else 30,
            )
            figures += await turns.run(options, args.profile)
        elif name == "streaming":
            figures += await streams.run(
                streams.StreamOptions(
                    rates=args.rates,
                    tokens=pick(args.stream_tokens, 1_500, 300, q),  # type: ignore[arg-type]
                    error_after=args.stream_error_after,
                ),
                args.profile,
            )
        elif name == "crowd":
            figures += await crowd.run(
                crowd.CrowdOptions(
                    conversations=pick(args.crowd, 200, 50, q),  # type: ignore[arg-type]
                    tokens=pick(args.crowd_tokens, 400, 100, q),  # type: ignore[arg-type]
                    rate=args.crowd_rate,
                ),
                args.profile,
            )
        elif name == "history":
            sizes = pick(args.history_sizes, (10_000, 100_000, 1_000_000), (10_000, 100_000), q)
            with tempfile.TemporaryDirectory(prefix="bench-history-") as folder:
                figures += await history.run(
                    history.HistoryOptions(
                        sizes=sizes,  # type: ignore[arg-type]
                        channels=args.history_channels,
                        reads=pick(args.history_reads, 500, 200, q),  # type: ignore[arg-type]
                    ),
                    Path(folder),
                )
        elif name == "startup":
            rounds = pick(args.startup_rounds, 3, 1, q)
            figures += await startup.run(startup.StartupOptions(rounds=rounds))  # type: ignore[arg-type]
        elif name == "thinking":
            seconds = pick(args.thinking_seconds, 30.0, 10.0, q)
            figures += await thinking.run(
                thinking.ThinkingOptions(seconds, args.answer_tokens),  # type: ignore[arg-type]
                args.profile,
            )
        elif name == "capacity":
            requests = pick(args.capacity_requests, 30, 15, q)
            figures += await capacity.run(
                capacity.CapacityOptions(requests=requests, load_delay=args.load_delay)  # type: ignore[arg-type]
            )
        elif name == "knowledge":
            sizes = (1_000, 10_000, 100_000)
            figures += await knowledge.run(knowledge.KnowledgeOptions(sizes=sizes))
        print(f"  {name}: {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
    return figures


def run_loop(main: Coroutine[Any, Any, list[Figure]]) -> list[Figure]:
    """On uvloop when installed, like the bot (bot/__main__.py): the history scenario reads
    through the bot's own store in this process, and the doubles answer faster."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def commit() -> str:
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return found.stdout.strip() or "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(SCENARIOS + EXTRA)
    if unknown:
        print(f"unknown scenarios: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    before = machine()
    began = time.monotonic()
    figures = run_loop(measure(args, chosen))
    header = (
        f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, commit {commit()}, "
        f"{'quick' if args.quick else 'full'} run of {', '.join(chosen)} in "
        f"{time.monotonic() - began:.0f} s\nbefore: {before}\nafter:  {machine()}"
    )
    text = f"{header}\n\n{table(figures)}\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.profile:
        for found in sorted(args.profile.glob("*.txt")):
            print(summary(found))
    misses = [f for f in figures if f.passed is False]
    print(f"{len(misses)} of {sum(f.passed is not None for f in figures)} targets missed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
