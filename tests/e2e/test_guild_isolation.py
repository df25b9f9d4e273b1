"""Guilds do not see each other (issue 13): another guild's personas are invisible in every
model command and autocomplete, and only the bot's owners see where Ollama runs."""

from __future__ import annotations

from bot.models.names import visible
from tests.conftest import BotRunner
from tests.doubles.fake_discord import FakeDiscord
from tests.doubles.fake_ollama import FakeOllama
from tests.e2e.test_models import answer, model
from tests.e2e.test_personas import SEED, chat, create_with_file, persona_model, run


async def test_another_guilds_personas_are_invisible_to_model_commands(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    other = await fake_discord.add_guild("Other", ["lobby"])
    bot = await bots.start(persona_create_permission="everyone", model_names_ttl=0)
    lobby = fake_discord.guild_channel_ids(other)[0]
    await create_with_file(fake_discord, "secret", SEED, channel_id=lobby)
    await create_with_file(fake_discord, "ours", SEED)
    theirs, ours = persona_model(fake_discord, "secret", other), persona_model(fake_discord, "ours")
    # The other guild talks to its persona, so the model is loaded (for /model ps).
    await run(fake_discord, "use", {"name": "secret"}, channel_id=lobby)
    await chat(fake_discord, "hello", channel_id=lobby)
    shows_before = sum(1 for r in fake_ollama.requests if r.path == "/api/show")

    listed = await answer(fake_discord, await model(fake_discord, "list"))
    assert ours in listed.content and theirs not in listed.content
    assert "secret" not in listed.content
    there = await answer(fake_discord, await model(fake_discord, "list", channel_id=lobby))
    assert theirs in there.content and ours not in there.content

    for subcommand in ("info", "use", "delete", "pull"):
        typing = await fake_discord.autocomplete(
            "model", {"name": "persona"}, focused="name", subcommand=subcommand
        )
        await fake_discord.wait_until(lambda: typing.choices is not None)  # noqa: B023
        offered = [c["value"] for c in typing.choices or []]
        assert f"{ours}:latest" in offered and f"{theirs}:latest" not in offered, offered
    chat_typing = await fake_discord.autocomplete(
        "chat", {"message": "hi", "model": "persona"}, focused="model"
    )
    await fake_discord.wait_until(lambda: chat_typing.choices is not None)
    assert [c["value"] for c in chat_typing.choices or []] == [f"{ours}:latest"]

    # Named outright, it is answered exactly like a model that does not exist.
    for subcommand in ("info", "use"):
        refused = await answer(
            fake_discord,
            await model(fake_discord, subcommand, {"name": theirs}, user="admin"),
        )
        assert refused.is_ephemeral
        assert refused.content.startswith(f"The model `{theirs}` is not installed")
    assert (await bot.parts.channels.get(int(fake_discord.channel_ids[0]))).model is None
    # ... and Ollama was not even asked about it.
    assert sum(1 for r in fake_ollama.requests if r.path == "/api/show") == shows_before

    loaded = await answer(fake_discord, await model(fake_discord, "ps"))
    assert "No model is loaded" in loaded.content and "secret" not in loaded.content
    there = await answer(fake_discord, await model(fake_discord, "ps", channel_id=lobby))
    assert f"`{theirs}:latest`" in there.content


def test_visible_hides_other_guilds_personas_only() -> None:
    assert visible("llama3.2", 1) and visible("hf.co/org/x:q4", None)
    assert visible("persona-builtin-james", 5) and visible("persona-builtin-james", None)
    assert visible("persona-5-butler:latest", 5) and visible("Persona-5-Butler", 5)
    assert not visible("persona-6-butler", 5) and not visible("persona-6-butler", None)
    assert not visible("library/persona-6-x:latest", 5)


async def test_status_shows_where_ollama_runs_only_to_owners(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start()

    async def status(user: str) -> str:
        interaction = await fake_discord.slash_command("status", user=user)
        return (await answer(fake_discord, interaction)).content

    member = await status("bob")
    assert f"Ollama: ✅ reachable, version {fake_ollama.version}" in member
    assert fake_ollama.url not in member and "127.0.0.1" not in member
    owner = await status("admin")
    assert f"reachable at {fake_ollama.url}" in owner

    await fake_ollama.close()  # the server goes away
    down = await status("bob")
    assert "Ollama: ❌ not reachable" in down and "127.0.0.1" not in down
