"""Sharing the model: the per-user rate limit, the waiting line, a full line."""

from __future__ import annotations

from tests.conftest import BotRunner
from tests.doubles.fake_discord import FakeDiscord, FakeInteraction
from tests.doubles.fake_ollama import FakeOllama, Script
from tests.e2e.test_chat import final


def shown(fake: FakeDiscord, interaction: FakeInteraction) -> list[str]:
    """Every text the interaction's response showed, in order."""
    if interaction.original_message_id is None:
        return []
    message = fake.messages[interaction.original_message_id]
    return [content for _, content in message.edits] or [message.content]


def refused_privately(interaction: FakeInteraction) -> str | None:
    """The text of a private refusal (an ephemeral message as the response), else None."""
    body = interaction.callback_body or {}
    if interaction.callback_type != 4 or not body.get("data", {}).get("flags", 0) & 64:
        return None
    return str(body["data"]["content"])


def done(fake: FakeDiscord, interaction: FakeInteraction) -> bool:
    if refused_privately(interaction) is not None:
        return True
    texts = shown(fake, interaction)
    return bool(texts) and (
        final(fake.messages[interaction.original_message_id or ""]) or "⚠️" in texts[-1]
    )


async def test_a_user_over_the_rate_limit_is_told_when_to_come_back(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(user_requests_per_minute=2)
    answered = [await fake_discord.slash_command("chat", {"message": f"q{n}"}) for n in range(3)]
    other = await fake_discord.slash_command("chat", {"message": "bob's turn"}, user="bob")
    await fake_discord.wait_until(
        lambda: all(done(fake_discord, i) for i in [*answered, other]), timeout=10
    )
    refusal = refused_privately(answered[2])  # private: nothing public, no "thinking" message
    assert refusal is not None and "sending requests quickly" in refusal
    assert "Try again in" in refusal
    assert [r["messages"][-1]["content"] for r in fake_ollama.chat_requests()] == [
        "q0",
        "q1",
        "Bob: bob's turn",  # a second person: turns carry their speaker's name
    ]


async def test_waiting_requests_see_their_place_and_a_full_line_is_refused(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(max_parallel_generations=1, max_queue=2)
    general, random, other = fake_discord.channel_ids[:3]
    # The first reply takes 3 s: long enough for the others' waiting notices, which show only
    # after a wait of a second (shorter waits are not worth a message).
    fake_ollama.script(
        Script(reply=[f"t{n} " for n in range(30)], token_interval=0.1),
        *[Script(reply=[f"t{n} " for n in range(10)], token_interval=0.01) for _ in range(2)],
    )
    first = await fake_discord.slash_command("chat", {"message": "first"}, channel_id=general)
    await fake_ollama.wait_until(lambda: fake_ollama.active_generations == 1)
    second = await fake_discord.slash_command("chat", {"message": "second"}, channel_id=random)
    await fake_discord.wait_until(
        lambda: any("number 1 in line" in t for t in shown(fake_discord, second))
    )
    third = await fake_discord.slash_command("chat", {"message": "third"}, channel_id=other)
    await fake_discord.wait_until(
        lambda: any("number 2 in line" in t for t in shown(fake_discord, third))
    )
    refused = await fake_discord.slash_command("chat", {"message": "fourth"}, channel_id=general)
    await fake_discord.wait_until(lambda: done(fake_discord, refused))
    assert "Too many requests are waiting" in (refused_privately(refused) or "")

    await fake_discord.wait_until(
        lambda: all(done(fake_discord, i) for i in (first, second, third)), timeout=15
    )
    # Everyone was answered, in order, one generation at a time.
    assert [r["messages"][-1]["content"] for r in fake_ollama.chat_requests()] == [
        "first",
        "second",
        "third",
    ]
    assert fake_ollama.max_active_generations == 1


def notices(fake: FakeDiscord, interaction: FakeInteraction) -> list[tuple[float, str]]:
    """(double's clock, text) of each waiting notice the interaction's response showed."""
    if interaction.original_message_id is None:
        return []
    message = fake.messages[interaction.original_message_id]
    return [(at, text) for at, text in message.edits if "in line" in text]


async def test_the_waiting_notice_shows_after_a_second_of_waiting_and_not_before(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(max_parallel_generations=1)
    fake_ollama.script(
        Script(reply=[f"t{n} " for n in range(20)], token_interval=0.1),  # about 2 s
        Script(reply="second answer"),
    )
    first = await fake_discord.slash_command("chat", {"message": "first"})
    await fake_ollama.wait_until(lambda: fake_ollama.active_generations == 1)
    second = await fake_discord.slash_command(
        "chat", {"message": "second"}, channel_id=fake_discord.channel_ids[1]
    )
    await fake_discord.wait_until(lambda: bool(notices(fake_discord, second)), timeout=10)
    [(shown_at, text)] = notices(fake_discord, second)
    assert text.splitlines()[-1] == "⏳ Waiting for the model: you are number 1 in line."
    # The bot had the interaction at created_at; the notice came a second later, not at once.
    assert shown_at - second.created_at >= 1.0
    await fake_discord.wait_until(
        lambda: all(done(fake_discord, i) for i in (first, second)), timeout=15
    )
    answer = fake_discord.messages[second.original_message_id or ""].content
    assert "second answer" in answer and "in line" not in answer


async def test_a_wait_shorter_than_a_second_shows_no_waiting_notice(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(max_parallel_generations=1)
    fake_ollama.script(
        Script(reply=[f"t{n} " for n in range(4)], token_interval=0.1),  # about 0.4 s
        Script(reply="second answer"),
    )
    first = await fake_discord.slash_command("chat", {"message": "first"})
    await fake_ollama.wait_until(lambda: fake_ollama.active_generations == 1)
    second = await fake_discord.slash_command(
        "chat", {"message": "second"}, channel_id=fake_discord.channel_ids[1]
    )
    await fake_discord.wait_until(
        lambda: all(done(fake_discord, i) for i in (first, second)), timeout=15
    )
    # It did wait its turn, for less than a second: it came while the first generation ran, and
    # reached Ollama after that one ended (both doubles use the monotonic clock).
    first_chat, second_chat = [r for r in fake_ollama.requests if r.path == "/api/chat"]
    assert second.created_at < first_chat.sent[-1] <= second_chat.t
    assert second_chat.t - second.created_at < 1.0
    assert notices(fake_discord, second) == []


async def test_one_channel_answers_in_order(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(max_parallel_generations=4, user_requests_per_minute=0)
    fake_ollama.script(*[Script(reply=f"answer {n}", token_interval=0.02) for n in range(4)])
    asked = [
        await fake_discord.slash_command("chat", {"message": f"question {n}"}) for n in range(4)
    ]
    await fake_discord.wait_until(lambda: all(done(fake_discord, i) for i in asked), timeout=15)
    requests = fake_ollama.chat_requests()
    assert [r["messages"][-1]["content"] for r in requests] == [f"question {n}" for n in range(4)]
    # Each question saw the previous answers: the channel's turns were taken one at a time.
    assert len(requests[-1]["messages"]) == 7
    assert fake_ollama.max_active_generations == 1
