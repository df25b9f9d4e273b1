"""What members take back is gone from the bot too (issue 13): a deleted question, and a server
that removed the bot. The real bot against both doubles and a migrated database."""

from __future__ import annotations

from bot.app import OllamaBot
from tests.conftest import BotRunner, eventually
from tests.doubles.fake_discord import FakeDiscord
from tests.doubles.fake_ollama import FakeOllama
from tests.e2e.test_chat import chat
from tests.e2e.test_images import a_png


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
