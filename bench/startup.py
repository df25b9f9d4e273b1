"""Scenario 5: start-up, from `python -m bot run` being spawned to a session that takes commands.

Timed from spawning the process (the bot through tests.launcher: the interpreter starts, imports,
reads its settings, opens and migrates the database, logs in, syncs its commands and connects)
to the Discord double having sent READY and GUILD_CREATE. Twice per round: on a fresh database
(migrations applied, commands synced) and on the existing one (nothing to migrate or sync). Also:
how long the first /chat after start takes (first-use costs), and the resident memory then."""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass

from bench.harness import BotProcess, Watcher, database, doubles, final_edit
from bench.report import Figure

SCENARIO = "start-up"


@dataclass(frozen=True)
class StartupOptions:
    rounds: int = 3


async def run(options: StartupOptions) -> list[Figure]:
    fresh, existing, first_replies, memory = [], [], [], []
    for _ in range(options.rounds):
        with database() as url:
            for times in (fresh, existing):
                async with doubles() as world:
                    bot = await BotProcess.start(world, url)
                    try:
                        times.append((bot.ready - bot.spawned) * 1000)
                        if times is existing:
                            async with Watcher(world.discord) as watcher:
                                asked = await world.discord.slash_command("chat", {"message": "hi"})
                                await asyncio.wait_for(watcher.watch(asked), 30)
                            first_replies.append(
                                (final_edit(world.discord, asked) - asked.created_at) * 1000
                            )
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
            statistics.median(first_replies),
            "ms",
            digits=0,
            note=f"first-use costs; resident memory then {statistics.median(memory):.0f} MB",
        ),
    ]
