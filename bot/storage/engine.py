"""Engine and session factory; SQLite gets WAL and a busy timeout on every connection, and the
transactions of one process write one at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL, or None for in-memory and other databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def create_engine(url: str) -> AsyncEngine:
    """An async engine for `url`; for SQLite the data folder is created if missing."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, pool_pre_ping=not is_sqlite(url))
    if is_sqlite(url):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer; NORMAL sync is durable at checkpoints and safe
    # against corruption on power loss in WAL mode.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for the stores: `sessions()` to read, `sessions.begin()` for a transaction that
    writes (committed at the end of the block)."""
    if engine.dialect.name == "sqlite":
        return _OneWriterAtATime(engine, expire_on_commit=False)
    return async_sessionmaker(engine, expire_on_commit=False)


class _OneWriterAtATime(async_sessionmaker[AsyncSession]):
    """SQLite runs one writing transaction at a time. A writer that finds the database locked
    sleeps in growing steps (up to 100 ms) and, after `busy_timeout`, fails with "database is
    locked"; since an async transaction keeps the lock across awaits, a busy event loop made
    both happen under load. Writers of this process therefore wait their turn here, in order,
    and SQLite never sees two of them at once (readers are not held up: WAL)."""

    def __init__(self, engine: AsyncEngine, **options: Any) -> None:
        super().__init__(engine, **options)
        self._writing = asyncio.Lock()

    def begin(self) -> AbstractAsyncContextManager[AsyncSession]:  # type: ignore[override]
        return self._serialized()

    @asynccontextmanager
    async def _serialized(self) -> AsyncIterator[AsyncSession]:
        async with self._writing, super().begin() as session:
            yield session
