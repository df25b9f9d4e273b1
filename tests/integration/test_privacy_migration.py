"""Migration 0005 (issue 13's privacy): indexes to find a deleted message's turn and a guild's
turns, and the table of guilds that removed the bot; up and down on both databases."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect

from bot.storage import migrate
from bot.storage.engine import create_engine
from tests.conftest import both_databases


@both_databases
async def test_migration_0005_goes_up_down_and_up_again(database_url: str) -> None:
    engine = create_engine(database_url)

    def shape(sync: object) -> tuple[set[str], set[str]]:
        found = inspect(sync)
        indexes = {index["name"] or "" for index in found.get_indexes("turns")}
        return set(found.get_table_names()), indexes

    def downgrade(connection: object) -> None:
        config = migrate.alembic_config(database_url)
        config.attributes["connection"] = connection
        command.downgrade(config, "0004")

    try:
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            tables, indexes = await conn.run_sync(shape)
        assert "guild_removals" in tables
        assert {"ix_turns_discord_message_id", "ix_turns_guild_id"} <= indexes

        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
        async with engine.connect() as conn:
            tables, indexes = await conn.run_sync(shape)
        assert "guild_removals" not in tables
        assert "ix_turns_discord_message_id" not in indexes

        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision(database_url)
    finally:
        await engine.dispose()
