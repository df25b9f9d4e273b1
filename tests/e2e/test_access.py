"""Allow and deny lists, and direct messages, through the real bot."""

from __future__ import annotations

from bot.access import NO_DMS, NOT_HERE
from tests.conftest import BotRunner
from tests.doubles.fake_discord import FakeDiscord, FakeInteraction
from tests.doubles.fake_ollama import FakeOllama
from tests.e2e.test_chat import final


def callback_text(interaction: FakeInteraction) -> str:
    return str((interaction.callback_body or {}).get("data", {}).get("content", ""))


async def test_a_denied_user_is_refused_and_their_mentions_are_ignored(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(denied_user_ids=[int(fake_discord.users["bob"]["id"])])
    refused = await fake_discord.slash_command("chat", {"message": "hi"}, user="bob")
    await fake_discord.wait_until(lambda: refused.callback_type is not None)
    assert callback_text(refused) == NOT_HERE
    assert (refused.callback_body or {})["data"]["flags"] & 64  # ephemeral
    await fake_discord.user_message("hello?", user="bob", mention_bot=True)
    await fake_discord.user_message("marker", user="alice", mention_bot=True)
    await fake_discord.wait_until(lambda: any(final(m) for m in fake_discord.bot_messages()))
    assert [r["messages"][-1]["content"] for r in fake_ollama.chat_requests()] == ["marker"]


async def test_allowed_channels_limit_where_the_bot_answers_except_for_admins(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    general, random = fake_discord.channel_ids[:2]
    await bots.start(allowed_channel_ids=[int(general)])
    refused = await fake_discord.slash_command("chat", {"message": "hi"}, channel_id=random)
    await fake_discord.wait_until(lambda: refused.callback_type is not None)
    assert callback_text(refused) == NOT_HERE
    admin = await fake_discord.slash_command(
        "chat", {"message": "admin here"}, channel_id=random, user="admin"
    )
    allowed = await fake_discord.slash_command(
        "chat", {"message": "in general"}, channel_id=general
    )
    await fake_discord.wait_until(lambda: len(fake_ollama.chat_requests()) == 2)
    assert admin.callback_type == allowed.callback_type == 5
    assert sorted(r["messages"][-1]["content"] for r in fake_ollama.chat_requests()) == [
        "admin here",
        "in general",
    ]


async def test_direct_messages_are_off_by_default(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start()
    dm = fake_discord.add_dm_channel("alice")
    refused = await fake_discord.slash_command("chat", {"message": "hi"}, channel_id=dm)
    await fake_discord.wait_until(lambda: refused.callback_type is not None)
    assert callback_text(refused) == NO_DMS
    await fake_discord.user_message("anyone?", channel_id=dm)
    await fake_discord.user_message("marker", mention_bot=True)
    await fake_discord.wait_until(lambda: any(final(m) for m in fake_discord.bot_messages()))
    assert [r["messages"][-1]["content"] for r in fake_ollama.chat_requests()] == ["marker"]


async def test_direct_messages_when_allowed_need_no_mention(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    bot = await bots.start(allow_dms=True)
    dm = fake_discord.add_dm_channel("alice")
    await fake_discord.user_message("hello in private", channel_id=dm)
    await fake_discord.wait_until(
        lambda: any(final(m) for m in fake_discord.bot_messages(dm)), timeout=10
    )
    assert fake_ollama.chat_requests()[-1]["messages"] == [
        {"role": "user", "content": "hello in private"}
    ]
    turns = await bot.history.all(int(dm))
    assert [t.content for t in turns if t.role == "user"] == ["hello in private"]
