"""PersonaStore on a real SQLite file migrated by Alembic, and migration 0003 both ways."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.personas.persona import Persona
from bot.storage import migrate
from bot.storage.channels import ChannelConfig, ChannelStore
from bot.storage.engine import create_engine, session_factory, sqlite_path
from bot.storage.history import Author, HistoryStore
from bot.storage.personas import NameTaken, PersonaStore


def persona(guild_id: int, name: str, author_id: int = 7) -> Persona:
    return Persona(
        guild_id=guild_id,
        name=name,
        ollama_model=f"persona-{guild_id}-{name}",
        base_model="llama3.2",
        modelfile="FROM llama3.2\nSYSTEM hi\n",
        system="hi",
        num_ctx=None,
        author_id=author_id,
        author_name="Alice",
    )


async def test_personas_are_unique_per_guild_not_across_guilds(engine: AsyncEngine) -> None:
    store = PersonaStore(session_factory(engine))
    first = await store.add(persona(1, "butler"))
    assert (first.guild_id, first.name, first.ollama_model) == (1, "butler", "persona-1-butler")
    assert first.created_at is not None
    other = await store.add(persona(2, "butler"))
    assert other.ollama_model == "persona-2-butler"
    with pytest.raises(NameTaken):
        await store.add(persona(1, "butler", author_id=8))
    found = await store.get(1, "butler")
    assert found is not None
    assert (found.ollama_model, found.author_id, found.modelfile) == (
        "persona-1-butler",
        7,
        "FROM llama3.2\nSYSTEM hi\n",
    )
    assert await store.get(3, "butler") is None
    await store.add(persona(1, "alpha"))
    assert await store.names(1) == ["alpha", "butler"]
    assert [p.name for p in await store.all(1)] == ["alpha", "butler"]


async def test_a_deleted_persona_is_taken_off_its_guilds_channels(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    store, channels = PersonaStore(sessions), ChannelStore(sessions)
    await store.add(persona(1, "butler"))
    await store.add(persona(2, "butler"))
    await channels.update(10, 1, persona="butler", model="qwen3")
    await channels.update(20, 2, persona="butler")
    assert await store.delete(1, "butler")
    assert not await store.delete(1, "butler")
    assert await channels.get(10) == ChannelConfig(10, model="qwen3", persona="butler")  # cached
    assert await channels.clear_persona(1, "butler") == 1
    kept = await channels.get(10)
    assert (kept.persona, kept.model) == (None, "qwen3")
    assert (await channels.get(20)).persona == "butler"  # the other guild's is untouched
    assert await store.get(2, "butler") is not None


async def test_a_reply_remembers_its_persona(store: HistoryStore) -> None:
    history = store
    await history.begin_exchange(
        channel_id=5,
        guild_id=1,
        user=Author(1, "alice"),
        text="hi",
        assistant=Author(2, "bot"),
        model="persona-1-butler",
        request_id="r1",
        persona="butler",
    )
    user, reply = await history.all(5)
    assert (user.persona, reply.persona) == (None, "butler")


async def test_migration_0003_upgrades_and_downgrades(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await migrate.upgrade(engine, "0002")
        await migrate.upgrade(engine)
        path = sqlite_path(database_url)
        assert path is not None
        assert {"persona"} <= _columns(path, "channels")
        assert {"persona"} <= _columns(path, "turns")
        assert {"guild_id", "name", "ollama_model", "modelfile", "author_id"} <= _columns(
            path, "personas"
        )
        from alembic import command

        def downgrade(connection: object) -> None:
            config = migrate.alembic_config(database_url)
            config.attributes["connection"] = connection
            command.downgrade(config, "0002")

        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
        assert "persona" not in _columns(path, "channels")
        assert not _columns(path, "personas")
    finally:
        await engine.dispose()


def _columns(path: Path, table: str) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
