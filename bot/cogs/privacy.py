"""What members take back is gone from the bot too: a deleted message's stored question (and
the answer to it), and a server's data once the bot is removed from it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot.storage.history import HistoryStore

if TYPE_CHECKING:
    from bot.app import OllamaBot

log = logging.getLogger(__name__)


class PrivacyCog(commands.Cog):
    """Listens on every shard (message deletes arrive on the guild's own shard)."""

    def __init__(self, bot: OllamaBot, history: HistoryStore) -> None:
        self.bot = bot
        self.history = history

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        await self._forget(payload.channel_id, [payload.message_id])

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        await self._forget(payload.channel_id, sorted(payload.message_ids))

    async def _forget(self, channel_id: int, message_ids: list[int]) -> None:
        try:
            forgotten = await self.history.forget_messages(channel_id, message_ids)
        except Exception:  # a listener has no one to tell; the next delete tries again
            log.exception("could not forget deleted messages in channel=%s", channel_id)
            return
        if forgotten:
            log.info(
                "deleted %d stored turns of %d deleted messages in channel=%s",
                forgotten,
                len(message_ids),
                channel_id,
            )
