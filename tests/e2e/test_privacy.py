"""What members take back is gone from the bot too (issue 13): a deleted question, and a server
that removed the bot. The real bot against both doubles and a migrated database."""

from __future__ import annotations

import asyncio

from bot.app import OllamaBot
from tests.conftest import BotRunner, both_databases, eventually
from tests.doubles.fake_discord import FakeDiscord
from tests.doubles.fake_ollama import FakeOllama
from tests.e2e.test_chat import chat
from tests.e2e.test_images import a_png
from tests.e2e.test_personas import SEED, create_with_file, deleted_models, persona_model, run
from tests.e2e.test_personas import chat as persona_chat


async def settled(bot: OllamaBot, channel_id: int, turns: int) -> bool:
    stored = await bot.history.all(channel_id)
    return len(stored) == turns and all(t.status != "streaming" for t in stored)


async def ask(bot: OllamaBot, fake: FakeDiscord, text: str, **options: object) -> str:
    """Mention the bot with a question; returns the question's message id once answered."""
    channel = int(str(options.get("channel_id") or fake.channel_ids[0]))
    before = await bot.history.count(channel)
    asked = await fake.user_message(text, mention_bot=True, **options)  # type: ignore[arg-type]
    await eventually(lambda: settled(bot, channel, before + 2), timeout=10)
    return asked.id


async def test_a_deleted_question_is_deleted_with_its_images_and_answer(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    channel = int(fake_discord.channel_ids[0])
    await chat(fake_discord, "a slash question stays")  # no message of the user's to delete
    secret = await ask(bot, fake_discord, "my secret question", attachments=[a_png()])
    await ask(bot, fake_discord, "an ordinary question")
    await eventually(lambda: settled(bot, channel, 6))
    assert await bot.history.images_for([t.id for t in await bot.history.all(channel)])

    await fake_discord.delete_user_message(secret)
    await eventually(lambda: settled(bot, channel, 4))
    left = await bot.history.all(channel)
    assert [t.content for t in left if t.role == "user"] == [
        "a slash question stays",
        "an ordinary question",
    ]
    assert not await bot.history.images_for([t.id for t in left])
    assert all("secret" not in t.content for t in left)

    # The next question's context no longer carries it.
    await chat(fake_discord, "what did I ask?")
    sent = fake_ollama.chat_requests()[-1]["messages"]
    assert not any("secret" in m["content"] for m in sent)
    assert not any(m.get("images") for m in sent)


async def test_a_bulk_delete_deletes_every_stored_question_of_it(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    bot = await bots.start()
    channel = fake_discord.channel_ids[0]
    first = await ask(bot, fake_discord, "first")
    await ask(bot, fake_discord, "second")
    third = await ask(bot, fake_discord, "third")
    await ask(bot, fake_discord, "other channel", channel_id=fake_discord.channel_ids[1])

    await fake_discord.bulk_delete(channel, [first, third, "123"])
    await eventually(lambda: settled(bot, int(channel), 2))
    assert next(t.content for t in await bot.history.all(int(channel))) == "second"
    assert await bot.history.count(int(fake_discord.channel_ids[1])) == 2


async def _a_guild_with_data(bot: OllamaBot, fake: FakeDiscord, guild_id: str, persona: str) -> int:
    """A persona, a channel setting and a conversation in the guild's first channel."""
    channel = fake.guild_channel_ids(guild_id)[0]
    await create_with_file(fake, persona, SEED, channel_id=channel, user="admin")
    await run(fake, "use", {"name": persona}, channel_id=channel)
    await persona_chat(fake, "remember me", channel_id=channel)
    await eventually(lambda: settled(bot, int(channel), 2))
    return int(channel)


@both_databases
async def test_when_the_bot_is_removed_that_guilds_data_goes_at_once(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    leaving = await fake_discord.add_guild("Leaving", ["lobby"])
    bot = await bots.start()
    ours = await _a_guild_with_data(bot, fake_discord, fake_discord.guild_id, "butler")
    theirs = await _a_guild_with_data(bot, fake_discord, leaving, "butler")

    await fake_discord.remove_guild(leaving)
    gone = persona_model(fake_discord, "butler", leaving)
    await eventually(lambda: _nothing_left(bot, int(leaving), theirs))
    assert deleted_models(fake_ollama) == [{"model": gone}]
    assert f"{gone}:latest" not in fake_ollama.models
    # The other guild keeps everything.
    assert await bot.history.count(ours) == 2
    assert (await bot.parts.channels.get(ours)).persona == "butler"
    assert await bot.parts.personas.get(int(fake_discord.guild_id), "butler") is not None
    assert f"{persona_model(fake_discord, 'butler')}:latest" in fake_ollama.models


async def _nothing_left(bot: OllamaBot, guild_id: int, channel_id: int) -> bool:
    return (
        await bot.history.count(channel_id) == 0
        and (await bot.parts.channels.get(channel_id)).persona is None
        and await bot.parts.personas.get(guild_id, "butler") is None
    )


async def test_with_a_grace_period_the_data_waits_and_returning_keeps_it(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    back = await fake_discord.add_guild("Comes back", ["lobby"])
    away = await fake_discord.add_guild("Stays away", ["lobby"])
    grace = 3 / 86_400  # three seconds
    bot = await bots.start(guild_data_grace_days=grace, retention_interval=0.1)
    back_channel = await _a_guild_with_data(bot, fake_discord, back, "butler")
    away_channel = await _a_guild_with_data(bot, fake_discord, away, "maid")

    await fake_discord.remove_guild(back)
    await fake_discord.remove_guild(away)
    await asyncio.sleep(0.5)  # within the grace period: nothing is deleted yet
    assert await bot.history.count(back_channel) == await bot.history.count(away_channel) == 2
    assert deleted_models(fake_ollama) == []

    await fake_discord.restore_guild(back)  # invited back in time
    await eventually(lambda: _nothing_left(bot, int(away), away_channel), timeout=10)
    assert deleted_models(fake_ollama) == [{"model": persona_model(fake_discord, "maid", away)}]
    await asyncio.sleep(0.3)
    assert await bot.history.count(back_channel) == 2
    assert await bot.parts.personas.get(int(back), "butler") is not None
