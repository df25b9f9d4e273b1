"""Bugs that only a double as strict as Discord shows: the real bot against both doubles.

Discord refusing a reply (403 Missing Permissions, a deleted question, an archived thread), the
3-second acknowledgement under real latency, interaction tokens that expire after 15 minutes."""

from __future__ import annotations

import logging

import pytest

from bot.app import OllamaBot
from tests.conftest import BotRunner, eventually
from tests.doubles.fake_discord import SEND_MESSAGES, FakeDiscord, FakeMessage
from tests.doubles.fake_ollama import FakeModel, FakeOllama, Script
from tests.e2e.test_chat import chat, final
from tests.e2e.test_controls import button
from tests.e2e.test_models import answer, model
from tests.e2e.test_threads import start_thread

LONG = [f"w{n} " for n in range(400)]
REFUSED_LOG = "reply refused by Discord"


def bot_replies(fake: FakeDiscord, channel_id: str) -> list[FakeMessage]:
    return [m for m in fake.bot_messages(channel_id) if not m.deleted]


async def test_a_send_discord_refuses_stops_the_model_and_stores_the_turn_as_failed(
    bot: OllamaBot,
    fake_discord: FakeDiscord,
    fake_ollama: FakeOllama,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A moderator takes Send Messages away while the bot answers a mention: Discord answers
    403 50013 to the next edit. The model's stream stops at once (not at the end of 400
    tokens), the turn is stored as failed with the reason, and the log says so once."""
    caplog.set_level(logging.WARNING, logger="bot")
    channel = fake_discord.channel_ids[0]
    fake_ollama.script(Script(reply=LONG, token_interval=0.02))
    await fake_discord.user_message("tell me everything", mention_bot=True)
    await fake_discord.wait_until(
        lambda: any("w3" in m.content for m in bot_replies(fake_discord, channel)), timeout=10
    )

    await fake_discord.set_overwrite(channel, fake_discord.bot_user["id"], deny=SEND_MESSAGES)

    await fake_ollama.wait_until(lambda: fake_ollama.cancelled == 1, timeout=10)
    stored = await bot.history.all(int(channel))
    assert [(t.role, t.status) for t in stored] == [("user", "complete"), ("assistant", "failed")]
    assert stored[1].error is not None and "missing permissions" in stored[1].error
    assert len(stored[1].content.split()) < 400  # cut where Discord stopped taking it
    assert caplog.text.count(REFUSED_LOG) == 1
    assert fake_ollama.active_generations == 0


async def test_a_question_deleted_while_waiting_in_line_is_not_answered(
    bot: OllamaBot,
    fake_discord: FakeDiscord,
    fake_ollama: FakeOllama,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The question is deleted before its reply is posted: Discord refuses a reply to it
    (400 50035 "Unknown message"). The turn is stored as failed with that reason and the model
    is stopped, not left generating for nobody."""
    caplog.set_level(logging.WARNING, logger="bot")
    channel = fake_discord.channel_ids[0]
    fake_ollama.script(
        Script(reply=[f"a{n} " for n in range(10)], token_interval=0.05),
        Script(reply=LONG, token_interval=0.02),
    )
    await fake_discord.user_message("first", mention_bot=True)
    await fake_ollama.wait_until(lambda: fake_ollama.active_generations == 1, timeout=10)
    question = await fake_discord.user_message("second", mention_bot=True, user="bob")
    await fake_discord.wait_until(lambda: bot.parts.chat.waiting == 1, timeout=10)
    await fake_discord.delete_user_message(question.id)

    await fake_ollama.wait_until(lambda: fake_ollama.cancelled == 1, timeout=15)
    await fake_discord.wait_until(lambda: REFUSED_LOG in caplog.text, timeout=5)

    async def erased() -> bool:
        turns = await bot.history.all(int(channel))
        return len(turns) == 4 and turns[2].content == ""

    await eventually(erased)
    turns = await bot.history.all(int(channel))
    assert [(t.role, t.content, t.status) for t in turns[2:]] == [
        ("user", "", "complete"),  # the member deleted it: nothing of it is kept
        ("assistant", "", "failed"),
    ]
    assert turns[3].error is not None and "deleted" in turns[3].error
    assert caplog.text.count(REFUSED_LOG) == 1
    assert not any(
        "a0" not in m.content and "w0" in m.content for m in bot_replies(fake_discord, channel)
    )


async def test_a_slash_reply_in_a_thread_archived_meanwhile_tells_the_member_privately(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    """/chat in a thread that a moderator archives mid-reply: Discord refuses the edits
    (400 50083). The model stops, the turn is failed, and the member is told privately."""
    thread_id, _ = await start_thread(fake_discord, "garden")
    fake_ollama.script(Script(reply=LONG, token_interval=0.02))
    interaction = await fake_discord.slash_command(
        "chat", {"message": "go on and on"}, channel_id=thread_id
    )
    await fake_discord.wait_until(
        lambda: (
            "w3" in fake_discord.messages[interaction.original_message_id or ""].content
            if interaction.original_message_id in fake_discord.messages
            else False
        ),
        timeout=10,
    )
    await fake_discord.archive_thread(thread_id, locked=True)

    await fake_ollama.wait_until(lambda: fake_ollama.cancelled == 1, timeout=10)
    turns = await bot.history.all(int(thread_id))
    assert turns[-1].status == "failed" and "archived" in (turns[-1].error or "")
    await fake_discord.wait_until(lambda: bool(interaction.followup_ids), timeout=5)
    told = fake_discord.messages[interaction.followup_ids[-1]]
    assert told.is_ephemeral
    assert told.content == "Discord would not let me post the reply here."


async def test_model_use_and_delete_acknowledge_in_time_with_latency_and_a_slow_ollama(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    """300 ms each way between the bot and Discord, and a model list that takes Ollama 3 s:
    both commands that ask Ollama for the list still acknowledge inside Discord's 3 s."""
    fake_ollama.add_model(FakeModel(name="mistral:latest"))
    await bots.start(model_names_ttl=0)  # every command asks Ollama afresh
    fake_discord.gateway_latency = 0.3
    fake_discord.rest_latency = 0.3
    fake_ollama.delays["/api/tags"] = 3.0
    asked_before = sum(1 for r in fake_ollama.requests if r.path == "/api/tags")

    use = await model(fake_discord, "use", {"name": "qwen3"}, user="admin")
    shown = await answer(fake_discord, use)
    assert use.callback_type == 5  # deferred in time; Discord would have answered 10062 else
    assert "set this channel's model to `qwen3`" in shown.content

    delete = await model(fake_discord, "delete", {"name": "mistral"}, user="admin")
    asked = await answer(fake_discord, delete)
    assert delete.callback_type == 5
    assert asked.content.startswith("🗑️ Delete `mistral:latest`")

    assert sum(1 for r in fake_ollama.requests if r.path == "/api/tags") >= asked_before + 2
    late = [r for r in fake_discord.requests if r.status == 404 and "/callback" in r.path]
    assert late == []


async def test_a_regenerated_reply_outliving_the_token_carries_on_in_the_channel(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    """Regenerate answers through the button's interaction token, which Discord kills after
    15 minutes (2 s here): a long new answer carries on in the channel, as chat replies do."""
    fake_discord.interaction_token_ttl = 2.0
    await bots.start(interaction_token_ttl=2.0)
    lines = [f"line{n} " + ("y" * 60) + "\n" for n in range(80)]  # ~5,400 characters
    fake_ollama.script(Script(reply="Short."), Script(reply=lines, token_interval=0.05))
    channel = fake_discord.channel_ids[0]
    old = await chat(fake_discord, "a story")
    custom_id = button(old, "reply:again:")
    assert custom_id is not None

    await fake_discord.click_button(old.id, custom_id, user="alice")
    await fake_discord.wait_until(
        lambda: (
            any(final(m) and "line79" in m.content for m in bot_replies(fake_discord, channel))
            or any(
                "-# llama3.2" in m.content and m.id != old.id
                for m in bot_replies(fake_discord, channel)
            )
        ),
        timeout=20,
    )
    assert not [r for r in fake_discord.requests if r.status == 401]  # never used a dead token
    plain = [
        m
        for m in bot_replies(fake_discord, channel)
        if m.interaction_id is None and m.webhook_id is None
    ]
    assert plain, "past the token's lifetime the new answer goes on as channel messages"
    text = "".join(m.content for m in bot_replies(fake_discord, channel) if m.id != old.id)
    for n in range(80):
        assert f"line{n} " in text
