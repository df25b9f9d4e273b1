"""PersonaStore: each guild's personas (name, Modelfile, author, the Ollama model made from it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.storage.models import Persona


class NameTaken(Exception):
    """The guild already has a persona of that name."""


@dataclass(frozen=True, slots=True)
class StoredPersona:
    guild_id: int
    name: str
    ollama_model: str
    base_model: str
    modelfile: str
    system: str | None
    num_ctx: int | None
    author_id: int
    author_name: str
    created_at: datetime
    think: str | None = None
    keep_alive: str | None = None


@dataclass(frozen=True, slots=True)
class NewPersona:
    guild_id: int
    name: str
    ollama_model: str
    base_model: str
    modelfile: str
    system: str | None
    num_ctx: int | None
    author_id: int
    author_name: str
    think: str | None = None
    keep_alive: str | None = None


def _stored(row: Persona) -> StoredPersona:
    return StoredPersona(
        guild_id=row.guild_id,
        name=row.name,
        ollama_model=row.ollama_model,
        base_model=row.base_model,
        modelfile=row.modelfile,
        system=row.system,
        num_ctx=row.num_ctx,
        author_id=row.author_id,
        author_name=row.author_name,
        created_at=row.created_at,
        think=row.think,
        keep_alive=row.keep_alive,
    )


class PersonaStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def add(self, persona: NewPersona) -> StoredPersona:
        """Store a new persona; raises NameTaken when the guild already has the name."""
        row = Persona(
            guild_id=persona.guild_id,
            name=persona.name,
            ollama_model=persona.ollama_model,
            base_model=persona.base_model,
            modelfile=persona.modelfile,
            system=persona.system,
            num_ctx=persona.num_ctx,
            keep_alive=persona.keep_alive,
            author_id=persona.author_id,
            author_name=persona.author_name,
            think=persona.think,
        )
        try:
            async with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError as exc:
            raise NameTaken(persona.name) from exc
        return _stored(row)

    async def get(self, guild_id: int, name: str) -> StoredPersona | None:
        async with self._sessions() as session:
            row = await session.scalar(
                select(Persona).where(Persona.guild_id == guild_id, Persona.name == name)
            )
            return _stored(row) if row is not None else None

    async def all(self, guild_id: int) -> list[StoredPersona]:
        """The guild's personas by name."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(Persona).where(Persona.guild_id == guild_id).order_by(Persona.name)
            )
            return [_stored(row) for row in rows.all()]

    async def names(self, guild_id: int) -> list[str]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(Persona.name).where(Persona.guild_id == guild_id).order_by(Persona.name)
            )
            return list(rows.all())

    async def models(self) -> list[tuple[int, str, str, str]]:
        """(guild id, name, base model, Ollama model) of every guild's personas."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(
                    Persona.guild_id, Persona.name, Persona.base_model, Persona.ollama_model
                ).order_by(Persona.name)
            )
            return [(guild, name, base, model) for guild, name, base, model in rows.all()]

    async def delete(self, guild_id: int, name: str) -> bool:
        """Delete a persona; False when there was no such persona. (Its channels are cleared by
        `ChannelStore.clear_persona`, which also keeps that store's cache right.)"""
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(Persona).where(Persona.guild_id == guild_id, Persona.name == name)
            )
            return bool(getattr(result, "rowcount", 0))
