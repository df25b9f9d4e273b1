"""PersonaStore: each guild's personas (name, Modelfile, author, the Ollama model made from it)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.personas.persona import Persona
from bot.storage.models import PersonaRow

# Two shapes of a persona: the table row (PersonaRow) and the record the bot uses (Persona);
# the store converts between them here and nowhere else.
_COLUMNS = (
    "name",
    "ollama_model",
    "base_model",
    "modelfile",
    "system",
    "num_ctx",
    "author_id",
    "author_name",
    "think",
    "keep_alive",
)


class NameTaken(Exception):
    """The guild already has a persona of that name."""


def _persona(row: PersonaRow) -> Persona:
    return Persona(
        **{name: getattr(row, name) for name in _COLUMNS},
        guild_id=row.guild_id,
        created_at=row.created_at,
    )


class PersonaStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def add(self, persona: Persona) -> Persona:
        """Store a new persona; raises NameTaken when the guild already has the name."""
        if persona.guild_id is None or persona.author_id is None or persona.author_name is None:
            raise ValueError("a stored persona belongs to a guild and has an author")
        row = PersonaRow(
            guild_id=persona.guild_id, **{name: getattr(persona, name) for name in _COLUMNS}
        )
        try:
            async with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError as exc:
            raise NameTaken(persona.name) from exc
        return _persona(row)

    async def get(self, guild_id: int, name: str) -> Persona | None:
        async with self._sessions() as session:
            row = await session.scalar(
                select(PersonaRow).where(PersonaRow.guild_id == guild_id, PersonaRow.name == name)
            )
            return _persona(row) if row is not None else None

    async def all(self, guild_id: int) -> list[Persona]:
        """The guild's personas by name."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(PersonaRow).where(PersonaRow.guild_id == guild_id).order_by(PersonaRow.name)
            )
            return [_persona(row) for row in rows.all()]

    async def names(self, guild_id: int) -> list[str]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(PersonaRow.name)
                .where(PersonaRow.guild_id == guild_id)
                .order_by(PersonaRow.name)
            )
            return list(rows.all())

    async def models(self) -> list[tuple[int, str, str, str]]:
        """(guild id, name, base model, Ollama model) of every guild's personas."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(
                    PersonaRow.guild_id,
                    PersonaRow.name,
                    PersonaRow.base_model,
                    PersonaRow.ollama_model,
                ).order_by(PersonaRow.name)
            )
            return [(guild, name, base, model) for guild, name, base, model in rows.all()]

    async def delete(self, guild_id: int, name: str) -> bool:
        """Delete a persona; False when there was no such persona. (Its channels are cleared by
        `ChannelStore.clear_persona`, which also keeps that store's cache right.)"""
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(PersonaRow).where(PersonaRow.guild_id == guild_id, PersonaRow.name == name)
            )
            return bool(getattr(result, "rowcount", 0))
