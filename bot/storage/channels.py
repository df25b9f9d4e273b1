"""ChannelStore: per-channel settings (model, persona, auto-reply, threads the bot started)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
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


class ChannelStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def get(self, channel_id: int) -> ChannelConfig:
        """The channel's settings; the defaults when it has none stored."""
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
            )

    async def update(self, channel_id: int, guild_id: int | None, **values: Any) -> ChannelConfig:
        """Change some of a channel's settings (creating its row if needed)."""
        unknown = set(values) - {"model", "persona", "autoreply", "bot_thread", "parent_id"}
        if unknown:
            raise TypeError(f"unknown channel settings: {sorted(unknown)}")
        async with self._sessions.begin() as session:
            row = await session.get(Channel, channel_id)
            if row is None:
                row = Channel(channel_id=channel_id, guild_id=guild_id)
                session.add(row)
            for key, value in values.items():
                setattr(row, key, value)
        return await self.get(channel_id)
