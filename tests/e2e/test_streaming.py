"""Streaming cadence against Discord's edit budget."""

from __future__ import annotations

import itertools

from tests.conftest import BotRunner
from tests.doubles.fake_discord import FakeDiscord
from tests.doubles.fake_ollama import FakeOllama, Script
from tests.e2e.test_chat import chat


async def test_edits_keep_to_one_per_interval_with_a_full_final_edit(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(edit_interval=1.0)  # the default cadence, against Discord's 5 per 5 s
    tokens = [f"word{n} " for n in range(60)]
    fake_ollama.script(Script(reply=tokens, first_token_delay=0.3, token_interval=0.05))
    message = await chat(fake_discord, "count")

    request = next(r for r in fake_ollama.requests if r.path == "/api/chat")
    first_token_at = request.t + 0.3
    assert message.edits, "the reply was never drawn"
    first_text_at = message.edits[0][0]
    # The deferred response was filled in one edit interval of the first token at the latest.
    assert first_text_at - first_token_at < 1.0
    times = [t for t, _ in message.edits]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.95 for gap in gaps[:-1]), gaps  # steady edits, never once per token
    assert len(message.edits) <= 3 / 1.0 + 3
    assert message.edits[-1][1].split("\n-# ")[0].endswith("".join(tokens).strip())
    assert fake_discord.rate_limited == []


async def test_a_reply_outliving_the_interaction_token_carries_on_in_the_channel(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_discord.interaction_token_ttl = 2.0  # Discord's is 15 minutes
    await bots.start(interaction_token_ttl=2.0)
    tokens = [f"word{n} " + ("x" * 60) + "\n" for n in range(80)]  # ~5,400 characters
    fake_ollama.script(Script(reply=tokens, token_interval=0.05))
    interaction = await fake_discord.slash_command("chat", {"message": "a long story"})
    channel = fake_discord.channel_ids[0]
    await fake_discord.wait_until(
        lambda: any("-# llama3.2" in m.content for m in fake_discord.bot_messages(channel)),
        timeout=15,
    )
    assert not [r for r in fake_discord.requests if r.status == 401]  # never used a dead token
    plain = [
        m
        for m in fake_discord.bot_messages(channel)
        if m.interaction_id is None and m.webhook_id is None
    ]
    assert plain, "continuation messages past the token's lifetime are plain channel messages"
    followups = [fake_discord.messages[i] for i in interaction.followup_ids]
    pieces = [fake_discord.messages[interaction.original_message_id or ""], *followups, *plain]
    text = "".join(m.content for m in pieces)
    for n in range(80):
        assert f"word{n} " in text
