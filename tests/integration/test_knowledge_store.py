"""Knowledge's storage (migration 0009 and KnowledgeStore) on both databases, and `embed` through
the real ollama client against the Ollama double, for one host and for a pool."""

from __future__ import annotations

import numpy as np
import pytest
from alembic import command
from sqlalchemy import inspect

from bot.errors import EmbeddingModelMissing, EmbeddingUnsupported
from bot.knowledge.index import to_bytes
from bot.ollama.host import OllamaHost
from bot.ollama.pool import OllamaPool
from bot.storage import migrate
from bot.storage.engine import create_engine, session_factory
from bot.storage.guilds import GuildStore
from bot.storage.knowledge import KnowledgeStore, NewChunk, NewSource
from tests.conftest import both_databases
from tests.doubles.fake_ollama import FakeOllama


@both_databases
async def test_migration_0009_goes_up_down_and_up_again(database_url: str) -> None:
    engine = create_engine(database_url)

    def tables(sync: object) -> set[str]:
        return set(inspect(sync).get_table_names())

    def downgrade(connection: object) -> None:
        config = migrate.alembic_config(database_url)
        config.attributes["connection"] = connection
        command.downgrade(config, "0009")

    try:
        await migrate.upgrade(engine, "0010")
        async with engine.connect() as conn:
            assert {"knowledge_sources", "knowledge_chunks"} <= await conn.run_sync(tables)
        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
        async with engine.connect() as conn:
            assert not {"knowledge_sources", "knowledge_chunks"} & await conn.run_sync(tables)
        await migrate.upgrade(engine, "0010")
        assert await migrate.current_revision(engine) == "0010"
    finally:
        await engine.dispose()


def chunk(text: str, vector: list[float], **where: int) -> NewChunk:
    return NewChunk(text=text, tokens=len(text) // 4, vector=to_bytes(vector), **where)


@both_databases
async def test_knowledge_store_adds_lists_searches_and_removes_per_guild(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    try:
        await migrate.upgrade(engine)
        store = KnowledgeStore(session_factory(engine))
        handbook = await store.add(
            NewSource(guild_id=1, channel_id=None, name="handbook.md", kind="file", added_by=9),
            [chunk("one", [1, 0], line_start=1, line_end=2), chunk("two", [0, 2], page=3)],
            "nomic-embed-text",
        )
        message = await store.add(
            NewSource(
                guild_id=1,
                channel_id=50,
                name="#rules message",
                kind="message",
                added_by=9,
                message_id=777,
                message_channel_id=50,
            ),
            [chunk("be kind", [1, 1])],
            "nomic-embed-text",
        )
        other = await store.add(
            NewSource(guild_id=2, channel_id=None, name="other.md", kind="file", added_by=9),
            [chunk("elsewhere", [1, 0])],
            "nomic-embed-text",
        )
        assert (handbook.chunks, handbook.tokens) == (2, 0)
        assert (message.message_id, message.channel_id) == (777, 50)
        assert await store.guilds() == {1, 2}
        assert [s.name for s in await store.sources(1)] == ["#rules message", "handbook.md"]
        vectors = await store.vectors(1)
        assert [(v.channel_id, v.model) for v in vectors] == [
            (None, "nomic-embed-text"),
            (None, "nomic-embed-text"),
            (50, "nomic-embed-text"),
        ]
        assert np.frombuffer(vectors[1].vector, dtype=np.float32).tolist() == [0.0, 1.0]
        rows = await store.chunks([v.id for v in vectors])
        assert rows[vectors[1].id].page == 3 and rows[vectors[1].id].source.name == "handbook.md"

        # Re-embedding: the chunks of another model, then their new vectors.
        assert await store.stale_count("mxbai") == 4
        stale = await store.stale("mxbai", 10)
        await store.set_vectors("mxbai", [(stale[0][0], to_bytes([0, 1, 0]))])
        assert await store.stale_count("mxbai", guild_id=1) == 2

        assert await store.remove(2, handbook.id) is None  # another guild's: untouched
        assert (await store.remove(1, handbook.id)) is not None
        assert [v.channel_id for v in await store.vectors(1)] == [50]
        assert [s.name for s in await store.remove_messages([777, 778])] == ["#rules message"]
        assert await store.vectors(1) == [] and await store.sources(1) == []

        await GuildStore(session_factory(engine)).forget(2)  # the bot was removed from guild 2
        assert await store.sources(2) == [] and other.guild_id == 2
    finally:
        await engine.dispose()


async def test_embed_through_one_host_and_a_pool(fake_ollama: FakeOllama) -> None:
    host = OllamaHost(fake_ollama.url)
    pool = OllamaPool([fake_ollama.url])
    try:
        for gateway in (host, pool):
            embedded = await gateway.embed("nomic-embed-text", ["a cat", "a dog", "a cat"])
            assert embedded.model == "nomic-embed-text"
            assert len(embedded.vectors) == 3 and len(embedded.vectors[0]) == 768
            assert embedded.vectors[0] == embedded.vectors[2]
            with pytest.raises(EmbeddingModelMissing) as missing:
                await gateway.embed("mxbai-embed-large", ["x"])
            assert "`ollama pull mxbai-embed-large`" in missing.value.user_message
            with pytest.raises(EmbeddingUnsupported) as unsupported:
                await gateway.embed("llama3.2", ["x"])
            assert "cannot make embeddings" in unsupported.value.user_message
    finally:
        await host.close()
        await pool.close()
