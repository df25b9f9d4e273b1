"""Context you can trust (issue 18): the window the bot plans is the window Ollama runs, token
counts calibrated per model, summaries instead of silent cuts, /context, Continue, speaker names
and forks. The real bot against the Discord and Ollama doubles."""

from __future__ import annotations

import re

from bot.app import OllamaBot
from bot.conversation import context
from bot.conversation.service import SUMMARY_INSTRUCTIONS
from tests.conftest import BotRunner, both_databases
from tests.doubles.fake_discord import FakeDiscord, FakeMessage
from tests.doubles.fake_ollama import FakeModel, FakeOllama, RecordedRequest, Script
from tests.e2e.test_chat import assert_pings_no_one, chat
from tests.e2e.test_commands import shown_text
from tests.e2e.test_controls import button


def replies(fake: FakeOllama) -> list[RecordedRequest]:
    """The chat requests that answered people (not summaries)."""
    return [
        r
        for r in fake.chat_records()
        if r.json["messages"][0].get("content") != SUMMARY_INSTRUCTIONS
    ]


def summaries(fake: FakeOllama) -> list[RecordedRequest]:
    return [
        r
        for r in fake.chat_records()
        if r.json["messages"][0].get("content") == SUMMARY_INSTRUCTIONS
    ]


# ---- the window -------------------------------------------------------------------------------


@both_databases
async def test_every_request_sends_the_planned_window_and_it_stays_the_same(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    for n in range(3):
        await chat(fake_discord, f"question {n}")
    # llama3.2 knows 131,072 tokens; context_tokens_max (8,192) caps the window
    assert [r.json["options"]["num_ctx"] for r in fake_ollama.chat_records()] == [8192] * 3
    assert [r.num_ctx for r in fake_ollama.chat_records()] == [8192] * 3
    assert (fake_ollama.loads, fake_ollama.reloads) == (1, 0)  # loaded once, never reloaded
    assert all(r.dropped == 0 for r in fake_ollama.chat_records())

    ps = await fake_discord.slash_command("model", subcommand="ps")
    assert "context 8192" in await shown_text(fake_discord, ps)


async def test_a_persona_or_a_small_model_makes_the_window_smaller(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model(FakeModel(name="tiny", context_length=2048))
    fake_ollama.add_model(FakeModel(name="roomy", parameters={"num_ctx": 3000}))
    await bots.start(context_tokens_max=4096)
    await chat(fake_discord, "hello")
    interaction = await fake_discord.slash_command("chat", {"message": "hi", "model": "tiny"})
    await fake_discord.wait_until(lambda: len(fake_ollama.chat_records()) == 2)
    await fake_discord.wait_until(lambda: interaction.original_message_id is not None)
    await fake_discord.slash_command("chat", {"message": "hi", "model": "roomy"})
    await fake_discord.wait_until(lambda: len(fake_ollama.chat_records()) == 3)
    assert [r.json["options"]["num_ctx"] for r in fake_ollama.chat_records()] == [
        4096,  # the setting caps llama3.2
        2048,  # the model's own context length
        3000,  # the model's num_ctx parameter (a persona's is one)
    ]


async def test_the_default_window_of_ollama_would_have_cut_what_the_bot_sends(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    """The double runs 4,096 tokens when asked for nothing; the bot asks for its window, so a
    long conversation is sent whole and nothing is cut."""
    await bots.start(user_requests_per_minute=0, summarise_history=False)
    for n in range(10):
        await chat(fake_discord, f"question {n} " + "word " * 400)  # ~500 tokens a turn
    last = fake_ollama.chat_records()[-1]
    assert last.num_ctx == 8192 and last.dropped == 0
    assert last.prompt_eval_count is not None and last.prompt_eval_count > 4096


# ---- calibration ------------------------------------------------------------------------------


CJK = "天気がいいので公園を散歩しながら昔の友達と話した。"  # 25 characters, 25 tokens in the double


async def test_a_cjk_conversation_is_counted_right_after_a_reply_or_two(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    bot = await bots.start(
        user_requests_per_minute=0, context_tokens_max=1024, summarise_history=False
    )
    calibration = bot.parts.chat.windows.calibration
    errors = []
    for n in range(8):
        ratio = calibration.ratio("llama3.2")  # what this request is planned with
        fake_ollama.script(Script(reply=list(CJK * 2)))  # a token a character, like the prompt
        await chat(fake_discord, f"{n}:" + CJK * 4)
        record = fake_ollama.chat_records()[-1]
        sent = [m["content"] for m in record.json["messages"]]
        planned = sum(context.estimate_tokens(text, ratio) for text in sent)
        assert record.prompt_eval_count is not None
        errors.append(abs(planned / record.prompt_eval_count - 1))
    # The plain estimate (four characters a token) is about 3.5 times too low for CJK text...
    assert errors[0] > 0.5
    # ...and within 10% once the model has been heard from
    assert all(error < 0.10 for error in errors[2:]), errors
    assert calibration.ratio("llama3.2") > 3
    # So the bot sends fewer turns, and Ollama never has to cut the prompt
    assert all(r.dropped == 0 for r in fake_ollama.chat_records())
    assert len(fake_ollama.chat_records()[-1].json["messages"]) < 15


# ---- speaker names ----------------------------------------------------------------------------


async def test_several_people_are_told_apart_by_name_never_by_id(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await chat(fake_discord, "I like tea.")
    assert fake_ollama.chat_requests()[-1]["messages"][0]["content"] == "I like tea."  # alone
    bob = fake_discord.users["bob"]["id"]
    interaction = await fake_discord.slash_command(
        "chat", {"message": f"And I like coffee, <@{bob}>"}, user="bob"
    )
    await fake_discord.wait_until(lambda: len(fake_ollama.chat_requests()) == 2)
    await fake_discord.wait_until(lambda: interaction.original_message_id is not None)
    sent = fake_ollama.chat_requests()[-1]["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("user", "Alice: I like tea."),
        ("assistant", "Hello from the fake model."),
        ("user", f"Bob: And I like coffee, <@{bob}>"),  # their text is theirs; the label is not
    ]
    assert all(fake_discord.users["alice"]["id"] not in m["content"] for m in sent)


async def test_speaker_names_can_be_switched_off(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(speaker_names=False)
    await chat(fake_discord, "I like tea.")
    await fake_discord.slash_command("chat", {"message": "Coffee!"}, user="bob")
    await fake_discord.wait_until(lambda: len(fake_ollama.chat_requests()) == 2)
    assert [m["content"] for m in fake_ollama.chat_requests()[-1]["messages"]][::2] == [
        "I like tea.",
        "Coffee!",
    ]


# ---- /context ---------------------------------------------------------------------------------


async def test_context_shows_the_window_and_how_it_is_spent(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    first = await fake_discord.slash_command("context")
    text = await shown_text(fake_discord, first)
    assert fake_discord.messages[first.original_message_id or ""].is_ephemeral
    assert "`llama3.2`" in text and "8,192 tokens" in text
    assert "Not loaded" in text
    assert "history: 0 messages" in text

    await chat(fake_discord, "What is the answer?")
    again = await fake_discord.slash_command("context")
    text = await shown_text(fake_discord, again)
    assert "Ollama runs it with this window (8,192)" in text
    assert "history: 2 messages" in text
    assert re.search(r"left for your message and the reply: [\d,]+", text)
    assert len(text) <= 2000
    assert_pings_no_one(fake_discord)


async def test_context_says_when_ollama_runs_another_window(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(context_tokens_max=2048)
    async with __import__("httpx").AsyncClient(base_url=fake_ollama.url) as raw:
        await raw.post("/api/chat", json={"model": "llama3.2", "messages": []})  # 4,096 loaded
    interaction = await fake_discord.slash_command("context")
    text = await shown_text(fake_discord, interaction)
    assert "Loaded with a window of 4,096: the next message reloads it with 2,048." in text


# ---- Continue ---------------------------------------------------------------------------------


async def last_final(fake: FakeDiscord, count: int) -> FakeMessage:
    await fake.wait_until(
        lambda: sum("tokens/s" in m.content for m in fake.bot_messages()) >= count, timeout=10
    )
    return [m for m in fake.bot_messages() if "tokens/s" in m.content][-1]


@both_databases
async def test_a_reply_cut_at_the_length_limit_can_be_continued_into_one_answer(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    bot = await bots.start(max_reply_tokens=5)
    fake_ollama.script(
        Script(reply="one two three four five six seven"), Script(reply=" six seven.")
    )
    cut = await chat(fake_discord, "Count to seven")
    assert "one two three four five" in cut.content
    assert "cut off at the length limit: press Continue for more" in cut.content
    more = button(cut, "reply:more:")
    assert more is not None and button(cut, "reply:again:") is not None

    refused = await fake_discord.click_button(cut.id, more, user="bob")
    assert "Only the person who asked" in await shown_text(fake_discord, refused)

    await fake_discord.click_button(cut.id, more, user="alice")
    continued = await last_final(fake_discord, 2)
    assert continued.id != cut.id  # a new message under the reply
    assert "six seven." in continued.content and "one two" not in continued.content
    assert button(fake_discord.messages[cut.id], "reply:more:") is None  # buttons moved on
    assert button(continued, "reply:more:") is None  # this time it ended by itself
    sent = fake_ollama.chat_requests()[-1]["messages"]
    assert sent[-2:] == [
        {"role": "user", "content": "Count to seven"},
        {"role": "assistant", "content": "one two three four five"},  # the model goes on
    ]
    assert fake_ollama.chat_requests()[-1]["options"]["num_ctx"] == 8192

    turns = await bot.history.all(int(fake_discord.channel_ids[0]))
    assert [(t.role, t.content) for t in turns] == [
        ("user", "Count to seven"),
        ("assistant", "one two three four five six seven."),  # one answer
    ]
    assert turns[1].done_reason == "stop"
    assert_pings_no_one(fake_discord)


async def test_continue_is_only_for_the_latest_cut_answer(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(max_reply_tokens=3, user_requests_per_minute=0)
    fake_ollama.script(Script(reply="a b c d e"), Script(reply="f g"))
    cut = await chat(fake_discord, "first")
    more = button(cut, "reply:more:")
    assert more is not None
    await chat(fake_discord, "second")
    late = await fake_discord.click_button(cut.id, more, user="alice")
    assert "Only the latest answer" in await shown_text(fake_discord, late)
