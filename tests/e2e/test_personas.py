"""/persona: the real bot against both doubles and a migrated SQLite file."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bot.app import OllamaBot
from tests.conftest import BotRunner
from tests.doubles.fake_discord import FakeDiscord, FakeInteraction, FakeMessage
from tests.doubles.fake_ollama import FakeModel, FakeOllama, Script
from tests.e2e.test_chat import assert_pings_no_one
from tests.e2e.test_images import a_png

SEED = 'FROM llama3.2\nPARAMETER temperature 0.3\nSYSTEM """You are James, a butler."""\n'
TYPO = 'FROM llama3.2\nPARAMETER termperature 0.3\nSYSTEM """You are James, a butler."""\n'
SPEED = r"\d+\.\d tokens/s"


EVERYONE_CREATES = {"persona_create_permission": "everyone"}


@pytest.fixture
async def bot(bots: BotRunner) -> OllamaBot:
    """Most tests here are about what personas do, so members (alice) may create them; who may
    by default (Manage Channels) is tested on its own."""
    return await bots.start(**EVERYONE_CREATES)


# ------------------------------------------------------------------------------ helpers


def created_models(fake: FakeOllama) -> list[dict[str, Any]]:
    """Bodies of the /api/create requests the Ollama double received."""
    return [r.json for r in fake.requests if r.method == "POST" and r.path == "/api/create"]


def deleted_models(fake: FakeOllama) -> list[dict[str, Any]]:
    return [r.json for r in fake.requests if r.method == "DELETE" and r.path == "/api/delete"]


def response(fake: FakeDiscord, interaction: FakeInteraction) -> FakeMessage:
    """What the user sees as the answer: the original response, or the last followup."""
    if interaction.followup_ids:
        return fake.messages[interaction.followup_ids[-1]]
    assert interaction.original_message_id is not None
    return fake.messages[interaction.original_message_id]


async def answered(fake: FakeDiscord, interaction: FakeInteraction) -> FakeMessage:
    """Wait until the response shows an outcome: not 'thinking', not a progress line."""

    def shown() -> bool:
        if interaction.original_message_id is None and not interaction.followup_ids:
            return False
        message = response(fake, interaction)
        return not message.is_loading and not message.content.startswith("⏳")

    await fake.wait_until(shown, timeout=10)
    return response(fake, interaction)


async def create_with_file(
    fake: FakeDiscord,
    name: str,
    text: str | bytes,
    *,
    user: str = "alice",
    channel_id: str | None = None,
    filename: str = "Modelfile",
) -> FakeMessage:
    data = text.encode() if isinstance(text, str) else text
    interaction = await fake.slash_command(
        "persona",
        {"name": name},
        subcommand="create",
        user=user,
        channel_id=channel_id,
        attachments={"modelfile": (filename, data, "text/plain")},
    )
    return await answered(fake, interaction)


def text_input_id(modal: dict[str, Any]) -> str:
    for row in modal["components"]:
        for component in row.get("components", [row.get("component") or {}]):
            if component.get("type") == 4:
                return str(component["custom_id"])
    raise AssertionError(f"no text input in {modal}")


async def create_with_modal(
    fake: FakeDiscord, name: str, text: str, *, user: str = "alice"
) -> tuple[FakeInteraction, FakeMessage]:
    opened = await fake.slash_command("persona", {"name": name}, subcommand="create", user=user)
    await fake.wait_until(lambda: opened.callback_type is not None)
    assert opened.callback_type == 9, "a form (modal) opens when no file is attached"
    modal = opened.modal
    assert modal is not None
    submitted = await fake.submit_modal(modal["custom_id"], {text_input_id(modal): text}, user=user)
    return opened, await answered(fake, submitted)


async def run(
    fake: FakeDiscord,
    subcommand: str,
    options: dict[str, Any] | None = None,
    *,
    user: str = "admin",
    channel_id: str | None = None,
) -> FakeMessage:
    interaction = await fake.slash_command(
        "persona", options, subcommand=subcommand, user=user, channel_id=channel_id
    )
    return await answered(fake, interaction)


async def chat(fake: FakeDiscord, text: str, *, channel_id: str | None = None) -> FakeMessage:
    """Run /chat and wait for its footer (any model or persona) or its error."""
    interaction = await fake.slash_command("chat", {"message": text}, channel_id=channel_id)

    def final() -> bool:
        if interaction.original_message_id is None:
            return False
        content = response(fake, interaction).content
        return re.search(rf"\n-# .+ · {SPEED}$", content) is not None or "⚠️" in content

    await fake.wait_until(final, timeout=10)
    return response(fake, interaction)


def persona_model(fake: FakeDiscord, name: str, guild_id: str | None = None) -> str:
    return f"persona-{guild_id or fake.guild_id}-{name}"


# ------------------------------------------------------------------------------ create


async def test_create_from_an_attached_modelfile(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    message = await create_with_file(fake_discord, "butler", SEED)

    assert message.is_ephemeral
    assert "✅ Created the persona **butler** from `llama3.2`" in message.content
    assert created_models(fake_ollama) == [
        {
            "model": persona_model(fake_discord, "butler"),
            "stream": True,
            "system": "You are James, a butler.",
            "parameters": {"temperature": 0.3},
            "from": "llama3.2",
        }
    ]
    assert f"{persona_model(fake_discord, 'butler')}:latest" in fake_ollama.models
    stored = await bot.parts.personas.get(int(fake_discord.guild_id), "butler")
    assert stored is not None
    assert stored.modelfile == SEED
    assert stored.author_id == int(fake_discord.users["alice"]["id"])
    assert stored.author_name == "Alice"
    assert_pings_no_one(fake_discord)


async def test_create_through_the_form_sends_every_instruction(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    text = (
        "# a pirate\n"
        "from llama3.2\n"
        'PARAMETER stop "<|eot_id|>"\n'
        "PARAMETER stop User:\n"
        "PARAMETER num_ctx 2048\n"
        'TEMPLATE """{{ .System }} {{ .Prompt }}"""\n'
        'SYSTEM """You are a pirate.\nSay arr."""\n'
        "MESSAGE user Who are you?\n"
        "MESSAGE assistant Arr, a pirate.\n"
        "LICENSE MIT\n"
        "PARAMETER mirostat 1\n"
    )
    opened, message = await create_with_modal(fake_discord, "Pirate", text)

    assert opened.modal is not None
    text_input = opened.modal["components"][0]["components"][0]
    assert text_input["style"] == 2 and text_input["max_length"] == 4000
    assert message.is_ephemeral
    assert "✅ Created the persona **pirate**" in message.content
    assert "warning: parameter mirostat is deprecated" in message.content
    assert created_models(fake_ollama) == [
        {
            "model": persona_model(fake_discord, "pirate"),
            "stream": True,
            "template": "{{ .System }} {{ .Prompt }}",
            "license": ["MIT"],
            "system": "You are a pirate.\nSay arr.",
            "parameters": {"stop": ["<|eot_id|>", "User:"], "num_ctx": 2048},
            "messages": [
                {"role": "user", "content": "Who are you?"},
                {"role": "assistant", "content": "Arr, a pirate."},
            ],
            "from": "llama3.2",
        }
    ]
    stored = await bot.parts.personas.get(int(fake_discord.guild_id), "pirate")
    assert stored is not None and stored.modelfile == text and stored.num_ctx == 2048


async def test_the_seed_typo_names_line_2_and_creates_nothing(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    by_file = await create_with_file(fake_discord, "james2", TYPO)
    _, by_form = await create_with_modal(fake_discord, "james3", TYPO)

    for message in (by_file, by_form):
        assert message.is_ephemeral
        assert message.content == (
            "⚠️ Modelfile line 2: unknown parameter 'termperature' — did you mean 'temperature'?"
        )
    assert created_models(fake_ollama) == []
    assert await bot.parts.personas.get(int(fake_discord.guild_id), "james2") is None
    assert await bot.parts.personas.get(int(fake_discord.guild_id), "james3") is None


async def test_create_refuses_bad_names_and_files_clearly(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    async def refused(name: str, data: bytes, words: str) -> None:
        message = await create_with_file(fake_discord, name, data)
        assert message.is_ephemeral and words in message.content, message.content

    async def refused_at_once(name: str, words: str) -> None:
        interaction = await fake_discord.slash_command(
            "persona", {"name": name}, subcommand="create"
        )
        await fake_discord.wait_until(lambda: interaction.original_message_id is not None)
        message = response(fake_discord, interaction)
        assert message.is_ephemeral and words in message.content, message.content

    await refused("weights", b"GGUF\x03\x00\x00\x00" + bytes(200), "binary")
    await refused("latin", "FROM llama3.2\nSYSTEM Café\n".encode("latin-1"), "not a text file")
    await refused("big", b"FROM llama3.2\n" + b"# padding\n" * 7000, "at most 64 KB")
    await refused("empty", b"  \n", "empty")
    await refused("local", b"FROM ./llama.gguf\n", "not supported from Discord")
    await refused("adapter", b"FROM llama3.2\nADAPTER ./lora\n", "line 2: ADAPTER is not supported")
    await refused("Bad Name!", SEED.encode(), "can't be a persona name")
    await refused_at_once("james", "built-in persona")  # the form is not even opened
    await refused_at_once("a" * 32 + "!", "can't be a persona name")
    assert created_models(fake_ollama) == []

    utf16 = await create_with_file(fake_discord, "wide", SEED.encode("utf-16"))
    assert "✅" in utf16.content
    again = await create_with_file(fake_discord, "wide", SEED)
    assert "already has a persona called `wide`" in again.content
    assert len(created_models(fake_ollama)) == 1


async def test_create_never_downloads_its_base_model(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    # The library has mistral, but it is not installed: only the bot's owners pull models.
    fake_ollama.add_pullable(FakeModel(name="mistral:latest", size=16_000_000))
    for name, base in (("frenchy", "mistral"), ("ghost", "nosuchmodel")):
        message = await create_with_file(fake_discord, name, f"FROM {base}\nSYSTEM Bonjour.\n")
        assert message.is_ephemeral
        assert message.content == (
            f"⚠️ The FROM model `{base}` is not installed on the Ollama server, and a persona "
            "never downloads a model. Build it on an installed one (`/model list` shows them); "
            "the bot's owners can pull others with `/model pull`."
        )
        assert await bot.parts.personas.get(int(fake_discord.guild_id), name) is None
    assert created_models(fake_ollama) == []
    assert not any(r.path == "/api/pull" for r in fake_ollama.requests)
    assert "mistral:latest" not in fake_ollama.models


async def test_create_from_an_installed_model_of_any_spelling(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    message = await create_with_file(fake_discord, "painter", "FROM LLaVA:latest\nSYSTEM Hi.\n")
    assert "✅ Created the persona **painter** from `LLaVA:latest`" in message.content
    assert [b["from"] for b in created_models(fake_ollama)] == ["LLaVA:latest"]


# ------------------------------------------------------------------------------ use, chat, reset


async def test_use_then_chat_answers_as_the_persona_and_reset_switches_back(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await create_with_file(fake_discord, "butler", SEED)
    fake_ollama.script(
        Script(reply="Hello."), Script(reply="Good evening."), Script(reply="Back to normal.")
    )
    await chat(fake_discord, "Hello before")  # the channel's model answers first

    used = await run(fake_discord, "use", {"name": "butler"})
    assert not used.is_ephemeral
    assert "gave this channel the persona **butler** (by Alice, from `llama3.2`)" in used.content

    answer = await chat(fake_discord, "Who are you?")
    assert re.search(rf"\n-# butler \(llama3\.2\) · {SPEED}$", answer.content)
    request = fake_ollama.chat_requests()[-1]
    assert request["model"] == persona_model(fake_discord, "butler")
    assert request["messages"][0] == {"role": "system", "content": "You are James, a butler."}
    assert request["messages"][-1] == {"role": "user", "content": "Who are you?"}
    assert {"role": "user", "content": "Hello before"} in request["messages"]  # history kept
    turns = await bot.history.all(int(fake_discord.channel_ids[0]))
    assert (turns[-1].persona, turns[-1].model) == ("butler", persona_model(fake_discord, "butler"))
    history = await fake_discord.slash_command("history", subcommand="show")
    shown = await answered(fake_discord, history)
    assert "**ollama (butler)**: Good evening." in shown.content

    reset = await run(fake_discord, "reset")
    assert "took the persona **butler** off this channel" in reset.content
    after = await chat(fake_discord, "And now?")
    assert re.search(rf"\n-# llama3\.2 · {SPEED}$", after.content)
    request = fake_ollama.chat_requests()[-1]
    assert request["model"] == "llama3.2"
    assert request["messages"][0]["role"] == "user"
    assert {"role": "assistant", "content": "Good evening."} in request["messages"]
    assert_pings_no_one(fake_discord)


async def test_chat_model_option_overrides_the_persona_for_one_message(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await create_with_file(fake_discord, "butler", SEED)
    await run(fake_discord, "use", {"name": "butler"})
    interaction = await fake_discord.slash_command("chat", {"message": "hi", "model": "qwen3"})
    await fake_discord.wait_until(lambda: len(fake_ollama.chat_requests()) == 1)
    request = fake_ollama.chat_requests()[0]
    assert request["model"] == "qwen3"
    assert request["messages"] == [{"role": "user", "content": "hi"}]
    await fake_discord.wait_until(
        lambda: (
            interaction.original_message_id is not None
            and "-# qwen3 · " in response(fake_discord, interaction).content
        ),
        timeout=10,
    )


async def test_model_use_takes_the_persona_off(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await run(fake_discord, "use", {"name": "james"})
    switched = await fake_discord.slash_command(
        "model", {"name": "qwen3"}, subcommand="use", user="admin"
    )
    await answered(fake_discord, switched)
    await chat(fake_discord, "hi")
    assert fake_ollama.chat_requests()[-1]["model"] == "qwen3"
    assert (await bot.parts.channels.get(int(fake_discord.channel_ids[0]))).persona is None


async def test_an_image_turn_goes_to_the_vision_model_unless_the_persona_can_see(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    async def chat_with_image() -> FakeMessage:
        interaction = await fake_discord.slash_command(
            "chat", {"message": "what is this?"}, attachments={"image": a_png(width=64, height=48)}
        )

        def final() -> bool:
            if interaction.original_message_id is None:
                return False
            return (
                re.search(rf"\n-# .+ · {SPEED}$", response(fake_discord, interaction).content)
                is not None
            )

        await fake_discord.wait_until(final, timeout=10)
        return response(fake_discord, interaction)

    await run(fake_discord, "use", {"name": "james"})  # llama3.2 underneath: it cannot see
    answer = await chat_with_image()
    request = fake_ollama.chat_requests()[-1]
    assert request["model"] == "llava"
    assert (
        request["messages"][0]["role"] == "user"
    )  # the persona's prompt is not the vision model's
    assert re.search(rf"\n-# llava · {SPEED}$", answer.content)

    await create_with_file(fake_discord, "painter", "FROM llava\nSYSTEM You describe paintings.\n")
    await run(fake_discord, "use", {"name": "painter"})
    answer = await chat_with_image()
    request = fake_ollama.chat_requests()[-1]
    assert request["model"] == persona_model(fake_discord, "painter")
    assert request["messages"][0] == {"role": "system", "content": "You describe paintings."}
    assert request["messages"][-1]["images"]
    assert re.search(rf"\n-# painter \(llava\) · {SPEED}$", answer.content)


async def test_the_personas_num_ctx_bounds_the_context(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await create_with_file(fake_discord, "tiny", "FROM llama3.2\nPARAMETER num_ctx 512\n")
    await run(fake_discord, "use", {"name": "tiny"})
    interaction = await fake_discord.slash_command("chat", {"message": "word " * 400})
    await fake_discord.wait_until(
        lambda: (
            interaction.original_message_id is not None
            and "too long for" in response(fake_discord, interaction).content
        ),
        timeout=10,
    )
    assert fake_ollama.chat_requests() == []


async def test_a_builtin_persona_is_created_on_first_use(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    listed = await run(fake_discord, "list", user="bob")
    assert listed.is_ephemeral
    assert "• `assistant` — built-in, from `llama3.2`" in listed.content
    assert "• `james` — built-in, from `llama3.2`" in listed.content
    assert created_models(fake_ollama) == []

    used = await run(fake_discord, "use", {"name": "James"})
    assert "persona **james** (built-in, from `llama3.2`)" in used.content
    [body] = created_models(fake_ollama)
    assert body["model"] == "persona-builtin-james"
    assert body["from"] == "llama3.2"
    assert body["parameters"] == {"temperature": 0.3}
    assert body["system"].startswith("You are James")

    await chat(fake_discord, "Good morning")
    request = fake_ollama.chat_requests()[-1]
    assert request["model"] == "persona-builtin-james"
    assert request["messages"][0]["content"].startswith("You are James")
    listed = await run(fake_discord, "list", user="bob")
    assert "• `james` 🎭 — built-in" in listed.content

    # Another channel uses it too: the model exists now, nothing is created again.
    await run(fake_discord, "use", {"name": "james"}, channel_id=fake_discord.channel_ids[1])
    assert len(created_models(fake_ollama)) == 1


async def test_a_thread_started_in_the_channel_keeps_its_persona(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await run(fake_discord, "use", {"name": "james"})
    await fake_discord.slash_command("thread", {"topic": "Tea time"}, subcommand="start")
    await fake_discord.wait_until(lambda: bool(fake_ollama.chat_requests()), timeout=10)
    request = fake_ollama.chat_requests()[-1]
    assert request["model"] == "persona-builtin-james"
    assert request["messages"][0]["content"].startswith("You are James")
    assert request["messages"][-1] == {"role": "user", "content": "Tea time"}
    thread_id = next(
        i
        for i, c in fake_discord.channels.items()
        if c.get("parent_id") == fake_discord.channel_ids[0]
    )
    assert (await bot.parts.channels.get(int(thread_id))).persona == "james"
    await fake_discord.wait_until(
        lambda: any(
            "-# james (llama3.2) · " in m.content for m in fake_discord.bot_messages(thread_id)
        ),
        timeout=10,
    )


# ------------------------------------------------------------------------------ missing models


async def test_use_recreates_a_missing_model_from_the_stored_modelfile(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await create_with_file(fake_discord, "butler", SEED)
    fake_ollama.remove_model(persona_model(fake_discord, "butler"))  # say, Ollama was reinstalled

    used = await run(fake_discord, "use", {"name": "butler"})
    assert "gave this channel the persona **butler**" in used.content
    first, again = created_models(fake_ollama)
    assert again == first
    assert f"{persona_model(fake_discord, 'butler')}:latest" in fake_ollama.models


async def test_chat_recreates_a_model_that_went_missing(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await create_with_file(fake_discord, "butler", SEED)
    await run(fake_discord, "use", {"name": "butler"})
    await chat(fake_discord, "first")  # the bot now has the model's /api/show answer cached
    fake_ollama.remove_model(persona_model(fake_discord, "butler"))

    fake_ollama.script(Script(reply="Still at your service."))
    answer = await chat(fake_discord, "second")
    assert "Still at your service." in answer.content
    assert re.search(rf"-# butler \(llama3\.2\) · {SPEED}$", answer.content)
    calls = [
        (r.path, r.status) for r in fake_ollama.requests if r.path in ("/api/chat", "/api/create")
    ]
    assert calls[-3:] == [("/api/chat", 404), ("/api/create", 200), ("/api/chat", 200)]
    assert created_models(fake_ollama)[-1] == created_models(fake_ollama)[0]


async def test_a_failed_use_is_told_privately_and_changes_nothing(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await create_with_file(fake_discord, "butler", SEED)
    # The server lost the persona's model and its base, and the registry has no such base.
    fake_ollama.remove_model(persona_model(fake_discord, "butler"))
    fake_ollama.remove_model("llama3.2")

    interaction = await fake_discord.slash_command(
        "persona", {"name": "butler"}, subcommand="use", user="admin"
    )
    await fake_discord.wait_until(lambda: bool(interaction.followup_ids))
    told = fake_discord.messages[interaction.followup_ids[-1]]
    assert told.is_ephemeral
    assert told.content.startswith("The FROM model `llama3.2` is not installed on the Ollama")
    assert len(created_models(fake_ollama)) == 1  # butler's own create; none for the use
    assert fake_discord.messages[interaction.original_message_id or ""].deleted
    assert (await bot.parts.channels.get(int(fake_discord.channel_ids[0]))).persona is None

    nothing = await run(fake_discord, "reset")
    assert nothing.is_ephemeral and nothing.content == "This channel has no persona."


# ------------------------------------------------------------------------------ show, delete


async def test_show_puts_the_modelfile_in_code_blocks(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    shown = await run(fake_discord, "show", {"name": "james"}, user="bob")
    assert shown.is_ephemeral
    assert shown.content.startswith("**james** (built-in, from `llama3.2`)\n```dockerfile\n")
    assert "PARAMETER temperature 0.3\n" in shown.content and shown.content.endswith("\n```")

    long_system = " ".join(f"Rule {n}: be polite." for n in range(400))
    await create_with_file(fake_discord, "long", f'FROM llama3.2\nSYSTEM """{long_system}"""\n')
    interaction = await fake_discord.slash_command(
        "persona", {"name": "long"}, subcommand="show", user="bob"
    )
    # The first piece fills the deferred response; the others follow as messages of their own.
    await fake_discord.wait_until(lambda: len(interaction.followup_ids) >= 2)
    first = fake_discord.messages[interaction.original_message_id or ""]
    assert not first.is_loading
    pieces = [first, *(fake_discord.messages[i] for i in interaction.followup_ids)]
    for piece in pieces:
        assert piece.is_ephemeral and len(piece.content) <= 2000
        assert piece.content.count("```") % 2 == 0  # every piece's code block is closed
    assert pieces[1].content.startswith("```dockerfile\n")


async def test_delete_needs_the_author_or_an_admin_and_removes_the_ollama_model(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await create_with_file(fake_discord, "butler", SEED, user="alice")
    await create_with_file(fake_discord, "maid", SEED, user="alice")
    await run(fake_discord, "use", {"name": "butler"})

    refused = await run(fake_discord, "delete", {"name": "butler"}, user="bob")
    assert refused.is_ephemeral
    assert "Only its author or an admin can delete the persona `butler`." in refused.content
    builtin = await run(fake_discord, "delete", {"name": "james"}, user="admin")
    assert "built-in persona; it can't be deleted" in builtin.content
    assert deleted_models(fake_ollama) == []

    deleted = await run(fake_discord, "delete", {"name": "butler"}, user="alice")
    assert "🗑️ Deleted the persona **butler**" in deleted.content
    assert deleted_models(fake_ollama) == [{"model": persona_model(fake_discord, "butler")}]
    assert f"{persona_model(fake_discord, 'butler')}:latest" not in fake_ollama.models
    assert await bot.parts.personas.get(int(fake_discord.guild_id), "butler") is None
    config = await bot.parts.channels.get(int(fake_discord.channel_ids[0]))
    assert config.persona is None  # the channel is back to its model
    await chat(fake_discord, "anyone there?")
    assert fake_ollama.chat_requests()[-1]["model"] == "llama3.2"

    by_admin = await run(fake_discord, "delete", {"name": "maid"}, user="admin")
    assert "Deleted the persona **maid**" in by_admin.content
    assert len(deleted_models(fake_ollama)) == 2


async def test_model_delete_refuses_a_personas_base_and_its_model(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await create_with_file(fake_discord, "butler", SEED.replace("llama3.2", "qwen3"))
    await run(fake_discord, "use", {"name": "james"})  # built-in personas don't hold models

    for name in ("Qwen3", persona_model(fake_discord, "butler")):
        interaction = await fake_discord.slash_command(
            "model", {"name": name}, subcommand="delete", user="admin"
        )
        refused = await answered(fake_discord, interaction)
        assert refused.is_ephemeral
        assert refused.content.endswith(
            "is the base of the persona **butler**. Delete it with `/persona delete` first."
        )
    assert deleted_models(fake_ollama) == []


# ------------------------------------------------------------------------------ permissions


async def test_use_and_reset_need_manage_channels_by_default(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    for subcommand, options in (("use", {"name": "james"}), ("reset", None)):
        refused = await run(fake_discord, subcommand, options, user="bob")
        assert refused.is_ephemeral
        assert refused.content == "This needs the Manage Channels permission."
    assert created_models(fake_ollama) == []
    assert (await bot.parts.channels.get(int(fake_discord.channel_ids[0]))).persona is None


async def test_who_may_create_use_and_delete_is_configurable(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(
        persona_create_permission="admins",
        persona_use_permission="everyone",
        persona_delete_permission="admins",
    )
    refused = await run(fake_discord, "create", {"name": "x"}, user="alice")
    assert refused.content == "This needs the Manage Server permission or a bot admin role."
    await create_with_file(fake_discord, "house", SEED, user="admin")

    used = await run(fake_discord, "use", {"name": "house"}, user="bob")
    assert "gave this channel the persona **house**" in used.content
    # With deletes for admins only, not even the author may delete.
    await create_with_file(fake_discord, "mine", SEED, user="admin")
    refused = await run(fake_discord, "delete", {"name": "house"}, user="bob")
    assert "Only an admin can delete" in refused.content


# ------------------------------------------------------------------------------ autocomplete


async def test_names_autocomplete_from_the_guild_and_the_builtins(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await create_with_file(fake_discord, "jester", SEED)
    await create_with_file(fake_discord, "butler", SEED)

    typed = await fake_discord.autocomplete("persona", {"name": "j"}, "name", subcommand="use")
    await fake_discord.wait_until(lambda: typed.choices is not None)
    assert [c["value"] for c in typed.choices or []] == ["james", "jester"]
    everything = await fake_discord.autocomplete("persona", {"name": ""}, "name", subcommand="show")
    await fake_discord.wait_until(lambda: everything.choices is not None)
    assert [c["value"] for c in everything.choices or []] == [
        "assistant",
        "butler",
        "james",
        "jester",
    ]


# ------------------------------------------------------------------------------ two guilds


async def test_two_guilds_can_have_a_persona_of_the_same_name(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    second = await fake_discord.add_guild("Second Guild", ["lobby"])
    bot = await bots.start(**EVERYONE_CREATES)
    lobby = fake_discord.guild_channel_ids(second)[0]
    general = fake_discord.channel_ids[0]

    await create_with_file(fake_discord, "butler", SEED)
    other = SEED.replace("You are James, a butler.", "You are Jeeves, a valet.")
    made = await create_with_file(fake_discord, "butler", other, channel_id=lobby)
    assert "✅" in made.content

    ours, theirs = (
        persona_model(fake_discord, "butler"),
        persona_model(fake_discord, "butler", second),
    )
    assert ours != theirs
    assert [b["model"] for b in created_models(fake_ollama)] == [ours, theirs]
    assert {f"{ours}:latest", f"{theirs}:latest"} <= set(fake_ollama.models)

    await run(fake_discord, "use", {"name": "butler"})
    await run(fake_discord, "use", {"name": "butler"}, channel_id=lobby)
    await chat(fake_discord, "Who are you?")
    await chat(fake_discord, "Who are you?", channel_id=lobby)
    here, there = fake_ollama.chat_requests()
    assert (here["model"], here["messages"][0]["content"]) == (ours, "You are James, a butler.")
    assert (there["model"], there["messages"][0]["content"]) == (theirs, "You are Jeeves, a valet.")

    # Deleting one guild's persona leaves the other's alone.
    await run(fake_discord, "delete", {"name": "butler"}, channel_id=lobby)
    assert deleted_models(fake_ollama) == [{"model": theirs}]
    assert await bot.parts.personas.get(int(fake_discord.guild_id), "butler") is not None
    assert (await bot.parts.channels.get(int(general))).persona == "butler"
