"""Database: the history's units of work, each one transaction, also when callers give up.

Each test runs on both runners: the SQLite file's own thread (what the bot uses on a file) and
the async engine (what it uses on PostgreSQL), on the same SQLite file."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete, insert
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.engine import Database
from bot.storage.history import Author, HistoryStore
from bot.storage.models import Meta
from bot.storage.sqlite_thread import SqliteThreadDatabase, open_database
from tests.conftest import both_databases

ALICE = Author(11, "alice")
BOT = Author(99, "ollama-bot")


@pytest.fixture(params=["own thread", "async engine"])
async def database(request: pytest.FixtureRequest, engine: AsyncEngine) -> AsyncIterator[Database]:
    database = open_database(engine) if request.param == "own thread" else Database(engine)
    if request.param == "own thread" and engine.dialect.name == "sqlite":
        assert isinstance(database, SqliteThreadDatabase)
    yield database
    await database.close()


class Blocker:
    """A unit of work that holds its connection until released: it runs a SQL function that
    waits in the driver's thread (aiosqlite's), so the event loop carries on meanwhile."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def _hold(self) -> int:
        self.started.set()
        return int(self.release.wait(10))

    def __call__(self, conn: Connection) -> None:
        driver = conn.connection.dbapi_connection
        assert driver is not None
        driver.create_function("hold", 0, self._hold)  # type: ignore[attr-defined]
        assert conn.exec_driver_sql("SELECT hold()").scalar() == 1

    async def wait_started(self) -> None:
        assert await asyncio.to_thread(self.started.wait, 10)


async def ask(store: HistoryStore, channel: int) -> tuple[int, int]:
    return await store.begin_exchange(
        channel_id=channel,
        guild_id=1,
        user=ALICE,
        text="question",
        assistant=BOT,
        model="m",
        request_id="r",
    )


@both_databases
async def test_a_unit_that_fails_leaves_nothing_written(
    database: Database, store: HistoryStore
) -> None:
    def work(conn: Connection) -> None:
        conn.execute(insert(Meta).values(key="k", value="v"))
        raise RuntimeError("half way")

    with pytest.raises(RuntimeError, match="half way"):
        await database.write(work)
    assert await store.get_meta("k") is None


async def test_an_exchange_cancelled_before_it_ran_stores_nothing(
    database: Database, store: HistoryStore
) -> None:
    blocker = Blocker()
    busy = asyncio.create_task(database.read(blocker))
    await blocker.wait_started()
    asking = asyncio.create_task(ask(store, 5))
    await asyncio.sleep(0.05)  # queued behind the blocker
    asking.cancel()
    blocker.release.set()
    await busy
    with pytest.raises(asyncio.CancelledError):
        await asking
    assert await store.all(5) == []
    await ask(store, 5)  # and the store carries on
    assert len(await store.all(5)) == 2


async def test_a_write_cancelled_while_it_ran_is_undone(
    database: Database, store: HistoryStore
) -> None:
    blocker = Blocker()

    def work(conn: Connection) -> str:
        conn.execute(insert(Meta).values(key="k", value="v"))
        blocker(conn)
        return "k"

    def undo(conn: Connection, key: str) -> None:
        conn.execute(delete(Meta).where(Meta.key == key))

    writing = asyncio.create_task(database.write(work, undo=undo))
    await blocker.wait_started()
    writing.cancel()
    await asyncio.sleep(0.05)
    blocker.release.set()
    with pytest.raises(asyncio.CancelledError):
        await writing
    assert await store.get_meta("k") is None  # units run in order: the undo ran first
    await store.set_meta("k", "kept")
    assert await store.get_meta("k") == "kept"
