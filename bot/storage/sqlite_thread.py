"""The one speed path of the storage: a SQLite file's units of work on a thread of their own.

Why it exists. Through the async driver (aiosqlite under SQLAlchemy's greenlet bridge) every
DBAPI call of a unit (cursor, execute, fetch, close, commit, the rollback that ends a
connection's use) is its own hop to aiosqlite's thread and back: about thirty a chat turn. Here a
unit runs whole on one thread with the synchronous `sqlite3` driver on its own connection to the
same file: one hop a unit. Measured when it was questioned (issue 17, bench/README.md, A/B
interleaved on one machine, three rounds each of `python -m bench --only turns`): without it the
bot's CPU per chat turn rose from 2.4-3.1 to 4.5-4.9 ms with 32 turns in flight and from 3.0-3.8
to 4.1-4.2 ms one at a time, well past the 10% this path must be worth to stay.

It uses public APIs only (`sqlalchemy.create_engine` on the same URL with the plain `sqlite`
driver, a `ThreadPoolExecutor`); tests/integration/test_sqlite_thread.py checks that both
connections see the same file with the same settings, so a change underneath fails there.

Everything else (PostgreSQL, in-memory SQLite) uses `Database`, the same units on the async
engine; `open_database` picks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.engine import Database, sqlite_path, sqlite_pragmas

T = TypeVar("T")


def open_database(engine: AsyncEngine) -> Database:
    """The units-of-work runner for `engine`: this thread for a SQLite file, else the engine."""
    if sqlite_path(engine.url.render_as_string(hide_password=False)) is not None:
        return SqliteThreadDatabase(engine)
    return Database(engine)


class SqliteThreadDatabase(Database):
    """`Database` for a SQLite file, its units run on one thread with the synchronous driver.

    Units run one at a time in submission order, and a unit never waits on the event loop, so a
    write transaction holds SQLite's lock for microseconds. As with `Database`, a unit still
    waiting when its caller is cancelled is dropped, one that has started finishes, and
    `write(undo=...)` takes such a write back before any unit asked for after it."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        # One connection, used by the one thread only (sqlite3 checks that).
        self._sync = sa.create_engine(
            engine.url.set(drivername="sqlite"), pool_size=1, max_overflow=0
        )
        event.listen(self._sync, "connect", sqlite_pragmas)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite")

    async def read(self, work: Callable[[Connection], T]) -> T:
        return await self._run(self._read_here, work, None)

    async def write(
        self,
        work: Callable[[Connection], T],
        *,
        undo: Callable[[Connection, T], None] | None = None,
    ) -> T:
        return await self._run(self._write_here, work, undo)

    async def close(self) -> None:
        """Finish the units asked for so far, then close the connection; no units after this."""
        await asyncio.wrap_future(self._thread.submit(self._sync.dispose))  # after the others
        self._thread.shutdown(wait=False)  # idle by now: the thread ends without a wait here

    async def _run(
        self,
        run: Callable[[Callable[[Connection], T]], T],
        work: Callable[[Connection], T],
        undo: Callable[[Connection, T], None] | None,
    ) -> T:
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
        with self._sync.connect() as conn:
            return work(conn)

    def _write_here(self, work: Callable[[Connection], T]) -> T:
        with self._sync.begin() as conn:
            return work(conn)


def _undo_after(job: Future[T], undo: Callable[[Connection, T], None], conn: Connection) -> None:
    if job.exception() is None:
        undo(conn, job.result())
