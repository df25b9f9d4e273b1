"""/sentiment and the message menu "Analyze sentiment". The answer is private (ephemeral): rating
someone's message is for the one who asked, not for the whole channel."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import InputError
from bot.replies import ReplyPipeline, role_ids
from bot.sentiment.service import Sentiment, SentimentService
from bot.ui.targets import NO_PINGS
from bot.ui.text import one_line

if TYPE_CHECKING:
    from bot.client import OllamaBot

QUOTE_CHARS = 150
MARKS = {"positive": "🙂", "negative": "🙁", "neutral": "😐", "mixed": "🤔"}


def render(result: Sentiment, quoted: str) -> str:
    return (
        f"> {one_line(quoted, QUOTE_CHARS)}\n"
        f"{MARKS[result.label]} **{result.label}** · confidence {result.confidence:.2f}\n"
        f"{result.reason}\n"
        f"-# {result.model}"
    )


class SentimentCog(commands.Cog):
    def __init__(self, bot: OllamaBot, sentiment: SentimentService, replies: ReplyPipeline) -> None:
        self.bot = bot
        self.sentiment = sentiment
        self.replies = replies
        self._menu = app_commands.ContextMenu(
            name="Analyze sentiment", callback=self.sentiment_menu
        )

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self._menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self._menu.name, type=self._menu.type)

    @app_commands.command(
        name="sentiment", description="Is a text positive, negative, neutral or mixed?"
    )
    @app_commands.describe(text="The text to rate")
    async def sentiment_command(
        self, interaction: discord.Interaction, text: app_commands.Range[str, 1, 4000]
    ) -> None:
        await self._answer(interaction, text)

    async def sentiment_menu(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        if not message.content.strip():
            raise InputError("That message has no text to analyse.")
        await self._answer(interaction, message.content)

    async def _answer(self, interaction: discord.Interaction, text: str) -> None:
        # A generation like any other: the rate limit, the parallel cap and the waiting line.
        ticket = self.replies.admit_task(interaction.user.id, role_ids(interaction.user))
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
            async with self.replies.chat.slot(ticket):
                result = await self.sentiment.analyse(
                    text,
                    on_stats=lambda stats: self.replies.chat.count_usage(
                        interaction.guild_id, interaction.user.id, stats
                    ),
                )
        finally:
            self.replies.chat.release(ticket)
        await interaction.edit_original_response(
            content=render(result, text), allowed_mentions=NO_PINGS
        )
