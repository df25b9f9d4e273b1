"""What only SQLite does: the file, WAL mode, the schema check at start."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.app import ConfigurationError, prepare_database
from bot.storage import migrate
from bot.storage.engine import create_engine, sqlite_path


async def test_the_database_file_is_created_in_wal_mode(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    path = sqlite_path(database_url)
    assert path is not None
    assert path.is_file()
    with sqlite3.connect(path) as conn:
        tables = {
            row[0] for row in conn.execute("select name from sqlite_master where type='table'")
        }
        mode = conn.execute("pragma journal_mode").fetchone()[0]
    assert {"turns", "meta", "channels", "alembic_version"} <= tables
    assert mode == "wal"


async def test_start_refuses_an_old_schema_when_told_not_to_migrate(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    try:
        with pytest.raises(ConfigurationError, match="db upgrade"):
            await prepare_database(engine, auto_migrate=False)
        await prepare_database(engine, auto_migrate=True)
        assert await migrate.is_current(engine)
    finally:
        await engine.dispose()
