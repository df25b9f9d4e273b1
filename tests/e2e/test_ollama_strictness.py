"""Bugs that only a double as strict as Ollama shows: the real bot against both doubles."""

from __future__ import annotations

from bot.app import OllamaBot
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
