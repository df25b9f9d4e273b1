"""/tools enabled:<bool>: whether models may call tools in this channel."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import InputError
from bot.storage.channels import ChannelStore
from bot.ui.checks import channel_managers
from bot.ui.targets import NO_PINGS

if TYPE_CHECKING:
    from bot.client import OllamaBot


class ToolsCog(commands.Cog):
    def __init__(self, bot: OllamaBot, channels: ChannelStore, tool_names: list[str]) -> None:
        self.bot = bot
        self.channels = channels
        self.tool_names = tool_names

    @app_commands.command(name="tools", description="Let models look things up with tools here.")
    @app_commands.describe(enabled="On: models that can use tools may call them in this channel.")
    @app_commands.default_permissions(manage_channels=True)
    @app_commands.guild_only()
    @channel_managers()
    async def tools(self, interaction: discord.Interaction, enabled: bool) -> None:
        channel_id = interaction.channel_id
        if channel_id is None:
            raise InputError("This works in a channel.")
        await self.channels.update(channel_id, interaction.guild_id, tools=enabled)
        if enabled:
            names = ", ".join(f"`{name}`" for name in self.tool_names)
            text = (
                f"Tools are **on** here: models that can use them may call {names} while they "
                "answer (reading only what the person asking may read)."
            )
        else:
            text = "Tools are **off** here: models answer from what they know."
        await interaction.response.send_message(text, allowed_mentions=NO_PINGS)
