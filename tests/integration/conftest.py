"""Fixtures for the storage tests: a database migrated by Alembic, and the history store on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage import migrate
from bot.storage.engine import Database, create_engine
from bot.storage.history import HistoryStore
from bot.storage.sqlite_thread import open_database


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await migrate.upgrade(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def database(engine: AsyncEngine) -> AsyncIterator[Database]:
    database = open_database(engine)
    yield database
    await database.close()


@pytest.fixture
def store(database: Database) -> HistoryStore:
    return HistoryStore(database)
