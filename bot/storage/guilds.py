"""GuildStore: a guild's data as a whole, for when the bot is removed from it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.storage.models import (
    Channel,
    GuildRemoval,
    KnowledgeChunk,
    KnowledgeSource,
    PersonaRow,
    Turn,
    TurnImage,
    Usage,
)


class GuildStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def mark_removed(self, guild_id: int, when: datetime) -> None:
        """Remember that the bot was removed from the guild (the first time counts)."""
        async with self._sessions.begin() as session:
            if await session.get(GuildRemoval, guild_id) is None:
                session.add(GuildRemoval(guild_id=guild_id, removed_at=when))

    async def cancel(self, guild_id: int) -> bool:
        """The bot is back in the guild: keep its data. True when a removal was pending."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(GuildRemoval).where(GuildRemoval.guild_id == guild_id)
            )
            return bool(getattr(result, "rowcount", 0))

    async def pending(self) -> set[int]:
        async with self._sessions() as session:
            return set((await session.scalars(select(GuildRemoval.guild_id))).all())

    async def due(self, removed_before: datetime) -> list[int]:
        """Guilds removed before `removed_before`, whose data is to go now."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(GuildRemoval.guild_id).where(GuildRemoval.removed_at <= removed_before)
            )
            return list(rows.all())

    async def forget(self, guild_id: int) -> int:
        """Delete the guild's turns (with their images), channel settings, personas, usage,
        knowledge and its removal record, in one transaction; only this guild's rows. Returns
        the turns deleted."""
        async with self._sessions.begin() as session:
            turns = select(Turn.id).where(Turn.guild_id == guild_id)
            await session.execute(delete(TurnImage).where(TurnImage.turn_id.in_(turns)))
            result = await session.execute(delete(Turn).where(Turn.guild_id == guild_id))
            await session.execute(delete(Channel).where(Channel.guild_id == guild_id))
            await session.execute(delete(PersonaRow).where(PersonaRow.guild_id == guild_id))
            await session.execute(delete(Usage).where(Usage.guild_id == guild_id))
            await session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.guild_id == guild_id))
            await session.execute(
                delete(KnowledgeSource).where(KnowledgeSource.guild_id == guild_id)
            )
            await session.execute(delete(GuildRemoval).where(GuildRemoval.guild_id == guild_id))
            return int(getattr(result, "rowcount", 0) or 0)
