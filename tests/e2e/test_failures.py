"""Ollama failures reach the user as short, clear messages; the turn is stored as failed."""

from __future__ import annotations

import socket

import pytest

from bot.app import OllamaBot
from tests.conftest import BotRunner
from tests.doubles.fake_discord import FakeDiscord, FakeMessage
from tests.doubles.fake_ollama import FakeOllama, Script


async def failed_chat(fake: FakeDiscord, text: str = "hello", **options: str) -> FakeMessage:
    interaction = await fake.slash_command("chat", {"message": text, **options})
    await fake.wait_until(
        lambda: (
            interaction.original_message_id is not None
            and "⚠️" in fake.messages[interaction.original_message_id].content
        ),
        timeout=10,
    )
    return fake.messages[interaction.original_message_id or ""]


async def assert_stored_as_failed(bot: OllamaBot, fake: FakeDiscord, needle: str) -> None:
    turns = await bot.history.all(int(fake.channel_ids[0]))
    assert [t.role for t in turns] == ["user", "assistant"]
    assert turns[0].content  # the user's words are kept
    assert turns[1].status == "failed"
    assert turns[1].error and needle in turns[1].error


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_ollama_unreachable(bots: BotRunner, fake_discord: FakeDiscord) -> None:
    bot = await bots.start(ollama_host=f"http://127.0.0.1:{closed_port()}")
    message = await failed_chat(fake_discord)
    assert "can't reach the Ollama server" in message.content
    await assert_stored_as_failed(bot, fake_discord, "can't reach")


async def test_model_not_found_suggests_a_pull(bot: OllamaBot, fake_discord: FakeDiscord) -> None:
    message = await failed_chat(fake_discord, model="mistral")
    assert "`mistral` is not installed" in message.content
    assert "/model pull name:mistral" in message.content
    await assert_stored_as_failed(bot, fake_discord, "not installed")


async def test_ollama_busy(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.busy = True
    message = await failed_chat(fake_discord)
    assert "busy" in message.content and "Try again" in message.content
    await assert_stored_as_failed(bot, fake_discord, "busy")


async def test_error_in_the_middle_of_the_stream_keeps_the_partial_text(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(
        Script(reply="one two three four five", error_after=3, error_message="out of memory")
    )
    message = await failed_chat(fake_discord)
    assert "one two" in message.content
    assert "stopped with an error: out of memory" in message.content
    await assert_stored_as_failed(bot, fake_discord, "out of memory")
    turns = await bot.history.all(int(fake_discord.channel_ids[0]))
    assert turns[1].content.startswith("one two")


async def test_ollama_dying_mid_stream(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Script(reply="one two three four five", die_after=2))
    message = await failed_chat(fake_discord)
    assert "connection to Ollama was lost" in message.content
    await assert_stored_as_failed(bot, fake_discord, "lost")


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (Script(reply="late", first_token_delay=2.0), "waiting for the first token"),
        (Script(reply="one two three", token_interval=2.0), "between tokens"),
        # Each token in time, but the whole reply is not: 20 tokens 0.1 s apart, 1 s in all.
        (Script(reply=" ".join(["word"] * 20), token_interval=0.1), "in all, 1 s"),
    ],
)
async def test_timeouts(
    bots: BotRunner,
    fake_discord: FakeDiscord,
    fake_ollama: FakeOllama,
    script: Script,
    expected: str,
) -> None:
    bot = await bots.start(first_token_timeout=0.5, between_tokens_timeout=0.5, total_timeout=1)
    fake_ollama.script(script)
    message = await failed_chat(fake_discord)
    assert expected in message.content
    await assert_stored_as_failed(bot, fake_discord, expected)
    await fake_ollama.wait_until(lambda: fake_ollama.active_generations == 0)


async def test_a_failure_is_left_out_of_the_next_context(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.busy = True
    await failed_chat(fake_discord, "first try")
    fake_ollama.busy = False
    interaction = await fake_discord.slash_command("chat", {"message": "second try"})
    await fake_discord.wait_until(lambda: len(fake_ollama.chat_requests()) == 2)
    assert fake_ollama.chat_requests()[-1]["messages"] == [
        {"role": "user", "content": "second try"}
    ]
    assert interaction.callback_type == 5
