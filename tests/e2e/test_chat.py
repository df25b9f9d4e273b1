"""/chat and mention chat: the real bot against the Discord and Ollama doubles."""

from __future__ import annotations

import re

from bot.app import OllamaBot
from tests.conftest import BotRunner, both_databases, eventually
from tests.doubles.fake_discord import FakeDiscord, FakeMessage
from tests.doubles.fake_ollama import FakeOllama, Script

FOOTER = re.compile(r"\n-# llama3\.2 · \d+\.\d tokens/s( · [^\n]*)?$")


def final(message: FakeMessage) -> bool:
    return bool(FOOTER.search(message.content)) or "⚠️" in message.content


def assert_pings_no_one(fake: FakeDiscord) -> None:
    """Every message body the bot sent or edited carries allowed_mentions that ping no one."""
    bodies = [
        body
        for m in fake.messages.values()
        if m.author_id == fake.bot_user["id"]
        for body in m.history
    ]
    assert bodies, "the bot sent nothing"
    for body in bodies:
        mentions = body.get("allowed_mentions")
        assert mentions is not None, body
        assert mentions.get("parse") == []
        assert not mentions.get("users") and not mentions.get("roles")
        assert mentions.get("replied_user") in (None, False)


async def chat(fake: FakeDiscord, text: str, *, channel_id: str | None = None) -> FakeMessage:
    """Run /chat and wait for its final edit; returns the original response message."""
    interaction = await fake.slash_command("chat", {"message": text}, channel_id=channel_id)
    await fake.wait_until(
        lambda: (
            (
                interaction.original_message_id is not None
                and final(fake.messages[interaction.original_message_id])
            )
            or any(final(fake.messages[i]) for i in interaction.followup_ids)
        ),
        timeout=10,
    )
    assert interaction.callback_type == 5  # deferred at once, well inside the 3 s window
    assert interaction.original_message_id is not None
    return fake.messages[interaction.original_message_id]


@both_databases
async def test_slash_chat_streams_the_reply_and_stores_the_turns(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(
        Script(reply="The sky is blue because of Rayleigh scattering.", token_interval=0.01)
    )
    message = await chat(fake_discord, "Why is the sky blue?")

    assert message.content.startswith("> Why is the sky blue?\n")
    assert "The sky is blue because of Rayleigh scattering." in message.content
    assert FOOTER.search(message.content)
    request = fake_ollama.chat_requests()[-1]
    assert request["model"] == "llama3.2"
    assert request["stream"] is True
    assert request["messages"] == [{"role": "user", "content": "Why is the sky blue?"}]

    # The final edit does not wait for the database (the reply is stored beside it).
    async def stored() -> bool:
        turns = await bot.history.all(int(fake_discord.channel_ids[0]))
        return [t.status for t in turns] == ["complete", "complete"]

    await eventually(stored)
    turns = await bot.history.all(int(fake_discord.channel_ids[0]))
    assert [(t.role, t.status) for t in turns] == [("user", "complete"), ("assistant", "complete")]
    assert turns[1].content == "The sky is blue because of Rayleigh scattering."
    assert turns[1].model == "llama3.2"
    assert turns[1].completion_tokens and turns[1].eval_duration_ns
    assert turns[0].author_name == "Alice"  # the display name
    assert_pings_no_one(fake_discord)


async def test_chat_model_option_overrides_the_default(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    interaction = await fake_discord.slash_command("chat", {"message": "hi", "model": "qwen3"})
    await fake_discord.wait_until(lambda: len(fake_ollama.chat_requests()) == 1)
    assert fake_ollama.chat_requests()[0]["model"] == "qwen3"
    await fake_discord.wait_until(
        lambda: (
            "qwen3" in fake_discord.messages[interaction.original_message_id or ""].content
            if interaction.original_message_id
            else False
        )
    )


async def test_mention_chat_works_without_the_message_content_intent(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    assert not fake_discord.message_content_intent
    question = await fake_discord.user_message("what is 2+2?", mention_bot=True)
    await fake_discord.wait_until(lambda: any(final(m) for m in fake_discord.bot_messages()))
    reply = fake_discord.bot_messages()[-1]
    assert reply.message_reference and reply.message_reference["message_id"] == question.id
    assert fake_ollama.chat_requests()[-1]["messages"][-1] == {
        "role": "user",
        "content": "what is 2+2?",
    }
    assert "Hello from the fake model." in reply.content
    assert_pings_no_one(fake_discord)


async def test_messages_that_do_not_address_the_bot_are_ignored(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await fake_discord.user_message("just chatting with friends")
    await fake_discord.user_message("@everyone look", mention_everyone=True)
    await fake_discord.user_message("ping", mention_bot=True)  # a marker that the others were seen
    await fake_discord.wait_until(lambda: len(fake_ollama.chat_requests()) == 1)
    await fake_discord.wait_until(lambda: any(final(m) for m in fake_discord.bot_messages()))
    assert [r["messages"][-1]["content"] for r in fake_ollama.chat_requests()] == ["ping"]


async def test_replying_to_the_bot_continues_the_conversation(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Script(reply="Paris."), Script(reply="About 2.1 million."))
    await fake_discord.user_message("capital of France?", mention_bot=True)
    await fake_discord.wait_until(lambda: any(final(m) for m in fake_discord.bot_messages()))
    answer = fake_discord.bot_messages()[-1]

    await fake_discord.user_message("and its population?", reply_to=answer.id, reply_ping=True)
    await fake_discord.wait_until(lambda: len(fake_ollama.chat_requests()) == 2)
    assert fake_ollama.chat_requests()[1]["messages"] == [
        {"role": "user", "content": "capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "and its population?"},
    ]


async def test_a_reply_without_ping_gets_a_hint_instead_of_silence(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await fake_discord.user_message("hello", mention_bot=True)
    await fake_discord.wait_until(lambda: any(final(m) for m in fake_discord.bot_messages()))
    answer = fake_discord.bot_messages()[-1]
    await fake_discord.user_message("more please", reply_to=answer.id, reply_ping=False)
    await fake_discord.wait_until(lambda: len(fake_discord.bot_messages()) == 2)
    assert "mention" in fake_discord.bot_messages()[-1].content
    assert len(fake_ollama.chat_requests()) == 1


async def test_model_output_never_pings_anyone(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    admin = fake_discord.users["admin"]["id"]
    fake_ollama.script(
        Script(reply=f"Hey @everyone and @here, ask <@{admin}> or <@&{fake_discord.guild_id}>!")
    )
    message = await chat(fake_discord, "say hi to everyone")
    assert "@everyone" in message.content
    assert_pings_no_one(fake_discord)


async def test_long_replies_continue_in_followups_with_code_fences_reopened(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    code = "\n".join(f"    print('line {n}')" for n in range(150))
    reply = "Here is the program:\n\n```python\ndef main():\n" + code + "\n```\n\nThat is all."
    fake_ollama.script(Script(reply=reply))
    interaction = await fake_discord.slash_command("chat", {"message": "write a long program"})
    await fake_discord.wait_until(
        lambda: (
            bool(interaction.followup_ids)
            and final(fake_discord.messages[interaction.followup_ids[-1]])
        ),
        timeout=10,
    )
    pieces = [fake_discord.messages[interaction.original_message_id or ""]] + [
        fake_discord.messages[i] for i in interaction.followup_ids
    ]
    assert len(pieces) >= 2
    for piece in pieces:
        assert len(piece.content) <= 2000
        assert piece.content.count("```") % 2 == 0, piece.content[-200:]
    assert pieces[1].content.startswith("```python\n")
    assert FOOTER.search(pieces[-1].content)
    assert pieces[-1].content.rstrip().split("\n-# ")[0].endswith("That is all.")
    joined = "".join(p.content for p in pieces)
    for n in range(150):
        assert f"print('line {n}')" in joined
    assert_pings_no_one(fake_discord)


@both_databases
async def test_history_continues_after_a_restart(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    first = await bots.start()
    fake_ollama.script(Script(reply="Nice to meet you, Bob."))
    await chat(fake_discord, "My name is Bob.")
    await bots.stop(first)

    await bots.start()
    await chat(fake_discord, "What is my name?")
    assert fake_ollama.chat_requests()[-1]["messages"] == [
        {"role": "user", "content": "My name is Bob."},
        {"role": "assistant", "content": "Nice to meet you, Bob."},
        {"role": "user", "content": "What is my name?"},
    ]


@both_databases
async def test_each_channel_has_its_own_conversation(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    general, random = fake_discord.channel_ids[:2]
    await chat(fake_discord, "secret in general", channel_id=general)
    await chat(fake_discord, "hello from random", channel_id=random)
    contents = [m["content"] for m in fake_ollama.chat_requests()[-1]["messages"]]
    assert contents == ["hello from random"]


async def test_context_keeps_the_newest_turns_that_fit_the_model_window(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    # twelve questions in a row; without summaries, the oldest turns are left out
    bot = await bots.start(user_requests_per_minute=0, summarise_history=False)
    fake_ollama.models["llama3.2:latest"].parameters["num_ctx"] = 1024
    bot.parts.ollama.forget("llama3.2")
    for n in range(12):
        fake_ollama.script(Script(reply=f"answer {n} " + "word " * 60))
        await chat(fake_discord, f"question {n} " + "word " * 60)
    sent = fake_ollama.chat_requests()[-1]["messages"]
    assert sent[-1]["content"].startswith("question 11")
    assert sent[0]["role"] == "user"
    assert len(sent) < 24  # the oldest turns fell out of the window...
    assert len(sent) >= 3  # ...but the newest ones that fit are there
    total_chars = sum(len(m["content"]) for m in sent)
    assert total_chars // 4 <= 1024 - 256
