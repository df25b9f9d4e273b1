"""Engine, session factory and Database (the history's unit-of-work runner); SQLite gets WAL and a
busy timeout on every connection. A SQLite file's units run on a thread of their own
(bot/storage/sqlite_thread.py, `open_database` picks)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession

T = TypeVar("T")


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
    if is_sqlite(url):
        # One connection: SQLite runs one writer at a time anyway, and waiting in the pool's
        # queue costs nothing, while writers racing for SQLite's lock back off in sleeps of
        # up to 100 ms each (seen as seconds of delay with a hundred conversations at once).
        engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=60)
    else:
        engine = create_async_engine(url, pool_pre_ping=True)
    if is_sqlite(url):
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
    return engine


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer; NORMAL sync is durable at checkpoints and safe
    # against corruption on power loss in WAL mode.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


class Database:
    """Runs storage work: plain functions over a SQLAlchemy Connection, one unit (one
    transaction) each, on the async engine through `run_sync`: the same code for SQLite and
    PostgreSQL, and a function of Core statements rather than an ORM session (the ORM's unit of
    work cost more than the SQL, bench/README.md). A SQLite file uses `SqliteThreadDatabase`
    (bot/storage/sqlite_thread.py) instead, the same contract on a thread of its own.

    A write unit that has started finishes even if its caller is cancelled (a half-written
    exchange is never left to chance); `write(undo=...)` can take such a write back."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._running: set[asyncio.Task[Any]] = set()

    async def read(self, work: Callable[[Connection], T]) -> T:
        """`work`'s result; it may only read."""
        async with self.engine.connect() as conn:
            return await conn.run_sync(work)

    async def write(
        self,
        work: Callable[[Connection], T],
        *,
        undo: Callable[[Connection, T], None] | None = None,
    ) -> T:
        """`work`'s result, committed in one transaction (rolled back if it raises). A unit
        still waiting for a connection when its caller is cancelled is dropped; one that has
        begun runs to its end. With `undo`: if the caller is cancelled while `work` runs,
        `undo(connection, result)` follows it, in a transaction of its own, before the caller
        sees its cancellation, as if it had never been committed."""
        began = asyncio.Event()
        unit = self._keep(asyncio.ensure_future(self._transaction(work, began)))
        try:
            return await asyncio.shield(unit)
        except asyncio.CancelledError:
            if not began.is_set():
                unit.cancel()  # still waiting for the connection: nothing written
            elif undo is not None:
                await asyncio.shield(self._keep(asyncio.ensure_future(self._undo(unit, undo))))
            raise

    async def close(self) -> None:
        """Wait for the write units that callers gave up on but that still run."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def _keep(self, task: asyncio.Task[T]) -> asyncio.Task[T]:
        # A strong reference: the loop keeps only weak ones to tasks, and `close` waits on them.
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def _transaction(self, work: Callable[[Connection], T], began: asyncio.Event) -> T:
        async with self.engine.begin() as conn:
            began.set()
            return await conn.run_sync(work)

    async def _undo(self, unit: asyncio.Task[T], undo: Callable[[Connection, T], None]) -> None:
        try:
            done = await unit
        except BaseException:
            return  # rolled back (or never began): nothing to take back
        async with self.engine.begin() as conn:
            await conn.run_sync(undo, done)
