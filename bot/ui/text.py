"""Small text helpers for what the bot writes in Discord, and reading ids off Discord objects:
one place for each, instead of a copy in every cog."""

from __future__ import annotations

import discord

from bot.errors import BotError

ECHO_CHARS = 150


def shorten(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + "…"


def one_line(text: str, limit: int) -> str:
    """`text` with its whitespace runs (newlines included) made single spaces, then shortened."""
    return shorten(" ".join(text.split()), limit)


def echo(text: str) -> str:
    """The question, quoted on top of a slash-command answer (which Discord does not show)."""
    return f"> {one_line(text, ECHO_CHARS)}\n"


def channel_id_of(interaction: discord.Interaction) -> int:
    """The channel an interaction happened in; a BotError for the rare ones outside channels."""
    if interaction.channel_id is None:
        raise BotError("This command works in a channel.")
    return interaction.channel_id
