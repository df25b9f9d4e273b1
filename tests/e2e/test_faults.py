"""Faults at either end: the bot keeps serving and says what happened."""

from __future__ import annotations

import itertools
import logging

import pytest

from bot.app import OllamaBot
from tests.conftest import BotRunner
from tests.doubles.fake_discord import FakeDiscord
from tests.doubles.fake_ollama import FakeOllama, Script
from tests.e2e.test_chat import FOOTER, chat
from tests.e2e.test_failures import failed_chat


async def test_ollama_down_at_start_and_back_later(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await fake_ollama.close()
    await bots.start()  # starting does not need Ollama
    message = await failed_chat(fake_discord, "anyone home?")
    assert "can't reach the Ollama server" in message.content
    await fake_ollama.start()  # the same address, as after an Ollama restart
    answer = await chat(fake_discord, "and now?")
    assert "Hello from the fake model." in answer.content


async def test_a_slow_first_token_within_the_limit_is_waited_for(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(first_token_timeout=5)
    fake_ollama.script(Script(reply="Loaded at last.", first_token_delay=1.0))
    message = await chat(fake_discord, "wake up")
    assert "Loaded at last." in message.content


async def test_discord_rate_limits_on_edits_are_absorbed(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    # Far stricter than Discord's 5 per 2 s for an interaction token: the reply must keep to
    # the bucket the double announces (discord.py waits for its reset) and still end whole.
    fake_discord.webhook_budget = (1, 2.0)
    await bots.start()
    tokens = [f"t{n} " for n in range(40)]
    fake_ollama.script(Script(reply=tokens, token_interval=0.05))
    message = await chat(fake_discord, "go")
    edits = [
        r
        for r in fake_discord.requests
        if r.method == "PATCH" and r.path.startswith("/webhooks/") and r.status == 200
    ]
    assert len(edits) >= 2
    assert all(b.t - a.t >= 2.0 - 1e-3 for a, b in itertools.pairwise(edits))
    assert len(fake_discord.rate_limited) <= 1  # at most while discord.py learns the bucket
    assert message.content.split("\n-# ")[0].endswith("".join(tokens).strip())
    assert FOOTER.search(message.content)


async def test_a_gateway_reconnect_does_not_interrupt_service(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await chat(fake_discord, "before")
    await fake_discord.reconnect_gateway()
    after = await chat(fake_discord, "after")
    assert "Hello from the fake model." in after.content
    assert [m["content"] for m in fake_ollama.chat_requests()[-1]["messages"]][-1] == "after"


async def test_logs_name_guild_channel_and_request_but_never_the_token(
    bots: BotRunner,
    fake_discord: FakeDiscord,
    fake_ollama: FakeOllama,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    await bots.start()
    await chat(fake_discord, "hello")
    fake_ollama.busy = True
    await failed_chat(fake_discord, "again")
    text = caplog.text
    assert fake_discord.token not in text
    start = next(r.getMessage() for r in caplog.records if "generation start" in r.getMessage())
    assert f"guild={fake_discord.guild_id}" in start
    assert f"channel={fake_discord.channel_ids[0]}" in start
    assert "request=" in start
    failure = next(r.getMessage() for r in caplog.records if "generation failed" in r.getMessage())
    assert "request=" in failure
