"""ChannelStore: per-channel settings (model, persona, auto-reply, threads the bot started)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.storage.models import Channel


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    channel_id: int
    model: str | None = None
    persona: str | None = None
    autoreply: bool = False
    bot_thread: bool = False
    parent_id: int | None = None
    think: str | None = None
    """The channel's thinking level (`/think`); None: not set here."""
    tools: bool | None = None
    """Whether models may call tools here; None: the bot's default."""


CACHE_SIZE = 10_000


class ChannelStore:
    """Channel settings, read through a bounded cache: with auto-reply, the bot consults them for
    every message it sees. Each channel belongs to one guild, and each guild to one bot process
    (shard), so the process that changes a setting is the one that reads it."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._cache: dict[int, ChannelConfig] = {}

    async def get(self, channel_id: int) -> ChannelConfig:
        """The channel's settings; the defaults when it has none stored."""
        cached = self._cache.get(channel_id)
        if cached is not None:
            return cached
        config = await self._load(channel_id)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))  # the oldest entry
        self._cache[channel_id] = config
        return config

    async def _load(self, channel_id: int) -> ChannelConfig:
        async with self._sessions() as session:
            row = await session.scalar(select(Channel).where(Channel.channel_id == channel_id))
            if row is None:
                return ChannelConfig(channel_id)
            return ChannelConfig(
                channel_id=row.channel_id,
                model=row.model,
                persona=row.persona,
                autoreply=row.autoreply,
                bot_thread=row.bot_thread,
                parent_id=row.parent_id,
                think=row.think,
                tools=row.tools,
            )

    def drop_cache(self) -> None:
        """Forget every cached setting (a guild's rows were deleted behind this store)."""
        self._cache.clear()

    async def models_in_use(self) -> dict[str, int]:
        """Every model some channel chose with `/model use`, with how many channels did."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(Channel.model, func.count())
                .where(Channel.model.is_not(None))
                .group_by(Channel.model)
            )
            return {str(model): int(count) for model, count in rows.all()}

    async def clear_persona(self, guild_id: int, persona: str) -> int:
        """Take a (deleted) persona off every channel of its guild: they answer with their
        model again. Returns how many channels had it."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(Channel)
                .where(Channel.guild_id == guild_id, Channel.persona == persona)
                .values(persona=None)
            )
        for channel_id, config in list(self._cache.items()):
            if config.persona == persona:
                del self._cache[channel_id]
        return int(getattr(result, "rowcount", 0) or 0)

    async def update(self, channel_id: int, guild_id: int | None, **values: Any) -> ChannelConfig:
        """Change some of a channel's settings (creating its row if needed)."""
        unknown = set(values) - {
            "model",
            "persona",
            "autoreply",
            "bot_thread",
            "parent_id",
            "think",
            "tools",
        }
        if unknown:
            raise TypeError(f"unknown channel settings: {sorted(unknown)}")
        async with self._sessions.begin() as session:
            row = await session.get(Channel, channel_id)
            if row is None:
                row = Channel(channel_id=channel_id, guild_id=guild_id)
                session.add(row)
            for key, value in values.items():
                setattr(row, key, value)
        self._cache.pop(channel_id, None)
        return await self.get(channel_id)
