"""Context you can trust (issue 18): the window the bot plans is the window Ollama runs, token
counts calibrated per model, summaries instead of silent cuts, /context, Continue, speaker names
and forks. The real bot against the Discord and Ollama doubles."""

from __future__ import annotations

import asyncio
import re

from bot.app import OllamaBot
from bot.conversation import context
from bot.conversation.service import SUMMARY_INSTRUCTIONS
from tests.conftest import BotRunner, both_databases, eventually
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

    # The reply is shown while it is being stored; a person's click comes after the write.
    async def stored() -> bool:
        turns = await bot.history.all(int(fake_discord.channel_ids[0]))
        return len(turns) == 2 and turns[1].done_reason == "length"

    await eventually(stored)
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

    async def extended() -> bool:  # stored while it is shown
        turns = await bot.history.all(int(fake_discord.channel_ids[0]))
        return turns[-1].done_reason == "stop"

    await eventually(extended)
    turns = await bot.history.all(int(fake_discord.channel_ids[0]))
    assert [(t.role, t.content) for t in turns] == [
        ("user", "Count to seven"),
        ("assistant", "one two three four five six seven."),  # one answer
    ]
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


# ---- summaries --------------------------------------------------------------------------------


def question(n: int) -> str:
    return f"question {n} " + "word " * 20  # about 32 tokens with the framing


async def test_turns_that_no_longer_fit_are_summarised_and_the_summary_stands_in_for_them(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    # a window of 256: 192 tokens for the history, about four exchanges
    bot = await bots.start(context_tokens_max=256, user_requests_per_minute=0)
    channel = int(fake_discord.channel_ids[0])
    for n in range(4):
        await chat(fake_discord, question(n))
    await eventually(lambda: _has_summary(bot, channel))
    [made] = summaries(fake_ollama)
    assert made.json["options"] == {"num_ctx": 256, "num_predict": 64}  # the same window
    asked = made.json["messages"][1]["content"]
    assert "Alice: question 0" in asked and "Assistant: Hello from the fake model." in asked
    assert "question 2" not in asked  # the newest exchanges stay as they are

    fifth = await chat(fake_discord, question(4))
    assert "summarised 4 earlier messages" in fifth.content
    sent = replies(fake_ollama)[-1].json["messages"]
    assert sent[0]["role"] == "system"
    assert sent[0]["content"].startswith("Summary of the earlier conversation")
    assert "Hello from the fake model." in sent[0]["content"]
    users = [m["content"] for m in sent if m["role"] == "user"]
    assert [u.split()[1] for u in users] == ["2", "3", "4"]  # 0 and 1 are in the summary
    assert all(r.dropped == 0 for r in fake_ollama.chat_records())  # Ollama cut nothing

    sixth = await chat(fake_discord, question(5))
    assert "summarised" not in sixth.content  # said once for that summary

    # The history people see keeps every turn; the summary is not one of them.
    turns = await bot.history.all(channel)
    assert len(turns) == 12 and {t.role for t in turns} == {"user", "assistant"}
    shown = await fake_discord.slash_command("history", subcommand="show")
    assert "question 0" not in await shown_text(fake_discord, shown)  # the last 10 of 12
    assert "Last 10 of 12 turns" in await shown_text(fake_discord, shown)
    # A summary is a generation like any other: never more at once than Ollama runs
    assert fake_ollama.max_active_generations == 1


async def _has_summary(bot: OllamaBot, channel: int) -> bool:
    return await bot.history.latest_summary(channel) is not None


async def test_without_summaries_the_footer_says_how_many_were_left_out(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(context_tokens_max=256, user_requests_per_minute=0, summarise_history=False)
    footers = []
    for n in range(6):
        footers.append((await chat(fake_discord, question(n))).content.splitlines()[-1])
    assert "left out" not in footers[0]
    assert re.search(r"· \d+ earlier messages left out \(no room\)$", footers[-1])
    assert not summaries(fake_ollama)


async def test_a_summary_waits_for_a_free_slot(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    """Low priority, in the parallel cap: when someone is waiting for the only slot as a reply
    ends, its summary is skipped, and the next reply tries again."""
    bot = await bots.start(context_tokens_max=256, user_requests_per_minute=0)
    channel = int(fake_discord.channel_ids[0])
    for n in range(3):
        await chat(fake_discord, question(n))
    fake_ollama.script(
        Script(reply=[f"w{n} " for n in range(10)], token_interval=0.05),  # the fourth, slowly
        Script(reply="Elsewhere."),
    )
    fourth = await fake_discord.slash_command("chat", {"message": question(3)})
    await fake_discord.wait_until(lambda: fake_ollama.active_generations == 1)
    other = await fake_discord.slash_command(
        "chat", {"message": "meanwhile"}, channel_id=fake_discord.channel_ids[1]
    )
    await fake_discord.wait_until(lambda: bot.parts.chat.waiting == 1)  # behind the fourth
    await fake_discord.wait_until(
        lambda: all(
            i.original_message_id
            and "tokens/s" in fake_discord.messages[i.original_message_id].content
            for i in (fourth, other)
        ),
        timeout=10,
    )
    await asyncio.sleep(0.3)  # time enough for a summary that was not skipped
    assert not summaries(fake_ollama)  # skipped: the slot went to the one waiting
    assert not await _has_summary(bot, channel)

    await chat(fake_discord, question(4))  # tries again, with the slot free
    await eventually(lambda: _has_summary(bot, channel), timeout=10)
    assert len(summaries(fake_ollama)) == 1
    assert fake_ollama.max_active_generations == 1


# ---- fork -------------------------------------------------------------------------------------


@both_databases
async def test_continue_in_thread_opens_a_thread_with_the_conversation_so_far(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    bot = await bots.start(user_requests_per_minute=0)
    fake_ollama.script(Script(reply="Paris."), Script(reply="Berlin."))
    paris = await chat(fake_discord, "Capital of France?")
    await chat(fake_discord, "Capital of Germany?")

    interaction = await fake_discord.message_command("Continue in thread", paris.id)
    await fake_discord.wait_until(lambda: paris.id in fake_discord.channels, timeout=5)
    text = await shown_text(fake_discord, interaction)
    assert f"Continued in <#{paris.id}>" in text
    thread = fake_discord.channels[paris.id]
    assert thread["type"] == 11 and thread["parent_id"] == fake_discord.channel_ids[0]
    assert thread["name"] == "Capital of France?"

    turns = await bot.history.all(int(paris.id))
    assert [(t.role, t.content) for t in turns] == [
        ("user", "Capital of France?"),
        ("assistant", "Paris."),  # up to and including that reply, not the later one
    ]
    fake_ollama.script(Script(reply="About 2.1 million."))
    await fake_discord.user_message("And its population?", channel_id=paris.id, mention_bot=True)
    await fake_discord.wait_until(lambda: len(fake_ollama.chat_requests()) == 3, timeout=10)
    assert [m["content"] for m in fake_ollama.chat_requests()[-1]["messages"]] == [
        "Capital of France?",
        "Paris.",
        "And its population?",
    ]
    # the parent channel's conversation is untouched
    assert len(await bot.history.all(int(fake_discord.channel_ids[0]))) == 4
    assert_pings_no_one(fake_discord)


async def test_continue_in_thread_refuses_other_messages_and_members_without_the_right(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start()
    mine = await fake_discord.user_message("just me talking")
    refused = await fake_discord.message_command("Continue in thread", mine.id)
    assert "Pick one of my replies" in await shown_text(fake_discord, refused)

    answer = await chat(fake_discord, "hello")
    bob = fake_discord.users["bob"]["id"]
    await fake_discord.set_overwrite(fake_discord.channel_ids[0], bob, deny=1 << 35)
    denied = await fake_discord.message_command("Continue in thread", answer.id, user="bob")
    assert "can't create public threads" in await shown_text(fake_discord, denied)
    assert answer.id not in fake_discord.channels

    await bots.stop_all()
    bot = await bots.start()
    await bot.history.clear(int(fake_discord.channel_ids[0]))
    gone = await fake_discord.message_command("Continue in thread", answer.id)
    assert "no record of that reply" in await shown_text(fake_discord, gone)
