"""Thinking models (issue 14): the real bot against the Discord and Ollama doubles."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from bot.app import OllamaBot
from tests.conftest import BotRunner, eventually
from tests.doubles.fake_discord import FakeDiscord, FakeInteraction, FakeMessage
from tests.doubles.fake_ollama import FakeOllama, Script, gpt_oss_model, think_tags_model
from tests.e2e.test_controls import button
from tests.e2e.test_scaling import free_port

THOUGHT_FOOTER = re.compile(r"\n-# (?P<model>\S+) · thought (?P<s>\d+) s · \d+\.\d tokens/s$")
BUDGET_SPENT = "⚠️ The model spent its whole budget thinking and gave no answer."


def slow_thinking(seconds: float, reply: str = "Blue, because of Rayleigh scattering.") -> Script:
    """A thinking phase of about `seconds` (tokens every 50 ms), then a quick answer."""
    count = max(1, int(seconds / 0.05))
    return Script(
        thinking=[f"step{n} " for n in range(count)],
        reply=reply,
        token_interval=0.05,
        final_text="",
    )


async def ask(
    fake: FakeDiscord, text: str, *, user: str = "alice", **options: Any
) -> FakeInteraction:
    return await fake.slash_command("chat", {"message": text, **options}, user=user)


async def settled(fake: FakeDiscord, interaction: FakeInteraction) -> FakeMessage:
    """The reply once it carries its final buttons (Regenerate or Retry) or an error."""

    def done() -> bool:
        if interaction.original_message_id is None:
            return False
        message = fake.messages[interaction.original_message_id]
        return (
            button(message, "reply:again:") is not None
            or button(message, "reply:nothink:") is not None
        )

    await fake.wait_until(done, timeout=15)
    return fake.messages[interaction.original_message_id or ""]


def private_texts(fake: FakeDiscord, interaction: FakeInteraction) -> list[str]:
    """What only the member who acted was told: an ephemeral response or follow-ups."""
    texts: list[str] = []
    ids = [interaction.original_message_id, *interaction.followup_ids]
    for message_id in ids:
        message = fake.messages.get(message_id or "")
        if message is not None and message.is_ephemeral and not message.deleted:
            texts.append(message.content)
    return texts


async def private_answer(fake: FakeDiscord, interaction: FakeInteraction) -> str:
    await fake.wait_until(lambda: any(private_texts(fake, interaction)), timeout=10)
    return "\n".join(private_texts(fake, interaction))


def rate_limited(fake: FakeDiscord) -> int:
    return len(fake.rate_limited)


# ------------------------------------------------------------------ the thinking status


async def test_the_reply_shows_it_thinks_then_the_answer_replaces_the_status(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(slow_thinking(3.0))
    interaction = await ask(fake_discord, "Why is the sky blue?", model="qwen3")
    message = await settled(fake_discord, interaction)

    shown = [content for _, content in message.edits]
    statuses = [c for c in shown if "💭 Thinking…" in c]
    assert statuses, shown
    assert all(re.search(r"\n-# 💭 Thinking… \d+ s$", c) for c in statuses)
    assert len(set(statuses)) >= 2  # the seconds go up while it thinks
    assert message.content.startswith("> Why is the sky blue?\nBlue, because of Rayleigh")
    assert "💭" not in message.content and "step" not in message.content
    footer = THOUGHT_FOOTER.search(message.content)
    assert footer is not None, message.content
    assert footer["model"] == "qwen3" and int(footer["s"]) in (3, 4, 5)
    assert button(message, "reply:why:") is not None
    # No request was refused, and the status edits stayed within Discord's budget per message.
    assert rate_limited(fake_discord) == 0
    streaming = [t for t, _ in message.edits][:-1]  # the final edit is never held back
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(streaming))

    request = fake_ollama.chat_requests()[-1]
    assert "think" not in request  # no level anywhere: Ollama decides (thinking models think)
    turns = await bot.history.all(int(fake_discord.channel_ids[0]))
    assert turns[1].content == "Blue, because of Rayleigh scattering."
    reasoning = await bot.history.reasoning_of(turns[1].id)
    assert reasoning is not None and reasoning.text.startswith("step0 step1")


async def test_reasoning_is_never_sent_back_to_the_model(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Script(thinking="secret musings", reply="First answer."))
    await settled(fake_discord, await ask(fake_discord, "one", model="qwen3"))
    await settled(fake_discord, await ask(fake_discord, "two", model="qwen3"))
    messages = fake_ollama.chat_requests()[-1]["messages"]
    assert messages == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "two"},
    ]


async def test_stop_works_while_the_model_thinks(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(slow_thinking(20.0))
    interaction = await ask(fake_discord, "think hard", model="qwen3")

    def stop_button() -> str | None:
        if interaction.original_message_id is None:
            return None
        message = fake_discord.messages[interaction.original_message_id]
        return button(message, "reply:stop:") if "💭 Thinking…" in message.content else None

    await fake_discord.wait_until(lambda: stop_button() is not None, timeout=10)
    message_id = interaction.original_message_id or ""
    await fake_discord.click_button(message_id, stop_button() or "", user="alice")
    await fake_discord.wait_until(
        lambda: "stopped by Alice" in fake_discord.messages[message_id].content, timeout=10
    )
    await fake_ollama.wait_until(lambda: fake_ollama.cancelled == 1)
    final = fake_discord.messages[message_id]
    assert "💭 Thinking" not in final.content
    assert button(final, "reply:why:") is not None  # what it thought so far can be read

    async def stored() -> bool:
        turns = await bot.history.all(int(fake_discord.channel_ids[0]))
        return turns[1].status == "stopped"

    await eventually(stored)
    turns = await bot.history.all(int(fake_discord.channel_ids[0]))
    reasoning = await bot.history.reasoning_of(turns[1].id)
    assert turns[1].content == "" and reasoning is not None and "step0" in reasoning.text


# ------------------------------------------------------------------ Show reasoning


async def test_show_reasoning_is_private_and_works_after_a_restart(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    bot = await bots.start()
    fake_ollama.script(Script(thinking="Light scatters; blue scatters most.", reply="Blue."))
    message = await settled(fake_discord, await ask(fake_discord, "sky?", model="qwen3"))
    custom_id = button(message, "reply:why:")
    assert custom_id is not None
    await bots.stop(bot)
    await bots.start()

    click = await fake_discord.click_button(message.id, custom_id, user="bob")  # anyone
    text = await private_answer(fake_discord, click)
    assert text == "Light scatters; blue scatters most."
    assert "Light scatters" not in fake_discord.messages[message.id].content


async def test_long_reasoning_comes_as_a_file(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    long = [f"thought number {n} goes on and on. " for n in range(300)]  # ~10,000 characters
    fake_ollama.script(Script(thinking=long, reply="Done."))
    message = await settled(fake_discord, await ask(fake_discord, "think a lot", model="qwen3"))
    click = await fake_discord.click_button(message.id, button(message, "reply:why:") or "")
    await fake_discord.wait_until(lambda: click.original_message_id is not None, timeout=10)
    sent = fake_discord.messages[click.original_message_id or ""]
    assert sent.is_ephemeral
    [(name, data)] = sent.attachments
    assert name == "reasoning.md"
    assert data.decode() == "".join(long).strip()


async def test_medium_reasoning_is_split_like_answers(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    medium = [f"idea {n} leads to the next one. " for n in range(120)]  # ~3,800 characters
    fake_ollama.script(Script(thinking=medium, reply="Done."))
    message = await settled(fake_discord, await ask(fake_discord, "think", model="qwen3"))
    click = await fake_discord.click_button(message.id, button(message, "reply:why:") or "")
    await fake_discord.wait_until(lambda: len(private_texts(fake_discord, click)) == 2, timeout=10)
    pieces = private_texts(fake_discord, click)
    assert all(len(p) <= 2000 for p in pieces)
    assert " ".join(pieces).split() == "".join(medium).split()


async def test_export_carries_the_reasoning(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Script(thinking="Rayleigh.", reply="Blue."))
    await settled(fake_discord, await ask(fake_discord, "sky?", model="qwen3"))
    interaction = await fake_discord.slash_command("history", subcommand="export")
    await fake_discord.wait_until(
        lambda: bool(
            interaction.original_message_id
            and fake_discord.messages[interaction.original_message_id].attachments
        ),
        timeout=10,
    )
    files = dict(fake_discord.messages[interaction.original_message_id or ""].attachments)
    markdown = next(data for name, data in files.items() if name.endswith(".md")).decode()
    exported = json.loads(next(data for name, data in files.items() if name.endswith(".json")))
    assert "<details><summary>Reasoning</summary>\n\nRayleigh.\n\n</details>" in markdown
    assert [t["reasoning"] for t in exported["turns"]] == [None, "Rayleigh."]
    assert exported["turns"][1]["content"] == "Blue."


# ------------------------------------------------------------------ levels


async def test_think_sets_the_channels_level_and_chat_sends_it(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    refused = await fake_discord.slash_command("think", {"level": "off"}, user="bob")
    assert "Manage Channels" in await private_answer(fake_discord, refused)

    await fake_discord.slash_command("model", {"name": "qwen3"}, subcommand="use", user="admin")
    set_off = await fake_discord.slash_command("think", {"level": "off"}, user="admin")
    await fake_discord.wait_until(
        lambda: bool(
            set_off.original_message_id
            and "thinking to off" in fake_discord.messages[set_off.original_message_id].content
        ),
        timeout=10,
    )
    fake_ollama.script(Script(thinking="hidden", reply="Quick answer."))
    message = await settled(fake_discord, await ask(fake_discord, "hi"))
    assert fake_ollama.chat_requests()[-1]["think"] is False
    assert "thought" not in message.content and button(message, "reply:why:") is None

    # The message's own level wins over the channel's.
    await settled(fake_discord, await ask(fake_discord, "again", think="on"))
    assert fake_ollama.chat_requests()[-1]["think"] is True

    # A level the channel's model cannot take is refused when it is set.
    high = await fake_discord.slash_command("think", {"level": "high"}, user="admin")
    text = await private_answer(fake_discord, high)
    assert "`high`, but `qwen3` takes only `default`, `off`, `on`" in text
    config = await bot.parts.channels.get(int(fake_discord.channel_ids[0]))
    assert config.think == "off"


async def test_a_level_the_model_cannot_take_is_refused_privately_before_ollama(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    interaction = await ask(fake_discord, "hi", think="on")  # llama3.2 does not think
    text = await private_answer(fake_discord, interaction)
    assert text == (
        "The `think` option is `on`, but `llama3.2` takes only `default`, `off`. "
        "Pick one of those (`/think level:` sets the channel's)."
    )
    assert interaction.callback_type == 4  # refused at once: nothing public was shown
    fake_ollama.add_model(gpt_oss_model())
    refused = await ask(fake_discord, "hi", model="gpt-oss:20b", think="off")
    assert "takes only `default`, `low`, `medium`, `high`" in await private_answer(
        fake_discord, refused
    )
    assert fake_ollama.chat_requests() == []
    assert await bot.history.count(int(fake_discord.channel_ids[0])) == 0

    fake_ollama.script(Script(thinking="hmm", reply="Fine."))
    await settled(fake_discord, await ask(fake_discord, "hi", model="gpt-oss:20b", think="high"))
    assert fake_ollama.chat_requests()[-1]["think"] == "high"


async def test_default_think_setting_is_the_last_link_of_the_chain(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(default_think="off", chat_model="qwen3")
    await settled(fake_discord, await ask(fake_discord, "hi"))
    assert fake_ollama.chat_requests()[-1]["think"] is False


async def test_a_persona_keeps_its_thinking_level(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    refused = await fake_discord.slash_command(
        "persona",
        {"name": "quick", "think": "on"},
        subcommand="create",
        user="admin",
        attachments={"modelfile": ("Modelfile", b"FROM llama3.2\n", "text/plain")},
    )
    assert "`on`, but `llama3.2` takes only" in await private_answer(fake_discord, refused)
    created = await fake_discord.slash_command(
        "persona",
        {"name": "quick", "think": "off"},
        subcommand="create",
        user="admin",
        attachments={"modelfile": ("Modelfile", b"FROM qwen3\n", "text/plain")},
    )
    await fake_discord.wait_until(
        lambda: "✅" in "".join(private_texts(fake_discord, created)), timeout=10
    )
    assert "It thinks: `off`." in "".join(private_texts(fake_discord, created))
    used = await fake_discord.slash_command(
        "persona", {"name": "quick"}, subcommand="use", user="admin"
    )
    await fake_discord.wait_until(lambda: used.original_message_id is not None, timeout=10)
    await fake_discord.wait_until(
        lambda: "🎭" in fake_discord.messages[used.original_message_id or ""].content, timeout=10
    )
    fake_ollama.script(Script(thinking="hidden", reply="Hi."))
    await settled(fake_discord, await ask(fake_discord, "hi"))
    request = fake_ollama.chat_requests()[-1]
    assert request["model"].startswith("persona-") and request["think"] is False


# ------------------------------------------------------------------ <think> tags


async def test_think_tags_in_the_content_become_reasoning(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model(think_tags_model())
    fake_ollama.script(Script(thinking="Tagged musing.", reply="Tagged answer."))
    message = await settled(fake_discord, await ask(fake_discord, "hi", model="deepseek-r1:7b"))
    assert "<think>" not in message.content and "musing" not in message.content
    assert "Tagged answer." in message.content
    assert THOUGHT_FOOTER.search(message.content)
    assert "think" not in fake_ollama.chat_requests()[-1]
    turns = await bot.history.all(int(fake_discord.channel_ids[0]))
    assert turns[1].content == "Tagged answer."
    reasoning = await bot.history.reasoning_of(turns[1].id)
    assert reasoning is not None and reasoning.text == "Tagged musing."


# ------------------------------------------------------------------ no answer


async def test_a_budget_spent_thinking_says_so_and_retries_without_thinking(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(
        Script(thinking="on and on", reply=[], done_reason="length", final_text=""),
        Script(thinking="never shown", reply="A plain answer."),
    )
    message = await settled(fake_discord, await ask(fake_discord, "hard one", model="qwen3"))
    assert message.content.endswith(BUDGET_SPENT)
    retry = button(message, "reply:nothink:")
    assert retry is not None and button(message, "reply:why:") is not None

    async def failed() -> bool:
        turns = await bot.history.all(int(fake_discord.channel_ids[0]))
        return len(turns) == 2 and turns[1].status == "failed"

    await eventually(failed)
    turns = await bot.history.all(int(fake_discord.channel_ids[0]))
    reasoning = await bot.history.reasoning_of(turns[1].id)
    assert reasoning is not None and reasoning.text == "on and on"

    refused = await fake_discord.click_button(message.id, retry, user="bob")
    assert "Only the person who asked" in await private_answer(fake_discord, refused)

    click = await fake_discord.click_button(message.id, retry, user="alice")
    await fake_discord.wait_until(
        lambda: any(
            "A plain answer." in fake_discord.messages[i].content for i in click.followup_ids
        ),
        timeout=10,
    )
    assert fake_ollama.chat_requests()[-1]["think"] is False
    turns = await bot.history.all(int(fake_discord.channel_ids[0]))
    assert [t.content for t in turns] == ["hard one", "A plain answer."]


# ------------------------------------------------------------------ other tasks


async def test_sentiment_sends_think_false_unless_switched_on(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    good = '{"label": "positive", "confidence": 0.9, "reason": "Glad."}'
    bot = await bots.start(sentiment_model="qwen3")
    fake_ollama.script(Script(thinking="hmm", reply=good))
    interaction = await fake_discord.slash_command("sentiment", {"text": "Great!"})
    assert "positive" in await private_answer(fake_discord, interaction)
    assert fake_ollama.chat_requests()[-1]["think"] is False
    await bots.stop(bot)

    await bots.start(sentiment_model="qwen3", sentiment_think=True)
    fake_ollama.script(Script(thinking="hmm", reply=good))
    interaction = await fake_discord.slash_command("sentiment", {"text": "Great!"})
    assert "positive" in await private_answer(fake_discord, interaction)
    assert "think" not in fake_ollama.chat_requests()[-1]


async def test_metrics_time_the_first_answer_token_apart_and_count_thinking(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    bot = await bots.start(metrics_port=free_port())  # metrics are counted with an endpoint
    fake_ollama.script(Script(thinking=["a ", "b ", "c "], reply="Answer."))
    await settled(fake_discord, await ask(fake_discord, "hi", model="qwen3"))
    text = bot.metrics.exposition().decode()
    assert "ollama_bot_thinking_tokens_total 3.0" in text
    assert "ollama_bot_time_to_first_answer_token_seconds_count 1.0" in text
    assert "ollama_bot_time_to_first_token_seconds_count 1.0" in text


async def test_model_list_and_info_show_the_thinking_levels(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model(gpt_oss_model())
    listed = await fake_discord.slash_command("model", subcommand="list")
    text = await private_answer(fake_discord, listed)
    assert "`gpt-oss:20b` · 20.9B · MXFP4 · gptoss · 13.8 GB · completion, tools, thinking " in (
        text
    )
    assert "thinking (low/medium/high)" in text and "thinking (on/off)" in text
    info = await fake_discord.slash_command("model", {"name": "gpt-oss:20b"}, subcommand="info")
    assert "  Capabilities\n    completion\n    tools\n    thinking (low/medium/high)" in (
        await private_answer(fake_discord, info)
    )


async def test_a_think_tag_never_closed_is_all_reasoning(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model(think_tags_model())
    # The output ends at the length limit inside the reasoning: no closing tag, no answer.
    cut = ["<th", "ink>", "\n", "so ", "the ", "sky <", "/thi"]
    fake_ollama.script(Script(reply=cut, done_reason="length", final_text=""))
    message = await settled(fake_discord, await ask(fake_discord, "hi", model="deepseek-r1:7b"))
    assert message.content.endswith(BUDGET_SPENT) and "<th" not in message.content
    turns = await bot.history.all(int(fake_discord.channel_ids[0]))
    reasoning = await bot.history.reasoning_of(turns[1].id)
    assert reasoning is not None and reasoning.text == "so the sky </thi"


async def test_a_persona_made_in_the_form_keeps_its_thinking_level(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    opened = await fake_discord.slash_command(
        "persona", {"name": "ponder", "think": "on"}, subcommand="create", user="admin"
    )
    await fake_discord.wait_until(lambda: opened.modal is not None)
    modal = opened.modal or {}
    field = next(
        c["custom_id"] for row in modal["components"] for c in row["components"] if c["type"] == 4
    )
    submitted = await fake_discord.submit_modal(
        modal["custom_id"], {field: "FROM qwen3\n"}, user="admin"
    )
    await fake_discord.wait_until(
        lambda: "✅" in "".join(private_texts(fake_discord, submitted)), timeout=10
    )
    stored = await bot.parts.personas.get(int(fake_discord.guild_id), "ponder")
    assert stored is not None and stored.think == "on"
