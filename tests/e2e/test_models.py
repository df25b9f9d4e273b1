"""/model list|info|ps|use|pull|delete and model-name autocomplete: the real bot against both
doubles."""

from __future__ import annotations

import asyncio
import itertools
import re
from typing import Any

from bot.app import OllamaBot
from tests.conftest import BotRunner
from tests.doubles.fake_discord import FakeDiscord, FakeInteraction, FakeMessage
from tests.doubles.fake_ollama import FakeModel, FakeOllama
from tests.e2e.test_chat import assert_pings_no_one, chat
from tests.e2e.test_failures import closed_port


async def model(
    fake: FakeDiscord,
    subcommand: str,
    options: dict[str, Any] | None = None,
    *,
    user: str = "alice",
    channel_id: str | None = None,
) -> FakeInteraction:
    return await fake.slash_command(
        "model", options, subcommand=subcommand, user=user, channel_id=channel_id
    )


async def answer(fake: FakeDiscord, interaction: FakeInteraction) -> FakeMessage:
    """The interaction's answer once it has text: its last followup (a private refusal after
    a public "thinking" message), or else its response message."""

    def shown() -> FakeMessage | None:
        if interaction.followup_ids:
            return fake.messages[interaction.followup_ids[-1]]
        message = fake.messages.get(interaction.original_message_id or "")
        if message is None or message.is_loading or not message.content:
            return None
        return message

    await fake.wait_until(lambda: shown() is not None)
    message = shown()
    assert message is not None
    return message


def button(message: FakeMessage, label: str) -> dict[str, Any]:
    for row in message.components:
        for component in row.get("components", []):
            if component.get("label") == label:
                return dict(component)
    raise AssertionError(f"no button {label!r} in {message.components}")


def requests_to(fake: FakeOllama, path: str) -> int:
    return sum(1 for r in fake.requests if r.path == path)


def layer(n: int) -> str:
    return "sha256:" + f"{n:02d}" * 32


# ---- /model list, info, ps -------------------------------------------------------------------


async def test_model_list_shows_each_model_on_one_line(
    bot: OllamaBot, fake_discord: FakeDiscord
) -> None:
    message = await answer(fake_discord, await model(fake_discord, "list"))
    assert message.is_ephemeral
    lines = message.content.splitlines()
    assert lines[0].startswith("**Installed models** · 4 · ")
    assert lines[1] == "`llama3.2:latest` · 3.2B · Q4_K_M · llama · 2.0 GB · completion, tools"
    assert lines[2] == "`llava:latest` · 7B · Q4_0 · llama · 4.7 GB · completion, vision"
    assert lines[3] == (
        "`qwen3:latest` · 8.2B · Q4_K_M · qwen3 · 5.2 GB · completion, tools, thinking (on/off)"
    )
    assert lines[4] == "`nomic-embed-text:latest` · 137M · F16 · nomic-bert · 274 MB · embedding"
    assert not message.components  # one page: no buttons


async def test_model_list_pages_with_previous_and_next(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    for n in range(12):
        fake_ollama.add_model(FakeModel(name=f"extra-{n:02d}:latest", size=1_000_000_000))
    message = await answer(fake_discord, await model(fake_discord, "list"))
    assert "16 · " in message.content and "page 1 of 2" in message.content
    assert len(message.content.splitlines()) == 11  # header and ten models
    assert button(message, "Previous").get("disabled") is True

    click = await fake_discord.click_button(message.id, button(message, "Next")["custom_id"])
    await fake_discord.wait_until(lambda: click.callback_type == 7)
    assert "page 2 of 2" in message.content
    assert len(message.content.splitlines()) == 7  # header and the last six models
    assert button(message, "Next").get("disabled") is True

    back = await fake_discord.click_button(message.id, button(message, "Previous")["custom_id"])
    await fake_discord.wait_until(lambda: back.callback_type == 7)
    assert "page 1 of 2" in message.content


async def test_model_list_when_nothing_is_installed(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    for name in list(fake_ollama.models):
        fake_ollama.remove_model(name)
    message = await answer(fake_discord, await model(fake_discord, "list"))
    assert "No models are installed" in message.content
    assert "/model pull" in message.content


async def test_model_info_prints_what_ollama_show_prints(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model(
        FakeModel(
            name="tutor",
            family="qwen3",
            parameter_size="8.2B",
            context_length=40960,
            embedding_length=4096,
            capabilities=["completion", "tools", "thinking"],
            system="You are a patient tutor.\nExplain step by step.",
            parameters={"temperature": 0.3, "num_ctx": 8192, "stop": ["<|im_end|>"]},
        )
    )
    message = await answer(fake_discord, await model(fake_discord, "info", {"name": "tutor"}))
    assert message.is_ephemeral
    text = message.content
    assert text.startswith("**`tutor`**\n```\n  Model\n")
    for row in [
        "    architecture        qwen3",
        "    parameters          8.2B",
        "    context length      40960",
        "    embedding length    4096",
        "    quantization        Q4_K_M",
        "  Capabilities\n    completion\n    tools\n    thinking (on/off)",
        "    temperature         0.3",
        "    num_ctx             8192",
        '    stop                "<|im_end|>"',
        "  System\n    You are a patient tutor.\n    Explain step by step.",
    ]:
        assert row in text, row
    assert text.endswith("```")


async def test_model_info_of_a_model_that_is_not_installed(
    bot: OllamaBot, fake_discord: FakeDiscord
) -> None:
    message = await answer(fake_discord, await model(fake_discord, "info", {"name": "mistral"}))
    assert message.is_ephemeral
    assert "`mistral` is not installed" in message.content
    assert "/model pull name:mistral" in message.content


async def test_model_ps_shows_memory_and_a_relative_unload_time(
    bot: OllamaBot, fake_discord: FakeDiscord
) -> None:
    empty = await answer(fake_discord, await model(fake_discord, "ps"))
    assert "No model is loaded" in empty.content

    await chat(fake_discord, "hello")  # loads llama3.2 for five minutes, with the bot's window
    message = await answer(fake_discord, await model(fake_discord, "ps"))
    assert message.is_ephemeral
    lines = message.content.splitlines()
    assert lines[0] == "**Loaded models** · 1"
    assert re.fullmatch(
        r"`llama3\.2:latest` · 2\.0 GB · 100% GPU · context 8192 · unloads <t:\d+:R>", lines[1]
    ), lines[1]


# ---- /model use ------------------------------------------------------------------------------


async def chat_to_end(
    fake: FakeDiscord, text: str, *, channel_id: str | None = None, **options: str
) -> FakeMessage:
    """Run /chat (with any model) and wait for the reply's footer."""
    interaction = await fake.slash_command(
        "chat", {"message": text, **options}, channel_id=channel_id
    )
    await fake.wait_until(
        lambda: (
            interaction.original_message_id is not None
            and "\n-# " in fake.messages[interaction.original_message_id].content
        ),
        timeout=10,
    )
    return fake.messages[interaction.original_message_id or ""]


async def test_model_use_sets_the_channel_model_and_chat_can_still_override_it(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    used = await answer(
        fake_discord, await model(fake_discord, "use", {"name": "qwen3"}, user="admin")
    )
    assert not used.is_ephemeral
    assert "set this channel's model to `qwen3`" in used.content

    first = await chat_to_end(fake_discord, "first")
    second = await chat_to_end(fake_discord, "second", model="llava")
    third = await chat_to_end(fake_discord, "third")
    elsewhere = await chat_to_end(fake_discord, "hi", channel_id=fake_discord.channel_ids[1])

    assert [r["model"] for r in fake_ollama.chat_requests()] == [
        "qwen3",
        "llava",
        "qwen3",
        "llama3.2",
    ]
    assert "\n-# qwen3 · " in first.content and "\n-# qwen3 · " in third.content
    assert "\n-# llava · " in second.content
    assert "\n-# llama3.2 · " in elsewhere.content
    assert_pings_no_one(fake_discord)


async def test_model_use_refuses_a_model_that_is_not_installed(
    bot: OllamaBot, fake_discord: FakeDiscord
) -> None:
    refused = await answer(
        fake_discord, await model(fake_discord, "use", {"name": "mistral"}, user="admin")
    )
    assert refused.is_ephemeral
    assert "`mistral` is not installed" in refused.content
    config = await bot.parts.channels.get(int(fake_discord.channel_ids[0]))
    assert config.model is None


async def test_model_use_needs_manage_channels(bot: OllamaBot, fake_discord: FakeDiscord) -> None:
    refused = await answer(
        fake_discord, await model(fake_discord, "use", {"name": "qwen3"}, user="bob")
    )
    assert refused.is_ephemeral
    assert "Manage Channels" in refused.content
    config = await bot.parts.channels.get(int(fake_discord.channel_ids[0]))
    assert config.model is None


# ---- /model pull -----------------------------------------------------------------------------


def finished(message: FakeMessage) -> bool:
    return message.content.startswith(("✅", "⚠️"))


async def pulled(
    fake: FakeDiscord, interaction: FakeInteraction, timeout: float = 10
) -> FakeMessage:
    await fake.wait_until(
        lambda: (
            interaction.original_message_id is not None
            and finished(fake.messages[interaction.original_message_id])
        ),
        timeout=timeout,
    )
    return fake.messages[interaction.original_message_id or ""]


def add_slow_model(fake: FakeOllama, name: str = "mistral", seconds: float = 2.0) -> FakeModel:
    """A model of three layers in the fake registry, downloading in about `seconds`."""
    pullable = FakeModel(name=name, family="llama", parameter_size="7.2B", size=4_002_000)
    layers = [(layer(1), 3_000_000), (layer(2), 1_000_000), (layer(3), 2_000)]
    fake.add_pullable(
        pullable, layers=layers, bytes_per_second=4_002_000 / seconds, progress_interval=0.05
    )
    return pullable


async def test_model_pull_draws_a_paced_progress_bar_and_ends_in_success(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    interval = 0.5
    await bots.start(pull_progress_interval=interval)
    add_slow_model(fake_ollama, seconds=3.0)  # edits come every ~1.3 s (the edit budget)
    interaction = await model(fake_discord, "pull", {"name": "mistral"}, user="admin")
    message = await pulled(fake_discord, interaction)

    assert not message.is_ephemeral
    assert message.content.startswith("✅ Pulled `mistral` (4.0 MB).")
    progress = [text for _, text in message.edits[:-1]]
    bars = [text for text in progress if re.search(r"`[█░]{20}` \d+%", text)]
    assert len(bars) >= 2, progress
    assert any(re.search(r"\d+(\.\d)? [KM]B of 4\.0 MB · \d+(\.\d)? [KM]B/s", t) for t in bars)
    assert all(text.startswith("⬇️ Pulling `mistral`") for text in progress)
    times = [t for t, _ in message.edits]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times[:-1])]
    assert all(gap >= interval * 0.9 for gap in gaps), gaps  # the final edit may come sooner
    assert not fake_discord.rate_limited
    assert "mistral:latest" in fake_ollama.models
    assert requests_to(fake_ollama, "/api/pull") == 1
    assert_pings_no_one(fake_discord)

    listed = await answer(fake_discord, await model(fake_discord, "list"))
    assert "`mistral:latest` · 7.2B" in listed.content


async def test_model_pull_of_a_name_the_library_does_not_have(
    bot: OllamaBot, fake_discord: FakeDiscord
) -> None:
    interaction = await model(fake_discord, "pull", {"name": "no-such-model"}, user="admin")
    message = await pulled(fake_discord, interaction)
    assert message.content == (
        "⚠️ There is no model `no-such-model` in the Ollama library. "
        "Check the name and tag at https://ollama.com/library."
    )


async def test_model_pull_of_an_invalid_name(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    spaced = await answer(
        fake_discord, await model(fake_discord, "pull", {"name": "two words"}, user="admin")
    )
    assert spaced.is_ephemeral
    assert spaced.content.startswith("`two words` is not a valid model name.")
    assert requests_to(fake_ollama, "/api/pull") == 0

    refused_by_ollama = await model(fake_discord, "pull", {"name": "bad!name"}, user="admin")
    message = await pulled(fake_discord, refused_by_ollama)
    assert message.content.startswith("⚠️ `bad!name` is not a valid model name.")
    assert requests_to(fake_ollama, "/api/pull") == 1


async def test_two_pulls_of_one_model_share_one_download(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    add_slow_model(fake_ollama, seconds=1.0)
    first = await model(fake_discord, "pull", {"name": "mistral"}, user="admin")
    await fake_ollama.wait_until(lambda: requests_to(fake_ollama, "/api/pull") == 1)
    second = await model(
        fake_discord,
        "pull",
        {"name": "Mistral:latest"},
        user="admin",
        channel_id=fake_discord.channel_ids[1],
    )
    first_message = await pulled(fake_discord, first)
    second_message = await pulled(fake_discord, second)

    assert first_message.content.startswith("✅ Pulled `mistral`")
    assert second_message.content.startswith("✅ Pulled `mistral`")
    assert any("joined the download already running" in t for _, t in second_message.edits)
    assert requests_to(fake_ollama, "/api/pull") == 1


async def test_a_pull_goes_on_when_its_message_can_no_longer_be_edited(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    add_slow_model(fake_ollama, seconds=1.5)
    fake_discord.interaction_token_ttl = 0.5  # as if the 15 minutes had passed early
    interaction = await model(fake_discord, "pull", {"name": "mistral"}, user="admin")
    await fake_ollama.wait_until(lambda: "mistral:latest" in fake_ollama.models, timeout=10)
    message = fake_discord.messages[interaction.original_message_id or ""]
    assert message.content.startswith("⬇️ Pulling")  # the message stopped where it was
    assert not fake_discord.server_errors

    fake_discord.interaction_token_ttl = 15 * 60
    listed = await answer(fake_discord, await model(fake_discord, "list"))
    assert "`mistral:latest`" in listed.content


async def test_a_pull_that_stalls_is_given_up(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(pull_stall_timeout=0.3)
    stuck = FakeModel(name="stuck", size=1_000_000)
    fake_ollama.add_pullable(
        stuck, layers=[(layer(4), 1_000_000)], bytes_per_second=1000, progress_interval=5
    )
    interaction = await model(fake_discord, "pull", {"name": "stuck"}, user="admin")
    message = await pulled(fake_discord, interaction)
    assert message.content == "⚠️ Pulling `stuck` failed: no progress for 0.3 s"


async def test_stopping_the_bot_stops_its_pulls(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    bot = await bots.start()
    add_slow_model(fake_ollama, seconds=5.0)
    interaction = await model(fake_discord, "pull", {"name": "mistral"}, user="admin")
    await fake_discord.wait_until(lambda: bot.parts.models.pulling("mistral") is not None)
    job = bot.parts.models.pulling("mistral")
    assert job is not None and job.task is not None
    await answer(fake_discord, interaction)

    await bots.stop(bot)
    assert job.task.done()
    assert job.state.finished and job.state.error is not None
    assert "shut down during the pull" in job.state.error
    assert "mistral:latest" not in fake_ollama.models


async def test_model_pull_needs_an_owner(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    refused = await answer(
        fake_discord, await model(fake_discord, "pull", {"name": "qwen3"}, user="bob")
    )
    assert refused.is_ephemeral
    assert "Only the bot's owners" in refused.content
    assert requests_to(fake_ollama, "/api/pull") == 0


# ---- /model delete ---------------------------------------------------------------------------


async def confirmation(fake: FakeDiscord, name: str, user: str = "admin") -> FakeMessage:
    message = await answer(fake, await model(fake, "delete", {"name": name}, user=user))
    assert not message.is_ephemeral
    # discord.py starts listening to the buttons once Discord has answered the edit that shows
    # them; a click sent before that (no person is that quick) would go unanswered.
    await asyncio.sleep(0.2)
    return message


async def press(fake: FakeDiscord, message: FakeMessage, label: str, user: str) -> FakeInteraction:
    click = await fake.click_button(message.id, button(message, label)["custom_id"], user=user)
    await fake.wait_until(lambda: click.callback_type is not None)
    return click


async def test_model_delete_asks_first_and_only_the_requester_may_answer(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    message = await confirmation(fake_discord, "qwen3")
    assert message.content.startswith("🗑️ Delete `qwen3:latest` (5.2 GB) from the Ollama server?")
    assert [c["label"] for row in message.components for c in row["components"]] == [
        "Delete",
        "Cancel",
    ]

    intruder = await press(fake_discord, message, "Delete", user="bob")
    refusal = await answer(fake_discord, intruder)
    assert refusal.is_ephemeral and "Only the person who asked" in refusal.content
    assert "qwen3:latest" in fake_ollama.models

    await press(fake_discord, message, "Delete", user="admin")
    await fake_discord.wait_until(lambda: "freed" in message.content)
    assert "deleted `qwen3:latest` (5.2 GB freed)" in message.content
    assert not message.components
    assert "qwen3:latest" not in fake_ollama.models
    assert requests_to(fake_ollama, "/api/delete") == 1
    assert_pings_no_one(fake_discord)


async def test_model_delete_cancelled_keeps_the_model(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    message = await confirmation(fake_discord, "qwen3")
    await press(fake_discord, message, "Cancel", user="admin")
    await fake_discord.wait_until(lambda: message.content.startswith("Kept"))
    assert message.content == "Kept `qwen3:latest`: nothing was deleted."
    assert not message.components
    assert "qwen3:latest" in fake_ollama.models
    assert requests_to(fake_ollama, "/api/delete") == 0


async def test_model_delete_unanswered_times_out(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(model_delete_confirm_timeout=0.3)
    message = await confirmation(fake_discord, "qwen3")
    await fake_discord.wait_until(lambda: message.content.startswith("Kept"))
    assert message.content == "Kept `qwen3:latest`: no answer within 0.3 s."
    assert not message.components
    assert requests_to(fake_ollama, "/api/delete") == 0


async def test_model_delete_refuses_the_models_the_bot_answers_with(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model(FakeModel(name="judge"))
    fake_ollama.add_model(FakeModel(name="mistral"))
    await bots.start(sentiment_model="judge")
    await model(fake_discord, "use", {"name": "mistral"}, user="admin")
    await model(
        fake_discord,
        "use",
        {"name": "mistral"},
        user="admin",
        channel_id=fake_discord.channel_ids[1],
    )
    await fake_discord.wait_until(
        lambda: (
            sum("set this channel's model" in m.content for m in fake_discord.bot_messages()) == 2
        )
    )
    why = {
        "Llama3.2": "`llama3.2:latest` is the bot's chat model, so it can't be deleted.",
        "llava": "`llava:latest` is the bot's vision model, so it can't be deleted.",
        "judge": "`judge:latest` is the bot's sentiment model, so it can't be deleted.",
        "mistral": "`mistral:latest` is used by 2 channels via `/model use`; they need to pick "
        "another model first, so it can't be deleted.",
    }
    for name, reason in why.items():
        refused = await answer(
            fake_discord, await model(fake_discord, "delete", {"name": name}, user="admin")
        )
        assert refused.is_ephemeral
        assert refused.content == reason
        assert not refused.components
    assert requests_to(fake_ollama, "/api/delete") == 0
    # The public "thinking" message each refusal started with was taken back.
    assert not any("Delete `" in m.content for m in fake_discord.bot_messages())


async def test_model_delete_waits_for_a_pull_of_the_same_model(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    newer = FakeModel(name="llava", size=2_000_000)
    fake_ollama.add_pullable(
        newer, layers=[(layer(5), 2_000_000)], bytes_per_second=2_000_000, progress_interval=0.05
    )
    pull = await model(fake_discord, "pull", {"name": "llava"}, user="admin")
    await fake_ollama.wait_until(lambda: requests_to(fake_ollama, "/api/pull") == 1)
    refused = await answer(
        fake_discord, await model(fake_discord, "delete", {"name": "llava"}, user="admin")
    )
    assert refused.is_ephemeral
    assert refused.content == "`llava:latest` is being pulled right now. Wait until it is done."
    await pulled(fake_discord, pull)
    assert requests_to(fake_ollama, "/api/delete") == 0


async def test_model_delete_of_a_model_that_is_not_installed(
    bot: OllamaBot, fake_discord: FakeDiscord
) -> None:
    refused = await answer(
        fake_discord, await model(fake_discord, "delete", {"name": "mistral"}, user="admin")
    )
    assert refused.is_ephemeral and "`mistral` is not installed" in refused.content


async def test_model_delete_needs_an_owner(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    refused = await answer(
        fake_discord, await model(fake_discord, "delete", {"name": "qwen3"}, user="bob")
    )
    assert refused.is_ephemeral and "Only the bot's owners" in refused.content
    assert "qwen3:latest" in fake_ollama.models


# ---- autocomplete ----------------------------------------------------------------------------


async def test_model_names_autocomplete_filtered_prefix_first(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model(FakeModel(name="tinyllama"))
    fake_ollama.add_model(FakeModel(name="codellama:7b"))
    typing = await fake_discord.autocomplete(
        "model", {"name": "LLAMA"}, focused="name", subcommand="info"
    )
    await fake_discord.wait_until(lambda: typing.choices is not None)
    assert [c["name"] for c in typing.choices or []] == [
        "llama3.2:latest",
        "codellama:7b",
        "tinyllama:latest",
    ]
    assert all(c["name"] == c["value"] for c in typing.choices or [])


async def test_autocomplete_offers_at_most_25_and_caches_the_list(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    for n in range(30):
        fake_ollama.add_model(FakeModel(name=f"m{n:02d}"))
    for subcommand in ("use", "delete", "pull"):
        typing = await fake_discord.autocomplete(
            "model", {"name": ""}, focused="name", subcommand=subcommand
        )
        await fake_discord.wait_until(lambda: typing.choices is not None)  # noqa: B023
        assert len(typing.choices or []) == 25
    chat = await fake_discord.autocomplete(
        "chat", {"message": "hi", "model": "qw"}, focused="model"
    )
    await fake_discord.wait_until(lambda: chat.choices is not None)
    assert [c["value"] for c in chat.choices or []] == ["qwen3:latest"]
    assert requests_to(fake_ollama, "/api/tags") == 1  # one list, cached for 30 s


async def test_model_commands_when_ollama_is_down(
    bots: BotRunner, fake_discord: FakeDiscord
) -> None:
    await bots.start(ollama_host=f"http://127.0.0.1:{closed_port()}")
    listed = await answer(fake_discord, await model(fake_discord, "list"))
    assert listed.is_ephemeral and "can't reach the Ollama server" in listed.content
    typing = await fake_discord.autocomplete(
        "model", {"name": "ll"}, focused="name", subcommand="info"
    )
    await fake_discord.wait_until(lambda: typing.choices is not None)
    assert typing.choices == []  # autocomplete cannot show an error; the command will
