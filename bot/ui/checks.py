"""Who may run what. Admin commands also carry `default_member_permissions` so Discord hides
them from members; these checks run again when the command runs, because server admins can
change what Discord shows."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.access import AccessRules
from bot.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger(__name__)

OWNERS_ONLY = (
    "Only the bot's owners can do this: the Ollama server is shared by every server the bot is "
    "in. Ask whoever runs the bot."
)


class Configured(Protocol):
    """What these checks read from the client (bot/client.py's OllamaBot)."""

    settings: Settings
    access: AccessRules


class NotAllowed(app_commands.CheckFailure):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.user_message = message


def is_admin(interaction: discord.Interaction) -> bool:
    """Manage Server (or Administrator), or one of the configured admin roles."""
    permissions = interaction.permissions
    if permissions.administrator or permissions.manage_guild:
        return True
    admin_roles = set(cast("Configured", interaction.client).settings.admin_role_ids)
    roles = getattr(interaction.user, "roles", [])
    return any(role.id in admin_roles for role in roles)


def member_is_admin(member: discord.abc.User, admin_role_ids: list[int]) -> bool:
    """The same rule as `is_admin`, for the author of a message."""
    if not isinstance(member, discord.Member):
        return False
    permissions = member.guild_permissions
    if permissions.administrator or permissions.manage_guild:
        return True
    return any(role.id in admin_role_ids for role in member.roles)


async def is_owner(interaction: discord.Interaction) -> bool:
    """One of the bot's owners: a user in `owner_ids`; the application's owner, or an admin or
    developer of its team (from GET /oauth2/applications/@me, as discord.py's `is_owner` counts
    them, read once and kept until the bot restarts); or, in one of `admin_guild_ids`, a member
    with Manage Server. Owners alone may change what every guild shares."""
    bot = cast("commands.Bot", interaction.client)
    settings = cast("Configured", bot).settings
    if interaction.user.id in settings.owner_ids:
        return True
    if interaction.guild_id is not None and interaction.guild_id in settings.admin_guild_ids:
        permissions = interaction.permissions
        if permissions.administrator or permissions.manage_guild:
            return True
    try:
        return await bot.is_owner(interaction.user)
    except discord.HTTPException:
        # Not knowing the owners must not make anyone one.
        log.warning("could not read the application's owners", exc_info=True)
        return False


def owners_only() -> Callable[[F], F]:
    async def predicate(interaction: discord.Interaction) -> bool:
        if not await is_owner(interaction):
            raise NotAllowed(OWNERS_ONLY)
        return True

    return app_commands.check(predicate)


def place_ids(channel: object) -> list[int]:
    """A channel's id and, for a thread, its parent's: rules on a channel cover its threads."""
    ids = [channel_id] if isinstance(channel_id := getattr(channel, "id", None), int) else []
    parent = getattr(channel, "parent_id", None)
    if isinstance(parent, int):
        ids.append(parent)
    return ids


def refusal_for(interaction: discord.Interaction) -> str | None:
    """Why the access rules shut this interaction's user out here, or None."""
    bot = cast("Configured", interaction.client)
    roles = [role.id for role in getattr(interaction.user, "roles", [])]
    return bot.access.refusal(
        user_id=interaction.user.id,
        role_ids=roles,
        channel_ids=place_ids(interaction.channel),
        dm=interaction.guild_id is None,
        admin=interaction.guild_id is not None and is_admin(interaction),
    )


def admins_only() -> Callable[[F], F]:
    def predicate(interaction: discord.Interaction) -> bool:
        if interaction.guild_id is None:
            raise app_commands.NoPrivateMessage()
        if not is_admin(interaction):
            raise NotAllowed("This needs the Manage Server permission or a bot admin role.")
        return True

    return app_commands.check(predicate)


def channel_managers() -> Callable[[F], F]:
    def predicate(interaction: discord.Interaction) -> bool:
        if interaction.guild_id is None:
            raise app_commands.NoPrivateMessage()
        if not (interaction.permissions.manage_channels or is_admin(interaction)):
            raise NotAllowed("This needs the Manage Channels permission.")
        return True

    return app_commands.check(predicate)
