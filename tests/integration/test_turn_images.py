"""Images of user turns in a real SQLite file migrated by Alembic (migration 0004)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from alembic import command

from bot.storage import migrate
from bot.storage.engine import Database, create_engine, sqlite_path
from bot.storage.history import Author, HistoryStore, ImageRecord, StoredTurn
from tests.conftest import both_databases

ALICE = Author(11, "alice")
BOT = Author(99, "ollama-bot")
CAT = ImageRecord("image/jpeg", 64, 48, b"\xff\xd8\xff cat")
DOG = ImageRecord("image/jpeg", 32, 32, b"\xff\xd8\xff dog")


async def ask(store: HistoryStore, channel: int, text: str, *images: ImageRecord) -> int:
    user_turn, _ = await store.begin_exchange(
        channel_id=channel,
        guild_id=1,
        user=ALICE,
        text=text,
        assistant=BOT,
        model="llava",
        request_id="r",
        images=images,
    )
    return user_turn


async def test_the_images_of_a_turn_come_back_in_order(store: HistoryStore) -> None:
    first = await ask(store, 1, "two pictures", CAT, DOG)
    second = await ask(store, 1, "no picture")
    third = await ask(store, 1, "one picture", DOG)
    found = await store.images_for([first, second, third])
    assert found == {first: [CAT, DOG], third: [DOG]}
    assert await store.images_for([]) == {}


@both_databases
async def test_one_read_gives_the_newest_turns_and_the_images_of_those_picked(
    store: HistoryStore,
) -> None:
    old = await ask(store, 1, "old picture", CAT)
    await ask(store, 2, "other channel", DOG)
    await ask(store, 1, "no picture")
    newer = await ask(store, 1, "new picture", DOG)
    seen: list[list[int]] = []

    def picked(turns: Sequence[StoredTurn]) -> list[int]:
        seen.append([t.id for t in turns])
        return [t.id for t in turns if t.role == "user"][-2:]

    recent = await store.recent(1, 4, images_of=picked)
    assert recent.turns == await store.newest(1, 4)
    assert seen == [[t.id for t in recent.turns]]
    assert recent.images == {newer: [DOG]}  # the question before it has none; `old` not picked
    assert (await store.recent(1, 10, images_of=lambda turns: [old])).images == {old: [CAT]}
    assert (await store.recent(1, 10)).images == {}


@both_databases
async def test_a_channel_without_images_is_not_searched_until_one_is_stored(
    store: HistoryStore, database: Database
) -> None:
    await ask(store, 1, "just text")
    picked: list[list[int]] = []

    def latest(turns: Sequence[StoredTurn]) -> list[int]:
        picked.append([t.id for t in turns])
        return [[t.id for t in turns if t.role == "user"][-1]]

    assert (await store.recent(1, 4, images_of=latest)).images == {}
    assert picked == []  # the channel has no image at all: nothing to pick from
    with_cat = await ask(store, 1, "a picture", CAT)
    assert (await store.recent(1, 4, images_of=latest)).images == {with_cat: [CAT]}
    # Another store over the same database (the bot after a restart) looks it up afresh.
    assert (await HistoryStore(database).recent(1, 4, images_of=latest)).images == {with_cat: [CAT]}


async def test_clearing_a_channel_deletes_its_images(
    store: HistoryStore, database_url: str
) -> None:
    kept = await ask(store, 2, "other channel", CAT)
    gone = await ask(store, 1, "picture", DOG)
    assert await store.clear(1) == 2
    assert await store.images_for([gone, kept]) == {kept: [CAT]}
    path = sqlite_path(database_url)
    assert path is not None
    with sqlite3.connect(path) as conn:
        assert conn.execute("select count(*) from turn_images").fetchone()[0] == 1


async def test_migration_0004_goes_down_and_up_again(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    try:
        await migrate.upgrade(engine)
        config = migrate.alembic_config(str(engine.url))
        async with engine.begin() as conn:

            def down(connection: object) -> None:
                config.attributes["connection"] = connection
                command.downgrade(config, "0004-1")  # to whatever 0004 follows

            await conn.run_sync(down)
        with sqlite3.connect(tmp_path / "m.db") as conn:
            tables = {r[0] for r in conn.execute("select name from sqlite_master")}
        assert "turn_images" not in tables
        assert await migrate.current_revision(engine) not in (None, "0004")
        await migrate.upgrade(engine)
        assert await migrate.is_current(engine)
    finally:
        await engine.dispose()
