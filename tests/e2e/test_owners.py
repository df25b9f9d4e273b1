"""Who may change the Ollama server that every guild shares: the bot's owners only (issue 13).

The owners are the application's owner (or its team's admins and developers), read from
GET /oauth2/applications/@me like discord.py's `is_owner`, plus `owner_ids`, plus members with
Manage Server in one of `admin_guild_ids`. Manage Server in just any guild is not enough: anyone
can invite the bot to a server of their own."""

from __future__ import annotations

from bot.app import OllamaBot
from tests.conftest import BotRunner
from tests.doubles.fake_discord import FakeDiscord
from tests.doubles.fake_ollama import FakeOllama
from tests.e2e.test_models import answer, model, requests_to

OWNERS_ONLY = (
    "Only the bot's owners can do this: the Ollama server is shared by every server the bot is "
    "in. Ask whoever runs the bot."
)


async def try_pull(fake: FakeDiscord, user: str, channel_id: str | None = None) -> str:
    """`/model pull` of a name the library lacks: an owner gets Ollama's answer, others a
    refusal. Returns what the user saw."""
    message = await answer(
        fake,
        await model(fake, "pull", {"name": "no-such-model"}, user=user, channel_id=channel_id),
    )
    if message.content == OWNERS_ONLY:
        assert message.is_ephemeral
    return message.content


def allowed(text: str) -> bool:
    return text != OWNERS_ONLY


async def test_manage_server_in_a_guild_of_ones_own_is_not_enough(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    own = await fake_discord.add_guild("Bob's server", ["bobs-room"])
    fake_discord.make_admin("bob", own)
    await bots.start()
    room = fake_discord.guild_channel_ids(own)[0]

    assert await try_pull(fake_discord, "bob", room) == OWNERS_ONLY
    refused = await answer(
        fake_discord,
        await model(fake_discord, "delete", {"name": "qwen3"}, user="bob", channel_id=room),
    )
    assert refused.is_ephemeral and refused.content == OWNERS_ONLY
    assert requests_to(fake_ollama, "/api/pull") == 0
    assert requests_to(fake_ollama, "/api/delete") == 0
    assert "qwen3:latest" in fake_ollama.models

    # Guild-level actions stay guild-level: in his own server he may set a channel's model.
    used = await answer(
        fake_discord,
        await model(fake_discord, "use", {"name": "qwen3"}, user="bob", channel_id=room),
    )
    assert "set this channel's model to `qwen3`" in used.content

    # The application's owner may, from any guild.
    assert allowed(await try_pull(fake_discord, "admin", room))
    assert requests_to(fake_ollama, "/api/pull") == 1


async def test_a_teams_admins_and_developers_are_owners_not_its_read_only_members(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_discord.set_application_team({"alice": "developer", "bob": "read_only"})
    await bots.start()
    assert allowed(await try_pull(fake_discord, "alice"))
    assert await try_pull(fake_discord, "bob") == OWNERS_ONLY
    # Owning the guild's Admin role is not owning the bot once a team owns the application.
    assert await try_pull(fake_discord, "admin") == OWNERS_ONLY
    assert requests_to(fake_ollama, "/api/pull") == 1


async def test_owner_ids_and_admin_guild_ids_add_owners(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    home = await fake_discord.add_guild("Home", ["ops"])
    fake_discord.make_admin("bob", home)
    alice_id = int(fake_discord.users["alice"]["id"])
    bot: OllamaBot = await bots.start(owner_ids=[alice_id], admin_guild_ids=[int(home)])
    ops = fake_discord.guild_channel_ids(home)[0]

    assert allowed(await try_pull(fake_discord, "alice"))
    assert allowed(await try_pull(fake_discord, "bob", ops))  # Manage Server in an admin guild
    # Elsewhere bob has no Manage Server, and being one in Home counts only there.
    assert await try_pull(fake_discord, "bob") == OWNERS_ONLY
    assert requests_to(fake_ollama, "/api/pull") == 2
    assert bot.settings.owner_ids == [alice_id]
