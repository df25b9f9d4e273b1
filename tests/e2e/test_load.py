"""Load: 100 conversations at once from 30 people, the doubles enforcing their limits."""

from __future__ import annotations

import asyncio
import statistics
import time

from bot.app import OllamaBot
from tests.conftest import BotRunner
from tests.doubles.fake_discord import FakeDiscord, FakeInteraction
from tests.doubles.fake_ollama import FakeOllama, Script

CONVERSATIONS = 100
PEOPLE = 30
QUESTIONS = 2  # per conversation, asked back to back


def finished(fake: FakeDiscord, interaction: FakeInteraction) -> bool:
    if interaction.original_message_id is None:
        return False
    content = fake.messages[interaction.original_message_id].content
    return "\n-# " in content or "⚠️" in content


async def test_a_hundred_conversations_from_thirty_people(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    channels = [fake_discord.add_text_channel(f"room-{n}") for n in range(CONVERSATIONS)]
    people = [fake_discord.add_member(f"person{n}")["username"] for n in range(PEOPLE)]
    bot: OllamaBot = await bots.start(max_parallel_generations=4, max_queue=250)
    fake_ollama.script(
        *[
            Script(reply=[f"a{n} " for n in range(8)], token_interval=0.01)
            for _ in range(CONVERSATIONS * QUESTIONS)
        ]
    )

    began = time.monotonic()
    asked: list[tuple[str, str, FakeInteraction]] = []
    for n, channel in enumerate(channels):
        for q in range(QUESTIONS):
            person = people[n % PEOPLE]
            interaction = await fake_discord.slash_command(
                "chat", {"message": f"{channel} question {q}"}, user=person, channel_id=channel
            )
            asked.append((channel, person, interaction))
    await fake_discord.wait_until(
        lambda: all(finished(fake_discord, i) for _, _, i in asked), timeout=60
    )
    elapsed = time.monotonic() - began

    # Every request was acknowledged in time and answered (or told why).
    assert all(i.callback_type == 5 for _, _, i in asked)
    answered = [
        i
        for _, _, i in asked
        if "\n-# " in fake_discord.messages[i.original_message_id or ""].content
    ]
    refused = [i for _, _, i in asked if i not in answered]
    assert not refused, [
        fake_discord.messages[i.original_message_id or ""].content for i in refused[:3]
    ]
    # No 429 from edits, and the bot never ran more generations than allowed.
    assert fake_discord.rate_limited == []
    assert fake_ollama.max_active_generations <= 4
    # Nothing lost, order kept per channel: each channel holds q0, a0, q1, a1, all complete.
    lost = 0
    for channel in channels:
        turns = await bot.history.all(int(channel))
        assert [t.content for t in turns if t.role == "user"] == [
            f"{channel} question {q}" for q in range(QUESTIONS)
        ]
        assert [t.role for t in turns] == ["user", "assistant"] * QUESTIONS
        lost += sum(1 for t in turns if t.status != "complete")
    assert lost == 0
    second = [
        r
        for r in fake_ollama.chat_requests()
        if r["messages"][-1]["content"].endswith("question 1")
    ]
    assert all(len(r["messages"]) == 3 for r in second)  # each saw its channel's first exchange

    # Figures for the record (pytest -s shows them).
    waits = []
    for _, _, interaction in asked:
        message = fake_discord.messages[interaction.original_message_id or ""]
        waits.append(message.edits[0][0] - interaction.created_at)
    print(
        f"\nload: {len(asked)} requests from {PEOPLE} people in {CONVERSATIONS} channels, "
        f"{elapsed:.1f} s; wait to first text median {statistics.median(waits):.2f} s, "
        f"max {max(waits):.2f} s; 429s {len(fake_discord.rate_limited)}; lost turns {lost}"
    )
    await asyncio.sleep(0)
