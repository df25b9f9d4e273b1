"""Migration 0008 (issue 16's tools): a channel's tools setting and an assistant turn's tool
calls; up and down on both databases, and the stores reading and writing them."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect

from bot.storage import migrate
from bot.storage.channels import ChannelStore
from bot.storage.engine import Database, create_engine, session_factory
from bot.storage.history import Author, HistoryStore
from tests.conftest import both_databases


@both_databases
async def test_migration_0008_goes_up_down_and_up_again(database_url: str) -> None:
    engine = create_engine(database_url)

    def columns(sync: object) -> tuple[set[str], set[str]]:
        found = inspect(sync)
        channels = {c["name"] for c in found.get_columns("channels")}
        return channels, {c["name"] for c in found.get_columns("turns")}

    def downgrade(connection: object) -> None:
        config = migrate.alembic_config(database_url)
        config.attributes["connection"] = connection
        command.downgrade(config, "0007")

    try:
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            channels, turns = await conn.run_sync(columns)
        assert "tools" in channels and "tool_calls" in turns
        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
        async with engine.connect() as conn:
            channels, turns = await conn.run_sync(columns)
        assert "tools" not in channels and "tool_calls" not in turns
        await migrate.upgrade(engine)
        assert await migrate.is_current(engine)
    finally:
        await engine.dispose()


@both_databases
async def test_tool_calls_and_the_tools_setting_are_stored(database_url: str) -> None:
    engine = create_engine(database_url)
    database = Database(engine)
    try:
        await migrate.upgrade(engine)
        history = HistoryStore(database)
        channels = ChannelStore(session_factory(engine))
        assert (await channels.get(7)).tools is None
        assert (await channels.update(7, 1, tools=True)).tools is True
        assert (await channels.update(7, 1, tools=False)).tools is False
        _, reply = await history.begin_exchange(
            channel_id=7,
            guild_id=1,
            user=Author(2, "alice"),
            text="time?",
            assistant=Author(3, "bot"),
            model="llama3.2",
            request_id="r",
        )
        calls = [{"name": "current_time", "arguments": {}, "result": "noon", "ok": True}]
        await history.set_tool_calls(reply, calls)
        assert await history.tool_calls_of(7) == {reply: calls}
        assert await history.tool_calls_of(8) == {}
    finally:
        await database.close()
        await engine.dispose()
