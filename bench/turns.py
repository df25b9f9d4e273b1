"""Scenario 1: the bot's own cost per chat turn, with an Ollama double that answers at once.

A turn is a /chat from a member in a channel; it counts from the moment the Discord double sends
INTERACTION_CREATE to the moment it applies the reply's final edit (the one with the footer). In
between the bot acknowledges the interaction, reads the channel's settings and history, stores
the exchange, asks Ollama (a six-token answer, sent at once), stores the reply and edits its
message. Everything else is the bot's doing, so the time is its overhead.

- latency: one turn at a time, round robin over channels and members;
- throughput: many turns at once (a bounded number in flight) across channels and members, with
  the per-user rate limit off and the generation limit at the number in flight, so that only
  the bot's own speed limits the rate."""

from __future__ import annotations

import asyncio
import contextlib
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
    profiled,
)
from bench.report import Figure, percentile
from tests.doubles.fake_discord import FakeInteraction

SCENARIO = "chat turn"


@dataclass(frozen=True)
class TurnOptions:
    latency_turns: int = 500
    throughput_turns: int = 3000
    in_flight: int = 32
    channels: int = 100
    users: int = 50
    warmup: int = 30


async def ask(world: Doubles, watcher: Watcher, n: int, patience: float = 30) -> FakeInteraction:
    """One /chat in the n-th channel (round robin) by the n-th member; returns when its reply is
    finished, or after `patience` seconds (then it counts as failed)."""
    channel = world.channels[n % len(world.channels)]
    user = world.users[n % len(world.users)]
    interaction = await world.discord.slash_command(
        "chat", {"message": f"question number {n}"}, user=user, channel_id=channel
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(watcher.watch(interaction), patience)
    return interaction


def time_in_doubles(world: Doubles, interaction: FakeInteraction) -> float:
    """Seconds the doubles spent on a turn's requests while the bot waited for them (a lower
    bound: from a request's arrival to its effect being recorded): the acknowledgement, each
    edit, and Ollama's stream from request to last line."""
    fake = world.discord
    spent = 0.0
    for request in fake.requests:
        if request.t < interaction.created_at:
            continue
        if interaction.id in request.path and interaction.callback_at is not None:
            spent += interaction.callback_at - request.t
        elif interaction.token in request.path and request.method == "PATCH":
            message = fake.messages.get(request.path.rsplit("/", 1)[-1]) or fake.messages.get(
                interaction.original_message_id or ""
            )
            after = [t for t, _ in message.edits if t >= request.t] if message else []
            spent += min(after) - request.t if after else 0.0
    question = interaction.payload["data"]["options"][0]["value"]
    for request in world.ollama.requests:
        body = request.json if isinstance(request.json, dict) else {}
        asked = (body.get("messages") or [{}])[-1].get("content")
        recent = request.t >= interaction.created_at  # warm-up turns asked the same
        if request.path == "/api/chat" and request.sent and recent and asked == question:
            spent += request.sent[-1] - request.t
    return spent


async def run(options: TurnOptions, profile: Path | None = None) -> list[Figure]:
    async with doubles(channels=options.channels, users=options.users) as world:
        with database() as url:
            await migrated(url)
            bot = await BotProcess.start(
                world,
                url,
                user_requests_per_minute=0,
                max_parallel_generations=options.in_flight,
                max_queue=options.in_flight,
            )
            try:
                return await _measure(world, bot, options, profile)
            finally:
                await bot.stop()


async def _measure(
    world: Doubles, bot: BotProcess, options: TurnOptions, profile: Path | None
) -> list[Figure]:
    fake = world.discord
    async with Watcher(fake) as watcher:
        for n in range(options.warmup):  # caches filled, connections open, code paths warm
            await ask(world, watcher, n)

        asked = []
        cpu_before = bot.cpu_seconds()
        for n in range(options.latency_turns):
            asked.append(await ask(world, watcher, n))
        alone_cpu = (bot.cpu_seconds() - cpu_before) / len(asked) * 1000
        latencies = [(final_edit(fake, i) - i.created_at) * 1000 for i in asked]
        in_doubles = [time_in_doubles(world, i) * 1000 for i in asked]
        failures = sum(failed(fake, i) for i in asked)

        slots = asyncio.Semaphore(options.in_flight)

        async def one(n: int) -> FakeInteraction:
            async with slots:
                return await ask(world, watcher, n)

        async with profiled(bot, profile, "turns"):
            cpu_before, bench_cpu_before = bot.cpu_seconds(), time.process_time()
            many = await asyncio.gather(*(one(n) for n in range(options.throughput_turns)))
            bot_cpu = bot.cpu_seconds() - cpu_before
            bench_cpu = time.process_time() - bench_cpu_before
        busy_rss, peak_rss = bot.status("VmRSS"), bot.status("VmHWM")
    span = max(final_edit(fake, i) for i in many) - min(i.created_at for i in many)
    loaded = [(final_edit(fake, i) - i.created_at) * 1000 for i in many]
    failures += sum(failed(fake, i) for i in many)
    rate = len(many) / span
    in_flight = f"{options.in_flight} in flight"
    return [
        Figure(
            SCENARIO,
            "overhead per turn, median",
            statistics.median(latencies),
            "ms",
            note=f"of which in the doubles at least {statistics.median(in_doubles):.1f} ms",
        ),
        Figure(
            SCENARIO,
            "overhead per turn, p99",
            percentile(latencies, 0.99),
            "ms",
            limit=25,
            note=f"{len(latencies)} turns one at a time",
        ),
        Figure(
            SCENARIO,
            "turns per second, one bot process",
            rate,
            "/s",
            limit=150,
            higher_is_better=True,
            inclusive=True,
            digits=0,
            note=f"{len(many)} turns, {in_flight}, "
            f"{options.channels} channels, {options.users} members",
        ),
        Figure(
            SCENARIO,
            "time per turn under that load, p50 / p99",
            statistics.median(loaded),
            "ms",
            note=f"p99 {percentile(loaded, 0.99):.1f} ms ({in_flight})",
        ),
        Figure(
            SCENARIO,
            "bot CPU per turn",
            bot_cpu / len(many) * 1000,
            "ms",
            digits=2,
            note=f"{in_flight}; one at a time {alone_cpu:.2f} ms; bench process (both "
            f"doubles) {bench_cpu / len(many) * 1000:.2f} ms",
        ),
        Figure(
            SCENARIO,
            "resident memory, busy (peak)",
            peak_rss / 1024,
            "MiB",
            digits=0,
            note=f"the kernel's peak (VmHWM) after the turns; {busy_rss / 1024:.0f} MiB at "
            "their end",
        ),
        Figure(SCENARIO, "failed turns", failures, "", limit=0, inclusive=True, digits=0),
    ]
