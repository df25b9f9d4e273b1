"""Usage and quotas through the real bot and both doubles: the figures /usage shows against the
counts the Ollama double sent, who may see a server's use, and the daily token quotas."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bot.storage import migrate
from bot.storage.engine import Database, create_engine
from bot.storage.usage import Spent, UsageStore
from tests.conftest import BotRunner
from tests.doubles.fake_discord import FakeDiscord, FakeInteraction
from tests.doubles.fake_ollama import FakeOllama, Script
from tests.e2e.test_admission import bot_replies
from tests.e2e.test_capacity import reply
from tests.e2e.test_chat import final
from tests.e2e.test_fairness import refused_privately
from tests.e2e.test_models import answer
from tests.e2e.test_sentiment import GOOD, private_answer


def figures(fake: FakeOllama, indexes: list[int]) -> tuple[int, int, int]:
    """(prompt tokens, completion tokens, total ns) of those generations, as the double sent."""
    records = [r for r in fake.chat_records() if r.metrics is not None]
    chosen = [records[i].metrics or {} for i in indexes]
    return (
        sum(m.get("prompt_eval_count", 0) for m in chosen),
        sum(m.get("eval_count", 0) for m in chosen),
        sum(m.get("total_duration", 0) for m in chosen),
    )


def line(prompt: int, completion: int, total_ns: int, replies: int) -> str:
    word = "reply" if replies == 1 else "replies"
    return (
        f"{prompt + completion:,} tokens ({prompt:,} read, {completion:,} written) · "
        f"{total_ns / 1e9:.1f} s GPU · {replies} {word}"
    )


async def chat_as(fake: FakeDiscord, user: str, text: str, **options: str) -> FakeInteraction:
    interaction = await fake.slash_command("chat", {"message": text, **options}, user=user)
    await fake.wait_until(
        lambda: (
            refused_privately(interaction) is not None
            or (
                interaction.original_message_id is not None
                and "tokens/s" in fake.messages[interaction.original_message_id].content
            )
        ),
        timeout=10,
    )
    return interaction


async def test_usage_me_shows_the_tokens_and_time_the_double_counted_per_model(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start()
    await chat_as(fake_discord, "alice", "first")
    await chat_as(fake_discord, "alice", "second", model="qwen3")
    await chat_as(fake_discord, "bob", "bob's")

    mine = await fake_discord.slash_command("usage", subcommand="me", user="alice")
    message = await answer(fake_discord, mine)
    assert message.flags & 64  # private
    text = message.content
    both = figures(fake_ollama, [0, 1])
    assert f"Today: {line(*both, 2)}" in text
    assert f"Last 7 days: {line(*both, 2)}" in text
    assert f"Last 30 days: {line(*both, 2)}" in text
    assert f"- `llama3.2` · {line(*figures(fake_ollama, [0]), 1)}" in text
    assert f"- `qwen3` · {line(*figures(fake_ollama, [1]), 1)}" in text
    assert "quota" not in text  # none set


async def test_usage_server_shows_top_members_and_models_to_managers_only(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start()
    await chat_as(fake_discord, "alice", "one")
    await chat_as(fake_discord, "alice", "two, with more words in it")
    await chat_as(fake_discord, "bob", "three")

    refused = await fake_discord.slash_command(
        "usage", {"period": "week"}, subcommand="server", user="bob"
    )
    await fake_discord.wait_until(lambda: refused.callback_type is not None)
    text = (await answer(fake_discord, refused)).content
    assert "Only members with Manage Server" in text

    shown = await fake_discord.slash_command(
        "usage", {"period": "week"}, subcommand="server", user="admin"
    )
    text = (await answer(fake_discord, shown)).content
    alice, bob = fake_discord.users["alice"]["id"], fake_discord.users["bob"]["id"]
    assert "**Use in this server** · last 7 days" in text
    assert f"In all: {line(*figures(fake_ollama, [0, 1, 2]), 3)}" in text
    members = [
        (
            sum(figures(fake_ollama, [0, 1])[:2]),
            f"<@{alice}> · {line(*figures(fake_ollama, [0, 1]), 2)}",
        ),
        (sum(figures(fake_ollama, [2])[:2]), f"<@{bob}> · {line(*figures(fake_ollama, [2]), 1)}"),
    ]
    members.sort(key=lambda m: -m[0])  # most tokens first (bob's prompt had alice's turns too)
    assert f"1. {members[0][1]}\n2. {members[1][1]}" in text
    assert f"1. `llama3.2` · {line(*figures(fake_ollama, [0, 1, 2]), 3)}" in text
    # Mentions in the listing ping no one.
    message = fake_discord.messages[shown.original_message_id or ""]
    assert message.mentions == []


def next_midnight() -> int:
    today = datetime.now(UTC).date()
    return int(datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC).timestamp())


async def test_a_member_over_the_daily_quota_is_refused_privately_until_midnight_utc(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    admin_role = fake_discord.admin_role_id
    await bots.start(daily_token_quota=1, role_token_quotas={int(admin_role): 0})
    await chat_as(fake_discord, "alice", "within the quota")
    over = await chat_as(fake_discord, "alice", "over it")
    refusal = refused_privately(over)
    assert refusal == (
        f"You've used your 1 tokens for today. Your quota resets <t:{next_midnight()}:R>."
    )
    for n in range(2):  # the Admin role's quota is 0: none
        await chat_as(fake_discord, "admin", f"admin {n}")
    # (once two people have spoken, each question carries its speaker's name)
    assert [r["messages"][-1]["content"] for r in fake_ollama.chat_requests()] == [
        "within the quota",
        "Admin: admin 0",
        "Admin: admin 1",
    ]
    mine = await fake_discord.slash_command("usage", subcommand="me", user="alice")
    text = (await answer(fake_discord, mine)).content
    used = sum(figures(fake_ollama, [0])[:2])
    assert f"Daily quota: {used:,} of 1 tokens used; it resets <t:{next_midnight()}:R>." in text


async def test_quotas_count_today_from_before_a_restart_and_start_again_each_day(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    engine = create_engine(bots.database_url)
    database = Database(engine)
    alice, bob = fake_discord.users["alice"]["id"], fake_discord.users["bob"]["id"]
    today = datetime.now(UTC).date()
    try:
        await migrate.upgrade(engine)
        store = UsageStore(database)
        # Yesterday alice used far more than a day's quota; bob used his today already.
        await store.record(Spent(today - timedelta(days=1), 1, int(alice), "llama3.2", 900, 100, 1))
        await store.record(Spent(today, 1, int(bob), "llama3.2", 90, 10, 1))
    finally:
        await database.close()
        await engine.dispose()
    await bots.start(daily_token_quota=100)
    fine = await chat_as(fake_discord, "alice", "a new day")
    assert refused_privately(fine) is None
    await reply(fake_discord, fine)
    refused = await chat_as(fake_discord, "bob", "still today")
    assert "You've used your 100 tokens for today" in (refused_privately(refused) or "")


async def test_a_sentiment_analysis_counts_in_the_usage_and_the_quota(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(daily_token_quota=1)
    fake_ollama.script(Script(reply=GOOD))
    rated = await fake_discord.slash_command("sentiment", {"text": "Thanks, this is great!"})
    await private_answer(fake_discord, rated)
    over = await chat_as(fake_discord, "alice", "and now a chat")
    assert "You've used your 1 tokens for today" in (refused_privately(over) or "")
    mine = await fake_discord.slash_command("usage", subcommand="me", user="alice")
    text = (await answer(fake_discord, mine)).content
    assert f"Today: {line(*figures(fake_ollama, [0]), 1)}" in text


async def test_a_mention_over_the_quota_is_told_once_in_the_channel_with_the_reset(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(daily_token_quota=1)
    channel = fake_discord.channel_ids[0]
    await fake_discord.user_message("first", mention_bot=True)
    await fake_discord.wait_until(
        lambda: any(final(m) for m in bot_replies(fake_discord, channel)), timeout=10
    )
    for n in range(2):
        await fake_discord.user_message(f"again {n}", mention_bot=True)
    notice = f"⚠️ You've used your 1 tokens for today. Your quota resets <t:{next_midnight()}:R>."
    await fake_discord.wait_until(
        lambda: any(m.content == notice for m in bot_replies(fake_discord, channel))
    )
    await asyncio.sleep(0.3)  # time for a second notice to (wrongly) appear
    assert sum(m.content == notice for m in bot_replies(fake_discord, channel)) == 1
    assert len(fake_ollama.chat_requests()) == 1
