"""What `/persona create` may make Ollama do, and what `/model delete` must leave alone (issue 13):
the real bot against both doubles and a migrated database."""

from __future__ import annotations

from bot.app import OllamaBot
from tests.conftest import BotRunner, both_databases
from tests.doubles.fake_discord import FakeDiscord
from tests.doubles.fake_ollama import FakeModel, FakeOllama, Script
from tests.e2e.test_models import answer, model, requests_to
from tests.e2e.test_personas import SEED, create_with_file, created_models, persona_model

NOT_INSTALLED = (
    "is not installed on the Ollama server, and a persona never downloads a model. Build it on "
    "an installed one (`/model list` shows them); the bot's owners can pull others with "
    "`/model pull`."
)
"""The end of the refusal of a FROM that is not installed."""
NO_HOSTS = "A persona's FROM can't name a registry or host"


async def test_creating_a_persona_needs_manage_channels_by_default(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    refused = await create_with_file(fake_discord, "butler", SEED, user="alice")
    assert refused.is_ephemeral
    assert refused.content == "This needs the Manage Channels permission."
    made = await create_with_file(fake_discord, "butler", SEED, user="admin")
    assert "✅ Created the persona **butler**" in made.content
    assert len(created_models(fake_ollama)) == 1


async def test_a_from_with_a_registry_host_is_for_owners_and_only_when_installed(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(persona_create_permission="everyone")
    fake_ollama.add_model(FakeModel(name="hf.co/org/tiny:q4"))
    for base in ("hf.co/org/tiny:q4", "10.0.0.5:22/a/b", "registry.ollama.ai/library/llama3.2"):
        refused = await create_with_file(fake_discord, "probe", f"FROM {base}\n", user="alice")
        assert refused.is_ephemeral and NO_HOSTS in refused.content, refused.content
        assert "10.0.0.5" not in refused.content
    # The application's owner may name a host, of a model that is installed: nothing is pulled.
    absent = await create_with_file(fake_discord, "probe", "FROM 10.0.0.5:22/a/b\n", user="admin")
    assert absent.content == f"⚠️ The FROM model `10.0.0.5:22/a/b` {NOT_INSTALLED}"
    made = await create_with_file(fake_discord, "tiny", "FROM hf.co/org/tiny:q4\n", user="admin")
    assert "✅ Created the persona **tiny**" in made.content
    assert [b["from"] for b in created_models(fake_ollama)] == ["hf.co/org/tiny:q4"]
    assert requests_to(fake_ollama, "/api/pull") == 0


async def test_from_another_guilds_persona_is_refused_without_naming_it(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    other = await fake_discord.add_guild("Other", ["lobby"])
    await bots.start(persona_create_permission="everyone")
    lobby = fake_discord.guild_channel_ids(other)[0]
    await create_with_file(fake_discord, "secret", SEED, channel_id=lobby)
    theirs = persona_model(fake_discord, "secret", other)
    assert f"{theirs}:latest" in fake_ollama.models

    for base in (theirs, persona_model(fake_discord, "nothing", other)):
        refused = await create_with_file(fake_discord, "copycat", f"FROM {base}\n")
        assert refused.content == f"⚠️ The FROM model {NOT_INSTALLED}"
    assert len(created_models(fake_ollama)) == 1
    # Its own guild's persona is a fine base.
    mine = await create_with_file(fake_discord, "twin", f"FROM {theirs}\n", channel_id=lobby)
    assert "✅" in mine.content


@both_databases
async def test_a_from_too_long_for_the_database_is_refused_before_ollama(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    bot = await bots.start(persona_create_permission="everyone")
    # A valid Ollama name (host, namespace, model and tag each within Ollama's limits).
    base = f"{'h' * 90}.example/{'n' * 50}/{'m' * 60}:latest"
    refused = await create_with_file(fake_discord, "long", f"FROM {base}\n", user="admin")
    assert refused.content == (
        f"⚠️ That FROM is {len(base)} characters long; a persona's base model name can be at "
        "most 200."
    )
    assert created_models(fake_ollama) == []
    # The longest name and a long display name are stored as given, on either database.
    name = "n" * 32
    made = await create_with_file(fake_discord, name, SEED)
    assert "✅" in made.content
    stored = await bot.parts.personas.get(int(fake_discord.guild_id), name)
    assert stored is not None and stored.ollama_model == persona_model(fake_discord, name)


async def test_a_guild_may_have_at_most_max_personas_per_guild(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(persona_create_permission="everyone", max_personas_per_guild=2)
    for name in ("one", "two"):
        assert "✅" in (await create_with_file(fake_discord, name, SEED)).content
    refused = await create_with_file(fake_discord, "three", SEED)
    assert refused.content == (
        "⚠️ This server has 2 personas, the most it may have (2). "
        "Delete one with `/persona delete` first."
    )
    assert len(created_models(fake_ollama)) == 2


async def test_a_create_that_stalls_is_given_up_after_the_pull_stall_timeout(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    bot = await bots.start(persona_create_permission="everyone", pull_stall_timeout=0.3)
    fake_ollama.create_stall = 3.0
    refused = await create_with_file(fake_discord, "slow", SEED)
    assert refused.content == (
        "⚠️ Ollama could not create the model: no progress for 0.3 s; try again later"
    )
    assert await bot.parts.personas.get(int(fake_discord.guild_id), "slow") is None


async def test_model_delete_refuses_persona_bases_naming_only_this_guilds(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    other = await fake_discord.add_guild("Other", ["lobby"])
    await bots.start(chat_model="qwen3", vision_model="", persona_create_permission="everyone")
    lobby = fake_discord.guild_channel_ids(other)[0]
    await create_with_file(fake_discord, "painter", "FROM llava\n", channel_id=lobby)

    built_in = await answer(
        fake_discord, await model(fake_discord, "delete", {"name": "llama3.2"}, user="admin")
    )
    assert built_in.is_ephemeral
    assert built_in.content == (
        "`llama3.2:latest` is the base of the built-in personas **assistant**, **james**, "
        "so it can't be deleted."
    )
    theirs = await answer(
        fake_discord, await model(fake_discord, "delete", {"name": "llava"}, user="admin")
    )
    assert theirs.content == (
        "`llava:latest` is the base of 1 persona of other servers. They would stop working; "
        "it can't be deleted while they exist."
    )
    assert "painter" not in theirs.content
    assert requests_to(fake_ollama, "/api/delete") == 0


async def test_ollamas_error_text_reaches_members_without_addresses(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(
        Script(
            status=500,
            error_message='pull model manifest: Get "https://10.0.0.5:22/v2/a/b/manifests/latest"'
            ": dial tcp 10.0.0.5:22: connect: connection refused",
        )
    )
    interaction = await fake_discord.slash_command("chat", {"message": "hi"})
    await fake_discord.wait_until(
        lambda: any("⚠️" in m.content for m in fake_discord.messages.values())
    )
    shown = "\n".join(m.content for m in fake_discord.messages.values())
    assert "[address]" in shown
    assert "10.0.0.5" not in shown and "https://" not in shown
    assert interaction.id in fake_discord.interactions
