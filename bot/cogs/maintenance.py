"""Background housekeeping: history retention, and the data of guilds that removed the bot."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from discord.ext import commands

from bot.storage.guilds import GuildStore
from bot.storage.history import HistoryStore

if TYPE_CHECKING:
    from bot.client import OllamaBot

log = logging.getLogger(__name__)


async def purge_guild(bot: OllamaBot, guilds: GuildStore, guild_id: int) -> int:
    """Delete everything the bot keeps of a guild: its personas' models on Ollama first (if
    that fails, nothing else is deleted and the next run tries again), then its history,
    personas and channel settings. Returns the turns deleted."""
    models = await bot.parts.personas.delete_guild_models(guild_id)
    turns = await guilds.forget(guild_id)
    bot.parts.channels.drop_cache()
    log.info(
        "deleted the data of guild=%s, which removed the bot: %d turns, %d persona models",
        guild_id,
        turns,
        models,
    )
    return turns


class RetentionCog(commands.Cog):
    """Every `retention_interval` seconds: prunes old turns when a retention limit is set, and
    deletes the data of guilds that removed the bot more than `guild_data_grace_days` ago (or
    whose deletion failed before, e.g. with Ollama down)."""

    def __init__(self, bot: OllamaBot, history: HistoryStore, guilds: GuildStore) -> None:
        self.bot = bot
        self.history = history
        self.guilds = guilds
        self.guilds_waiting = False
        """Whether a removed guild's data may wait for deletion (with no grace period, only
        after a deletion failed): the job then looks, else it asks the database nothing."""
        self._task: asyncio.Task[None] | None = None

    async def cog_load(self) -> None:
        self.guilds_waiting = bool(await self.guilds.pending())
        self._task = asyncio.create_task(self._loop(), name="history-retention")

    async def cog_unload(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def prune_once(self) -> int:
        settings = self.bot.settings
        if settings.retention_days is None and settings.retention_max_turns is None:
            return 0
        older_than = (
            datetime.now(UTC) - timedelta(days=settings.retention_days)
            if settings.retention_days is not None
            else None
        )
        deleted = await self.history.prune(
            older_than=older_than, keep_per_channel=settings.retention_max_turns
        )
        if deleted:
            log.info("retention: deleted %d old turns", deleted)
        return deleted

    async def purge_removed_guilds(self) -> int:
        grace_days = self.bot.settings.guild_data_grace_days
        if grace_days <= 0 and not self.guilds_waiting:
            return 0
        due = await self.guilds.due(datetime.now(UTC) - timedelta(days=grace_days))
        for guild_id in due:
            await purge_guild(self.bot, self.guilds, guild_id)
        self.guilds_waiting = bool(await self.guilds.pending()) if grace_days <= 0 else True
        return len(due)

    async def _loop(self) -> None:
        while True:
            for job in (self.prune_once, self.purge_removed_guilds):
                try:
                    await job()
                except Exception:  # a failed run is retried at the next interval
                    log.exception("housekeeping run failed")
            await asyncio.sleep(self.bot.settings.retention_interval)
