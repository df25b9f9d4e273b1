"""Background housekeeping: history retention."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from discord.ext import commands

from bot.storage.history import HistoryStore

if TYPE_CHECKING:
    from bot.client import OllamaBot

log = logging.getLogger(__name__)


class RetentionCog(commands.Cog):
    """Prunes old turns every `retention_interval` seconds when a retention limit is set."""

    def __init__(self, bot: OllamaBot, history: HistoryStore) -> None:
        self.bot = bot
        self.history = history
        self._task: asyncio.Task[None] | None = None

    async def cog_load(self) -> None:
        settings = self.bot.settings
        if settings.retention_days is not None or settings.retention_max_turns is not None:
            self._task = asyncio.create_task(self._loop(), name="history-retention")

    async def cog_unload(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def prune_once(self) -> int:
        settings = self.bot.settings
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

    async def _loop(self) -> None:
        while True:
            try:
                await self.prune_once()
            except Exception:  # a failed run is retried at the next interval
                log.exception("retention run failed")
            await asyncio.sleep(self.bot.settings.retention_interval)
