"""/thread start, /channel autoreply, and who the bot answers without a mention."""

from __future__ import annotations

from bot.app import OllamaBot
from tests.conftest import BotRunner
from tests.doubles.fake_discord import FakeDiscord, FakeMessage
from tests.doubles.fake_ollama import FakeOllama, Script
from tests.e2e.test_chat import assert_pings_no_one, final


def finished_in(fake: FakeDiscord, channel_id: str) -> list[FakeMessage]:
    return [m for m in fake.bot_messages(channel_id) if final(m)]


async def start_thread(fake: FakeDiscord, topic: str, **options: object) -> tuple[str, FakeMessage]:
    """Run /thread start; returns the new thread's id and the first answer inside it."""
    interaction = await fake.slash_command(
        "thread", {"topic": topic, **options}, subcommand="start"
    )
    await fake.wait_until(
        lambda: any(c.get("parent_id") == fake.channel_ids[0] for c in fake.channels.values())
    )
    thread_id = next(
        i for i, c in fake.channels.items() if c.get("parent_id") == fake.channel_ids[0]
    )
    await fake.wait_until(lambda: bool(finished_in(fake, thread_id)), timeout=10)
    assert interaction.original_message_id is not None
    assert f"<#{thread_id}>" in fake.messages[interaction.original_message_id].content
    return thread_id, finished_in(fake, thread_id)[0]


async def test_thread_start_opens_a_thread_and_answers_inside_it(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(message_content_intent=True)
    fake_ollama.script(Script(reply="Let's plan your garden."))
    thread_id, answer = await start_thread(fake_discord, "Planning my   vegetable garden")

    create = next(
        r for r in fake_discord.requests if r.method == "POST" and r.path.endswith("/threads")
    )
    assert create.json["name"] == "Planning my vegetable garden"
    assert create.json["type"] == 11  # public by default
    assert fake_discord.channels[thread_id]["name"] == "Planning my vegetable garden"
    assert "Let's plan your garden." in answer.content
    assert fake_ollama.chat_requests()[-1]["messages"] == [
        {"role": "user", "content": "Planning my   vegetable garden"}
    ]
    assert_pings_no_one(fake_discord)


async def test_private_thread_adds_the_requester(
    bots: BotRunner, fake_discord: FakeDiscord
) -> None:
    await bots.start(message_content_intent=True)
    thread_id, _ = await start_thread(fake_discord, "secret plans", private=True)
    assert fake_discord.channels[thread_id]["type"] == 12
    assert fake_discord.thread_members[thread_id] == [fake_discord.users["alice"]["id"]]


async def test_messages_in_the_bots_thread_are_answered_without_a_mention(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(message_content_intent=True)
    fake_ollama.script(Script(reply="First answer."), Script(reply="Second answer."))
    thread_id, _ = await start_thread(fake_discord, "garden")
    await fake_discord.user_message("what about tomatoes?", channel_id=thread_id)
    await fake_discord.wait_until(
        lambda: len(finished_in(fake_discord, thread_id)) == 2, timeout=10
    )
    assert fake_ollama.chat_requests()[-1]["messages"] == [
        {"role": "user", "content": "garden"},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "what about tomatoes?"},
    ]


async def test_thread_history_is_separate_from_the_parent_channel(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    bot = await bots.start(message_content_intent=True)
    await fake_discord.user_message("parent question", mention_bot=True)
    await fake_discord.wait_until(
        lambda: bool(finished_in(fake_discord, fake_discord.channel_ids[0]))
    )
    thread_id, _ = await start_thread(fake_discord, "thread topic")
    assert [m["content"] for m in fake_ollama.chat_requests()[-1]["messages"]] == ["thread topic"]
    parent_turns = await bot.history.all(int(fake_discord.channel_ids[0]))
    thread_turns = await bot.history.all(int(thread_id))
    assert [t.content for t in parent_turns if t.role == "user"] == ["parent question"]
    assert [t.content for t in thread_turns if t.role == "user"] == ["thread topic"]


async def test_other_threads_still_need_a_mention(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    bot = await bots.start(message_content_intent=True)
    thread_id, _ = await start_thread(fake_discord, "garden")
    await bot.parts.channels.update(int(thread_id), int(fake_discord.guild_id), bot_thread=False)
    await fake_discord.user_message("anyone here?", channel_id=thread_id)
    await fake_discord.user_message("marker", channel_id=thread_id, mention_bot=True)
    await fake_discord.wait_until(
        lambda: len(finished_in(fake_discord, thread_id)) == 2, timeout=10
    )
    assert [r["messages"][-1]["content"] for r in fake_ollama.chat_requests()] == [
        "garden",
        "marker",
    ]


async def test_autoreply_on_and_off_survives_a_restart(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    channel = fake_discord.channel_ids[1]
    first = await bots.start(message_content_intent=True)
    refused = await fake_discord.slash_command(
        "channel", {"enabled": True}, subcommand="autoreply", channel_id=channel
    )
    await fake_discord.wait_until(lambda: refused.original_message_id is not None)
    assert "Manage Channels" in fake_discord.messages[refused.original_message_id or ""].content

    on = await fake_discord.slash_command(
        "channel", {"enabled": True}, subcommand="autoreply", channel_id=channel, user="admin"
    )
    await fake_discord.wait_until(lambda: on.original_message_id is not None)
    assert "Auto-reply is **on**" in fake_discord.messages[on.original_message_id or ""].content
    await bots.stop(first)

    await bots.start(message_content_intent=True)
    await fake_discord.user_message("no mention needed", channel_id=channel)
    await fake_discord.wait_until(lambda: len(finished_in(fake_discord, channel)) == 1, timeout=10)

    off = await fake_discord.slash_command(
        "channel", {"enabled": False}, subcommand="autoreply", channel_id=channel, user="admin"
    )
    await fake_discord.wait_until(lambda: off.original_message_id is not None)
    await fake_discord.user_message("ignored now", channel_id=channel)
    await fake_discord.user_message("marker", channel_id=channel, mention_bot=True)
    await fake_discord.wait_until(lambda: len(finished_in(fake_discord, channel)) == 2, timeout=10)
    assert [r["messages"][-1]["content"] for r in fake_ollama.chat_requests()] == [
        "no mention needed",
        "marker",
    ]


async def test_autoreply_ignores_bots_webhooks_and_messages_for_others(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    bot = await bots.start(message_content_intent=True)
    channel = fake_discord.channel_ids[0]
    await bot.parts.channels.update(int(channel), int(fake_discord.guild_id), autoreply=True)
    bob = fake_discord.users["bob"]["id"]
    await fake_discord.user_message("beep", user="otherbot")
    await fake_discord.user_message("hook says hi", webhook=True)
    await fake_discord.user_message(f"<@{bob}> what do you think?")
    await fake_discord.user_message("hello everyone", mention_everyone=True)
    await fake_discord.user_message("for the bot")
    await fake_discord.wait_until(lambda: len(finished_in(fake_discord, channel)) == 1, timeout=10)
    assert [r["messages"][-1]["content"] for r in fake_ollama.chat_requests()] == ["for the bot"]


async def test_without_the_intent_the_commands_explain_how_to_turn_it_on(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    assert not fake_discord.message_content_intent
    autoreply = await fake_discord.slash_command(
        "channel", {"enabled": True}, subcommand="autoreply", user="admin"
    )
    await fake_discord.wait_until(lambda: autoreply.original_message_id is not None)
    text = fake_discord.messages[autoreply.original_message_id or ""].content
    assert "Message Content" in text
    assert "BOT_MESSAGE_CONTENT_INTENT=true" in text
    assert not (await bot.parts.channels.get(int(fake_discord.channel_ids[0]))).autoreply

    thread_id, _ = await start_thread(fake_discord, "garden")
    interaction = next(
        i
        for i in fake_discord.interactions.values()
        if i.original_message_id and "🧵" in fake_discord.messages[i.original_message_id].content
    )
    assert "Message Content" in fake_discord.messages[interaction.original_message_id or ""].content
    # An unmentioned message in the thread arrives blank and is not answered; a mention is.
    await fake_discord.user_message("unmentioned", channel_id=thread_id)
    await fake_discord.user_message("mentioned", channel_id=thread_id, mention_bot=True)
    await fake_discord.wait_until(
        lambda: len(finished_in(fake_discord, thread_id)) == 2, timeout=10
    )
    assert [r["messages"][-1]["content"] for r in fake_ollama.chat_requests()] == [
        "garden",
        "mentioned",
    ]


async def test_archived_or_deleted_threads_break_nothing_and_keep_their_history(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    bot = await bots.start(message_content_intent=True)
    archived, _ = await start_thread(fake_discord, "first topic")
    await fake_discord.archive_thread(archived)
    deleted = next(iter(await _second_thread(fake_discord)))
    await fake_discord.delete_thread(deleted)
    # The bot still serves, and both threads' conversations stay until retention removes them.
    await fake_discord.user_message("still here?", mention_bot=True)
    await fake_discord.wait_until(
        lambda: bool(finished_in(fake_discord, fake_discord.channel_ids[0])), timeout=10
    )
    assert [t.content for t in await bot.history.all(int(archived)) if t.role == "user"] == [
        "first topic"
    ]
    assert [t.content for t in await bot.history.all(int(deleted)) if t.role == "user"] == [
        "second topic"
    ]


async def _second_thread(fake: FakeDiscord) -> set[str]:
    before = {i for i, c in fake.channels.items() if c.get("parent_id") == fake.channel_ids[0]}
    await fake.slash_command("thread", {"topic": "second topic"}, subcommand="start")
    await fake.wait_until(
        lambda: (
            len({i for i, c in fake.channels.items() if c.get("parent_id") == fake.channel_ids[0]})
            > len(before)
        )
    )
    new = {
        i for i, c in fake.channels.items() if c.get("parent_id") == fake.channel_ids[0]
    } - before
    await fake.wait_until(lambda: all(finished_in(fake, i) for i in new), timeout=10)
    return new
