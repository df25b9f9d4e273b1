"""Retention runs in the background of the real bot."""

from __future__ import annotations

from tests.conftest import BotRunner, eventually
from tests.doubles.fake_discord import FakeDiscord
from tests.e2e.test_chat import chat


async def test_retention_keeps_the_newest_turns_per_channel(
    bots: BotRunner, fake_discord: FakeDiscord
) -> None:
    bot = await bots.start(retention_max_turns=2, retention_interval=0.1)
    for n in range(3):
        await chat(fake_discord, f"question {n}")
    channel = int(fake_discord.channel_ids[0])

    async def pruned() -> bool:
        return await bot.history.count(channel) == 2

    await eventually(pruned)
    turns = await bot.history.all(channel)
    assert [t.content for t in turns] == ["question 2", "Hello from the fake model."]
