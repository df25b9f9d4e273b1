"""Scenario 3: many conversations streaming at once; the bot's event loop and memory.

N members each send a /chat in a channel of their own, all at once, and the Ollama double
streams every reply at the same pace. The bot runs with one generation slot per conversation
(BOT_MAX_PARALLEL_GENERATIONS = N, BOT_MAX_QUEUE = N), the per-user rate limit off, and its
loop-lag monitor on (BOT_LOOP_LAG_LOG_INTERVAL=1: each second it logs the p50/p99/max lag of
100 samples taken every 10 ms). The figures cover the time from the first request to the last
final edit: the worst one-second window's p99 lag, and the bot's resident memory (VmRSS from
/proc, sampled every 0.25 s, and the kernel's peak VmHWM). The lag target covers the whole
run, the arrivals and endings included; the steady middle is shown beside it."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from bench.harness import (
    BotProcess,
    Doubles,
    Watcher,
    database,
    doubles,
    failed,
    final_edit,
    migrated,
    own_lag_while,
    profiled,
    sample_while,
)
from bench.report import Figure, percentile
from bench.streams import reply
from tests.doubles.fake_discord import FakeDiscord, FakeInteraction
from tests.doubles.fake_ollama import Script


@dataclass(frozen=True)
class CrowdOptions:
    conversations: int = 200
    tokens: int = 400
    rate: float = 20.0


async def run(options: CrowdOptions, profile: Path | None = None) -> list[Figure]:
    async with doubles(channels=options.conversations, users=options.conversations) as world:
        with database() as url:
            await migrated(url)
            bot = await BotProcess.start(
                world,
                url,
                user_requests_per_minute=0,
                max_parallel_generations=options.conversations,
                max_queue=options.conversations,
                loop_lag_log_interval=1.0,
            )
            try:
                return await _measure(world, bot, options, profile)
            finally:
                await bot.stop()


async def _measure(
    world: Doubles, bot: BotProcess, options: CrowdOptions, profile: Path | None
) -> list[Figure]:
    fake, ollama_double = world.discord, world.ollama
    scenario = f"{options.conversations} at once"
    async with Watcher(fake) as watcher:
        warmup = await fake.slash_command("chat", {"message": "hello"})
        await asyncio.wait_for(watcher.watch(warmup), 30)
        await asyncio.sleep(2.5)  # a lag window of the quiet bot, for comparison
        idle_rss = bot.status("VmRSS")
        ollama_double.script(
            *[
                Script(reply=reply(options.tokens), token_interval=1 / options.rate)
                for _ in range(options.conversations)
            ]
        )
        limited_before = len(fake.rate_limited)
        sampling = asyncio.Event()
        sampling.set()
        rss = asyncio.create_task(sample_while(lambda: bot.status("VmRSS"), sampling))
        own_lag = asyncio.create_task(own_lag_while(sampling))
        cpu_before, bench_before = bot.cpu_seconds(), time.process_time()

        async def one(n: int) -> FakeInteraction:
            interaction = await fake.slash_command(
                "chat",
                {"message": f"conversation {n}: tell me a story"},
                user=world.users[n],
                channel_id=world.channels[n],
            )
            await asyncio.wait_for(watcher.watch(interaction), options.tokens / options.rate + 120)
            return interaction

        began = time.monotonic()
        async with profiled(bot, profile, "crowd"):
            asked = await asyncio.gather(
                *(one(n) for n in range(options.conversations)), return_exceptions=True
            )
        ended = time.monotonic()
        cpu = bot.cpu_seconds() - cpu_before
        bench_cpu = time.process_time() - bench_before
        sampling.clear()
        rss_values = await rss
        bench_lag = await own_lag
        peak = bot.status("VmHWM")
        await asyncio.sleep(1.2)  # the lag line of the last second comes out
    replies = [a for a in asked if isinstance(a, FakeInteraction)]
    failures = options.conversations - len(replies) + sum(failed(fake, i) for i in replies)
    requests = streamed(ollama_double, replies)
    # All at once: from the last stream's first token to the first stream's last. A lag line
    # covers the second before it was read.
    steady_from = max(r.sent[0] for r in requests) + 1.0
    steady_to = min(r.sent[-1] for r in requests)
    steady = bot.lag_windows(steady_from, steady_to)
    # A lag line covers the second before it was read: from the first one read after the
    # requests went out (it covers their arrival) to the one after the last final edit.
    whole = bot.lag_windows(began, ended + 1.2)
    quiet = bot.lag_windows(0, began)
    finals = [
        (final_edit(fake, i) - request.sent[-1]) * 1000
        for i, request in zip(replies, requests, strict=True)
    ]
    # What of that is the bench's: the Discord double's handling of the final edit (from the
    # request's handler starting to the edit applied), and this process's own loop lag while
    # the replies end (a backlog here would delay the handlers' start).
    ends = [r.sent[-1] for r in requests]
    done = [final_edit(fake, i) for i in replies if not failed(fake, i)]
    in_double = final_handling(fake, [i for i in replies if not failed(fake, i)])
    ending = [lag for at, lag in bench_lag if min(ends) <= at <= max(done, default=0) + 0.05]
    return [
        Figure(
            scenario,
            "event-loop lag p99, arrivals to endings (worst second)",
            max((w.p99 for w in whole), default=None),
            "ms",
            limit=50,
            note=f"{len(whole)} s, all {options.conversations} asked at once, all end together; "
            f"median second's p99 {statistics.median([w.p99 for w in whole]):.1f} ms; quiet "
            f"bot p99 {quiet[-1].p99 if quiet else float('nan'):.1f} ms"
            if whole
            else "no lag lines read",
        ),
        Figure(
            scenario,
            "event-loop lag p99 while all stream (worst second)",
            max((w.p99 for w in steady), default=None),
            "ms",
            note=f"{len(steady)} s, the steady middle; median second's p99 "
            f"{statistics.median([w.p99 for w in steady]):.1f} ms, p50 "
            f"{statistics.median([w.p50 for w in steady]):.1f} ms"
            if steady
            else "no lag lines in the steady middle (replies too short)",
        ),
        Figure(
            scenario,
            "resident memory, busy (peak)",
            max(max(rss_values, default=0), peak) / 1024,
            "MiB",
            limit=200,
            note=f"idle before {idle_rss / 1024:.0f} MiB; sampled max "
            f"{max(rss_values, default=0) / 1024:.0f} MiB; the kernel's peak (VmHWM) "
            f"{peak / 1024:.0f} MiB",
        ),
        Figure(
            scenario,
            "final edit after the last token, p99",
            percentile(finals, 0.99),
            "ms",
            limit=100,
            note=f"median {statistics.median(finals):.0f} ms (product.md: within 100 ms); "
            f"last tokens over {max(ends) - min(ends):.1f} s; the bench's share: the Discord "
            f"double's handling p99 {percentile(in_double, 0.99):.1f} ms, its process's loop "
            f"lag meanwhile p99 {percentile(ending, 0.99):.1f} ms, max {max(ending):.1f} ms"
            if ending and in_double
            else "no replies finished",
        ),
        Figure(
            scenario,
            "bot CPU while streaming",
            cpu / (ended - began) * 100,
            "%",
            digits=0,
            note=f"{options.tokens} tokens each at {options.rate:g}/s, "
            f"{ended - began:.1f} s; Ollama double's most at once: "
            f"{ollama_double.max_active_generations}; bench process (both doubles) "
            f"{bench_cpu / (ended - began) * 100:.0f}%",
        ),
        Figure(
            scenario,
            "failed replies and 429s",
            failures + len(fake.rate_limited) - limited_before,
            "",
            limit=0,
            inclusive=True,
            digits=0,
            note=f"{failures} failed, {len(fake.rate_limited) - limited_before} 429s",
        ),
    ]


def final_handling(fake: FakeDiscord, replies: list[FakeInteraction]) -> list[float]:
    """Per finished reply, ms from the start of the Discord double's handling of the request
    that applied the final edit to the edit being applied."""
    by_token: dict[str, list[float]] = {}
    for request in fake.requests:
        parts = request.path.split("/", 4)
        if len(parts) > 3 and parts[1] in ("webhooks", "interactions"):
            by_token.setdefault(parts[3], []).append(request.t)
    spans = []
    for interaction in replies:
        applied = final_edit(fake, interaction)
        started = [t for t in by_token.get(interaction.token, []) if t <= applied]
        if started:
            spans.append((applied - max(started)) * 1000)
    return spans


def streamed(ollama_double, replies: list[FakeInteraction]) -> list:
    """The /api/chat request behind each reply (matched by the question's text)."""
    found = {}
    for request in ollama_double.requests:
        body = request.json if isinstance(request.json, dict) else {}
        messages = body.get("messages") or [{}]
        if request.path == "/api/chat":
            found[messages[-1].get("content", "")] = request
    return [found[i.payload["data"]["options"][0]["value"]] for i in replies]
