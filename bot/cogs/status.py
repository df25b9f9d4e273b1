"""/status: is everything the bot needs working?"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.logs import mask_secrets
from bot.ollama.protocol import OllamaHosts
from bot.ui.answers import answer_deferred
from bot.ui.checks import is_owner

if TYPE_CHECKING:
    from bot.client import OllamaBot


def uptime_text(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s"


async def ollama_status(pool: OllamaHosts, *, show_hosts: bool) -> str:
    """One host: whether it answers. Several: how many do, then a line for each. Where the
    hosts are (their URLs) is shown to the bot's owners only: to members an internal address
    is no use, and a map of the network for anyone who wants one."""
    versions = [(mask_secrets(host), version) for host, version in await pool.versions()]
    if not show_hosts:
        up = sum(1 for _, version in versions if version)
        if not pool.several:
            version = versions[0][1]
            return f"✅ reachable, version {version}" if version else "❌ not reachable"
        state = "✅ reachable" if up else "❌ not reachable"
        return f"{state} ({up} of {len(versions)} hosts answer)"
    if not pool.several:
        host, version = versions[0]
        return (
            f"✅ reachable at {host}, version {version}"
            if version
            else f"❌ not reachable at {host}"
        )
    busy = {mask_secrets(state.host): state.in_flight for state in pool.states()}
    lines = [f"{sum(1 for _, v in versions if v)} of {len(versions)} hosts reachable"]
    for host, version in versions:
        if version is None:
            lines.append(f"- ❌ {host}: not reachable")
        else:
            lines.append(f"- ✅ {host}: version {version}, generating {busy.get(host, 0)}")
    return "\n".join(lines)


class StatusCog(commands.Cog):
    def __init__(self, bot: OllamaBot) -> None:
        self.bot = bot

    @app_commands.command(name="status", description="Ollama, database, queue and uptime.")
    async def status(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        bot = self.bot
        ollama = await ollama_status(bot.parts.ollama, show_hosts=await is_owner(interaction))
        database = "✅ ok" if await bot.database_ok() else "❌ not answering"
        chat = bot.parts.chat
        lines = [
            "**Status**",
            f"Ollama: {ollama}",
            f"Database: {database}",
            f"Default model: `{bot.settings.chat_model}`",
            f"Generating now: {chat.active} · waiting: {chat.waiting}",
            f"Uptime: {uptime_text(time.monotonic() - bot.started_at)}",
        ]
        await answer_deferred(interaction, "\n".join(lines))
