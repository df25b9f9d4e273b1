"""/think level: a channel's thinking level (how much thinking models think before answering)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import BotError
from bot.replies import ReplyPipeline, request_for_interaction
from bot.storage.channels import ChannelStore
from bot.ui import checks
from bot.ui.answers import tell_privately
from bot.ui.targets import NO_PINGS

if TYPE_CHECKING:
    from bot.client import OllamaBot

ThinkChoice = Literal["default", "off", "on", "low", "medium", "high"]

MEANINGS = {
    "default": "back to the default (the persona's, or the bot's setting)",
    "off": "off: models answer without thinking first",
    "on": "on: thinking models think before they answer",
    "low": "low",
    "medium": "medium",
    "high": "high",
}


class ThinkCog(commands.Cog):
    def __init__(self, bot: OllamaBot, replies: ReplyPipeline, channels: ChannelStore) -> None:
        self.bot = bot
        self.replies = replies
        self.channels = channels

    @app_commands.command(name="think", description="How much the models think in this channel.")
    @app_commands.describe(
        level="default, off, on, or low/medium/high for models that reason in levels (gpt-oss)"
    )
    @checks.channel_managers()
    async def think(self, interaction: discord.Interaction, level: ThinkChoice) -> None:
        if interaction.channel_id is None:
            raise BotError("This command works in a channel.")
        # Acknowledged before asking Ollama which levels the model takes; the answer is public.
        await interaction.response.defer(thinking=True)
        if level != "default":
            try:
                await self.replies.chat.check_think(
                    request_for_interaction(interaction, "", think=level)
                )
            except BotError as exc:
                await tell_privately(interaction, exc.user_message)
                return
        await self.channels.update(
            interaction.channel_id,
            interaction.guild_id,
            think=None if level == "default" else level,
        )
        await interaction.edit_original_response(
            content=f"💭 {interaction.user.mention} set this channel's thinking to "
            f"{MEANINGS[level]}. `/chat think:` still picks another level for a single message.",
            allowed_mentions=NO_PINGS,
        )
