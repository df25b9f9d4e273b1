"""Scenario 5: start-up, from `python -m bot run` being spawned to a session that takes commands.

Timed from spawning the process (the bot through tests.launcher: the interpreter starts, imports,
reads its settings, opens and migrates the database, logs in, syncs its commands and connects)
to the Discord double having sent READY and GUILD_CREATE. Twice per round: on a fresh database
(migrations applied, commands synced) and on the existing one (nothing to migrate or sync). Also:
how long the first /chat after start takes (first-use costs), and the resident memory once the
bot idles after it (VmRSS of the bot process; target 80 MiB)."""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass

from bench.harness import BotProcess, Watcher, database, doubles, failed, final_edit
from bench.report import Figure

SCENARIO = "start-up"
IDLE_AFTER = 1.0  # seconds of quiet after the first /chat before the idle memory is read
IDLE_MEMORY_TARGET = 80  # MiB (issue 17: llmcord idles at 72 MiB on the same doubles)


@dataclass(frozen=True)
class StartupOptions:
    rounds: int = 3


async def run(options: StartupOptions) -> list[Figure]:
    fresh, existing, first_replies, ready_memory, memory = [], [], [], [], []
    failures = 0
    for _ in range(options.rounds):
        with database() as url:
            for times in (fresh, existing):
                async with doubles() as world:
                    bot = await BotProcess.start(world, url)
                    try:
                        times.append((bot.ready - bot.spawned) * 1000)
                        if times is existing:
                            ready_memory.append(bot.status("VmRSS") / 1024)
                            async with Watcher(world.discord) as watcher:
                                asked = await world.discord.slash_command("chat", {"message": "hi"})
                                await asyncio.wait_for(watcher.watch(asked), 30)
                            if failed(world.discord, asked):
                                failures += 1
                            else:
                                first_replies.append(
                                    (final_edit(world.discord, asked) - asked.created_at) * 1000
                                )
                            await asyncio.sleep(IDLE_AFTER)
                            memory.append(bot.status("VmRSS") / 1024)
                    finally:
                        await bot.stop()
    rounds = f"median of {options.rounds}" if options.rounds > 1 else "one round"
    return [
        Figure(
            SCENARIO,
            "spawn to ready, fresh database",
            statistics.median(fresh),
            "ms",
            digits=0,
            note=f"{rounds}; migrations and command sync included",
        ),
        Figure(
            SCENARIO,
            "spawn to ready, existing database",
            statistics.median(existing),
            "ms",
            digits=0,
            note=f"{rounds}; interpreter start and imports included",
        ),
        Figure(
            SCENARIO,
            "first /chat after start",
            statistics.median(first_replies) if first_replies else None,
            "ms",
            digits=0,
            note="first-use costs",
        ),
        Figure(
            SCENARIO,
            "failed first replies",
            failures,
            "",
            limit=0,
            inclusive=True,
            digits=0,
            note=f"of {options.rounds}",
        ),
        Figure(
            SCENARIO,
            "resident memory, idle",
            statistics.median(memory),
            "MiB",
            limit=IDLE_MEMORY_TARGET,
            note=f"{rounds}; {IDLE_AFTER:g} s after the first /chat (VmRSS); right after ready "
            f"{statistics.median(ready_memory):.0f} MiB",
        ),
    ]
