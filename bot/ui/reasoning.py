"""Drawing a reply's reasoning: the thinking status while the model thinks, and the reasoning
itself, privately, when a member presses Show reasoning."""

from __future__ import annotations

import io

import discord

from bot.conversation.splitter import split_message
from bot.ui.targets import NO_PINGS

REASONING_MAX_MESSAGES = 3
"""Reasoning longer than this many messages is sent as a file (`reasoning.md`) instead."""
REASONING_FILE = "reasoning.md"


def thinking_status(seconds: float) -> str:
    """What a reply shows while its model thinks and no answer text has come yet."""
    return f"-# 💭 Thinking… {round(seconds)} s"


async def send_reasoning(interaction: discord.Interaction, text: str) -> None:
    """The reasoning, only to the member who asked: split like answers, or as a Markdown file
    when it would take more than REASONING_MAX_MESSAGES messages."""
    pieces = split_message(text)
    if len(pieces) > REASONING_MAX_MESSAGES:
        await interaction.response.send_message(
            f"💭 The model's reasoning ({len(text):,} characters) is in the file.",
            file=discord.File(io.BytesIO(text.encode()), REASONING_FILE),
            ephemeral=True,
            allowed_mentions=NO_PINGS,
        )
        return
    first, *more = pieces
    await interaction.response.send_message(first, ephemeral=True, allowed_mentions=NO_PINGS)
    for piece in more:
        await interaction.followup.send(piece, ephemeral=True, allowed_mentions=NO_PINGS)
