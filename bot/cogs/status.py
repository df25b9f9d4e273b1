"""/status: is everything the bot needs working?"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import OllamaUnavailable
from bot.ui.targets import NO_PINGS

if TYPE_CHECKING:
    from bot.app import OllamaBot


def uptime_text(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s"


class StatusCog(commands.Cog):
    def __init__(self, bot: OllamaBot) -> None:
        self.bot = bot

    @app_commands.command(name="status", description="Ollama, database, queue and uptime.")
    async def status(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        bot = self.bot
        try:
            version = await bot.gateway.version()
            ollama = f"✅ reachable at {bot.gateway.host}, version {version}"
        except OllamaUnavailable:
            ollama = f"❌ not reachable at {bot.gateway.host}"
        database = "✅ ok" if await bot.database_ok() else "❌ not answering"
        chat = bot.chat
        lines = [
            "**Status**",
            f"Ollama: {ollama}",
            f"Database: {database}",
            f"Default model: `{bot.settings.chat_model}`",
            f"Generating now: {chat.active} · waiting: {chat.waiting}",
            f"Uptime: {uptime_text(time.monotonic() - bot.started_at)}",
        ]
        await interaction.followup.send("\n".join(lines), ephemeral=True, allowed_mentions=NO_PINGS)
