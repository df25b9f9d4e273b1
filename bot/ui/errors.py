"""The one place where errors become Discord replies: short and ephemeral for the user, the
traceback once in the log."""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from bot.errors import BotError
from bot.ui.answers import tell_privately
from bot.ui.checks import NotAllowed

log = logging.getLogger(__name__)

PERMISSION_NAMES = {
    "manage_messages": "Manage Messages",
    "manage_channels": "Manage Channels",
    "manage_guild": "Manage Server",
    "administrator": "Administrator",
}


def user_message(error: BaseException) -> str:
    """What the user is told about `error`."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, BotError):
        return error.user_message
    if isinstance(error, app_commands.MissingPermissions):
        names = ", ".join(PERMISSION_NAMES.get(p, p) for p in error.missing_permissions)
        return f"You need the {names} permission for this."
    if isinstance(error, NotAllowed):
        return error.user_message
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command works in a server channel, not in direct messages."
    if isinstance(error, app_commands.CheckFailure):
        return "You are not allowed to use this command here."
    return "Something went wrong. The details are in the bot's log."


async def reply_with_error(interaction: discord.Interaction, error: BaseException) -> None:
    message = user_message(error)
    original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
    if not isinstance(original, BotError | app_commands.CheckFailure):
        log.error(
            "command %s failed in guild=%s channel=%s",
            interaction.command.qualified_name if interaction.command else "?",
            interaction.guild_id,
            interaction.channel_id,
            exc_info=original,
        )
    await tell_privately(interaction, message)
