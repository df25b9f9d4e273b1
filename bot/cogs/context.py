"""/context: how this channel's context window is spent, privately."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.conversation.service import ChatService, ContextReport
from bot.storage.history import Author
from bot.ui.targets import NO_PINGS
from bot.ui.text import channel_id_of, shorten

if TYPE_CHECKING:
    from bot.client import OllamaBot

MESSAGE_CHARS = 2000


def render_context(report: ContextReport) -> str:
    """The window, whether Ollama runs the model with it, and how the next request spends it."""
    plan = report.plan
    name = f"`{plan.model}`"
    if report.persona:
        name = f"persona **{report.persona}** ({name})"
    lines = [f"**Context for {name}**: a window of {plan.window:,} tokens."]
    loaded = report.loaded
    if not report.known:
        lines.append("Ollama did not say whether the model is loaded.")
    elif loaded is None:
        lines.append("Not loaded now: the next message loads it with this window.")
    elif loaded.context_length == plan.window:
        lines.append(f"Loaded, and Ollama runs it with this window ({plan.window:,}).")
    elif loaded.context_length:
        lines.append(
            f"Loaded with a window of {loaded.context_length:,}: the next message reloads it "
            f"with {plan.window:,}."
        )
    else:
        lines.append("Loaded (Ollama does not report its window).")
    lines.append("")
    lines.append("**How the next message spends it** (estimated tokens):")
    lines.append(f"- system prompt / persona: {plan.system_tokens:,}")
    if plan.knowledge_tokens:
        lines.append(f"- knowledge and files: {plan.knowledge_tokens:,}")
    if plan.summary is not None:
        lines.append(
            f"- summary of {plan.summary.covered:,} earlier messages: {plan.summary_tokens:,}"
        )
    else:
        lines.append("- summary: none")
    lines.append(f"- history: {plan.turns:,} messages, {plan.turn_tokens:,}")
    if plan.images:
        lines.append(f"- images: {plan.images}, {plan.image_tokens:,}")
    lines.append(f"- left for your message and the reply: {plan.reply_room:,}")
    if plan.left_out:
        lines.append(f"-# {plan.left_out:,} older messages do not fit and are left out.")
    return shorten("\n".join(lines), MESSAGE_CHARS)


class ContextCog(commands.Cog):
    def __init__(self, bot: OllamaBot, chat: ChatService) -> None:
        self.bot = bot
        self.chat = chat

    @app_commands.command(name="context", description="How this channel's context is spent.")
    async def context_command(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)  # before any I/O
        user = interaction.user
        report = await self.chat.describe(
            channel_id_of(interaction), interaction.guild_id, Author(user.id, user.display_name)
        )
        # The deferred answer is edited (a follow-up filling it is deprecated by Discord).
        await interaction.edit_original_response(
            content=render_context(report), allowed_mentions=NO_PINGS
        )
