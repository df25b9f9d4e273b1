"""/sentiment and "Analyze sentiment": a structured (JSON schema) reply, validated and retried."""

from __future__ import annotations

import json

from bot.app import OllamaBot
from bot.sentiment.service import SCHEMA
from tests.conftest import BotRunner
from tests.doubles.fake_discord import FakeDiscord, FakeInteraction
from tests.doubles.fake_ollama import FakeOllama, Script
from tests.imagefiles import png

GOOD = json.dumps({"label": "positive", "confidence": 0.92, "reason": "Thankful and\nglad."})


async def private_answer(fake: FakeDiscord, interaction: FakeInteraction) -> str:
    def text() -> str:
        if interaction.original_message_id is None:
            return ""
        message = fake.messages[interaction.original_message_id]
        return "" if message.is_loading else message.content

    await fake.wait_until(lambda: bool(text()), timeout=10)
    assert fake.messages[interaction.original_message_id or ""].is_ephemeral
    return text()


async def test_sentiment_of_a_text(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Script(reply=GOOD))
    interaction = await fake_discord.slash_command("sentiment", {"text": "Thanks, this is great!"})
    text = await private_answer(fake_discord, interaction)
    assert text == (
        "> Thanks, this is great!\n🙂 **positive** · confidence 0.92\nThankful and glad.\n-# llama3.2"
    )
    [request] = fake_ollama.chat_requests()
    assert request["model"] == "llama3.2"  # no sentiment_model set: the chat model
    assert request["stream"] is False
    assert request["format"] == SCHEMA
    assert request["format"]["properties"]["label"]["enum"] == [
        "positive",
        "negative",
        "neutral",
        "mixed",
    ]
    assert [m["role"] for m in request["messages"]] == ["system", "user"]
    assert request["messages"][1]["content"] == "Thanks, this is great!"
    assert await bot.history.all(int(fake_discord.channel_ids[0])) == []  # not a conversation


async def test_a_reply_that_breaks_the_schema_is_retried_once(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(
        Script(reply='{"label": "ecstatic", "confidence": 0.9, "reason": "so happy"}'),
        Script(reply=GOOD),
    )
    interaction = await fake_discord.slash_command("sentiment", {"text": "Yay"})
    assert "**positive**" in await private_answer(fake_discord, interaction)
    first, second = fake_ollama.chat_requests()
    assert first["options"] == {"temperature": 0, "num_ctx": 8192}
    assert second["options"] == {"num_ctx": 8192}  # the same window: no reload
    assert [r.num_ctx for r in fake_ollama.chat_records()] == [8192, 8192]
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "user"]
    assert second["messages"][2]["content"].startswith('{"label": "ecstatic"')
    assert "label" in second["messages"][3]["content"]  # says what was wrong


async def test_two_invalid_replies_are_reported(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(
        Script(reply="I think it is quite positive!"),
        Script(reply='{"label": "positive", "confidence": 7, "reason": "very"}'),
    )
    interaction = await fake_discord.slash_command("sentiment", {"text": "Yay"})
    text = await private_answer(fake_discord, interaction)
    assert text == (
        "`llama3.2` did not answer in the expected format, twice. Try again, or an admin can "
        "set BOT_SENTIMENT_MODEL (`sentiment_model`) to another model."
    )
    assert len(fake_ollama.chat_requests()) == 2  # one retry, no more


async def test_analyze_sentiment_message_menu_uses_the_sentiment_model(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(sentiment_model="qwen3")
    fake_ollama.script(
        Script(reply='{"label": "negative", "confidence": 0.8, "reason": "Dislikes Mondays."}')
    )
    # Not addressed to the bot: its Gateway copy is blank, but the menu's target has the text.
    target = await fake_discord.user_message("I hate Mondays", user="bob")
    interaction = await fake_discord.message_command("Analyze sentiment", target.id)
    text = await private_answer(fake_discord, interaction)
    assert "🙁 **negative** · confidence 0.80" in text and text.endswith("-# qwen3")
    [request] = fake_ollama.chat_requests()
    assert request["model"] == "qwen3"
    assert request["messages"][-1]["content"] == "I hate Mondays"

    picture = await fake_discord.user_message("", attachments=[("a.png", png(), "image/png")])
    refused = await fake_discord.message_command("Analyze sentiment", picture.id)
    assert await private_answer(fake_discord, refused) == "That message has no text to analyse."
    assert len(fake_ollama.chat_requests()) == 1
