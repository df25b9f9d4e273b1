"""Bugs that only a double as strict as Ollama shows: the real bot against both doubles."""

from __future__ import annotations

import asyncio

from bot.app import OllamaBot
from tests.conftest import BotRunner
from tests.doubles.fake_discord import FakeDiscord
from tests.doubles.fake_ollama import FakeOllama, Script
from tests.e2e.test_chat import chat


async def test_text_in_the_final_chunk_reaches_discord_and_history(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    """Ollama's output parsers flush held-back text on the done:true chunk: the last words
    of the reply are there, and were lost."""
    fake_ollama.script(
        Script(reply="The sky is blue because of", final_text=" Rayleigh scattering.")
    )
    message = await chat(fake_discord, "Why is the sky blue?")

    assert "The sky is blue because of Rayleigh scattering." in message.content
    turns = await bot.history.all(int(fake_discord.channel_ids[0]))
    assert turns[-1].content == "The sky is blue because of Rayleigh scattering."
    assert turns[-1].completion_tokens == 7


async def test_two_long_replies_at_once_both_complete_against_one_ollama_slot(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    """Ollama runs one generation at a time by default: a second one sent beside it waits
    inside Ollama, and its first-token timeout counted that wait. By default the bot now sends
    no more than Ollama runs; the second reply waits in the bot's line instead."""
    assert fake_ollama.parallel == 1  # OLLAMA_NUM_PARALLEL's default
    bot = await bots.start(first_token_timeout=0.5)
    long_reply = [f"w{n} " for n in range(20)]
    fake_ollama.script(*[Script(reply=long_reply, token_interval=0.05) for _ in range(2)])
    first, second = fake_discord.channel_ids[:2]
    answers = await asyncio.gather(
        chat(fake_discord, "tell me a long story", channel_id=first),
        chat(fake_discord, "tell me another", channel_id=second),
    )

    for answer in answers:
        assert "w19" in answer.content and "⚠️" not in answer.content
    for channel in (first, second):
        turns = await bot.history.all(int(channel))
        assert [t.status for t in turns] == ["complete", "complete"]
    assert fake_ollama.max_active_generations == 1
    assert fake_ollama.max_queued == 0  # nothing waited inside Ollama
