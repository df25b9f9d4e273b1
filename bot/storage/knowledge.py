"""KnowledgeStore: a guild's knowledge sources and their chunks, with the chunks' embeddings
(float32 bytes, L2-normalised, the model recorded per chunk)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.storage.models import KnowledgeChunk, KnowledgeSource


@dataclass(frozen=True, slots=True)
class NewChunk:
    text: str
    tokens: int
    vector: bytes
    page: int | None = None
    line_start: int | None = None
    line_end: int | None = None
    heading: str | None = None


@dataclass(frozen=True, slots=True)
class NewSource:
    guild_id: int
    channel_id: int | None
    name: str
    kind: str
    added_by: int
    message_id: int | None = None
    message_channel_id: int | None = None


@dataclass(frozen=True, slots=True)
class SourceRow:
    id: int
    guild_id: int
    channel_id: int | None
    name: str
    kind: str
    message_id: int | None
    message_channel_id: int | None
    chunks: int
    tokens: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class VectorRow:
    id: int
    channel_id: int | None
    model: str
    vector: bytes


@dataclass(frozen=True, slots=True)
class ChunkRow:
    id: int
    source: SourceRow
    text: str
    page: int | None
    line_start: int | None
    line_end: int | None
    heading: str | None
    tokens: int


def _source(row: KnowledgeSource) -> SourceRow:
    return SourceRow(
        id=row.id,
        guild_id=row.guild_id,
        channel_id=row.channel_id,
        name=row.name,
        kind=row.kind,
        message_id=row.message_id,
        message_channel_id=row.message_channel_id,
        chunks=row.chunks,
        tokens=row.tokens,
        created_at=row.created_at,
    )


class KnowledgeStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def add(self, source: NewSource, chunks: Sequence[NewChunk], model: str) -> SourceRow:
        """Store a source and all its chunks in one transaction: a half-stored file is never
        searched."""
        async with self._sessions.begin() as session:
            row = KnowledgeSource(
                guild_id=source.guild_id,
                channel_id=source.channel_id,
                name=source.name,
                kind=source.kind,
                message_id=source.message_id,
                message_channel_id=source.message_channel_id,
                added_by=source.added_by,
                chunks=len(chunks),
                tokens=sum(c.tokens for c in chunks),
            )
            session.add(row)
            await session.flush()
            session.add_all(
                KnowledgeChunk(
                    source_id=row.id,
                    guild_id=source.guild_id,
                    channel_id=source.channel_id,
                    position=position,
                    text=chunk.text,
                    page=chunk.page,
                    line_start=chunk.line_start,
                    line_end=chunk.line_end,
                    heading=chunk.heading,
                    tokens=chunk.tokens,
                    model=model,
                    vector=chunk.vector,
                )
                for position, chunk in enumerate(chunks)
            )
            await session.flush()
            await session.refresh(row)
            return _source(row)

    async def sources(self, guild_id: int) -> list[SourceRow]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(KnowledgeSource)
                .where(KnowledgeSource.guild_id == guild_id)
                .order_by(KnowledgeSource.created_at.desc(), KnowledgeSource.id.desc())
            )
            return [_source(r) for r in rows.all()]

    async def remove(self, guild_id: int, source_id: int) -> SourceRow | None:
        """Delete a source of this guild (only this guild's) with its chunks."""
        async with self._sessions.begin() as session:
            row = await session.get(KnowledgeSource, source_id)
            if row is None or row.guild_id != guild_id:
                return None
            gone = _source(row)
            await session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.source_id == row.id))
            await session.delete(row)
            return gone

    async def remove_messages(self, message_ids: Sequence[int]) -> list[SourceRow]:
        """Delete the sources made from these Discord messages; returns what was deleted."""
        if not message_ids:
            return []
        async with self._sessions.begin() as session:
            rows = (
                await session.scalars(
                    select(KnowledgeSource).where(KnowledgeSource.message_id.in_(message_ids))
                )
            ).all()
            if not rows:
                return []
            ids = [r.id for r in rows]
            gone = [_source(r) for r in rows]
            await session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.source_id.in_(ids)))
            await session.execute(delete(KnowledgeSource).where(KnowledgeSource.id.in_(ids)))
            return gone

    async def guilds(self) -> set[int]:
        """The guilds that have any knowledge (read once at start: a turn elsewhere costs
        nothing)."""
        async with self._sessions() as session:
            rows = await session.scalars(select(KnowledgeSource.guild_id).distinct())
            return set(rows.all())

    async def vectors(self, guild_id: int) -> list[VectorRow]:
        async with self._sessions() as session:
            rows = await session.execute(
                select(
                    KnowledgeChunk.id,
                    KnowledgeChunk.channel_id,
                    KnowledgeChunk.model,
                    KnowledgeChunk.vector,
                )
                .where(KnowledgeChunk.guild_id == guild_id)
                .order_by(KnowledgeChunk.id)
            )
            return [VectorRow(r[0], r[1], r[2], r[3]) for r in rows.all()]

    async def chunks(self, ids: Sequence[int]) -> dict[int, ChunkRow]:
        if not ids:
            return {}
        async with self._sessions() as session:
            rows = await session.execute(
                select(KnowledgeChunk, KnowledgeSource)
                .join(KnowledgeSource, KnowledgeSource.id == KnowledgeChunk.source_id)
                .where(KnowledgeChunk.id.in_(ids))
            )
            return {
                chunk.id: ChunkRow(
                    id=chunk.id,
                    source=_source(source),
                    text=chunk.text,
                    page=chunk.page,
                    line_start=chunk.line_start,
                    line_end=chunk.line_end,
                    heading=chunk.heading,
                    tokens=chunk.tokens,
                )
                for chunk, source in rows.all()
            }

    async def stale(
        self, model: str, limit: int | None, *, guild_id: int | None = None
    ) -> list[tuple[int, int, str]]:
        """(chunk id, guild id, text) of chunks embedded by another model than `model` (of
        one guild, if given), at most `limit` (None: all)."""
        query = (
            select(KnowledgeChunk.id, KnowledgeChunk.guild_id, KnowledgeChunk.text)
            .where(KnowledgeChunk.model != model)
            .order_by(KnowledgeChunk.guild_id, KnowledgeChunk.id)
        )
        if guild_id is not None:
            query = query.where(KnowledgeChunk.guild_id == guild_id)
        if limit is not None:
            query = query.limit(limit)
        async with self._sessions() as session:
            return [(r[0], r[1], r[2]) for r in (await session.execute(query)).all()]

    async def stale_count(self, model: str, guild_id: int | None = None) -> int:
        async with self._sessions() as session:
            query = select(func.count()).where(KnowledgeChunk.model != model)
            if guild_id is not None:
                query = query.where(KnowledgeChunk.guild_id == guild_id)
            return int(await session.scalar(query) or 0)

    async def set_vectors(self, model: str, vectors: Sequence[tuple[int, bytes]]) -> None:
        async with self._sessions.begin() as session:
            for chunk_id, vector in vectors:
                await session.execute(
                    update(KnowledgeChunk)
                    .where(KnowledgeChunk.id == chunk_id)
                    .values(model=model, vector=vector)
                )
