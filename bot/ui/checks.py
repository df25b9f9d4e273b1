"""Who may run what. Admin commands also carry `default_member_permissions` so Discord hides
them from members; these checks run again when the command runs, because server admins can
change what Discord shows."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import discord
from discord import app_commands

if TYPE_CHECKING:
    from bot.app import OllamaBot

F = TypeVar("F", bound=Callable[..., Any])


class NotAllowed(app_commands.CheckFailure):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.user_message = message


def is_admin(interaction: discord.Interaction) -> bool:
    """Manage Server (or Administrator), or one of the configured admin roles."""
    permissions = interaction.permissions
    if permissions.administrator or permissions.manage_guild:
        return True
    admin_roles = set(cast("OllamaBot", interaction.client).settings.admin_role_ids)
    roles = getattr(interaction.user, "roles", [])
    return any(role.id in admin_roles for role in roles)


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
