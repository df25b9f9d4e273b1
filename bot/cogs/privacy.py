"""What members take back is gone from the bot too: a deleted message's stored question (and
the answer to it), and a server's data once the bot is removed from it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot.cogs.maintenance import RetentionCog, purge_guild
from bot.knowledge.service import KnowledgeService
from bot.storage.guilds import GuildStore
from bot.storage.history import HistoryStore

if TYPE_CHECKING:
    from bot.client import OllamaBot

log = logging.getLogger(__name__)


class PrivacyCog(commands.Cog):
    """Listens on every shard (message deletes arrive on the guild's own shard)."""

    def __init__(
        self,
        bot: OllamaBot,
        history: HistoryStore,
        guilds: GuildStore,
        knowledge: KnowledgeService | None = None,
    ) -> None:
        self.bot = bot
        self.knowledge = knowledge
        self.history = history
        self.guilds = guilds
        self._pending: set[int] = set()
        """Guilds whose data waits for deletion (so that the GUILD_CREATE of each of the bot's
        guilds at start costs no query)."""

    async def cog_load(self) -> None:
        self._pending = await self.guilds.pending()

    @commands.Cog.listener()
    async def on_guild_remove(self, guild: discord.Guild) -> None:
        """Kicked, banned or the guild deleted (not an outage: that is `unavailable`)."""
        await self.guilds.mark_removed(guild.id, datetime.now(UTC))
        self._pending.add(guild.id)
        grace = self.bot.settings.guild_data_grace_days
        log.info("removed from guild=%s; its data goes in %g days", guild.id, grace)
        if grace > 0:
            return
        try:
            await purge_guild(self.bot, self.guilds, guild.id)
        except Exception:  # recorded: the housekeeping job tries again
            log.exception("could not delete the data of guild=%s yet", guild.id)
            retention = self.bot.get_cog("RetentionCog")
            if isinstance(retention, RetentionCog):  # in this process (shard 0's)
                retention.guilds_waiting = True

    @commands.Cog.listener()
    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self._back(guild)

    @commands.Cog.listener()
    async def on_guild_available(self, guild: discord.Guild) -> None:
        await self._back(guild)

    async def _back(self, guild: discord.Guild) -> None:
        if guild.id not in self._pending:
            return
        self._pending.discard(guild.id)
        if await self.guilds.cancel(guild.id):
            log.info("added back to guild=%s in time; its data is kept", guild.id)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        await self._forget(payload.channel_id, [payload.message_id])

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        await self._forget(payload.channel_id, sorted(payload.message_ids))

    async def _forget(self, channel_id: int, message_ids: list[int]) -> None:
        if self.knowledge is not None:
            try:
                gone = await self.knowledge.forget_messages(message_ids)
            except Exception:  # a listener has no one to tell
                log.exception("could not forget the knowledge of deleted messages")
            else:
                if gone:
                    log.info("deleted %d knowledge sources of deleted messages", gone)
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
