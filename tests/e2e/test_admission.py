"""Issue 13's "members act only where Discord lets them" and "every generation is counted and
bounded": the real bot against both doubles."""

from __future__ import annotations

import asyncio

from bot.app import OllamaBot
from tests.conftest import BotRunner, eventually
from tests.doubles.fake_discord import (
    ATTACH_FILES,
    CREATE_PUBLIC_THREADS,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    FakeDiscord,
    FakeInteraction,
    FakeMessage,
)
from tests.doubles.fake_ollama import FakeOllama, Script
from tests.e2e.test_chat import chat, final
from tests.e2e.test_controls import button
from tests.e2e.test_fairness import refused_privately
from tests.e2e.test_images import a_png
from tests.e2e.test_personas import SEED, create_with_file, persona_model, run
from tests.e2e.test_sentiment import GOOD

RATE_LIMITED = "sending requests quickly"


def bot_replies(fake: FakeDiscord, channel_id: str) -> list[FakeMessage]:
    return [m for m in fake.bot_messages(channel_id) if not m.deleted and not m.is_ephemeral]


async def refusal_of(fake: FakeDiscord, interaction: FakeInteraction) -> str:
    await fake.wait_until(lambda: interaction.callback_type is not None)
    text = refused_privately(interaction)
    assert text is not None, (interaction.callback_type, interaction.callback_body)
    return text


# ---- members act only where Discord lets them ----------------------------------------------


async def test_commands_that_post_publicly_check_the_members_own_permissions(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    """Discord shows /chat, /caption, /thread start and the menus to members who could not post
    there themselves; the bot refuses them privately and asks Ollama nothing."""
    channel = fake_discord.channel_ids[0]
    alice = fake_discord.users["alice"]["id"]
    await fake_discord.set_overwrite(channel, alice, deny=SEND_MESSAGES)

    chat_refusal = await refusal_of(
        fake_discord, await fake_discord.slash_command("chat", {"message": "hi"})
    )
    assert chat_refusal == "You can't send messages in this channel, so I won't post there for you."
    caption = await fake_discord.slash_command("caption", attachments={"image": a_png()})
    assert "can't send messages" in await refusal_of(fake_discord, caption)
    picture = await fake_discord.user_message("look", user="bob", attachments=[a_png()])
    menu = await fake_discord.message_command("Caption image", picture.id)
    assert "can't send messages" in await refusal_of(fake_discord, menu)

    await fake_discord.set_overwrite(channel, alice, deny=ATTACH_FILES)
    caption = await fake_discord.slash_command("caption", attachments={"image": a_png()})
    assert await refusal_of(fake_discord, caption) == (
        "You can't attach files in this channel, so I won't post your image here."
    )
    await fake_discord.set_overwrite(channel, alice, deny=CREATE_PUBLIC_THREADS)
    thread = await fake_discord.slash_command("thread", {"topic": "garden"}, subcommand="start")
    assert await refusal_of(fake_discord, thread) == (
        "You can't create public threads in this channel."
    )
    await fake_discord.set_overwrite(channel, alice, deny=SEND_MESSAGES_IN_THREADS)
    thread = await fake_discord.slash_command("thread", {"topic": "garden"}, subcommand="start")
    assert await refusal_of(fake_discord, thread) == (
        "You can't send messages in threads here, so I won't start one."
    )
    assert not [c for c in fake_discord.channels.values() if c.get("parent_id") == channel]

    await fake_discord.set_overwrite(channel, alice, deny=READ_MESSAGE_HISTORY)
    shown = await fake_discord.slash_command("history", subcommand="show")
    assert "Read Message History" in await refusal_of(fake_discord, shown)

    assert fake_ollama.chat_requests() == []
    assert bot_replies(fake_discord, channel) == []


async def test_buttons_obey_the_same_access_rules_as_commands(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    """A member put on the deny list after asking can press neither Stop nor Regenerate."""
    alice = int(fake_discord.users["alice"]["id"])
    bot = await bots.start()
    old = await chat(fake_discord, "a question")
    custom_id = button(old, "reply:again:")
    assert custom_id is not None
    await bots.stop(bot)
    await bots.start(denied_user_ids=[alice])

    click = await fake_discord.click_button(old.id, custom_id, user="alice")
    await fake_discord.wait_until(lambda: click.callback_type is not None)
    assert click.callback_type == 4
    assert (click.callback_body or {})["data"]["flags"] & 64  # privately
    assert len(fake_ollama.chat_requests()) == 1  # no new answer was asked for
    assert "a question" in fake_discord.messages[old.id].content


# ---- every generation is counted and bounded -----------------------------------------------


async def test_every_kind_of_generation_counts_against_the_rate_limit(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    """/sentiment, /caption and a mention use up the same per-user allowance as /chat."""
    await bots.start(user_requests_per_minute=3)
    fake_ollama.script(Script(reply=GOOD), Script(reply="A cat."), Script(reply="Fine."))
    sentiment = await fake_discord.slash_command("sentiment", {"text": "lovely"})
    await fake_discord.wait_until(lambda: len(fake_ollama.chat_requests()) == 1, timeout=10)
    caption = await fake_discord.slash_command("caption", attachments={"image": a_png()})
    await fake_discord.wait_until(lambda: len(fake_ollama.chat_requests()) == 2, timeout=10)
    await fake_discord.user_message("and you?", mention_bot=True)
    await fake_discord.wait_until(lambda: len(fake_ollama.chat_requests()) == 3, timeout=10)
    assert refused_privately(sentiment) is None and refused_privately(caption) is None

    fourth = await fake_discord.slash_command("chat", {"message": "one more"})
    assert RATE_LIMITED in await refusal_of(fake_discord, fourth)
    menu_target = await fake_discord.user_message("a message to read", user="bob")
    menu = await fake_discord.message_command("Analyze sentiment", menu_target.id)
    assert RATE_LIMITED in await refusal_of(fake_discord, menu)
    await asyncio.sleep(0.3)
    assert len(fake_ollama.chat_requests()) == 3


async def test_a_member_over_the_limit_gets_one_public_notice_a_minute(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    """Mentions cannot be answered privately: the first refusal is said in the channel, the
    ones after it within the minute stay quiet (no spam, no Ollama request)."""
    await bots.start(user_requests_per_minute=1)
    channel = fake_discord.channel_ids[0]
    await fake_discord.user_message("first", mention_bot=True)
    await fake_discord.wait_until(
        lambda: any(final(m) for m in bot_replies(fake_discord, channel)), timeout=10
    )
    for n in range(3):
        await fake_discord.user_message(f"again {n}", mention_bot=True)
    await fake_discord.wait_until(
        lambda: any(RATE_LIMITED in m.content for m in bot_replies(fake_discord, channel))
    )
    await asyncio.sleep(0.5)  # time for any further notice to (wrongly) appear
    notices = [m for m in bot_replies(fake_discord, channel) if RATE_LIMITED in m.content]
    assert len(notices) == 1
    assert len(fake_ollama.chat_requests()) == 1


async def test_a_reply_is_bounded_in_tokens_and_messages(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    bot = await bots.start(max_reply_tokens=300, max_reply_messages=2)
    channel = fake_discord.channel_ids[0]
    lines = [f"line{n} " + ("z" * 90) + "\n" for n in range(120)]  # ~12,000 characters
    fake_ollama.script(Script(reply=lines, token_interval=0.005))
    interaction = await fake_discord.slash_command("chat", {"message": "go on forever"})

    await fake_discord.wait_until(
        lambda: any(
            "✂️ reply cut at 2 messages" in m.content for m in bot_replies(fake_discord, channel)
        ),
        timeout=15,
    )
    assert fake_ollama.chat_requests()[-1]["options"]["num_predict"] == 300
    await fake_ollama.wait_until(lambda: fake_ollama.cancelled == 1, timeout=5)
    pieces = [interaction.original_message_id, *interaction.followup_ids]
    assert len([p for p in pieces if p]) == 2
    last = fake_discord.messages[interaction.followup_ids[-1]].content
    assert last.endswith("…\n-# ✂️ reply cut at 2 messages (the most one reply may fill)")
    turns = await bot.history.all(int(channel))
    assert turns[-1].role == "assistant" and "line0" in turns[-1].content


async def test_regenerate_double_click_gives_one_answer_and_a_refused_one_loses_nothing(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    bot = await bots.start(user_requests_per_minute=2)
    channel = fake_discord.channel_ids[0]
    fake_ollama.script(
        Script(reply="First."),
        Script(reply=[f"s{n} " for n in range(20)], token_interval=0.02),
    )
    old = await chat(fake_discord, "a joke")
    custom_id = button(old, "reply:again:")
    assert custom_id is not None
    clicks = await asyncio.gather(
        fake_discord.click_button(old.id, custom_id, user="alice"),
        fake_discord.click_button(old.id, custom_id, user="alice"),
    )
    await fake_discord.wait_until(
        lambda: any(final(m) and "s19" in m.content for m in bot_replies(fake_discord, channel)),
        timeout=10,
    )
    await asyncio.sleep(0.3)
    assert len(fake_ollama.chat_requests()) == 2  # one new answer, not two
    assert sum(1 for m in bot_replies(fake_discord, channel) if "s19" in m.content) == 1
    assert any(c.callback_type == 4 for c in clicks)  # the second click is told privately
    turns = await bot.history.all(int(channel))
    assert [t.content for t in turns if t.role == "assistant"] == [
        " ".join(f"s{n}" for n in range(20))
    ]

    # The allowance (2 a minute) is spent: a refused Regenerate keeps the latest answer as is.
    latest = next(m for m in bot_replies(fake_discord, channel) if "s19" in m.content)
    again = button(latest, "reply:again:")
    assert again is not None
    before = latest.content
    refused = await fake_discord.click_button(latest.id, again, user="alice")
    assert RATE_LIMITED in await refusal_of(fake_discord, refused)
    assert fake_discord.messages[latest.id].content == before
    assert button(fake_discord.messages[latest.id], "reply:again:") == again
    assert len(fake_ollama.chat_requests()) == 2
    assert [t.content for t in await bot.history.all(int(channel)) if t.role == "assistant"] == [
        " ".join(f"s{n}" for n in range(20))
    ]


async def test_a_regenerated_answer_is_forgotten_when_its_question_is_deleted(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    """Regenerate stores the question again: it keeps the Discord message it came from, so a
    member deleting that message still takes the question and the new answer away."""
    channel = fake_discord.channel_ids[0]
    fake_ollama.script(Script(reply="First."), Script(reply="Second."))
    question = await fake_discord.user_message("remember me", mention_bot=True)
    await fake_discord.wait_until(
        lambda: any(final(m) for m in bot_replies(fake_discord, channel)), timeout=10
    )
    [first] = bot_replies(fake_discord, channel)
    again = button(first, "reply:again:")
    assert again is not None
    await fake_discord.click_button(first.id, again, user="alice")
    await fake_discord.wait_until(
        lambda: any(
            "Second." in m.content and final(m) for m in bot_replies(fake_discord, channel)
        ),
        timeout=10,
    )
    turns = await bot.history.all(int(channel))
    assert [t.content for t in turns] == ["remember me", "Second."]

    await fake_discord.delete_user_message(question.id)

    async def forgotten() -> bool:
        return await bot.history.all(int(channel)) == []

    await eventually(forgotten)


async def test_a_persona_model_is_created_again_outside_the_generation_slot(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    """With one generation at a time, a persona whose model Ollama lost is created again
    before its request takes the slot: another channel's reply goes ahead meanwhile."""
    await bots.start(max_parallel_generations=1)
    general, other = fake_discord.channel_ids[:2]
    await create_with_file(fake_discord, "butler", SEED, user="admin")
    await run(fake_discord, "use", {"name": "butler"})
    fake_ollama.remove_model(persona_model(fake_discord, "butler"))
    fake_ollama.delays["/api/create"] = 4.0
    creates = sum(1 for r in fake_ollama.requests if r.path == "/api/create")

    persona_reply = await fake_discord.slash_command(
        "chat", {"message": "hello butler"}, channel_id=general
    )

    def persona_answer() -> str:
        message = fake_discord.messages.get(persona_reply.original_message_id or "")
        return message.content if message is not None else ""

    await fake_ollama.wait_until(
        lambda: sum(1 for r in fake_ollama.requests if r.path == "/api/create") > creates,
        timeout=10,
    )
    meanwhile = await chat(fake_discord, "hello", channel_id=other)
    assert "-# llama3.2 · " in meanwhile.content  # answered in full meanwhile
    assert "-# butler" not in persona_answer()  # still creating the persona's model
    await fake_discord.wait_until(lambda: "-# butler (llama3.2)" in persona_answer(), timeout=10)

    order = [r.path for r in fake_ollama.requests if r.path in ("/api/create", "/api/chat")]
    assert order[-3:] == ["/api/create", "/api/chat", "/api/chat"]
