"""Migration 0009 (issue 19): the usage table and a persona's keep_alive, up and down on both
databases; and the usage store's one-row-a-day upsert on both."""

from __future__ import annotations

from datetime import date

from alembic import command
from sqlalchemy import inspect

from bot.storage import migrate
from bot.storage.engine import Database, create_engine, session_factory
from bot.storage.guilds import GuildStore
from bot.storage.usage import Spent, UsageStore
from tests.conftest import both_databases


@both_databases
async def test_migration_0009_goes_up_down_and_up_again(database_url: str) -> None:
    engine = create_engine(database_url)

    def shape(sync: object) -> tuple[set[str], set[str]]:
        found = inspect(sync)
        columns = {column["name"] for column in found.get_columns("personas")}
        return set(found.get_table_names()), columns

    def downgrade(connection: object) -> None:
        config = migrate.alembic_config(database_url)
        config.attributes["connection"] = connection
        command.downgrade(config, "0008")

    try:
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            tables, columns = await conn.run_sync(shape)
        assert "usage" in tables and "keep_alive" in columns

        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
        async with engine.connect() as conn:
            tables, columns = await conn.run_sync(shape)
        assert "usage" not in tables and "keep_alive" not in columns

        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision(database_url)
    finally:
        await engine.dispose()


@both_databases
async def test_usage_adds_up_in_one_row_per_member_model_and_day(database_url: str) -> None:
    engine = create_engine(database_url)
    database = Database(engine)
    try:
        await migrate.upgrade(engine)
        store = UsageStore(database)
        today, yesterday = date(2026, 12, 6), date(2026, 12, 5)
        for spent in (
            Spent(today, 10, 1, "qwen3", 100, 20, 2_000_000_000),
            Spent(today, 10, 1, "qwen3", 50, 5, 1_000_000_000),
            Spent(today, 10, 1, "llama3.2", 7, 3, 500_000_000),
            Spent(today, 10, 2, "qwen3", 1, 1, 1),
            Spent(today, None, 1, "qwen3", 1000, 0, 0),  # a direct message
            Spent(yesterday, 10, 1, "qwen3", 9, 9, 9),
        ):
            await store.record(spent)
        models = await store.by_model_for_user(1, today)
        assert [(t.key, t.generations, t.prompt_tokens, t.completion_tokens) for t in models] == [
            ("qwen3", 3, 1150, 25),
            ("llama3.2", 1, 7, 3),
        ]
        assert models[0].total_ns == 3_000_000_000
        users = await store.by_user_for_guild(10, yesterday)
        assert [(t.key, t.tokens) for t in users] == [(1, 203), (2, 2)]
        assert await store.tokens_on(today) == {1: 1185, 2: 2}

        await GuildStore(session_factory(engine)).forget(10)  # the bot left guild 10
        assert await store.by_user_for_guild(10, yesterday) == []
        assert await store.tokens_on(today) == {1: 1000}  # the direct message stays
    finally:
        await database.close()
        await engine.dispose()
