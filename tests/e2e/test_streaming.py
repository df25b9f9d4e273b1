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
