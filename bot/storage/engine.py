"""Engine, session factory and Database (the history's unit-of-work runner); SQLite gets WAL and a
busy timeout on every connection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
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
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _undo_after(job: Future[T], undo: Callable[[Connection, T], None], conn: Connection) -> None:
    if job.exception() is None:
        undo(conn, job.result())


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
    return async_sessionmaker(engine, expire_on_commit=False)


class Database:
    """Runs storage work: plain functions over a SQLAlchemy Connection, one unit each.

    Through the async driver every DBAPI call (cursor, execute, fetch, close, commit, the
    rollback when a session ends) is its own hop to aiosqlite's thread and back under a greenlet:
    a chat turn made about thirty of them, most of its database CPU (bench/README.md). On a
    SQLite file, a unit of work therefore runs whole on one thread of its own, with the
    synchronous driver on its own connection to the file: one hop per unit. Other databases (and
    in-memory SQLite) run the same function on the async engine through `run_sync`.

    Units run one at a time in submission order, and a unit never waits on the event loop, so a
    write transaction holds SQLite's lock for microseconds. A unit that has started finishes even
    if its caller is cancelled; `write(undo=...)` can take such a write back."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sync: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        path = sqlite_path(engine.url.render_as_string(hide_password=False))
        if path is not None:
            # One connection, used by the one thread only (sqlite3 checks that).
            self._sync = sa.create_engine(
                engine.url.set(drivername="sqlite"), pool_size=1, max_overflow=0
            )
            event.listen(self._sync, "connect", _sqlite_pragmas)
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite")

    async def read(self, work: Callable[[Connection], T]) -> T:
        """`work`'s result; it may only read."""
        if self._thread is None:
            async with self.engine.connect() as conn:
                return await conn.run_sync(work)
        return await self._run(self._read_here, work, None)

    async def write(
        self,
        work: Callable[[Connection], T],
        *,
        undo: Callable[[Connection, T], None] | None = None,
    ) -> T:
        """`work`'s result, committed in one transaction (rolled back if it raises). With `undo`:
        if the caller is cancelled while `work` runs, `undo(connection, result)` follows it, in
        a transaction of its own, as if it had never been committed."""
        if self._thread is None:
            async with self.engine.begin() as conn:
                return await conn.run_sync(work)
        return await self._run(self._write_here, work, undo)

    async def close(self) -> None:
        """Finish the units asked for so far, then close the connection; no units after this."""
        if self._thread is None or self._sync is None:
            return
        await asyncio.wrap_future(self._thread.submit(self._sync.dispose))  # after the others
        self._thread.shutdown(wait=False)  # idle by now: the thread ends without a wait here

    async def _run(
        self,
        run: Callable[[Callable[[Connection], T]], T],
        work: Callable[[Connection], T],
        undo: Callable[[Connection, T], None] | None,
    ) -> T:
        assert self._thread is not None
        job = self._thread.submit(run, work)
        try:
            return await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            # A job that has not started is dropped; one that has, runs to its end. Its undo
            # is queued now, so that it runs before any unit asked for after this one.
            if not job.cancel() and undo is not None:
                self._thread.submit(self._write_here, partial(_undo_after, job, undo))
            raise

    def _read_here(self, work: Callable[[Connection], T]) -> T:
        assert self._sync is not None
        with self._sync.connect() as conn:
            return work(conn)

    def _write_here(self, work: Callable[[Connection], T]) -> T:
        assert self._sync is not None
        with self._sync.begin() as conn:
            return work(conn)
