"""Migration 0007 (issue 14's thinking): a reply's reasoning, a channel's and a persona's
thinking level; up and down on both databases, keeping the rows."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from bot.storage import migrate
from bot.storage.engine import create_engine
from tests.conftest import both_databases


@both_databases
async def test_migration_0007_goes_up_down_and_up_again(database_url: str) -> None:
    engine = create_engine(database_url)

    def columns(sync: object) -> dict[str, set[str]]:
        found = inspect(sync)
        return {t: {c["name"] for c in found.get_columns(t)} for t in ("turns", "channels")}

    def downgrade(connection: object) -> None:
        config = migrate.alembic_config(database_url)
        config.attributes["connection"] = connection
        command.downgrade(config, "0006")

    try:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            found = await conn.run_sync(columns)
            assert "reasoning" in found["turns"] and "think" in found["channels"]
            await conn.execute(
                text(
                    "INSERT INTO channels (channel_id, think, autoreply, bot_thread) "
                    "VALUES (7, 'high', false, false)"
                )
            )
        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
        async with engine.connect() as conn:
            found = await conn.run_sync(columns)
            assert "reasoning" not in found["turns"] and "think" not in found["channels"]
            kept = await conn.scalar(text("SELECT count(*) FROM channels WHERE channel_id = 7"))
            assert kept == 1
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision(database_url)
    finally:
        await engine.dispose()
