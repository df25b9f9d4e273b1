"""The SQLite file's own thread (bot/storage/sqlite_thread.py): the one speed path the storage
keeps. It opens a second, synchronous engine on the async engine's URL; if SQLAlchemy ever maps
that URL to another file, another driver or drops the connection settings, these fail."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.storage import migrate
from bot.storage.engine import Database, create_engine
from bot.storage.models import Meta
from bot.storage.sqlite_thread import SqliteThreadDatabase, open_database

SETTINGS = ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")


def settings(conn: Connection) -> dict[str, object]:
    return {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar() for name in SETTINGS}


async def test_a_sqlite_file_gets_its_own_thread_and_the_rest_the_engine(tmp_path: Path) -> None:
    on_file = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    in_memory = create_async_engine("sqlite+aiosqlite://")
    try:
        threaded = open_database(on_file)
        assert isinstance(threaded, SqliteThreadDatabase)
        await threaded.close()
        plain = open_database(in_memory)
        assert type(plain) is Database
        await plain.close()
    finally:
        await on_file.dispose()
        await in_memory.dispose()


async def test_the_thread_and_the_engine_share_one_file_with_the_same_settings(
    engine: AsyncEngine,
) -> None:
    assert engine.dialect.name == "sqlite"
    threaded = open_database(engine)
    try:
        assert isinstance(threaded, SqliteThreadDatabase)
        ours = await threaded.read(settings)
        async with engine.connect() as conn:
            theirs = await conn.run_sync(settings)
        assert (
            ours
            == theirs
            == {
                "journal_mode": "wal",
                "synchronous": 1,  # NORMAL
                "busy_timeout": 5000,
                "foreign_keys": 1,
            }
        )
        driver = await threaded.read(lambda conn: type(conn.connection.dbapi_connection).__module__)
        assert driver == "sqlite3"  # the synchronous driver, not aiosqlite's adapter

        await threaded.write(lambda conn: conn.execute(insert(Meta).values(key="a", value="1")))
        async with engine.begin() as conn:
            assert (await conn.execute(select(Meta.value).where(Meta.key == "a"))).scalar() == "1"
            await conn.execute(insert(Meta).values(key="b", value="2"))
        seen = await threaded.read(
            lambda conn: conn.execute(text("SELECT value FROM meta WHERE key = 'b'")).scalar()
        )
        assert seen == "2"
    finally:
        await threaded.close()


async def test_a_migrated_file_reads_the_same_through_both(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'bot.db'}")
    try:
        await migrate.upgrade(engine)
        threaded = open_database(engine)
        try:
            revision = await threaded.read(
                lambda conn: conn.exec_driver_sql(
                    "SELECT version_num FROM alembic_version"
                ).scalar()
            )
            assert revision == await migrate.current_revision(engine)
        finally:
            await threaded.close()
    finally:
        await engine.dispose()
